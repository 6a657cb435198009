"""WebSocket relay throughput in memory: messages per second through `WebSocketRelay` against
bare wsproto parsing the same frames.

Inputs: N single-frame messages of 100 bytes or 64 KiB (binary or text), written as a
client writes them (masked) or as a backend does (unmasked), and cut into 64 KiB reads as a
socket would hand them over.  Contenders, per read:

  * ``wsproto``: wsproto's `Connection` (server side for client frames, client side for
    backend frames) parsing the reads into events: parse, unmask, UTF-8 decode for text.
    Nothing is written anywhere: the floor for "understand the frames".
  * ``relay``: our relay side receiving the reads and writing the frames for the other
    peer (`receive_data` + `data_to_send`): parse, unmask, check (UTF-8, limits), and
    re-frame: re-masked with a fresh key towards the backend, as is towards the client.

    pytest benchmarks/test_bench_websocket.py --benchmark-only --benchmark-group-by=param
    python benchmarks/test_bench_websocket.py     # the table in the note
"""

from __future__ import annotations

import os
import time

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.frame_protocol import FrameProtocol

from apigw_core.protocol.websocket import WebSocketRelay

READ = 64 << 10
COUNTS = {100: 10_000, 64 << 10: 200}


def _frames(size: int, text: bool, masked: bool) -> list[bytes]:
    """N messages as one byte stream cut into 64 KiB reads."""
    proto = FrameProtocol(client=masked, extensions=[])
    payload = ("é" * (size // 2)) if text else os.urandom(size)
    stream = b"".join(bytes(proto.send_data(payload)) for _ in range(COUNTS[size]))
    return [stream[i:i + READ] for i in range(0, len(stream), READ)]


def run_wsproto(reads: list[bytes], from_client: bool) -> int:
    conn = Connection(ConnectionType.SERVER if from_client else ConnectionType.CLIENT)
    n = 0
    for r in reads:
        conn.receive_data(r)
        for _ in conn.events():
            n += 1
    return n


def run_relay(reads: list[bytes], from_client: bool) -> int:
    relay = WebSocketRelay()
    side, other = (relay.client, relay.backend) if from_client else (relay.backend,
                                                                      relay.client)
    for r in reads:
        side.receive_data(r)
        other.data_to_send()
    return side.messages_received


CONTENDERS = {"wsproto": run_wsproto, "relay": run_relay}
CASES = [(size, text, d) for size in COUNTS for text in (False, True)
         for d in ("client->backend", "backend->client")]


@pytest.mark.parametrize("size,text,direction", CASES,
                         ids=[f"{s}B-{'text' if t else 'binary'}-{d}" for s, t, d in CASES])
@pytest.mark.parametrize("contender", list(CONTENDERS))
def test_bench_websocket(benchmark, contender, size, text, direction):
    from_client = direction == "client->backend"
    reads = _frames(size, text, masked=from_client)
    fn = CONTENDERS[contender]
    n = benchmark(fn, reads, from_client)
    assert n == COUNTS[size]
    benchmark.extra_info["messages_per_s"] = COUNTS[size] / benchmark.stats.stats.min


def _table() -> None:
    print("| message | direction | wsproto parse (msg/s) | relay (msg/s) | relay/wsproto |")
    print("|---|---|---:|---:|---:|")
    for size, text, direction in CASES:
        from_client = direction == "client->backend"
        reads = _frames(size, text, masked=from_client)
        rates = {}
        for name, fn in CONTENDERS.items():
            best = min(_timed(fn, reads, from_client) for _ in range(7))
            rates[name] = COUNTS[size] / best
        label = f"{size if size < 1024 else f'{size >> 10} KiB'} {'text' if text else 'binary'}"
        print(f"| {label} | {direction} | {rates['wsproto']:,.0f} | {rates['relay']:,.0f} "
              f"| {rates['relay'] / rates['wsproto']:.2f}x |")


def _timed(fn, reads, from_client) -> float:
    t = time.perf_counter()
    fn(reads, from_client)
    return time.perf_counter() - t


if __name__ == "__main__":
    _table()
