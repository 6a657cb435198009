"""HTTP/1.1 message framing shared by the server and client connections (RFC 9112).

Readers take the connection's receive buffer and a start offset, consume what they can and
return `(new_offset, body_bytes, trailers_or_None)`; `trailers` is not None exactly when the
message is complete.  They never keep a copy of the buffer: the connection owns it.  Each
reader is a small state object; `eof()` says what the peer closing the connection means
for it (the end of a close-delimited body, an error otherwise: RFC 9112 §8).

Strictness is the point (request smuggling lives in the gaps between lenient parsers):
- chunk-size line (§7.1): 1*HEXDIG (at most 16 digits, so no overflow, and at most
  `max_chunk_size`), optional chunk extensions checked against the grammar
  `;token[=token / quoted-string]`, then CRLF.  No whitespace at all: the BWS that §7.1.1
  tolerates around ";" and "=" is refused on purpose; no sender we know of emits it, and
  parsers disagree about it.  Bare LF and bare CR are refused.
- chunk data must be followed by exactly CRLF (§7.1).
- trailer section (§7.1.2): field lines under the same rules as a head (token name, no
  whitespace before ":", no obs-fold, CRLF only, no CTL in values), a size and count cap,
  and no framing/routing fields (Content-Length, Transfer-Encoding, Host).  Trailers are
  handed over separately and never merged into the head.
- a body-size cap raises as soon as a chunk header declares bytes beyond it.

Writers turn `Data` / `EndOfMessage` into framed bytes and enforce what the head promised
(exactly Content-Length bytes; nothing for a body-less response).

Errors are raised as ProtocolError with the status given to the reader: 400 (and 413/431
for limits) on the server side, 502 for a bad backend response on the client side.
"""

from __future__ import annotations

import re
from operator import itemgetter
from typing import Optional, Sequence

from .._errors import ProtocolError, UsageError

_TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
TOKEN_RE = re.compile(rb"[" + _TCHAR + rb"]+")
# field-line = field-name ":" OWS field-value OWS (RFC 9112 §5); value without CTLs but HTAB.
_VCH = rb"\x21-\x7e\x80-\xff"
FIELD_LINE_RE = re.compile(
    rb"([" + _TCHAR + rb"]+):[ \t]*((?:[" + _VCH + rb"](?:[ \t" + _VCH + rb"]*[" + _VCH
    + rb"])?)?)[ \t]*")
FIELD_VALUE_RE = re.compile(rb"(?:[" + _VCH + rb"](?:[ \t" + _VCH + rb"]*[" + _VCH + rb"])?)?")
# chunk = chunk-size [ chunk-ext ] CRLF (RFC 9112 §7.1, §7.1.1), without BWS.
_QSTR = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
CHUNK_LINE_RE = re.compile(
    rb"([0-9A-Fa-f]{1,16})(?:;[" + _TCHAR + rb"]+(?:=(?:[" + _TCHAR + rb"]+|" + _QSTR
    + rb"))?)*")

MAX_CHUNK_LINE = 4096          # size + extensions; a longer line is an attack, not data
FORBIDDEN_TRAILERS = frozenset((b"content-length", b"transfer-encoding", b"host"))


def _field_line_error(line: bytes) -> str:
    """Name the rule a field line breaks (for the error message only)."""
    if line[:1] in (b" ", b"\t"):
        return "obs-fold"
    if b"\r" in line:
        return "bare-cr"
    if b"\n" in line:
        return "bare-lf"
    name, sep, _ = line.partition(b":")
    if not sep:
        return "missing-colon"
    if name[-1:] in (b" ", b"\t"):
        return "ws-before-colon"
    if not TOKEN_RE.fullmatch(name):
        return "bad-field-name"
    return "bad-field-value"


def parse_field_lines(block: bytes, max_fields: int, status: int,
                      what: str = "field") -> list[tuple[bytes, bytes]]:
    """Split `block` (field lines joined by CRLF, no final CRLF) into (lower-name, value)."""
    fields: list[tuple[bytes, bytes]] = []
    match = FIELD_LINE_RE.fullmatch
    for line in block.split(b"\r\n"):
        m = match(line)
        if m is None:
            raise ProtocolError(f"bad {what} line: {_field_line_error(line)}",
                                status_hint=status)
        fields.append((m.group(1).lower(), m.group(2)))
    if len(fields) > max_fields:
        raise ProtocolError(f"too many {what} lines", status_hint=431 if status == 400
                            else status)
    return fields


# -- readers ---------------------------------------------------------------------------

class ContentLengthReader:
    __slots__ = ("remaining",)

    def __init__(self, length: int) -> None:
        self.remaining = length

    def read(self, buf: bytes, pos: int) -> tuple[int, bytes, Optional[Sequence]]:
        avail = len(buf) - pos
        take = self.remaining if self.remaining < avail else avail
        data = buf if (pos == 0 and take == avail) else buf[pos:pos + take]
        self.remaining -= take
        return pos + take, data, (() if self.remaining == 0 else None)

    def eof(self, status: int) -> Sequence:
        raise ProtocolError(f"connection closed with {self.remaining} body bytes missing",
                            status_hint=status)


class CloseDelimitedReader:
    """Response body that ends when the server closes (RFC 9112 §6.3 item 8)."""

    __slots__ = ("total", "max_body", "status")

    def __init__(self, max_body: Optional[int], status: int) -> None:
        self.total = 0
        self.max_body = max_body
        self.status = status

    def read(self, buf: bytes, pos: int) -> tuple[int, bytes, Optional[Sequence]]:
        data = buf[pos:] if pos else buf
        self.total += len(data)
        if self.max_body is not None and self.total > self.max_body:
            raise ProtocolError("body larger than the limit", status_hint=self.status)
        return len(buf), data, None

    def eof(self, status: int) -> Sequence:
        return ()


_SIZE, _DATA, _DATA_CRLF, _TRAILERS = range(4)


class ChunkedReader:
    __slots__ = ("state", "remaining", "total", "max_chunk", "max_body", "max_trailer",
                 "max_fields", "status", "limit_status")

    def __init__(self, *, max_chunk: int, max_body: Optional[int], max_trailer: int,
                 max_fields: int, status: int, limit_status: int) -> None:
        self.state = _SIZE
        self.remaining = 0
        self.total = 0
        self.max_chunk = max_chunk
        self.max_body = max_body
        self.max_trailer = max_trailer
        self.max_fields = max_fields
        self.status = status              # for framing errors: 400 / 502
        self.limit_status = limit_status  # for the body-size cap: 413 / 502

    def _error(self, msg: str, status: int = 0) -> ProtocolError:
        return ProtocolError(msg, status_hint=status or self.status)

    def read(self, buf: bytes, pos: int) -> tuple[int, bytes, Optional[Sequence]]:
        n = len(buf)
        out: list[bytes] = []
        trailers: Optional[Sequence] = None
        while pos < n:
            st = self.state
            if st == _DATA:
                take = self.remaining if self.remaining < n - pos else n - pos
                out.append(buf[pos:pos + take])
                pos += take
                self.remaining -= take
                if self.remaining == 0:
                    self.state = _DATA_CRLF
            elif st == _DATA_CRLF:
                if buf[pos] != 13 or (n - pos >= 2 and buf[pos + 1] != 10):
                    raise self._error("chunk data not followed by CRLF")
                if n - pos < 2:
                    break
                pos += 2
                self.state = _SIZE
            elif st == _SIZE:
                end = buf.find(b"\n", pos, pos + MAX_CHUNK_LINE + 2)
                if end < 0:
                    if n - pos >= MAX_CHUNK_LINE + 2:
                        raise self._error("chunk-size line too long")
                    break
                if end == pos or buf[end - 1] != 13:
                    raise self._error("bare LF in chunk-size line")
                m = CHUNK_LINE_RE.fullmatch(buf, pos, end - 1)
                if m is None:
                    raise self._error("bad chunk-size line")
                size = int(m.group(1), 16)
                if size > self.max_chunk:
                    raise self._error("chunk larger than max_chunk_size", self.limit_status)
                pos = end + 1
                if size == 0:
                    self.state = _TRAILERS
                else:
                    self.total += size
                    if self.max_body is not None and self.total > self.max_body:
                        raise self._error("body larger than the limit", self.limit_status)
                    self.remaining = size
                    self.state = _DATA
            else:  # _TRAILERS: either CRLF at once, or field lines ending in CRLF CRLF
                c = buf[pos]
                if c == 13:
                    if n - pos < 2:
                        break
                    if buf[pos + 1] != 10:
                        raise self._error("bare CR in trailer section")
                    pos += 2
                    trailers = ()
                    break
                # resume the search where the last call stopped (slow senders)
                start = pos + self.remaining - 3 if self.remaining > 3 else pos
                end = buf.find(b"\r\n\r\n", start, pos + self.max_trailer)
                if end < 0:
                    if n - pos >= self.max_trailer:
                        raise self._error("trailer section too large",
                                          431 if self.status == 400 else self.status)
                    self.remaining = n - pos  # bytes of trailer section already searched
                    break
                fields = parse_field_lines(buf[pos:end], self.max_fields, self.status,
                                           "trailer")
                for name, _ in fields:
                    if name in FORBIDDEN_TRAILERS:
                        raise self._error(f"{name.decode()} not allowed in trailers")
                trailers = fields
                pos = end + 4
                break
        data = out[0] if len(out) == 1 else b"".join(out)
        return pos, data, trailers

    def eof(self, status: int) -> Sequence:
        raise ProtocolError("connection closed inside a chunked body", status_hint=status)


# -- writers ---------------------------------------------------------------------------

# Names, then whole lines, each checked by one regex call over the joined block: two C
# scans instead of two regex calls per field (~3x faster for 15 fields).  A value holding
# CRLF would form extra valid-looking lines, so the line count is checked too.
_NAMES_RE = re.compile(rb"[" + _TCHAR + rb"]+(?:\n[" + _TCHAR + rb"]+)*")
_VALUE = rb"(?:[" + _VCH + rb"](?:[ \t" + _VCH + rb"]*[" + _VCH + rb"])?)?"
_LINES_RE = re.compile(rb"[^:\r\n]+: " + _VALUE + rb"(?:\r\n[^:\r\n]+: " + _VALUE + rb")*")
_first = itemgetter(0)
_colon_join = b": ".join


def write_fields(headers: Sequence[tuple[bytes, bytes]], out: list[bytes]) -> None:
    """Append validated `name: value\\r\\n` lines; a CR/LF/CTL smuggled into a header the
    application built must never reach the wire (response splitting)."""
    if not headers:
        return
    block = b"\r\n".join(map(_colon_join, headers))
    if (_NAMES_RE.fullmatch(b"\n".join(map(_first, headers))) is None
            or _LINES_RE.fullmatch(block) is None
            or block.count(b"\n") != len(headers) - 1):
        for name, value in headers:  # say which field is wrong
            if TOKEN_RE.fullmatch(name) is None:
                raise UsageError(f"invalid header name {name!r}")
            if FIELD_VALUE_RE.fullmatch(value) is None:
                raise UsageError(f"invalid header value for {name!r}")
        raise UsageError("invalid header block")
    out.append(block)
    out.append(b"\r\n")


class ContentLengthWriter:
    __slots__ = ("remaining",)

    def __init__(self, length: int) -> None:
        self.remaining = length

    def data(self, data: bytes) -> bytes:
        if len(data) > self.remaining:
            raise UsageError("more body bytes than the declared Content-Length")
        self.remaining -= len(data)
        return data

    def eom(self, trailers: Sequence) -> bytes:
        if self.remaining:
            raise UsageError(f"body ended {self.remaining} bytes short of Content-Length")
        if trailers:
            raise UsageError("trailers need chunked framing, not Content-Length")
        return b""


class ChunkedWriter:
    __slots__ = ()

    def data(self, data: bytes) -> bytes:
        if not data:
            return b""  # an empty chunk would be the last-chunk marker
        return b"%x\r\n%b\r\n" % (len(data), data)

    def eom(self, trailers: Sequence) -> bytes:
        if not trailers:
            return b"0\r\n\r\n"
        for name, _ in trailers:
            if name.lower() in FORBIDDEN_TRAILERS:
                raise UsageError(f"{name!r} not allowed in trailers")
        out = [b"0\r\n"]
        write_fields(trailers, out)
        out.append(b"\r\n")
        return b"".join(out)


class CloseDelimitedWriter:
    """HTTP/1.0 peer without a Content-Length: the body ends when we close.  Trailers cannot
    be carried and are dropped (RFC 9110 §6.5 allows a recipient to discard them)."""

    __slots__ = ()

    def data(self, data: bytes) -> bytes:
        return data

    def eom(self, trailers: Sequence) -> bytes:
        return b""


class NoBodyWriter:
    """HEAD responses (body silently dropped: the app may reuse its GET path), 1xx, 204,
    304 and requests without framing (any body byte is a UsageError)."""

    __slots__ = ("drop",)

    def __init__(self, drop: bool) -> None:
        self.drop = drop

    def data(self, data: bytes) -> bytes:
        if data and not self.drop:
            raise UsageError("this message cannot carry a body")
        return b""

    def eom(self, trailers: Sequence) -> bytes:
        return b""
