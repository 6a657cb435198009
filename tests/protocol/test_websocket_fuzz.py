"""Hypothesis on the WebSocket relay: however messages are fragmented into frames and the
frames cut into reads, the other side gets the same messages (and the same verdict);
any bytes at all give relayed frames or a ProtocolError, never another exception, and what
the relay writes is always valid on each wire."""

from __future__ import annotations

import os
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import Ping

from apigw_core.protocol import ProtocolError
from apigw_core.protocol.websocket import WebSocketRelay, WSLimits

from ws_helpers import CLOSE, CONT, PING, PONG, TEXT, counter_random, enabled_pmd, frame, \
    read_frames, whole

FUZZ = settings(max_examples=int(os.environ.get("WSFUZZ", 300)),   # the conftest profile,
                suppress_health_check=[*settings().suppress_health_check,  # and big frames
                                       HealthCheck.data_too_large])


def cut(data: bytes, points: list[int]) -> list[bytes]:
    cuts = sorted({p % (len(data) + 1) for p in points})
    edges = [0] + cuts + [len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:]) if b > a]


message = st.one_of(
    st.text(max_size=300).map(lambda t: (TEXT, t.encode())),
    st.binary(max_size=3000).map(lambda b: (2, b)))


@st.composite
def wire(draw, masked: bool):
    """Messages, each cut into random frames, with pings in between; returns (bytes,
    [(opcode, payload)] expected at the other side, control frames included)."""
    msgs = draw(st.lists(message, max_size=6))
    out = b""
    expected = []
    for op, payload in msgs:
        points = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=4)))
        edges = [0] + points + [len(payload)]
        parts = [payload[a:b] for a, b in zip(edges, edges[1:])]
        for i, part in enumerate(parts):
            out += frame(op if i == 0 else CONT, part, fin=i == len(parts) - 1, masked=masked)
            if draw(st.booleans()) and i < len(parts) - 1:
                ping = draw(st.binary(max_size=125))
                out += frame(PING, ping, masked=masked)
                expected.append((PING, ping))
        expected.append((op, payload))
    return out, expected


def messages_at(data: bytes) -> list[tuple[int, bytes]]:
    """Whole messages (and control frames) in relayed frames, checked to be well formed."""
    out, cur = [], None
    for f in read_frames(data):
        assert f.rsv == 0
        if f.op >= 8:
            out.append((f.op, f.payload))
        elif f.op == CONT:
            assert cur is not None
            cur[1] += f.payload
        else:
            assert cur is None
            cur = [f.op, f.payload]
        if f.op < 8 and f.fin:
            out.append((cur[0], cur[1]))
            cur = None
    assert cur is None
    return out


@FUZZ
@given(wire(masked=True), st.lists(st.integers(0, 1 << 16), max_size=12),
       st.sampled_from([1, 7, 1000, 64 << 10]))
def test_client_to_backend_any_cut_same_messages(w, points, frag):
    data, expected = w
    r = WebSocketRelay(limits=WSLimits(fragment_size=frag), random=counter_random)
    out = b""
    for chunk in cut(data, points):
        assert r.client.receive_data(chunk) == []
        out += r.backend.data_to_send()
    assert all(f.masked for f in read_frames(out))
    assert messages_at(out) == expected
    server = Connection(ConnectionType.SERVER)
    if out:
        server.receive_data(out)
    got = whole(list(server.events()))
    assert got == [Ping(p) if op == PING else (p.decode() if op == TEXT else p)
                   for op, p in expected]


@FUZZ
@given(wire(masked=False), st.lists(st.integers(0, 1 << 16), max_size=12))
def test_backend_to_client_any_cut_same_messages(w, points):
    data, expected = w
    r = WebSocketRelay(random=counter_random)
    out = b""
    for chunk in cut(data, points):
        assert r.backend.receive_data(chunk) == []
        out += r.client.data_to_send()
    assert not any(f.masked for f in read_frames(out))
    assert messages_at(out) == expected
    assert r.client.data_to_send() == b""


@FUZZ
@given(st.binary(max_size=40), st.lists(st.booleans(), min_size=1, max_size=6),
       st.lists(st.integers(0, 64), max_size=6))
def test_utf8_verdict_is_pythons_whatever_the_fragmentation(payload, fins, cuts):
    try:
        payload.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    edges = [0] + sorted(c % (len(payload) + 1) for c in cuts) + [len(payload)]
    parts = [payload[a:b] for a, b in zip(edges, edges[1:])]
    data = b"".join(frame(TEXT if i == 0 else CONT, p, fin=i == len(parts) - 1)
                    for i, p in enumerate(parts))
    r = WebSocketRelay(random=counter_random)
    try:
        for chunk in cut(data, cuts):
            r.client.receive_data(chunk)
        ok = True
    except ProtocolError as exc:
        assert exc.error_code == 1007
        ok = False
    assert ok == valid


def deflated(c, data: bytes) -> bytes:
    return (c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]


@FUZZ
@given(st.lists(message, min_size=1, max_size=5), st.booleans(),
       st.lists(st.integers(0, 1 << 14), max_size=8), st.lists(st.booleans(), max_size=5))
def test_compressed_messages_any_cut(msgs, reset, points, compress):
    c = zlib.compressobj(wbits=-15)
    data = b""
    for i, (op, payload) in enumerate(msgs):
        if i < len(compress) and not compress[i]:
            data += frame(op, payload)
            continue
        z = deflated(c, payload)
        half = len(z) // 2
        data += frame(op, z[:half], fin=False, rsv=4) + frame(CONT, z[half:])
        if reset:
            c = zlib.compressobj(wbits=-15)  # no context takeover
    r = WebSocketRelay(deflate=True, random=counter_random)
    out = b""
    for chunk in cut(data, points):
        r.client.receive_data(chunk)
        out += r.backend.data_to_send()
    server = Connection(ConnectionType.SERVER, extensions=[enabled_pmd()])
    server.receive_data(out)
    assert whole(list(server.events())) == [p.decode() if op == TEXT else p for op, p in msgs]


frames_any = st.lists(st.one_of(
    st.binary(max_size=30),
    st.builds(lambda op, p, fin, rsv, m: frame(op, p, fin=fin, rsv=rsv, masked=m),
              st.integers(0, 15), st.binary(max_size=140), st.booleans(),
              st.sampled_from([0, 0, 0, 4, 2, 1]), st.booleans()),
    st.builds(lambda code, reason: frame(CLOSE, code.to_bytes(2, "big") + reason),
              st.integers(0, 65535), st.binary(max_size=10))), max_size=10)


@FUZZ
@given(frames_any, st.lists(st.integers(0, 1 << 12), max_size=8), st.booleans(),
       st.booleans(), st.booleans())
def test_any_bytes_give_frames_or_a_protocol_error(parts, points, from_client, deflate, eof):
    r = WebSocketRelay(deflate=deflate, limits=WSLimits(max_frame_size=100,
                                                        max_message_size=300),
                       random=counter_random)
    side, other = (r.client, r.backend) if from_client else (r.backend, r.client)
    error = None
    try:
        for chunk in cut(b"".join(parts), points):
            side.receive_data(chunk)
        if eof:
            side.receive_data(b"")
    except ProtocolError as exc:
        error = exc
        assert exc.error_code in (1002, 1007, 1009)
        assert side.should_close
    # what was written is whole, valid frames, masked towards the backend only
    to_other = read_frames(other.data_to_send())
    to_side = read_frames(side.data_to_send())
    for frames, masked in ((to_other, from_client), (to_side, not from_client)):
        assert all(f.masked is masked for f in frames)
        assert all(f.op in (0, 1, 2, CLOSE, PING, PONG) for f in frames)
        closes = [i for i, f in enumerate(frames) if f.op == CLOSE]
        assert closes in ([], [len(frames) - 1])  # at most one Close, and last
    if error is not None:
        assert to_side[-1].op == CLOSE
        assert int.from_bytes(to_side[-1].payload[:2], "big") == error.error_code
        assert to_other[-1].op == CLOSE
