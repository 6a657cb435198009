"""`emit-metric` and `trace` through a running gateway: the custom counter appears on
`/metrics` with its dimensions as labels and values capped by
`telemetry.metrics.max-dimension-values` (then `other`); the trace message is logged at
its severity with the request's trace id kept in the access log."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from support import wait_until


def test_emit_metric_and_trace(tmp_path, gateway, echo):
    gw = gateway({
        "listeners": [{"bind": "127.0.0.1:0"}],
        "backends": {"echo": {"url": echo.url}},
        "apis": [{"name": "shop", "path": "/shop", "backend": "echo", "policies": {
            "inbound": [
                {"emit-metric": {"name": "hits", "namespace": "shop", "value": 2,
                                 "dimensions": [{"name": "API ID"},
                                                {"name": "tier",
                                                 "value": "{request.headers.x-tier}"}]}},
                {"trace": {"source": "shop", "severity": "error",
                           "message": "tier {request.headers.x-tier}"}}]}}],
        "admin": {"bind": "127.0.0.1:0"},
        "telemetry": {"metrics": {"max-dimension-values": 2}},
    })
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        for tier in ("gold", "gold", "silver", "bronze", "iron"):
            assert c.get("/shop/x", headers={"x-tier": tier}).status_code == 200

    def custom():
        text = httpx.get(f"http://127.0.0.1:{gw.admin_port}/metrics").text
        out = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name == "apigw_custom_shop_hits_total":
                    out[(s.labels["api_id"], s.labels["tier"])] = s.value
        return out if sum(out.values()) == 10 else None
    # the first two label sets, then every value of a set beyond them is `other`
    assert wait_until(custom) == {("shop", "gold"): 4, ("shop", "silver"): 2,
                                  ("other", "other"): 4}
    assert wait_until(lambda: sum("ERROR trace shop: tier" in line for line in gw.output) == 5)
