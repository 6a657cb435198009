"""APIM's circuit breaker with a fake clock."""

from apigw_core.gateway.backends import CLOSED, HALF_OPEN, OPEN, Breaker, parse_retry_after
from apigw_core.gateway.config import CircuitBreakerConfig


def cb(**kw):
    base = dict(interval=10.0, trip_duration=30.0, count=3)
    base.update(kw)
    return Breaker(CircuitBreakerConfig(**base))


def test_opens_after_exactly_count_failures_within_the_interval():
    b = cb()
    assert not b.record(0.0, 500)
    assert not b.record(1.0, 200)          # a success does not reset the count
    assert not b.record(2.0, 503)
    assert b.state == CLOSED and b.available(2.0)
    assert b.record(3.0, 502)              # the third failure within 10 s
    assert b.state == OPEN and not b.available(3.5) and not b.acquire(3.5)
    assert "3 failures within 10s" in b.reason and "status 502" in b.reason


def test_failures_spread_wider_than_the_interval_do_not_open():
    b = cb()
    for t in (0.0, 6.0, 12.0, 18.0, 24.0):
        assert not b.record(t, 500)
    assert b.state == CLOSED


def test_status_ranges_and_error_reasons():
    b = cb(count=1, status_code_ranges=((429, 429),), error_reasons=("Timeout",))
    assert not b.record(0, 500) and not b.record(0, reason="BackendConnectionFailure")
    assert b.record(0, 429)
    b = cb(count=1, status_code_ranges=(), error_reasons=("Timeout",))
    assert b.record(0, reason="Timeout")


def test_percentage_mode():
    b = cb(count=None, percentage=50)
    for t in range(6):
        assert not b.record(float(t), 200)
    assert not b.record(6.0, 500) and not b.record(6.1, 500)   # 2 of 8
    assert not b.record(6.2, 500) and not b.record(6.3, 500) and not b.record(6.4, 500)
    assert b.record(6.5, 500)              # 6 of 12 = 50 %
    assert b.state == OPEN and "6 of 12" in b.reason


def test_percentage_window_forgets_old_requests():
    b = cb(count=None, percentage=50)
    for t in range(10):
        b.record(float(t), 200)
    assert not b.record(30.0, 200)
    assert b.record(30.1, 500)             # the old successes left the window: 1 of 2


def test_half_open_lets_exactly_one_trial_through_and_success_closes():
    b = cb(count=1)
    b.record(0.0, 500)
    assert not b.acquire(29.9)
    assert b.state_at(30.0) == HALF_OPEN and b.available(30.0)
    assert b.acquire(30.0)                 # the trial
    assert not b.available(30.1) and not b.acquire(30.1) and not b.acquire(31.0)
    b.record(30.5, 500)                    # sent before the trip: no verdict
    assert b.state == HALF_OPEN
    b.record(31.0, 200, trial=True)
    assert b.state == CLOSED and b.acquire(31.1) and b.acquire(31.2)


def test_half_open_failure_opens_again_for_the_trip_duration():
    b = cb(count=1)
    b.record(0.0, 500)
    assert b.acquire(30.0)
    assert b.record(30.5, 503, trial=True)
    assert b.state == OPEN and b.open_until == 60.5 and "trial failed" in b.reason
    assert not b.acquire(60.0) and b.acquire(60.5)


def test_an_abandoned_trial_frees_the_slot():
    b = cb(count=1)
    b.record(0.0, 500)
    assert b.acquire(30.0)
    b.cancel()
    assert b.acquire(30.1)


def test_retry_after_replaces_the_trip_duration_when_accepted():
    b = cb(count=1, accept_retry_after=True)
    b.record(0.0, 503, retry_after=5.0)
    assert b.open_until == 5.0 and b.acquire(5.0)
    b = cb(count=1)                        # not accepted: the trip duration
    b.record(0.0, 503, retry_after=5.0)
    assert b.open_until == 30.0


def test_parse_retry_after():
    assert parse_retry_after(b"120", 0) == 120.0
    assert parse_retry_after(b"Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0) == 10.0
    assert parse_retry_after(b"soon", 0) is None
    assert parse_retry_after(b"Wed, 21 Oct 2015 07:28:00 GMT", 1445412490.0) == 0.0
