"""Operations and the access policies through a running gateway (issue 9): operation
matching (404 "Unable to match incoming request to an operation.", template parameters in
policies), `check-header`, `ip-filter` and `cors`, with their APIM messages on the wire.
Real clients: httpx (HTTP/1.1 and HTTP/2) and curl."""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest

from pipeline_kit import Scripted, doc, echo, gateway  # noqa: F401  (echo is a fixture)

KEY = "ocp-apim-subscription-key"
ORIGIN = "https://app.example"


def _api(name: str, *inbound, **extra) -> dict:
    return {"name": name, "path": f"/{name}", "backend": "echo",
            "policies": {"inbound": list(inbound)}, **extra}


@pytest.fixture(scope="module")
def recorder():
    s = Scripted()
    yield s
    s.close()


@pytest.fixture(scope="module")
def gw(tmp_path_factory, echo, recorder):  # noqa: F811
    cors = {"cors": {
        "allowed-origins": [ORIGIN, "http://localhost:3000"],
        "allowed-methods": {"method": ["GET", "POST"], "preflight-result-max-age": 300},
        "allowed-headers": ["content-type", "x-custom"],
        "expose-headers": ["x-trace"]}}
    cfg = {
        "listeners": [{"bind": "127.0.0.1:0", "protocols": ["http1", "h2c"]}],
        "backends": {"echo": {"url": f"http://127.0.0.1:{echo.port}", "timeout": "5s"},
                     "rec": {"url": recorder.url, "timeout": "5s"}},
        "products": {"p": {"apis": ["cors", "cors-rec"]}},
        "subscriptions": [{"id": "s", "product": "p", "primary-key": "k"}],
        "apis": [
            {"name": "ops", "path": "/ops", "backend": "echo", "operations": [
                {"name": "get-item", "method": "GET", "url-template": "/items/{id}",
                 "policies": {"inbound": [{"set-header": {
                     "name": "x-op", "value": ["{operation.name}:{request.params.id}"]}}]}},
                {"name": "add-item", "method": "POST", "url-template": "/items"},
                {"name": "get-file", "method": "GET", "url-template": "/files/{*path}",
                 "policies": {"inbound": [{"set-header": {
                     "name": "x-file", "value": ["{request.params.path}"]}}]}},
                {"name": "search", "method": "GET", "url-template": "/search?q={term}",
                 "policies": {"inbound": [{"set-header": {
                     "name": "x-term", "value": ["{request.params.term}"]}}]}},
            ]},
            _api("ch", {"check-header": {"name": "X-Tier", "value": ["gold", "silver"]}}),
            _api("ch-any", {"check-header": {"name": "X-Token"}}),
            _api("ch-custom", {"check-header": {
                "name": "X-Tier", "value": ["Gold"], "ignore-case": True,
                "failed-check-httpcode": 403,
                "failed-check-error-message": "Tier check failed"}}),
            _api("ip-allow", {"ip-filter": {"action": "allow", "address": ["127.0.0.1"]}}),
            _api("ip-range", {"ip-filter": {"action": "allow", "address-range": [
                {"from": "127.0.0.0", "to": "127.0.0.255"}]}}),
            _api("ip-cidr", {"ip-filter": {"action": "allow", "address": ["127.0.0.0/8"]}}),
            _api("ip-other", {"ip-filter": {"action": "allow", "address": ["10.0.0.0/8",
                                                                           "::1"]}}),
            _api("ip-forbid", {"ip-filter": {"action": "forbid", "address": ["127.0.0.1"]}}),
            _api("cors", cors),
            {"name": "cors-rec", "path": "/cors-rec", "backend": "rec",
             "operations": [{"name": "one", "method": "GET", "url-template": "/one"}],
             "policies": {"inbound": [cors]}},
            _api("cors-open", {"cors": {"allowed-origins": ["*"],
                                        "allowed-methods": ["*"], "allowed-headers": ["*"],
                                        "terminate-unmatched-request": False}}),
        ],
    }
    p = gateway(tmp_path_factory, cfg)
    yield p
    p.stop()


@pytest.fixture(scope="module")
def client(gw):
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        yield c


def _error(r: httpx.Response, status: int, message: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"statusCode": status, "message": message}


# -- operations ---------------------------------------------------------------------------

def test_operation_template_parameter_reaches_policies(client):
    d = doc(client.get("/ops/items/42"))
    assert d["headers"]["x-op"] == "get-item:42"
    assert d["path"] == "/items/42"


def test_wildcard_and_query_template_parameters(client):
    assert doc(client.get("/ops/files/a/b%20c.txt"))["headers"]["x-file"] == "a/b c.txt"
    assert doc(client.get("/ops/search?q=shoes&page=2"))["headers"]["x-term"] == "shoes"


@pytest.mark.parametrize("method,path", [("DELETE", "/ops/items/1"), ("GET", "/ops/nope"),
                                         ("GET", "/ops/items"), ("GET", "/ops/search"),
                                         ("POST", "/ops/items/1")])
def test_unmatched_operation_is_404(client, method, path):
    _error(client.request(method, path), 404,
           "Unable to match incoming request to an operation.")


def test_operation_without_policies_forwards(client):
    d = doc(client.post("/ops/items", content=b'{"n": 1}'))
    assert d["method"] == "POST" and d["body"] == '{"n": 1}'
    assert "x-op" not in d["headers"]


# -- check-header ----------------------------------------------------------------------------

def test_check_header_missing(client):
    _error(client.get("/ch/x"), 401, "Header X-Tier was not found in the request. "
                                     "Access denied.")


def test_check_header_value_not_allowed(client):
    _error(client.get("/ch/x", headers={"X-Tier": "bronze"}), 401,
           "Header X-Tier value of bronze is not allowed. Access denied.")
    # case matters unless ignore-case
    _error(client.get("/ch/x", headers={"X-Tier": "GOLD"}), 401,
           "Header X-Tier value of GOLD is not allowed. Access denied.")


def test_check_header_allowed_values_pass(client):
    for v in ("gold", "silver"):
        assert doc(client.get("/ch/x", headers={"X-Tier": v}))["headers"]["x-tier"] == v


def test_check_header_presence_only(client):
    _error(client.get("/ch-any/x"), 401, "Header X-Token was not found in the request. "
                                         "Access denied.")
    assert doc(client.get("/ch-any/x", headers={"X-Token": "anything"}))


def test_check_header_custom_status_message_and_ignore_case(client):
    _error(client.get("/ch-custom/x", headers={"X-Tier": "silver"}), 403, "Tier check failed")
    _error(client.get("/ch-custom/x"), 403, "Tier check failed")
    assert doc(client.get("/ch-custom/x", headers={"X-Tier": "gOLD"}))


def test_check_header_over_http2(gw):
    with httpx.Client(base_url=gw.url, http1=False, http2=True, timeout=10) as c:
        r = c.get("/ch/x", headers={"X-Tier": "bronze"})
        assert r.http_version == "HTTP/2"
        _error(r, 401, "Header X-Tier value of bronze is not allowed. Access denied.")
        assert doc(c.get("/ch/x", headers={"X-Tier": "gold"}))


# -- ip-filter -------------------------------------------------------------------------------

@pytest.mark.parametrize("api", ["ip-allow", "ip-range", "ip-cidr"])
def test_ip_filter_allows_the_listed_caller(client, api):
    assert doc(client.get(f"/{api}/x"))["path"] == "/x"


def test_ip_filter_allow_list_without_the_caller_is_403(client):
    _error(client.get("/ip-other/x"), 403,
           "Caller IP address 127.0.0.1 is not allowed. Access denied.")


def test_ip_filter_forbid_is_403(client):
    _error(client.get("/ip-forbid/x"), 403, "Caller IP address is blocked. Access denied.")


def test_ip_filter_reads_the_socket_not_x_forwarded_for(client):
    r = client.get("/ip-other/x", headers={"X-Forwarded-For": "10.1.2.3"})
    _error(r, 403, "Caller IP address 127.0.0.1 is not allowed. Access denied.")


def test_ip_filter_with_curl(gw):
    out = subprocess.run(["curl", "-sS", "-w", "\\n%{http_code}", f"{gw.url}/ip-forbid/x"],
                         capture_output=True, timeout=30, check=True).stdout.decode()
    body, _, code = out.rpartition("\n")
    assert code == "403"
    assert json.loads(body)["message"] == "Caller IP address is blocked. Access denied."


# -- cors ------------------------------------------------------------------------------------

def _preflight(client, path: str, origin: str = ORIGIN, method: str = "POST",
               headers: str = "content-type,x-custom") -> httpx.Response:
    h = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        h["Access-Control-Request-Headers"] = headers
    return client.options(path, headers=h)


def test_cors_preflight_is_answered_without_a_key(client, recorder):
    before = len(recorder.heads)
    for path in ("/cors/x", "/cors-rec/any/path/at/all"):   # no operation needed either
        r = _preflight(client, path)
        assert r.status_code == 200, r.text
        assert r.headers["access-control-allow-origin"] == ORIGIN
        assert r.headers["access-control-allow-methods"] == "POST"
        assert r.headers["access-control-allow-headers"] == "content-type,x-custom"
        assert r.headers["access-control-max-age"] == "300"
        assert r.headers["vary"] == "Origin"
        assert r.content == b""
    assert len(recorder.heads) == before       # the backend never saw a preflight


def test_cors_actual_request_gets_allow_origin(client):
    r = client.get("/cors/x", headers={"Origin": ORIGIN, KEY: "k"})
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert r.headers["access-control-expose-headers"] == "x-trace"
    assert "Origin" in r.headers.get_list("vary")
    assert doc(r)["headers"]["origin"] == ORIGIN


def test_cors_actual_request_still_needs_its_key(client):
    r = client.get("/cors/x", headers={"Origin": ORIGIN})
    assert r.status_code == 401
    assert r.json()["message"].startswith("Access denied due to missing subscription key.")


def test_cors_unmatched_preflight_gets_no_cors_fields(client, recorder):
    before = len(recorder.heads)
    for r in (_preflight(client, "/cors/x", origin="https://evil.example"),
              _preflight(client, "/cors/x", method="DELETE"),
              _preflight(client, "/cors/x", headers="x-other"),
              _preflight(client, "/cors-rec/one", origin="https://evil.example")):
        assert r.status_code == 200
        assert "access-control-allow-origin" not in r.headers
        assert r.content == b""
    assert len(recorder.heads) == before


def test_cors_unmatched_get_is_terminated(client, recorder):
    """terminate-unmatched-request (default true): a GET from a foreign origin gets an
    empty 200 and never reaches the backend."""
    before = len(recorder.heads)
    r = client.get("/cors-rec/one", headers={"Origin": "https://evil.example", KEY: "k"})
    assert r.status_code == 200 and r.content == b""
    assert "access-control-allow-origin" not in r.headers
    assert len(recorder.heads) == before
    r = client.get("/cors-rec/one", headers={"Origin": ORIGIN, KEY: "k"})
    assert r.status_code == 200 and r.text == "/one"
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert len(recorder.heads) == before + 1


def test_cors_wildcard_answers_star_and_lets_unmatched_through(client):
    r = _preflight(client, "/cors-open/x", origin="https://any.example", method="PATCH",
                   headers="x-whatever")
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["access-control-allow-methods"] == "PATCH"
    r = client.get("/cors-open/x", headers={"Origin": "https://any.example"})
    assert r.headers["access-control-allow-origin"] == "*"
    assert doc(r)["path"] == "/x"


def test_cors_preflight_with_curl_over_http2(gw):
    out = subprocess.run(
        ["curl", "-sS", "-i", "--http2-prior-knowledge", "-X", "OPTIONS",
         "-H", f"Origin: {ORIGIN}", "-H", "Access-Control-Request-Method: GET",
         f"{gw.url}/cors/x"], capture_output=True, timeout=30, check=True).stdout
    head = out.partition(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/2 200")
    assert b"\r\naccess-control-allow-origin: https://app.example" in head
    assert b"\r\naccess-control-allow-methods: get" in head
