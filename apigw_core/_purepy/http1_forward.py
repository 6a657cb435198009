"""Pure-Python twin of native/src/http1_forward.c (`apigw_h1_forward`).

The contract is native/include/apigw/http1_forward.h: the request head the gateway sends
to an HTTP/1.1 backend, made from the client's fields (their b"\\0"-joined names and
values) and the rewrite inputs, byte for byte what gateway/forwarding.py's
forward_request_headers and ClientConnection._send_request make together, or E_FALLBACK
where that path is the one to take.  `forward_head` answers what the C function answers
for the same arguments: the bytes written and the four outputs, or an error code.  It is
written like the C, check by check, so that tests can hold the two to each other (the
gateway uses the C one or the general path, never this).
"""

from __future__ import annotations

import re
from typing import Optional, Union

E_SPACE = -1
E_FALLBACK = -2
CHUNKED = 1
NEW_ID = 2

_TCHAR = rb"!#$%&'*+\-.^_`|~0-9a-z"
_NAME = re.compile(rb"[" + _TCHAR + rb"]+")
_METHOD = re.compile(rb"[" + _TCHAR + rb"A-Z]+")
_TARGET = re.compile(rb"[\x21-\x7e\x80-\xff]+")
_VALUE = re.compile(rb"(?:[\x21-\x7e\x80-\xff](?:[ \t\x21-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?")
_DROP = frozenset((b"connection", b"expect", b"forwarded", b"host", b"keep-alive", b"te",
                   b"transfer-encoding", b"upgrade", b"via", b"x-forwarded-for",
                   b"x-request-id", b"x-forwarded-proto", b"x-forwarded-host",
                   b"x-forwarded-client-cert"))

Result = Union[int, tuple[bytes, int, int, int, int]]


def _joined(pairs: list[tuple[bytes, bytes]], name: bytes, sep: bytes) -> bytes:
    acc = b""
    for n, v in pairs:
        if n == name:
            acc = v if not acc else acc + sep + v
    return acc


def forward_head(method: bytes, target: bytes, fields: bytes, num_fields: int,
                 client_ip: bytes, scheme: bytes, backend: bytes,
                 authority: Optional[bytes], version: bytes, id_prefix: bytes,
                 id_next: int, keep_xfcc: bool, xfcc: Optional[bytes],
                 cap: int) -> Result:
    """(head, rid_off, rid_len, content_length, flags), or E_SPACE / E_FALLBACK."""
    # 1. the block's shape, the names and values, the facts
    if num_fields == 0:
        if fields:
            return E_FALLBACK
        parts: list[bytes] = []
    else:
        parts = fields.split(b"\0")
        if len(parts) != 2 * num_fields:
            return E_FALLBACK
    pairs = list(zip(parts[::2], parts[1::2]))
    host = rid = None
    chunked = te_trailers = False
    clen = -1
    n_clen = 0
    for n, v in pairs:
        if _NAME.fullmatch(n) is None or _VALUE.fullmatch(v) is None:
            return E_FALLBACK
        if n == b"host":
            host = v
        elif n == b"x-request-id":
            if rid is None and 0 < len(v) <= 200:
                rid = v
        elif n == b"transfer-encoding":
            chunked = True
        elif n == b"te":
            if b"trailers" in v.lower():
                te_trailers = True
        elif n == b"content-length":
            n_clen += 1
            if n_clen > 1 or not 0 < len(v) <= 18 or not v.isdigit():
                return E_FALLBACK
            clen = int(v)
    if chunked and clen >= 0:
        return E_FALLBACK
    # 2. the request line
    if _METHOD.fullmatch(method) is None or _TARGET.fullmatch(target) is None:
        return E_FALLBACK
    out = [b"%s %s HTTP/1.1\r\n" % (method, target)]
    # 3. the kept fields
    named: set[bytes] = set()
    for n, v in pairs:
        if n == b"connection":
            named.update(t.strip(b" \t").lower() for t in v.split(b","))
    named.discard(b"content-length")
    for n, v in pairs:
        if n in _DROP or n.startswith(b"proxy-") or n in named:
            continue
        out.append(b"%s: %s\r\n" % (n, v))
    # 4. the gateway's own
    if authority is not None:
        host = authority
    values = [(b"host", backend)]
    xff = _joined(pairs, b"x-forwarded-for", b", ")
    values.append((b"x-forwarded-for", xff + b", " + client_ip if xff else client_ip))
    values.append((b"x-forwarded-proto", scheme))
    if host:
        values.append((b"x-forwarded-host", host))
    ip = b'"[%s]"' % client_ip if b":" in client_ip else client_ip
    elem = b"for=%s;proto=%s" % (ip, scheme)
    if host:
        elem += b';host="%s"' % host.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    fwd = _joined(pairs, b"forwarded", b", ")
    values.append((b"forwarded", fwd + b", " + elem if fwd else elem))
    via = _joined(pairs, b"via", b", ")
    me = b"1.1 apigw" if version == b"1.1" else version + b" apigw"
    values.append((b"via", via + b", " + me if via else me))
    new_id = rid is None
    if new_id:
        rid = id_prefix + b"%016x" % (id_next & 0xFFFFFFFFFFFFFFFF)
    values.append((b"x-request-id", rid))
    cert = _joined(pairs, b"x-forwarded-client-cert", b",") if keep_xfcc else b""
    if xfcc is not None:
        cert = cert + b"," + xfcc if cert else xfcc
    if cert:
        values.append((b"x-forwarded-client-cert", cert))
    rid_off = 0
    for n, v in values:
        if _VALUE.fullmatch(v) is None:
            return E_FALLBACK
        if n == b"x-request-id":
            rid_off = sum(map(len, out)) + len(n) + 2
        out.append(b"%s: %s\r\n" % (n, v))
    if chunked:
        out.append(b"transfer-encoding: chunked\r\n")
    if te_trailers:
        out.append(b"te: trailers\r\n")
    out.append(b"\r\n")
    head = b"".join(out)
    if len(head) > cap or len(head) > 0x7FFFFFFF:
        return E_SPACE
    return (head, rid_off, len(rid), clen,
            (CHUNKED if chunked else 0) | (NEW_ID if new_id else 0))
