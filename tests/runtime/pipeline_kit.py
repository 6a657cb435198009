"""What the pipeline end-to-end tests share: the echo backend, a gateway started on a config,
and `Scripted`, a small threaded HTTP/1.1 backend with behaviours chosen by path.

The echo backend (`apigw echo`) answers with the request it received as JSON, so a test
sees exactly what the policies forwarded.  `Scripted` covers what the echo cannot:

- `/status/N`: answers status N with a small JSON body `{"status": N}`;
- `/xml`: an `application/xml` document (for xml-to-json on the response);
- `/bytes/N`: N bytes (Content-Length), in 64 KiB writes; with `?gate`, the first MiB,
  then it waits until the test sets `gate` before sending the rest;
- `/sink`: reads the body (Content-Length or chunked) and reports its length and SHA-256;
  `sunk` counts the bytes read so far, so a test can see them arrive before it has sent
  the end of the upload;
- anything else: 200 with the target as its body.

Every request head it receives is kept in `heads` (lower-case names), in order.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from pathlib import Path
from typing import Optional

import httpx
import pytest

from procs import Proc, start_echo, start_gateway

__all__ = ["echo", "echo2", "Scripted", "scripted", "gateway", "doc", "MiB", "block",
           "sha_of_blocks"]

MiB = 1 << 20


def block() -> bytes:
    """1 MiB of incompressible bytes, the same every time."""
    return hashlib.sha256(b"pe2e").digest() * (MiB // 32)


def sha_of_blocks(n_bytes: int) -> str:
    b = block()
    h = hashlib.sha256()
    left = n_bytes
    while left:
        piece = b[:min(left, MiB)]
        h.update(piece)
        left -= len(piece)
    return h.hexdigest()


@pytest.fixture(scope="module")
def echo():
    p = start_echo()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def echo2():
    """A second echo backend (set-backend-service tests tell them apart by port)."""
    p = start_echo()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def scripted():
    s = Scripted()
    yield s
    s.close()


def gateway(tmp_path_factory, cfg: dict) -> Proc:
    return start_gateway(tmp_path_factory.mktemp("gw"), cfg)


def doc(r: httpx.Response) -> dict:
    """The echo backend's report of what it received."""
    assert r.status_code == 200, (r.status_code, r.text[:300])
    return r.json()


class Scripted:
    def __init__(self) -> None:
        self.heads: list[dict] = []
        self.sunk = 0
        self.gate = threading.Event()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._closed = True
        self.gate.set()
        self._sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                s, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s: socket.socket) -> None:
        f = s.makefile("rb")
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                method, target, _ = line.decode("latin-1").split(" ", 2)
                head: dict = {"method": method, "target": target}
                while True:
                    h = f.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    n, _, v = h.decode("latin-1").partition(":")
                    head[n.strip().lower()] = v.strip()
                self.heads.append(head)
                length, digest = self._body(f, head)
                self._answer(s, target, length, digest)
        except (OSError, ValueError):
            pass
        finally:
            f.close()
            s.close()

    def _body(self, f, head: dict) -> tuple[int, str]:
        h = hashlib.sha256()
        size = 0
        if "chunked" in head.get("transfer-encoding", ""):
            while True:
                n = int(f.readline().split(b";")[0], 16)
                if n == 0:
                    while f.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                left = n
                while left:
                    piece = f.read(min(left, 65536))
                    h.update(piece)
                    left -= len(piece)
                    size += len(piece)
                    self.sunk += len(piece)
                f.readline()
        else:
            left = int(head.get("content-length", "0") or 0)
            while left:
                piece = f.read(min(left, 65536))
                if not piece:
                    raise ValueError("short body")
                h.update(piece)
                left -= len(piece)
                size += len(piece)
                self.sunk += len(piece)
        return size, h.hexdigest()

    @staticmethod
    def _send(s: socket.socket, status: int, ctype: str, body: bytes,
              reason: str = "X") -> None:
        s.sendall(b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s"
                  % (status, reason.encode(), ctype.encode(), len(body), body))

    def _answer(self, s: socket.socket, target: str, length: int, digest: str) -> None:
        path, _, query = target.partition("?")
        if path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            self._send(s, code, "application/json", json.dumps({"status": code}).encode())
        elif path == "/xml":
            self._send(s, 200, "application/xml",
                       b'<order id="7"><item>a</item><item>b</item></order>')
        elif path.startswith("/bytes/"):
            n = int(path.rsplit("/", 1)[1])
            s.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
                      b"content-length: %d\r\n\r\n" % n)
            b = block()
            sent = 0
            while sent < n:
                if query == "gate" and sent == MiB:
                    self.gate.wait(30)
                piece = b[:min(n - sent, 65536)] if sent % MiB == 0 else \
                    b[sent % MiB:sent % MiB + min(n - sent, 65536)]
                s.sendall(piece)
                sent += len(piece)
        elif path == "/sink":
            self._send(s, 200, "application/json",
                       json.dumps({"length": length, "sha256": digest}).encode())
        else:
            self._send(s, 200, "text/plain", target.encode(), "OK")


def wait_for(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll until `predicate()` holds (tests never sleep a fixed time to assert)."""
    import time
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def optional(value: Optional[str]) -> str:
    return value or ""
