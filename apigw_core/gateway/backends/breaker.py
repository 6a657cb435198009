"""APIM's circuit breaker for one backend, as a small state machine with the time passed in.

Strategy.  Three states (closed, open, half-open) and the table of what moves between
them:

    closed    --failure condition met within the interval-->  open (until now + trip)
    open      --the trip duration (or Retry-After) elapsed-->  half-open: one trial
    half-open --the trial succeeded-->  closed (window cleared)
    half-open --the trial failed-->     open again (same trip duration, or Retry-After)

An outcome is a failure when its status falls in `status-code-ranges` or its error reason
(BackendConnectionFailure, Timeout) is in `error-reasons`.  `count` mode keeps the times
of the last `count` failures, so it opens on exactly the count-th failure within the
interval; `percentage` mode keeps counts in ten buckets per interval (bounded memory at
any rate) and opens when failures reach the percentage of the requests in the window, as
APIM states it (no minimum volume: with 50 %, one failure as the first request trips).
With `accept-retry-after`, the tripping answer's Retry-After (seconds or an HTTP date)
replaces the trip duration.  Only `acquire()` takes the half-open trial, so exactly one
request goes through; a trial abandoned without a verdict (`cancel()`) frees it again.
"""

from __future__ import annotations

from collections import deque
from email.utils import parsedate_to_datetime
from typing import Optional

from ..config import CircuitBreakerConfig

__all__ = ["Breaker", "CLOSED", "OPEN", "HALF_OPEN", "in_ranges", "parse_retry_after"]

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"
_BUCKETS = 10


def in_ranges(status: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    for lo, hi in ranges:
        if lo <= status <= hi:
            return True
    return False


def parse_retry_after(value: bytes, now_epoch: float) -> Optional[float]:
    """Seconds from a Retry-After value (RFC 9110 §10.2.3: delay-seconds or an HTTP date);
    None when it is neither."""
    text = value.decode("latin-1").strip()
    if text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now_epoch)


class Breaker:
    """One backend's breaker.  Plain attributes, read by /backends and metrics."""

    __slots__ = ("cfg", "state", "open_until", "trial", "reason", "last_failure",
                 "trips", "_fails", "_buckets")

    def __init__(self, cfg: CircuitBreakerConfig) -> None:
        self.cfg = cfg
        self.state = CLOSED
        self.open_until = 0.0
        self.trial = False               # the half-open trial is out
        self.reason: Optional[str] = None        # why it opened (the last time)
        self.last_failure: Optional[str] = None  # the last outcome counted as a failure
        self.trips = 0
        self._fails: deque[float] = deque(maxlen=cfg.count or 1)
        self._buckets: deque[list] = deque()     # [start, requests, failures]

    def is_failure(self, status: Optional[int], reason: Optional[str]) -> bool:
        if reason is not None:
            return reason in self.cfg.error_reasons
        return status is not None and in_ranges(status, self.cfg.status_code_ranges)

    def state_at(self, now: float) -> str:
        """The state as a caller sees it: an open breaker past its time is half-open."""
        if self.state == OPEN and now >= self.open_until:
            return HALF_OPEN
        return self.state

    def available(self, now: float) -> bool:
        """Would a request be let through now (without taking the trial)?"""
        st = self.state
        if st == CLOSED:
            return True
        if st == OPEN:
            return now >= self.open_until
        return not self.trial

    def acquire(self, now: float) -> bool:
        """Let one request through: True when it may go.  In half-open it is the trial
        (`state` says so after the call); its outcome is recorded with trial=True."""
        st = self.state
        if st == CLOSED:
            return True
        if st == OPEN:
            if now < self.open_until:
                return False
            self.state = HALF_OPEN
        if self.trial:
            return False
        self.trial = True
        return True

    def cancel(self) -> None:
        """The half-open trial ended without a verdict (the client left): free it."""
        self.trial = False

    def record(self, now: float, status: Optional[int] = None, reason: Optional[str] = None,
               retry_after: Optional[float] = None, trial: bool = False) -> bool:
        """One outcome (an answer's status, or an error reason); `trial` when it is the
        request that `acquire` let through half-open.  True when it opened the breaker."""
        failed = self.is_failure(status, reason)
        if failed:
            self.last_failure = reason or f"status {status}"
        if self.state != CLOSED:
            if not trial or not self.trial:
                return False             # sent before it opened: no verdict
            self.trial = False
            if failed:
                self._open(now, retry_after, f"the half-open trial failed ({self.last_failure})")
                return True
            self.state = CLOSED
            self._fails.clear()
            self._buckets.clear()
            return False
        cfg = self.cfg
        if cfg.count is not None:
            if not failed:
                return False
            fails = self._fails
            fails.append(now)
            if len(fails) == cfg.count and now - fails[0] <= cfg.interval:
                self._open(now, retry_after, f"{cfg.count} failures within {cfg.interval:g}s "
                                             f"(last: {self.last_failure})")
                return True
            return False
        total, bad = self._count(now, failed)
        if failed and bad * 100 >= cfg.percentage * total:  # type: ignore[operator]
            self._open(now, retry_after, f"{bad} of {total} requests failed within "
                                         f"{cfg.interval:g}s (last: {self.last_failure})")
            return True
        return False

    def _count(self, now: float, failed: bool) -> tuple[int, int]:
        width = self.cfg.interval / _BUCKETS
        b = self._buckets
        while b and b[0][0] <= now - self.cfg.interval - width:
            b.popleft()
        if not b or now >= b[-1][0] + width:
            b.append([now, 0, 0])
        last = b[-1]
        last[1] += 1
        last[2] += failed
        total = bad = 0
        for _, n, f in b:
            total += n
            bad += f
        return total, bad

    def _open(self, now: float, retry_after: Optional[float], why: str) -> None:
        after = self.cfg.trip_duration
        if retry_after is not None and self.cfg.accept_retry_after:
            after = retry_after
            why += f"; Retry-After {retry_after:g}s"
        self.state = OPEN
        self.open_until = now + after
        self.trial = False
        self.reason = why
        self.trips += 1
        self._fails.clear()
        self._buckets.clear()
