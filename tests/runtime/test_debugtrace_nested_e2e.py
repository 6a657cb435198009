"""Request tracing of nested policies through a running gateway (httpx): a pipeline of
global and API policies with a nested choose shows every policy that ran in order (nested
ones with their own APIM paths), each with its scope and the values its expressions
produced (each `when`'s condition, set-header / set-variable values, rate-limit-by-key's
counter key), in both the flat `entries` and APIM's `traceEntries` shape; requests
without a token record nothing; secrets (secret named values, Authorization, the
subscription key, the debug token) never appear in a trace."""

from __future__ import annotations

import json
import re

import httpx
import pytest

SECRET = "hunter2-very-secret"
BEARER = "Bearer eyJhbGciOi.secret-bearer-value"
SUB_KEY = "sub-key-0123456789abcdef"

GLOBAL = {"inbound": [{"set-header": {"name": "x-global", "value": ["{{plain}}"]}}]}
SHOP = {
    "inbound": [
        "base",
        {"set-variable": {"name": "tier", "value": "{request.headers.x-tier}"}},
        {"choose": {
            "when": [
                {"condition": 'request.method == "POST"',
                 "policies": [{"set-header": {"name": "x-a", "value": ["post"]}}]},
                {"condition": 'request.headers.x-tier == "gold"',
                 "policies": [
                     {"set-header": {"name": "x-b", "value": ["gold-{request.method}"]}},
                     {"set-header": {"name": "x-pw", "value": ["{{pw}}"]}},
                     {"set-header": {"name": "x-auth-copy",
                                     "value": ["{request.headers.authorization}"]}}]}],
            "otherwise": [{"set-header": {"name": "x-c", "value": ["none"]}}]}},
        {"rate-limit-by-key": {"calls": 1000, "renewal-period": 60,
                               "counter-key": "{request.headers.x-tier}-key"}},
    ],
    "outbound": [{"set-header": {"name": "x-out", "value": ["s{response.status}"]}}],
}


def _config(echo_url: str) -> dict:
    return {"listeners": [{"bind": "127.0.0.1:0"}],
            "admin": {"bind": "127.0.0.1:0"},
            "named-values": {"pw": {"value": SECRET, "secret": True}, "plain": "visible"},
            "backends": {"echo": {"url": echo_url}},
            "policies": GLOBAL,
            "products": {"gold": {"apis": ["shop"], "subscription-required": True}},
            "subscriptions": [{"id": "s1", "product": "gold", "primary-key": SUB_KEY}],
            "apis": [{"name": "shop", "path": "/shop", "backend": "echo",
                      "policies": SHOP}]}


@pytest.fixture
def gw(gateway, echo):
    return gateway(_config(echo.url))


def admin(gw) -> str:
    return f"http://127.0.0.1:{gw.admin_port}"


def token(gw) -> str:
    r = httpx.post(admin(gw) + "/debug-credentials", json={"api": "shop"})
    assert r.status_code == 200, r.text
    return r.json()["token"]


def traced_get(gw, tok: str, tier: str = "gold") -> httpx.Response:
    return httpx.get(gw.url + "/shop/x", timeout=10, headers={
        "apim-debug-authorization": tok, "x-tier": tier, "authorization": BEARER,
        "ocp-apim-subscription-key": SUB_KEY})


def test_nested_policies_in_order_with_scopes_and_values(gw):
    r = traced_get(gw, token(gw))
    assert r.status_code == 200, r.text
    assert r.json()["headers"]["x-b"] == "gold-GET" and r.headers["x-out"] == "s200"
    doc = httpx.get(f"{admin(gw)}/traces/{r.headers['apim-trace-id']}").json()
    pol = [e for e in doc["entries"] if e["kind"] == "policy"]
    assert [(p["policy"], p["scope"], p["section"], p["apim_path"]) for p in pol] == [
        ("set-header", "global", "inbound", "set-header[1]"),
        ("set-variable", "api", "inbound", "set-variable[1]"),
        ("choose", "api", "inbound", "choose[1]"),
        ("set-header", "api", "inbound", "choose[1]\\when[2]\\set-header[1]"),
        ("set-header", "api", "inbound", "choose[1]\\when[2]\\set-header[2]"),
        ("set-header", "api", "inbound", "choose[1]\\when[2]\\set-header[3]"),
        ("rate-limit-by-key", "api", "inbound", "rate-limit-by-key[1]"),
        ("forward-request", "global", "backend", "forward-request[1]"),
        ("set-header", "api", "outbound", "set-header[1]"),
    ]
    assert pol[3]["path"] == "apis[0].policies.inbound[2].choose.when[1].policies[0]"
    assert all(p["decision"] == "continue" and p["duration_ms"] >= 0 for p in pol)

    def values(p):
        return [(x["kind"], x["value"]) for x in p.get("expressions", ())]
    assert values(pol[0]) == [("constant", "visible")]          # a plain named value
    assert values(pol[1]) == [("template", "gold")]
    assert values(pol[2]) == [("condition", False), ("condition", True)]   # each when
    assert values(pol[3]) == [("template", "gold-GET")]
    assert values(pol[6]) == [("template", "gold-key")]         # the counter key
    assert values(pol[8]) == [("template", "s200")]
    # the parent starts before its children and lasts at least as long as they do
    assert pol[2]["at_ms"] <= pol[3]["at_ms"] and pol[2]["duration_ms"] >= \
        pol[3]["duration_ms"]
    # APIM's shape: sections, each entry {source, timestamp, elapsed, data}
    te = doc["traceEntries"]
    assert set(te) == {"inbound", "backend", "outbound", "on-error"}
    assert [e["source"] for e in te["inbound"]] == [
        "routing", "set-header", "set-variable", "choose", "set-header", "set-header",
        "set-header", "rate-limit-by-key"]
    assert [e["source"] for e in te["outbound"]] == ["set-header"]
    assert "forward-request" in [e["source"] for e in te["backend"]]
    for e in te["inbound"]:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", e["timestamp"])
        assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{7}", e["elapsed"])
    assert te["inbound"][3]["data"]["expressions"][1]["value"] is True
    assert te["inbound"][4]["data"]["apim_path"] == "choose[1]\\when[2]\\set-header[1]"


def test_otherwise_branch_and_its_conditions(gw):
    r = traced_get(gw, token(gw), tier="silver")
    assert r.status_code == 200 and r.json()["headers"]["x-c"] == "none"
    doc = httpx.get(f"{admin(gw)}/traces/{r.headers['apim-trace-id']}").json()
    pol = [e for e in doc["entries"] if e["kind"] == "policy"]
    choose = next(p for p in pol if p["policy"] == "choose")
    assert [x["value"] for x in choose["expressions"]] == [False, False]
    assert "choose[1]\\otherwise\\set-header[1]" in [p["apim_path"] for p in pol]
    assert not any("\\when[" in p["apim_path"] for p in pol)


def test_secrets_never_in_a_trace(gw):
    tok = token(gw)
    r = traced_get(gw, tok)
    assert r.status_code == 200
    sent = r.json()["headers"]                          # what the backend got
    assert sent["x-pw"] == SECRET                       # the policy did use the secret
    assert sent["x-auth-copy"] == BEARER
    body = httpx.get(f"{admin(gw)}/traces/{r.headers['apim-trace-id']}").text
    for secret in (SECRET, BEARER, "secret-bearer-value", SUB_KEY, tok):
        assert secret not in body
    doc = json.loads(body)
    pol = [e for e in doc["entries"] if e["kind"] == "policy"]
    assert [x["value"] for x in pol[4]["expressions"]] == ["{{pw}}"]   # named, not shown
    assert [x["value"] for x in pol[5]["expressions"]] == ["REDACTED"]


def test_untraced_requests_record_nothing(gw):
    tok = token(gw)                # credentials issued: requests are looked at
    r = traced_get(gw, tok)
    assert r.status_code == 200
    kept = httpx.get(admin(gw) + "/traces/").json()["traces"]
    assert kept == [r.headers["apim-trace-id"]]
    for _ in range(5):
        u = httpx.get(gw.url + "/shop/x", timeout=10, headers={
            "x-tier": "gold", "ocp-apim-subscription-key": SUB_KEY})
        assert u.status_code == 200 and "apim-trace-id" not in u.headers
    assert httpx.get(admin(gw) + "/traces/").json()["traces"] == kept
    # a bad token: no trace either
    bad = traced_get(gw, tok[:-2] + "xx")
    assert bad.headers.get("apim-debug-authorization-expired") == "true"
    assert "apim-trace-id" not in bad.headers
    assert httpx.get(admin(gw) + "/traces/").json()["traces"] == kept
    assert httpx.get(admin(gw) + "/traces/../../etc/passwd").status_code == 404
