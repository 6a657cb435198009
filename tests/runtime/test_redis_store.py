"""RedisStore (runtime/redis_store.py): the Lua scripts against a real redis-server.

Two kinds of test.  Behaviour with Redis' own clock (`TIME`): a bucket starts full, a
refused take takes nothing, keys expire when the bucket is full again / the window ends,
a full bucket leaves no key, failures become StoreUnavailable within the deadline.  And a
differential test: the same random operation sequences on the local table's twin
(LocalStore over BucketTable) and on Redis, with the time passed in (`RedisStore.clock`,
microseconds; the scripts read it from ARGV instead of TIME), give the same decisions.
"""

from __future__ import annotations

import time

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from apigw_core.gateway.config import parse_config
from apigw_core.runtime.limits import Decision, LocalStore, StoreUnavailable
from apigw_core.runtime.redis import RedisClient
from apigw_core.runtime.redis_store import RedisStore, redis_stores
from redis_proc import RedisProc, free_port


@pytest.fixture(scope="module")
def redis():
    r = RedisProc()
    yield r
    r.stop()


def run(fn, *args):
    return trio.run(fn, *args)


def test_bucket_starts_full_and_refused_takes_take_nothing(redis):
    async def main():
        s = RedisStore(RedisClient(redis.url, timeout=5))
        await s.client.execute("FLUSHDB")
        got = [await s.take("k1", 3, 60, 1) for _ in range(3)]
        assert [(d.allowed, d.remaining) for d in got] == [(True, 2), (True, 1), (True, 0)]
        for _ in range(5):   # refused: nothing taken, the wait does not grow
            d = await s.take("k1", 3, 60, 1)
            assert not d.allowed and d.remaining == 0
            assert 19.9 < d.retry_after <= 20.0   # one token every 60/3 s
        d = await s.take("k1", 3, 60, 4)
        assert not d.allowed and d.retry_after == 60   # more than calls: never; one period
        ttl = await s.client.execute("PTTL", b"apigw:b:k1")
        assert 59_000 < ttl <= 60_002                 # full again in one period
        await s.refund("k1", 3, 60, 5)                # back to full: no key left
        assert await s.client.execute("EXISTS", b"apigw:b:k1") == 0
        await s.refund("never", 3, 60, 1)
        assert await s.client.execute("EXISTS", b"apigw:b:never") == 0
    run(main)


def test_bucket_refills_continuously(redis):
    async def main():
        s = RedisStore(RedisClient(redis.url, timeout=1))
        assert (await s.take("fast", 2, 0.2, 2)).allowed
        d = await s.take("fast", 2, 0.2, 1)
        assert not d.allowed and 0 < d.retry_after <= 0.1
        with trio.fail_after(10):   # polls the refill (a tenth of a second)
            while not (await s.take("fast", 2, 0.2, 1)).allowed:
                await trio.sleep(0.01)
    run(main)


def test_quota_window_aligned_on_start(redis):
    async def main():
        s = RedisStore(RedisClient(redis.url, timeout=5))
        start = time.time() - 5           # a 3600 s window that began 5 s ago
        d = await s.count("q", 2, 3600, start, 1)
        assert d.allowed and d.remaining == 1 and 3590 < d.retry_after <= 3595.5
        assert (await s.count("q", 2, 3600, start, 1)).allowed
        d = await s.count("q", 2, 3600, start, 1)
        assert not d.allowed and d.remaining == 0
        d = await s.count("q", 2, 3600, start, 5, force=True)   # bandwidth after the fact
        assert not d.allowed and d.remaining == 0
        ttl = await s.client.execute("PTTL", b"apigw:q:q")
        assert 3_590_000 < ttl <= 3_596_000
        d = await s.count("forever", 1, 0, 0, 1)
        assert d.allowed and d.retry_after == 0
        assert await s.client.execute("PTTL", b"apigw:q:forever") == -1
    run(main)


def test_large_limits_keep_integers_exact(redis):
    async def main():
        s = RedisStore(RedisClient(redis.url, timeout=5))
        calls = 2**31 - 1                          # calls * period in us > 2**52: ms units
        d = await s.take("big", calls, 300, calls)   # a new bucket is exactly full
        assert d.allowed and d.remaining == 0
        d = await s.take("big", calls, 300, calls)   # a whole bucket needs 300 s again
        assert not d.allowed and d.remaining < calls and 0 < d.retry_after <= 300
        c, p = await s.client.execute("HMGET", b"apigw:b:big", "c", "p")
        assert p == b"300000" and c.isdigit()      # integers, never 1.2e+17
        d = await s.count("bigq", 2**50, 0, 0, 2**50 - 3)
        assert d.allowed and d.remaining == 3
        assert await s.client.execute("HGET", b"apigw:q:bigq", "a") == b"%d" % (2**50 - 3)
    run(main)


def test_unavailable_within_the_deadline(redis):
    async def main():
        s = RedisStore(RedisClient(redis.url, timeout=0.05))
        await s.take("x", 1, 1, 1)
        redis.pause()
        try:
            t0 = time.monotonic()
            with pytest.raises(StoreUnavailable, match="timed out"):
                await s.take("x", 1, 1, 1)
            assert time.monotonic() - t0 < 1.0
            assert s.failures == 1 and s.client.failures == 1
        finally:
            redis.resume()
    run(main)


def test_an_error_reply_is_a_store_failure(redis, caplog):
    async def main():
        s = RedisStore(RedisClient(redis.url, timeout=5))
        await s.client.execute("SET", b"apigw:b:wrongtype", "x")   # not a hash
        for _ in range(3):
            with pytest.raises(StoreUnavailable, match="WRONGTYPE"):
                await s.take("wrongtype", 1, 1, 1)
        assert s.failures == 3
    run(main)
    assert sum("WRONGTYPE" in r.getMessage() for r in caplog.records) == 1


def test_a_cluster_node_is_refused_with_a_reason(tmp_path, caplog):
    port = next(p for p in iter(free_port, None) if p <= 55535)   # its bus port: +10000
    node = RedisProc(port, args=("--cluster-enabled", "yes", "--cluster-config-file",
                                 str(tmp_path / "nodes.conf")))
    try:
        async def main():
            s = RedisStore(RedisClient(node.url, timeout=5))
            for key in ("a", "b", "c"):   # no slot served: CLUSTERDOWN (else MOVED)
                with pytest.raises(StoreUnavailable, match="Redis Cluster is not supported"):
                    await s.take(key, 1, 1, 1)
            assert s.client.state == "up"   # the server answers: not an outage
        run(main)
    finally:
        node.stop()
    assert sum("Cluster is not supported" in r.getMessage() for r in caplog.records) == 1


def test_stores_follow_the_config():
    base = {"listeners": [{"bind": "127.0.0.1:0"}]}
    none = parse_config(base)
    assert redis_stores(none) == {}

    class Prev:
        def __init__(self, config):
            self.config, self.stores = config, redis_stores(config)
    a = Prev(parse_config({**base, "redis": {"url": "redis://127.0.0.1:1/0", "timeout": "20ms",
                                             "pool": 2}}))
    s = a.stores["redis"]
    assert (s.client.timeout, s.client.size, s.client.address.port) == (0.02, 2, 1)
    same = parse_config({**base, "redis": {"url": "redis://127.0.0.1:1/0", "timeout": "20ms",
                                           "pool": 2}})
    assert redis_stores(same, a)["redis"] is s            # reload, unchanged: kept
    other = parse_config({**base, "redis": {"url": "redis://127.0.0.1:2/0"}})
    assert redis_stores(other, a)["redis"] is not s       # changed: a new one
    assert redis_stores(none, a) == {}


# --- differential: the Lua scripts vs the local table, time passed in ----------------------

KEYS = ("a", "b")
PERIODS = (1.0, 2.5, 60.0)   # whole microseconds, as the local table's nanoseconds
# Each key keeps its parameters for a whole sequence: when they change (a reload), a full
# bucket whose key expired in Redis starts full at the new calls, where the local table
# keeps the old number of whole tokens until it evicts the slot (itself a fresh start).
bucket_params = st.tuples(st.integers(1, 5), st.sampled_from(PERIODS))
window_params = st.tuples(st.integers(0, 5), st.sampled_from((0.0, 1.0, 7.0)))

op = st.one_of(
    st.tuples(st.sampled_from(("take", "refund")), st.sampled_from(KEYS), st.integers(0, 6)),
    st.tuples(st.just("count"), st.sampled_from(KEYS), st.integers(0, 3), st.booleans()),
    st.tuples(st.just("sleep"), st.integers(0, 3_000_000)),
)


def _same(a: Decision, b: Decision) -> bool:
    """Equal, but for the rounding of the wait: nanoseconds locally, microseconds in Redis."""
    if (a.allowed, a.remaining) != (b.allowed, b.remaining):
        return False
    return abs(a.retry_after - b.retry_after) <= 1e-6


@settings(max_examples=150, deadline=None)
@given(st.lists(op, max_size=25), st.integers(1_000_000, 2_000_000_000),
       st.tuples(bucket_params, bucket_params), st.tuples(window_params, window_params))
def test_lua_matches_the_local_table(redis, ops, t0, bparams, wparams):
    buckets = pytest.importorskip("apigw_core.buckets")
    now = [t0 * 1_000_000]   # microseconds (Unix-like: windows are aligned on start 0/t0)
    local = LocalStore(buckets.BucketTable(slots=64), monotonic_ns=lambda: now[0] * 1000,
                       time_ns=lambda: now[0] * 1000)
    remote = RedisStore(RedisClient(redis.url, timeout=2), clock=lambda: now[0])

    async def main():
        await remote.client.execute("FLUSHDB")
        for o in ops:
            if o[0] == "sleep":
                now[0] += o[1]
            elif o[0] == "take":
                _, k, n = o
                calls, period = bparams[KEYS.index(k)]
                a = local.take_now(k, calls, period, n)
                b = await remote.take(k, calls, period, n)
                assert _same(a, b), (o, a, b)
            elif o[0] == "refund":
                _, k, n = o
                calls, period = bparams[KEYS.index(k)]
                local.refund_now(k, calls, period, n)
                await remote.refund(k, calls, period, n)
            else:
                _, k, n, force = o
                limit, period = wparams[KEYS.index(k)]
                a = local.count_now(k, limit, period, t0, n, force)
                b = await remote.count(k, limit, period, t0, n, force)
                assert _same(a, b), (o, a, b)
        remote.close()
    try:
        run(main)
    finally:
        local.table.close()
