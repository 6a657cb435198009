"""The runtime side of the limit policies: counter stores, and the handlers of the
commands the policies yield (gateway/pipeline/policies/limits.py, llm.py).

Strategy.  A policy says what to count; this module says where and when.  Every decision
goes to a `CounterStore` (async `take` / `refund` / `count`, seconds in, `Decision` out):

- `local`: `LocalStore`, the gateway's shared-memory `BucketTable` (`gw.buckets`, one table
  for every worker of this gateway, made by the supervisor; a process without one makes
  its own).  Time is read here: monotonic nanoseconds for buckets, Unix nanoseconds for
  quota windows (they are aligned on dates).  Its calls never block, so they are also made
  synchronously (`*_now`) when a request is settled in ctx.finish.
- anything else (`redis`): found by name in `call.state.stores` (a mapping the Redis
  store's owner puts on GatewayState: `{"redis": RedisStore(...)}`; `call.gw.stores` is
  looked at too).  It must answer within its own deadline or raise `StoreUnavailable`; a
  store that is not there counts as unavailable.

On `StoreUnavailable` the command's `on_failure` (else `rate-limits.on-store-failure`)
decides: `allow` lets the call through uncounted, `deny` answers 503 "Rate limit store
unavailable" with `Retry-After: 1`, `local` decides on this gateway's table instead.  Each
failure adds one to `STORE_FAILURES[store name]` (a plain counter for the metrics).

Settling: a command with `settle` gets a ctx.finish callback that computes the call's real
cost once the response is over and corrects the counter by the difference (take more or
refund for a bucket, a forced count for a quota).  A local store does it at once; a remote
one in a task of the state's nursery (ctx.finish callbacks are synchronous).
`limit-concurrency` is always local (a semaphore in the same table); its slot is released
in ctx.finish, which the executor runs when the request is over, the client gone included.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import datetime, timezone
from typing import Any, Callable, NamedTuple, Optional, Protocol

from ..buckets import BucketTable, BucketTableFull
from ..gateway.pipeline import PolicyError
from ..gateway.pipeline.policies.limits import Acquire, CountQuota, RefundTokens, TakeTokens
from ..gateway.pipeline.policies.llm import TapResponse
from .commands import command_handler
from .state_metrics import count_decision, count_store_failure

__all__ = ["Decision", "StoreUnavailable", "CounterStore", "LocalStore", "local_store",
           "find_store", "STORE_FAILURES", "EXHAUSTED_REASONS", "STORE_UNAVAILABLE"]

log = logging.getLogger("apigw_core.runtime")

STORE_FAILURES: dict[str, int] = {}
STORE_UNAVAILABLE = "Rate limit store unavailable"
# refusals a gRPC caller gets as RESOURCE_EXHAUSTED (8) whatever their HTTP status
EXHAUSTED_REASONS = frozenset({"RateLimitExceeded", "QuotaExceeded", "TokenLimitExceeded",
                               "TokenQuotaExceeded", "ConcurrencyLimitExceeded"})
_NS = 1_000_000_000


class Decision(NamedTuple):
    """One decision: immutable like the frozen dataclass of the seam's sketch, built with
    the same fields positionally or by name, and a NamedTuple because a decision is made per
    request (a frozen dataclass costs ~2 us to build here, a NamedTuple ~0.3 us)."""

    allowed: bool
    remaining: int
    retry_after: float   # seconds


class StoreUnavailable(Exception):
    """Raised by a remote store that cannot decide within its deadline."""


class CounterStore(Protocol):
    async def take(self, key: str, calls: int, period: float, n: int) -> Decision: ...

    async def refund(self, key: str, calls: int, period: float, n: int) -> None: ...

    async def count(self, key: str, limit: int, period: float, start: float, n: int,
                    force: bool = False) -> Decision: ...


def _decision(allowed: bool, remaining: int, retry_after: float) -> Decision:
    return _new(Decision, (allowed, remaining, retry_after))   # NamedTuple's own, minus a call


_new = tuple.__new__


def _key(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


class LocalStore:
    """A BucketTable as a CounterStore (and its synchronous twins, for ctx.finish)."""

    def __init__(self, table: Any, monotonic_ns: Callable[[], int] = time.monotonic_ns,
                 time_ns: Callable[[], int] = time.time_ns) -> None:
        self.table = table
        self._mono, self._wall = monotonic_ns, time_ns

    def take_now(self, key: str, calls: int, period: float, n: int) -> Decision:
        try:
            ok, remaining, wait = self.table.take(_key(key), calls, int(period * _NS), n,
                                                  self._mono())
        except (BucketTableFull, ValueError) as e:   # full, or arguments out of its range
            raise StoreUnavailable(str(e)) from None
        # wait -1: n > calls can never pass; say one period
        if ok:
            return _decision(True, remaining, 0.0)
        return _decision(False, remaining, (wait if wait >= 0 else int(period * _NS)) / _NS)

    def refund_now(self, key: str, calls: int, period: float, n: int) -> None:
        self.table.refund(_key(key), calls, int(period * _NS), n, self._mono())

    def count_now(self, key: str, limit: int, period: float, start: float, n: int,
                  force: bool = False) -> Decision:
        try:
            ok, remaining, renew = self.table.count(_key(key), limit, int(period * _NS),
                                                    int(start * _NS), n, self._wall(), force)
        except (BucketTableFull, ValueError) as e:   # full, or arguments out of its range
            raise StoreUnavailable(str(e)) from None
        return _decision(bool(ok), remaining, renew / _NS)

    async def take(self, key: str, calls: int, period: float, n: int) -> Decision:
        return self.take_now(key, calls, period, n)

    async def refund(self, key: str, calls: int, period: float, n: int) -> None:
        self.refund_now(key, calls, period, n)

    async def count(self, key: str, limit: int, period: float, start: float, n: int,
                    force: bool = False) -> Decision:
        return self.count_now(key, limit, period, start, n, force)

    def acquire(self, key: str, max_count: int) -> bool:
        try:
            return bool(self.table.acquire(_key(key), max_count))
        except BucketTableFull:
            log.warning("the bucket table is full: limit-concurrency %r admits uncounted", key)
            return True

    def release(self, key: str) -> None:
        self.table.release(_key(key))


_process_store: Optional[LocalStore] = None


def local_store(gw: Any) -> LocalStore:
    """The gateway's shared table (`gw.buckets`), else one made for this process."""
    global _process_store
    table = getattr(gw, "buckets", None)
    if table is not None:
        store = getattr(gw, "_local_store", None)
        if store is None or store.table is not table:
            store = LocalStore(table)
            try:
                gw._local_store = store
            except AttributeError:   # a slotted gateway: wrap each time (cheap)
                pass
        return store
    if _process_store is None:
        _process_store = LocalStore(BucketTable())
    return _process_store


def find_store(call: Any, name: str) -> Any:
    """The store called `name` (see the module docstring); StoreUnavailable if none."""
    if name == "local":
        return local_store(call.gw)
    for holder in (call.state, call.gw):
        stores = getattr(holder, "stores", None)
        if stores:
            store = stores.get(name)
            if store is not None:
                return store
    raise StoreUnavailable(f"no {name} store is configured")


def _choice(call: Any, cmd: Any) -> tuple[str, str]:
    cfg = getattr(call.state.config, "rate_limits", None)
    name = cmd.store or getattr(cfg, "store", "local")
    mode = cmd.on_failure or getattr(cfg, "on_store_failure", "allow")
    return name, mode


def _failed(call: Any, name: str, e: Exception, mode: str) -> None:
    STORE_FAILURES[name] = STORE_FAILURES.get(name, 0) + 1
    count_store_failure(call, name, mode)
    log.debug("request %s: %s store unavailable: %s", call.rid.decode("latin-1"), name, e)


async def _decide(call: Any, cmd: Any, op: Callable[[Any], Any], allow: Decision
                  ) -> tuple[Decision, Any]:
    """(decision, the store that made it; None when on-store-failure let the call by)."""
    name, mode = _choice(call, cmd)
    try:
        store = find_store(call, name)
        return await op(store), store
    except StoreUnavailable as e:
        _failed(call, name, e, mode)
        if name == "local":      # the table is full: nothing else to ask
            log.warning("request %s: %s", call.rid.decode("latin-1"), e)
            if mode == "deny":
                raise PolicyError(503, "RateLimitStoreUnavailable", STORE_UNAVAILABLE,
                                  [(b"retry-after", b"1")]) from None
            return allow, None
        if mode == "deny":
            raise PolicyError(503, "RateLimitStoreUnavailable", STORE_UNAVAILABLE,
                              [(b"retry-after", b"1")]) from None
        if mode == "local":
            store = local_store(call.gw)
            return await op(store), store
        return allow, None


def _later(call: Any, store: Any, sync: Callable[[LocalStore], None],
           remote: Callable[[Any], Any]) -> None:
    """Run a settling step now (local store) or in a task (remote store)."""
    if isinstance(store, LocalStore):
        sync(store)
        return
    nursery = getattr(call.state, "nursery", None)
    if nursery is None:
        return

    async def go() -> None:
        try:
            await remote(store)
        except StoreUnavailable as e:
            _failed(call, "remote", e, "settle")
    nursery.start_soon(go)


def _charge_now(store: LocalStore, cmd: TakeTokens, n: int) -> None:
    """Take `n` more tokens, or all that are left when fewer are (a settled cost is owed:
    it must not be dropped because the bucket ran low meanwhile)."""
    d = store.take_now(cmd.key, cmd.calls, cmd.period, n)
    if not d.allowed and d.remaining > 0:
        store.take_now(cmd.key, cmd.calls, cmd.period, d.remaining)


async def _charge(store: Any, cmd: TakeTokens, n: int) -> None:
    d = await store.take(cmd.key, cmd.calls, cmd.period, n)
    if not d.allowed and d.remaining > 0:
        await store.take(cmd.key, cmd.calls, cmd.period, d.remaining)


@command_handler(TakeTokens)
async def _take(call: Any, cmd: TakeTokens) -> Decision:
    d, store = await _decide(call, cmd, lambda s: s.take(cmd.key, cmd.calls, cmd.period,
                                                         cmd.n),
                             Decision(True, max(0, cmd.calls - cmd.n), 0.0))
    count_decision(call, cmd.key, d.allowed)
    if d.allowed and cmd.settle is not None and store is not None:
        def settle(ctx: Any) -> None:
            delta = max(0, int(cmd.settle(ctx))) - cmd.n
            if delta > 0:
                _later(call, store, lambda s: _charge_now(s, cmd, delta),
                       lambda s: _charge(s, cmd, delta))
            elif delta < 0:
                _later(call, store,
                       lambda s: s.refund_now(cmd.key, cmd.calls, cmd.period, -delta),
                       lambda s: s.refund(cmd.key, cmd.calls, cmd.period, -delta))
        call.ctx.finish.append(settle)
    return d


@command_handler(RefundTokens)
async def _refund(call: Any, cmd: RefundTokens) -> None:
    async def op(s: Any) -> Decision:
        await s.refund(cmd.key, cmd.calls, cmd.period, cmd.n)
        return Decision(True, 0, 0.0)
    try:
        await _decide(call, cmd, op, Decision(True, 0, 0.0))
    except PolicyError:
        pass   # deny mode: the call is refused already; nothing to give back


def calendar_window(kind: str, now: float) -> tuple[str, float, float]:
    """(label, start, period) of the UTC calendar month or year holding `now`."""
    t = datetime.fromtimestamp(now, timezone.utc)
    if kind == "Monthly":
        start = datetime(t.year, t.month, 1, tzinfo=timezone.utc)
        end = datetime(t.year + t.month // 12, t.month % 12 + 1, 1, tzinfo=timezone.utc)
    else:
        start = datetime(t.year, 1, 1, tzinfo=timezone.utc)
        end = datetime(t.year + 1, 1, 1, tzinfo=timezone.utc)
    return start.date().isoformat(), start.timestamp(), (end - start).total_seconds()


@command_handler(TapResponse)
async def _tap(call: Any, cmd: TapResponse) -> None:
    call.taps.append(cmd.feed)


@command_handler(CountQuota)
async def _count(call: Any, cmd: CountQuota) -> Decision:
    if cmd.calendar is not None:    # this month's (year's) own counter, as a fixed window
        label, start, period = calendar_window(cmd.calendar, time.time())
        cmd = dataclasses.replace(cmd, key=f"{cmd.key}|{label}", period=period, start=start,
                                  calendar=None)
    d, store = await _decide(call, cmd, lambda s: s.count(cmd.key, cmd.limit, cmd.period,
                                                          cmd.start, cmd.n),
                             Decision(True, max(0, cmd.limit - cmd.n), 0.0))
    # a check (count 0) is refused by the policy when nothing is left
    count_decision(call, cmd.key, d.allowed and (cmd.n > 0 or d.remaining > 0))
    if d.allowed and cmd.settle is not None and store is not None:
        def settle(ctx: Any) -> None:
            extra = max(0, int(cmd.settle(ctx))) - cmd.n
            if extra > 0:
                _later(call, store,
                       lambda s: s.count_now(cmd.key, cmd.limit, cmd.period, cmd.start, extra,
                                             True),
                       lambda s: s.count(cmd.key, cmd.limit, cmd.period, cmd.start, extra,
                                         True))
        call.ctx.finish.append(settle)
    return d


@command_handler(Acquire)
async def _acquire(call: Any, cmd: Acquire) -> bool:
    store = local_store(call.gw)
    if not store.acquire(cmd.key, cmd.max_count):
        return False
    call.ctx.finish.append(lambda ctx: store.release(cmd.key))
    return True
