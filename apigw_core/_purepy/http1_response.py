"""Pure-Python twin of native/src/http1_response.c: the backend response-head parser.

This is the logic `protocol/http1/_client.py` had inline, factored out so that it returns
the C parser's codes instead of raising: tests compare both on random heads, and the
client turns a code into the same ProtocolError either way.  The order of the rules is
the contract in native/include/apigw/http1_response.h.
"""

from __future__ import annotations

import re

from .http1_head import F_CHUNKED, F_CONN_CLOSE, F_CONN_KEEP_ALIVE

INCOMPLETE = -1
E_NOT_HTTP = -2
E_BARE_LF = -3
E_HEAD_TOO_LARGE = -4
E_STATUS_LINE = -5
E_MAJOR_VERSION = -6
E_STATUS_BELOW_100 = -7
E_OBS_FOLD = -8
E_FIELD_BARE_CR = -9
E_FIELD_BARE_LF = -10
E_MISSING_COLON = -11
E_WS_BEFORE_COLON = -12
E_BAD_FIELD_NAME = -13
E_BAD_FIELD_VALUE = -14
E_TOO_MANY_FIELDS = -15
E_REPEATED_CONTENT_LENGTH = -16
E_BAD_CONTENT_LENGTH = -17
E_BAD_TRANSFER_ENCODING = -18
E_TE_WITH_CONTENT_LENGTH = -19
E_TE_ON_HTTP10 = -20
E_LAST = -20

# What the client says for each code (the messages it raised before the split).
MESSAGES = {
    E_NOT_HTTP: "does not start with HTTP/",
    E_BARE_LF: "bare LF",
    E_HEAD_TOO_LARGE: "head too large",
    E_STATUS_LINE: "status line",
    E_MAJOR_VERSION: "HTTP major version is not 1",
    E_STATUS_BELOW_100: "status code below 100",
    E_OBS_FOLD: "obs-fold",
    E_FIELD_BARE_CR: "bare-cr",
    E_FIELD_BARE_LF: "bare-lf",
    E_MISSING_COLON: "missing-colon",
    E_WS_BEFORE_COLON: "ws-before-colon",
    E_BAD_FIELD_NAME: "bad-field-name",
    E_BAD_FIELD_VALUE: "bad-field-value",
    E_TOO_MANY_FIELDS: "too many header lines",
    E_REPEATED_CONTENT_LENGTH: "repeated content-length",
    E_BAD_CONTENT_LENGTH: "content-length is not 1*DIGIT",
    E_BAD_TRANSFER_ENCODING: "transfer-encoding other than one 'chunked'",
    E_TE_WITH_CONTENT_LENGTH: "transfer-encoding with content-length",
    E_TE_ON_HTTP10: "transfer-encoding on HTTP/1.0",
}

_TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
_TOKEN_RE = re.compile(rb"[" + _TCHAR + rb"]+")
_VCH = rb"\x21-\x7e\x80-\xff"
_FIELD_LINE_RE = re.compile(
    rb"([" + _TCHAR + rb"]+):[ \t]*((?:[" + _VCH + rb"](?:[ \t" + _VCH + rb"]*[" + _VCH
    + rb"])?)?)[ \t]*")
_STATUS_LINE_RE = re.compile(
    rb"HTTP/([0-9])\.([0-9]) ([0-9]{3})(?: ([\t \x21-\x7e\x80-\xff]*))?")
_HTTP_PREFIX = b"HTTP/"


def _field_fault(line: bytes) -> int:
    if line[:1] in (b" ", b"\t"):
        return E_OBS_FOLD
    if b"\r" in line:
        return E_FIELD_BARE_CR
    if b"\n" in line:
        return E_FIELD_BARE_LF
    name, sep, _ = line.partition(b":")
    if not sep:
        return E_MISSING_COLON
    if name[-1:] in (b" ", b"\t"):
        return E_WS_BEFORE_COLON
    if not _TOKEN_RE.fullmatch(name):
        return E_BAD_FIELD_NAME
    return E_BAD_FIELD_VALUE


def parse_response_head(buf: bytes, pos: int, max_head: int, max_fields: int
                        ) -> int | tuple:
    """One response head at buf[pos:]: a negative code, or (end, status, minor, reason,
    headers, content_length, flags) with `end` the offset after the head, `minor` 0/1,
    headers [(lower-name, value)], content_length -1 when absent."""
    end = buf.find(b"\r\n\r\n", pos, pos + max_head)
    if end < 0:
        if not _HTTP_PREFIX.startswith(buf[pos:pos + 5]):
            return E_NOT_HTTP
        if b"\n" in buf[pos:].replace(b"\r\n", b""):
            return E_BARE_LF
        if len(buf) - pos >= max_head:
            return E_HEAD_TOO_LARGE
        return INCOMPLETE
    line, _, rest = buf[pos:end].partition(b"\r\n")
    m = _STATUS_LINE_RE.fullmatch(line)
    if m is None:
        return E_STATUS_LINE
    if m.group(1) != b"1":
        return E_MAJOR_VERSION
    minor = int(m.group(2) != b"0")
    status = int(m.group(3))
    if status < 100:
        return E_STATUS_BELOW_100
    reason = m.group(4) or b""
    headers: list[tuple[bytes, bytes]] = []
    if rest:
        match = _FIELD_LINE_RE.fullmatch
        for fl in rest.split(b"\r\n"):
            fm = match(fl)
            if fm is None:
                return _field_fault(fl)
            headers.append((fm.group(1).lower(), fm.group(2)))
        if len(headers) > max_fields:
            return E_TOO_MANY_FIELDS
    end += 4
    if status < 200:
        return (end, status, minor, reason, headers, -1, 0)
    clen = -1
    flags = 0
    chunked = False
    for name, value in headers:
        if name == b"content-length":
            if clen >= 0:
                return E_REPEATED_CONTENT_LENGTH
            if not value.isdigit() or len(value) > 18:
                return E_BAD_CONTENT_LENGTH
            clen = int(value)
        elif name == b"transfer-encoding":
            for coding in value.split(b","):
                if coding.strip(b" \t").lower() != b"chunked" or chunked:
                    return E_BAD_TRANSFER_ENCODING
                chunked = True
        elif name == b"connection":
            for t in value.split(b","):
                t = t.strip(b" \t").lower()
                if t == b"close":
                    flags |= F_CONN_CLOSE
                elif t == b"keep-alive":
                    flags |= F_CONN_KEEP_ALIVE
    if chunked:
        if clen >= 0:
            return E_TE_WITH_CONTENT_LENGTH
        if not minor:
            return E_TE_ON_HTTP10
        flags |= F_CHUNKED
    return (end, status, minor, reason, headers, clen, flags)
