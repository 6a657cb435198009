"""The flow policies, on-error and scopes through a running gateway (issue 9): choose /
when / otherwise, return-response (and that nothing reaches the backend), set-variable,
set-backend-service (backend-id and base-url, to a second echo backend), forward-request
(timeout -> 504 and on-error with last-error Timeout; fail-on-error-status-code),
send-request (its response read in templates; ignore-error; a failure reaching on-error),
on-error editing or replacing the error's answer, and the scopes global > product > API >
operation with and without `base`."""

from __future__ import annotations

import httpx
import pytest

from backends import Backend, refused_url
from pipeline_kit import doc, echo, echo2, gateway, scripted  # noqa: F401  (fixtures)

KEY = "ocp-apim-subscription-key"


def _tag(value: str, name: str = "x-trail") -> dict:
    return {"set-header": {"name": name, "exists-action": "append", "value": [value]}}


def _on_error_tags() -> list:
    return [_tag("{last-error.reason}", "x-err-reason"),
            _tag("{last-error.source}", "x-err-source"),
            _tag("{last-error.section}", "x-err-section"),
            _tag("{last-error.scope}", "x-err-scope"),
            _tag("{last-error.path}", "x-err-path")]


@pytest.fixture(scope="module")
def hang():
    b = Backend("hang")
    yield b
    b.close()


@pytest.fixture(scope="module")
def recorder():
    b = Backend("ok")
    yield b
    b.close()


@pytest.fixture(scope="module")
def gw(tmp_path_factory, echo, echo2, scripted, hang, recorder):  # noqa: F811
    e1, e2 = f"http://127.0.0.1:{echo.port}", f"http://127.0.0.1:{echo2.port}"
    refused = refused_url()
    cfg = {
        "listeners": [{"bind": "127.0.0.1:0", "protocols": ["http1", "h2c"]}],
        "backends": {"echo": {"url": e1, "timeout": "5s"},
                     "echo2": {"url": e2 + "/two", "timeout": "5s"},
                     "hang": {"url": hang.url, "timeout": "10s"},
                     "scripted": {"url": scripted.url, "timeout": "5s"},
                     "rec": {"url": recorder.url, "timeout": "5s"}},
        "apis": [
            {"name": "choose", "path": "/choose", "backend": "echo", "policies": {
                "inbound": [{"choose": {
                    "when": [{"condition": 'request.headers.x-tier == "gold"',
                              "policies": [_tag("gold")]},
                             {"condition": 'request.headers.x-tier in ["silver", \'bronze\']'
                                           ' and request.method == "GET"',
                              "policies": [_tag("metal")]}],
                    "otherwise": [_tag("other")]}}]}},
            {"name": "rr", "path": "/rr", "backend": "rec", "policies": {
                "inbound": [
                    {"set-variable": {"name": "who", "value": "{request.headers.x-who}"}},
                    {"choose": {"when": [{"condition": 'request.headers.x-who == "none"',
                                          "policies": [{"return-response": {}}]}]}},
                    {"return-response": {
                        "set-status": {"code": 201, "reason": "Created"},
                        "set-header": [{"name": "x-made", "value": ["by-gateway"]},
                                       {"name": "content-type", "value": ["text/plain"]}],
                        "set-body": "hello {variables.who} via {request.method}"}}],
                "outbound": [_tag("never", "x-outbound")]}},
            {"name": "sbs-id", "path": "/sbs-id", "backend": "echo", "policies": {
                "inbound": [{"set-backend-service": {"backend-id": "echo2"}}]}},
            {"name": "sbs-url", "path": "/sbs-url", "backend": "echo", "policies": {
                "inbound": [{"set-backend-service": {"base-url": e2 + "/by-url"}}]}},
            {"name": "sbs-expr", "path": "/sbs-expr", "backend": "echo", "policies": {
                "inbound": [{"choose": {"when": [{
                    "condition": 'request.headers.x-to == "two"',
                    "policies": [{"set-backend-service": {
                        "base-url": "http://127.0.0.1:{request.headers.x-port}/dyn"}}]}]}}]}},
            {"name": "slow", "path": "/slow", "backend": "hang", "policies": {
                "backend": [{"forward-request": {"timeout": "300ms"}}],
                "on-error": _on_error_tags()}},
            {"name": "slow-plain", "path": "/slow-plain", "backend": "hang", "policies": {
                "backend": [{"forward-request": {"timeout": "300ms"}}]}},
            {"name": "fail", "path": "/fail", "backend": "scripted", "policies": {
                "backend": [{"forward-request": {"fail-on-error-status-code": True}}],
                "on-error": _on_error_tags()}},
            {"name": "nofail", "path": "/nofail", "backend": "scripted"},
            {"name": "down", "path": "/down", "backend": "echo", "policies": {
                "inbound": [{"set-backend-service": {"base-url": refused}}],
                "on-error": _on_error_tags()}},
            {"name": "sr", "path": "/sr", "backend": "echo", "policies": {
                "inbound": [
                    {"send-request": {"mode": "new", "response-variable-name": "lookup",
                                      "set-url": e2 + "/lookup?who={request.headers.x-who}",
                                      "set-method": "POST",
                                      "set-header": [{"name": "x-asked-by",
                                                      "value": ["{api.name}"]}],
                                      "set-body": "q={request.headers.x-who}"}},
                    _tag("{variables.lookup.status}", "x-lookup-status"),
                    _tag("{variables.lookup.headers.content-type}", "x-lookup-type"),
                    {"choose": {"when": [{"condition": 'request.headers.x-show == "1"',
                                          "policies": [{"return-response": {
                                              "set-body": "{variables.lookup.body}"}}]}]}}]}},
            {"name": "sr-ignore", "path": "/sr-ignore", "backend": "echo", "policies": {
                "inbound": [
                    {"send-request": {"response-variable-name": "r", "set-url": refused,
                                      "ignore-error": True, "timeout": 5}},
                    {"choose": {"when": [{"condition": "variables.r == null",
                                          "policies": [_tag("null", "x-r")]}],
                                "otherwise": [_tag("set", "x-r")]}}]}},
            {"name": "sr-fail", "path": "/sr-fail", "backend": "echo", "policies": {
                "inbound": [{"send-request": {"response-variable-name": "r",
                                              "set-url": refused}}],
                "on-error": _on_error_tags()}},
            {"name": "sr-slow", "path": "/sr-slow", "backend": "echo", "policies": {
                "inbound": [{"send-request": {"response-variable-name": "r",
                                              "set-url": hang.url + "/x", "timeout": "300ms"}}],
                "on-error": _on_error_tags()}},
            {"name": "oe", "path": "/oe", "backend": "echo", "policies": {
                "inbound": [{"check-header": {"name": "x-need", "id": "need-check"}}],
                "on-error": [
                    *_on_error_tags(),
                    _tag("{last-error.message}", "x-err-message"),
                    _tag("{last-error.policy-id}", "x-err-id"),
                    {"choose": {"when": [{"condition": 'request.headers.x-mode == "replace"',
                                          "policies": [{"return-response": {
                                              "set-status": {"code": 418, "reason": "Teapot"},
                                              "set-body": "sorry: {last-error.reason}"}}]}]}},
                    {"set-status": {"code": 400, "reason": "Bad"}}]}},
        ],
    }
    p = gateway(tmp_path_factory, cfg)
    yield p
    p.stop()


@pytest.fixture(scope="module")
def client(gw):
    with httpx.Client(base_url=gw.url, timeout=15) as c:
        yield c


def _trail(r: httpx.Response) -> str:
    return doc(r)["headers"].get("x-trail", "")


# -- choose ---------------------------------------------------------------------------------

def test_choose_first_true_when_wins(client):
    assert _trail(client.get("/choose/x", headers={"x-tier": "gold"})) == "gold"
    assert _trail(client.get("/choose/x", headers={"x-tier": "bronze"})) == "metal"
    assert _trail(client.post("/choose/x", headers={"x-tier": "silver"})) == "other"
    assert _trail(client.get("/choose/x")) == "other"


# -- return-response -----------------------------------------------------------------------

def test_return_response_answers_and_the_backend_never_sees_it(client, recorder):
    recorder.reset()
    r = client.get("/rr/x", headers={"x-who": "ann"})
    assert (r.status_code, r.reason_phrase) == (201, "Created")
    assert r.headers["x-made"] == "by-gateway"
    assert r.headers["content-type"] == "text/plain"
    assert r.text == "hello ann via GET"
    assert r.headers["content-length"] == str(len(r.content))
    assert "x-outbound" not in r.headers          # outbound does not run after it
    assert recorder.connections == 0 and recorder.received == b""


def test_return_response_default_is_an_empty_200(client, recorder):
    recorder.reset()
    r = client.post("/rr/x", headers={"x-who": "none"}, content=b"ignored body")
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-length"] == "0"
    assert recorder.received == b""


def test_return_response_over_http2(gw):
    with httpx.Client(base_url=gw.url, http1=False, http2=True, timeout=10) as c:
        r = c.get("/rr/x", headers={"x-who": "h2"})
        assert r.http_version == "HTTP/2"
        assert (r.status_code, r.text) == (201, "hello h2 via GET")


# -- set-backend-service ---------------------------------------------------------------------

def test_set_backend_service_backend_id(client, echo2):  # noqa: F811
    d = doc(client.get("/sbs-id/a?b=1"))
    assert d["headers"]["host"] == f"127.0.0.1:{echo2.port}"
    assert (d["path"], d["query"]) == ("/two/a", "b=1")


def test_set_backend_service_base_url(client, echo2):  # noqa: F811
    d = doc(client.get("/sbs-url/a"))
    assert d["headers"]["host"] == f"127.0.0.1:{echo2.port}"
    assert d["path"] == "/by-url/a"


def test_set_backend_service_base_url_from_an_expression(client, echo, echo2):  # noqa: F811
    d = doc(client.get("/sbs-expr/a", headers={"x-to": "two", "x-port": str(echo2.port)}))
    assert (d["headers"]["host"], d["path"]) == (f"127.0.0.1:{echo2.port}", "/dyn/a")
    d = doc(client.get("/sbs-expr/a"))
    assert (d["headers"]["host"], d["path"]) == (f"127.0.0.1:{echo.port}", "/a")


def test_unreachable_base_url_is_502_and_reaches_on_error(client):
    r = client.get("/down/x")
    assert r.status_code == 502
    assert r.json() == {"statusCode": 502, "message": "backend connection failed"}
    assert r.headers["x-err-reason"] == "BackendConnectionFailure"
    assert r.headers["x-err-section"] == "backend"


# -- forward-request ---------------------------------------------------------------------------

def test_forward_request_timeout_is_504_with_last_error_timeout(client):
    r = client.get("/slow/x")
    assert r.status_code == 504
    assert r.json() == {"statusCode": 504, "message": "backend did not answer in time"}
    assert r.headers["x-err-reason"] == "Timeout"
    assert r.headers["x-err-source"] == "forward-request"
    assert r.headers["x-err-section"] == "backend"


def test_forward_request_timeout_without_on_error(client):
    r = client.get("/slow-plain/x")
    assert r.status_code == 504
    assert r.json()["statusCode"] == 504


def test_fail_on_error_status_code_sends_backend_errors_to_on_error(client):
    r = client.get("/fail/status/503")
    assert r.status_code == 503
    assert r.headers["x-err-reason"] == "BackendErrorStatusCode"
    assert r.headers["x-err-section"] == "backend"
    assert r.json()["statusCode"] == 503
    r = client.get("/fail/status/404")
    assert r.status_code == 404 and r.headers["x-err-reason"] == "BackendErrorStatusCode"
    r = client.get("/fail/status/201")
    assert r.status_code == 201 and "x-err-reason" not in r.headers
    assert r.json() == {"status": 201}


def test_without_fail_on_error_the_backend_error_is_relayed(client):
    r = client.get("/nofail/status/500")
    assert r.status_code == 500 and r.json() == {"status": 500}


# -- send-request --------------------------------------------------------------------------------

def test_send_request_response_is_readable_in_templates(client, echo2):  # noqa: F811
    d = doc(client.get("/sr/x", headers={"x-who": "ann"}))
    assert d["headers"]["x-lookup-status"] == "200"
    assert d["headers"]["x-lookup-type"] == "application/json"
    r = client.get("/sr/x", headers={"x-who": "bob", "x-show": "1"})
    assert r.status_code == 200
    seen = r.json()                      # what echo2 received from send-request
    assert seen["method"] == "POST"
    assert (seen["path"], seen["query"]) == ("/lookup", "who=bob")
    assert seen["body"] == "q=bob"
    assert seen["headers"]["content-length"] == "5"
    assert seen["headers"]["x-asked-by"] == "sr"
    assert seen["headers"]["host"] == f"127.0.0.1:{echo2.port}"


def test_send_request_ignore_error_leaves_the_variable_null(client):
    d = doc(client.get("/sr-ignore/x"))
    assert d["headers"]["x-r"] == "null"


def test_send_request_failure_goes_to_on_error(client):
    r = client.get("/sr-fail/x")
    assert r.status_code == 502
    assert r.headers["x-err-reason"] == "BackendConnectionFailure"
    assert r.headers["x-err-source"] == "send-request"
    assert r.headers["x-err-section"] == "inbound"


def test_send_request_timeout_goes_to_on_error(client):
    r = client.get("/sr-slow/x")
    assert r.status_code == 504
    assert r.headers["x-err-reason"] == "Timeout"
    assert r.headers["x-err-source"] == "send-request"


# -- on-error -------------------------------------------------------------------------------------

def test_on_error_sees_last_error_and_edits_the_answer(client):
    r = client.get("/oe/x")
    assert (r.status_code, r.reason_phrase) == (400, "Bad")
    assert r.json() == {"statusCode": 401, "message": "Header x-need was not found in the "
                                                      "request. Access denied."}
    assert r.headers["x-err-reason"] == "HeaderNotFound"
    assert r.headers["x-err-source"] == "check-header"
    assert r.headers["x-err-section"] == "inbound"
    assert r.headers["x-err-scope"] == "api"
    assert r.headers["x-err-path"] == "check-header[1]"
    assert r.headers["x-err-id"] == "need-check"
    assert r.headers["x-err-message"].startswith("Header x-need was not found")


def test_on_error_return_response_replaces_the_answer(client):
    r = client.get("/oe/x", headers={"x-mode": "replace"})
    assert (r.status_code, r.reason_phrase) == (418, "Teapot")
    assert r.text == "sorry: HeaderNotFound"


def test_on_error_not_run_when_nothing_fails(client):
    r = client.get("/oe/x", headers={"x-need": "1"})
    assert "x-err-reason" not in r.headers
    assert doc(r)["path"] == "/x"


# -- scopes ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scoped(tmp_path_factory, echo):  # noqa: F811
    def sec(tag: str, base: bool = True) -> dict:
        inbound = (["base"] if base else []) + [_tag(f"{tag}-in")]
        outbound = (["base"] if base else []) + [_tag(f"{tag}-out", "x-out")]
        return {"inbound": inbound, "outbound": outbound}

    cfg = {
        "listeners": [{"bind": "127.0.0.1:0"}],
        "backends": {"echo": {"url": f"http://127.0.0.1:{echo.port}", "timeout": "5s"}},
        "policies": {"inbound": [_tag("global-in")],
                     "outbound": [_tag("global-out", "x-out")]},
        "products": {"gold": {"apis": ["a", "nobase"], "policies": sec("product")}},
        "subscriptions": [{"id": "s", "product": "gold", "primary-key": "k"},
                          {"id": "t", "scope": "all-apis", "primary-key": "all"}],
        "apis": [
            {"name": "a", "path": "/a", "backend": "echo", "policies": sec("api"),
             "operations": [
                 {"name": "with-base", "method": "GET", "url-template": "/base",
                  "policies": sec("op")},
                 {"name": "without-base", "method": "GET", "url-template": "/alone",
                  "policies": sec("op", base=False)},
                 {"name": "inherits", "method": "GET", "url-template": "/inherit"}]},
            {"name": "nobase", "path": "/nobase", "backend": "echo",
             "policies": sec("api", base=False)},
            {"name": "plain", "path": "/plain", "backend": "echo"},
        ],
    }
    p = gateway(tmp_path_factory, cfg)
    yield p
    p.stop()


@pytest.mark.parametrize("path,inbound,outbound", [
    ("/a/base", "global-in,product-in,api-in,op-in", "global-out,product-out,api-out,op-out"),
    ("/a/alone", "op-in", "op-out"),
    ("/a/inherit", "global-in,product-in,api-in", "global-out,product-out,api-out"),
    ("/nobase/x", "api-in", "api-out"),
])
def test_scopes_nest_with_base(scoped, path, inbound, outbound):
    r = httpx.get(scoped.url + path, headers={KEY: "k"}, timeout=10)
    assert _trail(r) == inbound
    assert r.headers["x-out"] == outbound


def test_api_scoped_key_skips_the_product_scope(scoped):
    r = httpx.get(scoped.url + "/a/base", headers={KEY: "all"}, timeout=10)
    assert _trail(r) == "global-in,api-in,op-in"
    assert r.headers["x-out"] == "global-out,api-out,op-out"


def test_global_policies_apply_to_an_api_without_its_own(scoped):
    r = httpx.get(scoped.url + "/plain/x", timeout=10)
    assert _trail(r) == "global-in"
    assert r.headers["x-out"] == "global-out"
