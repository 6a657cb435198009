"""Circuit breakers end to end: a real gateway in front of backends the test steers.
Opening after exactly the configured failures, 503 at once while open (with a message that
names the backend and the breaker), the half-open trial (success closes, failure reopens),
Retry-After honoured, timeouts and bodies cut mid-way counted as error reasons, gRPC
UNAVAILABLE, and the breaker's state kept across a reload."""

from __future__ import annotations

import json
import time

import pytest

from backends import refused_url
from controlled import Steered
from support import lazy_module, wait_until

httpx = lazy_module("httpx")
grpc = lazy_module("grpc")

OPEN_MESSAGE = "backend b is unavailable: its circuit breaker is open"


def breaker_config(url: str, breaker: dict, **backend) -> dict:
    return {"listeners": [{"bind": "127.0.0.1:0"}], "admin": {"bind": "127.0.0.1:0"},
            "backends": {"b": {"url": url, "timeout": "5s", "circuit-breaker": breaker,
                               **backend}},
            "apis": [{"name": "root", "path": "", "backend": "b"}]}


def rule(count: int = 3, trip: str = "1s", **fc) -> dict:
    return {"failure-condition": {"count": count, "interval": "30s", **fc},
            "trip-duration": trip}


@pytest.fixture
def backend():
    s = Steered("b", status=500)
    yield s
    s.stop()


def state(gw) -> dict:
    return httpx.get(f"http://127.0.0.1:{gw.admin_port}/backends").json()["backends"]["b"]


def test_opens_after_exactly_count_failures_then_503_at_once(gateway, backend):
    gw = gateway(breaker_config(backend.url, rule(count=3, trip="60s")))
    with httpx.Client(base_url=gw.url) as client:
        assert [client.get("/").status_code for _ in range(2)] == [500, 500]
        assert state(gw)["breaker"] == "closed"
        assert client.get("/").status_code == 500         # the third: relayed, and it opens
        assert state(gw)["breaker"] == "open"
        for _ in range(5):
            r = client.get("/")
            assert r.status_code == 503 and r.json()["message"] == OPEN_MESSAGE
    assert backend.hits == 3                              # nothing reached it while open
    doc = state(gw)
    assert "3 failures within 30s (last: status 500)" in doc["reason"]
    assert doc["last-failure"]["error"] == "status 500"


def test_answers_outside_the_status_ranges_do_not_count(gateway, backend):
    backend.status = 404
    gw = gateway(breaker_config(backend.url, rule(count=2, **{"status-code-ranges": ["500-599"]})))
    with httpx.Client(base_url=gw.url) as client:
        assert [client.get("/").status_code for _ in range(6)] == [404] * 6
    assert state(gw)["breaker"] == "closed"


def test_half_open_trial_success_closes(gateway, backend):
    gw = gateway(breaker_config(backend.url, rule(count=2, trip="500ms")))
    with httpx.Client(base_url=gw.url) as client:
        client.get("/"), client.get("/")
        assert client.get("/").status_code == 503
        backend.status = 200
        wait_until(lambda: client.get("/").status_code == 200, message="the trial")
        assert state(gw)["breaker"] == "closed"
        assert [client.get("/").status_code for _ in range(5)] == [200] * 5


def test_half_open_trial_failure_reopens_one_request_per_trip(gateway, backend):
    gw = gateway(breaker_config(backend.url, rule(count=2, trip="400ms")))
    with httpx.Client(base_url=gw.url) as client:
        client.get("/"), client.get("/")
        assert backend.hits == 2
        # keep asking: each trip lets exactly one trial through, which fails and reopens
        wait_until(lambda: client.get("/").status_code == 500 and backend.hits >= 4,
                   message="two failed trials")
        answers = [client.get("/").status_code for _ in range(3)]
    assert 503 in answers
    doc = state(gw)
    assert doc["breaker"] in ("open", "half-open") and "half-open trial failed" in doc["reason"]


def test_retry_after_replaces_the_trip_duration(gateway, backend):
    backend.status = 503
    backend.headers = {"Retry-After": "1"}
    gw = gateway(breaker_config(backend.url, {**rule(count=1, trip="1h"),
                                             "accept-retry-after": True}))
    with httpx.Client(base_url=gw.url) as client:
        assert client.get("/").status_code == 503 and backend.hits == 1
        assert client.get("/").json()["message"] == OPEN_MESSAGE
        assert "Retry-After 1s" in state(gw)["reason"]
        backend.status = 200
        # an hour without Retry-After; the backend asked for 1 s
        wait_until(lambda: client.get("/").status_code == 200, timeout=20,
                   message="the trial after Retry-After")
    assert state(gw)["breaker"] == "closed"


def test_timeouts_count_as_their_error_reason(gateway, backend):
    backend.status, backend.mode, backend.delay = 200, "slow", 1.0
    gw = gateway(breaker_config(backend.url, rule(count=2, trip="60s", **{
        "error-reasons": ["Timeout"]}), timeout="200ms"))
    with httpx.Client(base_url=gw.url) as client:
        assert [client.get("/").status_code for _ in range(2)] == [504, 504]
        r = client.get("/")
    assert r.status_code == 503 and r.json()["message"] == OPEN_MESSAGE
    assert state(gw)["last-failure"]["error"].startswith("Timeout")


def test_a_body_cut_mid_way_counts_as_a_connection_failure(gateway, backend):
    backend.status, backend.mode = 200, "cut"
    gw = gateway(breaker_config(backend.url, rule(count=2, trip="60s", **{
        "error-reasons": ["BackendConnectionFailure"]})))
    for _ in range(2):
        with pytest.raises(httpx.HTTPError):          # the gateway aborts the answer
            httpx.get(gw.url + "/")
    wait_until(lambda: state(gw)["breaker"] == "open", message="breaker open")
    assert httpx.get(gw.url + "/").status_code == 503


def test_connect_failures_open_it_and_the_pipeline_path_answers_503(gateway):
    cfg = breaker_config(refused_url(), rule(count=2, trip="60s"))
    cfg["apis"][0]["policies"] = {"on-error": [{"set-header": {
        "name": "x-error", "value": ["{last-error.reason}"]}}]}
    gw = gateway(cfg)
    with httpx.Client(base_url=gw.url) as client:
        assert [client.get("/").status_code for _ in range(2)] == [502, 502]
        r = client.get("/")
    assert r.status_code == 503 and r.json()["message"] == OPEN_MESSAGE
    assert r.headers["x-error"] == "BackendConnectionFailure"


def test_grpc_caller_gets_unavailable_naming_the_breaker(gateway):
    cfg = breaker_config(refused_url(), rule(count=1, trip="60s"), **{"http-version": "2"})
    cfg["listeners"][0]["protocols"] = ["http1", "h2c"]
    cfg["apis"][0].update(path="/svc.Greeter", protocols=["grpc"])
    gw = gateway(cfg)
    channel = grpc.insecure_channel(f"127.0.0.1:{gw.port}")
    call = channel.unary_unary("/svc.Greeter/Hello", request_serializer=lambda b: b,
                               response_deserializer=lambda b: b)
    try:
        with pytest.raises(grpc.RpcError) as first:
            call(b"", timeout=10)
        assert first.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.RpcError) as info:
            call(b"", timeout=10)
    finally:
        channel.close()
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert info.value.details() == OPEN_MESSAGE


def test_breaker_state_survives_a_reload_of_an_unchanged_backend(gateway, backend, tmp_path):
    cfg = breaker_config(backend.url, rule(count=1, trip="1h"))
    gw = gateway(cfg)
    assert httpx.get(gw.url + "/").status_code == 500
    assert state(gw)["breaker"] == "open"
    cfg["apis"].append({"name": "other", "path": "/other", "backend": "b"})
    (tmp_path / "gw0" / "gw.json").write_text(json.dumps(cfg))
    r = httpx.post(f"http://127.0.0.1:{gw.admin_port}/reload", timeout=30)
    assert r.status_code == 200 and r.json()["version"] == 2
    assert state(gw)["breaker"] == "open"
    assert httpx.get(gw.url + "/other").status_code == 503
    # a changed backend starts afresh
    cfg["backends"]["b"]["timeout"] = "4s"
    (tmp_path / "gw0" / "gw.json").write_text(json.dumps(cfg))
    assert httpx.post(f"http://127.0.0.1:{gw.admin_port}/reload", timeout=30).status_code == 200
    assert state(gw)["breaker"] == "closed"
