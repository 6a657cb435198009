"""Table-driven rules of the HTTP/1.1 request-head parser, run on the C parser and on its
pure-Python twin (RFC 9112 §2-§6, RFC 9110 §5)."""

from __future__ import annotations

import pytest

from apigw_core import native
from apigw_core._purepy import http1_head as H

PARSERS = [pytest.param(native.PyHeadParser, id="twin")]
if native.CHeadParser is not None:
    PARSERS.append(pytest.param(native.CHeadParser, id="c"))


@pytest.fixture(params=PARSERS)
def parser_cls(request):
    return request.param


def head(*lines: str, end: str = "\r\n\r\n") -> bytes:
    return ("\r\n".join(lines) + end).encode("latin-1")


OK = [
    ("get", head("GET / HTTP/1.1", "Host: a"), (b"GET", b"/", 1, [(b"host", b"a")], -1, 0)),
    ("http10-no-host", head("GET / HTTP/1.0"), (b"GET", b"/", 0, [], -1, 0)),
    ("minor-9-is-1.1", head("GET / HTTP/1.9", "Host: a"), (b"GET", b"/", 1, [(b"host", b"a")], -1, 0)),
    ("leading-crlf", b"\r\n\r\n" + head("GET / HTTP/1.1", "Host: a"),
     (b"GET", b"/", 1, [(b"host", b"a")], -1, 0)),
    ("names-lowered-values-trimmed", head("GET / HTTP/1.1", "HoSt: a", "X-Foo: \t bar  baz \t"),
     (b"GET", b"/", 1, [(b"host", b"a"), (b"x-foo", b"bar  baz")], -1, 0)),
    ("empty-value", head("GET / HTTP/1.1", "Host: a", "X-Empty:", "X-Sp:   "),
     (b"GET", b"/", 1, [(b"host", b"a"), (b"x-empty", b""), (b"x-sp", b"")], -1, 0)),
    ("obs-text-value", b"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n",
     (b"GET", b"/", 1, [(b"host", b"a"), (b"x", b"caf\xc3\xa9")], -1, 0)),
    ("obs-text-target", b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
     (b"GET", b"/caf\xc3\xa9", 1, [(b"host", b"a")], -1, 0)),
    ("extension-method", head("M-SEARCH * HTTP/1.1", "Host: a"),
     (b"M-SEARCH", b"*", 1, [(b"host", b"a")], -1, 0)),
    ("content-length", head("POST /u HTTP/1.1", "Host: a", "Content-Length: 0042"),
     (b"POST", b"/u", 1, [(b"host", b"a"), (b"content-length", b"0042")], 42, 0)),
    ("cl-max", head("POST / HTTP/1.1", "Host: a", f"Content-Length: {2**63 - 1}"),
     (b"POST", b"/", 1, [(b"host", b"a"), (b"content-length", str(2**63 - 1).encode())], 2**63 - 1, 0)),
    ("chunked", head("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: CHUNKED"),
     (b"POST", b"/", 1, [(b"host", b"a"), (b"transfer-encoding", b"CHUNKED")], -1, H.F_CHUNKED)),
    ("connection-flags", head("GET / HTTP/1.1", "Host: a", "Connection: Keep-Alive, , Upgrade,close",
                              "Upgrade: websocket"),
     (b"GET", b"/", 1, [(b"host", b"a"), (b"connection", b"Keep-Alive, , Upgrade,close"),
                        (b"upgrade", b"websocket")],
      -1, H.F_CONN_KEEP_ALIVE | H.F_CONN_UPGRADE | H.F_CONN_CLOSE | H.F_UPGRADE)),
    ("expect", head("PUT / HTTP/1.1", "Host: a", "Expect: 100-Continue", "Content-Length: 1"),
     (b"PUT", b"/", 1, [(b"host", b"a"), (b"expect", b"100-Continue"), (b"content-length", b"1")],
      1, H.F_EXPECT_CONTINUE)),
    ("host-forms", head("GET / HTTP/1.1", "Host: [::1]:8080"), (b"GET", b"/", 1, [(b"host", b"[::1]:8080")], -1, 0)),
    ("host-empty", head("GET / HTTP/1.1", "Host:"), (b"GET", b"/", 1, [(b"host", b"")], -1, 0)),
    ("host-pct", head("GET / HTTP/1.1", "Host: a%2Db.example:1"),
     (b"GET", b"/", 1, [(b"host", b"a%2Db.example:1")], -1, 0)),
]


@pytest.mark.parametrize("name,data,want", OK, ids=[c[0] for c in OK])
def test_accepts(parser_cls, name, data, want):
    got = parser_cls().parse(data + b"trailing body bytes")
    assert got == (len(data),) + want


def test_realistic_browser_get(parser_cls):
    data = head(
        "GET /wp-content/uploads/2024/01/photo.jpg?size=large&v=3 HTTP/1.1",
        "Host: www.example.com",
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0",
        "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "Accept-Language: en-US,en;q=0.9",
        "Accept-Encoding: gzip, deflate, br",
        "Referer: https://www.example.com/blog/",
        "Cookie: session=abc123def456; theme=dark",
        "Connection: keep-alive",
        "Upgrade-Insecure-Requests: 1",
        "Sec-Fetch-Dest: document",
        "Sec-Fetch-Mode: navigate",
        "Sec-Fetch-Site: same-origin",
    )
    n, method, target, minor, headers, cl, flags = parser_cls().parse(data)
    assert n == len(data) and method == b"GET" and minor == 1 and cl == -1
    assert len(headers) == 12 and headers[5] == (b"referer", b"https://www.example.com/blog/")
    assert flags == H.F_CONN_KEEP_ALIVE


E = H
BAD = [
    ("bare-lf-leading", b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", E.E_BARE_LF),
    ("bare-cr-leading", b"\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", E.E_BARE_CR),
    ("bare-lf-request-line", b"GET / HTTP/1.1\nHost: a\r\n\r\n", E.E_BARE_LF),
    ("bare-cr-request-line", b"GET / HTTP/1.1\rHost: a\r\n\r\n", E.E_BARE_CR),
    ("bare-lf-field", b"GET / HTTP/1.1\r\nHost: a\n\r\n", E.E_BARE_LF),
    ("bare-cr-field", b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", E.E_BARE_CR),
    ("bare-lf-end", b"GET / HTTP/1.1\r\nHost: a\r\n\n", E.E_BARE_LF),
    ("bare-cr-end", b"GET / HTTP/1.1\r\nHost: a\r\n\rX", E.E_BARE_CR),
    ("method-empty", head(" / HTTP/1.1", "Host: a"), E.E_BAD_METHOD),
    ("method-non-token", head("GE(T / HTTP/1.1", "Host: a"), E.E_BAD_METHOD),
    ("method-tab", head("GET\t/ HTTP/1.1", "Host: a"), E.E_BAD_METHOD),
    ("two-spaces", head("GET  / HTTP/1.1", "Host: a"), E.E_BAD_TARGET),
    ("target-ctl", head("GET /\x01 HTTP/1.1", "Host: a"), E.E_BAD_TARGET),
    ("target-del", head("GET /\x7f HTTP/1.1", "Host: a"), E.E_BAD_TARGET),
    ("target-tab", head("GET /\tx HTTP/1.1", "Host: a"), E.E_BAD_TARGET),
    ("http09", head("GET /", "Host: a"), E.E_BAD_REQUEST_LINE),
    ("space-in-target", head("GET /a b HTTP/1.1", "Host: a"), E.E_BAD_VERSION),
    ("version-lower", head("GET / http/1.1", "Host: a"), E.E_BAD_VERSION),
    ("version-two-digits", head("GET / HTTP/1.10", "Host: a"), E.E_BAD_VERSION),
    ("version-trailing-space", head("GET / HTTP/1.1 ", "Host: a"), E.E_BAD_VERSION),
    ("version-no-minor", head("GET / HTTP/1", "Host: a"), E.E_BAD_VERSION),
    ("http2", head("GET / HTTP/2.0", "Host: a"), E.E_VERSION_NOT_SUPPORTED),
    ("http0", head("GET / HTTP/0.9", "Host: a"), E.E_VERSION_NOT_SUPPORTED),
    ("obs-fold", head("GET / HTTP/1.1", "Host: a", "X: b", " c"), E.E_OBS_FOLD),
    ("obs-fold-tab", head("GET / HTTP/1.1", "Host: a", "\tX: b"), E.E_OBS_FOLD),
    ("name-empty", head("GET / HTTP/1.1", "Host: a", ": b"), E.E_BAD_FIELD_NAME),
    ("name-no-colon", head("GET / HTTP/1.1", "Host: a", "Xb"), E.E_BAD_FIELD_NAME),
    ("name-non-token", head("GET / HTTP/1.1", "Host: a", "X(y): b"), E.E_BAD_FIELD_NAME),
    ("ws-before-colon", head("GET / HTTP/1.1", "Host : a"), E.E_WS_BEFORE_COLON),
    ("tab-before-colon", head("GET / HTTP/1.1", "Host\t: a"), E.E_WS_BEFORE_COLON),
    ("value-nul", head("GET / HTTP/1.1", "Host: a", "X: a\x00b"), E.E_BAD_FIELD_VALUE),
    ("value-ctl", head("GET / HTTP/1.1", "Host: a", "X: a\x1bb"), E.E_BAD_FIELD_VALUE),
    ("value-del", head("GET / HTTP/1.1", "Host: a", "X: a\x7f"), E.E_BAD_FIELD_VALUE),
    ("cl-empty", head("POST / HTTP/1.1", "Host: a", "Content-Length:"), E.E_BAD_CONTENT_LENGTH),
    ("cl-sign", head("POST / HTTP/1.1", "Host: a", "Content-Length: +5"), E.E_BAD_CONTENT_LENGTH),
    ("cl-negative", head("POST / HTTP/1.1", "Host: a", "Content-Length: -1"), E.E_BAD_CONTENT_LENGTH),
    ("cl-inner-space", head("POST / HTTP/1.1", "Host: a", "Content-Length: 1 2"), E.E_BAD_CONTENT_LENGTH),
    ("cl-hex", head("POST / HTTP/1.1", "Host: a", "Content-Length: 0x10"), E.E_BAD_CONTENT_LENGTH),
    ("cl-list", head("POST / HTTP/1.1", "Host: a", "Content-Length: 5, 5"), E.E_BAD_CONTENT_LENGTH),
    ("cl-overflow", head("POST / HTTP/1.1", "Host: a", f"Content-Length: {2**63}"), E.E_BAD_CONTENT_LENGTH),
    ("cl-huge", head("POST / HTTP/1.1", "Host: a", "Content-Length: " + "9" * 40), E.E_BAD_CONTENT_LENGTH),
    ("cl-twice-same", head("POST / HTTP/1.1", "Host: a", "Content-Length: 5", "content-length: 5"),
     E.E_DUPLICATE_CONTENT_LENGTH),
    ("te-empty", head("POST / HTTP/1.1", "Host: a", "Transfer-Encoding:"), E.E_BAD_TRANSFER_ENCODING),
    ("te-empty-element", head("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked,"),
     E.E_BAD_TRANSFER_ENCODING),
    ("te-non-token", head("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked;q=1"),
     E.E_BAD_TRANSFER_ENCODING),
    ("te-not-chunked", head("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: gzip"),
     E.E_BAD_TRANSFER_ENCODING),
    ("te-chunked-not-last", head("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked, gzip"),
     E.E_BAD_TRANSFER_ENCODING),
    ("te-chunked-twice", head("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked",
                              "Transfer-Encoding: chunked"), E.E_BAD_TRANSFER_ENCODING),
    ("te-chunked-vs-identity-lines", head("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked",
                                          "Transfer-Encoding: identity"), E.E_BAD_TRANSFER_ENCODING),
    ("te-xchunked", head("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: xchunked"),
     E.E_BAD_TRANSFER_ENCODING),
    ("te-gzip-chunked", head("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: gzip, chunked"),
     E.E_UNSUPPORTED_TRANSFER_CODING),
    ("te-split-lines", head("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: gzip",
                            "Transfer-Encoding: chunked"), E.E_UNSUPPORTED_TRANSFER_CODING),
    ("te-with-cl", head("POST / HTTP/1.1", "Host: a", "Content-Length: 3", "Transfer-Encoding: chunked"),
     E.E_TE_WITH_CONTENT_LENGTH),
    ("te-on-1.0", head("POST / HTTP/1.0", "Transfer-Encoding: chunked"), E.E_TE_ON_HTTP10),
    ("missing-host", head("GET / HTTP/1.1", "X: a"), E.E_MISSING_HOST),
    ("duplicate-host", head("GET / HTTP/1.1", "Host: a", "Host: a"), E.E_DUPLICATE_HOST),
    ("host-space", head("GET / HTTP/1.1", "Host: a b"), E.E_BAD_HOST),
    ("host-at", head("GET / HTTP/1.1", "Host: user@a"), E.E_BAD_HOST),
    ("host-slash", head("GET / HTTP/1.1", "Host: a/b"), E.E_BAD_HOST),
    ("host-bad-port", head("GET / HTTP/1.1", "Host: a:8o"), E.E_BAD_HOST),
    ("host-long-port", head("GET / HTTP/1.1", "Host: a:123456"), E.E_BAD_HOST),
    ("host-bad-pct", head("GET / HTTP/1.1", "Host: a%2"), E.E_BAD_HOST),
    ("host-unclosed-literal", head("GET / HTTP/1.1", "Host: [::1"), E.E_BAD_HOST),
    ("host-empty-literal", head("GET / HTTP/1.1", "Host: []"), E.E_BAD_HOST),
    ("host-list", head("GET / HTTP/1.1", "Host: a, b"), E.E_BAD_HOST),
    ("connection-non-token", head("GET / HTTP/1.1", "Host: a", "Connection: clo/se"), E.E_BAD_CONNECTION),
    ("connection-names-cl", head("GET / HTTP/1.1", "Host: a", "Connection: close, Content-Length"),
     E.E_CONNECTION_NAMES_FRAMING),
    ("connection-names-te", head("GET / HTTP/1.1", "Host: a", "Connection: transfer-encoding"),
     E.E_CONNECTION_NAMES_FRAMING),
    ("connection-names-host", head("GET / HTTP/1.1", "Host: a", "Connection: HOST"),
     E.E_CONNECTION_NAMES_FRAMING),
]


@pytest.mark.parametrize("name,data,code", BAD, ids=[c[0] for c in BAD])
def test_rejects(parser_cls, name, data, code):
    assert parser_cls().parse(data) == code
    assert H.error_status(code) in (400, 501, 505)


def test_every_error_code_is_covered():
    covered = {c[2] for c in BAD} | {H.E_REQUEST_LINE_TOO_LONG, H.E_HEAD_TOO_LARGE,
                                     H.E_TOO_MANY_FIELDS}
    assert covered == set(range(H.E_LAST, H.INCOMPLETE))


def test_error_status_and_names():
    assert H.error_status(H.E_UNSUPPORTED_TRANSFER_CODING) == 501
    assert H.error_status(H.E_VERSION_NOT_SUPPORTED) == 505
    assert H.error_status(H.E_REQUEST_LINE_TOO_LONG) == 414
    assert H.error_status(H.E_TOO_MANY_FIELDS) == H.error_status(H.E_HEAD_TOO_LARGE) == 431
    assert H.error_status(H.INCOMPLETE) == 0 and H.error_status(5) == 0
    assert H.error_name(H.E_BARE_LF) == "bare-lf" and H.error_name(-99) == "?"
    assert len(set(H.ERROR_NAMES)) == len(H.ERROR_NAMES) == -H.E_LAST


def test_every_prefix_is_incomplete(parser_cls):
    data = head("POST /upload?x=1 HTTP/1.1", "Host: example.com:80", "Content-Length: 10",
                "Transfer-Encoding-Not: x", "Connection: keep-alive")
    p = parser_cls()
    for k in range(len(data)):
        assert p.parse(data[:k]) == H.INCOMPLETE, k
    assert p.parse(data)[0] == len(data)


def test_bytearray_and_memoryview_input(parser_cls):
    data = head("GET / HTTP/1.1", "Host: a")
    p = parser_cls()
    assert p.parse(bytearray(data)) == p.parse(memoryview(data)) == p.parse(data)


class TestLimits:
    def test_request_line_at_and_past_limit(self, parser_cls):
        line = "GET /" + "a" * 95 + " HTTP/1.1"  # 109 bytes
        p = parser_cls(max_request_line=len(line))
        assert p.parse(head(line, "Host: a"))[0] > 0
        p = parser_cls(max_request_line=len(line) - 1)
        assert p.parse(head(line, "Host: a")) == H.E_REQUEST_LINE_TOO_LONG

    def test_incomplete_long_line_fails_at_once(self, parser_cls):
        p = parser_cls(max_request_line=100)
        assert p.parse(b"GET /" + b"a" * 96) == H.INCOMPLETE  # 101 bytes: could still end
        assert p.parse(b"GET /" + b"a" * 97) == H.E_REQUEST_LINE_TOO_LONG
        # leading empty lines do not count against the request line
        assert p.parse(b"\r\n" * 10 + b"GET /" + b"a" * 96) == H.INCOMPLETE

    def test_char_error_inside_window_wins(self, parser_cls):
        p = parser_cls(max_request_line=10)
        assert p.parse(b"GET /\x00" + b"a" * 100) == H.E_BAD_TARGET

    def test_head_at_and_past_limit(self, parser_cls):
        data = head("GET / HTTP/1.1", "Host: a", "X: " + "v" * 200)
        assert parser_cls(max_head=len(data)).parse(data)[0] == len(data)
        assert parser_cls(max_head=len(data) - 1).parse(data) == H.E_HEAD_TOO_LARGE
        # incomplete and already at the limit: an error now, not a wait
        assert parser_cls(max_head=len(data) - 1).parse(data[:-1]) == H.E_HEAD_TOO_LARGE
        assert parser_cls(max_head=len(data)).parse(data[:-1]) == H.INCOMPLETE

    def test_field_count(self, parser_cls):
        lines = ["GET / HTTP/1.1", "Host: a"] + [f"X-{i}: {i}" for i in range(9)]
        assert len(parser_cls(max_fields=10).parse(head(*lines))[4]) == 10
        assert parser_cls(max_fields=9).parse(head(*lines)) == H.E_TOO_MANY_FIELDS
        assert parser_cls(max_fields=9).parse(head(*lines, end="\r\n")) == H.E_TOO_MANY_FIELDS

    def test_defaults(self, parser_cls):
        p = parser_cls()
        assert (p.max_request_line, p.max_head, p.max_fields) == (8192, 65536, 100)
        assert p.parse(head("GET /" + "a" * 8200 + " HTTP/1.1", "Host: a")) == H.E_REQUEST_LINE_TOO_LONG
        many = ["GET / HTTP/1.1", "Host: a"] + [f"X-{i}: {i}" for i in range(100)]
        assert p.parse(head(*many)) == H.E_TOO_MANY_FIELDS
        assert p.parse(head("GET / HTTP/1.1", "Host: a", "X: " + "v" * 70000)) == H.E_HEAD_TOO_LARGE


def test_enabled_matches_loaded_parser():
    assert native.enabled is (native.CHeadParser is not None)
    assert native.HeadParser is (native.CHeadParser if native.enabled else native.PyHeadParser)


@pytest.mark.parametrize("kwargs", [{"max_request_line": 0}, {"max_head": -1},
                                    {"max_fields": 2**31}, {"max_head": 1.5}])
def test_bad_limits_are_refused_with_their_name(parser_cls, kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        parser_cls(**kwargs)
