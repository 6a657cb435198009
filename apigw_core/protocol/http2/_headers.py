"""HTTP/2 field blocks <-> neutral heads (RFC 9113 §8.2, §8.3; RFC 8441 §4).

Strategy.  h2's own header validation and normalisation are switched off (they run as a
chain of generators, once per rule, character by character) and replaced by the single
pass below, which also does the mapping the neutral events need.  So a field block is
read once, by us, instead of twice.  The rules are h2's and the RFC's, none weaker:

- pseudo-header fields (§8.3) come first, each at most once, only the defined ones
  (`:method :scheme :path :authority`, plus `:protocol` when we advertised
  SETTINGS_ENABLE_CONNECT_PROTOCOL, RFC 8441; `:status` alone in responses), and none in
  trailers;
- `:method` is a token; `:scheme` a URI scheme; `:path` non-empty, visible characters,
  and for http/https origin-form or `*` (OPTIONS only); `:authority` host[:port] without
  userinfo (§8.3.1); CONNECT carries only `:method` and `:authority` (§8.5) unless it is
  an extended CONNECT, which needs `:protocol :scheme :path :authority`;
- field names are lower-case tokens (RFC 9110 §5.1 tokens, stricter than §8.2.1's
  "no CTL, no upper case, no colon"); values contain no NUL, CR or LF and neither start
  nor end with SP/HTAB (§8.2.1);
- connection-specific fields are malformed (§8.2.2: `connection`, `proxy-connection`,
  `keep-alive`, `transfer-encoding`, `upgrade`), and `te` may only say `trailers`;
- requests need `:authority` or `host`; both present must agree, `host` at most once
  (h2's rule); `content-length` is 1*DIGIT and appears at most once (as our HTTP/1.1
  parser); trailers carry no framing or routing fields (`content-length`, `host`);
- several `cookie` fields are joined with "; " (§8.2.3), so HTTP/1.1 hops see one.

A broken request head raises `Malformed`: the connection resets that stream with
PROTOCOL_ERROR (§8.1.1) and keeps the others.  On the way out our own heads are checked as
strictly (UsageError: a CR/LF the application smuggled in never reaches a wire), names are
lower-cased, connection-specific fields are dropped (framing is ours, as on HTTP/1.1), and
`authorization`, `proxy-authorization` and short `cookie` values are sent never-indexed,
as h2's outbound normalisation does (HPACK compression-oracle defence, RFC 7541 §7.1).

Field names already seen valid are remembered in a small bounded set, so the usual header
costs one set lookup plus one value scan.
"""

from __future__ import annotations

import re
from typing import Optional, Sequence

from hpack import NeverIndexedHeaderTuple

from .._errors import UsageError

__all__ = ["Malformed", "parse_request", "parse_response", "parse_trailers",
           "request_block", "response_block", "trailer_block"]


class Malformed(Exception):
    """A field block breaks RFC 9113 §8: a stream error of type PROTOCOL_ERROR."""


_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+").fullmatch
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch
_SCHEME = re.compile(rb"[A-Za-z][A-Za-z0-9+\-.]*").fullmatch
_PATH = re.compile(rb"[\x21-\x7e\x80-\xff]+").fullmatch
_AUTHORITY = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=:\[\]%]+").fullmatch
_BAD_VALUE = re.compile(rb"[\x00\r\n]|\A[ \t]|[ \t]\Z").search
_STATUS = re.compile(rb"[1-9][0-9][0-9]").fullmatch

# what a regular field name means to us; names not listed are plain fields
_CONN, _TE, _HOST, _CLEN, _COOKIE, _EXPECT = range(1, 7)
_SPECIAL = {
    b"connection": _CONN, b"proxy-connection": _CONN, b"keep-alive": _CONN,
    b"transfer-encoding": _CONN, b"upgrade": _CONN, b"te": _TE, b"host": _HOST,
    b"content-length": _CLEN, b"cookie": _COOKIE, b"expect": _EXPECT,
}
_SECURE = frozenset((b"authorization", b"proxy-authorization"))
_MAX_KNOWN = 1024
_known: set[bytes] = set()      # plain (not special) names already found valid
_known_out: set[bytes] = set()  # names we may send as they are (lower-case, plain)

_REQUEST_PSEUDO = frozenset((b":method", b":scheme", b":path", b":authority", b":protocol"))


def _fields(headers: Sequence[tuple[bytes, bytes]], i: int, out: list,
            authority: Optional[bytes], trailers: bool) -> tuple[int, bool]:
    """Check the regular fields from index `i`, appending them to `out`; return
    (content-length or -1, expect-100-continue).  `authority` (requests only; b"" when the
    request has no :authority) maps the `host` field."""
    clen = -1
    expect = False
    host_seen = False
    cookie_at = -1
    cookies: Optional[list[bytes]] = None
    known = _known
    for j in range(i, len(headers)):
        h = headers[j]
        name, value = h
        if name not in known:
            kind = _SPECIAL.get(name)
            if kind is None:
                if _NAME(name) is None:
                    if name[:1] == b":":
                        raise Malformed(f"pseudo-header field {name!r} after a regular field"
                                        if name in _REQUEST_PSEUDO or name == b":status"
                                        else f"unknown pseudo-header field {name!r}")
                    raise Malformed(f"invalid field name {name!r}")
                if len(known) < _MAX_KNOWN:
                    known.add(name)
            elif kind == _CONN:
                raise Malformed(f"connection-specific field {name.decode()!r}")
            elif kind == _TE:
                if value.lower() != b"trailers":
                    raise Malformed("te other than 'trailers'")
            elif kind == _CLEN:
                if trailers:
                    raise Malformed("content-length in trailers")
                if clen >= 0:
                    raise Malformed("repeated content-length")
                if not value.isdigit() or len(value) > 18:
                    raise Malformed("content-length is not 1*DIGIT")
                clen = int(value)
            elif kind == _HOST:
                if trailers:
                    raise Malformed("host in trailers")
                if host_seen:
                    raise Malformed("repeated host")
                host_seen = True
                if authority is not None:
                    if authority:
                        if value != authority:
                            raise Malformed(":authority and host disagree")
                        continue  # already first in `out`
                    if _AUTHORITY(value) is None or b"@" in value:
                        raise Malformed("invalid host")
            elif kind == _COOKIE:
                if cookie_at >= 0:
                    if cookies is None:
                        cookies = [out[cookie_at][1]]
                    if _BAD_VALUE(value) is not None:
                        raise Malformed("invalid cookie value")
                    cookies.append(value)
                    continue
                cookie_at = len(out)
            elif kind == _EXPECT:
                expect = value.lower() == b"100-continue"
        if value and _BAD_VALUE(value) is not None:
            raise Malformed(f"invalid value for field {name!r}")
        out.append(h)
    if cookies is not None:
        out[cookie_at] = (b"cookie", b"; ".join(cookies))
    if authority is not None and not authority and not host_seen:
        raise Malformed("request without :authority or host")
    return clen, expect


# (key, result) of the last parse_request that passed: one tuple, replaced whole (so a
# reader never pairs one call's key with another's result)
_last_request: list = [None]


def parse_request(headers: Sequence[tuple[bytes, bytes]], connect_protocol: bool
                  ) -> tuple[bytes, bytes, list, Optional[bytes], bool, int]:
    """(method, target, headers, protocol, expect_continue, content_length or -1).

    `target` is `:path`, or `:authority` for a plain CONNECT.  `headers` starts with
    `host` (from `:authority`) when the request had one.  A client repeating a request
    sends the same block: the last one that passed is remembered (the checks are a pure
    function of the fields, their classes and `connect_protocol`)."""
    key = (connect_protocol, tuple(headers), tuple(map(type, headers)))
    last = _last_request[0]
    if last is not None and last[0] == key:
        method, target, out, protocol, expect, clen = last[1]
        return method, target, list(out), protocol, expect, clen
    r = _parse_request(headers, connect_protocol)
    _last_request[0] = (key, (r[0], r[1], list(r[2]), r[3], r[4], r[5]))
    return r


def _parse_request(headers: Sequence[tuple[bytes, bytes]], connect_protocol: bool
                   ) -> tuple[bytes, bytes, list, Optional[bytes], bool, int]:
    method = scheme = path = authority = protocol = None
    i = 0
    n = len(headers)
    while i < n:
        name, value = headers[i]
        if name[:1] != b":":
            break
        if name == b":method":
            if method is not None:
                raise Malformed("repeated :method")
            method = value
        elif name == b":path":
            if path is not None:
                raise Malformed("repeated :path")
            path = value
        elif name == b":scheme":
            if scheme is not None:
                raise Malformed("repeated :scheme")
            scheme = value
        elif name == b":authority":
            if authority is not None:
                raise Malformed("repeated :authority")
            authority = value
        elif name == b":protocol" and connect_protocol:
            if protocol is not None:
                raise Malformed("repeated :protocol")
            protocol = value
        else:
            raise Malformed(f"pseudo-header field {name!r} not allowed in a request")
        i += 1
    if method is None or _TOKEN(method) is None:
        raise Malformed("missing or invalid :method")
    if authority is not None and (_AUTHORITY(authority) is None or b"@" in authority):
        raise Malformed("invalid :authority")
    if method == b"CONNECT" and protocol is None:  # §8.5
        if authority is None or scheme is not None or path is not None:
            raise Malformed("CONNECT needs :authority and no :scheme or :path")
        target = authority
    else:
        if protocol is not None and (method != b"CONNECT" or authority is None
                                     or _TOKEN(protocol) is None):
            raise Malformed(":protocol needs CONNECT and :authority (RFC 8441)")
        if scheme is None or _SCHEME(scheme) is None:
            raise Malformed("missing or invalid :scheme")
        if path is None or _PATH(path) is None:
            raise Malformed("missing, empty or invalid :path")
        if path[0] != 47 and (scheme == b"https" or scheme == b"http") and not (
                path == b"*" and method == b"OPTIONS"):  # 47: "/"
            raise Malformed(":path is not origin-form")
        target = path
    out: list = [(b"host", authority)] if authority is not None else []
    clen, expect = _fields(headers, i, out, authority if authority is not None else b"",
                           False)
    return method, target, out, protocol, expect, clen


def parse_response(headers: Sequence[tuple[bytes, bytes]]) -> tuple[int, list, int]:
    """(status, headers, content_length or -1)."""
    if not headers or headers[0][0] != b":status":
        raise Malformed("response without :status first")
    value = headers[0][1]
    if _STATUS(value) is None:
        raise Malformed("invalid :status")
    status = int(value)
    if status == 101:
        raise Malformed("101 is not allowed in HTTP/2 (RFC 9113 §8.6)")
    out: list = []
    clen, _ = _fields(headers, 1, out, None, False)
    return status, out, clen


def parse_trailers(headers: Sequence[tuple[bytes, bytes]]) -> list:
    out: list = []
    _fields(headers, 0, out, None, True)
    return out


# -- outbound -----------------------------------------------------------------------------

_STATUS_BYTES = {s: b"%d" % s for s in range(100, 1000)}


def _out_fields(headers: Sequence[tuple[bytes, bytes]], out: list, *, request: bool,
                trailers: bool = False) -> tuple[Optional[bytes], int]:
    """Append our regular fields to `out`; return (host value, content-length or -1)."""
    host = None
    clen = -1
    named: Optional[set] = None
    known = _known_out
    for h in headers:
        name, value = h
        if name not in known:
            low = name.lower()
            if _NAME(low) is None:
                raise UsageError(f"invalid header name {name!r}")
            kind = _SPECIAL.get(low)
            if kind is None:
                if low in _SECURE:
                    h = NeverIndexedHeaderTuple(low, value)
                elif low == name:
                    if len(known) < _MAX_KNOWN:
                        known.add(name)
                else:
                    h = (low, value)
            elif kind == _CONN:
                if low == b"connection":
                    named = named or set()
                    named.update(t.strip(b" \t").lower() for t in value.split(b","))
                continue  # framing and hops are ours
            elif kind == _TE:
                if not request or value.strip().lower() != b"trailers":
                    continue
                h = (b"te", b"trailers")
            elif kind == _HOST and request:
                if host is None:
                    host = value
                continue
            else:
                if kind == _CLEN:
                    if trailers:
                        raise UsageError("content-length in trailers")
                    if clen >= 0 or not value.isdigit():
                        raise UsageError(f"bad or repeated content-length {value!r}")
                    clen = int(value)
                if kind == _COOKIE and len(value) < 20:
                    h = NeverIndexedHeaderTuple(low, value)
                elif low != name:
                    h = (low, value)
        if value and _BAD_VALUE(value) is not None:
            raise UsageError(f"invalid header value for {name!r}")
        out.append(h)
    if named:
        out[:] = [f for f in out if f[0] not in named or f[0][:1] == b":"]
    return host, clen


_last_response: list = [None]  # (key, (block, clen)) of the last response_block


def response_block(status: int, headers: Sequence[tuple[bytes, bytes]]
                   ) -> tuple[list, int]:
    """Our response head as a field block (callers must not change it); also its
    content-length (or -1).  A gateway answers with the same head again and again (until
    `date` changes), so the last one is remembered: the checks are a pure function of
    (status, fields, field classes)."""
    key = (status, tuple(headers), tuple(map(type, headers)))
    last = _last_response[0]
    if last is not None and last[0] == key:
        return last[1]
    code = _STATUS_BYTES.get(status)
    if code is None:
        raise UsageError(f"invalid status {status}")
    out: list = [(b":status", code)]
    _, clen = _out_fields(headers, out, request=False)
    _last_response[0] = (key, (out, clen))
    return out, clen


def trailer_block(trailers: Sequence[tuple[bytes, bytes]]) -> list:
    out: list = []
    _out_fields(trailers, out, request=False, trailers=True)
    return out


def request_block(method: bytes, target: bytes, headers: Sequence[tuple[bytes, bytes]],
                  scheme: bytes, protocol: Optional[bytes]) -> tuple[list, int]:
    """Our request head as a field block (`host` becomes `:authority`); also its
    content-length (or -1).  `target` may be origin-form, `*`, absolute-form (its scheme
    and authority win), or the authority of a plain CONNECT."""
    if _TOKEN(method) is None:
        raise UsageError(f"invalid method {method!r}")
    rest: list = []
    host, clen = _out_fields(headers, rest, request=True)
    if method == b"CONNECT" and protocol is None:
        if _AUTHORITY(target) is None:
            raise UsageError("CONNECT needs an authority target")
        return [(b":method", method), (b":authority", target)] + rest, clen
    if target[:1] != b"/" and target != b"*":
        scheme_, sep, rest_ = target.partition(b"://")
        if not sep or _SCHEME(scheme_) is None:
            raise UsageError(f"invalid request target {target!r}")
        scheme = scheme_.lower()
        slash = rest_.find(b"/")
        host, target = (rest_, b"/") if slash < 0 else (rest_[:slash], rest_[slash:])
    if _PATH(target) is None:
        raise UsageError(f"invalid request target {target!r}")
    if host is not None and (_AUTHORITY(host) is None or b"@" in host):
        raise UsageError(f"invalid host {host!r}")
    out = [(b":method", method), (b":scheme", scheme)]
    if host is not None:
        out.append((b":authority", host))
    out.append((b":path", target))
    if protocol is not None:
        if method != b"CONNECT" or host is None or _TOKEN(protocol) is None:
            raise UsageError(":protocol needs CONNECT and a host (RFC 8441)")
        out.append((b":protocol", protocol))
    out += rest
    return out, clen
