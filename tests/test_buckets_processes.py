"""4 processes hammering the same keys of one named table admit exactly what the limit allows.

Each worker attaches to the table by name (as a gateway worker does) and all start
together at a barrier.  With a frozen clock nothing refills, so the total admitted must
be exactly ``calls`` (and exactly ``limit`` for a counter, ``max_count`` for a
semaphore): any lost update or any key claimed twice would show.  With the real
monotonic clock the bucket, drained just before they start, refills while they hammer;
every admitted token is then accounted for exactly by the refill between the drain and
the last time a process passed in, less what is left at the end (the stated "+-1 per
refill" is not even needed: time only moves a bucket forwards, so the refill telescopes).
"""

from __future__ import annotations

import multiprocessing
import time

import pytest

from apigw_core import buckets
from apigw_core.buckets import BucketTable

S = 1_000_000_000
PROCS = 4
LIVE_CALLS, LIVE_PERIOD = 1000, 5 * S   # refills 200/s; full again only after 5 s idle
IMPLS = [pytest.param(False, id="twin"),
         pytest.param(True, id="C", marks=pytest.mark.skipif(
             not buckets.native_available, reason="C extension not built"))]
_ctx = multiprocessing.get_context("spawn")


def _frozen(name: str, native: bool, barrier, out, go) -> None:
    t = BucketTable(name=name, create=False, native=native)
    barrier.wait()
    go.wait()
    got = {"b0": 0, "b1": 0, "q": 0, "sem": 0, "new": 0}
    for i in range(40_000):  # 160k tries at 100k, 50k, 77k: contended all along
        got["b0"] += t.take(b"hot-0", 100_000, S, 1, 0)[0]
        got["b1"] += t.take(b"hot-1", 100_000, S, 2, 0)[0]
        got["q"] += t.count(b"quota", 77_777, 60 * S, 0, 1, 0)[0]
        if i % 100 == 0:
            got["sem"] += t.acquire(b"sem", 30)
    for k in range(300):  # new keys claimed by all four at once
        got["new"] += t.take(b"new-%d" % k, 2, S, 1, 0)[0]
        got["new"] += t.take(b"new-%d" % k, 2, S, 1, 0)[0]
    t.close()
    out.put(got)


def _live(name: str, native: bool, barrier, out, go, seconds: float) -> None:
    t = BucketTable(name=name, create=False, native=native)
    barrier.wait()
    go.wait()
    got, last = 0, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        now = time.monotonic_ns()
        last = max(last, now)
        got += t.take(b"live", LIVE_CALLS, LIVE_PERIOD, 1, now)[0]
    t.close()
    out.put((got, last))


def _run(target, native: bool, *args, before=None) -> tuple[BucketTable, list]:
    """Runs PROCS copies of target on a fresh table; `before(table)` runs once they all
    wait at the barrier, and its result is passed to the test."""
    table = BucketTable(4096, native=native)
    barrier, out, go = _ctx.Barrier(PROCS + 1), _ctx.Queue(), _ctx.Event()
    procs = [_ctx.Process(target=target,
                          args=(table.name, native, barrier, out, go) + args)
             for _ in range(PROCS)]
    for p in procs:
        p.start()
    try:
        barrier.wait(timeout=120)
        setup = before(table) if before else None
        go.set()
        results = [out.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=60)
    assert all(p.exitcode == 0 for p in procs)
    return table, results, setup


@pytest.mark.parametrize("native", IMPLS)
def test_frozen_clock_admits_exactly_the_limit(native):
    table, results, _ = _run(_frozen, native)
    try:
        total = {k: sum(r[k] for r in results) for k in results[0]}
        assert total == {"b0": 100_000, "b1": 50_000, "q": 77_777, "sem": 30, "new": 600}
        assert table.take(b"hot-0", 100_000, S, 1, 0)[0] is False
    finally:
        table.close()
        table.unlink()


@pytest.mark.parametrize("native", IMPLS)
def test_live_clock_admits_exactly_the_refill(native):
    def drain(table: BucketTable) -> int:  # empty at now0: from here on only refill
        now0 = time.monotonic_ns()
        assert table.take(b"live", LIVE_CALLS, LIVE_PERIOD, LIVE_CALLS, now0)[0]
        return now0

    table, results, now0 = _run(_live, native, 1.5, before=drain)
    try:
        got = sum(r[0] for r in results)
        last = max(r[1] for r in results)
        remaining = table.peek(b"live", LIVE_CALLS, LIVE_PERIOD, last)[0]
        # credit only grows by refill, (last - now0) * calls token-ns; every whole token
        # of it was either admitted or is still there
        assert got == (last - now0) * LIVE_CALLS // LIVE_PERIOD - remaining
        assert got > 0 and all(r[0] > 0 for r in results)
    finally:
        table.close()
        table.unlink()
