"""HPACK: our fast paths (`_h2hpack.FastEncoder` / `FastDecoder`) against the hpack
library on a typical request header list, encode and decode.  Moved here from
tests/protocol/test_http2_hpack.py, which keeps what must hold (the same bytes, headers,
table and errors as hpack for any input); the speed-up is measured, never asserted.

    pytest benchmarks/test_bench_hpack.py --benchmark-only --benchmark-group-by=param:op
    python benchmarks/test_bench_hpack.py         # ratios, best of 5
"""

from __future__ import annotations

import timeit

import pytest
from hpack import Decoder, Encoder

from apigw_core.protocol.http2._hpack import FastDecoder, FastEncoder

REQ = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"example.com"),
       (b":path", b"/orders/7"), (b"user-agent", b"bench/1"), (b"accept", b"*/*")]
IMPLS = {"fast": (FastEncoder, FastDecoder), "hpack": (Encoder, Decoder)}


def warmed(impl: str):
    """An encoder and decoder whose tables hold REQ (the steady state of a connection),
    and the block the encoder now emits for it."""
    enc_cls, dec_cls = IMPLS[impl]
    e, d = enc_cls(), dec_cls()
    d.decode(e.encode(REQ), raw=True)
    block = e.encode(REQ)
    d.decode(block, raw=True)
    return e, d, block


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("op", ["encode", "decode"])
def test_hpack(benchmark, op, impl):
    e, d, block = warmed(impl)
    if op == "encode":
        benchmark(e.encode, REQ)
    else:
        benchmark(d.decode, block, raw=True)


def ratios(number: int = 2000) -> dict[str, float]:
    """fast / hpack time for encode and decode (best of 5): under 1 means ours wins."""
    def cost(impl: str) -> tuple[float, float]:
        e, d, block = warmed(impl)
        te = min(timeit.repeat(lambda: e.encode(REQ), number=number, repeat=5))
        td = min(timeit.repeat(lambda: d.decode(block, raw=True), number=number, repeat=5))
        return te, td
    (fe, fd), (he, hd) = cost("fast"), cost("hpack")
    return {"encode": fe / he, "decode": fd / hd}


if __name__ == "__main__":
    for op, r in ratios().items():
        print(f"{op:7} fast/hpack = {r:.2f}")
