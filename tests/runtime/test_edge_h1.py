"""The HTTP/1.1 edge through a running gateway (issue 8): the parser's error replies, Date on
every response (HTTP/1.1 and HTTP/2), request targets refused with 400 (fragment, userinfo,
paths), normalised paths as the backend sees them, `server.escaped-slashes`, and the
lingering close that lets a client read a 413/431 instead of a reset.

Raw sockets where the bytes matter (a header sent twice is invisible to most clients), the
echo backend to see the path that was forwarded, and a backend that sends no Date."""

from __future__ import annotations

import email.utils
import json
import socket
import threading
import time

import pytest

from backends import Backend, connect, read_until_close
from h2raw import H2Client
from procs import Proc, start_echo, start_gateway

MAX_BODY = 1024


def _config(echo_url: str, nodate_url: str, dated_url: str, **server) -> dict:
    return {
        "listeners": [{"bind": "127.0.0.1:0", "protocols": ["http1", "h2c"]}],
        "backends": {"echo": {"url": echo_url + "/base", "timeout": "10s"},
                     "nodate": {"url": nodate_url, "timeout": "10s"},
                     "dated": {"url": dated_url, "timeout": "10s"}},
        "apis": [{"name": "echo", "path": "/echo", "backend": "echo"},
                 {"name": "nodate", "path": "/nodate", "backend": "nodate"},
                 {"name": "dated", "path": "/dated", "backend": "dated"}],
        "server": {"max-body": MAX_BODY, "body-timeout": "1s", "head-timeout": "2s",
                   **server},
    }


class DatedBackend:
    """Answers every request with a fixed, old `Date` (which the gateway must keep)."""

    DATE = b"Tue, 01 Jan 2019 00:00:00 GMT"

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                s, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s: socket.socket) -> None:
        buf = b""
        with s:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = s.recv(65536)
                    if not data:
                        return
                    buf += data
                buf = buf.partition(b"\r\n\r\n")[2]  # GETs only
                s.sendall(b"HTTP/1.1 200 OK\r\ndate: %b\r\ncontent-length: 2\r\n\r\nok"
                          % self.DATE)

    def close(self) -> None:
        self._sock.close()


@pytest.fixture(scope="module")
def backends():
    echo = start_echo()
    nodate = Backend("ok", body=b"no date here")
    dated = DatedBackend()
    yield echo, nodate, dated
    echo.stop()
    nodate.close()
    dated.close()


@pytest.fixture(scope="module")
def gw(backends, tmp_path_factory):
    echo, nodate, dated = backends
    p = start_gateway(tmp_path_factory.mktemp("edge"),
                      _config(echo.url, nodate.url, dated.url))
    yield p
    p.stop()


# -- raw HTTP/1.1 ------------------------------------------------------------------------

def parse(data: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, header lines in order with repeats, body by Content-Length)."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, data[:200]
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip().lower(), value.strip()))
    n = int(dict(headers).get("content-length", "0"))
    assert len(rest) >= n, (n, rest)
    return int(lines[0].split(" ")[1]), headers, rest[:n]


def values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for n, v in headers if n == name]


def exchange(gw: Proc, raw: bytes, timeout: float = 10) -> tuple[int, list, bytes]:
    """Send `raw`, read until the gateway closes (every request here ends with a close)."""
    with connect(gw.port, timeout) as s:
        s.sendall(raw)
        s.shutdown(socket.SHUT_WR)
        data, how = read_until_close(s, timeout)
    assert how == "eof", (how, data[:200])
    return parse(data)


def request(gw: Proc, target: bytes, extra: bytes = b"") -> tuple[int, list, bytes]:
    return exchange(gw, b"GET %b HTTP/1.1\r\nhost: gw.test\r\nconnection: close\r\n%b\r\n"
                    % (target, extra))


def assert_json_error(status_headers_body, status: int, words: str = "") -> dict:
    status_got, headers, body = status_headers_body
    assert status_got == status, body
    assert values(headers, "content-type") == ["application/json"]   # exactly one
    doc = json.loads(body)
    assert doc["statusCode"] == status and words in doc["message"], doc
    return doc


def assert_date(headers: list) -> str:
    dates = values(headers, "date")
    assert len(dates) == 1, headers
    when = email.utils.parsedate_to_datetime(dates[0])
    assert dates[0].endswith(" GMT") and when.tzinfo is not None
    return dates[0]


# -- defects 1 and 9: one Content-Type, one Connection ------------------------------------

def test_a_too_long_url_gets_one_json_content_type(gw):
    r = request(gw, b"/echo/" + b"a" * 9000)
    assert_json_error(r, 414)
    assert values(r[1], "connection") == ["close"]
    assert_date(r[1])


@pytest.mark.parametrize("raw, status", [
    (b"GET /echo HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n", 400),
    (b"GET /echo HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip, chunked\r\n\r\n", 501),
    (b"GET /echo HTTP/2.5\r\nhost: a\r\n\r\n", 505),
    (b"GET /echo HTTP/1.1\r\nhost: a\r\n" + b"x-big: %b\r\n" % (b"v" * 70000) + b"\r\n", 431),
])
def test_every_parser_error_has_one_content_type(gw, raw, status):
    r = exchange(gw, raw)
    assert_json_error(r, status)
    assert values(r[1], "connection") == ["close"]
    assert_date(r[1])


def test_body_timeout_408_says_connection_close_once(gw):
    with connect(gw.port, 10) as s:
        s.sendall(b"POST /echo/slow HTTP/1.1\r\nhost: gw.test\r\ncontent-length: 10\r\n\r\nab")
        data, how = read_until_close(s, 10)      # body-timeout 1s: the gateway answers
    r = parse(data)
    assert_json_error(r, 408, "body")
    assert values(r[1], "connection") == ["close"]
    assert_date(r[1])


# -- Date ----------------------------------------------------------------------------------

def test_date_is_added_when_the_backend_sent_none(gw, backends):
    status, headers, body = request(gw, b"/nodate/x")
    assert (status, body) == (200, b"no date here")
    date = assert_date(headers)
    assert abs(email.utils.parsedate_to_datetime(date).timestamp() - time.time()) < 120


def test_the_backends_date_is_kept(gw):
    status, headers, body = request(gw, b"/dated/x")
    assert (status, body) == (200, b"ok")
    assert values(headers, "date") == [DatedBackend.DATE.decode()]


@pytest.mark.parametrize("target, status", [
    (b"/nowhere", 404),                # no API
    (b"/echo/a#b", 400),               # a refused target
])
def test_gateway_answers_carry_a_date(gw, target, status):
    r = request(gw, target)
    assert_json_error(r, status)
    assert_date(r[1])


def test_head_timeout_408_carries_a_date(gw):
    with connect(gw.port, 10) as s:
        s.sendall(b"GET /echo HTTP/1.1\r\nhost: gw")   # head-timeout 2s
        data, how = read_until_close(s, 10)
    r = parse(data)
    assert_json_error(r, 408)
    assert_date(r[1])
    assert values(r[1], "connection") == ["close"]


def test_http2_responses_carry_a_date(gw):
    c = H2Client.h2c(gw.port)
    try:
        for path, status in (("/nodate/x", 200), ("/dated/x", 200), ("/nowhere", 404),
                             ("/echo/a#f", 400)):
            r = c.get(path)
            assert r.status == status, (path, r)
            dates = [v for n, v in r.headers if n == b"date"]
            assert len(dates) == 1, (path, r.headers)
            if path == "/dated/x":
                assert dates[0] == DatedBackend.DATE
            else:
                email.utils.parsedate_to_datetime(dates[0].decode())
    finally:
        c.close()


# -- request targets -------------------------------------------------------------------------

@pytest.mark.parametrize("target, words", [
    (b"/echo/a#frag", "fragment"),
    (b"/echo/a?q=1#frag", "fragment"),
    (b"http://user:pw@gw.test/echo/a", "userinfo"),
    (b"http://user@gw.test/echo/a", "userinfo"),
    (b"/echo/..%2fsecret", "climb out"),
    (b"/echo/a%5c..%5c..%5cb", "climb out"),
    (b"/echo/../..", "above the root"),
    (b"/echo/%zz", "percent-encoding"),
])
def test_refused_targets_get_400(gw, target, words):
    assert_json_error(request(gw, target), 400, words)


@pytest.mark.parametrize("target, path, query", [
    (b"/echo/a/./b/../c?x=/../y", "/base/a/c", "x=/../y"),   # the query is left alone
    (b"/other/../echo/x", "/base/x", ""),                    # routed on the normal form
    (b"/echo/%7euser/%41", "/base/~user/A", ""),
    (b"/echo/a%2fb/%c3%a9", "/base/a%2Fb/%C3%A9", ""),       # keep: forwarded as data
    (b"/echo/a/..%2fb", "/base/a/..%2Fb", ""),               # decoding stays in /base
    (b"http://gw.test/echo/a/../b", "/base/b", ""),
])
def test_the_backend_gets_the_normalised_path(gw, target, path, query):
    status, _, body = request(gw, target)
    assert status == 200, body
    doc = json.loads(body)
    assert (doc["path"], doc["query"]) == (path, query)


def test_http2_paths_go_through_the_same_rules(gw):
    c = H2Client.h2c(gw.port)
    try:
        r = c.get("/other/../echo/x/./y")
        assert r.status == 200 and json.loads(bytes(r.body))["path"] == "/base/x/y"
        for path, words in (("/echo/a#f", "fragment"), ("/echo/..%2Fx", "climb out"),
                            ("/..", "above the root")):
            r = c.get(path)
            assert r.status == 400, (path, r)
            assert words in json.loads(bytes(r.body))["message"]
    finally:
        c.close()


@pytest.mark.parametrize("action, target, status, path", [
    ("reject", b"/echo/a%2fb", 400, "escaped slashes"),
    ("reject", b"/echo/a%5Cb", 400, "escaped slashes"),
    ("reject", b"/echo/a/b", 200, "/base/a/b"),
    ("unescape", b"/echo/a%2fb%5cc", 200, "/base/a/b/c"),
    ("unescape", b"/echo/x/..%2f..%2fecho/y", 200, "/base/y"),
])
def test_escaped_slashes_actions(backends, tmp_path, action, target, status, path):
    echo, nodate, dated = backends
    p = start_gateway(tmp_path, _config(echo.url, nodate.url, dated.url,
                                        **{"escaped-slashes": action}))
    try:
        r = request(p, target)
        if status == 400:
            assert_json_error(r, 400, path)
        else:
            assert r[0] == 200 and json.loads(r[2])["path"] == path
    finally:
        p.stop()


# -- lingering close ---------------------------------------------------------------------------

def _upload_then_read(gw: Proc, head: bytes, body_chunks) -> tuple[bytes, str]:
    """Send the head and the whole body as a plain client would (without reading), then
    read the answer: the bytes and how the connection ended."""
    with connect(gw.port, 20) as s:
        try:
            s.sendall(head)
            for chunk in body_chunks:
                s.sendall(chunk)
        except OSError as exc:  # the gateway reset us before the answer could be read
            return b"", f"send failed: {exc!r}"
        return read_until_close(s, 20)


MiB = 1024 * 1024


def test_413_for_a_large_content_length_upload_is_read_whole(gw):
    data, how = _upload_then_read(
        gw, b"POST /echo/up HTTP/1.1\r\nhost: gw.test\r\ncontent-length: %d\r\n\r\n" % (4 * MiB),
        [b"x" * (64 * 1024)] * 64)
    assert how == "eof", how
    r = parse(data)
    assert_json_error(r, 413)
    assert values(r[1], "connection") == ["close"]


def test_413_for_a_large_chunked_upload_is_read_whole(gw):
    chunk = b"%x\r\n%b\r\n" % (64 * 1024, b"y" * (64 * 1024))
    data, how = _upload_then_read(
        gw, b"POST /echo/up HTTP/1.1\r\nhost: gw.test\r\ntransfer-encoding: chunked\r\n\r\n",
        [chunk] * 64 + [b"0\r\n\r\n"])
    assert how == "eof", how
    assert_json_error(parse(data), 413)


def test_431_for_a_huge_head_is_read_whole(gw):
    fields = b"".join(b"x-f%d: %b\r\n" % (i, b"v" * 4000) for i in range(400))  # 1.6 MB
    data, how = _upload_then_read(gw, b"GET /echo HTTP/1.1\r\nhost: gw.test\r\n", [fields])
    assert how == "eof", how
    assert_json_error(parse(data), 431)


def test_the_gateway_stays_responsive_after_lingering(gw):
    """The linger is bounded: a client that keeps sending is cut off, and meanwhile other
    connections are served."""
    s = connect(gw.port, 20)
    try:
        s.sendall(b"POST /echo/up HTTP/1.1\r\nhost: gw.test\r\ncontent-length: %d\r\n\r\n"
                  % (1 << 40))
        status, _, _ = request(gw, b"/echo/meanwhile")
        assert status == 200
        deadline = time.monotonic() + 30
        ended = None
        while time.monotonic() < deadline and ended is None:
            try:
                s.sendall(b"z" * 65536)
            except OSError as exc:
                ended = exc
        assert isinstance(ended, (BrokenPipeError, ConnectionResetError)), ended
    finally:
        s.close()


# -- the Date helper, in process ----------------------------------------------------------------

def test_http_date_is_an_imf_fixdate_built_once_a_second(monkeypatch):
    from apigw_core.runtime import clock

    now = [784111777.25]
    monkeypatch.setattr(clock, "_time", lambda: now[0])
    first = clock.http_date()
    assert first == b"Sun, 06 Nov 1994 08:49:37 GMT"      # RFC 9110 §5.6.7's example
    now[0] = 784111777.9
    assert clock.http_date() is first                     # the same second: cached
    now[0] = 784111778.0
    assert clock.http_date() == b"Sun, 06 Nov 1994 08:49:38 GMT"


def test_with_date_adds_one_only_when_missing():
    from apigw_core.runtime.clock import with_date

    mine = [(b"content-type", b"x"), (b"date", b"Tue, 01 Jan 2019 00:00:00 GMT")]
    assert with_date(mine) is mine
    plain = [(b"content-type", b"x")]
    out = with_date(plain)
    assert plain == [(b"content-type", b"x")]             # the caller's list is not changed
    assert [n for n, _ in out] == [b"content-type", b"date"]
