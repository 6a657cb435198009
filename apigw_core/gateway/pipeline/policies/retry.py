"""The `retry` policy (APIM's attributes and wait formulas; /work/shared/APIM-REFERENCE.md
"Transformation and flow"), and the two commands it yields.

Strategy.  `retry` runs its nested `policies` through the engine's `run_steps` (as choose
runs a branch), then evaluates its `condition` on what the attempt left: the backend's
response, or, when an attempt failed (a PolicyError with APIM's reason
BackendConnectionFailure or Timeout from forward-request, or BackendErrorStatusCode from
`fail-on-error-status-code`), the error as on-error would see it: `last-error.*` set and,
for a failure without a response, `response.status` the error's own (502, 504).  So
`response.status >= 500` retries both a 503 and a refused connection, and
`last-error.reason == "Timeout"` only timeouts.  When the condition holds and retries are
left, the policy asks the runtime for the go-ahead (`PrepareRetry`: the runtime refuses
when the request body cannot be replayed or the backend's retry budget is spent, and
releases the previous backend exchange), waits (`Sleep`), and runs the policies again.
When the retries end, the last attempt stands: its response, or its failure raised on to
on-error.  Any other PolicyError (a 413, a refusal by a nested policy) is not retried.

Waits, for retry n (1-based), as APIM: fixed `interval`; with `delta` linear
`interval + (n-1)*delta`; with `delta` and `max-interval` exponential
`interval + (2^n - 1) * random(0.8, 1.2) * delta`, capped at `max-interval`;
`first-fast-retry` makes retry 1 immediate (the later ones keep their formula).  The random
factor comes from `Retry.rng` (a `random.Random`, replaceable per policy object), so the
formulas are pure and tested with a fixed source; the sleep itself is the runtime's.
Durations take units (`100ms`, `2s`), a bare number is seconds as in APIM.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Optional

from ..contract import (Answer, Command, Context, LastError, PolicyError, Policy,
                        ReadResponseBody, Site)
from ..engine import error_response, run_steps
from ..registry import register
from ._spec import DEFAULT_BODY_LIMIT, Spec

__all__ = ["Retry", "Sleep", "PrepareRetry", "RETRYABLE_REASONS", "wait_seconds",
           "parse_duration"]

# Failures of an attempt the condition decides on (the rest propagate at once).
RETRYABLE_REASONS = frozenset({"BackendConnectionFailure", "Timeout",
                               "BackendErrorStatusCode"})
_ALL = frozenset({"inbound", "backend", "outbound", "on-error"})
_MAX_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class Sleep(Command):
    """Wait `seconds` before the next attempt (result: None)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class PrepareRetry(Command):
    """Ask to run attempt `attempt` (2 = the first retry).  Result: None to go on (the
    previous backend exchange is released), or a short reason why not (the body cannot
    be replayed, the retry budget is spent), which the runtime has logged."""

    attempt: int


def parse_duration(value: Any) -> Optional[float]:
    """Seconds from `100ms`, `2s`, `1m` or a bare number (seconds); 0 allowed; None if bad."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        n = float(value)
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*", value)
        if not m:
            return None
        n = float(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[m.group(2)]
    else:
        return None
    return n if 0 <= n <= _MAX_SECONDS else None


def wait_seconds(n: int, interval: float, delta: Optional[float],
                 max_interval: Optional[float], first_fast: bool, factor: float) -> float:
    """The wait before retry `n` (1-based); `factor` is the random draw in [0.8, 1.2]
    (used by the exponential formula only)."""
    if first_fast and n == 1:
        return 0.0
    if delta is None:
        return interval
    if max_interval is None:
        return interval + (n - 1) * delta
    return min(max_interval, interval + (2 ** n - 1) * factor * delta)


def _duration(s: Spec, key: str, required: bool = False) -> Optional[float]:
    if not s.has(key):
        if required:
            s.error("required", key)
        return None
    n = parse_duration(s.raw(key))
    if n is None:
        s.error(f"expected a duration from 0 to 1h (100ms, 2s) or a number of seconds, "
                f"got {s.raw(key)!r}", key)
    return n


@register
class Retry(Policy):
    """`retry: {condition, count (1-50), interval, max-interval, delta, first-fast-retry,
    policies: [...]}`: run `policies`, and again while the condition holds (see the
    module docstring)."""

    name = "retry"
    sections = _ALL
    rng: random.Random = random.Random()

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        s = Spec(spec, site, ("condition", "count", "interval", "max-interval", "delta",
                              "first-fast-retry", "policies"))
        self.condition = None
        if not s.has("condition"):
            s.error("required", "condition")
        else:
            self.condition = site.condition(s.raw("condition"), "condition")
        self.count = s.integer("count", 1, 1, 50, required=True) or 1
        self.interval = _duration(s, "interval", required=True) or 0.0
        self.delta = _duration(s, "delta")
        self.max_interval = _duration(s, "max-interval")
        if s.has("max-interval") and not s.has("delta"):
            s.error("needs delta (interval, delta and max-interval make the exponential "
                    "formula)", "max-interval")
        self.first_fast = s.flag("first-fast-retry", False)
        self.steps = site.nested(s.raw("policies") or (), "policies")
        if not self.steps and s.raw("policies") is None:
            s.error("required (the policies to retry, e.g. [forward-request])", "policies")
        parts = [st.policy for st in self.steps] + \
            ([self.condition] if self.condition is not None else [])
        self.reads_request_body = any(p.reads_request_body for p in parts)
        self.reads_response_body = any(p.reads_response_body for p in parts)

    def wait(self, n: int) -> float:
        """The wait before retry `n` (1-based), drawing from `self.rng` when exponential."""
        factor = 1.0
        if self.delta is not None and self.max_interval is not None and not (
                self.first_fast and n == 1):
            factor = self.rng.uniform(0.8, 1.2)
        return wait_seconds(n, self.interval, self.delta, self.max_interval,
                            self.first_fast, factor)

    def apply(self, ctx: Context) -> Any:
        return self._attempts(ctx)

    def _attempts(self, ctx: Context) -> Any:
        attempt = 1
        while True:
            failure: Optional[PolicyError] = None
            try:
                r = run_steps(self.steps, ctx)
                if r is not None and not isinstance(r, Answer):
                    r = yield from r
            except PolicyError as e:
                if e.reason not in RETRYABLE_REASONS:
                    raise
                failure, r = e, None
            if r is not None:           # return-response inside: the answer ends it all
                return r
            if attempt > self.count or not (yield from self._holds(ctx, failure)):
                break
            refused = yield PrepareRetry(attempt + 1)
            if refused is not None:
                break
            wait = self.wait(attempt)
            if wait > 0:
                yield Sleep(wait)
            attempt += 1
        if failure is not None:
            raise failure
        return None

    def _holds(self, ctx: Context, failure: Optional[PolicyError]) -> Any:
        """The condition on the attempt's outcome (a failure seen as on-error sees it)."""
        cond = self.condition
        if cond is None:
            return False
        if failure is None:
            if cond.reads_response_body and ctx.response is not None and \
                    ctx.response.body is None:
                data = yield ReadResponseBody(DEFAULT_BODY_LIMIT)
                if ctx.response.body is None:
                    ctx.response.body = data
            return bool(cond.test(ctx))
        saved = ctx.last_error, ctx.response
        ctx.last_error = LastError(source=failure.source or "forward-request",
                                   reason=failure.reason, message=failure.message,
                                   section=ctx.section, status=failure.status)
        if failure.reason != "BackendErrorStatusCode" or ctx.response is None:
            ctx.response = error_response(failure.status, failure.message, failure.headers)
        try:
            return bool(cond.test(ctx))
        finally:
            ctx.last_error, ctx.response = saved
