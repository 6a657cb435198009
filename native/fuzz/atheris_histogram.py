"""Coverage-guided fuzzing of the metrics accumulators from Python (atheris).

Same input layout as fuzz_histogram.c (1 byte nb, 1 byte size skew, 3 doubles, then
the bounds).  C (native.hist_observe, with None parts as -1.0, as Metrics.record sends
them) and the twin (py_hist_observe) add the same request into the same doubles, and
refuse the same sizes.

Run (a corpus folder is optional; libFuzzer writes new inputs into the first one given):
    python native/fuzz/atheris_histogram.py -max_total_time=60 /tmp/corpus \
        native/fuzz/corpus_histogram
"""

from __future__ import annotations

import math
import struct
import sys

import atheris

with atheris.instrument_imports():
    from apigw_core import native


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x == y or (x != x and y != y) for x, y in zip(a, b))


def one_input(data: bytes) -> None:
    if len(data) < 26:
        return
    nb, n = data[0] & 31, 4 + 3 * (data[0] & 31) + data[1] % 5 - 2
    d = struct.unpack("<3d", data[2:26])
    have = (len(data) - 26) // 8
    bounds = [struct.unpack("<d", data[26 + 8 * i:34 + 8 * i])[0] if i < have else math.inf
              for i in range(nb)]
    bounds = sorted(math.inf if b != b else b for b in bounds)
    # the second and third as Metrics.record may pass them: None for "did not happen"
    parts = [None if (x != x and data[1] & 8) else x for x in d[1:]]
    c_acc = native.new_doubles(max(n, 1))
    c_bounds = native.new_doubles(max(nb, 1), bounds or [0.0])
    r = native.hist_observe(c_acc, n, c_bounds, nb, d[0],
                            *(-1.0 if p is None else p for p in parts))
    py = [0.0] * max(n, 1)
    rp = native.py_hist_observe(py, n, bounds, nb, d[0], *parts)
    assert r == rp, (r, rp, n, nb)
    assert _same(list(c_acc), py), (list(c_acc), py)


def main() -> None:
    if not native.enabled:
        sys.exit("atheris_histogram: the C extension is not built")
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
