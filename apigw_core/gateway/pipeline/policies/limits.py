"""Rate limits, quotas and concurrency: `rate-limit`, `rate-limit-by-key`, `quota`,
`quota-by-key`, `limit-concurrency` (APIM's names, attributes and answers;
/work/shared/APIM-REFERENCE.md "Rate limits and quotas").

Strategy.  A policy decides nothing about time or storage: it yields one command per
decision (`TakeTokens` for a token bucket, `CountQuota` for a fixed window, `Acquire` for a
semaphore) and reads the result (`allowed`, `remaining`, `retry_after` seconds); the
runtime (runtime/limits.py) carries it out on the store named by the policy's `store`
attribute, else by the top-level `rate-limits.store` (local: the gateway's shared-memory
table; redis: a Redis server), and applies `on-store-failure` when that store cannot
answer.  A refused call takes nothing (the table's rule), so a client over the limit
recovers at the refill rate.

Amounts known only once the response is in (an `increment-condition` or `increment-count`
reading `response.*`, a quota's bandwidth) are *settled*: the command carries a
`settle(ctx) -> int` the runtime calls when the request is over (ctx.finish), and the
counter is corrected by the difference.  A rate limit takes its provisional amount at once
(so a call that reached the limit counts even when a later policy or the backend rejects
it, as APIM, and the 429 carries an exact Retry-After) and gives back what the condition
refuses; a quota checks with a count of 0 and adds the settled amount past the limit
(`force`), so it refuses once over.

Counter keys: `<policy>|<scope>|<key>`, where scope is `global`, `product:<name>`,
`api:<name>` or `operation:<api>/<name>` of the scope the policy was written in, and key
the subscription id (`rate-limit`, `quota`; their `api` / `operation` children append
`|api:<name>` / `|operation:<name>`) or the rendered `counter-key`.  So two policies with
the same counter-key share a counter within one scope (as APIM), and policies of different
scopes or kinds never share one by accident.  `limit-concurrency`'s key is shared by every
policy naming it, whatever its scope, as APIM documents ("can be shared by multiple
policies").  `rate-limit` and `quota` count per subscription: a call with none passes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from ..contract import Answer, Command, Context, Policy, PolicyError, Site
from ..engine import run_steps
from ..registry import register
from ._spec import Spec, header_name, header_value

__all__ = ["TakeTokens", "RefundTokens", "CountQuota", "Acquire", "RateLimit",
           "RateLimitByKey", "Quota", "QuotaByKey", "LimitConcurrency", "retry_seconds",
           "timespan", "scope_id", "StoreAttrs", "Answers"]

_ALL = frozenset({"inbound", "backend", "outbound", "on-error"})
_RATE_SECTIONS = frozenset({"inbound"})
MAX_RENEWAL = 300          # seconds: APIM's bound for rate-limit / rate-limit-by-key
# the shared table keeps a bucket in token-nanoseconds (calls x period in ns <= 2**62):
MAX_CALL_SECONDS = (1 << 62) // 1_000_000_000
MAX_WINDOW = (1 << 31) - 1  # seconds (68 years) of a quota window: times stay in range
_EPOCH_0001 = datetime(1, 1, 1, tzinfo=timezone.utc)
_RESPONSE = re.compile(r"\bresponse\b")
Settle = Callable[[Context], int]


# --- commands ----------------------------------------------------------------------------
# Built per request, so plain slotted dataclasses: a frozen one costs ~9x as much to build
# (object.__setattr__ per field), measured ~6 us here for TakeTokens.  Treat them as
# immutable all the same.

@dataclass(slots=True)
class TakeTokens(Command):
    """Take `n` tokens of the bucket `key` (starts full at `calls`, refills continuously at
    `calls / period` seconds).  Result: `allowed`, `remaining`, `retry_after` (seconds
    until `n` would pass; 0 when allowed).  `settle`: called when the request is over for
    the amount the call really costs; the runtime takes or refunds the difference."""

    key: str
    calls: int
    period: float
    n: int = 1
    store: Optional[str] = None        # None: rate-limits.store
    on_failure: Optional[str] = None   # None: rate-limits.on-store-failure
    settle: Optional[Settle] = None


@dataclass(slots=True)
class RefundTokens(Command):
    """Give `n` tokens back (a later limit of the same policy refused the call)."""

    key: str
    calls: int
    period: float
    n: int = 1
    store: Optional[str] = None
    on_failure: Optional[str] = None


@dataclass(slots=True)
class CountQuota(Command):
    """Add `n` to the fixed window `key` (windows of `period` seconds aligned on `start`,
    Unix seconds; period 0: one window forever).  Result as TakeTokens, `retry_after` the
    seconds until the window renews (0: never).  A refused count adds nothing; `settle`
    adds its amount (minus `n`) past the limit when the request is over."""

    key: str
    limit: int
    period: float
    start: float = 0.0
    n: int = 1
    store: Optional[str] = None
    on_failure: Optional[str] = None
    settle: Optional[Settle] = None
    calendar: Optional[str] = None     # "Monthly" | "Yearly": the runtime's UTC calendar
                                       # window instead of period / start


@dataclass(slots=True)
class Acquire(Command):
    """One slot of the semaphore `key` (at most `max_count` held, by every worker).
    Result: True when acquired; the runtime releases it when the request is over."""

    key: str
    max_count: int


# --- shared pieces -----------------------------------------------------------------------

def retry_seconds(seconds: float) -> int:
    """Retry-After: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(seconds - 1e-9))


def timespan(seconds: float) -> str:
    """.NET TimeSpan text as APIM prints it: `00:05:00`, `14.07:13:56` past a day."""
    s = max(0, math.ceil(seconds - 1e-9))
    days, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{days}." if days else "") + f"{h:02d}:{m:02d}:{s:02d}"


def scope_id(scope: str, ctx: Context) -> str:
    """The scope part of a counter key (see the module docstring)."""
    if scope == "product":
        return f"product:{getattr(ctx.product, 'name', '')}"
    if scope == "api":
        return f"api:{getattr(ctx.api, 'name', '')}"
    if scope == "operation":
        return f"operation:{getattr(ctx.api, 'name', '')}/{getattr(ctx.operation, 'name', '')}"
    return "global"


class StoreAttrs:
    """`store` and `on-store-failure`, common to the counting policies."""

    def __init__(self, s: Spec) -> None:
        self.store = s.choice("store", ("local", "redis"))
        self.on_failure = s.choice("on-store-failure", ("allow", "deny", "local"))


STORE_KEYS = ("store", "on-store-failure")
ANSWER_KEYS = ("retry-after-header-name", "retry-after-variable-name",
               "remaining-calls-header-name", "remaining-calls-variable-name",
               "total-calls-header-name")


class Answers:
    """The optional header / variable names, and the refusal built from a decision."""

    def __init__(self, s: Spec, remaining: str = "remaining-calls",
                 total: Optional[str] = "total-calls") -> None:
        def name(key: Optional[str], default: Optional[str] = None) -> Optional[bytes]:
            if key is None:
                return None
            text = s.text(key, default)
            if text is None:
                return None
            if not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", text):
                s.error(f"not a header name: {text!r}", key)
                return None
            return header_name(text)
        self.retry_header = name("retry-after-header-name", "Retry-After")
        self.retry_var = s.text("retry-after-variable-name")
        self.remaining_header = name(f"{remaining}-header-name")
        self.remaining_var = s.text(f"{remaining}-variable-name")
        self.total_header = name(f"{total}-header-name" if total else None)

    def passed(self, ctx: Context, remaining: int, total: int) -> None:
        if self.remaining_var is not None:
            ctx.variables[self.remaining_var] = remaining
        if self.remaining_header is not None:
            _set_response_header(ctx, self.remaining_header, str(remaining))
        if self.total_header is not None:
            _set_response_header(ctx, self.total_header, str(total))

    def refuse(self, ctx: Context, status: int, reason: str, message: str,
               retry_after: float, total: int) -> PolicyError:
        headers: list[tuple[bytes, bytes]] = []
        retry = retry_seconds(retry_after) if retry_after > 0 else None
        if retry is not None and self.retry_header is not None:
            headers.append((self.retry_header, b"%d" % retry))
        if retry is not None and ctx.request.protocol in ("grpc", "grpc-web"):
            # gRPC's own retry hint (A6 client retries), beside the Retry-After metadata
            headers.append((b"grpc-retry-pushback-ms", b"%d" % (retry * 1000)))
        if self.retry_var is not None and retry is not None:
            ctx.variables[self.retry_var] = retry
        if self.remaining_var is not None:
            ctx.variables[self.remaining_var] = 0
        if self.remaining_header is not None:
            headers.append((self.remaining_header, b"0"))
        if self.total_header is not None:
            headers.append((self.total_header, b"%d" % total))
        return PolicyError(status, reason, message, headers)


def _set_response_header(ctx: Context, name: bytes, value: str) -> None:
    extra = ctx.response_headers
    extra[:] = [h for h in extra if h[0] != name]
    extra.append((name, header_value(value)))


def _period(s: Spec, key: str, lo: int, hi: int, required: bool = True) -> int:
    return s.integer(key, lo or 1, lo, hi, required=required) or 0


def _bucket(s: Spec, suffix: str, match: Callable[[Context], bool]) -> "_Limit":
    """`calls` per `renewal-period` (<= 300 s), within the table's range."""
    calls = s.integer("calls", 1, 1, 1 << 40, required=True) or 1
    period = _period(s, "renewal-period", 1, MAX_RENEWAL)
    if calls * period > MAX_CALL_SECONDS:
        s.error(f"calls x renewal-period must be at most {MAX_CALL_SECONDS} (the counter "
                f"table's range), got {calls} x {period}", "calls")
    return _Limit(suffix, calls, period, match)


# --- rate-limit, rate-limit-by-key -------------------------------------------------------

def rate_limit_message(retry_after: float) -> str:
    return f"Rate limit is exceeded. Try again in {retry_seconds(retry_after)} seconds."


class _Limit:
    """One bucket of a rate-limit (the policy's own, or an api / operation child's)."""

    __slots__ = ("suffix", "calls", "period", "match")

    def __init__(self, suffix: str, calls: int, period: int, match: Callable[[Context], bool]
                 ) -> None:
        self.suffix, self.calls, self.period, self.match = suffix, calls, period, match


def _children(s: Spec, site: Site, kind: str, counts: tuple[str, ...]) -> list[tuple]:
    """`api: [{name, calls, renewal-period, operation: [...]}]` -> (suffix, values, match)."""
    out: list[tuple] = []
    for i, api in enumerate(s.items("api")):
        a = Spec(api, site, ("name", "id") + counts + ("operation",), prefix=f"api[{i}]")
        name = a.text("name") or a.text("id")
        if name is None:
            a.error("required", "name")
            continue
        out.append((f"|api:{name}", a, lambda ctx, n=name: getattr(ctx.api, "name", None) == n))
        for j, op in enumerate(a.items("operation")):
            o = Spec(op, site, ("name", "id") + counts, prefix=f"api[{i}].operation[{j}]")
            oname = o.text("name") or o.text("id")
            if oname is None:
                o.error("required", "name")
                continue
            out.append((f"|api:{name}|operation:{oname}", o,
                        lambda ctx, n=name, on=oname: getattr(ctx.api, "name", None) == n
                        and getattr(ctx.operation, "name", None) == on))
    return out


@register
class RateLimit(Policy):
    """`rate-limit: {calls, renewal-period, api: [{name, calls, renewal-period, operation:
    [...]}], retry-after-header-name, ..., store, on-store-failure}`: per subscription."""

    name = "rate-limit"
    sections = _RATE_SECTIONS
    kind = "rate-limit"

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        s = Spec(spec, site, ("calls", "renewal-period", "api") + ANSWER_KEYS + STORE_KEYS)
        self.scope = site.scope
        self.answers = Answers(s)
        self.stores = StoreAttrs(s)
        self.limits = [_bucket(s, "", lambda ctx: True)]
        for suffix, c, match in _children(s, site, self.kind, ("calls", "renewal-period")):
            self.limits.append(_bucket(c, suffix, match))

    def apply(self, ctx: Context) -> Any:
        if ctx.subscription is None:
            return None
        return self._take(ctx, f"{self.kind}|{scope_id(self.scope, ctx)}|{ctx.subscription.id}",
                          1, None)

    def _take(self, ctx: Context, base: str, n: int, settle: Optional[Settle]) -> Any:
        taken: list[_Limit] = []
        low: Optional[tuple[int, int]] = None     # (remaining, calls) of the tightest bucket
        st = self.stores
        for lim in self.limits:
            if not lim.match(ctx):
                continue
            d = yield TakeTokens(base + lim.suffix, lim.calls, float(lim.period), n,
                                 st.store, st.on_failure, settle)
            if not d.allowed:
                for t in taken:     # a refused call takes nothing, in any of its buckets
                    yield RefundTokens(base + t.suffix, t.calls, float(t.period), n,
                                       st.store, st.on_failure)
                raise self.answers.refuse(ctx, 429, "RateLimitExceeded",
                                          rate_limit_message(d.retry_after), d.retry_after,
                                          lim.calls)
            taken.append(lim)
            if low is None or d.remaining < low[0]:
                low = (d.remaining, lim.calls)
        if low is not None:
            self.answers.passed(ctx, *low)
        return None


@register
class RateLimitByKey(RateLimit):
    """`rate-limit-by-key: {calls, renewal-period, counter-key, increment-condition,
    increment-count, ...}`.  A condition or count reading the response is settled when the
    request is over (one token taken at once, the difference taken or given back then)."""

    name = "rate-limit-by-key"
    sections = _RATE_SECTIONS
    kind = "rate-limit-by-key"

    def __init__(self, spec: Any, site: Site) -> None:
        Policy.__init__(self, spec, site)
        s = Spec(spec, site, ("calls", "renewal-period", "counter-key", "increment-condition",
                              "increment-count") + ANSWER_KEYS + STORE_KEYS)
        self.scope = site.scope
        self.answers = Answers(s)
        self.stores = StoreAttrs(s)
        self.limits = [_bucket(s, "", lambda ctx: True)]
        self.counter = _Counter(s)
        self.reads_request_body = self.counter.reads_request_body
        count = self.counter.count
        if count is not None and count.constant is not None and \
                count.constant.strip().isdigit() and int(count.constant) > self.limits[0].calls:
            s.error(f"{count.constant.strip()} is more than calls ({self.limits[0].calls}): "
                    f"no call could ever pass", "increment-count")

    def apply(self, ctx: Context) -> Any:
        base = f"{self.kind}|{scope_id(self.scope, ctx)}|{self.counter.key.render(ctx)}" \
            if self.counter.key is not None else ""
        n, settle = self.counter.amount(ctx, provisional=1)
        if n is None:
            return None
        return self._take(ctx, base, n, settle)


class _Counter:
    """`counter-key`, `increment-condition`, `increment-count`: what a call costs, now or
    (reading the response) when it is over."""

    def __init__(self, s: Spec, count_key: str = "increment-count") -> None:
        self.key = s.template("counter-key", required=True)
        self.condition = s.site.condition(s.raw("increment-condition"), "increment-condition") \
            if s.has("increment-condition") else None
        raw = s.raw(count_key)
        self.count = None if raw is None else s.template(
            count_key, value=str(raw) if isinstance(raw, int) and not isinstance(raw, bool)
            else raw)
        if self.count is not None and self.count.constant is not None:
            c = self.count.constant.strip()
            if not c.isdigit():
                s.error(f"expected a non-negative integer or an expression, got {c!r}",
                        count_key)
        parts = [p for p in (self.key, self.condition, self.count) if p is not None]
        self.reads_request_body = any(p.reads_request_body for p in parts)
        self.late = any(_mentions_response(p) for p in (self.condition, self.count)
                        if p is not None)

    def now(self, ctx: Context) -> int:
        if self.condition is not None and not self.condition.test(ctx):
            return 0
        if self.count is None:
            return 1
        text = self.count.render(ctx).strip()
        try:
            n = int(text)
        except ValueError:
            raise PolicyError(500, "ExpressionValueEvaluationFailure",
                              f"increment-count {text!r} is not an integer.") from None
        return max(0, n)

    def amount(self, ctx: Context, provisional: int) -> tuple[Optional[int], Optional[Settle]]:
        """(n to take now, settle) ; n None: nothing to do at all."""
        if self.late:
            return provisional, self.now
        n = self.now(ctx)
        if n == 0 and self.condition is not None:
            # not counted, but still refused once over: take one and settle it back to 0
            return provisional, lambda ctx: 0
        return n, None


def _mentions_response(expr: Any) -> bool:
    return bool(_RESPONSE.search(getattr(expr, "source", "") or ""))


# --- quota, quota-by-key -------------------------------------------------------------------

def quota_message(bandwidth: bool, retry_after: float) -> str:
    what = "bandwidth" if bandwidth else "call volume"
    if retry_after <= 0:
        return f"Out of {what} quota."
    return f"Out of {what} quota. Quota will be replenished in {timespan(retry_after)}."


def _bytes_of(ctx: Context) -> int:
    """The bytes of a call for a bandwidth quota: request + response bodies, as buffered or
    as their Content-Length says (a streamed body of unknown length counts 0)."""
    total = 0
    for view in (ctx.request, ctx.response):
        if view is None:
            continue
        if view.body is not None:
            total += len(view.body)
            continue
        v = view.headers.get(b"content-length")
        if v is not None and v.strip().isdigit():
            total += int(v)
    return total


def _first_period_start(s: Spec, period: int) -> float:
    raw = s.text("first-period-start")
    start = _EPOCH_0001
    if raw is not None:
        try:
            start = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            if start.tzinfo is None:
                start = start.replace(tzinfo=timezone.utc)
        except ValueError:
            s.error(f"expected an ISO 8601 date-time (2024-01-01T00:00:00Z), got {raw!r}",
                    "first-period-start")
    offset = (start - datetime(1970, 1, 1, tzinfo=timezone.utc)).total_seconds()
    return offset % period if period > 0 else 0.0     # the same windows, near the epoch


@register
class Quota(Policy):
    """`quota: {calls, bandwidth (KB), renewal-period (0: never), api/operation children,
    ...}`: per subscription, fixed windows."""

    name = "quota"
    sections = _RATE_SECTIONS
    kind = "quota"
    _counts = ("calls", "bandwidth", "renewal-period")

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        extra = self._extra_keys()
        s = Spec(spec, site, self._counts + extra + ANSWER_KEYS + STORE_KEYS)
        self.scope = site.scope
        self.answers = Answers(s)
        self.stores = StoreAttrs(s)
        self.limits = [self._limit(s, "", lambda ctx: True)]
        if "api" in extra:
            for suffix, c, match in _children(s, site, self.kind, self._counts):
                self.limits.append(self._limit(c, suffix, match))
        self.counter = _Counter(s) if "counter-key" in extra else None
        self.reads_request_body = bool(self.counter and self.counter.reads_request_body)
        self.period = self.limits[0][3]
        self.start = _first_period_start(s, self.period) if "first-period-start" in extra \
            else 0.0

    def _extra_keys(self) -> tuple[str, ...]:
        return ("api",)

    def _limit(self, s: Spec, suffix: str, match: Callable) -> tuple:
        calls = s.integer("calls", None, 1, 1 << 50)
        kb = s.integer("bandwidth", None, 1, 1 << 40)
        if calls is None and kb is None and not s.has("calls") and not s.has("bandwidth"):
            s.error("expected calls, bandwidth or both")
        period = s.integer("renewal-period", 0, 0, MAX_WINDOW, required=True) or 0
        return (suffix, calls, kb, period, match)

    def apply(self, ctx: Context) -> Any:
        if ctx.subscription is None:
            return None
        return self._count(ctx, f"{self.kind}|{scope_id(self.scope, ctx)}|"
                                f"{ctx.subscription.id}", 1, None)

    def _count(self, ctx: Context, base: str, n: int, settle: Optional[Settle]) -> Any:
        st = self.stores
        low: Optional[tuple[int, int]] = None
        for suffix, calls, kb, period, match in self.limits:
            if not match(ctx):
                continue
            start = self.start if period else 0.0
            if calls is not None:
                d = yield CountQuota(base + suffix + "|calls", calls, float(period), start,
                                     n, st.store, st.on_failure, settle)
                if not d.allowed or (n == 0 and d.remaining <= 0):
                    raise self.answers.refuse(ctx, 403, "QuotaExceeded",
                                              quota_message(False, d.retry_after),
                                              d.retry_after, calls)
                if low is None or d.remaining < low[0]:
                    low = (d.remaining, calls)
            if kb is not None:    # checked now, counted when the call is over
                d = yield CountQuota(base + suffix + "|bandwidth", kb * 1024, float(period),
                                     start, 0, st.store, st.on_failure, _bytes_of)
                if d.remaining <= 0:
                    raise self.answers.refuse(ctx, 403, "QuotaExceeded",
                                              quota_message(True, d.retry_after),
                                              d.retry_after, kb)
        if low is not None:
            self.answers.passed(ctx, *low)
        return None


@register
class QuotaByKey(Quota):
    """`quota-by-key: {calls, bandwidth, renewal-period, counter-key, increment-condition,
    increment-count, first-period-start}`."""

    name = "quota-by-key"
    kind = "quota-by-key"

    def _extra_keys(self) -> tuple[str, ...]:
        return ("counter-key", "increment-condition", "increment-count", "first-period-start")

    def apply(self, ctx: Context) -> Any:
        assert self.counter is not None
        key = self.counter.key.render(ctx) if self.counter.key is not None else ""
        base = f"{self.kind}|{scope_id(self.scope, ctx)}|{key}"
        if self.counter.late:      # check now (count 0), count the settled amount then
            return self._count(ctx, base, 0, self.counter.now)
        n = self.counter.now(ctx)
        return self._count(ctx, base, n, None)


# --- limit-concurrency -------------------------------------------------------------------

CONCURRENCY_MESSAGE = "Too many concurrent requests."


@register
class LimitConcurrency(Policy):
    """`limit-concurrency: {key, max-count, policies: [...]}`: the nested policies run for at
    most max-count requests at a time (every worker counted); over it: 429 at once.  The
    slot is held until the request is over (response written, or the client gone)."""

    name = "limit-concurrency"
    sections = _ALL

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        s = Spec(spec, site, ("key", "max-count", "policies"))
        self.key = s.template("key", required=True)
        self.max_count = s.integer("max-count", 1, 1, 1 << 31, required=True) or 1
        self.steps = site.nested(s.raw("policies") or (), "policies")
        parts = [st.policy for st in self.steps] + ([self.key] if self.key else [])
        self.reads_request_body = any(p.reads_request_body for p in parts)
        self.reads_response_body = any(p.reads_response_body for p in parts)

    def apply(self, ctx: Context) -> Any:
        return self._run(ctx)

    def _run(self, ctx: Context) -> Any:
        key = self.key.render(ctx) if self.key is not None else ""
        got = yield Acquire(f"limit-concurrency|{key}", self.max_count)
        if not got:
            raise PolicyError(429, "ConcurrencyLimitExceeded", CONCURRENCY_MESSAGE)
        r = run_steps(self.steps, ctx) if self.steps else None
        if r is None or isinstance(r, Answer):
            return r
        return (yield from r)
