"""The pure header rules of gateway.forwarding and gateway.replies, one rule per test."""

from __future__ import annotations

import json
import re

import pytest

from apigw_core.gateway.forwarding import (
    HOP_BY_HOP,
    VIA,
    RequestIds,
    forward_request_headers,
    forward_response_headers,
)
from apigw_core.gateway.replies import json_error


def fwd(headers, *, client_ip="192.0.2.7", scheme=b"http", authority=b"backend:8080",
        ids=None):
    out, rid = forward_request_headers(
        headers, client_ip=client_ip, scheme=scheme, backend_authority=authority,
        new_id=ids or RequestIds(b"0" * 16))
    return out, rid


def values(headers, name: bytes) -> list[bytes]:
    return [v for n, v in headers if n == name]


def one(headers, name: bytes) -> bytes:
    vs = values(headers, name)
    assert len(vs) == 1, (name, headers)
    return vs[0]


# -- request: Host and the forwarding fields ---------------------------------------------

def test_host_becomes_the_backend_authority_and_is_kept_as_forwarded_host():
    out, _ = fwd([(b"host", b"shop.example:8443"), (b"accept", b"*/*")])
    assert one(out, b"host") == b"backend:8080"
    assert one(out, b"x-forwarded-host") == b"shop.example:8443"
    assert one(out, b"forwarded") == b'for=192.0.2.7;proto=http;host="shop.example:8443"'
    assert one(out, b"accept") == b"*/*"


def test_no_host_no_forwarded_host():
    out, _ = fwd([])
    assert one(out, b"host") == b"backend:8080"
    assert values(out, b"x-forwarded-host") == []
    assert one(out, b"forwarded") == b"for=192.0.2.7;proto=http"


def test_x_forwarded_for_appended_to_every_received_line():
    out, _ = fwd([(b"x-forwarded-for", b"203.0.113.1"),
                   (b"x-forwarded-for", b"198.51.100.2, 10.0.0.1")])
    assert one(out, b"x-forwarded-for") == b"203.0.113.1, 198.51.100.2, 10.0.0.1, 192.0.2.7"


def test_x_forwarded_for_created():
    out, _ = fwd([])
    assert one(out, b"x-forwarded-for") == b"192.0.2.7"


@pytest.mark.parametrize("scheme", [b"http", b"https"])
def test_x_forwarded_proto_and_host_are_ours_to_set(scheme):
    out, _ = fwd([(b"host", b"h"), (b"x-forwarded-proto", b"gopher"),
                  (b"x-forwarded-host", b"evil.example")], scheme=scheme)
    assert one(out, b"x-forwarded-proto") == scheme
    assert one(out, b"x-forwarded-host") == b"h"
    assert one(out, b"forwarded").endswith(b";proto=%s;host=\"h\"" % scheme)


def test_forwarded_appended_to_received_elements():
    out, _ = fwd([(b"forwarded", b"for=198.51.100.1"), (b"forwarded", b"for=203.0.113.5")])
    assert one(out, b"forwarded") == (b"for=198.51.100.1, for=203.0.113.5, "
                                      b"for=192.0.2.7;proto=http")


def test_forwarded_ipv6_is_bracketed_and_quoted():
    out, _ = fwd([], client_ip="2001:db8::1")
    assert one(out, b"forwarded") == b'for="[2001:db8::1]";proto=http'
    assert one(out, b"x-forwarded-for") == b"2001:db8::1"


def test_forwarded_host_quotes_are_escaped():
    out, _ = fwd([(b"host", b'a"b\\c')])
    assert one(out, b"forwarded") == b'for=192.0.2.7;proto=http;host="a\\"b\\\\c"'


def test_via_appended_both_ways():
    out, _ = fwd([(b"via", b"1.0 edge"), (b"via", b"1.1 cdn")])
    assert one(out, b"via") == b"1.0 edge, 1.1 cdn, " + VIA
    out, _ = fwd([])
    assert one(out, b"via") == VIA == b"1.1 apigw"
    resp = forward_response_headers([(b"via", b"1.1 backend"), (b"content-length", b"0")])
    assert one(resp, b"via") == b"1.1 backend, 1.1 apigw"
    assert one(forward_response_headers([]), b"via") == b"1.1 apigw"


@pytest.mark.parametrize("version, via", [(b"1.0", b"1.0 apigw"), (b"1.1", b"1.1 apigw")])
def test_via_names_the_received_version(version, via):
    out, _ = forward_request_headers([(b"via", b"1.1 edge")], client_ip="192.0.2.7",
                                     scheme=b"http", backend_authority=b"b",
                                     new_id=RequestIds(), version=version)
    assert one(out, b"via") == b"1.1 edge, " + via
    assert one(forward_response_headers([], version=version), b"via") == via


def test_absolute_form_authority_overrides_host():
    out, _ = forward_request_headers([(b"host", b"evil.example")], client_ip="192.0.2.7",
                                     scheme=b"https", backend_authority=b"b:1",
                                     new_id=RequestIds(), authority=b"shop.example")
    assert one(out, b"host") == b"b:1"
    assert one(out, b"x-forwarded-host") == b"shop.example"
    assert one(out, b"forwarded") == b'for=192.0.2.7;proto=https;host="shop.example"'


# -- request ids -------------------------------------------------------------------------

def test_request_id_generated_32_hex_and_counting():
    ids = RequestIds()
    a, b = ids(), ids()
    assert re.fullmatch(rb"[0-9a-f]{32}", a) and re.fullmatch(rb"[0-9a-f]{32}", b)
    assert a[:16] == b[:16] and int(b[16:], 16) == int(a[16:], 16) + 1
    assert RequestIds()()[:16] != a[:16]          # a random prefix per process


def test_request_id_generated_when_absent():
    ids = RequestIds(b"abcdef0123456789")
    out, rid = fwd([], ids=ids)
    assert rid == b"abcdef01234567890000000000000001"
    assert one(out, b"x-request-id") == rid


def test_request_id_kept_first_sane_one():
    out, rid = fwd([(b"x-request-id", b"client-id-1"), (b"x-request-id", b"second")])
    assert rid == b"client-id-1"
    assert values(out, b"x-request-id") == [b"client-id-1"]


@pytest.mark.parametrize("bad", [b"", b"x" * 201])
def test_request_id_replaced_when_empty_or_too_long(bad):
    out, rid = fwd([(b"x-request-id", bad)])
    assert rid != bad and re.fullmatch(rb"[0-9a-f]{32}", rid)
    assert values(out, b"x-request-id") == [rid]


def test_request_id_of_200_bytes_kept():
    rid = b"r" * 200
    assert fwd([(b"x-request-id", rid)])[1] == rid


# -- hop-by-hop --------------------------------------------------------------------------

HOPS = [(b"connection", b"keep-alive, x-secret, X-Other"), (b"keep-alive", b"timeout=5"),
        (b"te", b"gzip"), (b"upgrade", b"websocket"), (b"proxy-connection", b"close"),
        (b"proxy-authorization", b"Basic eA=="), (b"proxy-foo", b"1"),
        (b"x-secret", b"s"), (b"x-other", b"o"), (b"expect", b"100-continue")]


def test_request_hop_by_hop_removed():
    out, _ = fwd(HOPS + [(b"x-kept", b"k"), (b"content-length", b"3")])
    names = {n for n, _ in out}
    for n, _ in HOPS:
        assert n not in names, n
    assert one(out, b"x-kept") == b"k" and one(out, b"content-length") == b"3"


def test_te_trailers_is_kept_for_grpc_other_codings_are_not():
    out, _ = fwd([(b"te", b"trailers, deflate;q=0.5"), (b"connection", b"te")])
    assert values(out, b"te") == [b"trailers"]
    out, _ = fwd([(b"te", b"deflate")])
    assert values(out, b"te") == []


def test_request_connection_cannot_remove_content_length_or_host():
    out, _ = fwd([(b"connection", b"content-length, host"), (b"host", b"h"),
                  (b"content-length", b"5")])
    assert one(out, b"content-length") == b"5"
    assert one(out, b"x-forwarded-host") == b"h"


def test_request_connection_tokens_with_spaces_tabs_and_empty_elements():
    out, _ = fwd([(b"connection", b" ,X-A ,\tx-b\t,, "), (b"x-a", b"1"), (b"x-b", b"2"),
                  (b"x-c", b"3")])
    names = [n for n, _ in out]
    assert b"x-a" not in names and b"x-b" not in names and b"x-c" in names


def test_request_chunked_stays_chunked_exactly_once():
    out, _ = fwd([(b"transfer-encoding", b"chunked"), (b"connection", b"transfer-encoding")])
    assert values(out, b"transfer-encoding") == [b"chunked"]


def test_request_order_kept_and_ours_appended():
    out, _ = fwd([(b"a", b"1"), (b"b", b"2"), (b"a", b"3")])
    assert out[:3] == [(b"a", b"1"), (b"b", b"2"), (b"a", b"3")]
    assert [n for n, _ in out[3:]] == [b"host", b"x-forwarded-for", b"x-forwarded-proto",
                                       b"forwarded", b"via", b"x-request-id"]


def test_request_input_not_mutated():
    headers = [(b"connection", b"x-a"), (b"x-a", b"1"), (b"host", b"h")]
    copy = list(headers)
    fwd(headers)
    assert headers == copy


def test_response_hop_by_hop_removed():
    resp = forward_response_headers([
        (b"connection", b"close, X-Secret"), (b"keep-alive", b"timeout=5"),
        (b"transfer-encoding", b"chunked"), (b"upgrade", b"h2c"), (b"te", b"trailers"),
        (b"proxy-authenticate", b"Basic"), (b"proxy-connection", b"keep-alive"),
        (b"x-secret", b"s"), (b"content-type", b"text/plain"), (b"trailer", b"x-digest"),
        (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")])
    assert resp == [(b"content-type", b"text/plain"), (b"trailer", b"x-digest"),
                    (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"), (b"via", VIA)]


def test_response_connection_cannot_remove_content_length():
    resp = forward_response_headers([(b"connection", b"content-length"),
                                     (b"content-length", b"12")])
    assert one(resp, b"content-length") == b"12"


def test_hop_by_hop_set():
    assert HOP_BY_HOP == {b"connection", b"keep-alive", b"te", b"transfer-encoding",
                          b"upgrade", b"proxy-connection", b"expect"}


# -- local replies -----------------------------------------------------------------------

def test_json_error_shape_and_length():
    headers, body = json_error(502, 'backend "b" refused')
    assert json.loads(body) == {"statusCode": 502, "message": 'backend "b" refused'}
    assert dict(headers) == {b"content-type": b"application/json",
                             b"content-length": b"%d" % len(body)}


def test_json_error_with_request_id():
    headers, body = json_error(504, "timeout", b"abc123")
    assert json.loads(body)["requestId"] == "abc123"
    assert (b"x-request-id", b"abc123") in headers
    assert int(dict(headers)[b"content-length"]) == len(body)


def test_json_error_non_ascii_message_and_id():
    headers, body = json_error(400, "bad \u00e9", b"id-\xe9")
    doc = json.loads(body)
    assert doc == {"statusCode": 400, "message": "bad \u00e9", "requestId": "id-\u00e9"}
    assert body.isascii()
    assert int(dict(headers)[b"content-length"]) == len(body)
