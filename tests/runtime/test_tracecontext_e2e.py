"""Trace context through a running gateway, as the echo backend saw it: a client's valid
`traceparent` keeps its trace id (the gateway's hop is the new parent) and `tracestate`
goes along; a missing or broken one starts a new trace; HTTP/2 and the pipeline path do
the same; gateway-made answers carry the `traceparent` of their trace."""

from __future__ import annotations

import httpx

from apigw_core.gateway.tracecontext import parse_traceparent

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
VALID = f"00-{TRACE}-00f067aa0ba902b7-01"


def _config(echo_url: str) -> dict:
    return {"listeners": [{"bind": "127.0.0.1:0", "protocols": ["http1", "h2c"]}],
            "backends": {"echo": {"url": echo_url}},
            "apis": [{"name": "plain", "path": "/plain", "backend": "echo"},
                     {"name": "pol", "path": "/pol", "backend": "echo", "policies": {
                         "inbound": [{"set-header": {"name": "x-p", "value": ["1"]}}]}}],
            "admin": {"bind": "127.0.0.1:0"}}


def _seen(r: httpx.Response) -> dict:
    assert r.status_code == 200, r.text
    return r.json()["headers"]


def test_kept_started_replaced(gateway, echo):
    gw = gateway(_config(echo.url))
    for http2 in (False, True):
        with httpx.Client(base_url=gw.url, http1=not http2, http2=http2, timeout=10) as c:
            for path in ("/plain/a", "/pol/a"):
                h = _seen(c.get(path, headers={"traceparent": VALID,
                                               "tracestate": "congo=t61rcWkgMzE"}))
                trace, parent, flags = parse_traceparent(h["traceparent"].encode())
                assert trace.decode() == TRACE and flags == b"01"
                assert parent != b"00f067aa0ba902b7"       # the gateway's hop
                assert h["tracestate"] == "congo=t61rcWkgMzE"

                h = _seen(c.get(path))
                trace, parent, flags = parse_traceparent(h["traceparent"].encode())
                assert trace.decode() != TRACE and "tracestate" not in h

                h = _seen(c.get(path, headers={"traceparent": "00-xyz-01",
                                               "tracestate": "a=b"}))
                assert parse_traceparent(h["traceparent"].encode()) is not None
                assert "tracestate" not in h
    # two requests never share a started trace
    a = _seen(httpx.get(f"{gw.url}/plain/a"))["traceparent"]
    b = _seen(httpx.get(f"{gw.url}/plain/a"))["traceparent"]
    assert a.split("-")[1] != b.split("-")[1]


def test_gateway_answers_carry_their_trace(gateway, echo):
    gw = gateway(_config(echo.url))
    r = httpx.get(f"{gw.url}/nothing", headers={"traceparent": VALID})
    assert r.status_code == 404
    assert r.json() == {"statusCode": 404, "message": "no API matches this request"}
    trace, _, _ = parse_traceparent(r.headers["traceparent"].encode())
    assert trace.decode() == TRACE
