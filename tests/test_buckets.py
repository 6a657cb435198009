"""Semantics of apigw_core.buckets, run on both implementations (C when built, and the twin).

Time is passed in, so every case is exact: no clock, no sleep.
"""

from __future__ import annotations

import os

import pytest

from apigw_core import buckets
from apigw_core.buckets import BucketTable, BucketTableFull

S = 1_000_000_000  # ns

IMPLS = [pytest.param(False, id="twin"),
         pytest.param(True, id="C", marks=pytest.mark.skipif(
             not buckets.native_available, reason="C extension not built"))]


@pytest.fixture(params=IMPLS)
def native(request) -> bool:
    return request.param


@pytest.fixture
def table(native):
    t = BucketTable(1024, native=native)
    yield t
    t.close()
    t.unlink()


def test_starts_full_then_refuses_without_taking(table):
    for i in range(10):
        assert table.take(b"k", 10, 60 * S, 1, 0) == (True, 9 - i, 0)
    ok, rem, wait = table.take(b"k", 10, 60 * S, 1, 0)
    assert (ok, rem) == (False, 0) and wait == 6 * S
    # refused takes took nothing: the first token is back exactly at 6 s
    for _ in range(5):
        assert table.take(b"k", 10, 60 * S, 1, 6 * S - 1)[0] is False
    assert table.take(b"k", 10, 60 * S, 1, 6 * S) == (True, 0, 0)


def test_wait_ns_is_exact_for_n_tokens(table):
    assert table.take(b"k", 7, 1000, 7, 100)[0]
    ok, rem, wait = table.take(b"k", 7, 1000, 3, 100)
    assert not ok and wait == -(-3 * 1000 // 7)  # ceil(3000 / 7) = 429
    assert table.take(b"k", 7, 1000, 3, 100 + wait - 1)[0] is False
    assert table.take(b"k", 7, 1000, 3, 100 + wait) == (True, 0, 0)


def test_wait_ns_counts_from_the_latest_time_seen(table):
    # a worker whose clock reading is older than the bucket's last update
    assert table.take(b"k", 2, 1000, 2, 5000)[0]
    ok, _, wait = table.take(b"k", 2, 1000, 1, 4000)
    assert not ok and wait == 1000 + 500        # 1000 ns behind, then 500 ns of refill
    assert table.take(b"k", 2, 1000, 1, 4000 + wait - 1)[0] is False
    assert table.take(b"k", 2, 1000, 1, 4000 + wait)[0] is True


def test_refill_is_continuous_and_capped_at_calls(table):
    table.take(b"k", 4, 4 * S, 4, 0)
    assert table.peek(b"k", 4, 4 * S, S // 4) == (0, 3 * S // 4)
    assert table.peek(b"k", 4, 4 * S, S) == (1, 0)
    assert table.peek(b"k", 4, 4 * S, 2 * S + S // 2) == (2, 0)
    assert table.take(b"k", 4, 4 * S, 3, 2 * S + S // 2) == (False, 2, S // 2)
    assert table.peek(b"k", 4, 4 * S, 1000 * S) == (4, 0)  # long idle: full, not more


def test_burst_at_most_calls_then_the_refill_rate(table):
    calls, period = 50, S
    allowed = sum(table.take(b"k", calls, period, 1, 0)[0] for _ in range(200))
    assert allowed == calls
    # hammered every ms for 10 s: exactly calls/period after the burst
    got = 0
    for t in range(1, 10_001):
        got += sum(table.take(b"k", calls, period, 1, t * 1_000_000)[0] for _ in range(3))
    assert got == 10 * calls


def test_worst_case_in_one_period_after_idle_is_2_calls_minus_1(table):
    calls, period = 10, 10 * S
    t0 = 5 * S
    got = 0
    for t in range(t0, t0 + period, S // 100):  # every 10 ms over one period
        while table.take(b"k", calls, period, 1, t)[0]:
            got += 1
    assert got == 2 * calls - 1


def test_n_over_calls_never_passes(table):
    assert table.take(b"k", 5, S, 6, 0) == (False, 5, -1)
    assert table.take(b"k", 5, S, 5, 0) == (True, 0, 0)


def test_refund_gives_back_capped(table):
    table.take(b"k", 3, S, 3, 0)
    table.refund(b"k", 3, S, 2, 0)
    assert table.peek(b"k", 3, S, 0) == (2, 0)
    table.refund(b"k", 3, S, 10, 0)
    assert table.peek(b"k", 3, S, 0) == (3, 0)
    table.refund(b"never", 3, S, 1, 0)  # unknown: no-op, and claims nothing
    assert table.peek(b"never", 3, S, 0) == (3, 0)


def test_peek_takes_nothing(table):
    assert table.peek(b"k", 2, S, 0) == (2, 0)
    table.take(b"k", 2, S, 2, 0)
    assert table.peek(b"k", 2, S, 0) == (0, S // 2)
    assert table.peek(b"k", 2, S, 0) == (0, S // 2)


def test_changed_limits_keep_whole_tokens(table):
    table.take(b"k", 10, S, 7, 0)                      # 3 left
    assert table.peek(b"k", 100, S, 0) == (3, 0)       # raised: same tokens, refills faster
    assert table.peek(b"k", 2, S, 0) == (2, 0)         # lowered: clamped


def test_kinds_do_not_share_keys(table):
    table.take(b"k", 1, S, 1, 0)
    assert table.count(b"k", 1, S, 0, 1, 0) == (True, 0, S)
    assert table.acquire(b"k", 1)


def test_fixed_window_counter(table):
    assert table.count(b"q", 3, 10 * S, 0, 1, 0) == (True, 2, 10 * S)
    assert table.count(b"q", 3, 10 * S, 0, 2, 4 * S) == (True, 0, 6 * S)
    assert table.count(b"q", 3, 10 * S, 0, 1, 5 * S) == (False, 0, 5 * S)
    # the next window, aligned on start: all renewed at once
    assert table.count(b"q", 3, 10 * S, 0, 3, 10 * S) == (True, 0, 10 * S)


def test_windows_align_on_start_also_before_it(table):
    start = 7 * S
    assert table.count(b"q", 5, 10 * S, start, 1, 8 * S) == (True, 4, 9 * S)
    assert table.count(b"r", 5, 10 * S, start, 1, 2 * S) == (True, 4, 5 * S)
    assert table.count(b"s", 5, 10, 100, 1, 99) == (True, 4, 1)       # window [90, 100)
    assert table.count(b"s", 5, 10, 100, 1, 100) == (True, 4, 10)     # the next one
    assert table.count(b"t", 5, 10, 100, 1, 90) == (True, 4, 10)
    assert table.count(b"t", 5, 10, 100, 1, 89) == (True, 3, 11)      # older: same window


def test_period_zero_never_renews(table):
    assert table.count(b"q", 2, 0, 0, 2, 0) == (True, 0, 0)
    assert table.count(b"q", 2, 0, 0, 1, 10**18) == (False, 0, 0)


def test_refused_count_adds_nothing_but_force_does(table):
    assert table.count(b"q", 10, S, 0, 8, 0) == (True, 2, S)
    assert table.count(b"q", 10, S, 0, 3, 0) == (False, 2, S)
    assert table.count(b"q", 10, S, 0, 2, 0) == (True, 0, S)
    assert table.count(b"q", 10, S, 0, 500, 0, force=True) == (False, 0, S)
    assert table.count(b"q", 10, S, 0, 0, 0) == (False, 0, S)  # 510 used > 10
    assert table.count(b"q", 10, S, 0, 0, S) == (True, 10, S)


def test_semaphore(table):
    assert [table.acquire(b"s", 2) for _ in range(3)] == [True, True, False]
    table.release(b"s")
    assert table.acquire(b"s", 2)
    for _ in range(5):
        table.release(b"s")
    assert [table.acquire(b"s", 2) for _ in range(3)] == [True, True, False]
    table.release(b"unknown")


def test_colliding_keys_get_their_own_buckets(native):
    # 4 slots, one group: every key shares its group with the others
    with BucketTable(4, native=native) as t:
        keys = [b"a", b"b", b"c", b"d"]
        for k in keys:
            assert t.take(k, 2, S, 2, 0) == (True, 0, 0)
        for k in keys:
            assert t.take(k, 2, S, 1, 0)[0] is False
        t.unlink()


def test_a_slot_with_another_fingerprint_is_never_shared(native):
    # one slot; its fingerprint word flipped as if another key with the same group held it
    with BucketTable(1, native=native) as t:
        t.unlink()
        assert t.take(b"a", 2, S, 2, 0)[0]             # a: empty (live) bucket
        words = memoryview(t._mm).cast("Q")
        fp = words[8]                                 # group 0's fingerprint line, slot 0
        words[8] = fp ^ 1
        with pytest.raises(BucketTableFull):          # not a's: a live foreign bucket
            t.take(b"a", 2, S, 1, 0)
        assert t.peek(b"a", 2, S, 0) == (2, 0)         # a has no bucket here
        words[8] = fp
        assert t.take(b"a", 2, S, 1, 0)[0] is False    # a's own, empty, state again
        words.release()


def test_full_table_evicts_the_idle_bucket_never_a_live_one(native):
    with BucketTable(2, native=native) as t:
        t.unlink()
        t.take(b"a", 2, S, 2, 0)        # live (empty) until refilled at 1 s
        t.take(b"b", 2, S, 1, 0)        # live (1 left) until 0.5 s
        with pytest.raises(BucketTableFull):
            t.take(b"c", 2, S, 1, S // 4)
        # at 0.6 s b is full again: c evicts it; a keeps its state
        assert t.take(b"c", 2, S, 1, 6 * S // 10) == (True, 1, 0)
        assert t.peek(b"a", 2, S, 6 * S // 10)[0] == 1
        assert t.take(b"a", 2, S, 2, 6 * S // 10)[0] is False
        # b was evicted full: it comes back as a new, full bucket
        t.take(b"c", 2, S, 1, 7 * S // 10)
        with pytest.raises(BucketTableFull):
            t.take(b"b", 2, S, 1, 7 * S // 10)


def test_eviction_picks_the_one_idle_longest(native):
    with BucketTable(3, native=native) as t:
        t.unlink()
        for i, k in enumerate([b"x", b"y", b"z"]):
            t.take(k, 1, S, 1, i * S)   # full again at 1 s, 2 s, 3 s
        t.take(b"y", 1, S, 1, 5 * S)    # y used last
        t.take(b"x", 1, S, 0, 5 * S)    # a take of 0 touches x too
        t.take(b"w", 1, S, 1, 10 * S)   # evicts z: idle longest
        assert t.peek(b"y", 1, S, 10 * S) == (1, 0)
        assert t.take(b"y", 1, S, 1, 10 * S)[0]
        assert t.take(b"x", 1, S, 1, 10 * S)[0]
        # z is gone: its key is not found any more (peek says full, claims nothing)
        assert t.peek(b"z", 1, S, 10 * S) == (1, 0)


def test_counters_and_semaphores_evict_when_idle(native):
    with BucketTable(1, native=native) as t:
        t.unlink()
        t.count(b"q", 5, S, 0, 1, 0)
        with pytest.raises(BucketTableFull):
            t.acquire(b"s", 1)            # no time: only an idle semaphore evicts
        t.count(b"forever", 5, 0, 0, 1, 2 * S)   # window of q ended: evicted
        with pytest.raises(BucketTableFull):
            t.take(b"b", 1, S, 1, 10**15)  # period 0 never ends: never evicted


def test_threads_share_one_table_exactly(table):
    # the C calls run without the GIL: 4 threads at once on one bucket, frozen clock
    import threading
    got = []

    def hammer() -> None:
        got.append(sum(table.take(b"t", 5000, S, 1, 0)[0] for _ in range(2000)))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(got) == 5000
    assert table.take(b"t", 5000, S, 1, 0) == (False, 0, S // 5000)


def test_bad_arguments_raise_value_error(table):
    for args in [(b"k", 0, S, 1, 0), (b"k", 1, 0, 1, 0), (b"k", 1, S, -1, 0),
                 (b"k", 1 << 40, 1 << 40, 1, 0), (b"k", 1, S, 1, 1 << 62)]:
        with pytest.raises(ValueError):
            table.take(*args)
    with pytest.raises(ValueError):
        table.count(b"k", 1, -1, 0, 1, 0)
    with pytest.raises(ValueError):
        table.acquire(b"k", -1)
    with pytest.raises(ValueError):
        table.take(b"k", 1, S, 1, 1 << 70)      # beyond int64 as well
    with pytest.raises(TypeError):
        table.take("not bytes", 1, S, 1, 0)  # type: ignore[arg-type]


def test_attach_by_name_shares_state(native):
    t = BucketTable(64, native=native)
    try:
        u = BucketTable(name=t.name, create=False, native=native)
        t.take(b"k", 5, S, 4, 0)
        assert u.take(b"k", 5, S, 1, 0) == (True, 0, 0)
        assert t.take(b"k", 5, S, 1, 0)[0] is False
        assert u.slots == 64
        u.close()
    finally:
        t.close()
        t.unlink()
    assert not os.path.exists(os.path.join(buckets.SHM_DIR, t.name))
    with pytest.raises(FileNotFoundError):
        BucketTable(name=t.name, create=False)


def test_create_refuses_an_existing_name_and_bad_names(tmp_path):
    t = BucketTable(8)
    try:
        with pytest.raises(FileExistsError):
            BucketTable(8, name=t.name)
    finally:
        t.close()
        t.unlink()
    for bad in ["../x", "a/b", "", ".hidden"]:
        with pytest.raises(ValueError):
            BucketTable(8, name=bad)


def test_attach_refuses_what_is_not_a_table():
    name = f"apigw-test-notatable-{os.getpid()}"
    path = os.path.join(buckets.SHM_DIR, name)
    with open(path, "wb") as f:
        f.write(b"\0" * 4096)
    try:
        with pytest.raises(ValueError, match="not a bucket table"):
            BucketTable(name=name, create=False)
    finally:
        os.unlink(path)


def test_closed_table_raises(native):
    t = BucketTable(8, native=native)
    t.unlink()
    t.close()
    t.close()
    with pytest.raises(ValueError):
        t.take(b"k", 1, S, 1, 0)
