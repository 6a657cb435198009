"""Active check thresholds and passive ejection with a fake clock."""

from apigw_core.gateway.backends import Health
from apigw_core.gateway.backends.health import PASSIVE_FAILURES
from apigw_core.gateway.config import HealthCheckConfig


def test_active_thresholds():
    h = Health(HealthCheckConfig("/h", healthy_threshold=2, unhealthy_threshold=3), 10.0)
    assert h.healthy and h.available(0)                 # members start healthy
    h.check_result(1, False, "status 500")
    h.check_result(2, False, "status 500")
    assert h.healthy
    h.check_result(3, False, "refused")
    assert not h.healthy and not h.available(3) and "3 health checks failed" in h.reason
    h.check_result(4, True)
    assert not h.healthy                                # one is not enough
    h.check_result(5, False, "x")
    h.check_result(6, True)
    h.check_result(7, True)
    assert h.healthy and h.available(7) and h.reason is None


def test_connect_failure_ejects_then_one_reprobe_restores():
    h = Health(None, 10.0)
    h.eject(0.0, "connect refused")
    assert not h.available(9.9) and not h.up(9.9)
    assert h.available(10.0) and h.acquire(10.0)        # the re-probe
    assert not h.available(10.1) and not h.acquire(10.1)
    h.outcome(10.2, True, probe=True)
    assert h.up(10.2) and h.available(10.2) and h.ejections == 0


def test_failed_reprobe_ejects_again_for_longer():
    h = Health(None, 10.0)
    h.eject(0.0, "refused")
    assert h.acquire(10.0)
    h.outcome(10.0, False, probe=True, detail="refused")
    assert h.ejected_until == 30.0                      # doubled
    assert h.acquire(30.0)
    h.cancel()                                          # no verdict: another may probe
    assert h.acquire(30.1)


def test_consecutive_errors_eject():
    h = Health(None, 10.0)
    for i in range(PASSIVE_FAILURES - 1):
        h.outcome(float(i), False, probe=False, detail="timeout")
    h.outcome(5.0, True, probe=False)                   # a success resets the run
    for i in range(PASSIVE_FAILURES):
        h.outcome(6.0 + i, False, probe=False, detail="timeout")
    assert not h.available(11.0) and "errors in a row" in h.reason


def test_passing_active_checks_end_an_ejection():
    h = Health(HealthCheckConfig("/h"), 100.0)
    h.eject(0.0, "refused")
    h.check_result(1.0, True)
    assert h.up(1.0) and h.available(1.0)
