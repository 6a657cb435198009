"""gRPC status: grpc-message percent-encoding, grpc-status trailers both ways, trailers-only
answers (and that http2.ServerConnection puts one in a single HEADERS frame with
END_STREAM), GrpcError, and both HTTP -> gRPC status tables."""

from __future__ import annotations

import pytest
from h2_helpers import RawClient
from hyperframe.frame import HeadersFrame, RstStreamFrame
from hypothesis import given, settings
from hypothesis import strategies as st

from apigw_core.protocol import EndOfMessage, ProtocolError, Request, Response
from apigw_core.protocol.grpc import (
    GrpcError,
    StatusCode,
    check_request,
    decode_grpc_message,
    encode_grpc_message,
    grpc_error_response,
    parse_status,
    status_for_http,
    status_from_backend_http,
    status_trailers,
)

S = StatusCode


def test_status_codes_are_the_spec_numbers():
    assert [c.value for c in S] == list(range(17))
    assert (S.CANCELLED, S.DEADLINE_EXCEEDED, S.PERMISSION_DENIED, S.RESOURCE_EXHAUSTED,
            S.UNIMPLEMENTED, S.INTERNAL, S.UNAVAILABLE, S.UNAUTHENTICATED) == (
        1, 4, 7, 8, 12, 13, 14, 16)


# -- grpc-message ---------------------------------------------------------------------------

MESSAGES = [
    ("", b""),
    ("plain ascii, spaces ok", b"plain ascii, spaces ok"),
    ("100%", b"100%25"),
    ("line\nbreak\ttab", b"line%0Abreak%09tab"),
    ("caf\u00e9", b"caf%C3%A9"),
    ("\u65e5\u672c", b"%E6%97%A5%E6%9C%AC"),
    ("emoji \U0001F600", b"emoji %F0%9F%98%80"),
    ("~ and \x7f", b"~ and %7F"),
]


@pytest.mark.parametrize("text,wire", MESSAGES)
def test_grpc_message_encoding_table(text, wire):
    assert encode_grpc_message(text) == wire
    assert decode_grpc_message(wire) == text


@pytest.mark.parametrize("wire,text", [
    (b"%", "%"),                     # broken escapes stay as they are
    (b"%4", "%4"),
    (b"%zz", "%zz"),
    (b"a%2", "a%2"),
    (b"%41%4g", "A%4g"),
    (b"%e6%97%a5", "\u65e5"),      # lower-case hex is accepted
    (b"%FF", "\ufffd"),             # invalid UTF-8 -> replacement character
    (b"\xc3\xa9", "\u00e9"),        # raw UTF-8 (not spec, but seen) is read as UTF-8
    (b"%25%32%35", "%25"),           # one level of decoding only
])
def test_grpc_message_decoding_never_fails(wire, text):
    assert decode_grpc_message(wire) == text


@settings(max_examples=300)
@given(st.text())
def test_grpc_message_round_trip(text):
    wire = encode_grpc_message(text)
    assert all(0x20 <= b <= 0x7E for b in wire)
    assert decode_grpc_message(wire) == text.encode("utf-8", "replace").decode("utf-8")


@settings(max_examples=300)
@given(st.binary())
def test_grpc_message_decoding_any_bytes(raw):
    assert isinstance(decode_grpc_message(raw), str)


# -- grpc-status ----------------------------------------------------------------------------

def test_status_trailers_and_parse_status():
    t = status_trailers(S.UNAVAILABLE, "backend down: 100%", [(b"x-extra", b"1")])
    assert t == [(b"grpc-status", b"14"), (b"grpc-message", b"backend down: 100%25"),
                 (b"x-extra", b"1")]
    assert parse_status(t) == (S.UNAVAILABLE, "backend down: 100%")
    assert status_trailers(0) == [(b"grpc-status", b"0")]
    assert parse_status([(b"grpc-status", b"0")]) == (S.OK, "")
    assert parse_status([(b"grpc-status", b"0")])[0] is S.OK


@pytest.mark.parametrize("fields,expected", [
    ([], None),
    ([(b"grpc-message", b"no status")], None),
    ([(b"grpc-status", b"abc")], (S.UNKNOWN, "")),
    ([(b"grpc-status", b"-1")], (S.UNKNOWN, "")),
    ([(b"grpc-status", b"")], (S.UNKNOWN, "")),
    ([(b"grpc-status", b"99")], (99, "")),                # unknown code kept as a number
    ([(b"grpc-status", b"12345678901")], (S.UNKNOWN, "")),
    ([(b"grpc-status", b" 7 ")], (S.PERMISSION_DENIED, "")),
    ([(b"grpc-message", b"m%21"), (b"grpc-status", b"3")], (S.INVALID_ARGUMENT, "m!")),
])
def test_parse_status_table(fields, expected):
    assert parse_status(fields) == expected


# -- trailers-only answers --------------------------------------------------------------------

def test_grpc_error_response_fields():
    assert grpc_error_response(S.UNIMPLEMENTED, "no route") == [
        (b"content-type", b"application/grpc"), (b"grpc-status", b"12"),
        (b"grpc-message", b"no route")]
    assert grpc_error_response(S.UNAVAILABLE, content_type=b"application/grpc-web+proto") == [
        (b"content-type", b"application/grpc-web+proto"), (b"grpc-status", b"14")]


def test_grpc_error_is_a_protocol_error_carrying_the_answer():
    err = GrpcError(S.RESOURCE_EXHAUSTED, "too big", stream_id=3)
    assert isinstance(err, ProtocolError)
    assert (err.code, err.message, err.status_hint, err.stream_id) == (
        S.RESOURCE_EXHAUSTED, "too big", 200, 3)
    assert err.events(5) == [
        Response(5, 200, [(b"content-type", b"application/grpc"), (b"grpc-status", b"8"),
                          (b"grpc-message", b"too big")]),
        EndOfMessage(5)]
    assert "RESOURCE_EXHAUSTED" in repr(err)
    assert GrpcError(99, "odd").code == 99


def test_trailers_only_answer_is_one_headers_frame_with_end_stream():
    """What gRPC clients require: grpc-status in a HEADERS frame without END_STREAM is
    ignored by them.  Sent together, Response + EndOfMessage make exactly that."""
    rc = RawClient()
    rc.handshake()
    grpc_req = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/a.S/M"),
                (b":authority", b"x"), (b"content-type", b"application/grpc"),
                (b"te", b"trailers")]
    rc.send(rc.headers(1, grpc_req, end_stream=False))
    for ev in GrpcError(S.UNAUTHENTICATED, "who are you").events(1):
        rc.server.send(ev)
    frames = [f for f in rc.read() if f.stream_id == 1]
    assert isinstance(frames[0], HeadersFrame) and "END_STREAM" in frames[0].flags, frames
    assert frames[0].headers == [(b":status", b"200"), (b"content-type", b"application/grpc"),
                                 (b"grpc-status", b"16"), (b"grpc-message", b"who are you")]
    # the request was still open: RST_STREAM(NO_ERROR) follows (RFC 9113 §8.1; grpc-go too)
    assert [(type(f), f.error_code) for f in frames[1:]] == [(RstStreamFrame, 0)]


# -- HTTP status -> gRPC status ---------------------------------------------------------------

# doc/http-grpc-status-mapping.md, row by row (+ a few "all other codes")
BACKEND = [(400, S.INTERNAL), (401, S.UNAUTHENTICATED), (403, S.PERMISSION_DENIED),
           (404, S.UNIMPLEMENTED), (429, S.UNAVAILABLE), (431, S.INTERNAL),
           (502, S.UNAVAILABLE), (503, S.UNAVAILABLE), (504, S.UNAVAILABLE),
           (200, S.UNKNOWN), (204, S.UNKNOWN), (301, S.UNKNOWN), (405, S.UNKNOWN),
           (413, S.UNKNOWN), (500, S.UNKNOWN), (501, S.UNKNOWN), (599, S.UNKNOWN)]


@pytest.mark.parametrize("http,code", BACKEND)
def test_backend_http_status_table(http, code):
    assert status_from_backend_http(http) is code


# the gateway's own replies (README: 404 no API, 502 backend refused/bad, 503 pool full,
# 504 backend timeout, 408 client too slow, 400/413/414/431/501/505 refused requests;
# APIM policies: 401 validate-jwt / subscription key, 403 forbidden / quota, 429 rate limit)
GATEWAY = [(401, S.UNAUTHENTICATED), (403, S.PERMISSION_DENIED), (429, S.RESOURCE_EXHAUSTED),
           (404, S.UNIMPLEMENTED), (405, S.INTERNAL), (502, S.UNAVAILABLE),
           (503, S.UNAVAILABLE), (504, S.DEADLINE_EXCEEDED), (408, S.DEADLINE_EXCEEDED),
           (413, S.RESOURCE_EXHAUSTED), (414, S.INTERNAL),
           (431, S.RESOURCE_EXHAUSTED), (400, S.INTERNAL), (415, S.INVALID_ARGUMENT),
           (499, S.CANCELLED), (500, S.INTERNAL), (501, S.UNIMPLEMENTED), (505, S.INTERNAL),
           (418, S.UNKNOWN), (200, S.UNKNOWN)]


@pytest.mark.parametrize("http,code", GATEWAY)
def test_gateway_error_table(http, code):
    assert status_for_http(http) is code


def test_gateway_table_agrees_with_the_gateway_layers_own_copy():
    """gateway/replies.py keeps its own table (the gateway may not import protocol/); the
    two must not drift apart where both have an answer."""
    replies = pytest.importorskip("apigw_core.gateway.replies")
    for http in range(100, 600):
        theirs = replies.grpc_status_for(http)
        if theirs != S.UNKNOWN:
            assert status_for_http(http) == theirs, http


def test_check_request_answers_agree_with_the_gateway_table():
    cases = [Request(1, b"POST", b"/S/M", [], b"2"),                                   # 415
             Request(1, b"GET", b"/S/M", [(b"content-type", b"application/grpc")], b"2"),  # 405
             Request(1, b"POST", b"/S/M", [(b"content-type", b"application/grpc")], b"1.1")]
    for req in cases:
        with pytest.raises(GrpcError) as ei:
            check_request(req)
        assert status_for_http(ei.value.status_hint) == ei.value.code
