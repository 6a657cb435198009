"""Transformation policies, sans-IO: set-header, set-query-parameter, rewrite-uri,
set-method, set-status, set-body, find-and-replace (APIM semantics, config errors with
their paths, body reads as commands)."""

from __future__ import annotations

import json

import pytest

from apigw_core.gateway.pipeline.contract import (PolicyError, ReadRequestBody,
                                                  ReadResponseBody)
from apigw_core.gateway.pipeline.policies import transform  # noqa: F401  (registers)
from apigw_core.gateway.pipeline.policies.transform import HeaderEdit

from helpers import ApiConfig, Driver, FakeBackend, OperationConfig, hdrs, make_ctx, response
from policy_kit import compile_policy, config_errors, make_site, run

P = "apis[0].policies.inbound[0]"


def items(h):
    return [(n.decode(), v.decode()) for n, v in h.items]


# --- set-header ---------------------------------------------------------------------------

def sh(body, section="inbound", headers=(), resp=None, **kw):
    ctx = make_ctx(headers=headers, response=resp, **kw)
    assert run(compile_policy("set-header", body, section), ctx) is None
    return ctx


def test_set_header_override_is_default_and_joins_values():
    ctx = sh({"name": "X-A", "value": ["1", "2"]}, headers=[("x-a", "0"), ("x-b", "b")])
    assert items(ctx.request.headers) == [("x-b", "b"), ("x-a", "1,2")]


def test_set_header_separate_fields_for_cookies_and_dates():
    ctx = sh({"name": "Set-Cookie", "value": ["a=1", "b=2"]}, "outbound",
             resp=response(headers=[("set-cookie", "old=1")]))
    assert items(ctx.response.headers) == [("set-cookie", "a=1"), ("set-cookie", "b=2")]
    ctx = sh({"name": "www-authenticate", "exists-action": "append", "value": "Basic"},
             "outbound", resp=response(headers=[("www-authenticate", "Bearer")]))
    assert ctx.response.headers.get_all(b"www-authenticate") == [b"Bearer", b"Basic"]


def test_set_header_skip_append_delete():
    base = [("x-a", "1"), ("x-a", "2")]
    assert items(sh({"name": "x-a", "exists-action": "skip", "value": "9"},
                    headers=base).request.headers) == base
    assert items(sh({"name": "x-new", "exists-action": "skip", "value": "9"})
                 .request.headers) == [("x-new", "9")]
    assert items(sh({"name": "x-a", "exists-action": "append", "value": ["3", "4"]},
                    headers=base).request.headers) == [("x-a", "1,2,3,4")]
    assert items(sh({"name": "x-z", "exists-action": "append", "value": ["3"]})
                 .request.headers) == [("x-z", "3")]
    assert items(sh({"name": "X-A", "exists-action": "delete"},
                    headers=base + [("x-b", "b")]).request.headers) == [("x-b", "b")]


def test_set_header_binds_to_request_or_response_by_section():
    for section, on_request in (("inbound", True), ("backend", True), ("outbound", False),
                                ("on-error", False)):
        ctx = sh({"name": "x-s", "value": section}, section, resp=response())
        assert (ctx.request.headers.get(b"x-s") is not None) is on_request
        assert (ctx.response.headers.get(b"x-s") is not None) is not on_request


def test_set_header_on_error_without_response_starts_one():
    ctx = sh({"name": "x-e", "value": "1"}, "on-error")
    assert ctx.response.status == 200 and ctx.response.headers.get(b"x-e") == b"1"


def test_set_header_templates_rendered_per_request():
    body = {"name": "x-ctx", "value": ["{request.ip}", "{request.query.tier}"]}
    ctx = sh(body, ip="10.1.2.3", query="tier=gold")
    assert ctx.request.headers.get(b"x-ctx") == b"10.1.2.3,gold"


def test_set_header_refuses_cr_lf_from_a_value():
    with pytest.raises(PolicyError) as e:
        sh({"name": "x-q", "value": "{request.query.v}"}, query="v=a%0d%0aevil:%201")
    assert (e.value.status, e.value.reason) == (500, "ExpressionValueEvaluationFailure")


def test_set_header_host_allowed_framing_refused():
    assert sh({"name": "Host", "value": "backend.example"}).request.headers.get(b"host") \
        == b"backend.example"
    for name in ("Content-Length", "transfer-encoding", "Connection", "Keep-Alive"):
        assert config_errors("set-header", {"name": name, "value": "1"}) == [
            f"{P}.set-header.name: {name} is a framing header and cannot be set or removed"]


def test_set_header_config_errors():
    assert config_errors("set-header", {"name": "x", "exists-action": "replace"}) == [
        f"{P}.set-header.exists-action: expected one of override, skip, append, delete"]
    assert config_errors("set-header", {"value": "1"}) == [f"{P}.set-header.name: required"]
    assert config_errors("set-header", {"name": "a:b"}) == [
        f"{P}.set-header.name: not a header name: 'a:b'"]
    assert config_errors("set-header", {"name": "x", "value": ["{request.nope}"]})[0] \
        .startswith(f"{P}.set-header.value[0]: ")
    assert config_errors("set-header", {"name": "x", "value": "a\r\nb"}) == [
        f"{P}.set-header.value: the value contains a control character (CR, LF or NUL)."]


def test_set_header_name_expression():
    ctx = sh({"name": "x-{request.query.n}", "value": "1"}, query="n=tenant")
    assert ctx.request.headers.get(b"x-tenant") == b"1"
    with pytest.raises(PolicyError):
        sh({"name": "{request.query.n}", "value": "1"}, query="n=content-length")


def test_set_header_value_reading_the_body_reads_it_first():
    policy = compile_policy("set-header", {"name": "x-body", "value": "{request.body}"})
    assert policy.reads_request_body
    ctx = make_ctx(method="POST")
    driver = Driver(request_body=b"hello")
    assert run(policy, ctx, driver) is None
    assert driver.commands == [ReadRequestBody(4 << 20)]
    assert ctx.request.headers.get(b"x-body") == b"hello"


def test_header_edit_reusable_with_a_prefix():
    errors: list[str] = []
    site = make_site("return-response", "inbound", errors)
    edit = HeaderEdit({"name": "x", "exists-action": "bad"}, site, "set-header[1]")
    assert errors == [f"{P}.return-response.set-header[1].exists-action: expected one of "
                      f"override, skip, append, delete"]
    ok = HeaderEdit({"name": "X-Ok", "value": ["a", "b"]}, site, "set-header[0]")
    h = hdrs()
    ok.apply(h, make_ctx())
    assert h.items == [(b"x-ok", b"a,b")]


# --- set-query-parameter ------------------------------------------------------------------

def sq(body, query, section="inbound"):
    ctx = make_ctx(query=query)
    assert run(compile_policy("set-query-parameter", body, section), ctx) is None
    return ctx.request.query


def test_set_query_parameter_actions():
    q = "a=1&b=x%20y&a=2"
    assert sq({"name": "a", "value": "9"}, q) == "b=x%20y&a=9"
    assert sq({"name": "a", "value": ["8", "9"]}, q) == "b=x%20y&a=8&a=9"
    assert sq({"name": "a", "exists-action": "skip", "value": "9"}, q) == q
    assert sq({"name": "c", "exists-action": "skip", "value": "9"}, q) == q + "&c=9"
    assert sq({"name": "a", "exists-action": "append", "value": "3"}, q) == q + "&a=3"
    assert sq({"name": "a", "exists-action": "delete"}, q) == "b=x%20y"
    assert sq({"name": "b", "exists-action": "delete"}, q, "backend") == "a=1&a=2"
    assert sq({"name": "api-key", "value": "k"}, "") == "api-key=k"


def test_set_query_parameter_encodes_names_and_values():
    assert sq({"name": "x y", "value": "a&b=c/d"}, "") == "x%20y=a%26b%3Dc%2Fd"
    assert sq({"name": "x y", "exists-action": "delete"}, "x+y=1&z=2") == "z=2"
    ctx = make_ctx(query="", ip="::1")
    run(compile_policy("set-query-parameter", {"name": "ip", "value": "{request.ip}"}), ctx)
    assert ctx.request.query == "ip=%3A%3A1"


def test_set_query_parameter_config_errors():
    q = f"{P}.set-query-parameter"
    assert config_errors("set-query-parameter", {"name": "a"}) == [
        f"{q}.value: at least one value is required (exists-action delete takes none)"]
    assert f"{q}.exists-action: expected one of override, skip, append, delete" in \
        config_errors("set-query-parameter", {"name": "a", "exists-action": "x", "value": 1})
    from apigw_core.gateway.pipeline.registry import lookup
    assert lookup("set-query-parameter").sections == frozenset({"inbound", "backend"})


# --- rewrite-uri ----------------------------------------------------------------------------

def rw(body, path, query="", template="/", api_path="/api", params=None):
    ctx = make_ctx(path=path, query=query, params=params,
                   api=ApiConfig("a", path=api_path),
                   operation=OperationConfig("op", "GET", template))
    assert run(compile_policy("rewrite-uri", body), ctx) is None
    return ctx.request.path, ctx.request.query


def test_rewrite_uri_apim_examples():
    assert rw({"template": "/put"}, "/api/get", "a=b&c=d", "/get?a={b}") == ("/api/put", "c=d")
    assert rw({"template": "/put", "copy-unmatched-params": False}, "/api/get", "a=b&c=d",
              "/get?a={b}") == ("/api/put", "")
    got = rw("/v2/US/hardware/{storenumber}&{ordernumber}?City=city&State=state",
             "/api/42/7", "", "/{storenumber}/{ordernumber}",
             params={"storenumber": "42", "ordernumber": "7"})
    assert got == ("/api/v2/US/hardware/42&7", "City=city&State=state")


def test_rewrite_uri_keeps_unmatched_params_after_the_templates_own():
    got = rw("/search?q=fixed", "/api/s", "q=mine&page=2&page=3", "/s")
    assert got == ("/api/search", "q=fixed&page=2&page=3")


def test_rewrite_uri_wildcard_params_expressions_and_encoding():
    assert rw("/files/{*path}", "/api/f/a/b.txt", template="/f/{*path}",
              params={"path": "a/b.txt"})[0] == "/api/files/a/b.txt"
    assert rw("/u/{request.headers.x-user}/x y", "/api/u", api_path="")[0] == "/u//x%20y"
    assert rw("no-slash", "/api/x")[0] == "/api/no-slash"


def test_rewrite_uri_refuses_a_dot_segment():
    ctx = make_ctx(path="/api/u", headers={"x-user": "../admin"}, api=ApiConfig("a", "/api"))
    with pytest.raises(PolicyError) as e:
        run(compile_policy("rewrite-uri", "/users/{request.headers.x-user}"), ctx)
    assert e.value.reason == "ExpressionValueEvaluationFailure"


def test_rewrite_uri_config_errors():
    assert config_errors("rewrite-uri", {}) == [f"{P}.rewrite-uri.template: required"]
    assert config_errors("rewrite-uri", {"template": "/a", "copy-unmatched-params": 2}) == [
        f"{P}.rewrite-uri.copy-unmatched-params: expected true or false, got 2"]
    assert config_errors("rewrite-uri", "/x/{request.bogus}")[0].startswith(
        f"{P}.rewrite-uri.template: ")
    assert config_errors("rewrite-uri", "/x", "outbound") == []   # the engine checks sections
    from apigw_core.gateway.pipeline.registry import lookup
    assert lookup("rewrite-uri").sections == frozenset({"inbound"})


# --- set-method, set-status -----------------------------------------------------------------

def test_set_method():
    ctx = make_ctx()
    run(compile_policy("set-method", "post"), ctx)
    assert ctx.request.method == "POST"
    ctx = make_ctx(headers={"x-m": "PATCH"})
    run(compile_policy("set-method", "{request.headers.x-m}"), ctx)
    assert ctx.request.method == "PATCH"
    ctx = make_ctx(headers={"x-m": "NO WAY"})
    with pytest.raises(PolicyError):
        run(compile_policy("set-method", "{request.headers.x-m}"), ctx)
    assert config_errors("set-method", "GE T") == [
        f"{P}.set-method.method: not a method name: 'GE T'"]
    assert config_errors("set-method", None) == [f"{P}.set-method.method: required"]


def test_set_status():
    ctx = make_ctx(response=response(200))
    run(compile_policy("set-status", {"code": 401, "reason": "Unauthorized!"}, "outbound"), ctx)
    assert (ctx.response.status, ctx.response.reason) == (401, "Unauthorized!")
    ctx = make_ctx(response=response(200))
    run(compile_policy("set-status", {"code": "404"}, "outbound"), ctx)
    assert (ctx.response.status, ctx.response.reason) == (404, "Not Found")
    ctx = make_ctx(query="c=418")
    run(compile_policy("set-status", {"code": "{request.query.c}"}, "on-error"), ctx)
    assert ctx.response.status == 418
    ctx = make_ctx(query="c=abc")
    with pytest.raises(PolicyError):
        run(compile_policy("set-status", {"code": "{request.query.c}"}, "on-error"), ctx)
    assert config_errors("set-status", {"code": 99}) == [
        f"{P}.set-status.code: expected an integer from 100 to 599, got 99"]
    assert config_errors("set-status", {"reason": "x"}) == [f"{P}.set-status.code: required"]


# --- set-body, find-and-replace --------------------------------------------------------------

def test_set_body_constant_replaces_request_body_and_drops_framing():
    ctx = make_ctx(method="POST", headers={"content-length": "3", "content-type": "text/plain"},
                   body=b"old")
    assert run(compile_policy("set-body", "new body"), ctx) is None
    assert ctx.request.body == b"new body"
    assert items(ctx.request.headers) == [("content-type", "text/plain")]


def test_set_body_outbound_on_the_response():
    ctx = make_ctx(response=response(200, {"content-length": "5", "content-encoding": "gzip"}))
    run(compile_policy("set-body", {"value": "{{\"id\": \"{request.id}\"}}"}, "outbound"), ctx)
    assert ctx.response.body == b'{"id": "req-1"}'
    assert items(ctx.response.headers) == []          # a text body is not gzip any more


def test_set_body_reading_the_body_reads_it_first():
    policy = compile_policy("set-body", "<wrap>{request.body}</wrap>")
    assert policy.reads_request_body and not policy.reads_response_body
    ctx = make_ctx(method="POST")
    driver = Driver(request_body="é".encode())
    assert run(policy, ctx, driver) is None
    assert driver.commands == [ReadRequestBody(4 << 20)]
    assert ctx.request.body == "<wrap>é</wrap>".encode()
    policy = compile_policy("set-body", "[{response.body}]", "outbound")
    ctx = make_ctx(response=response(200))
    driver = Driver(backend=FakeBackend(body=b"resp"))
    run(policy, ctx, driver)
    assert driver.commands == [ReadResponseBody(4 << 20)] and ctx.response.body == b"[resp]"


def test_set_body_over_limit_is_the_runtimes_413():
    ctx = make_ctx(method="POST")
    with pytest.raises(PolicyError) as e:
        run(compile_policy("set-body", "{request.body}"), ctx,
            Driver(request_body=b"x" * ((4 << 20) + 1)))
    assert e.value.status == 413


def test_set_body_config_errors():
    assert config_errors("set-body", {"value": "x", "template": "liquid"}) == [
        f"{P}.set-body.template: liquid templates are not supported; write the body as a "
        f"template with {{expressions}}"]
    assert config_errors("set-body", {}) == [f"{P}.set-body.value: required"]
    assert config_errors("set-body", "{oops")[0].startswith(f"{P}.set-body.value: unclosed")
    from apigw_core.gateway.pipeline.registry import lookup
    assert "on-error" not in lookup("set-body").sections


def test_find_and_replace_request_body():
    policy = compile_policy("find-and-replace", {"from": "cat", "to": "dog"})
    assert policy.reads_request_body
    ctx = make_ctx(method="POST", headers={"content-length": "11"})
    driver = Driver(request_body=b"cat and cat")
    assert run(policy, ctx, driver) is None
    assert driver.commands == [ReadRequestBody(4 << 20)]
    assert ctx.request.body == b"dog and dog" and b"content-length" not in ctx.request.headers


def test_find_and_replace_response_body_and_templates():
    policy = compile_policy("find-and-replace", {"from": "{request.query.f}", "to": None},
                            "outbound")
    assert policy.reads_response_body
    ctx = make_ctx(query="f=secret", response=response(200, {"content-length": "14"}))
    run(policy, ctx, Driver(backend=FakeBackend(body=b"a secret thing")))
    assert ctx.response.body == b"a  thing" and b"content-length" not in ctx.response.headers


def test_find_and_replace_leaves_untouched_bodies_alone():
    policy = compile_policy("find-and-replace", {"from": "a", "to": "b"}, "outbound")
    ctx = make_ctx(response=response(200, {"content-encoding": "gzip", "content-length": "3"},
                                     body=b"aaa"))
    run(policy, ctx)
    assert ctx.response.body == b"aaa" and b"content-length" in ctx.response.headers
    ctx = make_ctx(response=response(200, {"content-length": "3"}, body=b"xyz"))
    run(policy, ctx)
    assert b"content-length" in ctx.response.headers     # nothing found: nothing changed
    assert run(compile_policy("find-and-replace", {"from": "a", "to": "b"}, "on-error"),
               make_ctx()) is None                       # no response: nothing to edit


def test_find_and_replace_config_errors():
    assert config_errors("find-and-replace", {"from": "", "to": "x"}) == [
        f"{P}.find-and-replace.from: must not be empty"]
    assert config_errors("find-and-replace", {"from": "a"}) == [
        f"{P}.find-and-replace.to: required"]


# --- through the engine (program + run, in memory) -------------------------------------------

FIVE = {"inbound": [
    {"cors": {"allowed-origins": ["https://app.example"], "allowed-methods": ["GET", "PUT"]}},
    {"check-header": {"name": "x-client", "failed-check-httpcode": 401}},
    {"ip-filter": {"action": "allow", "address": ["127.0.0.1"]}},
    {"set-header": {"name": "x-gw", "value": "{request.ip}"}}],
    "outbound": [{"set-header": {"name": "x-served-by", "value": "apigw"}}]}


def five_policy_program():
    from helpers import program_of, sections
    return program_of([ApiConfig("orders", path="/orders")], policies=sections(**FIVE))


def test_five_policies_through_the_engine():
    from helpers import run_program
    ctx = make_ctx(headers={"x-client": "1", "origin": "https://app.example"})
    result, ctx, driver = run_program(five_policy_program(), ctx)
    assert result.kind == "response" and result.forwarded
    seen_headers = dict(driver.backend.seen[0][4])
    assert seen_headers[b"x-gw"] == b"127.0.0.1"
    assert ctx.response.headers.get(b"x-served-by") == b"apigw"
    assert (b"access-control-allow-origin", b"https://app.example") in ctx.response_headers


def test_five_policies_refusals_and_preflight():
    from helpers import run_program
    result, ctx, _ = run_program(five_policy_program(), make_ctx(headers={"x-client": "1"},
                                                                 ip="10.9.9.9"))
    assert result.kind == "error" and ctx.response.status == 403
    assert json.loads(ctx.response.body) == {
        "statusCode": 403, "message": "Caller IP address 10.9.9.9 is not allowed. Access denied."}
    assert result.error.reason == "CallerIpNotAllowed"
    pre = make_ctx(method="OPTIONS", headers={"origin": "https://app.example",
                                              "access-control-request-method": "PUT"})
    result, ctx, driver = run_program(five_policy_program(), pre)
    assert result.kind == "answer" and result.answer.status == 200 and driver.commands == []


def test_check_config_paths_and_sections():
    from helpers import config_errors as check, sections
    apis = [ApiConfig("a", path="/a"), ApiConfig("b", path="/b"),
            ApiConfig("c", path="/c", policies=sections(
                inbound=[{"set-header": {"name": "x", "exists-action": "replace"}}],
                outbound=[{"cors": {"allowed-origins": "*"}}]))]
    errs = check(apis)
    assert "apis[2].policies.inbound[0].set-header.exists-action: expected one of " \
           "override, skip, append, delete" in errs
    assert any(e.startswith("apis[2].policies.outbound[0].cors") for e in errs), errs
