"""grpc.MessageDecoder / encode_message / MessageObserver: round trips over any chunking,
every error path, the no-copy paths, and the fuzz invariant (messages or GrpcError only)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apigw_core.protocol import ProtocolError, UsageError
from apigw_core.protocol.grpc import (
    DEFAULT_MAX_MESSAGE_SIZE,
    GrpcError,
    GrpcMessage,
    MessageDecoder,
    MessageObserver,
    StatusCode,
    encode_message,
    message_header,
)

INTERNAL, RESOURCE_EXHAUSTED = StatusCode.INTERNAL, StatusCode.RESOURCE_EXHAUSTED


def frame(flag: int, payload: bytes, length: int | None = None) -> bytes:
    return struct.pack(">BI", flag, len(payload) if length is None else length) + payload


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


def feed_all(dec: MessageDecoder, chunks: list[bytes]) -> list[GrpcMessage]:
    out: list[GrpcMessage] = []
    for c in chunks:
        out += dec.feed(c)
    dec.end()
    return out


# -- encoder -------------------------------------------------------------------------------

def test_encode_message_wire_bytes():
    assert encode_message(b"") == b"\x00\x00\x00\x00\x00"
    assert encode_message(b"hi") == b"\x00\x00\x00\x00\x02hi"
    assert encode_message(b"z" * 300, compressed=True) == b"\x01\x00\x00\x01\x2c" + b"z" * 300
    assert message_header(2**32 - 1) == b"\x00\xff\xff\xff\xff"
    with pytest.raises(UsageError):
        message_header(2**32)
    with pytest.raises(UsageError):
        message_header(-1)


# -- round trips ---------------------------------------------------------------------------

messages = st.lists(st.tuples(st.binary(max_size=300), st.booleans()), max_size=8)


@settings(max_examples=300)
@given(msgs=messages, cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=30))
def test_round_trip_over_any_chunking(msgs, cuts):
    body = b"".join(encode_message(d, c) for d, c in msgs)
    obs = MessageObserver()
    dec = MessageDecoder(encoding=b"gzip", observer=obs)
    out = feed_all(dec, split(body, cuts))
    assert out == [GrpcMessage(d, c) for d, c in msgs]
    assert all(type(m.data) is bytes for m in out)
    assert (obs.count, obs.total_bytes) == (len(msgs), sum(len(d) for d, _ in msgs))
    assert obs.largest == max((len(d) for d, _ in msgs), default=0)


@settings(max_examples=200)
@given(msgs=messages, cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=30))
def test_observer_sees_sizes_and_bytes_without_collecting(msgs, cuts):
    body = b"".join(encode_message(d, c) for d, c in msgs)
    seen_data: list = []
    seen_size: list = []
    with_data = MessageObserver(lambda n, c, d: seen_data.append((n, c, d)), want_data=True)
    sizes_only = MessageObserver(lambda n, c, d: seen_size.append((n, c, d)))
    for obs in (with_data, sizes_only):
        dec = MessageDecoder(encoding=b"gzip", observer=obs, collect=False)
        assert feed_all(dec, split(body, cuts)) == []
    assert seen_data == [(len(d), c, d) for d, c in msgs]
    assert seen_size == [(len(d), c, None) for d, c in msgs]
    counter = MessageObserver()  # the relay's path: counting only, no callback
    assert feed_all(MessageDecoder(encoding=b"gzip", observer=counter, collect=False),
                    split(body, cuts)) == []
    assert (counter.count, counter.total_bytes, counter.largest) == (
        len(msgs), sum(len(d) for d, _ in msgs), max((len(d) for d, _ in msgs), default=0))


@settings(max_examples=100)
@given(msgs=messages, cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=30))
def test_validating_only_decoder(msgs, cuts):
    """No observer, nothing collected: the framing is still checked to the end."""
    body = b"".join(encode_message(d, c) for d, c in msgs)
    dec = MessageDecoder(encoding=b"gzip", collect=False)
    assert feed_all(dec, split(body, cuts)) == []
    if body:
        dec = MessageDecoder(encoding=b"gzip", collect=False)
        dec.feed(body[:-1])
        with pytest.raises(GrpcError):
            dec.end()


def test_byte_by_byte_and_one_chunk():
    msgs = [b"", b"a", b"x" * 70_000, b"", b"tail"]
    body = b"".join(encode_message(m) for m in msgs)
    one = MessageDecoder().feed(body)
    dec = MessageDecoder()
    bytewise = [m for i in range(len(body)) for m in dec.feed(body[i:i + 1])]
    dec.end()
    assert [m.data for m in one] == [m.data for m in bytewise] == msgs


def test_empty_chunks_are_harmless():
    dec = MessageDecoder()
    assert dec.feed(b"") == []
    assert dec.feed(b"\x00\x00") == [] and dec.in_message
    assert dec.feed(b"") == []
    assert dec.feed(b"\x00\x00\x01x") == [GrpcMessage(b"x")]
    assert not dec.in_message
    dec.end()


def test_a_chunk_that_is_exactly_one_message_is_not_copied():
    payload = bytes(1000)
    body = encode_message(payload)
    dec = MessageDecoder()
    dec.feed(body[:5])
    chunk = body[5:]
    (msg,) = dec.feed(chunk)
    assert msg.data == payload
    # a message inside one chunk at offset 0 spanning it all is the chunk object itself
    dec2 = MessageDecoder()
    dec2.feed(body[:5])
    whole = bytes(payload)
    (m2,) = dec2.feed(whole)
    assert m2.data is whole


def test_counts_only_decoder_allocates_nothing_per_message():
    body = b"".join(encode_message(b"q" * 100) for _ in range(1000))
    obs = MessageObserver()
    dec = MessageDecoder(observer=obs, collect=False)
    assert dec.feed(body) == []
    assert (obs.count, obs.total_bytes, obs.largest) == (1000, 100_000, 100)
    assert not dec._assemble and dec._parts is None


def test_observer_callback_may_reject_the_call():
    def no_big(size, compressed, data):
        if size > 10:
            raise GrpcError(StatusCode.INVALID_ARGUMENT, "too chatty")

    dec = MessageDecoder(observer=MessageObserver(no_big))
    assert dec.feed(encode_message(b"ok")) == [GrpcMessage(b"ok")]
    with pytest.raises(GrpcError) as ei:
        dec.feed(encode_message(b"x" * 11))
    assert ei.value.code == StatusCode.INVALID_ARGUMENT


# -- error paths ---------------------------------------------------------------------------

ERRORS = [
    # (name, decoder kwargs, body, expected code, words in the message)
    ("flag 2", {}, frame(2, b"x"), INTERNAL, "flag 0x02"),
    ("flag 0x80 (a gRPC-Web trailer frame in gRPC)", {}, frame(0x80, b"a: b\r\n"), INTERNAL,
     "flag 0x80"),
    ("flag 0xff", {}, frame(0xFF, b""), INTERNAL, "flag 0xff"),
    ("compressed, no grpc-encoding", {}, frame(1, b"x"), INTERNAL, "grpc-encoding"),
    ("compressed, grpc-encoding identity", {"encoding": b"identity"}, frame(1, b"x"),
     INTERNAL, "grpc-encoding"),
    ("compressed, empty grpc-encoding", {"encoding": b""}, frame(1, b"x"), INTERNAL,
     "grpc-encoding"),
    ("over 4 MiB default (header alone)", {}, frame(0, b"", DEFAULT_MAX_MESSAGE_SIZE + 1),
     RESOURCE_EXHAUSTED, "4194305"),
    ("over a configured limit", {"max_message_size": 10}, frame(0, b"x" * 11),
     RESOURCE_EXHAUSTED, "limit (10)"),
    ("2**32-1 length", {}, frame(0, b"", 2**32 - 1), RESOURCE_EXHAUSTED, "4294967295"),
    ("compressed and over the limit", {"encoding": b"gzip", "max_message_size": 3},
     frame(1, b"abcd"), RESOURCE_EXHAUSTED, "limit (3)"),
]


@pytest.mark.parametrize("name,kw,body,code,words", ERRORS, ids=[e[0] for e in ERRORS])
def test_error_table(name, kw, body, code, words):
    for chunks in ([body], [body[i:i + 1] for i in range(len(body))]):
        dec = MessageDecoder(stream_id=7, **kw)
        with pytest.raises(GrpcError) as ei:
            for c in chunks:
                dec.feed(c)
            dec.end()
        err = ei.value
        assert err.code == code and words in err.message, err
        assert isinstance(err, ProtocolError) and err.status_hint == 200 and err.stream_id == 7
        with pytest.raises(GrpcError) as again:  # a dead decoder stays dead
            dec.feed(encode_message(b"ok"))
        assert again.value is err


def test_limit_is_inclusive_and_checked_before_buffering():
    dec = MessageDecoder(max_message_size=10)
    assert dec.feed(encode_message(b"x" * 10)) == [GrpcMessage(b"x" * 10)]
    dec = MessageDecoder(max_message_size=1000)
    with pytest.raises(GrpcError):
        dec.feed(message_header(1001))  # refused on the header, before any payload


def test_compressed_allowed_with_an_encoding():
    for enc in (b"gzip", b"deflate", b" GZIP ", b"snappy"):
        assert MessageDecoder(encoding=enc).feed(frame(1, b"zz")) == [GrpcMessage(b"zz", True)]


TRUNCATED = [
    ("inside the header", frame(0, b"abc")[:3], "header (3 of 5 bytes)"),
    ("after the header", frame(0, b"abc")[:5], "message (0 of 3 bytes)"),
    ("inside the payload", frame(0, b"abc")[:7], "message (2 of 3 bytes)"),
    ("second message cut", encode_message(b"ok") + frame(0, b"abc")[:6],
     "message (1 of 3 bytes)"),
]


@pytest.mark.parametrize("name,body,words", TRUNCATED, ids=[t[0] for t in TRUNCATED])
def test_end_of_stream_inside_a_message_is_internal(name, body, words):
    dec = MessageDecoder()
    dec.feed(body)
    assert dec.in_message
    with pytest.raises(GrpcError) as ei:
        dec.end()
    assert ei.value.code == INTERNAL and words in ei.value.message


@settings(max_examples=200)
@given(msgs=st.lists(st.binary(max_size=50), min_size=1, max_size=5), data=st.data())
def test_every_cut_inside_a_message_is_an_error_and_every_boundary_is_not(msgs, data):
    body = b"".join(encode_message(m) for m in msgs)
    bounds = {0}
    pos = 0
    for m in msgs:
        pos += 5 + len(m)
        bounds.add(pos)
    cut = data.draw(st.integers(min_value=0, max_value=len(body)))
    dec = MessageDecoder()
    dec.feed(body[:cut])
    if cut in bounds:
        dec.end()
    else:
        with pytest.raises(GrpcError):
            dec.end()


@settings(max_examples=500)
@given(body=st.binary(max_size=200), cuts=st.lists(st.integers(0, 200), max_size=10),
       limit=st.integers(0, 100), enc=st.sampled_from([None, b"gzip"]))
def test_fuzz_only_grpc_errors_escape(body, cuts, limit, enc):
    dec = MessageDecoder(max_message_size=limit, encoding=enc)
    try:
        feed_all(dec, split(body, cuts))
    except GrpcError as exc:
        assert exc.code in (INTERNAL, RESOURCE_EXHAUSTED)
