"""Metrics accumulators: native/src/histogram.c and its twin (_purepy/histogram.py) add
the same request into the same doubles, and both are Metrics.record's old arithmetic
(bisect_left over the bounds, None: that part did not happen).

Inputs: durations around and on the bucket bounds, zero, negative, NaN, +Inf and huge;
None for the backend and client parts; random sorted bounds ending in +Inf (the metrics')
and not (the last bucket takes what is past every bound); wrong sizes.
"""

from __future__ import annotations

import bisect
import math
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apigw_core import native
from apigw_core.runtime import metrics

EXAMPLES = int(os.environ.get("APIGW_TWIN_EXAMPLES", "1000"))
needs_c = pytest.mark.skipif(not native.enabled, reason="C extension not built")

durations = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                      st.sampled_from(metrics.BUCKETS), st.just(0.0), st.just(-1.0),
                      st.floats(0, 0.01))
parts = st.one_of(st.none(), durations)
bounds = st.one_of(st.just(metrics.BUCKETS),
                   st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=20).map(sorted),
                   st.lists(st.floats(0, 10), min_size=0, max_size=19).map(
                       lambda b: sorted(b) + [math.inf]))


def _same(a, b) -> bool:   # NaN sums are equal here
    return all(x == y or (x != x and y != y) for x, y in zip(a, b)) and len(a) == len(b)


def _c(bs, requests):
    nb = len(bs)
    acc, cb = native.new_doubles(4 + 3 * nb), native.new_doubles(nb, bs)
    for t, b, c in requests:
        assert native.hist_observe(acc, 4 + 3 * nb, cb, nb, t,
                                   -1.0 if b is None else b, -1.0 if c is None else c) == 0
    return list(acc)


def _twin(bs, requests):
    nb = len(bs)
    acc = [0.0] * (4 + 3 * nb)
    for t, b, c in requests:
        assert native.py_hist_observe(acc, 4 + 3 * nb, bs, nb, t, b, c) == 0
    return acc


def _bisect(bs, requests):
    """Metrics.record before the C accumulator, with the last bucket taking the rest."""
    nb = len(bs)
    acc = [0.0] * (4 + 3 * nb)
    for t, b, c in requests:
        acc[0] += 1
        for j, v in enumerate((t, b, c)):
            if j and (v is None or not v >= 0):
                continue
            acc[1 + j] += v
            acc[4 + j * nb + min(bisect.bisect_left(bs, v), nb - 1)] += 1
    return acc


@given(bounds, st.lists(st.tuples(durations, parts, parts), max_size=8))
@settings(max_examples=EXAMPLES, deadline=None)
def test_twin_is_the_bisect_arithmetic(bs, requests):
    assert _same(_twin(bs, requests), _bisect(bs, requests))


@needs_c
@given(bounds, st.lists(st.tuples(durations, parts, parts), max_size=8))
@settings(max_examples=EXAMPLES, deadline=None)
def test_c_adds_what_the_twin_adds(bs, requests):
    assert _same(_c(bs, requests), _twin(bs, requests))


@needs_c
@pytest.mark.parametrize("n, nb", [(0, 0), (4, 0), (54, 17), (56, 17), (7, 1), (6, 1)])
def test_a_wrong_size_writes_nothing(n, nb):
    acc = native.new_doubles(max(n, 1))
    cb = native.new_doubles(max(nb, 1))
    want = 0 if n == 4 + 3 * nb and nb else native.HIST_E_SIZE
    assert native.hist_observe(acc, n, cb, nb, 0.1, 0.1, 0.1) == want
    assert native.py_hist_observe([0.0] * max(n, 1), n, [0.0] * max(nb, 1), nb, 0.1, 0.1,
                                  0.1) == want
    if want:
        assert list(acc) == [0.0] * max(n, 1)


def test_record_counts_none_parts_as_not_happened():
    # the C path refuses None before adding anything; record's retry adds it once
    m = metrics.Metrics()
    key = ("a", "op", "", "b", b"GET", 200, "")
    m.record(key, 0.0007, None, 0.002)
    m.record(key, 0.0007, -1.0, -1.0)
    a = list(m._acc[key])
    nb = len(metrics.BUCKETS)
    assert a[:4] == [2.0, 0.0014, 0.0, 0.002]
    assert a[4 + 1] == 2 and sum(a[4:4 + nb]) == 2        # 0.0007: the 1 ms bucket
    assert sum(a[4 + nb:4 + 2 * nb]) == 0                   # no backend part
    assert a[4 + 2 * nb + 2] == 1 and sum(a[4 + 2 * nb:]) == 1   # 2 ms: the 2.5 ms one
