"""Client abort through a running gateway (issue 12): an HTTP/1.1 client that closes (or
only half-closes) while its request waits on a slow backend has the backend request
cancelled, seen by the backend as its connection closing, on the direct path and through
a policy pipeline; under `server.client-abort: ignore` a half-closed client is still
answered; an HTTP/2 client's RST_STREAM cancels the backend request too."""

from __future__ import annotations

import socket

import pytest

from h2raw import H2Client
from pipeline_kit import gateway   # noqa: F401
from retry_backend import RetryBackend
from support import wait_until


@pytest.fixture(scope="module")
def backend():
    b = RetryBackend()
    yield b
    b.close()


def _cfg(backend, mode=None) -> dict:
    cfg = {"listeners": [{"bind": "127.0.0.1:0", "protocols": ["http1", "h2c"]}],
           "backends": {"b": {"url": backend.url, "timeout": "60s"}},
           "apis": [{"name": "plain", "path": "/plain", "backend": "b"},
                    {"name": "pol", "path": "/pol", "backend": "b", "policies": {
                        "inbound": [{"set-header": {"name": "x-p", "value": ["1"]}}]}}]}
    if mode is not None:
        cfg["server"] = {"client-abort": mode}
    else:
        cfg["telemetry"] = {"access-log": {"path": "-"}}   # JSON lines on stdout
    return cfg


@pytest.fixture(scope="module")
def gw(tmp_path_factory, backend):
    p = gateway(tmp_path_factory, _cfg(backend))
    yield p
    p.stop()


@pytest.fixture(scope="module")
def gw_ignore(tmp_path_factory, backend):
    p = gateway(tmp_path_factory, _cfg(backend, "ignore"))
    yield p
    p.stop()


def _send(port: int, path: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(f"GET {path} HTTP/1.1\r\nhost: gw.test\r\n\r\n".encode())
    return s


def _read_all(s: socket.socket) -> bytes:
    out = b""
    while True:
        data = s.recv(65536)
        if not data:
            return out
        out += data


@pytest.mark.parametrize("api", ["plain", "pol"])
def test_client_close_cancels_the_backend_request(gw, backend, api):
    key = f"close-{api}"
    s = _send(gw.port, f"/{api}/slow/{key}")
    wait_until(lambda: backend.count(key) == 1, message="the request reached the backend")
    s.close()
    wait_until(backend.closed[key].is_set, timeout=10,
               message="the backend saw its request cancelled")
    wait_until(lambda: "(499)" in "".join(gw.output), timeout=10, message="the 499 logged")
    wait_until(lambda: any(f"/slow/{key}" in line and '"status":499' in line.replace(" ", "")
                           for line in gw.output), timeout=10,
               message="the access log's 499")


def test_half_close_counts_as_closing(gw, backend):
    s = _send(gw.port, "/plain/slow/half")
    wait_until(lambda: backend.count("half") == 1, message="the request reached the backend")
    s.shutdown(socket.SHUT_WR)
    wait_until(backend.closed["half"].is_set, timeout=10,
               message="the backend saw its request cancelled")
    assert _read_all(s) == b""     # no answer: the connection just ends
    s.close()


def test_ignore_answers_a_half_closed_client(gw_ignore, backend):
    s = _send(gw_ignore.port, "/plain/slow/ign?delay=1")
    wait_until(lambda: backend.count("ign") == 1, message="the request reached the backend")
    s.shutdown(socket.SHUT_WR)
    answer = _read_all(s)
    s.close()
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"slow answer"), answer
    assert not backend.closed["ign"].is_set()


def test_cancel_mode_still_answers_a_client_that_stays(gw, backend):
    s = _send(gw.port, "/pol/slow/stay?delay=0.5")
    s.settimeout(30)
    data = s.recv(65536)
    s.close()
    assert data.startswith(b"HTTP/1.1 200") and not backend.closed["stay"].is_set()


def test_h2_rst_stream_cancels_the_backend_request(gw, backend):
    c = H2Client.h2c(gw.port)
    sid = c.request("/plain/slow/h2rst")
    wait_until(lambda: backend.count("h2rst") == 1, message="the request reached the backend")
    c.conn.reset_stream(sid)
    c.flush()
    wait_until(backend.closed["h2rst"].is_set, timeout=10,
               message="the backend saw its request cancelled")
    c.close()
