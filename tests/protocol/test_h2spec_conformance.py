"""Our own h2spec: the server cases of h2spec (/work/shared/conformance/h2spec_cases.json,
MIT) replayed against ServerConnection with raw frames (hyperframe, hand-built HPACK), each
asserting the frame or error RFC 9113 / RFC 7541 requires (RFC 9113 wins where it changed
RFC 7540).  Test ids name the RFC section: `RFC9113-6.5.2-...`, `RFC7541-5.2-...`,
`generic-...` for h2spec's "MUST accept" group.

Expectations:
- accept: no error, no GOAWAY, and the connection still answers a request/PING after;
- conn(code): GOAWAY(code) queued and ProtocolError(error_code=code) raised;
- stream(sid, code): RST_STREAM(code) on sid, no GOAWAY; the connection still works;
- stream_or_conn(code): either of the above (where the RFC allows a connection error for
  a stream-level fault, as h2spec also accepts);
- custom checks for the cases whose answer is a particular frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import pytest
from hpack.hpack import encode_integer
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from h2_helpers import (
    COMPRESSION_ERROR,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    NO_ERROR,
    POST,
    PREFACE,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    REQ,
    STREAM_CLOSED,
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RawClient,
    RstStreamFrame,
    WindowUpdateFrame,
    goaways,
    raw_frame,
    rsts,
    settings_frame,
)

from apigw_core.protocol import Data, EndOfMessage, Request, Response, StreamReset

HUFF = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)

# -- HPACK by hand (RFC 7541 §5, §6) ---------------------------------------------------


def hint(value: int, prefix: int, flags: int = 0) -> bytes:
    b = bytearray(encode_integer(value, prefix))
    b[0] |= flags
    return bytes(b)


def hstr(s: bytes, huffman: bool = False) -> bytes:
    if huffman:
        s = HUFF.encode(s)
        return hint(len(s), 7, 0x80) + s
    return hint(len(s), 7) + s


# static table: 2 :method GET, 3 :method POST, 4 :path /, 6 :scheme http, 1 :authority
BASE = b"\x82\x86\x84" + hint(1, 6, 0x40) + hstr(b"example.com")  # GET http / example.com


def lit(kind: str, value: bytes, name_index: Optional[int] = None, name: bytes = b"",
        huffman: bool = False) -> bytes:
    """Literal header field: kind 'inc' (§6.2.1), 'without' (§6.2.2), 'never' (§6.2.3)."""
    prefix, flags = {"inc": (6, 0x40), "without": (4, 0x00), "never": (4, 0x10)}[kind]
    if name_index is not None:
        return hint(name_index, prefix, flags) + hstr(value, huffman)
    return hint(0, prefix, flags) + hstr(name, huffman) + hstr(value, huffman)


def size_update(n: int) -> bytes:
    return hint(n, 5, 0x20)


# -- driving ---------------------------------------------------------------------------------


def hdr(sid: int, block: bytes, flags: int = 0x5) -> bytes:
    """A raw HEADERS frame (default flags END_STREAM|END_HEADERS)."""
    return raw_frame(1, flags, sid, block)


def answer(rc: RawClient) -> None:
    """The application: consume bodies, answer every complete request with 200 "ok"."""
    seen = getattr(rc, "seen", 0)
    reset = {e.stream_id for e in rc.events if isinstance(e, StreamReset)}
    for e in rc.events[seen:]:
        if isinstance(e, EndOfMessage) and e.stream_id not in reset:
            rc.server.send(Response(e.stream_id, 200, [(b"content-length", b"2")]))
            rc.server.send(Data(e.stream_id, b"ok"))
            rc.server.send(EndOfMessage(e.stream_id))
        if isinstance(e, Data):
            rc.server.acknowledge_received(e.stream_id, len(e.data))
    rc.seen = len(rc.events)  # type: ignore[attr-defined]


def statuses(frames) -> dict[int, bytes]:
    return {f.stream_id: dict(f.headers).get(b":status") for f in frames
            if isinstance(f, HeadersFrame)}


def still_alive(rc: RawClient) -> None:
    rc.send(PingFrame(0, b"alive!!!"))
    frames = rc.read()
    assert any(isinstance(f, PingFrame) and f.opaque_data == b"alive!!!" for f in frames)


def expect_accept(rc: RawClient, frames) -> None:
    assert rc.error is None, rc.error
    assert not goaways(frames), goaways(frames)
    still_alive(rc)


def expect_response(sid: int) -> Callable:
    def check(rc: RawClient, frames) -> None:
        assert rc.error is None, rc.error
        assert statuses(frames).get(sid) == b"200", frames
        still_alive(rc)
    return check


def expect_conn(code: int) -> Callable:
    def check(rc: RawClient, frames) -> None:
        assert rc.error is not None and rc.error.error_code == code, rc.error
        g = goaways(frames)
        assert g and g[-1].error_code == code, frames
    return check


def expect_stream(sid: int, code: int) -> Callable:
    def check(rc: RawClient, frames) -> None:
        assert rc.error is None, rc.error
        assert (sid, code) in [(f.stream_id, f.error_code) for f in rsts(frames)], frames
        assert not goaways(frames)
        still_alive(rc)
    return check


def expect_stream_or_conn(*codes: int) -> Callable:
    def check(rc: RawClient, frames) -> None:
        if rc.error is not None:
            assert rc.error.error_code in codes, rc.error
            g = goaways(frames)
            assert g and g[-1].error_code in codes, frames
        else:
            assert set(codes) & {f.error_code for f in rsts(frames)}, frames
            assert not goaways(frames)
    return check


@dataclass
class Case:
    id: str
    send: Callable[[RawClient], list]
    check: Callable
    settings: Optional[dict] = None

    def run(self) -> None:
        rc = RawClient()
        rc.handshake(self.settings)
        rc.read()
        for item in self.send(rc):
            if item == b"":
                answer(rc)  # a pause: let the application answer first
                continue
            rc.send_bytes(item if isinstance(item, bytes) else item.serialize())
            if rc.error is not None:
                break
            answer(rc)
        answer(rc)
        self.check(rc, rc.read())


CASES: list[Case] = []


def case(cid: str, check: Callable, settings: Optional[dict] = None):
    def deco(fn):
        CASES.append(Case(cid, fn, check, settings))
        return fn
    return deco


def simple(cid: str, check: Callable, *frames_fn: Callable[[RawClient], object],
           settings: Optional[dict] = None) -> None:
    CASES.append(Case(cid, lambda rc: [f(rc) for f in frames_fn], check, settings))


# A CONTINUATION with no open header block breaks both §5.1 (STREAM_CLOSED for frames on a
# half-closed/closed stream) and §6.10 (a connection error of type PROTOCOL_ERROR): either.
NAKED_CONTINUATION = expect_stream_or_conn(STREAM_CLOSED, PROTOCOL_ERROR)
GET1 = lambda rc: rc.headers(1)  # noqa: E731
OPEN1 = lambda rc: rc.headers(1, POST, end_stream=False)  # noqa: E731

# ==== generic: "MUST accept" ================================================================

simple("generic-1-client-preface", expect_accept)
simple("generic-2-priority-on-idle-stream", expect_accept,
       lambda rc: PriorityFrame(1, depends_on=0, stream_weight=10))
simple("generic-2-window-update-on-half-closed-remote", expect_accept,
       GET1, lambda rc: WindowUpdateFrame(1, window_increment=1))
simple("generic-2-priority-on-half-closed-remote", expect_accept,
       GET1, lambda rc: PriorityFrame(1, depends_on=0, stream_weight=10))
simple("generic-2-rst-stream-on-half-closed-remote", expect_accept,
       GET1, lambda rc: RstStreamFrame(1, error_code=8))
simple("generic-2-priority-on-closed-stream", expect_accept,
       GET1, lambda rc: b"", lambda rc: PriorityFrame(1, depends_on=0, stream_weight=10))
simple("generic-3.10-continuation", expect_response(1),
       lambda rc: hdr(1, BASE[:3], 0x1), lambda rc: raw_frame(9, 0x4, 1, BASE[3:]))
simple("generic-3.10-multiple-continuations", expect_response(1),
       lambda rc: hdr(1, BASE[:1], 0x1), lambda rc: raw_frame(9, 0, 1, BASE[1:3]),
       lambda rc: raw_frame(9, 0x4, 1, BASE[3:]))
simple("generic-3.1-data", expect_response(1),
       OPEN1, lambda rc: DataFrame(1, b"x", flags=["END_STREAM"]))
simple("generic-3.1-multiple-data", expect_response(1),
       OPEN1, lambda rc: DataFrame(1, b"x"), lambda rc: DataFrame(1, b"y", flags=["END_STREAM"]))
simple("generic-3.1-data-with-padding", expect_response(1),
       OPEN1, lambda rc: DataFrame(1, b"x", pad_length=8, flags=["END_STREAM", "PADDED"]))
simple("generic-3.2-headers", expect_response(1), GET1)
simple("generic-3.2-headers-with-padding", expect_response(1),
       lambda rc: raw_frame(1, 0x5 | 0x8, 1, b"\x06" + rc.block(REQ) + b"\x00" * 6))
simple("generic-3.2-headers-with-priority", expect_response(1),
       lambda rc: raw_frame(1, 0x5 | 0x20, 1, b"\x00\x00\x00\x00\x0f" + rc.block(REQ)))
simple("generic-3.3-priority-weight-1", expect_accept,
       lambda rc: PriorityFrame(1, depends_on=0, stream_weight=0))
simple("generic-3.3-priority-weight-256", expect_accept,
       lambda rc: PriorityFrame(1, depends_on=0, stream_weight=255))
simple("generic-3.3-priority-with-dependency", expect_accept,
       lambda rc: PriorityFrame(3, depends_on=1, stream_weight=10))
simple("generic-3.3-priority-exclusive", expect_accept,
       lambda rc: PriorityFrame(3, depends_on=1, stream_weight=10, exclusive=True))
simple("generic-3.3-priority-idle-then-headers-lower-id", expect_response(1),
       lambda rc: PriorityFrame(3, depends_on=0, stream_weight=10), GET1)
simple("generic-3.4-rst-stream", expect_accept,
       OPEN1, lambda rc: RstStreamFrame(1, error_code=8))
simple("generic-3.5-settings", expect_accept, lambda rc: settings_frame({3: 100}))
simple("generic-3.7-ping", expect_accept, lambda rc: PingFrame(0, b"pingping"))
simple("generic-3.8-goaway", lambda rc, frames: (
    rc.error is None and not goaways(frames)) or pytest.fail(str(frames)),
       lambda rc: GoAwayFrame(0, last_stream_id=0, error_code=0))
simple("generic-3.9-window-update-stream-0", expect_accept,
       lambda rc: WindowUpdateFrame(0, window_increment=1))
simple("generic-3.9-window-update-stream-1", expect_response(1),
       OPEN1, lambda rc: WindowUpdateFrame(1, window_increment=1),
       lambda rc: DataFrame(1, b"", flags=["END_STREAM"]))
simple("generic-4-get", expect_response(1), GET1)
simple("generic-4-head", lambda rc, frames: (
    expect_response(1)(rc, frames),
    not [f for f in frames if isinstance(f, DataFrame) and f.data] or pytest.fail("body")),
       lambda rc: rc.headers(1, [(b":method", b"HEAD")] + REQ[1:]))
simple("generic-4-post", expect_response(1),
       OPEN1, lambda rc: DataFrame(1, b"payload", flags=["END_STREAM"]))
simple("generic-4-post-with-trailers", expect_response(1),
       OPEN1, lambda rc: DataFrame(1, b"payload"),
       lambda rc: rc.headers(1, [(b"x-trailer", b"ok")]))

# generic-5: HPACK representations (RFC 7541 §6)
HP = {
    "indexed": BASE + b"\x90",  # 16: accept-encoding: gzip, deflate
    "incremental-indexed-name": BASE + lit("inc", b"text/plain", name_index=31),
    "incremental-indexed-name-huffman": BASE + lit("inc", b"text/plain", 31, huffman=True),
    "incremental-new-name": BASE + lit("inc", b"v", name=b"x-test"),
    "incremental-new-name-huffman": BASE + lit("inc", b"v", name=b"x-test", huffman=True),
    "without-indexing-indexed-name": BASE + lit("without", b"text/plain", 31),
    "without-indexing-indexed-name-huffman": BASE + lit("without", b"text/plain", 31,
                                                        huffman=True),
    "without-indexing-new-name": BASE + lit("without", b"v", name=b"x-test"),
    "without-indexing-new-name-huffman": BASE + lit("without", b"v", name=b"x-test",
                                                    huffman=True),
    "never-indexed-indexed-name": BASE + lit("never", b"text/plain", 31),
    "never-indexed-indexed-name-huffman": BASE + lit("never", b"text/plain", 31, huffman=True),
    "never-indexed-new-name": BASE + lit("never", b"v", name=b"x-test"),
    "never-indexed-new-name-huffman": BASE + lit("never", b"v", name=b"x-test", huffman=True),
    "dynamic-table-size-update": size_update(1024) + BASE,
    "multiple-dynamic-table-size-updates": size_update(0) + size_update(4096) + BASE,
}
for _name, _block in HP.items():
    simple(f"generic-5-{_name}", expect_response(1), lambda rc, b=_block: hdr(1, b))


@case("generic-5-indexed-field-from-dynamic-table", expect_response(3))
def _dyn(rc):
    return [hdr(1, BASE + lit("inc", b"v1", name=b"x-dyn")), hdr(3, BASE + b"\xbf")]  # 63: x-dyn (62 is
    # the :authority that stream 3's own block just inserted)


# ==== RFC 9113 ==============================================================================

@case("RFC9113-3.4-server-preface-is-settings", lambda rc, frames: None)
def _server_preface(rc):
    first = RawClient()
    first.server.receive_data(PREFACE)
    frames = first.read()
    assert frames and frames[0].type == 4 and "ACK" not in frames[0].flags
    return []


@case("RFC9113-3.4-invalid-preface", expect_conn(PROTOCOL_ERROR))
def _bad_preface(rc):
    rc.server = type(rc.server)()
    return [b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"]


simple("RFC9113-4.1-unknown-frame-type-ignored", expect_response(1),
       lambda rc: raw_frame(0x42, 0, 1, b"junk"), GET1)
simple("RFC9113-4.1-undefined-flags-ignored", lambda rc, frames: (
    expect_accept(rc, frames)), lambda rc: raw_frame(6, 0x16, 0, b"12345678"))
simple("RFC9113-4.1-reserved-bit-ignored", expect_response(1),
       lambda rc: raw_frame(1, 0x5, 0x80000001, rc.block(REQ)))
simple("RFC9113-4.2-data-of-16384-octets", expect_response(1),
       OPEN1, lambda rc: DataFrame(1, b"d" * 16384, flags=["END_STREAM"]))
simple("RFC9113-4.2-data-over-max-frame-size", expect_conn(FRAME_SIZE_ERROR),
       OPEN1, lambda rc: DataFrame(1, b"d" * 16385))
simple("RFC9113-4.2-headers-over-max-frame-size", expect_conn(FRAME_SIZE_ERROR),
       lambda rc: rc.headers(1, REQ + [(b"x", b"v" * 20000)]))
simple("RFC9113-4.3-invalid-header-block-fragment", expect_conn(COMPRESSION_ERROR),
       lambda rc: hdr(1, b"\x00\x85\xff\xff\xff"))
simple("RFC9113-4.3-priority-inside-header-block", expect_conn(PROTOCOL_ERROR),
       lambda rc: hdr(1, BASE, 0x1), lambda rc: PriorityFrame(1, stream_weight=1))
simple("RFC9113-4.3-headers-other-stream-inside-header-block", expect_conn(PROTOCOL_ERROR),
       lambda rc: hdr(1, BASE, 0x1), lambda rc: hdr(3, BASE))
simple("RFC9113-5.1.1-even-stream-id", expect_conn(PROTOCOL_ERROR), lambda rc: rc.headers(2))
simple("RFC9113-5.1.1-stream-id-lower-than-previous", expect_conn(PROTOCOL_ERROR),
       lambda rc: rc.headers(5), lambda rc: rc.headers(3))


@case("RFC9113-5.1.2-concurrent-streams-over-limit", expect_stream(201, REFUSED_STREAM))
def _too_many(rc):
    return [rc.headers(sid, end_stream=False) for sid in range(1, 202, 2)]


simple("RFC9113-5.1-idle-data", expect_conn(PROTOCOL_ERROR), lambda rc: DataFrame(1, b"x"))
simple("RFC9113-5.1-idle-rst-stream", expect_conn(PROTOCOL_ERROR),
       lambda rc: RstStreamFrame(1, error_code=8))
simple("RFC9113-5.1-idle-window-update", expect_conn(PROTOCOL_ERROR),
       lambda rc: WindowUpdateFrame(1, window_increment=1))
simple("RFC9113-5.1-idle-continuation", expect_conn(PROTOCOL_ERROR),
       lambda rc: raw_frame(9, 0x4, 1, BASE))
simple("RFC9113-5.1-half-closed-remote-data", expect_stream_or_conn(STREAM_CLOSED),
       lambda rc: rc.headers(1), lambda rc: DataFrame(1, b"x"))
simple("RFC9113-5.1-half-closed-remote-headers", expect_stream_or_conn(STREAM_CLOSED),
       lambda rc: rc.headers(1, end_stream=True), lambda rc: rc.headers(1))
simple("RFC9113-5.1-half-closed-remote-continuation", NAKED_CONTINUATION,
       lambda rc: rc.headers(1), lambda rc: raw_frame(9, 0x4, 1, BASE))
simple("RFC9113-5.1-closed-after-rst-data", expect_stream_or_conn(STREAM_CLOSED),
       OPEN1, lambda rc: RstStreamFrame(1, error_code=8), lambda rc: DataFrame(1, b"x"))
simple("RFC9113-5.1-closed-after-rst-headers", expect_stream_or_conn(STREAM_CLOSED),
       OPEN1, lambda rc: RstStreamFrame(1, error_code=8), lambda rc: rc.headers(1))
simple("RFC9113-5.1-closed-after-rst-continuation", NAKED_CONTINUATION,
       OPEN1, lambda rc: RstStreamFrame(1, error_code=8),
       lambda rc: raw_frame(9, 0x4, 1, BASE))
simple("RFC9113-5.1-closed-data", expect_stream_or_conn(STREAM_CLOSED),
       GET1, lambda rc: b"", lambda rc: DataFrame(1, b"x"))
simple("RFC9113-5.1-closed-headers", expect_stream_or_conn(STREAM_CLOSED),
       GET1, lambda rc: b"", lambda rc: rc.headers(1))
simple("RFC9113-5.1-closed-continuation", NAKED_CONTINUATION,
       GET1, lambda rc: b"", lambda rc: raw_frame(9, 0x4, 1, BASE))
simple("RFC9113-5.3.1-headers-depends-on-itself", expect_stream_or_conn(PROTOCOL_ERROR),
       lambda rc: raw_frame(1, 0x25, 1, b"\x00\x00\x00\x01\x0f" + rc.block(REQ)))
simple("RFC9113-5.3.1-priority-depends-on-itself", expect_stream_or_conn(PROTOCOL_ERROR),
       lambda rc: PriorityFrame(1, depends_on=1, stream_weight=1))
simple("RFC9113-5.4.1-invalid-ping-goaway", expect_conn(FRAME_SIZE_ERROR),
       lambda rc: raw_frame(6, 0, 0, b"1234567"))
simple("RFC9113-5.5-unknown-extension-frame", expect_accept,
       lambda rc: raw_frame(0x77, 0xff, 0, b"anything"))
simple("RFC9113-5.5-unknown-frame-inside-header-block", expect_conn(PROTOCOL_ERROR),
       lambda rc: hdr(1, BASE, 0x1), lambda rc: raw_frame(0x77, 0, 1, b"x"))
simple("RFC9113-6.10-headers-then-continuations", expect_response(1),
       lambda rc: hdr(1, BASE[:2], 0x1), lambda rc: raw_frame(9, 0, 1, BASE[2:4]),
       lambda rc: raw_frame(9, 0, 1, BASE[4:6]), lambda rc: raw_frame(9, 0x4, 1, BASE[6:]))
simple("RFC9113-6.10-continuation-then-other-frame", expect_conn(PROTOCOL_ERROR),
       lambda rc: hdr(1, BASE[:2], 0x1), lambda rc: raw_frame(9, 0, 1, BASE[2:4]),
       lambda rc: DataFrame(1, b"x"))
simple("RFC9113-6.10-continuation-on-stream-0", expect_conn(PROTOCOL_ERROR),
       lambda rc: hdr(1, BASE[:2], 0x1), lambda rc: raw_frame(9, 0x4, 0, BASE[2:]))
simple("RFC9113-6.10-continuation-after-end-headers", expect_conn(PROTOCOL_ERROR),
       lambda rc: hdr(1, BASE, 0x4), lambda rc: raw_frame(9, 0x4, 1, BASE))
simple("RFC9113-6.10-continuation-after-continuation-with-end-headers",
       expect_conn(PROTOCOL_ERROR),
       lambda rc: hdr(1, BASE[:2], 0x1), lambda rc: raw_frame(9, 0x4, 1, BASE[2:]),
       lambda rc: raw_frame(9, 0x4, 1, BASE))
simple("RFC9113-6.10-continuation-after-data", expect_conn(PROTOCOL_ERROR),
       OPEN1, lambda rc: DataFrame(1, b"x"), lambda rc: raw_frame(9, 0x4, 1, BASE))
simple("RFC9113-6.1-data-on-stream-0", expect_conn(PROTOCOL_ERROR),
       lambda rc: raw_frame(0, 0, 0, b"x"))
simple("RFC9113-6.1-data-on-half-closed-remote", expect_stream_or_conn(STREAM_CLOSED),
       GET1, lambda rc: DataFrame(1, b"x"))
simple("RFC9113-6.1-data-invalid-pad-length", expect_conn(PROTOCOL_ERROR),
       OPEN1, lambda rc: raw_frame(0, 0x8, 1, b"\x06abcde"))
simple("RFC9113-6.2-headers-without-end-headers-then-priority", expect_conn(PROTOCOL_ERROR),
       lambda rc: hdr(1, BASE, 0x1), lambda rc: PriorityFrame(3, stream_weight=1))
simple("RFC9113-6.2-headers-to-other-stream-inside-block", expect_conn(PROTOCOL_ERROR),
       lambda rc: hdr(1, BASE, 0x1), lambda rc: hdr(3, BASE, 0x5))
simple("RFC9113-6.2-headers-on-stream-0", expect_conn(PROTOCOL_ERROR),
       lambda rc: raw_frame(1, 0x5, 0, BASE))
simple("RFC9113-6.2-headers-invalid-pad-length", expect_conn(PROTOCOL_ERROR),
       lambda rc: raw_frame(1, 0xd, 1, b"\xff" + BASE))
simple("RFC9113-6.3-priority-on-stream-0", expect_conn(PROTOCOL_ERROR),
       lambda rc: raw_frame(2, 0, 0, b"\x00\x00\x00\x01\x0f"))
simple("RFC9113-6.3-priority-wrong-length", expect_stream(1, FRAME_SIZE_ERROR),
       OPEN1, lambda rc: raw_frame(2, 0, 1, b"\x00\x00\x00\x03"))
simple("RFC9113-6.4-rst-stream-on-stream-0", expect_conn(PROTOCOL_ERROR),
       lambda rc: raw_frame(3, 0, 0, b"\x00\x00\x00\x08"))
simple("RFC9113-6.4-rst-stream-on-idle-stream", expect_conn(PROTOCOL_ERROR),
       lambda rc: RstStreamFrame(1, error_code=8))
simple("RFC9113-6.4-rst-stream-wrong-length", expect_conn(FRAME_SIZE_ERROR),
       OPEN1, lambda rc: raw_frame(3, 0, 1, b"\x00\x00\x00\x08\x00"))
simple("RFC9113-6.5.2-enable-push-not-0-or-1", expect_conn(PROTOCOL_ERROR),
       lambda rc: settings_frame({2: 2}))
simple("RFC9113-6.5.2-initial-window-size-too-big", expect_conn(FLOW_CONTROL_ERROR),
       lambda rc: settings_frame({4: 2**31}))
simple("RFC9113-6.5.2-max-frame-size-below-initial", expect_conn(PROTOCOL_ERROR),
       lambda rc: settings_frame({5: 16383}))
simple("RFC9113-6.5.2-max-frame-size-above-maximum", expect_conn(PROTOCOL_ERROR),
       lambda rc: settings_frame({5: 2**24}))
simple("RFC9113-6.5.2-unknown-setting-ignored", expect_accept,
       lambda rc: settings_frame({0xff: 1}))


@case("RFC9113-6.5.3-settings-values-in-order", lambda rc, frames: None)
def _settings_order(rc):
    # INITIAL_WINDOW_SIZE 100 then 1 in one frame: the last wins, so 1 byte of DATA
    rc.send_bytes(raw_frame(4, 0, 0, b"\x00\x04\x00\x00\x00\x64\x00\x04\x00\x00\x00\x01"))
    rc.send_bytes(rc.headers(1))
    answer(rc)
    frames = rc.read()
    assert [len(f.data) for f in frames if isinstance(f, DataFrame)] == [1]
    return []


@case("RFC9113-6.5.3-settings-acknowledged", lambda rc, frames: None)
def _settings_ack(rc):
    rc.send_bytes(settings_frame({3: 10}))
    frames = rc.read()
    assert [(f.type, "ACK" in f.flags) for f in frames] == [(4, True)]
    return []


simple("RFC9113-6.5-settings-ack-with-payload", expect_conn(FRAME_SIZE_ERROR),
       lambda rc: raw_frame(4, 0x1, 0, b"\x00\x03\x00\x00\x00\x01"))
simple("RFC9113-6.5-settings-on-stream-1", expect_conn(PROTOCOL_ERROR),
       lambda rc: raw_frame(4, 0, 1, b"\x00\x03\x00\x00\x00\x01"))
simple("RFC9113-6.5-settings-length-not-multiple-of-6", expect_conn(FRAME_SIZE_ERROR),
       lambda rc: raw_frame(4, 0, 0, b"\x00\x03\x00\x00\x00"))


@case("RFC9113-6.7-ping-answered-with-same-payload", lambda rc, frames: None)
def _ping(rc):
    rc.send_bytes(PingFrame(0, b"\x01\x02\x03\x04\x05\x06\x07\x08").serialize())
    (f,) = rc.read()
    assert f.type == 6 and "ACK" in f.flags and f.opaque_data == b"\x01\x02\x03\x04\x05\x06\x07\x08"
    return []


@case("RFC9113-6.7-ping-ack-not-answered", lambda rc, frames: None)
def _ping_ack(rc):
    rc.send_bytes(PingFrame(0, b"pingpong", flags=["ACK"]).serialize())
    assert rc.read() == [] and rc.error is None
    return []


simple("RFC9113-6.7-ping-on-stream-1", expect_conn(PROTOCOL_ERROR),
       lambda rc: raw_frame(6, 0, 1, b"12345678"))
simple("RFC9113-6.7-ping-wrong-length", expect_conn(FRAME_SIZE_ERROR),
       lambda rc: raw_frame(6, 0, 0, b"123456789"))
simple("RFC9113-6.8-goaway-on-stream-1", expect_conn(PROTOCOL_ERROR),
       lambda rc: raw_frame(7, 0, 1, b"\x00\x00\x00\x00\x00\x00\x00\x00"))


@case("RFC9113-6.9.1-initial-window-1-limits-data", lambda rc, frames: (
    [len(f.data) for f in frames if isinstance(f, DataFrame)] == [1]
    or pytest.fail(str(frames))), settings={4: 1})
def _window_one(rc):
    return [rc.headers(1)]


simple("RFC9113-6.9.1-connection-window-over-2^31-1", expect_conn(FLOW_CONTROL_ERROR),
       lambda rc: WindowUpdateFrame(0, window_increment=2**31 - 1),
       lambda rc: WindowUpdateFrame(0, window_increment=2**31 - 1))
simple("RFC9113-6.9.1-stream-window-over-2^31-1", expect_stream(1, FLOW_CONTROL_ERROR),
       OPEN1, lambda rc: WindowUpdateFrame(1, window_increment=2**31 - 1),
       lambda rc: WindowUpdateFrame(1, window_increment=2**31 - 1))


@case("RFC9113-6.9.2-initial-window-change-adjusts-open-streams", lambda rc, frames: None,
      settings={4: 0})
def _window_change(rc):
    rc.send_bytes(rc.headers(1))
    answer(rc)
    assert not [f for f in rc.read() if isinstance(f, DataFrame)]
    rc.send_bytes(settings_frame({4: 2}))
    frames = rc.read()
    assert [len(f.data) for f in frames if isinstance(f, DataFrame)] == [2]
    return []


@case("RFC9113-6.9.2-negative-window-tracked", lambda rc, frames: None, settings={4: 1})
def _negative_window(rc):
    rc.send_bytes(rc.headers(1))
    answer(rc)
    assert [len(f.data) for f in rc.read() if isinstance(f, DataFrame)] == [1]
    rc.send_bytes(settings_frame({4: 0}))    # the window of stream 1 is now -1
    rc.send_bytes(WindowUpdateFrame(1, window_increment=1).serialize())
    assert not [f for f in rc.read() if isinstance(f, DataFrame)]  # back to 0 only
    rc.send_bytes(WindowUpdateFrame(1, window_increment=1).serialize())
    assert [len(f.data) for f in rc.read() if isinstance(f, DataFrame)] == [1]
    return []


simple("RFC9113-6.9.2-initial-window-size-over-maximum", expect_conn(FLOW_CONTROL_ERROR),
       lambda rc: settings_frame({4: 2**31}))
simple("RFC9113-6.9-window-update-increment-0", expect_conn(PROTOCOL_ERROR),
       lambda rc: raw_frame(8, 0, 0, b"\x00\x00\x00\x00"))
simple("RFC9113-6.9-window-update-increment-0-on-stream", expect_stream_or_conn(PROTOCOL_ERROR),
       OPEN1, lambda rc: raw_frame(8, 0, 1, b"\x00\x00\x00\x00"))
simple("RFC9113-6.9-window-update-wrong-length", expect_conn(FRAME_SIZE_ERROR),
       lambda rc: raw_frame(8, 0, 0, b"\x00\x00\x01"))
simple("RFC9113-7-goaway-unknown-error-code", lambda rc, frames: (
    rc.error is None and not goaways(frames)) or pytest.fail(str(frames)),
       lambda rc: GoAwayFrame(0, last_stream_id=0, error_code=0x77))
simple("RFC9113-7-rst-stream-unknown-error-code", expect_accept,
       OPEN1, lambda rc: RstStreamFrame(1, error_code=0x77))

# RFC 9113 §8: malformed requests are stream errors of type PROTOCOL_ERROR
M = {
    "8.3-unknown-pseudo-header": REQ + [(b":foo", b"x")],
    "8.3-response-pseudo-header-in-request": REQ + [(b":status", b"200")],
    "8.3-pseudo-header-after-regular-field": REQ[:3] + [(b"x", b"1"), REQ[3]],
    "8.2.2-connection-specific-field": REQ + [(b"connection", b"keep-alive")],
    "8.2.2-te-other-than-trailers": REQ + [(b"te", b"trailers, deflate")],
    "8.3.1-empty-path": REQ[:2] + [(b":path", b"")] + REQ[3:],
    "8.3.1-missing-method": REQ[1:],
    "8.3.1-missing-scheme": [REQ[0]] + REQ[2:],
    "8.3.1-missing-path": REQ[:2] + REQ[3:],
    "8.3.1-duplicate-method": REQ + [(b":method", b"POST")],
    "8.3.1-duplicate-scheme": REQ[:2] + [(b":scheme", b"https")] + REQ[2:],
    "8.3.1-duplicate-path": REQ[:3] + [(b":path", b"/x")] + REQ[3:],
    "8.2.1-uppercase-field-name": REQ + [(b"X-Test", b"1")],
}
for _name, _hdrs in M.items():
    simple(f"RFC9113-{_name}", expect_stream(1, PROTOCOL_ERROR),
           lambda rc, h=_hdrs: rc.headers(1, h))


@case("RFC9113-8.1-pseudo-header-in-trailers", expect_stream(1, PROTOCOL_ERROR))
def _pseudo_trailers(rc):
    return [OPEN1(rc), DataFrame(1, b"x"), rc.headers(1, [(b":path", b"/")])]


simple("RFC9113-8.1.1-content-length-not-data-length", expect_stream(1, PROTOCOL_ERROR),
       lambda rc: rc.headers(1, POST + [(b"content-length", b"1")], end_stream=False),
       lambda rc: DataFrame(1, b"xyz", flags=["END_STREAM"]))
simple("RFC9113-8.1.1-content-length-not-sum-of-data", expect_stream(1, PROTOCOL_ERROR),
       lambda rc: rc.headers(1, POST + [(b"content-length", b"1")], end_stream=False),
       lambda rc: DataFrame(1, b"x"), lambda rc: DataFrame(1, b"y", flags=["END_STREAM"]))
simple("RFC9113-8.1-second-headers-without-end-stream", expect_stream(1, PROTOCOL_ERROR),
       OPEN1, lambda rc: DataFrame(1, b"x"), lambda rc: rc.headers(1, [(b"x-t", b"1")],
                                                                 end_stream=False))
simple("RFC9113-8.4-push-promise-from-client", expect_conn(PROTOCOL_ERROR),
       OPEN1, lambda rc: raw_frame(5, 0x4, 1, b"\x00\x00\x00\x02" + BASE))

# ==== RFC 7541: decoding errors are COMPRESSION_ERROR (RFC 9113 §4.3) =======================

HPACK_BAD = {
    "2.3.3-indexed-field-invalid-index": BASE + hint(70, 7, 0x80),
    "2.3.3-literal-field-invalid-name-index": BASE + lit("without", b"v", name_index=70),
    "4.2-table-size-update-at-end-of-block": BASE + size_update(100),
    "5.2-huffman-padding-longer-than-7-bits": BASE + hint(0, 4) + hstr(b"x-h")
                                               + b"\x82\x1f\xff",
    "5.2-huffman-padded-with-zeros": BASE + hint(0, 4) + hstr(b"x-h") + b"\x81\x00",
    "5.2-huffman-with-eos": BASE + hint(0, 4) + hstr(b"x-h") + b"\x84\xff\xff\xff\xff",
    "6.1-indexed-field-index-0": BASE + b"\x80",
    "6.3-table-size-update-over-settings": size_update(4097) + BASE,
}
for _name, _block in HPACK_BAD.items():
    simple(f"RFC7541-{_name}", expect_conn(COMPRESSION_ERROR),
           lambda rc, b=_block: hdr(1, b))


# ==== the suite ================================================================================


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_h2spec(c: Case) -> None:
    c.run()


def test_suite_covers_every_group():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 120
    sections = {i.split("-")[1] for i in ids if i.startswith("RFC9113")}
    assert {"3.4", "4.1", "4.2", "4.3", "5.1", "5.1.1", "5.1.2", "5.3.1", "5.4.1", "5.5",
            "6.1", "6.2", "6.3", "6.4", "6.5", "6.5.2", "6.5.3", "6.7", "6.8", "6.9",
            "6.9.1", "6.9.2", "6.10", "7", "8.1", "8.1.1", "8.2.1", "8.2.2", "8.3",
            "8.3.1", "8.4"} <= sections
