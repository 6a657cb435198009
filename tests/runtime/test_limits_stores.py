"""The runtime side of the limit commands (runtime/limits.py), in process: the local store
over a real BucketTable with a fake clock, on-store-failure (allow / deny / local) when a
remote store cannot answer (a store that raises StoreUnavailable: the fault), settling in
ctx.finish, semaphores, and calendar windows."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import trio

from apigw_core.buckets import BucketTable
from apigw_core.gateway.config._ratelimits import RateLimitsConfig
from apigw_core.gateway.pipeline import PolicyError
from apigw_core.gateway.pipeline.policies.limits import Acquire, CountQuota, TakeTokens
from apigw_core.runtime import limits as L
from apigw_core.runtime.commands import COMMAND_HANDLERS, run_finish



class Clock:
    def __init__(self) -> None:
        self.ns = 10 ** 12

    def __call__(self) -> int:
        return self.ns


class Down:
    """A remote store that is gone: every call fails within its deadline."""

    calls = 0

    async def take(self, *a, **k):
        Down.calls += 1
        raise L.StoreUnavailable("connection refused")

    refund = count = take


def fake_call(store="local", mode="allow", remote=None):
    table = BucketTable(slots=1024)
    clock = Clock()
    gw = SimpleNamespace(buckets=table)
    gw._local_store = L.LocalStore(table, clock, clock)
    state = SimpleNamespace(config=SimpleNamespace(rate_limits=RateLimitsConfig(store, mode)),
                            stores={"redis": remote} if remote else {}, nursery=None)
    ctx = SimpleNamespace(finish=[], variables={})
    return SimpleNamespace(gw=gw, state=state, ctx=ctx, rid=b"r1", taps=[]), clock


def run(call, cmd):
    return trio.run(COMMAND_HANDLERS[type(cmd)], call, cmd)


def test_local_take_refill_and_exact_retry():
    call, clock = fake_call()
    cmd = TakeTokens("k", 2, 10.0, 1)
    assert run(call, cmd).allowed and run(call, cmd).allowed
    d = run(call, cmd)
    assert not d.allowed and d.remaining == 0 and d.retry_after == pytest.approx(5.0)
    clock.ns += 5 * 10 ** 9
    assert run(call, cmd).allowed


def test_settle_takes_the_difference_in_finish():
    call, clock = fake_call()
    cmd = TakeTokens("k", 10, 60.0, 1, settle=lambda ctx: 7)
    assert run(call, cmd).remaining == 9
    run_finish(call.ctx, b"r1")
    assert run(call, TakeTokens("k", 10, 60.0, 1)).remaining == 2
    back = TakeTokens("k", 10, 60.0, 2, settle=lambda ctx: 0)   # refunded in full
    assert run(call, back).remaining == 0
    run_finish(call.ctx, b"r1")
    assert run(call, TakeTokens("k", 10, 60.0, 0)).remaining == 2


def test_quota_count_and_forced_settle():
    call, clock = fake_call()
    cmd = CountQuota("q", 1000, 60.0, 0.0, 0, settle=lambda ctx: 1500)
    d = run(call, cmd)
    assert d.allowed and d.remaining == 1000 and 0 < d.retry_after <= 60
    run_finish(call.ctx, b"r1")
    assert run(call, CountQuota("q", 1000, 60.0, 0.0, 0)).remaining == 0


def test_semaphore_released_in_finish():
    call, _ = fake_call()
    assert run(call, Acquire("s", 1)) is True
    other = SimpleNamespace(**{**vars(call), "ctx": SimpleNamespace(finish=[])})
    assert run(other, Acquire("s", 1)) is False
    run_finish(call.ctx, b"r1")
    assert run(other, Acquire("s", 1)) is True


@pytest.mark.parametrize("mode", ["allow", "deny", "local"])
def test_on_store_failure(mode):
    call, _ = fake_call("redis", mode, remote=Down())
    before = L.STORE_FAILURES.get("redis", 0)
    cmd = TakeTokens("k", 1, 60.0, 1)
    if mode == "deny":
        with pytest.raises(PolicyError) as e:
            run(call, cmd)
        assert (e.value.status, e.value.message) == (503, "Rate limit store unavailable")
        assert e.value.headers == ((b"retry-after", b"1"),)
    elif mode == "allow":
        assert run(call, cmd).allowed and run(call, cmd).allowed   # uncounted
    else:                       # this gateway's table decides: the limit holds
        assert run(call, cmd).allowed and not run(call, cmd).allowed
    assert L.STORE_FAILURES["redis"] > before


def test_a_policy_attribute_overrides_the_default_store():
    call, _ = fake_call("local", "allow", remote=Down())
    with pytest.raises(PolicyError):
        run(call, TakeTokens("k", 1, 60.0, 1, store="redis", on_failure="deny"))
    assert run(call, TakeTokens("k", 1, 60.0, 1)).allowed      # local by default


def test_missing_remote_store_counts_as_unavailable():
    call, _ = fake_call("redis", "deny")
    with pytest.raises(PolicyError):
        run(call, TakeTokens("k", 1, 60.0, 1))


def test_calendar_windows():
    # 2024-02-10 12:00 UTC: February of a leap year (29 days)
    label, start, period = L.calendar_window("Monthly", 1707566400)
    assert label == "2024-02-01" and start == 1706745600 and period == 29 * 86400
    label, start, period = L.calendar_window("Monthly", 1734998400)    # 2024-12-24
    assert label == "2024-12-01" and period == 31 * 86400
    label, start, period = L.calendar_window("Yearly", 1707566400)
    assert label == "2024-01-01" and period == 366 * 86400
    call, _ = fake_call()
    d = run(call, CountQuota("m", 5, 0.0, 0.0, 1, calendar="Monthly"))
    assert d.allowed and d.remaining == 4 and 0 < d.retry_after <= 31 * 86400
