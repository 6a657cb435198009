"""A fake counter store with a fake clock, and a driver that runs the limit commands on it.

`ModelStore` is the reference semantics written plainly (exact fractions): APIM v2's token
bucket (starts full at `calls`, refills continuously at calls/period, a refused take takes
nothing) and fixed windows aligned on `start` (period 0: one window forever).  The
policies never see it: they yield commands, `LimitsDriver` answers them as the runtime
would (runtime/limits.py) and runs ctx.finish at the end of each request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Optional

from apigw_core.gateway.pipeline import run
from apigw_core.gateway.pipeline.policies.limits import (
    Acquire, CountQuota, RefundTokens, TakeTokens,
)
from apigw_core.gateway.pipeline.policies.llm import TapResponse

from helpers import Driver, make_ctx


@dataclass
class D:
    allowed: bool
    remaining: int
    retry_after: float


class ModelStore:
    def __init__(self) -> None:
        self.now = Fraction(0)            # seconds; tests move it
        self.buckets: dict[str, tuple[Fraction, Fraction]] = {}   # key -> (tokens, at)
        self.windows: dict[str, tuple[int, int]] = {}             # key -> (window, used)
        self.held: dict[str, int] = {}

    def _level(self, key: str, calls: int, period: float) -> Fraction:
        tokens, at = self.buckets.get(key, (Fraction(calls), self.now))
        rate = Fraction(calls) / Fraction(period)
        return min(Fraction(calls), tokens + (self.now - at) * rate)

    def take(self, key: str, calls: int, period: float, n: int) -> D:
        level = self._level(key, calls, period)
        if level >= n:
            self.buckets[key] = (level - n, self.now)
            return D(True, math.floor(level - n), 0.0)
        self.buckets[key] = (level, self.now)
        return D(False, math.floor(level), float((n - level) * Fraction(period) / calls))

    def refund(self, key: str, calls: int, period: float, n: int) -> None:
        level = self._level(key, calls, period)
        self.buckets[key] = (min(Fraction(calls), level + n), self.now)

    def count(self, key: str, limit: int, period: float, start: float, n: int,
              force: bool = False) -> D:
        if period:
            window = math.floor((self.now - Fraction(start)) / Fraction(period))
            renew = float(Fraction(start) + (window + 1) * Fraction(period) - self.now)
        else:
            window, renew = 0, 0.0
        w, used = self.windows.get(key, (window, 0))
        if w != window:
            used = 0
        if used + n <= limit or force:
            used += n
            self.windows[key] = (window, used)
            return D(used <= limit, max(0, limit - used), renew)
        self.windows[key] = (window, used)
        return D(False, max(0, limit - used), renew)


class LimitsDriver(Driver):
    def __init__(self, store: Optional[ModelStore] = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.store = store or ModelStore()
        self.taps: list = []

    def execute(self, cmd: Any, ctx: Any) -> Any:
        s = self.store
        if isinstance(cmd, TakeTokens):
            self.commands.append(cmd)
            d = s.take(cmd.key, cmd.calls, cmd.period, cmd.n)
            if d.allowed and cmd.settle is not None:
                def settle(ctx: Any, cmd: TakeTokens = cmd) -> None:
                    delta = max(0, cmd.settle(ctx)) - cmd.n
                    if delta > 0:     # more than is left: take what is left
                        d = s.take(cmd.key, cmd.calls, cmd.period, delta)
                        if not d.allowed and d.remaining > 0:
                            s.take(cmd.key, cmd.calls, cmd.period, d.remaining)
                    elif delta < 0:
                        s.refund(cmd.key, cmd.calls, cmd.period, -delta)
                ctx.finish.append(settle)
            return d
        if isinstance(cmd, RefundTokens):
            self.commands.append(cmd)
            s.refund(cmd.key, cmd.calls, cmd.period, cmd.n)
            return None
        if isinstance(cmd, CountQuota):
            self.commands.append(cmd)
            d = s.count(cmd.key, cmd.limit, cmd.period, cmd.start, cmd.n)
            if d.allowed and cmd.settle is not None:
                def settle_q(ctx: Any, cmd: CountQuota = cmd) -> None:
                    extra = max(0, cmd.settle(ctx)) - cmd.n
                    if extra > 0:
                        s.count(cmd.key, cmd.limit, cmd.period, cmd.start, extra, True)
                ctx.finish.append(settle_q)
            return d
        if isinstance(cmd, TapResponse):
            self.commands.append(cmd)
            self.taps.append(cmd.feed)
            return None
        if isinstance(cmd, Acquire):
            self.commands.append(cmd)
            if s.held.get(cmd.key, 0) >= cmd.max_count:
                return False
            s.held[cmd.key] = s.held.get(cmd.key, 0) + 1

            def release(ctx: Any, key: str = cmd.key) -> None:
                s.held[key] -= 1
            ctx.finish.append(release)
            return True
        return super().execute(cmd, ctx)


def call(program: Any, driver: LimitsDriver, ctx: Any = None, finish: bool = True,
         **ctx_kw: Any) -> tuple:
    """One request through `program`: (Result, ctx); ctx.finish runs unless told not to."""
    ctx = ctx if ctx is not None else make_ctx(**ctx_kw)
    driver.taps = []
    result = driver.run(run(program, ctx), ctx)
    body = ctx.response.body if ctx.response is not None and ctx.response.body is not None \
        else driver.backend.body
    for feed in driver.taps:        # the body as the runtime writes it: in pieces
        for i in range(0, len(body), 7):
            feed(body[i:i + 7])
    if finish:
        for fn in ctx.finish:
            fn(ctx)
        ctx.finish = []
    return result, ctx
