"""gRPC deframing: `MessageDecoder` on 1 KiB and 1 MiB messages, the body cut into chunks
of random sizes (1 byte to 16 KiB, HTTP/2's default DATA frame size; fixed seed), in MB/s
of body.  Four ways:

  * ``collect``: messages handed out as bytes (`feed` returns them);
  * ``observe_data``: `collect=False` with an observer that asks for each message's bytes
    (a policy reading messages while the gateway relays the chunks as they are);
  * ``observe``: `collect=False`, an observer that only counts (the gateway's relay path);
  * ``naive``: the textbook decoder for comparison: one bytearray, `buf += chunk`, parse,
    `del buf[:n]` (what a straightforward implementation does).

    pytest benchmarks/test_bench_grpc.py --benchmark-only --benchmark-group-by=param:size
    python benchmarks/test_bench_grpc.py          # the table in the note
"""

from __future__ import annotations

import random
import time

import pytest

from apigw_core.protocol.grpc import MessageDecoder, MessageObserver, encode_message

TOTAL = 16 * 1024 * 1024  # body bytes per run
SIZES = {"1KiB": 1024, "1MiB": 1024 * 1024}
MAX_CHUNK = 16 * 1024


def make_chunks(msg_size: int, seed: int = 5) -> tuple[list[bytes], int]:
    rnd = random.Random(seed)
    n = max(1, TOTAL // (msg_size + 5))
    body = b"".join(encode_message(rnd.randbytes(msg_size)) for _ in range(n))
    chunks, i = [], 0
    while i < len(body):
        k = rnd.randint(1, MAX_CHUNK)
        chunks.append(body[i:i + k])
        i += k
    return chunks, n


def run_collect(chunks: list[bytes]) -> int:
    dec = MessageDecoder(max_message_size=2 * 1024 * 1024)
    n = 0
    for c in chunks:
        n += len(dec.feed(c))
    dec.end()
    return n


def run_observe_data(chunks: list[bytes]) -> int:
    seen = []
    obs = MessageObserver(lambda size, comp, data: seen.append(len(data)), want_data=True)
    dec = MessageDecoder(max_message_size=2 * 1024 * 1024, observer=obs, collect=False)
    for c in chunks:
        dec.feed(c)
    dec.end()
    return len(seen)


def run_observe(chunks: list[bytes]) -> int:
    obs = MessageObserver()
    dec = MessageDecoder(max_message_size=2 * 1024 * 1024, observer=obs, collect=False)
    for c in chunks:
        dec.feed(c)
    dec.end()
    return obs.count


def run_naive(chunks: list[bytes]) -> int:
    buf = bytearray()
    out = []
    for c in chunks:
        buf += c
        while len(buf) >= 5:
            size = int.from_bytes(buf[1:5], "big")
            if len(buf) < 5 + size:
                break
            out.append(bytes(buf[5:5 + size]))
            del buf[:5 + size]
    return len(out)


CONTENDERS = {"collect": run_collect, "observe_data": run_observe_data,
              "observe": run_observe, "naive": run_naive}
_CACHE: dict[str, tuple[list[bytes], int]] = {}


def chunks_for(size: str) -> tuple[list[bytes], int]:
    if size not in _CACHE:
        _CACHE[size] = make_chunks(SIZES[size])
    return _CACHE[size]


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("contender", list(CONTENDERS))
def test_bench_grpc_deframe(benchmark, contender, size):
    chunks, n = chunks_for(size)
    benchmark.extra_info["body_bytes"] = sum(map(len, chunks))
    benchmark.extra_info["chunks"] = len(chunks)
    got = benchmark.pedantic(CONTENDERS[contender], args=(chunks,), rounds=5, iterations=1)
    assert got == n


def mb_per_s(fn, chunks: list[bytes], k: int = 7) -> float:
    nbytes = sum(map(len, chunks))
    best = min(_timed(fn, chunks) for _ in range(k))
    return nbytes / best / 1e6


def _timed(fn, chunks: list[bytes]) -> float:
    t0 = time.perf_counter()
    fn(chunks)
    return time.perf_counter() - t0


if __name__ == "__main__":
    print(f"{TOTAL // 2**20} MiB of body per run, chunks of 1..{MAX_CHUNK} bytes; "
          "MB/s (best of 7)")
    print(f"{'contender':14}" + "".join(f"{s:>12}" for s in SIZES))
    for name, fn in CONTENDERS.items():
        print(f"{name:14}" + "".join(f"{mb_per_s(fn, chunks_for(s)[0]):12.0f}"
                                      for s in SIZES))
