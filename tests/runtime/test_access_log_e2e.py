"""The JSON access log of a running gateway: one line per request, on disk within a
second, every key the issue names, with the values of what happened (the pipeline's
operation, product and subscription, the backend's address and attempts, the failure's
reason); the `statuses` and `sample` filters; `path: "-"` is stdout; and no secret in it:
not the subscription key (header or query, whose value is redacted in the path), not
Authorization, not a named value, not even through a `trace` policy's message."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from backends import Refused
from support import wait_until

KEYS = {"time", "request_id", "trace_id", "client_ip", "method", "host", "path", "protocol",
        "status", "bytes_in", "bytes_out", "duration_ms", "backend_duration_ms",
        "client_duration_ms", "api", "operation", "product", "subscription_id", "backend",
        "upstream_address", "attempts", "last_error_reason", "last_error_message",
        "user_agent"}
SECRETS = ("alice-primary-key-123", "Bearer tok-987654", "s3cr3t-named-value", "vkey-456")


def _lines(path: Path, n: int) -> list[dict]:
    def ready():
        if not path.exists():
            return None
        lines = path.read_text().splitlines()
        return lines if len(lines) >= n else None
    return [json.loads(x) for x in wait_until(ready, message=f"{n} access-log lines")]


def _config(echo_url: str, down_url: str, log_path: str, **log) -> dict:
    return {
        "listeners": [{"bind": "127.0.0.1:0", "protocols": ["http1", "h2c"]}],
        "backends": {"echo": {"url": echo_url}, "down": {"url": down_url}},
        "named-values": {"token": "s3cr3t-named-value"},
        "products": {"starter": {"apis": ["orders"], "subscription-required": True}},
        "subscriptions": [{"id": "alice", "product": "starter",
                           "primary-key": "alice-primary-key-123"},
                          {"id": "v", "api": "vault", "scope": "api",
                           "primary-key": "vkey-456"}],
        "apis": [
            {"name": "orders", "path": "/orders", "backend": "echo",
             "operations": [{"name": "get-order", "method": "GET", "url-template": "/{id}"}],
             "policies": {"inbound": ["base",
                 {"set-header": {"name": "x-token", "value": ["{{token}}"]}},
                 {"trace": {"source": "orders", "severity": "information",
                            "message": "auth={request.headers.authorization} "
                                       "token={{token}} id={request.params.id}",
                            "metadata": [{"name": "key",
                                          "value": "{request.headers.ocp-apim-subscription-key}"}]}}]}},
            {"name": "vault", "path": "/vault", "backend": "echo",
             "subscription-key": {"header": "X-Vault-Key", "query": "vkey"}},
            {"name": "down", "path": "/down", "backend": "down"},
        ],
        "admin": {"bind": "127.0.0.1:0"},
        "telemetry": {"access-log": {"path": log_path, **log}},
    }


def test_lines_carry_the_fields_and_no_secret(tmp_path, gateway, echo):
    down = Refused()
    log = tmp_path / "access.log"
    try:
        gw = gateway(_config(echo.url, down.url, str(log)))
        with httpx.Client(base_url=gw.url, timeout=10) as c:
            r = c.get("/orders/7?x=1", headers={
                "ocp-apim-subscription-key": "alice-primary-key-123",
                "authorization": "Bearer tok-987654", "user-agent": "telemetry-test/1",
                "x-request-id": "rid-1",
                "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
            assert r.status_code == 200
            assert c.get("/orders/8?subscription-key=alice-primary-key-123").status_code == 200
            assert c.post("/vault/a?vkey=vkey-456&z=2", content=b"12345").status_code == 200
            assert c.post("/down/x", content=b"12345").status_code == 502
        lines = _lines(log, 4)
        for line in lines:
            assert KEYS <= line.keys()
            assert len(line["trace_id"]) == 32 and line["client_ip"] == "127.0.0.1"
            assert line["time"].endswith("Z") and line["protocol"] == "HTTP/1.1"
        a, b, v, d = lines
        assert a["request_id"] == "rid-1" and a["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert (a["method"], a["path"], a["status"], a["api"], a["operation"], a["product"],
                a["subscription_id"], a["backend"], a["attempts"], a["user_agent"]) == (
            "GET", "/orders/7?x=1", 200, "orders", "get-order", "starter", "alice", "echo",
            1, "telemetry-test/1")
        assert a["upstream_address"] == f"127.0.0.1:{echo.port}"
        assert a["bytes_out"] > 0 and a["duration_ms"] >= a["backend_duration_ms"] > 0
        assert a["traces"][0]["source"] == "orders"
        assert "id=7" in a["traces"][0]["message"]
        assert "{{token}}" in a["traces"][0]["message"]
        assert b["path"] == "/orders/8?subscription-key=REDACTED"
        assert v["path"] == "/vault/a?vkey=REDACTED&z=2"
        assert (v["method"], v["bytes_in"], v["subscription_id"]) == ("POST", 5, "v")
        assert (d["status"], d["last_error_reason"], d["backend"]) == \
            (502, "BackendConnectionFailure", "down")
        assert d["last_error_message"] == "backend connection failed"
        text = log.read_text() + "".join(gw.output)
        for secret in SECRETS:
            assert secret not in text, secret
    finally:
        down.close()


def test_statuses_and_sample_filters(tmp_path, gateway, echo):
    down = Refused()
    try:
        only_errors = tmp_path / "errors.log"
        gw = gateway(_config(echo.url, down.url, str(only_errors), statuses=["500-599", 404]))
        with httpx.Client(base_url=gw.url, timeout=10) as c:
            for _ in range(3):
                assert c.get("/orders/1", headers={
                    "ocp-apim-subscription-key": "alice-primary-key-123"}).status_code == 200
            assert c.get("/nothing").status_code == 404
            assert c.get("/down/a").status_code == 502
            assert c.get("/orders/1").status_code == 401   # not in the ranges
        lines = _lines(only_errors, 2)
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{gw.admin_port}/stats").json()
                   ["access_log"]["written"] == 2)
        assert [x["status"] for x in lines] == [404, 502]
        none = tmp_path / "none.log"
        gw2 = gateway(_config(echo.url, down.url, str(none), sample=0.0))
        for _ in range(5):
            assert httpx.get(f"{gw2.url}/nothing").status_code == 404
        wait_until(lambda: len(httpx.get(f"http://127.0.0.1:{gw2.admin_port}/stats")
                               .json()["recent"]) == 5)
        assert not none.exists() or none.read_text() == ""
    finally:
        down.close()


def test_stdout(gateway, echo):
    down = Refused()
    try:
        gw = gateway(_config(echo.url, down.url, "-"))
        assert httpx.get(f"{gw.url}/nothing/here").status_code == 404

        def logged():
            for line in gw.output:
                if line.startswith("{"):
                    doc = json.loads(line)
                    if doc.get("path") == "/nothing/here":
                        return doc
            return None
        assert wait_until(logged)["status"] == 404
    finally:
        down.close()


def test_an_unwritable_log_fails_the_start(tmp_path):
    from procs import _start, write_config
    path = write_config(tmp_path, {"listeners": [{"bind": "127.0.0.1:0"}],
                                   "telemetry": {"access-log": {
                                       "path": str(tmp_path / "no" / "such" / "dir.log")}}})
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "apigw_core", "serve", str(path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert "access log" in r.stderr and "Traceback" not in r.stderr
