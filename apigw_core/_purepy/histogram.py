"""Pure-Python twin of native/src/histogram.c: one request into a metrics accumulator
(native/include/apigw/histogram.h has the layout; runtime/metrics.py uses it)."""

from __future__ import annotations

from typing import MutableSequence, Optional, Sequence

E_SIZE = -1


def _bucket(bounds: Sequence[float], nb: int, v: float) -> int:
    i = 0
    while i < nb - 1 and bounds[i] < v:
        i += 1
    return i


def observe(acc: MutableSequence[float], n: int, bounds: Sequence[float], nb: int,
            total: float, backend: Optional[float], client: Optional[float]) -> int:
    """As apigw_hist_observe: 0, or E_SIZE when n is not 4 + 3 * nb (nothing written)."""
    if nb == 0 or n != 4 + 3 * nb:
        return E_SIZE
    acc[0] += 1
    acc[1] += total
    acc[4 + _bucket(bounds, nb, total)] += 1
    if backend is not None and backend >= 0:   # (None: C refuses it before adding)
        acc[2] += backend
        acc[4 + nb + _bucket(bounds, nb, backend)] += 1
    if client is not None and client >= 0:
        acc[3] += client
        acc[4 + 2 * nb + _bucket(bounds, nb, client)] += 1
    return 0
