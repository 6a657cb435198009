"""HTTP/2 towards backends (`http-version: 2 | 2or1`), against an h2-library backend and
against the gateway's own TLS listener: multiplexing within the backend's stream limit,
trailers, resets mapped to 502, refused streams retried, GOAWAY, timeouts, 2or1 fallback."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time

import pytest

from backends import Refused, connect, read_until_close
from h2backend import H2Backend
from pki import CA
from procs import start_echo, start_gateway
from support import lazy_module, need_binary, wait_until

httpx = lazy_module("httpx")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    b = H2Backend()
    narrow = H2Backend(max_streams=2)
    down = Refused()
    cfg = {
        "listeners": [{"bind": "127.0.0.1:0", "protocols": ["http1", "h2c"]}],
        "backends": {
            "h2": {"url": b.url, "http-version": "2", "timeout": 30},
            # the same backend with a 1 s timeout, for the one test that waits for it
            "h2short": {"url": b.url, "http-version": "2", "timeout": 1},
            "narrow": {"url": narrow.url, "http-version": "2", "timeout": 30},
            "down": {"url": down.url, "http-version": "2"},
        },
        "apis": [{"name": "h2", "path": "/h2", "backend": "h2", "protocols": ["http", "grpc"]},
                 {"name": "h2short", "path": "/short", "backend": "h2short"},
                 {"name": "narrow", "path": "/narrow", "backend": "narrow"},
                 {"name": "down", "path": "/down", "backend": "down",
                  "protocols": ["http", "grpc"]}],
    }
    gw = start_gateway(tmp_path_factory.mktemp("gw"), cfg)
    gw.backend, gw.narrow = b, narrow
    yield gw
    gw.stop()
    b.close()
    narrow.close()
    down.close()


def test_http1_client_to_http2_backend(env):
    r = httpx.get(env.url + "/h2/a/b?x=1", headers={"x-app": "1"}, timeout=60)
    assert r.status_code == 200
    doc = r.json()
    h = doc["headers"]
    assert doc["path"] == "/a/b?x=1"
    assert h[":authority"] == f"127.0.0.1:{env.backend.port}"   # the backend authority
    assert h[":scheme"] == "http" and h[":method"] == "GET"
    assert h["x-forwarded-host"] == f"127.0.0.1:{env.port}"
    assert h["x-app"] == "1" and "connection" not in h and "host" not in h
    assert r.headers["via"] == "2 apigw"   # received from the backend over HTTP/2


def test_upload_integrity_over_http2_backend(env):
    body = os.urandom(3 << 20)
    r = httpx.post(env.url + "/h2/up", content=body, timeout=60)
    assert r.status_code == 200 and r.json()["body_length"] == len(body)


def test_download_over_http2_backend_is_complete(env):
    n = 5 << 20
    r = httpx.get(env.url + f"/h2/big?n={n}", timeout=60)
    assert r.status_code == 200 and len(r.content) == n
    assert r.content == b"x" * n


def test_concurrent_requests_share_one_backend_connection(env):
    before = env.backend.rec.connections
    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=20)) as c:
        results: list = []

        def go(i: int) -> None:
            results.append(c.get(env.url + f"/h2/mux/{i}").json())
        threads = [threading.Thread(target=go, args=(i,)) for i in range(20)]
        [t.start() for t in threads]
        [t.join() for t in threads]
    assert len(results) == 20
    conns = {d["conn"] for d in results}
    # a pooled connection from earlier tests may serve them all; never one per request
    assert env.backend.rec.connections - before <= 1 and len(conns) == 1


def test_backend_stream_limit_is_honoured(env):
    """max_streams 2 at the backend, 6 concurrent requests it answers 0.5 s late: every
    request succeeds, and no connection carries more than 2 at once (3 connections)."""
    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=10)) as c:
        out: list = []

        def go(i: int) -> None:
            r = c.get(env.url + f"/narrow/slow?{i}")
            out.append((r.status_code, r.json()["conn"]))
        threads = [threading.Thread(target=go, args=(i,)) for i in range(6)]
        [t.start() for t in threads]
        [t.join() for t in threads]
    assert [status for status, _ in out] == [200] * 6
    per_conn = [sum(1 for _, c in out if c == conn) for conn in {c for _, c in out}]
    assert max(per_conn) <= 2 and env.narrow.rec.connections >= 3


def test_trailers_from_http2_backend_reach_an_http1_client(env):
    s = connect(env.port)
    s.sendall(b"GET /h2/trailers HTTP/1.1\r\nHost: t\r\nTE: trailers\r\n"
              b"Connection: close\r\n\r\n")
    data, _ = read_until_close(s, 60)
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower()
    assert b"with trailers\n" in body
    assert b"grpc-status: 0\r\n" in body and b"x-t: 1\r\n" in body


def test_backend_stream_reset_is_502(env):
    r = httpx.get(env.url + "/h2/reset", timeout=60)
    assert r.status_code == 502
    assert "reset" in r.json()["message"]


def test_refused_stream_is_retried(env):
    """A POST (not idempotent) whose whole body came with its head is replayable, and a
    refused stream was not processed (RFC 9113 §8.7): sent again on a new stream."""
    s = connect(env.port)
    body = b"not idempotent, but refused"
    s.sendall(b"POST /h2/refuse-once HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    data, _ = read_until_close(s, 60)
    s.close()
    assert data.startswith(b"HTTP/1.1 200 "), data[:300]
    assert json.loads(data.partition(b"\r\n\r\n")[2])["body_length"] == len(body)
    assert env.backend.rec.refused == 2  # refused, then served


def test_goaway_from_backend_moves_to_a_new_connection(env):
    first = httpx.get(env.url + "/h2/goaway", timeout=60).json()["conn"]
    # the gateway closes a connection that got GOAWAY once its last stream is done
    wait_until(lambda: first in env.backend.rec.closed,
               message="the gateway closed the connection that got GOAWAY")
    after = httpx.get(env.url + "/h2/after-goaway", timeout=60).json()["conn"]
    assert after != first


def test_backend_timeout_is_504_and_the_stream_is_cancelled(env):
    t0 = time.monotonic()
    r = httpx.get(env.url + "/short/hang", timeout=60)   # only the gateway's 1 s ends it
    assert r.status_code == 504
    assert time.monotonic() - t0 >= 0.9
    wait_until(lambda: ("/hang", 8) in env.backend.rec.resets,   # RST_STREAM(CANCEL)
               message="the backend's stream was cancelled")


def test_http2_backend_down_is_502(env):
    r = httpx.get(env.url + "/down/x", timeout=60)
    assert r.status_code == 502


def test_http2_client_to_http2_backend(env):
    out = subprocess.run([need_binary("curl"), "-s", "--http2-prior-knowledge", "-w",
                          "\n%{http_version}", env.url + "/h2/c2"],
                         capture_output=True, timeout=60)
    body, _, version = out.stdout.rpartition(b"\n")
    assert version == b"2" and json.loads(body)["path"] == "/c2"


def test_client_gone_cancels_the_backend_stream(env):
    s = connect(env.port)
    s.sendall(b"GET /h2/big?n=200000000 HTTP/1.1\r\nHost: t\r\n\r\n")
    s.recv(65536)
    s.close()  # gone mid-download
    wait_until(lambda: any(p and p.startswith("/big") and code == 8
                           for p, code in env.backend.rec.resets),
               message="the backend stream was cancelled (RST_STREAM CANCEL)")


# -- 2or1 over TLS: the gateway's own TLS listener as the backend --------------------------

def _tls_backend(tmp_path, protocols):
    ca = CA(tmp_path)
    cert, key = ca.issue("localhost")
    echo = start_echo()
    cfg = {"listeners": [{"bind": "127.0.0.1:0", "protocols": protocols,
                          "tls": {"cert": cert, "key": key}}],
           "backends": {"e": {"url": echo.url}},
           "apis": [{"name": "e", "path": "", "backend": "e"}]}
    return start_gateway(tmp_path, cfg), echo, str(ca.pem)


@pytest.mark.parametrize("protocols,expect_via", [
    (["http1", "h2"], "2 apigw"),   # the backend picks h2
    (["http1"], "1.1 apigw"),       # the backend only speaks HTTP/1.1: 2or1 falls back
])
def test_2or1_follows_alpn(tmp_path, protocols, expect_via):
    tls_gw, echo, ca = _tls_backend(tmp_path, protocols)
    front = None
    try:
        cfg = {"listeners": [{"bind": "127.0.0.1:0"}],
               "backends": {"b": {"url": f"https://localhost:{tls_gw.port}",
                                  "http-version": "2or1", "tls": {"ca": ca}}},
               "apis": [{"name": "b", "path": "", "backend": "b"}]}
        (tmp_path / "front").mkdir()
        front = start_gateway(tmp_path / "front", cfg)
        for _ in range(3):  # and again on the pooled connection
            r = httpx.post(front.url + "/x", content=b"abc", timeout=60)
            assert r.status_code == 200 and r.json()["body_length"] == 3
            assert r.headers["via"].endswith(expect_via)  # what the front received
    finally:
        if front is not None:
            front.stop()
        tls_gw.stop()
        echo.stop()


@pytest.mark.parametrize("path,code", [
    ("/nope/Svc/Method", b"12"),    # no route: UNIMPLEMENTED
    ("/narrow/Svc/Method", b"12"),  # an API that does not declare grpc: UNIMPLEMENTED
    ("/down/Svc/Method", b"14"),    # backend down: UNAVAILABLE
])
def test_grpc_callers_get_trailers_only_statuses(env, path, code):
    out = subprocess.run(
        [need_binary("curl"), "-sS", "-D", "-", "-o", "/dev/null", "--http2-prior-knowledge",
         "-H", "content-type: application/grpc", "-H", "te: trailers",
         "--data-binary", "@-", env.url + path],
        input=b"\0\0\0\0\0", capture_output=True, timeout=60)
    head = out.stdout.lower()
    assert head.startswith(b"http/2 200"), (out.returncode, out.stderr)
    assert b"grpc-status: " + code + b"\r\n" in head
    assert b"content-type: application/grpc\r\n" in head
    assert b"grpc-message: " in head


def test_grpc_timeout_is_enforced_by_the_gateway(env):
    """The backend never answers and its configured timeout (30 s) is far longer than
    the call's grpc-timeout (200 ms): the gateway answers DEADLINE_EXCEEDED at the
    deadline, tells the backend how long it had (grpc-timeout forwarded) and cancels its
    stream."""
    t0 = time.monotonic()
    out = subprocess.run(
        [need_binary("curl"), "-sS", "-D", "-", "-o", "/dev/null", "--http2-prior-knowledge",
         "-H", "content-type: application/grpc", "-H", "te: trailers",
         "-H", "grpc-timeout: 200m", "--data-binary", "@-", env.url + "/h2/Svc/hang"],
        input=b"\0\0\0\0\0", capture_output=True, timeout=120)
    elapsed = time.monotonic() - t0
    head = out.stdout.lower()
    assert head.startswith(b"http/2 200"), (out.returncode, out.stderr)
    assert b"grpc-status: 4\r\n" in head
    # not before the deadline; the deadline and not the backend timeout (30 s)
    assert 0.15 < elapsed < 20, elapsed
    sent = [h for _, path, h in env.backend.rec.requests if path == "/Svc/hang"][-1]
    assert 0 < int(sent["grpc-timeout"][:-1]) <= 200_000  # what was left, in a finer unit
    wait_until(lambda: ("/Svc/hang", 8) in env.backend.rec.resets,
               message="the backend's stream was cancelled")
