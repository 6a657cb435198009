"""Event construction: the hot-path constructors (`events._new_request`, `_new_data`,
`_new_eom`: slot descriptors set directly) against the frozen dataclasses' own `__init__`.
Moved here from tests/protocol/test_events.py, which keeps what must hold (equal, frozen
objects either way); how much cheaper the fast path is, is measured, never asserted.

    pytest benchmarks/test_bench_events.py --benchmark-only --benchmark-group-by=param:kind
    python benchmarks/test_bench_events.py        # ratios, best of 5
"""

from __future__ import annotations

import timeit

import pytest

from apigw_core.protocol import Data, EndOfMessage, Request
from apigw_core.protocol.events import _new_data, _new_eom, _new_request

H = [(b"host", b"example.com"), (b"accept", b"*/*")]

CASES = {
    "request": (lambda: _new_request(1, b"GET", b"/", H, b"1.1", None, False),
                lambda: Request(1, b"GET", b"/", H, b"1.1", None, False)),
    "data": (lambda: _new_data(2, b"abc"), lambda: Data(2, b"abc")),
    "eom": (lambda: _new_eom(2), lambda: EndOfMessage(2)),
}


@pytest.mark.parametrize("way", ["fast", "dataclass"])
@pytest.mark.parametrize("kind", list(CASES))
def test_construct(benchmark, kind, way):
    fast, slow = CASES[kind]
    fn = fast if way == "fast" else slow
    benchmark(fn)


def ratios(number: int = 20000) -> dict[str, float]:
    """fast / dataclass time per kind (best of 5 each): under 1 means the fast path wins."""
    def best(fn) -> float:
        return min(timeit.repeat(fn, number=number, repeat=5))
    return {k: best(fast) / best(slow) for k, (fast, slow) in CASES.items()}


if __name__ == "__main__":
    for kind, r in ratios().items():
        print(f"{kind:8} fast/dataclass = {r:.2f}")
