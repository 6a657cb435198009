"""Pure-Python twin of native/src/http1.c: the strict HTTP/1.1 request-head parser.

It gives the same answer as the C parser for every input (tests compare the two on
random and mutated heads), so it follows the C code's scan order exactly: the first
broken rule wins.  Instead of a loop per byte it finds each delimiter with
``bytes.find`` inside the same windows the C code scans, and finds the first byte that
is not allowed with ``bytes.translate`` (which keeps the order of the bytes it leaves),
so the error reported is the one the C loop would stop at.  See native/include/apigw/
http1.h for the contract and the order of the rules.
"""

from __future__ import annotations

INCOMPLETE = -1
E_BARE_CR = -2
E_BARE_LF = -3
E_BAD_METHOD = -4
E_BAD_TARGET = -5
E_BAD_REQUEST_LINE = -6
E_BAD_VERSION = -7
E_VERSION_NOT_SUPPORTED = -8
E_REQUEST_LINE_TOO_LONG = -9
E_HEAD_TOO_LARGE = -10
E_TOO_MANY_FIELDS = -11
E_OBS_FOLD = -12
E_BAD_FIELD_NAME = -13
E_WS_BEFORE_COLON = -14
E_BAD_FIELD_VALUE = -15
E_BAD_CONTENT_LENGTH = -16
E_DUPLICATE_CONTENT_LENGTH = -17
E_BAD_TRANSFER_ENCODING = -18
E_UNSUPPORTED_TRANSFER_CODING = -19
E_TE_WITH_CONTENT_LENGTH = -20
E_TE_ON_HTTP10 = -21
E_MISSING_HOST = -22
E_DUPLICATE_HOST = -23
E_BAD_HOST = -24
E_BAD_CONNECTION = -25
E_CONNECTION_NAMES_FRAMING = -26
E_LAST = -26

F_CHUNKED = 1
F_CONN_CLOSE = 2
F_CONN_KEEP_ALIVE = 4
F_CONN_UPGRADE = 8
F_UPGRADE = 16
F_EXPECT_CONTINUE = 32

ERROR_NAMES = (
    "incomplete", "bare-cr", "bare-lf", "bad-method", "bad-target",
    "bad-request-line", "bad-version", "version-not-supported",
    "request-line-too-long", "head-too-large", "too-many-fields", "obs-fold",
    "bad-field-name", "ws-before-colon", "bad-field-value", "bad-content-length",
    "duplicate-content-length", "bad-transfer-encoding",
    "unsupported-transfer-coding", "te-with-content-length", "te-on-http10",
    "missing-host", "duplicate-host", "bad-host", "bad-connection",
    "connection-names-framing",
)
_STATUS = {
    INCOMPLETE: 0,
    E_VERSION_NOT_SUPPORTED: 505,
    E_REQUEST_LINE_TOO_LONG: 414,
    E_HEAD_TOO_LARGE: 431,
    E_TOO_MANY_FIELDS: 431,
    E_UNSUPPORTED_TRANSFER_CODING: 501,
}


def error_status(code: int) -> int:
    """The HTTP status to answer a negative code with (0 for INCOMPLETE or unknown)."""
    if code in _STATUS:
        return _STATUS[code]
    return 400 if E_LAST <= code < 0 else 0


def error_name(code: int) -> str:
    """A short, stable name for a code, as apigw_h1_error_name gives it."""
    return ERROR_NAMES[-code - 1] if E_LAST <= code < 0 else "?"


# Character sets, as in the C class table (RFC 9110 §5.6.2, RFC 3986 §3.2.2).
_ALPHA_DIGIT = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
TOKEN = _ALPHA_DIGIT + b"!#$%&'*+-.^_`|~"
VCHAR = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100))
VALUE = VCHAR + b" \t"
_HOST = _ALPHA_DIGIT + b"-._~" + b"!$&'()*+,;="
_IPLIT = _HOST + b":"
_HEX = b"0123456789abcdefABCDEF"
_DIGITS = b"0123456789"
_OWS = b" \t"
_INT64_MAX = 2**63 - 1


def _valid_host(v: bytes) -> bool:
    n = len(v)
    i = 0
    if n and v[0] == 0x5B:  # "[" IP-literal "]"
        close = v.find(b"]")
        inner = v[1:close] if close >= 0 else v[1:]
        if inner.translate(None, _IPLIT) or close < 0 or close == 1:
            return False
        i = close + 1
    else:
        while i < n and v[i] != 0x3A:
            c = v[i]
            if c == 0x25:  # pct-encoded
                if i + 2 >= n or v[i + 1] not in _HEX or v[i + 2] not in _HEX:
                    return False
                i += 3
            elif c in _HOST:
                i += 1
            else:
                return False
    if i == n:
        return True
    if v[i] != 0x3A or n - i - 1 > 5:
        return False
    return not v[i + 1:].translate(None, _DIGITS)


def _elements(v: bytes) -> list[bytes]:
    """Comma-separated list elements with OWS trimmed (RFC 9110 §5.6.1)."""
    return [e.strip(_OWS) for e in v.split(b",")]


class _State:
    __slots__ = ("content_length", "flags", "te_seen", "te_chunked", "te_other",
                 "te_last_chunked", "hosts")

    def __init__(self) -> None:
        self.content_length = -1
        self.flags = 0
        self.te_seen = self.te_chunked = self.te_other = self.te_last_chunked = 0
        self.hosts = 0


def _field_rule(st: _State, name: bytes, v: bytes) -> int:
    if name == b"host":
        st.hosts += 1
        if st.hosts > 1:
            return E_DUPLICATE_HOST
        return 0 if _valid_host(v) else E_BAD_HOST
    if name == b"expect":
        if v.lower() == b"100-continue":
            st.flags |= F_EXPECT_CONTINUE
    elif name == b"upgrade":
        st.flags |= F_UPGRADE
    elif name == b"connection":
        for e in _elements(v):
            if not e:
                continue
            if e.translate(None, TOKEN):
                return E_BAD_CONNECTION
            e = e.lower()
            if e == b"close":
                st.flags |= F_CONN_CLOSE
            elif e == b"keep-alive":
                st.flags |= F_CONN_KEEP_ALIVE
            elif e == b"upgrade":
                st.flags |= F_CONN_UPGRADE
            elif e in (b"content-length", b"transfer-encoding", b"host"):
                return E_CONNECTION_NAMES_FRAMING
    elif name == b"content-length":
        if st.content_length >= 0:
            return E_DUPLICATE_CONTENT_LENGTH
        if not v or v.translate(None, _DIGITS):
            return E_BAD_CONTENT_LENGTH
        cl = int(v)
        if cl > _INT64_MAX:
            return E_BAD_CONTENT_LENGTH
        st.content_length = cl
    elif name == b"transfer-encoding":
        st.te_seen = 1
        for e in _elements(v):
            if not e or e.translate(None, TOKEN):
                return E_BAD_TRANSFER_ENCODING
            if e.lower() == b"chunked":
                st.te_chunked += 1
                st.te_last_chunked = 1
            else:
                st.te_other += 1
                st.te_last_chunked = 0
    return 0


_Head = tuple  # (consumed, method, target, version_minor, headers, content_length, flags)


def check_limits(max_request_line: int, max_head: int, max_fields: int) -> None:
    """Refuse limits the C structs cannot hold, with the name of the bad one."""
    for name, v, lo in (("max_request_line", max_request_line, 1), ("max_head", max_head, 1),
                        ("max_fields", max_fields, 0)):
        if type(v) is not int or not lo <= v < 2**31:
            raise ValueError(f"{name} must be an int in {lo}..2**31-1, got {v!r}")


class HeadParser:
    """Parses one request head; same interface as the C-backed parser in native.py."""

    __slots__ = ("max_request_line", "max_head", "max_fields")

    def __init__(self, max_request_line: int = 8192, max_head: int = 65536,
                 max_fields: int = 100) -> None:
        check_limits(max_request_line, max_head, max_fields)
        self.max_request_line = max_request_line
        self.max_head = max_head
        self.max_fields = max_fields

    def parse(self, buf: bytes | bytearray | memoryview, pos: int = 0) -> int | _Head:
        """Parse the head that starts at buf[pos]: a negative code (INCOMPLETE or an
        error), or the head as a tuple (consumed, method, target, version_minor, headers,
        content_length, flags), `consumed` counted from `pos`."""
        if pos or type(buf) is not bytes:
            buf = bytes(buf[pos:pos + self.max_head + 1])
        n = len(buf)
        end = min(n, self.max_head)
        cut = E_HEAD_TOO_LARGE if n >= self.max_head else INCOMPLETE
        p = 0
        while True:  # empty lines before the request line
            if p >= end:
                return cut
            c = buf[p]
            if c == 10:
                return E_BARE_LF
            if c != 13:
                break
            if p + 1 >= end:
                return cut
            if buf[p + 1] != 10:
                return E_BARE_CR
            p += 2

        rl_limit = p + self.max_request_line + 2
        rend = min(rl_limit, end)
        rl_cut = E_REQUEST_LINE_TOO_LONG if rl_limit <= end else cut
        # method
        sp = buf.find(b" ", p, rend)
        seg = buf[p:sp] if sp >= 0 else buf[p:rend]
        if seg.translate(None, TOKEN):
            return E_BAD_METHOD
        if sp < 0:
            return rl_cut
        if not seg:
            return E_BAD_METHOD
        method = seg
        # target
        t0 = sp + 1
        sp = buf.find(b" ", t0, rend)
        seg = buf[t0:sp] if sp >= 0 else buf[t0:rend]
        bad = seg.translate(None, VCHAR)
        if bad:
            return E_BAD_REQUEST_LINE if bad[0] in (10, 13) else E_BAD_TARGET
        if sp < 0:
            return rl_cut
        if not seg:
            return E_BAD_TARGET
        target = seg
        # "HTTP/" DIGIT "." DIGIT CRLF
        p = sp + 1
        major = minor = 0
        for i, want in enumerate(b"HTTP/D.DRN"):
            if p >= rend:
                return rl_cut
            c = buf[p]
            if want == 0x44:  # "D"
                if c not in _DIGITS:
                    return E_BAD_VERSION
                if i == 5:
                    major = c - 48
                else:
                    minor = c - 48
            elif want == 0x52:  # "R"
                if c != 13:
                    return E_BARE_LF if c == 10 else E_BAD_VERSION
            elif want == 0x4E:  # "N"
                if c != 10:
                    return E_BARE_CR
            elif c != want:
                return E_BAD_VERSION
            p += 1
        if major != 1:
            return E_VERSION_NOT_SUPPORTED
        version_minor = 0 if minor == 0 else 1

        st = _State()
        headers: list[tuple[bytes, bytes]] = []
        max_fields = self.max_fields
        while True:
            if p >= end:
                return cut
            c = buf[p]
            if c == 13:
                if p + 1 >= end:
                    return cut
                if buf[p + 1] != 10:
                    return E_BARE_CR
                p += 2
                break
            if c == 10:
                return E_BARE_LF
            if c == 32 or c == 9:
                return E_OBS_FOLD
            if len(headers) == max_fields:
                return E_TOO_MANY_FIELDS
            colon = buf.find(b":", p, end)
            seg = buf[p:colon] if colon >= 0 else buf[p:end]
            bad = seg.translate(None, TOKEN)
            if bad:
                return E_WS_BEFORE_COLON if bad[0] in (32, 9) else E_BAD_FIELD_NAME
            if colon < 0:
                return cut
            if not seg:
                return E_BAD_FIELD_NAME
            name = seg.lower()
            p = colon + 1
            while p < end and buf[p] in (32, 9):
                p += 1
            cr = buf.find(b"\r", p, end)
            seg = buf[p:cr] if cr >= 0 else buf[p:end]
            bad = seg.translate(None, VALUE)
            if bad:
                return E_BARE_LF if bad[0] == 10 else E_BAD_FIELD_VALUE
            if cr < 0 or cr + 1 >= end:
                return cut
            if buf[cr + 1] != 10:
                return E_BARE_CR
            value = seg.rstrip(_OWS)
            p = cr + 2
            rc = _field_rule(st, name, value)
            if rc:
                return rc
            headers.append((name, value))

        if st.te_seen:
            if version_minor == 0:
                return E_TE_ON_HTTP10
            if st.content_length >= 0:
                return E_TE_WITH_CONTENT_LENGTH
            if st.te_chunked != 1 or not st.te_last_chunked:
                return E_BAD_TRANSFER_ENCODING
            if st.te_other:
                return E_UNSUPPORTED_TRANSFER_CODING
            st.flags |= F_CHUNKED
        if version_minor == 1 and st.hosts == 0:
            return E_MISSING_HOST
        return (p, method, target, version_minor, headers, st.content_length, st.flags)
