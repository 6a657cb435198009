"""One backend's health: active check thresholds and passive ejection, time passed in.

Strategy.  Two independent verdicts, both needed for a backend to take traffic:

- active (Envoy / nginx health checks, run by the runtime): a backend starts healthy;
  `unhealthy-threshold` consecutive failed checks mark it unhealthy, `healthy-threshold`
  consecutive good ones healthy again;
- passive (from live traffic): a connect failure ejects at once, `PASSIVE_FAILURES`
  consecutive errors (timeouts, connections lost) too.  An ejection lasts the backend's
  `ejection-time`, doubled for each ejection in a row (capped at `MAX_EJECTIONS` times);
  then exactly one live request is let through as a re-probe (`acquire`): success ends
  the ejection, failure ejects again.  A passing active check ends it as well.  So an
  ejected backend always comes back once it answers again (the failure users of APISIX
  and Kong report: passive checks that never restore a node), with or without active
  checks.
"""

from __future__ import annotations

from typing import Optional

from ..config import HealthCheckConfig

__all__ = ["Health", "PASSIVE_FAILURES", "MAX_EJECTIONS"]

PASSIVE_FAILURES = 5      # Envoy outlier detection's consecutive_gateway_failure
MAX_EJECTIONS = 8         # the back-off stops doubling here (ejection-time * 2**7)


class Health:
    """Plain attributes, read by /backends and metrics."""

    __slots__ = ("cfg", "ejection_time", "healthy", "ok_run", "bad_run", "ejected_until",
                 "ejections", "probing", "errors", "reason", "last_failure", "checked_at",
                 "checks_passed", "checks_failed")

    def __init__(self, cfg: Optional[HealthCheckConfig], ejection_time: float) -> None:
        self.cfg = cfg
        self.ejection_time = ejection_time
        self.healthy = True              # the active verdict
        self.ok_run = 0                  # consecutive passing / failing active checks
        self.bad_run = 0
        self.ejected_until: Optional[float] = None   # passive ejection
        self.ejections = 0               # in a row (the back-off)
        self.probing = False             # the re-probe request is out
        self.errors = 0                  # consecutive live errors
        self.reason: Optional[str] = None
        self.last_failure: Optional[str] = None
        self.checked_at: Optional[float] = None
        self.checks_passed = 0           # active checks so far, for the metrics
        self.checks_failed = 0

    # -- questions ---------------------------------------------------------------------

    def available(self, now: float) -> bool:
        if not self.healthy:
            return False
        until = self.ejected_until
        return until is None or (now >= until and not self.probing)

    def up(self, now: float) -> bool:
        """Healthy and not ejected (what /backends shows as healthy)."""
        return self.healthy and self.ejected_until is None

    def acquire(self, now: float) -> bool:
        """The request picked this backend; True when it is the re-probe of an ejection."""
        if self.ejected_until is not None and now >= self.ejected_until and not self.probing:
            self.probing = True
            return True
        return False

    # -- active checks -------------------------------------------------------------------

    def check_result(self, now: float, ok: bool, detail: str = "") -> None:
        cfg = self.cfg
        assert cfg is not None, "active results need a health-check"
        self.checked_at = now
        if ok:
            self.checks_passed += 1
            self.ok_run += 1
            self.bad_run = 0
            if not self.healthy and self.ok_run >= cfg.healthy_threshold:
                self.healthy = True
                self.reason = None
            if self.healthy and self.ejected_until is not None:
                self._restore()           # it answers its checks again
            return
        self.checks_failed += 1
        self.bad_run += 1
        self.ok_run = 0
        self.last_failure = f"health check: {detail}"
        if self.healthy and self.bad_run >= cfg.unhealthy_threshold:
            self.healthy = False
            self.reason = f"{self.bad_run} health checks failed (last: {detail})"

    # -- passive ejection ----------------------------------------------------------------

    def eject(self, now: float, detail: str) -> None:
        """Skip this backend for a while (a connect failure, or errors in a row)."""
        self.ejections = min(self.ejections + 1, MAX_EJECTIONS)
        self.ejected_until = now + self.ejection_time * 2 ** (self.ejections - 1)
        self.probing = False
        self.errors = 0
        self.last_failure = detail
        self.reason = f"ejected for {self.ejected_until - now:g}s: {detail}"

    def outcome(self, now: float, ok: bool, probe: bool, detail: str = "") -> None:
        """A live request ended: `ok` unless it failed with an error; `probe` when it was
        the re-probe that `acquire` let through."""
        if probe:
            self.probing = False
            if ok:
                self._restore()
            else:
                self.eject(now, f"re-probe failed: {detail}")
            return
        if ok:
            self.errors = 0
            return
        self.errors += 1
        self.last_failure = detail
        if self.errors >= PASSIVE_FAILURES and self.ejected_until is None:
            self.eject(now, f"{self.errors} errors in a row (last: {detail})")

    def cancel(self) -> None:
        """The re-probe ended without a verdict: let another request probe."""
        self.probing = False

    def _restore(self) -> None:
        self.ejected_until = None
        self.ejections = 0
        self.probing = False
        self.errors = 0
        if self.healthy:
            self.reason = None
