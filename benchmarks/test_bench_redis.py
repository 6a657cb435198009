"""One `store: redis` decision: a token-bucket take through RedisStore (EVALSHA, one round
trip) against a redis-server on loopback, vs the same take on the local table (issue 10).

Strategy.  Inside one `trio.run` (so the loop and the pooled connection are warm), time
each of N decisions with `perf_counter` and report p50 / p99 / mean in microseconds,
and this process's CPU per decision (redis-server's own is not in it); the difference
redis - local is what `store: redis` adds to a request.  pytest-benchmark times
rounds of 1000 decisions (per decision: its numbers / 1000).

    pytest benchmarks/test_bench_redis.py --benchmark-only
    python benchmarks/test_bench_redis.py [--count N]    # the p50 / p99 table
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import pytest
import trio

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(_HERE))
sys.path.insert(0, os.path.join(os.path.dirname(_HERE), "tests"))
sys.path.insert(0, os.path.join(os.path.dirname(_HERE), "tests", "runtime"))

from apigw_core.buckets import BucketTable  # noqa: E402
from apigw_core.runtime.limits import LocalStore  # noqa: E402
from apigw_core.runtime.redis import RedisClient  # noqa: E402
from apigw_core.runtime.redis_store import RedisStore  # noqa: E402

BATCH = 1000


def _stores(url: str) -> dict:
    return {"local": LocalStore(BucketTable(slots=4096)),
            "redis": RedisStore(RedisClient(url, timeout=1.0))}


async def _decisions(store, n: int, timed: bool) -> list[float]:
    out = []
    pc = time.perf_counter
    for i in range(n):
        t0 = pc()
        await store.take(f"bench-{i % 100}", 1_000_000, 60, 1)
        if timed:
            out.append(pc() - t0)
    return out


def measure(url: str, count: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    """(wall seconds of each decision, this process's CPU seconds per decision) by store."""
    stores = _stores(url)

    async def main():
        res, cpu = {}, {}
        for name, s in stores.items():
            await _decisions(s, 200, False)            # warm: connection, script cached
            c0 = time.process_time()
            res[name] = await _decisions(s, count, True)
            cpu[name] = (time.process_time() - c0) / count
        return res, cpu
    return trio.run(main)


@pytest.fixture(scope="module")
def redis():
    from redis_proc import RedisProc
    r = RedisProc()
    yield r
    r.stop()


@pytest.mark.parametrize("name", ["local", "redis"])
def test_bench_decision(benchmark, redis, name):
    store = _stores(redis.url)[name]

    def batch():
        trio.run(_decisions, store, BATCH, False)
    benchmark.extra_info["per"] = f"{BATCH} decisions"
    benchmark.pedantic(batch, rounds=10, warmup_rounds=1)


def main() -> None:
    count = int(sys.argv[sys.argv.index("--count") + 1]) if "--count" in sys.argv else 20000
    from redis_proc import RedisProc
    r = RedisProc()
    try:
        res, cpu = measure(r.url, count)
    finally:
        r.stop()
    q = {name: (statistics.median(v) * 1e6, sorted(v)[int(len(v) * 0.99)] * 1e6,
                statistics.fmean(v) * 1e6) for name, v in res.items()}
    print(f"{count} token-bucket takes, µs per decision      p50     p99    mean     CPU")
    for name, (p50, p99, mean) in q.items():
        print(f"  {name:<38} {p50:7.1f} {p99:7.1f} {mean:7.1f} {cpu[name] * 1e6:7.1f}")
    print(f"  {'added by store: redis (redis - local)':<38} {q['redis'][0] - q['local'][0]:7.1f}"
          f" {q['redis'][1] - q['local'][1]:7.1f} {q['redis'][2] - q['local'][2]:7.1f}"
          f" {(cpu['redis'] - cpu['local']) * 1e6:7.1f}")


if __name__ == "__main__":
    main()
