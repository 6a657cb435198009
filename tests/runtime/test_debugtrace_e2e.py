"""APIM request tracing through a running gateway, with httpx: credentials from
`POST /debug-credentials`, a traced request gets `Apim-Trace-Id`, `GET /traces/{id}`
shows routing, each policy of a 5-policy pipeline in order (scope, section, path,
duration, decision), the backend attempt and the trace policy's message; wrong-API,
expired and forged tokens get APIM's headers and no trace; without the header nothing
is traced."""

from __future__ import annotations

import time

import httpx
import pytest

POLICIES = {
    "inbound": [
        {"set-variable": {"name": "tier", "value": "gold"}},
        {"set-header": {"name": "x-one", "value": ["1"]}},
        {"trace": {"source": "shop", "severity": "information", "message": "hello trace"}},
        {"set-query-parameter": {"name": "q", "value": ["2"]}},
    ],
    "outbound": [{"set-header": {"name": "x-out", "value": ["3"]}}],
}


def _config(echo_url: str) -> dict:
    return {"listeners": [{"bind": "127.0.0.1:0", "protocols": ["http1", "h2c"]}],
            "backends": {"echo": {"url": echo_url}},
            "apis": [{"name": "shop", "path": "/shop", "backend": "echo",
                      "policies": POLICIES},
                     {"name": "plain", "path": "/plain", "backend": "echo"}],
            "admin": {"bind": "127.0.0.1:0"}}


@pytest.fixture
def gw(gateway, echo):
    return gateway(_config(echo.url))


def admin(gw) -> str:
    return f"http://127.0.0.1:{gw.admin_port}"


def credentials(gw, api: str) -> dict:
    r = httpx.post(admin(gw) + "/debug-credentials", json={"api": api})
    assert r.status_code == 200, r.text
    return r.json()


def test_trace_shows_every_policy_in_order(gw):
    cred = credentials(gw, "shop")
    assert cred["expires"].endswith("Z")
    for http2 in (False, True):
        with httpx.Client(base_url=gw.url, http1=not http2, http2=http2, timeout=10) as c:
            r = c.get("/shop/x", headers={"Apim-Debug-Authorization": cred["token"]})
        assert r.status_code == 200 and r.headers["x-out"] == "3"
        assert "apim-debug-authorization" not in r.json()["headers"]   # not forwarded
        tid = r.headers["apim-trace-id"]
        t = httpx.get(f"{admin(gw)}/traces/{tid}")
        assert t.status_code == 200
        doc = t.json()
        assert doc["id"] == tid and doc["api"] == "shop" and doc["status"] == 200
        kinds = [e["kind"] for e in doc["entries"]]
        assert kinds[0] == "routing" and doc["entries"][0]["backend"] == "echo"
        pol = [e for e in doc["entries"] if e["kind"] == "policy"]
        assert [(p["policy"], p["section"]) for p in pol] == [
            ("set-variable", "inbound"), ("set-header", "inbound"), ("trace", "inbound"),
            ("set-query-parameter", "inbound"), ("forward-request", "backend"),
            ("set-header", "outbound")]
        assert all(p["decision"] == "continue" and p["duration_ms"] >= 0 and p["scope"]
                   for p in pol)
        assert pol[1]["path"] != pol[5]["path"]
        # the trace policy's message sits between its own step and the next one
        i_msg = kinds.index("trace")
        assert doc["entries"][i_msg]["message"] == "hello trace"
        (backend,) = [e for e in doc["entries"] if e["kind"] == "backend"]
        assert backend["attempt"] == 1 and backend["duration_ms"] >= 0
        at = [e["at_ms"] for e in doc["entries"]]
        assert at == sorted(at)
        assert doc["entries"].index(pol[2]) < i_msg < doc["entries"].index(pol[3])


def test_direct_path_is_traced_too(gw):
    cred = credentials(gw, "plain")
    r = httpx.get(gw.url + "/plain/a", headers={"Apim-Debug-Authorization": cred["token"]})
    assert r.status_code == 200
    doc = httpx.get(f"{admin(gw)}/traces/{r.headers['apim-trace-id']}").json()
    assert [e["kind"] for e in doc["entries"]] == ["routing", "backend"]


def test_wrong_api_expired_forged_and_absent(gw):
    shop = credentials(gw, "shop")["token"]
    r = httpx.get(gw.url + "/plain/a", headers={"Apim-Debug-Authorization": shop})
    assert r.status_code == 200
    assert r.headers["apim-debug-authorization-wrongapi"] == "true"
    assert "apim-trace-id" not in r.headers

    # a token whose expiry was edited: its MAC no longer matches
    name, exp, mac = shop.split(".")
    forged = f"{name}.{int(exp) + 3600}.{mac}"
    for bad in (forged, "garbage", ""):
        r = httpx.get(gw.url + "/shop/a", headers={"Apim-Debug-Authorization": bad})
        assert r.status_code == 200
        assert r.headers["apim-debug-authorization-expired"] == "true"
        assert "apim-trace-id" not in r.headers

    r = httpx.get(gw.url + "/shop/a")
    assert not any(h.startswith("apim-") for h in r.headers)

    assert httpx.get(f"{admin(gw)}/traces/nope").status_code == 404


def test_credentials_errors(gw):
    a = admin(gw)
    assert httpx.post(a + "/debug-credentials", json={"api": "nope"}).status_code == 404
    assert httpx.post(a + "/debug-credentials", json={"apis": "shop"}).status_code == 400
    assert httpx.post(a + "/debug-credentials", content=b"{").status_code == 400
    assert httpx.get(a + "/debug-credentials").status_code == 405


def test_expired_token():
    # expiry (an hour) in-process: a token issued an hour and a second ago
    from apigw_core.runtime.debugtrace import DebugTracing
    d = DebugTracing(["shop"])
    old = d.issue("shop", now=time.time() - 3601)["token"]
    assert d.check(old.encode()) == (None, "expired")
    fresh = d.issue("shop")["token"]
    assert d.check(fresh.encode()) == ("shop", "")
    assert DebugTracing(["shop"], key=b"k" * 32).check(fresh.encode()) == (None, "invalid")
