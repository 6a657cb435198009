"""Streaming uploads when the backend fails while the body is still arriving: the client
gets the backend verdict (504 / 502) at once, with `connection: close` (the rest of its
upload would otherwise be read as a next request), never a 500 or a hang."""

from __future__ import annotations

import json
import time

import pytest

from backends import Backend, read_until_close, connect
from procs import start_gateway


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    hang, half = Backend("hang"), Backend("half")
    cfg = {
        "listeners": [{"bind": "127.0.0.1:0"}],
        "backends": {"hang": {"url": hang.url, "timeout": 1},
                     "half": {"url": half.url, "timeout": 1}},
        "apis": [{"name": "hang", "path": "/hang", "backend": "hang"},
                 {"name": "half", "path": "/half", "backend": "half"}],
        "server": {"body-timeout": 5},
    }
    gw = start_gateway(tmp_path_factory.mktemp("gw"), cfg)
    yield gw
    gw.stop()
    hang.close()
    half.close()


def _upload_head(path: bytes) -> bytes:
    return (b"POST " + path + b" HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n")


def test_backend_timeout_during_an_unfinished_upload_is_504(env):
    s = connect(env.port)
    s.sendall(_upload_head(b"/hang/x"))  # the body never ends
    t0 = time.monotonic()
    data, how = read_until_close(s, 60)   # the body never ends: only the timeout ends it
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 504 "), data[:200]
    assert b"\r\nconnection: close" in head.lower()
    assert json.loads(body)["statusCode"] == 504
    assert how in ("eof", "reset")
    assert time.monotonic() - t0 >= 0.9   # not before the backend timeout (1 s)


def test_backend_that_answers_half_a_body_during_an_upload_aborts_the_client(env):
    s = connect(env.port)
    s.sendall(_upload_head(b"/half/x") + b"0\r\n\r\n")
    data, how = read_until_close(s, 60)
    s.close()
    assert data.startswith(b"HTTP/1.1 200 "), data[:200]
    body = data.partition(b"\r\n\r\n")[2]
    assert len(body) < 1000  # the client can tell: the Content-Length is not met
    assert how in ("eof", "reset")
