"""cors, sans-IO: preflights answered by the policy, allowed actual requests get their
Access-Control-* fields through ctx.response_headers, unmatched requests as APIM's cors
page says (terminate-unmatched-request), config errors with their paths.

Note for the engine / runtime (from the policies helper): `Context.response_headers` was
added to contract.py for this policy.  Inbound cors appends the fields there; the runtime
puts them on every client response (backend, return-response, on-error, local error
replies), replacing the response's own fields of those names except `vary`.  APIM also runs
only `cors` on a preflight: if cors is not first in inbound, the engine should still run it
before the other policies for OPTIONS + Origin + Access-Control-Request-Method.
"""

from __future__ import annotations

import pytest

from apigw_core.gateway.pipeline.contract import Answer
from apigw_core.gateway.pipeline.policies import access  # noqa: F401  (registers)

from helpers import make_ctx
from policy_kit import compile_policy, config_errors, run

Q = "apis[0].policies.inbound[0].cors"
BODY = {"allow-credentials": True,
        "allowed-origins": ["http://localhost:8080/", "https://example.com"],
        "allowed-methods": ["GET", "POST", "PATCH"], "preflight-result-max-age": 300,
        "allowed-headers": ["Content-Type", "x-zumo-auth"],
        "expose-headers": ["x-request-id", "x-zumo-version"]}


def preflight(origin="https://example.com", method="PATCH", headers=None, body=BODY):
    h = [("origin", origin), ("access-control-request-method", method)]
    if headers is not None:
        h.append(("access-control-request-headers", headers))
    ctx = make_ctx(method="OPTIONS", headers=h)
    return run(compile_policy("cors", body), ctx), ctx


def fields(answer):
    return {n.decode(): v.decode() for n, v in answer.headers}


def test_preflight_matched_is_answered_with_allow_fields():
    ans, ctx = preflight(headers="content-type, X-Zumo-Auth")
    assert isinstance(ans, Answer) and ans.status == 200 and ans.body == b""
    assert fields(ans) == {
        "access-control-allow-origin": "https://example.com",
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "PATCH",
        "access-control-allow-headers": "content-type,x-zumo-auth",
        "access-control-max-age": "300",
        "vary": "Origin"}
    assert ctx.response_headers == []


def test_origin_default_port_and_trailing_slash_normalised():
    ans, _ = preflight(origin="http://LOCALHOST:8080", method="GET")
    assert fields(ans)["access-control-allow-origin"] == "http://LOCALHOST:8080"
    ans, _ = preflight(origin="https://example.com:443", method="GET")
    assert "access-control-allow-origin" in fields(ans)


@pytest.mark.parametrize("origin,method,headers", [
    ("https://evil.example", "GET", None),        # origin
    ("http://example.com", "GET", None),          # scheme (port 80 vs 443)
    ("https://example.com", "DELETE", None),      # method
    ("https://example.com", "GET", "x-other"),    # header
    ("null", "GET", None),
])
def test_preflight_unmatched_gets_empty_200(origin, method, headers):
    ans, _ = preflight(origin, method, headers)
    assert ans == Answer(200)


def test_preflight_unmatched_goes_on_without_terminate():
    ans, ctx = preflight("https://evil.example", body={**BODY, "terminate-unmatched-request": False})
    assert ans is None and ctx.response_headers == []


def test_default_methods_are_get_and_post_and_star_allows_all():
    body = {"allowed-origins": ["*"]}
    assert "access-control-allow-origin" in fields(preflight(method="POST", body=body)[0])
    assert preflight(method="PUT", body=body)[0] == Answer(200)
    ans, _ = preflight(method="PUT", headers="x-anything",
                       body={**body, "allowed-methods": ["*"], "allowed-headers": ["*"]})
    f = fields(ans)
    assert f["access-control-allow-origin"] == "*" and "vary" not in f
    assert "access-control-max-age" not in f and "access-control-allow-credentials" not in f


def actual(method="GET", origin="https://example.com", body=BODY):
    h = [("origin", origin)] if origin is not None else []
    ctx = make_ctx(method=method, headers=h)
    return run(compile_policy("cors", body), ctx), ctx


def test_actual_request_allowed_records_response_fields():
    ans, ctx = actual("POST")
    assert ans is None
    assert ctx.response_headers == [
        (b"access-control-allow-origin", b"https://example.com"),
        (b"access-control-allow-credentials", b"true"),
        (b"access-control-expose-headers", b"x-request-id,x-zumo-version"),
        (b"vary", b"Origin")]


def test_actual_request_star_origin():
    ans, ctx = actual(body={"allowed-origins": "*"})
    assert ans is None and ctx.response_headers == [(b"access-control-allow-origin", b"*")]


def test_no_origin_is_not_cors():
    ans, ctx = actual(origin=None)
    assert ans is None and ctx.response_headers == []
    assert run(compile_policy("cors", BODY), make_ctx(method="OPTIONS")) is None


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_unmatched_simple_request_terminated(method):
    ans, ctx = actual(method, "https://evil.example")
    assert ans == Answer(200) and ctx.response_headers == []


def test_unmatched_simple_request_goes_on_without_terminate():
    ans, ctx = actual("GET", "https://evil.example",
                      {**BODY, "terminate-unmatched-request": "false"})
    assert ans is None and ctx.response_headers == []


def test_unmatched_other_methods_go_on_without_fields():
    ans, ctx = actual("POST", "https://evil.example")
    assert ans is None and ctx.response_headers == []
    # OPTIONS without Access-Control-Request-Method is not a preflight
    ctx = make_ctx(method="OPTIONS", headers={"origin": "https://evil.example"})
    assert run(compile_policy("cors", BODY), ctx) is None


def test_apim_element_shapes():
    body = {"allowed-origins": {"origin": ["https://example.com"]},
            "allowed-methods": {"preflight-result-max-age": 60, "method": ["PUT"]},
            "allowed-headers": {"header": "x-a"}, "expose-headers": {"header": ["x-b"]}}
    ans, _ = preflight(method="PUT", headers="x-a", body=body)
    f = fields(ans)
    assert f["access-control-allow-methods"] == "PUT" and f["access-control-max-age"] == "60"
    _, ctx = actual(body=body)
    assert (b"access-control-expose-headers", b"x-b") in ctx.response_headers


def test_config_errors():
    errs = config_errors("cors", {"allow-credentials": True, "allowed-origins": ["*", "ftp:/x"],
                                  "allowed-methods": ["GET", "B AD"],
                                  "preflight-result-max-age": -1, "allowed-headers": [3]})
    assert f"{Q}.allowed-origins: * cannot be used with allow-credentials: true " \
           f"(browsers refuse it)" in errs
    assert f"{Q}.allowed-origins[1]: expected * or an origin (scheme://host[:port]), " \
           f"got 'ftp:/x'" in errs
    assert f"{Q}.allowed-methods[1]: expected a method name or *, got 'B AD'" in errs
    assert f"{Q}.preflight-result-max-age: expected an integer from 0 to 2147483647, " \
           f"got -1" in errs
    assert f"{Q}.allowed-headers[0]: expected a header name or *, got 3" in errs
    assert config_errors("cors", {}) == [f"{Q}.allowed-origins: at least one origin (or *) "
                                         f"is required"]
    assert f"{Q}.allowed-methods: at least one method is required" in config_errors(
        "cors", {"allowed-origins": "*", "allowed-methods": []})
    assert f"{Q}.allowed-origins[0]: expected * or an origin (scheme://host[:port]), got " \
           f"'https://a.example/path'" in config_errors(
               "cors", {"allowed-origins": ["https://a.example/path"]})
