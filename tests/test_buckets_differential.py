"""The C bucket table and its pure-Python twin give identical results (hypothesis).

Random operation sequences run on two tables with the same seed and size, one per
implementation; every result (or exception type) must match, and so must the whole
table memory afterwards (the twin keeps the C layout word for word).  Small tables and
few keys make probing, collisions and eviction common; times move forwards mostly, and
sometimes back a little (a slower worker's clock reading); counter windows start near
the first time, so times before and after a window start both occur.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apigw_core import buckets
from apigw_core._purepy import buckets as twin
from apigw_core.buckets import BucketTable

pytestmark = pytest.mark.skipif(not buckets.native_available, reason="C extension not built")

keys = st.sampled_from([b"", b"a", b"b", b"key-1", b"key-2", b"0123456789abcdef", b"x" * 23])
small = st.integers(0, 12)
period = st.sampled_from([1, 7, 1000, 10**9, 3 * 10**11])
step = st.one_of(st.just(0), st.integers(0, 2000), st.integers(-50, 0), st.integers(0, 10**12))

op = st.one_of(
    st.tuples(st.just("take"), keys, st.integers(1, 10), period, small, step),
    st.tuples(st.just("refund"), keys, st.integers(1, 10), period, small, step),
    st.tuples(st.just("peek"), keys, st.integers(1, 10), period, step),
    st.tuples(st.just("count"), keys, small, st.sampled_from([0, 1, 1000, 10**9]),
              st.integers(-2000, 2000), small, step, st.booleans()),
    st.tuples(st.just("acquire"), keys, st.integers(0, 3)),
    st.tuples(st.just("release"), keys),
)


def _run(table: BucketTable, ops: list, t0: int) -> list:
    now, out = t0, []
    for o in ops:
        name, key, *args = o
        try:
            if name in ("take", "refund"):
                calls, per, n, dt = args
                now += dt
                out.append(getattr(table, name)(key, calls, per, n, now))
            elif name == "peek":
                calls, per, dt = args
                now += dt
                out.append(table.peek(key, calls, per, now))
            elif name == "count":
                limit, per, start, n, dt, force = args
                now += dt
                out.append(table.count(key, limit, per, t0 + start, n, now, force))
            elif name == "acquire":
                out.append(table.acquire(key, *args))
            else:
                out.append(table.release(key))
        except (buckets.BucketTableFull, ValueError) as exc:
            out.append(type(exc).__name__)
    return out


def _pair(slots: int, seed: int):
    c = BucketTable(slots, native=True, seed=seed)
    p = BucketTable(slots, native=False, seed=seed)
    c.unlink()
    p.unlink()
    return c, p


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(slots=st.sampled_from([1, 2, 3, 5, 8, 16, 24, 64]), seed=st.integers(0, 2**64 - 1),
       t0=st.integers(-10**15, 10**15), ops=st.lists(op, max_size=60))
def test_c_and_twin_agree_on_random_sequences(slots, seed, t0, ops):
    c, p = _pair(slots, seed)
    with c, p:
        assert _run(c, ops, t0) == _run(p, ops, t0)
        assert bytes(c._mm) == bytes(p._mm)


@settings(max_examples=200, deadline=None)
@given(key=st.binary(max_size=40), seed=st.integers(0, 2**64 - 1))
def test_hash_is_the_same(key, seed):
    assert buckets._lib.apigw_bk_hash(key, len(key), seed) == twin.hash64(key, seed)


@settings(max_examples=200, deadline=None)
@given(calls=st.integers(-2, 2**40), per=st.integers(-2, 2**40), n=st.integers(-2, 2**62 + 2),
       now=st.integers(-2**61 - 2, 2**61 + 2))
def test_range_checks_agree(calls, per, n, now):
    c, p = _pair(4, 1)
    with c, p:
        res = []
        for t in (c, p):
            try:
                res.append(t.take(b"k", calls, per, n, now))
            except ValueError:
                res.append("ValueError")
        assert res[0] == res[1]


def test_twin_attaches_to_a_c_made_table():
    c = BucketTable(32, native=True)
    try:
        c.take(b"k", 10, 1000, 4, 0)
        c.count(b"q", 5, 0, 0, 2, 0)
        p = BucketTable(name=c.name, create=False, native=False)
        with p:
            assert p.take(b"k", 10, 1000, 1, 0) == (True, 5, 0)
            assert p.count(b"q", 5, 0, 0, 1, 0) == (True, 2, 0)
        assert c.take(b"k", 10, 1000, 6, 0) == (False, 5, 100)
    finally:
        c.close()
        c.unlink()
