"""gRPC request heads: grpc-timeout (tables and hypothesis round trips), content types,
check_request's table of answers, :path splitting."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apigw_core.protocol import ProtocolError, Request
from apigw_core.protocol.grpc._headers import _format_timeout_ns, _parse_timeout_ns
from apigw_core.protocol.grpc import (
    GrpcCall,
    GrpcError,
    StatusCode,
    Wire,
    check_request,
    format_timeout,
    parse_timeout,
    split_path,
    wire_of,
    with_timeout,
)

S = StatusCode

# -- grpc-timeout -------------------------------------------------------------------------------

GOOD_TIMEOUTS = [
    (b"1H", 3600.0), (b"2M", 120.0), (b"3S", 3.0), (b"100m", 0.1), (b"250u", 0.00025),
    (b"7n", 7e-9), (b"0S", 0.0), (b"00000001S", 1.0), (b"99999999n", 0.099999999),
    (b"99999999H", 99999999 * 3600.0), (b" 5S ", 5.0),
]


@pytest.mark.parametrize("value,seconds", GOOD_TIMEOUTS)
def test_parse_timeout_table(value, seconds):
    assert parse_timeout(value) == pytest.approx(seconds, rel=1e-12, abs=0)


BAD_TIMEOUTS = [b"", b"S", b"1", b"123456789S", b"1s", b"1h", b"1x", b"-1S", b"+1S",
                b"1.5S", b" S", b"1 S", b"\xd9\xa1S", b"1SS", b"0x1S"]


@pytest.mark.parametrize("value", BAD_TIMEOUTS)
def test_parse_timeout_rejects(value):
    with pytest.raises(GrpcError) as ei:
        parse_timeout(value)
    assert (ei.value.code, ei.value.status_hint) == (S.INTERNAL, 400)
    assert isinstance(ei.value, ProtocolError)


@pytest.mark.parametrize("seconds,value", [
    (0, b"0n"), (-1, b"0n"), (float("nan"), b"0n"), (1e-9, b"1n"), (4e-10, b"1n"),
    (0.099999999, b"99999999n"), (0.1, b"100000u"), (1.1, b"1100000u"), (1.0, b"1000000u"),
    (30, b"30000000u"), (99.999999, b"99999999u"), (99999.999, b"99999999m"),
    (100000, b"100000S"), (99999999, b"99999999S"),
    (100000000, b"1666667M"), (99999999 * 60, b"99999999M"), (1e11, b"27777778H"),
    (1e12, b"99999999H"), (float("inf"), b"99999999H"), (1e20, b"99999999H"),
])
def test_format_timeout_table(seconds, value):
    assert format_timeout(seconds) == value


units = st.sampled_from(list(b"HMSmun"))


@settings(max_examples=500)
@given(digits=st.integers(1, 8), value=st.integers(0, 99_999_999), unit=units)
def test_timeout_header_round_trip_is_exact(digits, value, unit):
    text = b"%0*d%c" % (digits, value, unit) if len(str(value)) <= digits else b"%d%c" % (
        value, unit)
    ns = _parse_timeout_ns(text)
    again = _format_timeout_ns(ns)
    assert len(again) <= 9 and again[:-1].isdigit()
    assert _parse_timeout_ns(again) == ns  # same duration, maybe a finer unit


@settings(max_examples=500)
@given(st.floats(min_value=0, max_value=1e9, allow_nan=False, exclude_min=True))
def test_format_timeout_never_shortens_and_stays_close(seconds):
    value = format_timeout(seconds)
    assert 2 <= len(value) <= 9 and value[:-1].isdigit() and value[-1:] in b"HMSmun"
    back = parse_timeout(value)
    assert back >= seconds * (1 - 1e-15)
    # the finest unit that fits leaves >= 5 significant digits: rounding up costs < 1e-5
    assert back - seconds <= max(seconds * 1e-5, 1e-9) + 1e-15


def test_with_timeout_replaces_or_removes():
    h = [(b"a", b"1"), (b"grpc-timeout", b"10S"), (b"b", b"2")]
    assert with_timeout(h, 2.5) == [(b"a", b"1"), (b"b", b"2"), (b"grpc-timeout", b"2500000u")]
    assert with_timeout(h, None) == [(b"a", b"1"), (b"b", b"2")]
    assert with_timeout([], 0) == [(b"grpc-timeout", b"0n")]


# -- content types ---------------------------------------------------------------------------

@pytest.mark.parametrize("ctype,expected", [
    (b"application/grpc", (Wire.GRPC, b"")),
    (b"application/grpc+proto", (Wire.GRPC, b"proto")),
    (b"application/grpc+json", (Wire.GRPC, b"json")),
    (b"Application/GRPC+Proto", (Wire.GRPC, b"proto")),
    (b"application/grpc; charset=utf-8", (Wire.GRPC, b"")),
    (b"application/grpc+", (Wire.GRPC, b"")),
    (b"application/grpc-web", (Wire.GRPC_WEB, b"")),
    (b"application/grpc-web+proto", (Wire.GRPC_WEB, b"proto")),
    (b"application/grpc-web-text", (Wire.GRPC_WEB_TEXT, b"")),
    (b"application/grpc-web-text+proto", (Wire.GRPC_WEB_TEXT, b"proto")),
    (b"application/grpcx", None),
    (b"application/grpc-webx", None),
    (b"application/grpc-web-textual", None),
    (b"application/json", None),
    (b"text/plain", None),
    (b"", None),
    (None, None),
])
def test_wire_of(ctype, expected):
    assert wire_of(ctype) == expected


# -- check_request ------------------------------------------------------------------------------

def req(method=b"POST", ctype=b"application/grpc", te=b"trailers", version=b"2",
        extra=()) -> Request:
    headers = [(b"host", b"example.com")]
    if ctype is not None:
        headers.append((b"content-type", ctype))
    if te is not None:
        headers.append((b"te", te))
    headers += list(extra)
    return Request(1, method, b"/apigw.test.TestService/UnaryCall", headers, version)


def test_check_request_accepts_and_describes_the_call():
    call = check_request(req(extra=[(b"grpc-timeout", b"1500m"), (b"grpc-encoding", b"gzip")]))
    assert call == GrpcCall(Wire.GRPC, b"", 1.5, b"gzip")
    assert call.deadline(100.0) == 101.5 and not call.web
    assert call.content_type() == b"application/grpc"
    assert check_request(req(ctype=b"application/grpc+proto", te=b"Trailers")).subtype == b"proto"
    assert check_request(req()).deadline(5.0) is None
    web = check_request(req(ctype=b"application/grpc-web-text+proto", te=None, version=b"1.1"))
    assert (web.wire, web.web, web.content_type()) == (
        Wire.GRPC_WEB_TEXT, True, b"application/grpc-web-text+proto")
    assert check_request(req(ctype=b"application/grpc-web", te=None, version=b"2")).web


REJECTS = [
    # (name, request, http status, grpc status) -- grpc-go's answers
    ("no content-type", req(ctype=None), 415, S.INVALID_ARGUMENT),
    ("json content-type", req(ctype=b"application/json"), 415, S.INVALID_ARGUMENT),
    ("grpcx content-type", req(ctype=b"application/grpcx"), 415, S.INVALID_ARGUMENT),
    ("native gRPC over HTTP/1.1", req(version=b"1.1"), 505, S.INTERNAL),
    ("native gRPC over HTTP/1.0", req(version=b"1.0"), 505, S.INTERNAL),
    ("GET", req(method=b"GET"), 405, S.INTERNAL),
    ("PUT", req(method=b"PUT"), 405, S.INTERNAL),
    ("gRPC-Web GET", req(method=b"GET", ctype=b"application/grpc-web", te=None), 405,
     S.INTERNAL),
    ("no te", req(te=None), 400, S.INTERNAL),
    ("te: gzip", req(te=b"gzip"), 400, S.INTERNAL),
    ("bad grpc-timeout", req(extra=[(b"grpc-timeout", b"123456789S")]), 400, S.INTERNAL),
    ("bad grpc-timeout unit", req(extra=[(b"grpc-timeout", b"1d")]), 400, S.INTERNAL),
    ("bad grpc-timeout on gRPC-Web",
     req(ctype=b"application/grpc-web", te=None, extra=[(b"grpc-timeout", b"x")]), 400,
     S.INTERNAL),
]


@pytest.mark.parametrize("name,request_,http,code", REJECTS, ids=[r[0] for r in REJECTS])
def test_check_request_rejects(name, request_, http, code):
    with pytest.raises(GrpcError) as ei:
        check_request(request_)
    assert (ei.value.status_hint, ei.value.code) == (http, code)
    fields = dict(ei.value.headers())
    assert fields[b"grpc-status"] == b"%d" % code and fields[b"grpc-message"]


def test_content_type_is_checked_first():
    with pytest.raises(GrpcError) as ei:
        check_request(req(method=b"GET", ctype=b"text/html", te=None, version=b"1.1"))
    assert ei.value.status_hint == 415


# -- :path ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("path,expected", [
    (b"/apigw.test.TestService/UnaryCall", (b"apigw.test.TestService", b"UnaryCall")),
    (b"/S/M", (b"S", b"M")),
    (b"/S/", None), (b"//M", None), (b"/S", None), (b"S/M", None), (b"/S/M/x", None),
    (b"/S/M?q=1", None), (b"", None), (b"*", None),
])
def test_split_path(path, expected):
    assert split_path(path) == expected
