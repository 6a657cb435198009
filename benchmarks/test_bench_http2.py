"""HTTP/2 in memory: a client and a server exchanging 10,000 small request/response streams,
1 at a time and 100 at a time, four ways doing the same work:

  * ``h2_defaults``: bare h2, both sides, default H2Configuration (h2 validates and
    normalises every header block, in and out);
  * ``h2_no_validation``: bare h2 with those four options off (the checks are then
    nobody's: not a fair end state, but the floor of what h2's API allows);
  * ``engine``: our h2 subclass (`http2._engine.Engine`: HPACK fast paths, lean HEADERS paths,
    flood guards) driven like bare h2, without our neutral events or header checks;
  * ``ours``: `http2.ClientConnection` <-> `http2.ServerConnection`, the real thing: neutral
    events, RFC 9113 §8 checks on both sides, flow-control accounting, flood guards.

The work per stream: the client sends a GET (4 pseudo-header fields + 2 fields, END_STREAM
on HEADERS); the server reads it and answers 200 with two fields and a 5-byte body
(HEADERS + DATA with END_STREAM); the client reads the response, acknowledges the body's
flow-control credit and counts the stream as done.  Bytes go straight from one side's
data_to_send() to the other's receive_data().

    pytest benchmarks/test_bench_http2.py --benchmark-only --benchmark-group-by=param:batch
    python benchmarks/test_bench_http2.py          # the table in the note
"""

from __future__ import annotations

import time

import h2.config
import h2.connection
import h2.events
import pytest

from apigw_core.protocol.http2._engine import Engine, H2Limits
from apigw_core.protocol.events import Data, EndOfMessage, Request, Response
from apigw_core.protocol.http2 import ClientConnection, ServerConnection

N = 10_000
REQ_BLOCK = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"example.com"),
             (b":path", b"/orders/7"), (b"user-agent", b"bench/1"), (b"accept", b"*/*")]
RESP_BLOCK = [(b":status", b"200"), (b"content-type", b"text/plain"),
              (b"content-length", b"5")]
REQ_HEADERS = [(b"host", b"example.com"), (b"user-agent", b"bench/1"), (b"accept", b"*/*")]
RESP_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"5")]
BODY = b"hello"
NO_VALIDATION = dict(validate_inbound_headers=False, validate_outbound_headers=False,
                     normalize_inbound_headers=False, normalize_outbound_headers=False)


def run_h2(n: int, batch: int, **config: bool) -> float:
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, **config))
    s = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, **config))
    c.initiate_connection()
    s.initiate_connection()
    s.receive_data(c.data_to_send())
    c.receive_data(s.data_to_send())
    s.receive_data(c.data_to_send())
    done = 0
    t0 = time.perf_counter()
    while done < n:
        for _ in range(min(batch, n - done)):
            c.send_headers(c.get_next_available_stream_id(), REQ_BLOCK, end_stream=True)
        for ev in s.receive_data(c.data_to_send()):
            if ev.__class__ is h2.events.RequestReceived:
                s.send_headers(ev.stream_id, RESP_BLOCK)
                s.send_data(ev.stream_id, BODY, end_stream=True)
        for ev in c.receive_data(s.data_to_send()):
            if ev.__class__ is h2.events.DataReceived:
                c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif ev.__class__ is h2.events.StreamEnded:
                done += 1
        data = c.data_to_send()
        if data:
            s.receive_data(data)
    return time.perf_counter() - t0


def run_engine(n: int, batch: int) -> float:
    c, s = Engine(True, H2Limits()), Engine(False, H2Limits())
    c.start()
    s.start()
    s.receive(c.data_to_send())
    c.receive(s.data_to_send())
    s.receive(c.data_to_send())
    done = 0
    sid = 1
    t0 = time.perf_counter()
    while done < n:
        for _ in range(min(batch, n - done)):
            c.send_headers(sid, REQ_BLOCK, end_stream=True)
            sid += 2
        evs, _ = s.receive(c.data_to_send())
        for ev in evs:
            if ev.__class__ is h2.events.RequestReceived:
                s.send_headers(ev.stream_id, RESP_BLOCK)
                s.send_data(ev.stream_id, BODY, end_stream=True)
                s.reap(ev.stream_id)
        evs, _ = c.receive(s.data_to_send())
        for ev in evs:
            if ev.__class__ is h2.events.DataReceived:
                c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif ev.__class__ is h2.events.StreamEnded:
                done += 1
        data = c.data_to_send()
        if data:
            s.receive(data)
    return time.perf_counter() - t0


def run_ours(n: int, batch: int) -> float:
    c, s = ClientConnection(scheme=b"http"), ServerConnection()
    s.receive_data(c.data_to_send())
    c.receive_data(s.data_to_send())
    s.receive_data(c.data_to_send())
    done = 0
    t0 = time.perf_counter()
    while done < n:
        for _ in range(min(batch, n - done)):
            sid = c.next_stream_id
            c.send(Request(sid, b"GET", b"/orders/7", REQ_HEADERS))
            c.send(EndOfMessage(sid))
        for ev in s.receive_data(c.data_to_send()):
            if ev.__class__ is EndOfMessage:
                sid = ev.stream_id
                s.send(Response(sid, 200, RESP_HEADERS))
                s.send(Data(sid, BODY))
                s.send(EndOfMessage(sid))
        for ev in c.receive_data(s.data_to_send()):
            if ev.__class__ is Data:
                c.acknowledge_received(ev.stream_id, len(ev.data))
            elif ev.__class__ is EndOfMessage:
                done += 1
        data = c.data_to_send()
        if data:
            s.receive_data(data)
    return time.perf_counter() - t0


CONTENDERS = {
    "h2_defaults": lambda n, b: run_h2(n, b),
    "h2_no_validation": lambda n, b: run_h2(n, b, **NO_VALIDATION),
    "engine": run_engine,
    "ours": run_ours,
}


@pytest.mark.parametrize("batch", [1, 100])
@pytest.mark.parametrize("contender", list(CONTENDERS))
def test_bench_h2_exchange(benchmark, contender, batch):
    fn = CONTENDERS[contender]
    benchmark.extra_info["streams"] = N
    benchmark.pedantic(fn, args=(N, batch), rounds=3, iterations=1)


def best_of(fn, n: int, batch: int, k: int = 5) -> float:
    return min(fn(n, batch) for _ in range(k))


def test_speed_targets():
    """The targets of issue 4, with some margin for a noisy machine: ours (neutral events,
    our checks) at least 1.4x (measured ~1.53x) faster than h2 with its defaults at 1
    stream at a time and 1.7x (~2.0x) at 100 -- so the wrapper costs less than nothing over
    bare h2 doing the same work -- and faster than bare h2 with its checks off.  Against our
    engine alone (h2 tuned, no events, no checks) the wrapper costs ~1.4-1.55x; the guard
    here only catches a regression of that."""
    for batch, need in ((1, 1.4), (100, 1.7)):
        t = {name: best_of(fn, 3000, batch, 3) for name, fn in CONTENDERS.items()}
        assert t["h2_defaults"] / t["ours"] >= need, t
        assert t["ours"] < t["h2_no_validation"], t
        assert t["ours"] <= 1.8 * t["engine"], t


if __name__ == "__main__":
    print(f"{N} streams; seconds (best of 5); speed-up of ours over each")
    print(f"{'contender':18} {'1 at a time':>22} {'100 at a time':>22}")
    res = {name: [best_of(fn, N, b) for b in (1, 100)] for name, fn in CONTENDERS.items()}
    for name, (t1, t100) in res.items():
        o1, o100 = res["ours"]
        print(f"{name:18} {t1:8.3f} s ({t1 / o1:4.2f}x)     {t100:8.3f} s ({t100 / o100:4.2f}x)")
    for name, (t1, t100) in res.items():
        print(f"{name:18} {t1 / N * 1e6:7.1f} us/stream {t100 / N * 1e6:12.1f} us/stream")


def _grpc_blocks(n: int) -> list:
    """A gateway's gRPC backend request heads: 10 fields, a new request id and
    traceparent in each (what the dynamic table cannot hold)."""
    import os
    import uuid
    return [[(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/bench.Echo/Unary"),
             (b":authority", b"127.0.0.1:9000"), (b"content-type", b"application/grpc"),
             (b"te", b"trailers"), (b"x-forwarded-for", b"127.0.0.1"),
             (b"x-forwarded-proto", b"http"), (b"x-request-id", str(uuid.uuid4()).encode()),
             (b"traceparent", b"00-" + os.urandom(16).hex().encode() + b"-"
              + os.urandom(8).hex().encode() + b"-01")] for _ in range(n)]


@pytest.mark.parametrize("encoder", ["hpack", "ours"])
def test_bench_hpack_grpc_request_block(benchmark, encoder):
    """FastEncoder against hpack's Encoder on blocks with two new values each (Huffman
    coding dominates): `pytest benchmarks/test_bench_http2.py -k hpack --benchmark-only`."""
    from hpack import Encoder
    from apigw_core.protocol.http2._hpack import FastEncoder
    blocks = _grpc_blocks(2000)
    enc = FastEncoder() if encoder == "ours" else Encoder()

    def run() -> None:
        for b in blocks:
            enc.encode(b)
    benchmark(run)
