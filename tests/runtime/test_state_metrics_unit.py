"""runtime/state_metrics.py and Metrics.add_totals without a gateway process: totals fed
as deltas (and counted from zero again when their owner is rebuilt), gauges read from
breaker / health objects, the decision counter's policy label from the counter key, and
the multiprocess modes the state gauges declare."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families

from apigw_core.gateway.backends.breaker import Breaker
from apigw_core.gateway.backends.health import Health
from apigw_core.gateway.config import ApiConfig
from apigw_core.gateway.config._resilience import CircuitBreakerConfig
from apigw_core.runtime import state_metrics
from apigw_core.runtime.metrics import Metrics


def _samples(m: Metrics) -> dict:
    out = {}
    for fam in text_string_to_metric_families(m.expose().decode()):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def test_totals_grow_by_their_delta_and_restart_from_zero():
    m = Metrics()
    total = {("a",): 3}
    m.add_totals("apigw_things", "Things.", ("x",), lambda: total)
    key = ("apigw_things_total", frozenset({("x", "a")}))
    assert _samples(m)[key] == 3
    total[("a",)] = 5
    assert _samples(m)[key] == 5
    assert _samples(m)[key] == 5           # read again: no change, nothing added
    total[("a",)] = 1                      # its owner was rebuilt (a reload)
    assert _samples(m)[key] == 6


def _cb() -> CircuitBreakerConfig:
    return CircuitBreakerConfig(interval=30.0, trip_duration=60.0, count=1)


def _gw(lives: dict) -> SimpleNamespace:
    state = SimpleNamespace(lives=lives, stores={}, config=SimpleNamespace(backends={}))
    return SimpleNamespace(state=state)


def test_breaker_state_enum_and_trips_and_health_from_the_objects():
    b = Breaker(_cb())
    live = SimpleNamespace(breaker=b, health=Health(None, 30.0))
    m = Metrics()
    state_metrics.register(_gw({"x": live}), m)
    s = _samples(m)
    st = "apigw_backend_circuit_breaker_state"
    assert s[(st, frozenset({("backend", "x"), ("state", "closed")}))] == 1
    assert s[(st, frozenset({("backend", "x"), ("state", "open")}))] == 0
    assert s[("apigw_backend_healthy", frozenset({("backend", "x")}))] == 1
    b.record(0.0, 500)                     # count 1: the first failure trips it
    assert b.state == "open" and b.trips == 1
    s = _samples(m)
    assert s[(st, frozenset({("backend", "x"), ("state", "open")}))] == 1
    assert s[(st, frozenset({("backend", "x"), ("state", "closed")}))] == 0
    assert s[("apigw_backend_circuit_breaker_trips_total", frozenset({("backend", "x")}))] == 1


def test_decisions_are_labelled_by_policy_and_api_only():
    m = Metrics()
    state_metrics.declare(m)
    call = SimpleNamespace(gw=SimpleNamespace(telemetry=SimpleNamespace(metrics=m)),
                           ctx=SimpleNamespace(api=ApiConfig(name="orders", path="/o",
                                                             backend="b")))
    state_metrics.count_decision(call, "rate-limit-by-key|api:orders|client-7", True)
    state_metrics.count_decision(call, "azure-openai-token-limit|api:orders|t|tpm", False)
    state_metrics.count_decision(call, "quota|x|sub-1|calls", False)
    state_metrics.count_store_failure(call, "redis", "allow")
    d = "apigw_rate_limit_decisions_total"
    s = _samples(m)
    assert s[(d, frozenset({("policy", "rate-limit-by-key"), ("api", "orders"),
                            ("decision", "allowed")}))] == 1
    assert s[(d, frozenset({("policy", "llm-token-limit"), ("api", "orders"),
                            ("decision", "limited")}))] == 1
    assert s[(d, frozenset({("policy", "quota"), ("api", "orders"),
                            ("decision", "limited")}))] == 1
    assert s[("apigw_rate_limit_store_failures_total",
              frozenset({("store", "redis"), ("on_failure", "allow")}))] == 1
    # a call on a gateway without metrics costs nothing and raises nothing
    state_metrics.count_decision(SimpleNamespace(gw=SimpleNamespace()), "quota|x", True)


def test_state_gauges_pick_their_multiprocess_modes():
    m = Metrics()
    state_metrics.register(_gw({}), m)
    modes = {g._name: g._multiprocess_mode for g, _, _ in m._gauges}
    assert modes["apigw_backend_circuit_breaker_state"] == "livemax"
    assert modes["apigw_backend_healthy"] == "livemin"
    assert modes["apigw_backend_pool_members_available"] == "livemin"
