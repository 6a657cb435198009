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

    pytest benchmarks/test_bench_websocket.py --benchmark-only --benchmark-group-by=param:size
    python benchmarks/test_bench_websocket.py     # the table in the note

One run (CPython 3.11, shared 2-core VM, pytest-benchmark minimums), messages/s:

| message        | direction       | wsproto parse | relay     | relay/wsproto |
|----------------|-----------------|--------------:|----------:|--------------:|
| 100 B binary   | client->backend |       171,000 |   621,000 |         3.6x  |
| 100 B binary   | backend->client |       215,000 | 1,627,000 |         7.6x  |
| 100 B text     | client->backend |       154,000 |   433,000 |         2.8x  |
| 100 B text     | backend->client |       189,000 | 1,094,000 |         5.8x  |
| 64 KiB binary  | client->backend |        15,400 |    15,400 |         1.0x  |
| 64 KiB binary  | backend->client |        89,800 |   272,000 |         3.0x  |
| 64 KiB text    | client->backend |        11,000 |     6,500 |         0.59x |
| 64 KiB text    | backend->client |        26,800 |    33,300 |         1.24x |

Large client frames were bound by XOR-masking in pure Python (~55 us per 64 KiB pass, four
strided `bytes.translate`; text took two).  Since issue 14 masking and UTF-8 checking are in
C (native/src/ws.c): 64 KiB text client->backend went from 0.46-0.64x to ~6x wsproto
(benchmarks/README.md).
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
        for ev in conn.events():  # a frame cut by a read comes as two pieces
            n += ev.message_finished
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
