"""Flow policies: choose, return-response, set-variable, set-backend-service,
forward-request, send-request (APIM's attributes, defaults and errors)."""

from __future__ import annotations

import json

import pytest

from apigw_core.gateway.pipeline.contract import (
    Answer, ForwardRequest, PolicyError, ReadRequestBody, SendRequest, ServiceResponse,
)

from helpers import (
    ApiConfig, Driver, FakeBackend, config_errors, make_ctx, one_api, run_program, sections,
)


def errors_of(section: str = "inbound", **entry) -> list[str]:
    (name, body), = entry.items()
    return config_errors([ApiConfig("orders", policies=sections(**{section: [{name.replace(
        "_", "-"): body}]}))], backends={"b": object(), "other": object()})


def mark(tag: str) -> dict:
    return {"set-variable": {"name": "t", "value": "{variables.t}" + tag}}


# --- choose -------------------------------------------------------------------------------------

CHOOSE = {"choose": {
    "when": [{"condition": 'request.method == "POST"', "policies": [mark("post")]},
             {"condition": 'request.headers.x-tier in ["gold", "silver"]',
              "policies": [mark("tier")]},
             {"condition": "true", "policies": [mark("never-second-true")]}],
    "otherwise": [mark("other")]}}


@pytest.mark.parametrize("method,headers,expected", [
    ("POST", {"x-tier": "gold"}, "post"),         # the first true when wins
    ("GET", {"x-tier": "silver"}, "tier"),
    ("GET", {}, "never-second-true"),
])
def test_choose_first_true_when(method, headers, expected):
    _, ctx, _ = run_program(one_api(inbound=[CHOOSE]), make_ctx(method=method, headers=headers))
    assert ctx.variables["t"] == expected


def test_choose_otherwise_and_nothing():
    choose = {"choose": {"when": [{"condition": "false", "policies": [mark("w")]}],
                         "otherwise": [mark("o")]}}
    _, ctx, _ = run_program(one_api(inbound=[choose]))
    assert ctx.variables["t"] == "o"
    choose = {"choose": {"when": [{"condition": "false", "policies": [mark("w")]}]}}
    _, ctx, _ = run_program(one_api(inbound=[choose, mark("after")]))
    assert ctx.variables["t"] == "after"
    # the APIM shape `otherwise: {policies: [...]}` reads the same
    choose = {"choose": {"when": [{"condition": "false"}], "otherwise": {"policies": [mark("o")]}}}
    _, ctx, _ = run_program(one_api(inbound=[choose]))
    assert ctx.variables["t"] == "o"


def test_choose_branch_with_a_command_and_an_answer():
    choose = {"choose": {"when": [{"condition": "true", "policies": [
        {"send-request": {"set-url": "http://s/x", "response-variable-name": "r"}},
        {"return-response": {"set-status": {"code": 202},
                             "set-body": "{variables.r.status}"}}]}]}}
    services = lambda cmd: ServiceResponse(207, (), b"")   # noqa: E731
    result, ctx, driver = run_program(one_api(inbound=[choose, mark("never")]),
                                      driver=Driver(services=services))
    assert result.kind == "answer" and result.answer.body == b"207"
    assert "t" not in ctx.variables and [type(c) for c in driver.commands] == [SendRequest]


def test_choose_in_backend_around_forward_request():
    choose = {"choose": {"when": [{"condition": "request.headers.x-mock == 'yes'", "policies": [
        {"return-response": {"set-body": "mocked"}}]}], "otherwise": [{"forward-request": {}}]}}
    prog = one_api(backend=[choose])
    result, _, driver = run_program(prog, make_ctx(headers={"x-mock": "yes"}))
    assert result.answer.body == b"mocked" and driver.commands == []
    result, _, driver = run_program(prog)
    assert result.kind == "response" and [type(c) for c in driver.commands] == [ForwardRequest]


@pytest.mark.parametrize("body,needle", [
    ({}, "choose.when: required"),
    ({"when": []}, "choose.when: required"),
    ({"when": [{"policies": []}]}, "choose.when[0].condition: required"),
    ({"when": [{"condition": "true", "polices": []}]}, "choose.when[0].polices: unknown attribute"),
    ({"when": [{"condition": "request.x == 1"}]}, "choose.when[0].condition: unknown field"),
    ({"when": [{"condition": "true", "policies": [{"nope": {}}]}]},
     "choose.when[0].policies[0]: unknown policy nope"),
    ({"when": [{"condition": "true"}], "otherwise": [{"nope": {}}]},
     "choose.otherwise[0]: unknown policy nope"),
    ({"when": ["true"]}, "choose.when[0]: expected a mapping of condition, policies"),
])
def test_choose_config_errors(body, needle):
    errors = errors_of(choose=body)
    assert any(needle in e for e in errors), errors


# --- return-response ----------------------------------------------------------------------------

def test_return_response_default_is_an_empty_200():
    result, _, _ = run_program(one_api(inbound=[{"return-response": {}}]))
    assert result.answer == Answer(200, (), b"", "")
    result, _, _ = run_program(one_api(inbound=["return-response"]))   # bare name alike
    assert result.answer == Answer(200, (), b"", "")


def test_return_response_status_headers_body():
    rr = {"return-response": {
        "set-status": {"code": 401, "reason": "Unauthorized"},
        "set-header": [{"name": "WWW-Authenticate", "value": ['Bearer realm="{request.host}"']},
                       {"name": "X-Multi", "value": ["a", "b"]}],
        "set-body": '{{"path": "{request.path}"}}'}}
    result, _, _ = run_program(one_api(inbound=[rr]))
    a = result.answer
    assert (a.status, a.reason) == (401, "Unauthorized")
    assert (b"www-authenticate", b'Bearer realm="gw.example"') in a.headers
    assert (b"x-multi", b"a,b") in a.headers                 # set-header's CSV rule
    assert json.loads(a.body) == {"path": "/orders/7"}


def test_return_response_set_status_scalar():
    result, _, _ = run_program(one_api(inbound=[{"return-response": {"set-status": 204}}]))
    assert result.answer.status == 204


def test_return_response_from_a_send_request_response():
    svc = lambda cmd: ServiceResponse(203, ((b"x-s", b"1"), (b"content-length", b"4")),  # noqa
                                      b"from", "Non-Authoritative")
    prog = one_api(inbound=[
        {"send-request": {"set-url": "http://s/", "response-variable-name": "r"}},
        {"return-response": {"response-variable-name": "r",
                             "set-header": [{"name": "x-added", "value": ["y"]}]}}])
    result, _, _ = run_program(prog, driver=Driver(services=svc))
    a = result.answer
    assert (a.status, a.reason, a.body) == (203, "Non-Authoritative", b"from")
    assert a.headers == ((b"x-s", b"1"), (b"x-added", b"y"))   # framing fields dropped


def test_return_response_variable_that_is_not_a_response():
    prog = one_api(inbound=[{"return-response": {"response-variable-name": "missing"}}])
    result, _, _ = run_program(prog)
    assert result.kind == "error" and result.error.reason == "ExpressionValueEvaluationFailure"
    assert result.error.source == "return-response"


@pytest.mark.parametrize("body,needle", [
    ({"set-status": {"code": 99}}, "return-response.set-status.code: expected an integer from "
                                   "100 to 599"),
    ({"set-status": {"reason": "x"}}, "return-response.set-status.code: required"),
    ({"set-header": [{"name": "content-length", "value": ["1"]}]},
     "return-response.set-header[0].name: "),
    ({"set-header": [{"value": ["1"]}]}, "return-response.set-header[0].name: required"),
    ({"set-body": "{oops"}, "return-response.set-body: unclosed {"),
    ({"status": 200}, "return-response.status: unknown attribute"),
])
def test_return_response_config_errors(body, needle):
    errors = errors_of(return_response=body)
    assert any(needle in e for e in errors), errors


# --- set-variable -------------------------------------------------------------------------------

def test_set_variable_types():
    prog = one_api(inbound=[
        {"set-variable": {"name": "s", "value": "{request.method}-x"}},
        {"set-variable": {"name": "n", "value": 5}},
        {"set-variable": {"name": "m", "value": "{request.method}"}}],
        outbound=[{"set-variable": {"name": "st", "value": "{response.status}"}},
                  {"set-variable": {"name": "big", "value": "{response.status}"}},
                  {"choose": {"when": [{"condition": "variables.big >= 500",
                                        "policies": [mark("5xx")]}]}}])
    _, ctx, _ = run_program(prog, driver=Driver(backend=FakeBackend(503)))
    v = ctx.variables
    assert (v["s"], v["n"], v["m"]) == ("GET-x", "5", "GET")
    assert v["st"] == 503 and v["t"] == "5xx"     # one expression keeps its int


def test_set_variable_errors():
    assert any("set-variable.name: required" in e for e in errors_of(set_variable={"value": 1}))
    assert any("set-variable.value: required" in e for e in errors_of(set_variable={"name": "a"}))


# --- set-backend-service ------------------------------------------------------------------------

def test_set_backend_service():
    prog = one_api(inbound=[{"set-backend-service": {"backend-id": "other"}}],
                   backends={"b": object(), "other": object()})
    _, ctx, driver = run_program(prog)
    assert driver.backend.seen[0][5:] == ("other", None)
    prog = one_api(inbound=[{"set-backend-service": {
        "base-url": "http://{request.headers.x-region}.internal:8080/api"}}])
    _, ctx, driver = run_program(prog, make_ctx(headers={"x-region": "eu"}))
    assert driver.backend.seen[0][5:] == (None, "http://eu.internal:8080/api")


def test_set_backend_service_bad_rendered_url():
    prog = one_api(inbound=[{"set-backend-service": {"base-url": "{request.headers.x-u}"}}])
    result, _, driver = run_program(prog, make_ctx(headers={"x-u": "ftp://x"}))
    assert result.kind == "error" and driver.commands == []
    assert result.error.reason == "ExpressionValueEvaluationFailure"


@pytest.mark.parametrize("body,needle", [
    ({"backend-id": "nope"}, "set-backend-service.backend-id: unknown backend 'nope' (expected "
                             "one of b, other)"),
    ({}, "set-backend-service: expected exactly one of base-url, backend-id"),
    ({"backend-id": "b", "base-url": "http://x"}, "expected exactly one of"),
    ({"base-url": "ftp://x"}, "set-backend-service.base-url: expected an http:// or https://"),
    ({"base-url": "http://x:99999"}, "set-backend-service.base-url: expected an http"),
])
def test_set_backend_service_errors(body, needle):
    errors = errors_of(set_backend_service=body)
    assert any(needle in e for e in errors), errors


# --- forward-request ----------------------------------------------------------------------------

def test_forward_request_attributes():
    prog = one_api(backend=[{"forward-request": {
        "timeout": 20, "http-version": "2or1", "buffer-request-body": True,
        "fail-on-error-status-code": "false"}}])
    _, _, driver = run_program(prog)
    assert driver.commands == [ForwardRequest(timeout=20.0, http_version="2or1",
                                              buffer_request_body=True,
                                              fail_on_error_status_code=False)]
    prog = one_api(backend=[{"forward-request": {"timeout": "500ms", "http-version": 2}}])
    _, _, driver = run_program(prog)
    assert driver.commands[0].timeout == 0.5 and driver.commands[0].http_version == "2"


@pytest.mark.parametrize("status,kind", [(200, "response"), (404, "error"), (503, "error")])
def test_forward_request_fail_on_error_status_code(status, kind):
    prog = one_api(backend=[{"forward-request": {"fail-on-error-status-code": True}}],
                   on_error=[mark("e")])
    result, ctx, _ = run_program(prog, driver=Driver(backend=FakeBackend(status)))
    assert result.kind == kind
    if kind == "error":
        assert ctx.variables["t"] == "e" and result.forwarded
        assert (result.error.source, result.error.section) == ("forward-request", "backend")
        assert ctx.response.status == status


@pytest.mark.parametrize("body,needle", [
    ({"timeout": 0}, "forward-request.timeout: expected a positive number"),
    ({"timeout": "soon"}, "forward-request.timeout: expected a positive number"),
    ({"http-version": "3"}, "forward-request.http-version: expected one of 1, 2, 2or1"),
    ({"follow-redirects": True}, "forward-request.follow-redirects: true is not supported"),
    ({"retries": 3}, "forward-request.retries: unknown attribute"),
])
def test_forward_request_errors(body, needle):
    errors = errors_of("backend", forward_request=body)
    assert any(needle in e for e in errors), errors


# --- send-request -------------------------------------------------------------------------------

def test_send_request_new():
    seen = []

    def svc(cmd):
        seen.append(cmd)
        return ServiceResponse(200, ((b"x-user", b"alice"),), b'{"ok":true}')
    prog = one_api(inbound=[{"send-request": {
        "set-url": "https://auth.local/check?id={request.params.id}", "set-method": "post",
        "set-header": [{"name": "authorization", "value": ["Bearer {{tok}}"]}],
        "set-body": "{request.path}", "timeout": 5, "response-variable-name": "auth"}},
        {"set-variable": {"name": "user", "value": "{variables.auth.headers.x-user}"}}],
        named_values={"tok": "T"})
    _, ctx, _ = run_program(prog, make_ctx(params={"id": "7"}), Driver(services=svc))
    assert seen == [SendRequest(method="POST", url="https://auth.local/check?id=7",
                                headers=((b"authorization", b"Bearer T"),), body=b"/orders/7",
                                timeout=5.0)]
    assert ctx.variables["user"] == "alice"
    assert ctx.variables["auth"].body == b'{"ok":true}'


def test_send_request_copy():
    seen = []
    prog = one_api(inbound=[{"send-request": {"mode": "copy",
                                              "set-header": [{"name": "x-copy", "value": ["1"]}]}}])
    ctx = make_ctx(method="PUT", query="a=1", headers={"Host": "gw.example", "X-In": "v",
                                                       "Content-Length": "3"})
    _, ctx, driver = run_program(prog, ctx, Driver(request_body=b"abc",
                                                   services=lambda c: seen.append(c) or
                                                   ServiceResponse(200, (), b"")))
    cmd = seen[0]
    assert (cmd.method, cmd.url, cmd.body, cmd.timeout) == ("PUT",
                                                           "http://gw.example/orders/7?a=1",
                                                           b"abc", 60.0)
    assert cmd.headers == ((b"x-in", b"v"), (b"x-copy", b"1"))
    assert isinstance(driver.commands[0], ReadRequestBody)   # copy needs the body


def test_send_request_errors_go_to_on_error_unless_ignored():
    def down(cmd):
        raise PolicyError(504, "Timeout", "The service did not answer in time.")
    base = {"set-url": "http://s/", "response-variable-name": "r"}
    prog = one_api(inbound=[{"send-request": base}, mark("after")], on_error=[mark("e")])
    result, ctx, _ = run_program(prog, driver=Driver(services=down))
    assert result.kind == "error" and ctx.variables["t"] == "e"
    assert (result.error.source, result.error.reason) == ("send-request", "Timeout")
    assert ctx.response.status == 504
    prog = one_api(inbound=[{"send-request": dict(base, **{"ignore-error": True})},
                            mark("after")])
    result, ctx, _ = run_program(prog, driver=Driver(services=down))
    assert result.kind == "response" and ctx.variables["t"] == "after"
    assert "r" in ctx.variables and ctx.variables["r"] is None      # APIM: null


@pytest.mark.parametrize("body,needle", [
    ({}, "send-request.set-url: required"),
    ({"set-url": "ftp://x"}, "send-request.set-url: expected an http:// or https:// URL"),
    ({"set-url": "http://x", "mode": "clone"}, "send-request.mode: expected one of new, copy"),
    ({"set-url": "http://x", "set-method": "GE T"}, "send-request.set-method: not a method"),
    ({"set-url": "http://x", "timeout": -1}, "send-request.timeout: expected a positive"),
    ({"set-url": "http://x", "set-header": [{"name": "transfer-encoding", "value": ["x"]}]},
     "send-request.set-header[0].name: "),
])
def test_send_request_config_errors(body, needle):
    errors = errors_of(send_request=body)
    assert any(needle in e for e in errors), errors
