"""Coverage-guided fuzzing of the bucket table from Python (atheris = libFuzzer).

For any input (a table size and seed, then a sequence of operations): the C table and
its pure-Python twin return the same results, raise the same exceptions, and end with
the same memory, word for word.

Run (a corpus folder is optional; libFuzzer writes new inputs into the first one given):
    python native/fuzz/atheris_buckets.py -max_total_time=60 /tmp/corpus \
        native/fuzz/corpus_buckets
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from apigw_core import buckets
    from apigw_core.buckets import BucketTable, BucketTableFull

KEYS = [b"", b"a", b"b", b"key-c", b"0123456789abcdef-d"]
CALLS = [1, 2, 3, 10, 1000, 1 << 31]
PERIODS = [0, 1, 7, 1000, 10**9, 3 * 10**11]
STEPS = [0, 1, 3, 100, 100_000, 10**9, -1, -100]


def _ops(fdp: atheris.FuzzedDataProvider) -> list:
    ops = []
    now = fdp.ConsumeIntInRange(-(2**40), 2**40)
    while fdp.remaining_bytes() >= 4 and len(ops) < 64:
        kind = fdp.ConsumeIntInRange(0, 5)
        key = KEYS[fdp.ConsumeIntInRange(0, len(KEYS) - 1)]
        calls = CALLS[fdp.ConsumeIntInRange(0, len(CALLS) - 1)]
        period = PERIODS[fdp.ConsumeIntInRange(0, len(PERIODS) - 1)]
        n = fdp.ConsumeIntInRange(0, 12)
        now += STEPS[fdp.ConsumeIntInRange(0, 7)] * fdp.ConsumeIntInRange(1, 32)
        if kind == 0:
            ops.append(("take", key, calls, period, n, now))
        elif kind == 1:
            ops.append(("refund", key, calls, period, n, now))
        elif kind == 2:
            ops.append(("peek", key, calls, period, now))
        elif kind == 3:
            start = now + fdp.ConsumeIntInRange(-2000, 2000)
            ops.append(("count", key, fdp.ConsumeIntInRange(0, 15), period, start, n, now,
                        fdp.ConsumeBool()))
        elif kind == 4:
            ops.append(("acquire", key, fdp.ConsumeIntInRange(0, 3)))
        else:
            ops.append(("release", key))
    return ops


def _run(table: BucketTable, ops: list) -> list:
    out = []
    for name, *args in ops:
        try:
            out.append(getattr(table, name)(*args))
        except (BucketTableFull, ValueError) as exc:
            out.append(type(exc).__name__)
    return out


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    slots = [1, 2, 3, 4, 5, 6, 7, 8, 16, 24][fdp.ConsumeIntInRange(0, 9)]
    seed = fdp.ConsumeIntInRange(0, 2**64 - 1)
    ops = _ops(fdp)
    c = BucketTable(slots, native=True, seed=seed)
    p = BucketTable(slots, native=False, seed=seed)
    c.unlink()
    p.unlink()
    with c, p:
        rc, rp = _run(c, ops), _run(p, ops)
        if rc != rp:
            raise AssertionError(f"C {rc!r} != twin {rp!r} for {ops!r}")
        if bytes(c._mm) != bytes(p._mm):
            raise AssertionError(f"tables differ after {ops!r}")


def main() -> None:
    if not buckets.native_available:
        sys.exit("atheris_buckets: the C extension is not built")
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
