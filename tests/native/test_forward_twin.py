"""Backend request heads: the C writer (native/src/http1_forward.c, native.h1_forward), its
pure-Python twin (_purepy/http1_forward.forward_head) and the general path
(forwarding.forward_request_headers, then ClientConnection's send(Request)) agree.

- C == twin on random inputs: the same bytes and outputs, or the same error, for every
  cap (small ones too: E_SPACE exactly when the head does not fit);
- where C writes a head, it is byte for byte the general path's, with the same request
  id, Content-Length and chunking, and the id counter moves the same way; where the
  general path refuses (UsageError), C falls back.
Inputs: the fields the rules treat (hop-by-hop, Connection naming others, X-Forwarded-*,
Forwarded, Via, X-Request-Id of every length, TE, Transfer-Encoding, Content-Length) mixed
with random names (upper-case, non-token, empty) and values (empty, obs-text, CTLs, NUL,
leading or trailing whitespace), many fields, IPv4/IPv6 client addresses, absolute-form
authorities with quotes and backslashes, HTTP/1.0, client-certificate elements.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from apigw_core import native
from apigw_core.gateway import forwarding
from apigw_core.gateway.forwarding import RequestIds, forward_request_headers
from apigw_core.protocol import Request, UsageError
from apigw_core.protocol.http1 import ClientConnection, ForwardedHead

EXAMPLES = int(os.environ.get("APIGW_TWIN_EXAMPLES", "1000"))
needs_c = pytest.mark.skipif(not native.enabled, reason="C extension not built")
PREFIX = b"0123456789abcdef"

NAMES = [b"host", b"connection", b"keep-alive", b"te", b"transfer-encoding", b"upgrade",
         b"proxy-connection", b"proxy-authorization", b"expect", b"x-forwarded-for",
         b"forwarded", b"via", b"x-request-id", b"x-forwarded-proto", b"x-forwarded-host",
         b"x-forwarded-client-cert", b"content-length", b"traceparent", b"x-a", b"x-b",
         b"accept", b"proxy-"]
names = st.one_of(st.sampled_from(NAMES), st.sampled_from(NAMES),
                  st.text("abcxyz-!#'|~09", min_size=1, max_size=8).map(str.encode),
                  st.sampled_from([b"Host", b"X-A", b"bad name", b"", b"a:b", b"x\0y"]))
value_chars = st.one_of(st.binary(max_size=12),
                        st.text("ab ,;\t=\"\\:", max_size=12).map(str.encode))
values = st.one_of(
    st.sampled_from([b"", b"trailers", b"TRAILERS, deflate", b"chunked", b"close",
                     b"keep-alive, x-a", b"x-b ,X-A", b"content-length, host", b"5", b"05",
                     b"1234567890123456789", b"12345678901234567", b"-1", b"1.2.3.4",
                     b"for=9.9.9.9", b"\x80\xff", b"a" * 200, b"a" * 201, b"1.0 proxy",
                     b"Hash=abc;By=x"]),
    value_chars)
fields = st.lists(st.tuples(names, values), max_size=12)
many = st.lists(st.tuples(st.sampled_from(NAMES[17:]), st.sampled_from([b"v", b"", b"w w"])),
                min_size=60, max_size=120)
ips = st.sampled_from([b"127.0.0.1", b"10.1.2.3", b"::1", b"2001:db8::7", b"", b"1.2.3.4 "])
schemes = st.sampled_from([b"http", b"https", b"", b"ht\ttp"])
backends = st.sampled_from([b"backend:8080", b"b.example", b"[::1]:81", b"", b"b c"])
authorities = st.one_of(st.none(), st.sampled_from([b"", b"other.example:8080", b'q"u\\o',
                                                    b"\x80h", b"a b", b" x"]))
versions = st.sampled_from([b"1.1", b"1.0", b"2", b"", b" 1"])
xfccs = st.one_of(st.none(), st.sampled_from([b"", b"Hash=ab;Subject=\"CN=x\"", b"\x01",
                                              b"By=spiffe://x"]))
methods = st.sampled_from([b"GET", b"POST", b"M-SEARCH", b"get", b"", b"G T", b"\x80"])
targets = st.sampled_from([b"/", b"/a?b=c", b"*", b"http://h/x", b"", b"/a b", b"/\x7f",
                           b"/\x80\xff"])

inputs = st.tuples(methods, targets, st.one_of(fields, many), ips, schemes, backends,
                   authorities, versions, st.integers(0, 2 ** 64 - 1), st.booleans(), xfccs)


def block(headers: list) -> bytes:
    return b"\0".join(map(b"\0".join, headers))


def c_head(args: tuple, cap: int = native.H1F_CAP):
    """What the C writer answers, shaped as the twin's result."""
    method, target, headers, ip, scheme, backend, authority, version, nid, keep, xfcc = args
    buf, _, out = native.forward_buffers()
    blk = block(headers)
    NULL = native.NULL
    n = native.h1_forward(buf, cap, method, len(method), target, len(target), blk, len(blk),
                          len(headers), ip, len(ip), scheme, len(scheme), backend,
                          len(backend), NULL if authority is None else authority,
                          len(authority or b""), version, len(version), PREFIX, len(PREFIX),
                          nid, keep, NULL if xfcc is None else xfcc, len(xfcc or b""), out)
    if n < 0:
        return n
    return native.unpack(buf, n), out[0], out[1], out[2], out[3]


def twin_head(args: tuple, cap: int = native.H1F_CAP):
    method, target, headers, ip, scheme, backend, authority, version, nid, keep, xfcc = args
    return native.py_forward_head(method, target, block(headers), len(headers), ip, scheme,
                                  backend, authority, version, PREFIX, nid, keep, xfcc, cap)


@needs_c
@settings(max_examples=EXAMPLES, deadline=None)
@given(args=inputs)
@example(args=(b"GET", b"/", [(b"host", b"h")], b"127.0.0.1", b"http", b"b:1", None, b"1.1",
               1, False, None))
def test_c_equals_the_twin(args):
    want = twin_head(args)
    assert c_head(args) == want
    if isinstance(want, tuple):    # one byte short of the head: E_SPACE, at every size
        assert c_head(args, len(want[0]) - 1) == native.H1F_E_SPACE
        assert c_head(args, len(want[0])) == want


@needs_c
@settings(max_examples=max(EXAMPLES // 5, 50), deadline=None)
@given(args=inputs, cap=st.integers(0, 400))
def test_small_caps(args, cap):
    assert c_head(args, cap) == twin_head(args, cap)


class _TLS:
    def __init__(self, keep: bool, xfcc) -> None:
        self.keep_xfcc = keep
        self.xfcc = xfcc


def general(args: tuple):
    """The general path's head, id, Content-Length and chunking; or UsageError."""
    method, target, headers, ip, scheme, backend, authority, version, nid, keep, xfcc = args
    ids = RequestIds(PREFIX)
    ids.next = nid
    tls = None if (not keep and xfcc is None) else _TLS(keep, xfcc)
    out, rid = forward_request_headers(
        list(headers), client_ip=ip.decode("latin-1"), scheme=scheme,
        backend_authority=backend, new_id=ids, authority=authority, version=version,
        tls=tls)
    conn = ClientConnection()
    conn.send(Request(1, method, target, out))
    return conn.data_to_send(), rid, ids.next, conn


@given(args=inputs)
@settings(max_examples=EXAMPLES, deadline=None)
def test_the_twin_writes_what_the_general_path_writes(args):
    """(The twin stands for C here: the test above holds them together; this one runs
    without the extension too.)"""
    method, target, headers, ip, scheme, backend, authority, version, nid, keep, xfcc = args
    if nid >= 2 ** 64 - 1:
        nid = 2 ** 64 - 2
        args = args[:8] + (nid,) + args[9:]
    if b"\0" in ip or any(b"\0" in n or b"\0" in v for n, v in headers):
        return   # not a Python header list's job: the block would not split back
    got = twin_head(args)
    try:
        want, rid, next_id, conn = general(args)
    except UsageError:
        assert got == native.H1F_E_FALLBACK
        return
    if got == native.H1F_E_FALLBACK:
        return    # the general path writes it (upper-case names, long Content-Length, ...)
    head, rid_off, rid_len, clen, flags = got
    assert head == want
    assert head[rid_off:rid_off + rid_len] == rid
    assert next_id == (nid + 1 if flags & native.H1F_NEW_ID else nid)
    # the connection is left as a ForwardedHead would leave it
    fc = ClientConnection()
    fc.send(ForwardedHead(1, method, head, clen, bool(flags & native.H1F_CHUNKED)))
    assert fc.data_to_send() == want
    for a in ("_method", "_req_keep", "_req_upgrade", "_resp_keep", "_rstate", "_req_done"):
        assert getattr(fc, a) == getattr(conn, a), a
    assert type(fc._writer) is type(conn._writer)
    assert getattr(fc._writer, "remaining", None) == getattr(conn._writer, "remaining", None)


@needs_c
def test_forward_request_head_glue_and_the_id_counter():
    ids, ids2 = RequestIds(PREFIX), RequestIds(PREFIX)
    headers = [(b"host", b"a.example"), (b"x-request-id", b"client-id"),
               (b"content-length", b"3")]
    for hs in (headers, headers[:1], headers[:1]):
        got = forwarding.forward_request_head(b"POST", b"/p", list(hs), "::1", b"https",
                                              b"b:1", ids, None, b"1.0", None)
        out, rid = forward_request_headers(list(hs), client_ip="::1", scheme=b"https",
                                           backend_authority=b"b:1", new_id=ids2,
                                           version=b"1.0")
        conn = ClientConnection()
        conn.send(Request(1, b"POST", b"/p", out))
        assert got is not None
        assert got[:2] == (conn.data_to_send(), rid)
        assert got[2] == (3 if len(hs) == 3 else -1) and got[3] is False
    assert ids.next == ids2.next == 3
    # a name the C path leaves to Python
    assert forwarding.forward_request_head(b"GET", b"/", [(b"Host", b"h")], "1.2.3.4",
                                           b"http", b"b", ids, None, b"1.1", None) is None


@needs_c
def test_a_head_larger_than_the_buffer_falls_back():
    big = [(b"x-%d" % i, b"v" * 1000) for i in range(140)]
    assert forwarding.forward_request_head(b"GET", b"/", big, "1.2.3.4", b"http", b"b",
                                           RequestIds(PREFIX), None, b"1.1", None) is None
