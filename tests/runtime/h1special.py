"""An HTTP/1.1 backend for the HTTP/2 end-to-end tests, with answers the echo does not give.

A plain listening socket on 127.0.0.1, one thread per connection, keep-alive.  It reads
request heads (and Content-Length bodies) and answers by path:

- `/trailers`: a chunked 200 (`hello`, `world`) with the trailers `x-checksum` and `x-count`;
- `/204`: 204 No Content with an `x-n` header;
- `/bytes/N`: N bytes of `BLOCK` repeated, with Content-Length (`sent` counts the bytes
  written so far, over all requests: how far a stalled client let the gateway read);
- `/slow/S`: waits S seconds, then a 200 `slow`;
- `/hold`: counted in `holding` while it waits for the test to set `release` (an Event,
  60 s at most), then a 200 `held`: a test knows when requests are in flight and decides
  when they end, instead of guessing with delays;
- `/drop`: reads the head and at most 64 KiB of the body, then closes without answering;
- anything else: 200 with the path as body.

The query string is ignored (tests use it to tell requests apart).

`heads` keeps every request head received (bytes), for tests that look at what the
gateway forwarded; `closed` counts the connections the gateway closed or reset.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time

__all__ = ["Special", "BLOCK", "MiB", "pattern_sha256"]

MiB = 1 << 20
BLOCK = hashlib.sha256(b"apigw h2").digest() * (MiB // 32)   # 1 MiB, not all one byte


def pattern_sha256(n: int) -> str:
    """The sha256 of `/bytes/n`'s body."""
    h = hashlib.sha256()
    while n:
        k = min(n, len(BLOCK))
        h.update(BLOCK[:k])
        n -= k
    return h.hexdigest()


class Special:
    def __init__(self) -> None:
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(128)
        self.port = self.lsock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.sent = 0
        self.heads: list[bytes] = []
        self.closed = 0
        self.holding = 0
        self.release = threading.Event()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.lsock.close()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _conn(self, c: socket.socket) -> None:
        buf = b""
        try:
            with c:
                while True:
                    while b"\r\n\r\n" not in buf:
                        data = c.recv(65536)
                        if not data:
                            return
                        buf += data
                    i = buf.index(b"\r\n\r\n")
                    head, buf = buf[:i], buf[i + 4:]
                    with self._lock:
                        self.heads.append(head)
                    lines = head.split(b"\r\n")
                    target = lines[0].split(b" ")[1].decode().partition("?")[0]
                    clen = 0
                    for line in lines[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            clen = int(value)
                    if target == "/drop":  # read a little of the body, then hang up
                        while len(buf) < min(clen, 65536):
                            data = c.recv(65536)
                            if not data:
                                return
                            buf += data
                        return
                    while len(buf) < clen:
                        data = c.recv(65536)
                        if not data:
                            return
                        buf += data
                    buf = buf[clen:]
                    self._answer(c, target)
        except OSError:
            pass
        finally:
            with self._lock:
                self.closed += 1

    def _answer(self, c: socket.socket, target: str) -> None:
        if target == "/trailers":
            c.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n"
                      b"transfer-encoding: chunked\r\ntrailer: x-checksum, x-count\r\n\r\n"
                      b"5\r\nhello\r\n5\r\nworld\r\n"
                      b"0\r\nx-checksum: sha-abc\r\nx-count: 2\r\n\r\n")
        elif target == "/204":
            c.sendall(b"HTTP/1.1 204 No Content\r\nx-n: 1\r\n\r\n")
        elif target.startswith("/bytes/"):
            n = int(target[7:])
            c.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
                      b"content-length: %d\r\n\r\n" % n)
            view = memoryview(BLOCK)
            while n:
                k = min(n, len(BLOCK))
                c.sendall(view[:k])
                with self._lock:
                    self.sent += k
                n -= k
        elif target == "/hold":
            with self._lock:
                self.holding += 1
            try:
                self.release.wait(60)
            finally:
                with self._lock:
                    self.holding -= 1
            c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nheld")
        elif target.startswith("/slow/"):
            time.sleep(float(target[6:]))
            c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow")
        else:
            body = target.encode()
            c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
