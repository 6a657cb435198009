"""Failure cases against a real gateway process: misbehaving backends, broken and smuggling
requests, slow clients, limits.

One gateway serves most tests: each misbehaving backend (tests/runtime/backends.py, running
in this process) sits behind its own API path, so a test picks the behaviour by the path and
reads afterwards what that backend received.  Timeouts are short (1 s) so that a test can
assert that something waited for its timeout (never before it); that it happened *because*
of that timeout is shown by what the client got (a 504, a 408, a 503 rather than a 200),
not by an upper bound on the time, which a busy machine can exceed.  Waits poll for the
condition they need (support.wait_until).
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from typing import Optional

import pytest

from backends import Backend, Blackhole, Refused, ResponseReader, connect, read_until_close
from procs import start_gateway
from support import lazy_module, need_binary, wait_until

httpx = lazy_module("httpx")

SERVER = {"head-timeout": 1, "idle-timeout": 1, "body-timeout": 1, "write-timeout": 1,
          "shutdown-timeout": 2, "max-body": 1000}


class Env:
    def __init__(self, tmp_path_factory) -> None:
        self.rec = Backend("ok")
        self.hang = Backend("hang")
        self.half = Backend("half")
        self.stall = Backend("stall")
        self.once_get = Backend("once")
        self.once_post = Backend("once")
        self.idle_close = Backend("ok", idle_close=0.2)
        self.firehose = Backend("stream", interval=0)
        self.stream = Backend("stream")
        self.slow_wait = Backend("held")
        self.slow_503 = Backend("held")
        self.blackhole = Blackhole()
        self.down = Refused()
        self.backends = [self.blackhole, self.down, self.rec, self.hang, self.half, self.stall,
                         self.once_get, self.once_post, self.idle_close, self.firehose,
                         self.stream, self.slow_wait, self.slow_503]
        defs = {
            "rec": {"url": self.rec.url},
            "hang": {"url": self.hang.url, "timeout": 1},
            "half": {"url": self.half.url},
            "stall": {"url": self.stall.url, "timeout": 1},
            "onceget": {"url": self.once_get.url},
            "oncepost": {"url": self.once_post.url},
            "idleclose": {"url": self.idle_close.url},
            "firehose": {"url": self.firehose.url},
            "stream": {"url": self.stream.url},
            "down": {"url": self.down.url},
            "unroutable": {"url": self.blackhole.url, "connect-timeout": 0.5},
            "slowwait": {"url": self.slow_wait.url, "max-connections": 1,
                         "connect-timeout": 30},
            "slow503": {"url": self.slow_503.url, "max-connections": 1,
                        "connect-timeout": 0.3},
        }
        config = {
            "listeners": [{"bind": "127.0.0.1:0"}],
            "backends": defs,
            "apis": [{"name": n, "path": f"/{n}", "backend": n} for n in defs],
            "admin": {"bind": "127.0.0.1:0"},
            "server": SERVER,
        }
        self.gw = start_gateway(tmp_path_factory.mktemp("failures"), config)
        self.port = self.gw.port
        self.url = self.gw.url

    def close(self) -> None:
        self.gw.stop()
        for b in self.backends:
            b.close()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = Env(tmp_path_factory)
    yield e
    e.close()


def _json_error(resp: httpx.Response, status: int) -> None:
    assert resp.status_code == status
    assert resp.headers["content-type"] == "application/json"
    assert len(resp.content) < 512
    doc = resp.json()
    assert doc["statusCode"] == status
    assert isinstance(doc["message"], str) and doc["message"]


# -- backend failures ----------------------------------------------------------------------

def test_backend_down_is_502_json(env):
    r = httpx.get(env.url + "/down/x", timeout=5)
    _json_error(r, 502)


def test_backend_hangs_is_504_at_the_timeout(env):
    t0 = time.monotonic()
    r = httpx.get(env.url + "/hang/x", timeout=30)   # the backend never answers: only
    elapsed = time.monotonic() - t0                  # the gateway's timeout ends this
    _json_error(r, 504)
    assert elapsed >= 1.0, elapsed
    assert env.hang.connections >= 1


def test_connect_timeout_is_504(env):
    """A backend that never answers the SYN: 504 at connect-timeout 0.5 s, as nginx's
    proxy_connect_timeout (Envoy says 503; the runtime follows nginx and APIM's 504)."""
    t0 = time.monotonic()
    r = httpx.get(env.url + "/unroutable/x", timeout=30)
    elapsed = time.monotonic() - t0
    _json_error(r, 504)
    # not before connect-timeout; and the configured 0.5 s, not the default 5 s (which
    # would answer 504 too): a bound ten times the configured value
    assert 0.5 <= elapsed < 5.0, elapsed


# The backend promised 1000 bytes and closed after 500: the gateway cannot say so any more
# (the head went out), so it aborts the client connection.  It resets it (proxy.py: the
# client must not take what it got as complete), so a client sees either the short body
# (curl 18, httpx RemoteProtocolError) or the reset itself (curl 56, httpx ReadError)
# depending on which it reads first; never a hang, never a complete-looking response.

def test_backend_closes_mid_body_curl_sees_an_abort(env):
    # a hang would end in curl's own --max-time (exit 28), which fails the assert
    p = subprocess.run([need_binary("curl"), "-sS", "-o", "/dev/null", "--max-time", "30",
                        env.url + "/half/x"], capture_output=True, text=True)
    assert p.returncode in (18, 56), (p.returncode, p.stderr)  # PARTIAL_FILE, RECV_ERROR


def test_backend_closes_mid_body_httpx_sees_an_abort(env):
    # a hang would end in httpx.ReadTimeout, which is not one of these
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        httpx.get(env.url + "/half/x", timeout=30)


def test_backend_closes_mid_body_raw_client_never_gets_the_whole_body(env):
    s = connect(env.port)
    s.sendall(b"GET /half/x HTTP/1.1\r\nHost: gw\r\n\r\n")
    data, how = read_until_close(s, 30)
    s.close()
    assert how in ("eof", "reset"), how
    head, _, body = data.partition(b"\r\n\r\n")
    if head:
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"content-length: 1000" in head.lower()
    assert len(body) < 1000


def test_backend_stalls_mid_body_client_aborted_at_the_timeout(env):
    """`timeout` also bounds the wait between two reads of the response body."""
    s = connect(env.port)
    s.sendall(b"GET /stall/x HTTP/1.1\r\nHost: gw\r\n\r\n")
    t0 = time.monotonic()
    data, how = read_until_close(s, 30)    # the backend never ends it: only the timeout
    elapsed = time.monotonic() - t0
    s.close()
    assert how in ("eof", "reset"), how
    assert elapsed >= 1.0, elapsed
    assert len(data.partition(b"\r\n\r\n")[2]) < 1000
    c = env.stall.new_conns[-1]
    assert c.done.wait(30) and c.end in ("eof", "reset"), c.end


def test_reused_connection_dying_get_is_retried_on_a_new_one(env):
    """The backend closes a pooled connection just as the gateway reuses it: a GET
    without a body is safe to send again, on a fresh connection."""
    assert httpx.get(env.url + "/onceget/a", timeout=5).text == "/a\n"
    r = httpx.get(env.url + "/onceget/b", timeout=5)
    assert r.status_code == 200 and r.text == "/b\n"
    assert env.once_get.connections == 2
    assert env.once_get.received.count(b"GET /b ") == 2


def test_reused_connection_dying_post_is_not_retried(env):
    """The same for a POST: it may have been acted on, so it is never sent twice."""
    assert httpx.get(env.url + "/oncepost/a", timeout=5).status_code == 200
    r = httpx.post(env.url + "/oncepost/b", content=b"pay once", timeout=5)
    _json_error(r, 502)
    assert env.once_post.received.count(b"POST /b ") == 1
    assert env.once_post.connections == 1


def test_pooled_connection_closed_by_backend_is_not_reused(env):
    """The backend closed its idle keep-alive connection (idle_close 0.2 s): the pool sees
    the FIN before reuse, so even a POST (never retried) goes out on a new connection."""
    assert httpx.post(env.url + "/idleclose/a", content=b"1", timeout=5).status_code == 200
    assert env.idle_close.new_conns[0].done.wait(30)   # the backend closed it
    r = httpx.post(env.url + "/idleclose/b", content=b"2", timeout=5)
    assert r.status_code == 200 and r.text == "/b\n"
    assert env.idle_close.connections == 2


class _Get(threading.Thread):
    """A GET in its own thread: `status`, `started`, `finished` (monotonic), `doc` (JSON)."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self._get = httpx.get   # resolved here: a missing httpx skips the test, not a thread
        self.url = url
        self.status: Optional[int] = None
        self.started = self.finished = 0.0
        self.doc: dict = {}
        self.start()

    def run(self) -> None:
        self.started = time.monotonic()
        r = self._get(self.url, timeout=60)
        self.finished = time.monotonic()
        self.status = r.status_code
        if r.headers.get("content-type") == "application/json":
            self.doc = r.json()


def _first_held(backend: Backend, url: str) -> _Get:
    """GET url on a "held" backend; returns once the backend holds it (the pool's only
    connection busy until `backend.release` is set)."""
    backend.reset()
    backend.release.clear()
    first = _Get(url)
    wait_until(lambda: backend.new_conns and backend.new_conns[0].requests >= 1,
               message="the first request reached the backend")
    return first


def test_pool_full_second_request_waits(env):
    """max-connections 1: the second request waits for the connection of the first, then
    is served on it."""
    first = _first_held(env.slow_wait, env.url + "/slowwait/1")
    second = _Get(env.url + "/slowwait/2")
    time.sleep(0.3)   # pacing only: lets the second reach the pool before the release
    # Nothing is asserted about the order the two clients see their answers in (a loaded
    # machine may schedule the threads either way): the second has no answer while the
    # only connection is held (no 503, no second connection), and both are served on it.
    assert second.status is None and env.slow_wait.connections == 1
    env.slow_wait.release.set()
    first.join(60)
    second.join(60)
    assert (first.status, second.status) == (200, 200)
    assert env.slow_wait.connections == 1
    assert env.slow_wait.new_conns[0].requests == 2


def test_pool_full_503_after_connect_timeout(env):
    """max-connections 1, connect-timeout 0.3 s: while the only connection is busy, the
    second request gives up waiting for it with a 503."""
    first = _first_held(env.slow_503, env.url + "/slow503/1")
    second = _Get(env.url + "/slow503/2")
    second.join(60)
    env.slow_503.release.set()
    first.join(60)
    assert second.status == 503, second.status
    assert second.doc["statusCode"] == 503
    assert second.finished - second.started >= 0.3   # waited connect-timeout first
    assert first.status == 200
    assert env.slow_503.connections == 1


# -- client failures -----------------------------------------------------------------------

def test_client_disconnect_mid_stream_closes_backend_connection(env):
    env.stream.reset()
    s = connect(env.port)
    s.sendall(b"GET /stream/x HTTP/1.1\r\nHost: gw\r\n\r\n")
    got = b""
    while len(got) < 10_000:
        got += s.recv(65536)
    assert got.startswith(b"HTTP/1.1 200")
    assert env.stream.connections == 1
    s.close()
    first = env.stream.new_conns[0]
    assert first.done.wait(30), "gateway kept the backend stream open"
    assert first.end in ("eof", "reset"), first.end
    # the next request gets a new backend connection (the aborted one is never reused)
    s = connect(env.port)
    s.sendall(b"GET /stream/y HTTP/1.1\r\nHost: gw\r\n\r\n")
    assert s.recv(65536).startswith(b"HTTP/1.1 200")
    s.close()
    wait_until(lambda: env.stream.connections == 2 and env.stream.new_conns[1].received,
               message="the second request reached the backend")
    assert env.stream.connections == 2
    assert env.stream.new_conns[1].received.startswith(b"GET /y ")


def test_client_that_stops_reading_is_dropped_after_write_timeout(env):
    """A client reads nothing of an endless fast stream: once the socket buffers are full
    the gateway's write stalls, and after write-timeout (1 s) it drops the client and
    resets the backend connection."""
    env.firehose.reset()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", env.port))
    s.sendall(b"GET /firehose/x HTTP/1.1\r\nHost: gw\r\n\r\n")
    t0 = time.monotonic()
    assert env.firehose.wait_connections(1)
    c = env.firehose.new_conns[0]
    assert c.done.wait(60), "the gateway kept writing to a client that reads nothing"
    elapsed = c.ended - t0
    s.close()
    assert c.end in ("eof", "reset"), c.end
    assert elapsed >= 1.0, elapsed   # not before write-timeout


def test_client_half_close_after_request_still_gets_the_answer(env):
    s = connect(env.port)
    s.sendall(b"GET /rec/half-closed HTTP/1.1\r\nHost: gw\r\n\r\n")
    s.shutdown(socket.SHUT_WR)
    r = ResponseReader(s).read()
    assert r.status == 200 and r.body == b"/half-closed\n"
    assert read_until_close(s, 30)[1] == "eof"
    s.close()


# -- malformed and smuggling requests ------------------------------------------------------

H = b"Host: gw\r\n"
BAD_REQUESTS = {
    "cl-and-te": (400, b"POST /rec/x HTTP/1.1\r\n" + H +
                  b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    "two-content-lengths": (400, b"POST /rec/x HTTP/1.1\r\n" + H +
                            b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    "content-length-list": (400, b"POST /rec/x HTTP/1.1\r\n" + H +
                            b"Content-Length: 5, 5\r\n\r\nhello"),
    "te-chunked-identity": (400, b"POST /rec/x HTTP/1.1\r\n" + H +
                            b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
    "te-xchunked": (400, b"POST /rec/x HTTP/1.1\r\n" + H +
                    b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
    "te-unknown-coding": (501, b"POST /rec/x HTTP/1.1\r\n" + H +
                          b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
    "obs-fold": (400, b"GET /rec/x HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n"),
    "space-before-colon": (400, b"GET /rec/x HTTP/1.1\r\nHost : gw\r\n\r\n"),
    "bare-lf": (400, b"GET /rec/x HTTP/1.1\nHost: gw\n\n"),
    "nul-in-field": (400, b"GET /rec/x HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n"),
    "no-host": (400, b"GET /rec/x HTTP/1.1\r\n\r\n"),
    "http-2.0": (505, b"GET /rec/x HTTP/2.0\r\n" + H + b"\r\n"),
    "huge-request-line": (414, b"GET /rec/" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n"),
    "huge-head": (431, b"GET /rec/x HTTP/1.1\r\n" + H +
                  b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 1000) for i in range(80)) + b"\r\n"),
}


def _assert_rejected(env, status: int, request: bytes) -> None:
    env.rec.reset()
    s = connect(env.port)
    try:
        s.sendall(request)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the gateway answered and closed before reading it all
    data, how = read_until_close(s, 30)
    s.close()
    assert how in ("eof", "reset") and data, (how, data[:200])
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith(f"HTTP/1.1 {status} "), lines[0]
    fields = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    assert fields.get("connection") == "close"
    assert json.loads(body)["statusCode"] == status
    time.sleep(0.05)   # a negative check: give a wrongly forwarded request a moment to show
    assert env.rec.connections == 0 and env.rec.received == b"", env.rec.received[:200]


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_request_rejected_and_never_forwarded(env, name):
    status, request = BAD_REQUESTS[name]
    _assert_rejected(env, status, request)


def test_bad_chunk_size_rejected_and_never_forwarded(env):
    """The head is fine but the body's first chunk-size line is not, and both arrive in one
    segment: the gateway can tell before it forwards anything."""
    _assert_rejected(env, 400, b"POST /rec/x HTTP/1.1\r\n" + H +
                     b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")


@pytest.mark.parametrize("split", [False, True], ids=["one-segment", "two-segments"])
def test_bad_chunk_after_a_good_one_is_400_at_once(env, split):
    """A good chunk, then a bad chunk-size line (in the same segment, or the next one): the
    head and the first chunk may already be on their way to the backend (the body
    streams), but the client must get its 400 now, not a 408 when body-timeout runs out
    (the status tells which), and the backend must never see a complete-looking request."""
    env.rec.reset()
    s = connect(env.port)
    first = b"POST /rec/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
    first += b"5\r\nhello\r\n"
    rest = b"5\r\nworld\r\nzz\r\nhello\r\n0\r\n\r\n"
    if split:
        s.sendall(first)
        time.sleep(0.2)   # pacing: the second segment comes later
        s.sendall(rest)
    else:
        s.sendall(first + rest)
    data, how = read_until_close(s, 30)
    s.close()
    assert data.startswith(b"HTTP/1.1 400 "), data[:100]
    assert how in ("eof", "reset")
    # whatever was forwarded went on a backend connection that is then aborted: once it
    # has ended, what it received is final
    for c in env.rec.new_conns:
        if c.received.startswith(b"POST /x "):
            assert c.done.wait(30), "the backend connection of the bad request stayed open"
    assert b"0\r\n\r\n" not in env.rec.received


def test_content_length_over_max_body_is_413_and_never_forwarded(env):
    _assert_rejected(env, 413, b"POST /rec/x HTTP/1.1\r\n" + H +
                     b"Content-Length: 2000\r\n\r\n" + b"x" * 2000)


def test_content_length_over_max_body_without_the_body_is_413_at_once(env):
    """The client waits for an answer before sending (as with Expect: 100-continue): the
    head alone says the body is too large, so the 413 must not wait for body-timeout (which
    would answer 408)."""
    _assert_rejected(env, 413, b"POST /rec/x HTTP/1.1\r\n" + H +
                     b"Content-Length: 2000\r\nExpect: 100-continue\r\n\r\n")


def test_chunked_body_over_max_body_is_413(env):
    s = connect(env.port)
    s.sendall(b"POST /rec/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n")
    try:
        for _ in range(4):
            s.sendall(b"200\r\n" + b"x" * 512 + b"\r\n")   # 4 x 512 > max-body 1000
            time.sleep(0.02)   # pacing: one chunk per segment
        s.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    data, how = read_until_close(s, 30)
    s.close()
    assert data.startswith(b"HTTP/1.1 413 "), data[:100]
    assert how in ("eof", "reset")


def test_pipelined_requests_answered_in_order(env):
    s = connect(env.port)
    reqs = b"".join(b"GET /rec/p%d HTTP/1.1\r\nHost: gw\r\n\r\n" % i for i in range(5))
    reqs += b"POST /rec/p5 HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\n\r\nabc"
    reqs += b"GET /rec/p6 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
    s.sendall(reqs)
    rd = ResponseReader(s)
    bodies = [rd.read().body for _ in range(7)]
    assert bodies == [b"/p%d\n" % i for i in range(7)]
    assert read_until_close(s, 30) == (b"", "eof")
    s.close()


# -- slow clients --------------------------------------------------------------------------

def test_slowloris_head_gets_408_at_head_timeout(env):
    s = connect(env.port)
    head = b"GET /rec/x HTTP/1.1\r\nHost: gw\r\nX-Slow: " + b"a" * 100
    stop = threading.Event()

    def drip() -> None:
        for b in head:
            if stop.is_set():
                return
            try:
                s.send(bytes([b]))
            except OSError:
                return
            time.sleep(0.2)   # pacing: a byte every 0.2 s, the head never complete

    t0 = time.monotonic()
    th = threading.Thread(target=drip)
    th.start()
    data, how = read_until_close(s, 30)   # the drip lasts 26 s: only the timeout ends it
    elapsed = time.monotonic() - t0
    stop.set()
    th.join()
    s.close()
    assert data.startswith(b"HTTP/1.1 408 "), data[:100]
    assert b"connection: close" in data.lower()
    assert how in ("eof", "reset")
    assert elapsed >= 0.9, elapsed


def test_idle_keepalive_connection_closed_silently_after_idle_timeout(env):
    s = connect(env.port)
    s.sendall(b"GET /rec/x HTTP/1.1\r\nHost: gw\r\n\r\n")
    assert ResponseReader(s).read().status == 200
    t0 = time.monotonic()
    data, how = read_until_close(s, 30)
    elapsed = time.monotonic() - t0
    s.close()
    assert (data, how) == (b"", "eof")
    assert elapsed >= 0.9, elapsed


def test_silent_new_connection_closed_after_head_timeout(env):
    s = connect(env.port)
    t0 = time.monotonic()
    data, how = read_until_close(s, 30)
    elapsed = time.monotonic() - t0
    s.close()
    assert how == "eof" and data in (b"",) or data.startswith(b"HTTP/1.1 408 "), (data, how)
    assert elapsed >= 0.9, elapsed


def test_slow_body_gets_408_at_body_timeout(env):
    env.rec.reset()
    s = connect(env.port)
    s.sendall(b"POST /rec/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 10\r\n\r\nabc")
    t0 = time.monotonic()
    data, how = read_until_close(s, 30)
    elapsed = time.monotonic() - t0
    s.close()
    assert data.startswith(b"HTTP/1.1 408 "), data[:100]
    assert how in ("eof", "reset")
    assert elapsed >= 0.9, elapsed
    # the backend saw the start of the request (streamed); that connection is then
    # aborted, never reused for another request
    carried = [c for c in env.rec.conns if c.received.startswith(b"POST /x ")]
    assert len(carried) == 1
    assert carried[0].done.wait(30) and carried[0].end in ("eof", "reset"), carried[0].end
    assert carried[0].received.endswith(b"abc")


# -- the connection cap --------------------------------------------------------------------

def test_connection_cap_holds_the_fourth_in_the_backlog(tmp_path):
    with Backend("ok") as rec:
        cfg = {
            "listeners": [{"bind": "127.0.0.1:0"}],
            "backends": {"b": {"url": rec.url}},
            "apis": [{"name": "root", "path": "", "backend": "b"}],
            "server": {"max-connections": 3, "head-timeout": 5, "idle-timeout": 10},
        }
        gw = start_gateway(tmp_path, cfg)
        try:
            held = []
            for i in range(3):
                s = connect(gw.port)
                s.sendall(b"GET /c%d HTTP/1.1\r\nHost: gw\r\n\r\n" % i)
                assert ResponseReader(s).read().status == 200
                held.append(s)
            fourth = connect(gw.port)   # completes in the kernel's backlog
            fourth.sendall(b"GET /c3 HTTP/1.1\r\nHost: gw\r\n\r\n")
            fourth.settimeout(0.7)
            with pytest.raises(socket.timeout):   # held back (a negative check)
                fourth.recv(1)
            held.pop().close()
            fourth.settimeout(30)
            r = ResponseReader(fourth).read()     # served once a slot is free
            assert r.status == 200 and r.body == b"/c3\n"
            fourth.close()
            for s in held:
                s.close()
        finally:
            assert gw.stop() == 0
