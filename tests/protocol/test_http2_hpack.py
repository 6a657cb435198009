"""Our HPACK fast paths against hpack itself: for any sequence of header lists (with table
hits, evictions, sensitive fields, size changes) the encoder emits the same bytes, and for
any block (valid or not) the decoder gives the same headers (never-indexed ones marked as
such), table and exception."""

from __future__ import annotations

import os

from hpack import Decoder, Encoder, HeaderTuple, NeverIndexedHeaderTuple
from hypothesis import given, settings
from hypothesis import strategies as st

from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH

from apigw_core.protocol.http2._hpack import FastDecoder, FastEncoder, huffman_encode

DIFF = settings(max_examples=int(os.environ.get("H2FUZZ", 500)))

NAMES = [b":method", b":path", b":authority", b"accept", b"cookie", b"x-a", b"x-b",
         b"authorization", b"content-type", b"x-long-name-" * 3, b"n" * 200]
VALUES = [b"GET", b"/", b"/x", b"", b"a", b"text/html", b"v" * 100, b"v" * 1500,
          b"\xff\x00bin"]

header = st.builds(
    lambda n, v, kind: (HeaderTuple(n, v) if kind == 1 else NeverIndexedHeaderTuple(n, v)
                        if kind == 2 else (n, v, True) if kind == 3 else (n, v)),
    st.sampled_from(NAMES) | st.binary(max_size=12),
    st.sampled_from(VALUES) | st.binary(max_size=40),
    st.integers(0, 3))
step = st.one_of(st.lists(header, max_size=8).map(lambda h: ("headers", h)),
                 st.sampled_from([0, 64, 256, 1024, 4096]).map(lambda s: ("size", s)),
                 st.just(("again", None)))  # the last list again (the codecs' memos)


def table_state(t):
    return list(t.dynamic_entries), t._current_size, t.maxsize


@DIFF
@given(st.lists(step, max_size=12), st.booleans())
def test_encoder_matches_hpack(steps, huffman):
    ours, ref = FastEncoder(), Encoder()
    prev: list = []
    for kind, arg in steps:
        if kind == "size":
            ours.header_table_size = ref.header_table_size = arg
            continue
        if kind == "again":
            arg = list(prev)
        prev = arg
        assert ours.encode(arg, huffman) == ref.encode(arg, huffman)
        assert table_state(ours.header_table) == table_state(ref.header_table)


@DIFF
@given(st.binary(max_size=300) | st.sampled_from([b"", bytes(range(256)), b"\xff" * 9]))
def test_huffman_matches_hpack(data):
    # every octet's code (the 256 of Appendix B) and the EOS padding, against hpack's
    assert huffman_encode(data) == HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH).encode(data)


def outcome(dec, block):
    try:
        return ("ok", [(isinstance(h, NeverIndexedHeaderTuple), tuple(h))
                       for h in dec.decode(block, raw=True)],
                table_state(dec.header_table))
    except Exception as exc:  # the exception type is what is compared
        return ("error", type(exc))


@DIFF
@given(st.lists(step, max_size=8), st.integers(0, 4096), st.integers(30, 3000))
def test_decoder_matches_hpack_on_valid_blocks(steps, allowed, limit):
    enc = Encoder()
    ours, ref = FastDecoder(), Decoder()
    for d in (ours, ref):
        d.max_allowed_table_size = allowed
        d.max_header_list_size = limit
    prev: list = []
    for kind, arg in steps:
        if kind == "size":
            enc.header_table_size = arg
            continue
        if kind == "again":
            arg = prev
        prev = arg
        block = enc.encode(arg)
        a, b = outcome(ours, block), outcome(ref, block)
        assert a == b
        if a[0] == "error":
            break


@DIFF
@given(st.lists(st.binary(max_size=30) | st.sampled_from(
    [b"\x82\x86\x84", b"\xbe", b"\xff\x80\x01", b"\x3f\xe1\x1f", b"\x20", b"\x40\x01a\x01b",
     b"\x10\x01a\x81\xff", b"\x0f\x2f\x01x"]), max_size=6))
def test_decoder_matches_hpack_on_any_bytes(blocks):
    ours, ref = FastDecoder(), Decoder()
    for block in blocks:
        a, b = outcome(ours, block), outcome(ref, block)
        assert a == b
        if a[0] == "error":
            break


def test_eviction_keeps_the_index_maps_small():
    enc = FastEncoder()
    for i in range(10_000):
        enc.encode([(b":path", b"/item/%d" % i)])
    t = enc.header_table
    assert len(t._full) == len(t.dynamic_entries) < 200
    assert len(t._names) == 1


def test_repeated_blocks_keep_their_field_classes():
    # a never-indexed field equals its plain tuple: the encoder's memo must tell them apart
    ours, ref = FastEncoder(), Encoder()
    plain = [(b"cookie", b"a=1"), (b"x-a", b"b")]
    secret = [NeverIndexedHeaderTuple(b"cookie", b"a=1"), (b"x-a", b"b")]
    for headers in (plain, plain, secret, plain, secret):
        assert ours.encode(headers) == ref.encode(headers)
    dec = FastDecoder()  # a block that leaves the table as it was is decoded once
    block = Encoder().encode([(b":method", b"GET"), NeverIndexedHeaderTuple(b"x", b"1")])
    first, again = dec.decode(block, raw=True), dec.decode(block, raw=True)
    assert dec._last is not None and first == again
    assert isinstance(again[1], NeverIndexedHeaderTuple)
    again.append((b"x", b"y"))  # a caller's list is its own
    assert dec.decode(block, raw=True) == first
