"""Proxy header hygiene: what a request and a response look like on the other side.

Pure functions over `list[tuple[bytes, bytes]]` (lower-case names), no I/O, so every rule is
checked in a unit test.  The rules are RFC 9110's for an intermediary plus what Envoy and
APIM users expect:
- hop-by-hop fields are removed both ways (§7.6.1): `Connection` and every field it names,
  `Keep-Alive`, `TE`, `Transfer-Encoding`, `Upgrade`, `Proxy-Connection` and all `Proxy-*`;
  framing is re-chosen by the next hop's connection object;
- `TE: trailers` is kept (as Envoy does): gRPC backends require it; other TE codings go;
- `Expect` is removed: the gateway answers `100-continue` itself when it wants the body
  (Envoy's default), so the backend never waits for a 100 that its client cannot see;
- `Host` becomes the backend's authority, as APIM does; the client's is kept in
  `X-Forwarded-Host` and `Forwarded: host=`;
- `X-Forwarded-For` gets the client address appended, `X-Forwarded-Proto` is set to the
  scheme the client used, `Forwarded` (RFC 7239) gets one element appended;
- `X-Request-Id` is kept when the client sent a sane one, else generated;
- `Via` gets `1.1 apigw` appended both ways (§7.6.3);
- `X-Forwarded-Client-Cert` (Envoy's) is the gateway's to say: the client's is dropped
  unless its listener trusts it, and the listener may add an element for the client
  certificate of the connection (`gateway/certificates.py` writes it).
"""

from __future__ import annotations

import os
from operator import itemgetter
from typing import Any, Optional

from .. import native

__all__ = ["HOP_BY_HOP", "RequestIds", "forward_request_headers", "forward_request_head",
           "forward_response_headers", "passed_through", "VIA"]

HOP_BY_HOP = frozenset((b"connection", b"keep-alive", b"te", b"transfer-encoding",
                        b"upgrade", b"proxy-connection", b"expect"))
VIA = b"1.1 apigw"
_first = itemgetter(0)   # a field's name
_MAX_REQUEST_ID = 200


class RequestIds:
    """Cheap unique request ids: a random per-process prefix and a counter (uuid4 costs
    ~2.5 us a request; this ~0.3 us), 32 hex digits like a UUID without dashes.  `next`
    is a plain attribute (not a property or an itertools.count) because
    forward_request_head hands it to C and moves it on when C used it."""

    def __init__(self, prefix: Optional[bytes] = None) -> None:
        self.prefix = prefix if prefix is not None else os.urandom(8).hex().encode()
        self.next = 1   # the counter of the next id (forward_request_head reads it too)

    def __call__(self) -> bytes:
        n = self.next
        self.next = n + 1
        return b"%s%016x" % (self.prefix, n)


def _connection_tokens(headers: list[tuple[bytes, bytes]]) -> set[bytes]:
    tokens: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            tokens.update(t.strip(b" \t").lower() for t in value.split(b","))
    return tokens


def _named_by_connection(headers: list[tuple[bytes, bytes]]) -> set[bytes]:
    """The fields Connection names (a C scan first: it is rarely there)."""
    return _connection_tokens(headers) if b"connection" in map(_first, headers) else set()


# the request fields forward_request_headers treats itself (every other one is kept
# unless hop-by-hop)
_REQUEST_OWN = frozenset((b"host", b"x-forwarded-for", b"forwarded", b"via", b"x-request-id",
                          b"x-forwarded-proto", b"x-forwarded-host",
                          b"x-forwarded-client-cert", b"transfer-encoding", b"te"))


def passed_through(name: bytes) -> bool:
    """True when forward_request_headers copies a `name` field as it is (or drops it, when
    Connection names it) and no other field depends on it: then removing such fields from
    its input removes them from its output and changes nothing else (a field it treats
    itself, a hop-by-hop one or Connection would change what it writes for the others)."""
    return not (name in _REQUEST_OWN or name in HOP_BY_HOP or name.startswith(b"proxy-"))


def _is_hop(name: bytes, named: set[bytes]) -> bool:
    return name in HOP_BY_HOP or name.startswith(b"proxy-") or name in named


def _ip_for_forwarded(ip: str) -> bytes:
    return b'"[%s]"' % ip.encode() if ":" in ip else ip.encode()


def forward_request_headers(headers: list[tuple[bytes, bytes]], *, client_ip: str,
                            scheme: bytes, backend_authority: bytes, new_id: RequestIds,
                            authority: Optional[bytes] = None, version: bytes = b"1.1",
                            tls: Any = None) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The headers to send to the backend, and the request id.

    `authority` is the absolute-form target's (RFC 9112 §3.2.2: it overrides Host);
    `version` the HTTP version the request was received with (for Via).
    A chunked request stays chunked (`transfer-encoding: chunked` is re-added after the
    hop-by-hop sweep); a Content-Length is kept as it is (the server connection checked it).
    `tls` (the connection's client-certificate facts: `keep_xfcc`, `xfcc`) says whether the
    client's x-forwarded-client-cert goes on and which element of ours is appended; without
    it the client's is dropped (Envoy's SANITIZE)."""
    named = _named_by_connection(headers)
    named -= {b"content-length", b"host"}  # the parser refused these; belt and braces
    out: list[tuple[bytes, bytes]] = []
    host = b""
    xff = b""
    fwd = b""
    via = b""
    rid = b""
    xfcc = b""
    chunked = False
    te_trailers = False
    for name, value in headers:
        if name not in _REQUEST_OWN:   # the usual field: one set lookup, _is_hop inline
            if not (name in HOP_BY_HOP or name.startswith(b"proxy-") or name in named):
                out.append((name, value))
        elif name == b"host":
            host = value
        elif name == b"x-forwarded-for":
            xff = value if not xff else xff + b", " + value
        elif name == b"forwarded":
            fwd = value if not fwd else fwd + b", " + value
        elif name == b"via":
            via = value if not via else via + b", " + value
        elif name == b"x-request-id":
            if not rid and 0 < len(value) <= _MAX_REQUEST_ID:
                rid = value
        elif name == b"x-forwarded-proto" or name == b"x-forwarded-host":
            pass  # ours to set: a client must not choose what the backend believes
        elif name == b"x-forwarded-client-cert":
            if tls is not None and tls.keep_xfcc:   # trusted: the listener says so
                xfcc = value if not xfcc else xfcc + b"," + value
        elif name == b"transfer-encoding":
            chunked = True  # the parser allows only a final "chunked"
        elif name == b"te":
            # hop-by-hop, but `trailers` is what gRPC needs the backend to see (as Envoy)
            if b"trailers" in value.lower():
                te_trailers = True
    if not rid:
        rid = new_id()
    if authority is not None:
        host = authority
    ip = client_ip.encode()
    out.append((b"host", backend_authority))
    out.append((b"x-forwarded-for", xff + b", " + ip if xff else ip))
    out.append((b"x-forwarded-proto", scheme))
    if host:
        out.append((b"x-forwarded-host", host))
    elem = b"for=%s;proto=%s" % (_ip_for_forwarded(client_ip), scheme)
    if host:
        elem += b';host="%s"' % host.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    out.append((b"forwarded", fwd + b", " + elem if fwd else elem))
    me = VIA if version == b"1.1" else version + b" apigw"
    out.append((b"via", via + b", " + me if via else me))
    out.append((b"x-request-id", rid))
    if tls is not None and tls.xfcc is not None:
        xfcc = xfcc + b"," + tls.xfcc if xfcc else tls.xfcc
    if xfcc:
        out.append((b"x-forwarded-client-cert", xfcc))
    if chunked:
        out.append((b"transfer-encoding", b"chunked"))
    if te_trailers:
        out.append((b"te", b"trailers"))
    return out, rid


def forward_response_headers(headers: list[tuple[bytes, bytes]], version: bytes = b"1.1",
                             ) -> list[tuple[bytes, bytes]]:
    """The backend's response headers as the client gets them (`version`: the one the
    response was received with, for Via)."""
    named = _named_by_connection(headers)
    named.discard(b"content-length")
    out = []
    via = b""
    for name, value in headers:
        if name == b"via":
            via = value if not via else via + b", " + value
        elif not (name in HOP_BY_HOP or name.startswith(b"proxy-") or name in named):
            out.append((name, value))   # (_is_hop inline)
    me = VIA if version == b"1.1" else version + b" apigw"
    out.append((b"via", via + b", " + me if via else me))
    return out


_c_forward = native.h1_forward
_buffers = native.forward_buffers
_unpack = native.unpack
_join = b"\0".join
_NEW_ID = native.H1F_NEW_ID
_CHUNKED = native.H1F_CHUNKED
_NULL = native.NULL


def forward_request_head(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
                         client_ip: str, scheme: bytes, backend_authority: bytes,
                         new_id: RequestIds, authority: Optional[bytes], version: bytes,
                         tls: Any) -> Optional[tuple[bytes, bytes, int, bool]]:
    """The whole HTTP/1.1 request head for the backend, made in C (native/src/
    http1_forward.c): the bytes `forward_request_headers` then
    `ClientConnection._send_request` would write for `Request(1, method, target, ...)`,
    with the request id, the Content-Length to send (-1: none) and whether the body goes
    chunked.  None when the extension is not there or the C function leaves this head to
    that general path (a name not a lower-case token, a bad value, no room, ...)."""
    if _c_forward is None:
        return None
    buf, cap, out = _buffers()
    block = _join(map(_join, headers))
    ip = client_ip.encode()
    if tls is None:
        keep, xfcc, xn = 0, _NULL, 0
    else:
        keep, xfcc = tls.keep_xfcc, tls.xfcc
        xn = 0 if xfcc is None else len(xfcc)
        if xfcc is None:
            xfcc = _NULL
    nid = new_id.next
    prefix = new_id.prefix
    n = _c_forward(buf, cap, method, len(method), target, len(target), block, len(block),
                   len(headers), ip, len(ip), scheme, len(scheme), backend_authority,
                   len(backend_authority), _NULL if authority is None else authority,
                   0 if authority is None else len(authority), version, len(version),
                   prefix, len(prefix), nid, keep, xfcc, xn, out)
    if n < 0:
        return None
    head = _unpack(buf, n)
    flags = out[3]
    if flags & _NEW_ID:
        new_id.next = nid + 1
    at = out[0]
    return head, head[at:at + out[1]], out[2], bool(flags & _CHUNKED)
