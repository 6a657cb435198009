"""HTTP/2 flood defences, the CPU side: how long our ServerConnection takes to see each
attack through to GOAWAY(ENHANCE_YOUR_CALM), in memory.  tests/protocol/test_http2_floods.py
checks what must hold (the frame at which each trips, the GOAWAY, a memory bound); the CPU
time is measured here and never asserted, as it depends on the machine and its load.

    pytest benchmarks/test_bench_floods.py --benchmark-only
    python benchmarks/test_bench_floods.py        # CPU seconds per attack (process_time)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "protocol"))
from h2_helpers import (  # noqa: E402
    POST,
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RawClient,
    RstStreamFrame,
    WindowUpdateFrame,
    settings_frame,
)


def _ready() -> RawClient:
    rc = RawClient()
    rc.handshake()
    rc.read()
    return rc


def _feed(rc: RawClient, chunks) -> int:
    """Send chunks one receive_data call each until the server errors; how many."""
    for i, chunk in enumerate(chunks):
        rc.send_bytes(chunk)
        if rc.error is not None:
            return i + 1
    raise AssertionError("the flood did not trip")


def rapid_reset(rc: RawClient):
    sid = 1
    while True:
        yield rc.headers(sid) + RstStreamFrame(sid, error_code=8).serialize()
        sid += 2


def continuation(rc: RawClient):
    yield HeadersFrame(1, b"\x82", flags=["END_STREAM"]).serialize()
    while True:
        yield ContinuationFrame(1, b"\x82").serialize()


def ping(rc: RawClient):
    frame = PingFrame(0, b"\x00" * 8).serialize()
    while True:
        yield frame


def settings(rc: RawClient):
    frame = settings_frame({4: 70000})
    while True:
        yield frame


def empty_data(rc: RawClient):
    rc.send(rc.headers(1, POST, end_stream=False))
    while True:
        yield DataFrame(1, b"").serialize()


def window_update(rc: RawClient):
    frame = WindowUpdateFrame(0, window_increment=1).serialize()
    while True:
        yield frame


def priority(rc: RawClient):
    for sid in range(1, 10**6, 2):
        yield PriorityFrame(sid, depends_on=0, stream_weight=7).serialize()


ATTACKS = {f.__name__: f for f in (rapid_reset, continuation, ping, settings, empty_data,
                                   window_update, priority)}


def run(name: str) -> int:
    rc = _ready()
    return _feed(rc, ATTACKS[name](rc))


@pytest.mark.parametrize("name", list(ATTACKS))
def test_flood_until_goaway(benchmark, name):
    benchmark(run, name)


if __name__ == "__main__":
    for name in ATTACKS:
        best = float("inf")
        for _ in range(5):
            t0 = time.process_time()
            frames = run(name)
            best = min(best, time.process_time() - t0)
        print(f"{name:14} {frames:6} frames  {best * 1000:8.2f} ms CPU (best of 5)")
