"""A threaded HTTP/1.1 backend for the retry and client-abort tests, controlled by path.

Every request is recorded under its key (the path's last segment) with its arrival time
(monotonic) and body, so a test reads how many attempts reached the backend and when:

- `/fail/N/KEY`: the first N requests for KEY answer 500, the rest 200 (`attempt k`);
- `/close/N/KEY`: the first N requests close the connection without an answer (the
  gateway sees a backend connection failure), the rest 200;
- `/always/STATUS/KEY`: always STATUS;
- `/barrier/N/KEY`: 500, but only once N requests for KEY have arrived; later requests
  (the retries) wait for `release` first, then answer 500;
- `/slow/KEY`: answers 200 after `release` is set (at most 60 s), or with `?delay=S` after
  S seconds; `closed[KEY]` is set when the gateway closed that connection before the
  answer (the cancelled backend request).
"""

from __future__ import annotations

import socket
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["RetryBackend"]


class RetryBackend:
    """`keepalive=False`: every answer closes its connection (so no attempt of the gateway
    meets a pooled connection the backend closed, which it would retry once by itself)."""

    def __init__(self, keepalive: bool = True) -> None:
        self.keepalive = keepalive
        self.lock = threading.Lock()
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self.bodies: dict[str, list[bytes]] = defaultdict(list)
        self.release = threading.Event()
        self.arrived = threading.Condition(self.lock)
        self.closed: dict[str, threading.Event] = defaultdict(threading.Event)
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                backend._handle(self)

            do_POST = do_PUT = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, key: str) -> int:
        with self.lock:
            return len(self.arrivals[key])

    def times(self, key: str) -> list[float]:
        with self.lock:
            return list(self.arrivals[key])

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    # -- serving --------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        n = int(h.headers.get("content-length") or 0)
        body = h.rfile.read(n) if n else b""
        parts = h.path.split("?")[0].strip("/").split("/")
        kind, key = parts[0], parts[-1]
        with self.lock:
            self.arrivals[key].append(time.monotonic())
            self.bodies[key].append(body)
            k = len(self.arrivals[key])
            self.arrived.notify_all()
        if kind == "fail":
            self._answer(h, 500 if k <= int(parts[1]) else 200, f"attempt {k}")
        elif kind == "close":
            if k <= int(parts[1]):
                h.close_connection = True
                h.connection.shutdown(2)
                return
            self._answer(h, 200, f"attempt {k}")
        elif kind == "always":
            self._answer(h, int(parts[1]), f"attempt {k}")
        elif kind == "barrier":
            need = int(parts[1])
            with self.lock:
                if k <= need:
                    self.arrived.wait_for(lambda: len(self.arrivals[key]) >= need, 60)
            if k > need:
                self.release.wait(60)
            self._answer(h, 500, f"attempt {k}")
        elif kind == "slow":
            h.connection.settimeout(0.05)
            query = h.path.partition("?")[2]
            delay = float(query.split("=")[1]) if query.startswith("delay=") else 60.0
            deadline = time.monotonic() + delay
            while not self.release.is_set() and time.monotonic() < deadline:
                try:
                    if h.connection.recv(1, socket.MSG_PEEK) == b"":   # EOF: closed by the peer
                        self.closed[key].set()
                        return
                except TimeoutError:
                    continue
                except OSError:
                    self.closed[key].set()
                    return
            self._answer(h, 200, "slow answer")
        else:
            self._answer(h, 404, "unknown")

    def _answer(self, h: BaseHTTPRequestHandler, status: int, text: str) -> None:
        data = text.encode()
        try:
            h.send_response(status)
            if not self.keepalive:
                h.send_header("connection", "close")
                h.close_connection = True
            h.send_header("content-type", "text/plain")
            h.send_header("content-length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        except OSError:
            pass
