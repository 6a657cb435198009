"""The gateway-state metrics and llm-emit-token-metric through running gateway processes,
read from `GET /metrics` by prometheus-client's own text parser; every value equals what
the test caused: token counts of an OpenAI-shaped backend's `usage` (read through an
llm-token-limit's meter and by the policy alone), a circuit breaker tripped by a failing
backend (state enum and trips), a health check failing (healthy gauge, probes by
result), a limited key (rate-limit decisions), a dead Redis port with fail-open (store
failures, Redis client failures), and the counters again with `--workers 2`."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from backends import refused_url
from controlled import Steered
from support import wait_until
from test_metrics_e2e import scrape

FAST = {"path": "/healthz", "interval": "100ms", "timeout": "1s", "healthy-threshold": 1,
        "unhealthy-threshold": 2}
USAGES = (10, 20, 30)          # total_tokens of the three chat calls; prompt_tokens 1 each


class _OpenAI(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a) -> None:
        pass

    def do_POST(self) -> None:
        n = int(self.headers.get("content-length", "0"))
        self.rfile.read(n)
        usage = int(self.headers.get("x-usage", "10"))
        body = json.dumps({"choices": [{"message": {"content": "ok"}}],
                           "usage": {"prompt_tokens": 1, "completion_tokens": usage - 1,
                                     "total_tokens": usage}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def openai():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _OpenAI)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


@pytest.fixture
def steered():
    made: list[Steered] = []

    def make(name: str, status: int = 200) -> Steered:
        made.append(Steered(name, status=status))
        return made[-1]

    yield make
    for s in made:
        s.stop()


def _config(openai: str, echo: str, flaky: str, checked: str, redis: str) -> dict:
    emit = {"llm-emit-token-metric": {"namespace": "openai",
                                      "dimensions": [{"name": "API ID"}]}}
    by_key = {"counter-key": "{request.headers.x-client}", "renewal-period": 300}
    return {
        "listeners": [{"bind": "127.0.0.1:0"}], "admin": {"bind": "127.0.0.1:0"},
        "redis": {"url": redis, "timeout": "200ms"},
        "backends": {
            "ai": {"url": openai, "timeout": "5s"},
            "echo": {"url": echo, "timeout": "5s"},
            "flaky": {"url": flaky, "timeout": "5s", "circuit-breaker": {
                "failure-condition": {"count": 3, "interval": "1h"}, "trip-duration": "1h"}},
            "checked": {"url": checked, "timeout": "5s", "health-check": FAST}},
        "apis": [
            {"name": "chat", "path": "/chat", "backend": "ai", "policies": {"inbound": [
                {"llm-token-limit": {"counter-key": "{request.headers.x-team}",
                                     "tokens-per-minute": 100000}}, emit]}},
            {"name": "chat-alone", "path": "/alone", "backend": "ai",
             "policies": {"inbound": [emit]}},
            {"name": "flaky", "path": "/flaky", "backend": "flaky"},
            {"name": "checked", "path": "/checked", "backend": "checked"},
            {"name": "limited", "path": "/limited", "backend": "echo", "policies": {
                "inbound": [{"rate-limit-by-key": {**by_key, "calls": 2}}]}},
            {"name": "open", "path": "/open", "backend": "echo", "policies": {
                "inbound": [{"rate-limit-by-key": {**by_key, "calls": 100, "store": "redis",
                                                   "on-store-failure": "allow"}}]}},
        ],
    }


def value(samples: dict, name: str, **labels) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= lab)


def _chat(url: str, times: int) -> None:
    with httpx.Client(base_url=url, timeout=10) as c:
        for _ in range(times):
            for path in ("/chat/v1/chat/completions", "/alone/v1/chat/completions"):
                for u in USAGES:
                    r = c.post(path, json={"messages": [{"role": "user", "content": "hi"}]},
                               headers={"x-usage": str(u), "x-team": "t"})
                    assert r.status_code == 200, r.text


def _limits(url: str, times: int) -> None:
    with httpx.Client(base_url=url, timeout=10) as c:
        got = [c.get("/limited/x", headers={"x-client": "k"}).status_code
               for _ in range(5 * times)]
        assert got.count(200) == 2 and got.count(429) == 5 * times - 2
        for _ in range(4 * times):   # Redis is down: allowed, uncounted, one failure each
            assert c.get("/open/x", headers={"x-client": "k"}).status_code == 200


def _check_counters(s: dict, times: int) -> None:
    for api in ("chat", "chat-alone"):
        assert value(s, "apigw_custom_openai_prompt_tokens_total", api_id=api) == 3 * times
        assert value(s, "apigw_custom_openai_completion_tokens_total", api_id=api) == \
            sum(u - 1 for u in USAGES) * times
        assert value(s, "apigw_custom_openai_total_tokens_total", api_id=api) == \
            sum(USAGES) * times
    d = "apigw_rate_limit_decisions_total"
    assert value(s, d, policy="rate-limit-by-key", api="limited", decision="allowed") == 2
    assert value(s, d, policy="rate-limit-by-key", api="limited", decision="limited") == \
        5 * times - 2
    assert value(s, d, policy="rate-limit-by-key", api="open", decision="allowed") == \
        4 * times
    assert value(s, d, policy="llm-token-limit", api="chat", decision="allowed") == 3 * times
    assert value(s, d, decision="limited") == 5 * times - 2
    assert value(s, "apigw_rate_limit_store_failures_total", store="redis",
                 on_failure="allow") == 4 * times
    assert value(s, "apigw_redis_client_failures_total", store="redis") >= 1
    # bounded labels: no counter key, subscription or path anywhere
    labels = {k for (n, lab) in s for k, _ in lab if n.startswith(("apigw_rate", "apigw_back",
                                                                   "apigw_custom"))}
    assert labels <= {"policy", "api", "decision", "store", "on_failure", "backend",
                      "state", "result", "api_id"}


def _settled(gw, times: int) -> dict:
    def ready():
        s = scrape(gw)
        return s if value(s, "apigw_custom_openai_total_tokens_total") == \
            2 * sum(USAGES) * times and value(s, "apigw_rate_limit_store_failures_total") \
            == 4 * times else None
    return wait_until(ready, message="the calls counted")


def test_one_worker_every_value_is_what_the_test_caused(gateway, echo, openai, steered):
    flaky, checked = steered("flaky", 500), steered("checked")
    redis = "redis://127.0.0.1:" + refused_url().rsplit(":", 1)[1]
    gw = gateway(_config(openai, echo.url, flaky.url, checked.url, redis))
    _chat(gw.url, 1)
    _limits(gw.url, 1)
    _check_counters(_settled(gw, 1), 1)

    # the breaker: closed, then open after exactly three failures
    st = "apigw_backend_circuit_breaker_state"
    s = scrape(gw)
    assert value(s, st, backend="flaky", state="closed") == 1
    assert value(s, st, backend="flaky", state="open") == 0
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        assert [c.get("/flaky/x").status_code for _ in range(4)] == [500, 500, 500, 503]
    s = wait_until(lambda: (s := scrape(gw)) and value(s, st, backend="flaky",
                                                       state="open") == 1 and s)
    assert value(s, st, backend="flaky", state="closed") == 0
    assert value(s, st, backend="flaky", state="half-open") == 0
    assert value(s, "apigw_backend_circuit_breaker_trips_total", backend="flaky") == 1
    assert flaky.hits == 3

    # health: checks pass, then fail; the gauge follows and the probes are counted
    hc = "apigw_backend_health_checks_total"
    s = wait_until(lambda: (s := scrape(gw)) and value(s, hc, backend="checked",
                                                       result="passed") >= 2 and s)
    assert value(s, "apigw_backend_healthy", backend="checked") == 1
    assert value(s, hc, backend="checked", result="failed") == 0
    checked.health = 503
    s = wait_until(lambda: (s := scrape(gw)) and value(s, "apigw_backend_healthy",
                                                       backend="checked") == 0 and s,
                   message="checked unhealthy")
    assert value(s, hc, backend="checked", result="failed") >= 2
    assert httpx.get(gw.url + "/checked/x").status_code == 503
    assert value(s, "apigw_backend_healthy", backend="flaky") == 1   # open is not unhealthy

    # the admin page's document shows them per backend
    st_doc = httpx.get(f"http://127.0.0.1:{gw.admin_port}/stats", timeout=10).json()
    assert st_doc["backends"]["flaky"]["state"][
        "apigw_backend_circuit_breaker_state{state=open}"] == 1


def test_two_workers_the_counters_are_the_sum(gateway, echo, openai, steered):
    flaky, checked = steered("flaky", 500), steered("checked")
    redis = "redis://127.0.0.1:" + refused_url().rsplit(":", 1)[1]
    gw = gateway(_config(openai, echo.url, flaky.url, checked.url, redis), workers=2)
    _chat(gw.url, 2)
    _limits(gw.url, 2)
    _check_counters(_settled(gw, 2), 2)
    # each worker has its own breaker: 10 failures trip at least one of them
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        codes = [c.get("/flaky/x").status_code for _ in range(10)]
    assert set(codes) <= {500, 503} and codes[:3] == [500] * 3
    s = wait_until(lambda: (s := scrape(gw)) and value(
        s, "apigw_backend_circuit_breaker_trips_total", backend="flaky") >= 1 and s)
    trips = value(s, "apigw_backend_circuit_breaker_trips_total", backend="flaky")
    assert 1 <= trips <= 2
    assert value(s, "apigw_backend_circuit_breaker_state", backend="flaky",
                 state="open") == 1          # livemax: some worker's is open
    assert flaky.hits == codes.count(500)
    s = wait_until(lambda: (s := scrape(gw)) and value(s, "apigw_backend_health_checks_total",
                                                       backend="checked") >= 4 and s)
    assert value(s, "apigw_backend_healthy", backend="checked") == 1   # livemin, not 2


def test_h2_backend_connections_are_in_the_pool_gauge(gateway):
    from h2backend import H2Backend
    b = H2Backend()
    try:
        gw = gateway({"listeners": [{"bind": "127.0.0.1:0"}], "admin": {"bind": "127.0.0.1:0"},
                      "backends": {"h2": {"url": b.url, "http-version": "2", "timeout": 30}},
                      "apis": [{"name": "h2", "path": "/h2", "backend": "h2"}]})
        assert httpx.get(gw.url + "/h2/x", timeout=10).status_code == 200
        s = wait_until(lambda: (s := scrape(gw)) and value(
            s, "apigw_upstream_connections", backend="h2", state="idle") == 1 and s,
            message="the h2 connection counted idle")
        assert value(s, "apigw_upstream_connections", backend="h2", state="busy") == 0
    finally:
        b.close()
