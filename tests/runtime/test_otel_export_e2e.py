"""The OTLP exporter of the event loop (runtime/otel.py, runtime/otlp_http.py) against a
real keep-alive OTLP/HTTP receiver (opentelemetry-proto decodes what arrives): a
collector that is down, then comes up (failures counted, then spans arrive); one
connection kept alive across exports; `--workers 2` (both workers export, parents
right); a `retry` policy's attempts as sibling CLIENT spans under one SERVER span; a full
queue drops and counts (`apigw_otel_spans_dropped`)."""

from __future__ import annotations

import re
import socket

import httpx
import pytest

pytest.importorskip("opentelemetry.proto")
from backends import Backend  # noqa: E402
from otlp_receiver import KeepAliveReceiver  # noqa: E402
from retry_backend import RetryBackend  # noqa: E402
from support import wait_until  # noqa: E402

SERVER, CLIENT = 2, 3


def _config(backend_url: str, endpoint: str, apis: list | None = None) -> dict:
    return {"listeners": [{"bind": "127.0.0.1:0"}],
            "backends": {"b": {"url": backend_url, "timeout": "10s"}},
            "apis": apis or [{"name": "plain", "path": "/plain", "backend": "b"}],
            "admin": {"bind": "127.0.0.1:0"},
            "telemetry": {"otel": {"endpoint": endpoint, "sampler": "parentbased_always_on"}}}


def _counter(gw, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{gw.admin_port}/metrics").text
    m = re.search(rf"^{name}_total (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tp(i: int) -> tuple[str, str, str]:
    trace, parent = "%032x" % (0xABC0000 + i), "%016x" % (0xDEF000 + i)
    return trace, parent, f"00-{trace}-{parent}-01"


def test_collector_down_then_up(gateway):
    port = _free_port()
    with Backend("ok") as be:
        gw = gateway(_config(be.url, f"http://127.0.0.1:{port}/v1/traces"))
        with httpx.Client(base_url=gw.url, timeout=10) as c:
            for i in range(20):
                assert c.get(f"/plain/{i}").status_code == 200
            # nobody listens: the spans are counted failed, requests are still answered
            wait_until(lambda: _counter(gw, "apigw_otel_spans_failed") >= 40, timeout=30)
            assert _counter(gw, "apigw_otel_spans_exported") == 0
            rx = KeepAliveReceiver(port)
            try:
                trace, _, tp = _tp(1)

                def arrived() -> bool:   # requests keep coming until the exporter is back
                    assert c.get("/plain/up", headers={"traceparent": tp}).status_code == 200
                    return len(rx.of_trace(trace)) >= 2
                wait_until(arrived, timeout=30)
                wait_until(lambda: _counter(gw, "apigw_otel_spans_exported") >= 2, timeout=15)
                assert _counter(gw, "apigw_otel_spans_failed") >= 40
            finally:
                rx.close()


def test_one_connection_across_exports(gateway):
    rx = KeepAliveReceiver()
    try:
        with Backend("ok") as be:
            gw = gateway(_config(be.url, rx.url))
            with httpx.Client(base_url=gw.url, timeout=10) as c:
                for round_ in range(3):       # three exports, each waited for
                    trace, _, tp = _tp(100 + round_)
                    assert c.get("/plain/k", headers={"traceparent": tp}).status_code == 200
                    wait_until(lambda: len(rx.of_trace(trace)) >= 2, timeout=15)
        assert rx.posts >= 3
        assert len(rx.peers) == 1, rx.peers          # kept alive, not one per batch
    finally:
        rx.close()


def test_two_workers_both_export_with_right_parents(gateway):
    rx = KeepAliveReceiver()
    try:
        with Backend("ok") as be:
            gw = gateway(_config(be.url, rx.url), workers=2)
            sent = [_tp(200 + i) for i in range(60)]
            for _, _, tp in sent:       # a new connection each: the kernel spreads them
                assert httpx.get(gw.url + "/plain/w", headers={"traceparent": tp},
                                 timeout=10).status_code == 200
            wait_until(lambda: all(len(rx.of_trace(t)) >= 2 for t, _, _ in sent), timeout=30)
            for trace, parent, _ in sent:
                spans = rx.of_trace(trace)
                (server,) = [s for s in spans if s.kind == SERVER]
                (client,) = [s for s in spans if s.kind == CLIENT]
                assert server.parent_span_id.hex() == parent
                assert client.parent_span_id == server.span_id
            assert len(rx.peers) >= 2, rx.peers      # each worker its own exporter
    finally:
        rx.close()


def test_retry_policy_attempts_are_siblings(gateway):
    rx = KeepAliveReceiver()
    rb = RetryBackend()
    try:
        retry = {"retry": {"condition": "response.status >= 500", "count": 2, "interval": 0,
                           "policies": ["forward-request"]}}
        gw = gateway(_config(rb.url, rx.url, apis=[
            {"name": "r", "path": "/r", "backend": "b", "policies": {"backend": [retry]}}]))
        trace, parent, tp = _tp(300)
        r = httpx.get(gw.url + "/r/fail/2/otel1", headers={"traceparent": tp}, timeout=30)
        assert r.status_code == 200 and rb.count("otel1") == 3
        wait_until(lambda: len(rx.of_trace(trace)) >= 4, timeout=15)
        spans = rx.of_trace(trace)
        (server,) = [s for s in spans if s.kind == SERVER]
        client = sorted((s for s in spans if s.kind == CLIENT),
                        key=lambda s: s.start_time_unix_nano)
        assert len(client) == 3 and server.parent_span_id.hex() == parent
        assert all(c.parent_span_id == server.span_id for c in client)
        assert len({c.span_id for c in client}) == 3
        resend = [{a.key: a.value.int_value for a in c.attributes}.get(
            "http.request.resend_count", 0) for c in client]
        assert resend == [0, 1, 2]
        assert [c.status.code for c in client] == [2, 2, 0]   # the retried ones are errors
    finally:
        rx.close()
        rb.close()


def test_full_queue_drops_and_counts(gateway):
    # queue 1 and a dead collector: while the exporter backs off, the one queued
    # request's spans wait and every later request's spans are dropped, counted
    dead = f"http://127.0.0.1:{_free_port()}/v1/traces"
    with Backend("ok") as be:
        cfg = _config(be.url, dead)
        cfg["telemetry"]["otel"]["queue"] = 1
        gw = gateway(cfg)
        with httpx.Client(base_url=gw.url, timeout=10) as c:
            for i in range(20):
                assert c.get(f"/plain/{i}").status_code == 200
        wait_until(lambda: _counter(gw, "apigw_otel_spans_dropped") >= 2, timeout=15)
        wait_until(lambda: _counter(gw, "apigw_otel_spans_failed") >= 2, timeout=30)
        assert _counter(gw, "apigw_otel_spans_dropped") + \
            _counter(gw, "apigw_otel_spans_failed") <= 40
