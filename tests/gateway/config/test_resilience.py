"""Config of pools, circuit breakers and health checks: the model and every error with its
path (a pool naming an unknown backend, itself or another pool, empty pools, bad ranges)."""

from __future__ import annotations

import pickle

import pytest
import yaml

from apigw_core.gateway.config import (CircuitBreakerConfig, ConfigError, HealthCheckConfig,
                                       PoolMemberConfig, parse_config)

FULL = """
listeners: [{bind: "127.0.0.1:8080"}]
backends:
  a: {url: "http://a:1/v1", ejection-time: 2s,
      circuit-breaker: {failure-condition: {count: 5, interval: 10s,
                                            status-code-ranges: ["500-599", 429],
                                            error-reasons: [BackendConnectionFailure, Timeout]},
                        trip-duration: 30s, accept-retry-after: true},
      health-check: {path: /healthz, interval: 5s, timeout: 1s, healthy-threshold: 2,
                     unhealthy-threshold: 3, expected-statuses: ["200-299"]}}
  b: {url: "http://b:2", circuit-breaker: {failure-condition: {percentage: 50, interval: 1m},
                                           trip-duration: 5s}}
  p: {pool: [{backend: a, weight: 3, priority: 1}, {backend: b, priority: 2}],
      session-affinity: {cookie: member}, timeout: 10s}
apis: [{name: x, path: /x, backend: p}]
"""


def errors_of(backends: dict, apis=None) -> list[str]:
    data = {"listeners": [{"bind": "127.0.0.1:8080"}], "backends": backends,
            "apis": apis if apis is not None else []}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.errors


def test_the_full_model():
    c = parse_config(yaml.safe_load(FULL))
    a, b, p = c.backends["a"], c.backends["b"], c.backends["p"]
    assert a.circuit_breaker == CircuitBreakerConfig(
        interval=10.0, trip_duration=30.0, count=5, status_code_ranges=((500, 599), (429, 429)),
        error_reasons=("BackendConnectionFailure", "Timeout"), accept_retry_after=True)
    assert a.health_check == HealthCheckConfig("/healthz", 5.0, 1.0, 2, 3, ((200, 299),))
    assert a.ejection_time == 2.0 and a.pool == ()
    # neither ranges nor reasons: 5xx and both reasons
    assert b.circuit_breaker.percentage == 50 and b.circuit_breaker.count is None
    assert b.circuit_breaker.status_code_ranges == ((500, 599),)
    assert b.circuit_breaker.error_reasons == ("BackendConnectionFailure", "Timeout")
    assert p.pool == (PoolMemberConfig("a", 3, 1), PoolMemberConfig("b", 1, 2))
    assert p.session_affinity == "member" and p.timeout == 10.0 and p.url == ""
    assert pickle.loads(pickle.dumps(c)) == c          # workers get it pickled


def test_one_of_ranges_or_reasons_alone_is_the_whole_rule():
    c = parse_config({"listeners": [{"bind": "127.0.0.1:1"}], "apis": [], "backends": {"a": {
        "url": "http://a", "circuit-breaker": {"failure-condition": {
            "count": 1, "interval": 1, "error-reasons": ["Timeout"]}, "trip-duration": 1}}}})
    assert c.backends["a"].circuit_breaker.status_code_ranges == ()


@pytest.mark.parametrize("backends, expected", [
    ({"p": {"pool": []}}, "backends.p.pool: expected a non-empty list"),
    ({"p": {"pool": [{"backend": "zz"}]}}, "backends.p.pool[0].backend: unknown backend 'zz'"),
    ({"p": {"pool": [{"backend": "p"}]}}, "backends.p.pool[0].backend: a pool cannot contain itself"),
    ({"a": {"url": "http://a"}, "p": {"pool": [{"backend": "q"}]}, "q": {"pool": [{"backend": "a"}]}},
     "backends.p.pool[0].backend: backend 'q' is a pool (pools do not nest)"),
    ({"a": {"url": "http://a"}, "p": {"pool": [{"backend": "a"}, {"backend": "a"}]}},
     "backends.p.pool[1].backend: backend 'a' is listed twice (also pool[0])"),
    ({"a": {"url": "http://a"}, "p": {"pool": [{"backend": "a", "weight": 0}]}},
     "backends.p.pool[0].weight: expected 1..1000, got 0"),
    ({"a": {"url": "http://a"}, "p": {"pool": [{"backend": "a", "wieght": 2}]}},
     "backends.p.pool[0].wieght: unknown key"),
    ({"a": {"url": "http://a"}, "p": {"pool": [{"backend": "a"}], "url": "http://x"}},
     "backends.p.url: a pool has only pool, session-affinity and timeout"),
    ({"a": {"url": "http://a"}, "p": {"pool": [{"backend": "a"}], "health-check": {"path": "/h"}}},
     "backends.p.health-check: a pool has only"),
    ({"a": {"url": "http://a", "session-affinity": {"cookie": "c"}}},
     "backends.a.session-affinity: session-affinity needs a pool"),
    ({"a": {"url": "http://a"}, "p": {"pool": [{"backend": "a"}], "session-affinity": {"cookie": "a b"}}},
     "backends.p.session-affinity.cookie: "),
    ({"a": {"timeout": "1s"}}, "backends.a.url: required (or pool: for a pool)"),
    ({"a": {"url": "http://a", "circuit-breaker": {"failure-condition": {"interval": 1}, "trip-duration": 1}}},
     "backends.a.circuit-breaker.failure-condition: expected exactly one of count, percentage"),
    ({"a": {"url": "http://a", "circuit-breaker": {"failure-condition": {"count": 1, "percentage": 5, "interval": 1}, "trip-duration": 1}}},
     "backends.a.circuit-breaker.failure-condition: expected exactly one of count, percentage"),
    ({"a": {"url": "http://a", "circuit-breaker": {"failure-condition": {"percentage": 101, "interval": 1}, "trip-duration": 1}}},
     "backends.a.circuit-breaker.failure-condition.percentage: expected 1..100, got 101"),
    ({"a": {"url": "http://a", "circuit-breaker": {"failure-condition": {"count": 1, "interval": 0}, "trip-duration": 1}}},
     "backends.a.circuit-breaker.failure-condition.interval: expected a duration > 0"),
    ({"a": {"url": "http://a", "circuit-breaker": {"failure-condition": {"count": 1, "interval": 1,
                                                   "status-code-ranges": ["599-500"]}, "trip-duration": 1}}},
     "backends.a.circuit-breaker.failure-condition.status-code-ranges[0]: empty range '599-500'"),
    ({"a": {"url": "http://a", "circuit-breaker": {"failure-condition": {"count": 1, "interval": 1,
                                                   "status-code-ranges": ["500-700"]}, "trip-duration": 1}}},
     "backends.a.circuit-breaker.failure-condition.status-code-ranges[0]: status codes are 100..599"),
    ({"a": {"url": "http://a", "circuit-breaker": {"failure-condition": {"count": 1, "interval": 1,
                                                   "status-code-ranges": ["5xx"]}, "trip-duration": 1}}},
     "backends.a.circuit-breaker.failure-condition.status-code-ranges[0]: expected a status code or range"),
    ({"a": {"url": "http://a", "circuit-breaker": {"failure-condition": {"count": 1, "interval": 1,
                                                   "error-reasons": ["Oops"]}, "trip-duration": 1}}},
     "backends.a.circuit-breaker.failure-condition.error-reasons[0]: expected one of "
     "BackendConnectionFailure, Timeout, got 'Oops'"),
    ({"a": {"url": "http://a", "circuit-breaker": {"failure-condition": {"count": 1, "interval": 1}}}},
     "backends.a.circuit-breaker.trip-duration: required"),
    ({"a": {"url": "http://a", "circuit-breaker": {"failure-condition": {"count": 1, "interval": 1},
                                                   "trip-duration": 1, "accept-retry-after": "yes"}}},
     "backends.a.circuit-breaker.accept-retry-after: expected bool"),
    ({"a": {"url": "http://a", "health-check": {"path": "healthz"}}},
     "backends.a.health-check.path: expected a path starting with '/'"),
    ({"a": {"url": "http://a", "health-check": {"path": "/h", "unhealthy-threshold": 0}}},
     "backends.a.health-check.unhealthy-threshold: expected 1..1000, got 0"),
    ({"a": {"url": "http://a", "health-check": {"path": "/h", "expected-statuses": []}}},
     "backends.a.health-check.expected-statuses: expected a non-empty list"),
    ({"a": {"url": "http://a", "health-check": {"path": "/h", "interval": "soon"}}},
     "backends.a.health-check.interval: invalid duration 'soon'"),
])
def test_each_error_names_its_path(backends, expected):
    errors = errors_of(backends)
    assert len(errors) == 1 and errors[0].startswith(expected), errors


def test_an_api_and_set_backend_service_may_name_a_pool():
    data = yaml.safe_load(FULL)
    data["apis"].append({"name": "y", "path": "/y", "backend": "a", "policies": {
        "inbound": [{"set-backend-service": {"backend-id": "p"}}]}})
    c = parse_config(data)
    assert c.apis[0].backend == "p"


def test_errors_inside_an_invalid_pool_do_not_hide_the_others():
    errors = errors_of({"a": {"url": "http://a", "timeout": 0},
                        "p": {"pool": [{"backend": "a"}, {"backend": "nope"}]}},
                       apis=[{"name": "x", "path": "/x", "backend": "missing"}])
    assert errors == ["backends.a.timeout: expected a duration > 0",
                      "backends.p.pool[1].backend: unknown backend 'nope'",
                      "apis[0].backend: unknown backend 'missing'"]
