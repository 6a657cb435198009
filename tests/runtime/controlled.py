"""A backend the pool, breaker and health tests steer while the gateway runs.

`Steered(name)` is a threaded HTTP/1.1 server on 127.0.0.1 (keep-alive) whose behaviour
the test changes at any time: `status` (and `headers`, e.g. Retry-After) of its answers,
`health` (the status of `/healthz`), `mode` ("ok"; "slow" waits `delay` seconds; "cut"
sends half the announced body and closes).  Every answer's body is its `name`, so a test
counts which member served a request; `hits` counts the requests other than health
checks, `checks` the health checks.  `stop()` closes the port (connections refused) and
`start()` opens the same port again: a backend that goes down and comes back.
"""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

__all__ = ["Steered"]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    conns: set

    def get_request(self):
        sock, addr = super().get_request()
        self.conns.add(sock)
        return sock, addr


class Steered:
    def __init__(self, name: str, status: int = 200, port: int = 0) -> None:
        self.name = name
        self.status = status
        self.headers: dict[str, str] = {}
        self.health = 200
        self.mode = "ok"
        self.delay = 0.0
        self.hits = 0
        self.checks = 0
        self.paths: list[str] = []
        self.cookies: list[Optional[str]] = []
        self._lock = threading.Lock()
        self._srv: Optional[_Server] = None
        self.port = port
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True    # head and body are two writes

            def log_message(self, *args) -> None:
                pass

            def _answer(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                if n:
                    self.rfile.read(n)
                if self.path.startswith("/healthz"):
                    with owner._lock:
                        owner.checks += 1
                    self._send(owner.health, b"health")
                    return
                with owner._lock:
                    owner.hits += 1
                    owner.paths.append(self.path)
                    owner.cookies.append(self.headers.get("cookie"))
                if owner.mode == "slow":
                    time.sleep(owner.delay)
                body = owner.name.encode()
                if owner.mode == "cut":
                    self.send_response(200)
                    self.send_header("content-length", str(len(body) + 1000))
                    self.end_headers()
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self._send(owner.status, body, owner.headers)

            def _send(self, status: int, body: bytes, extra: Optional[dict] = None) -> None:
                self.send_response(status)
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

        self._srv = _Server(("127.0.0.1", self.port), Handler)
        self._srv.conns = set()
        self.port = self._srv.server_address[1]
        threading.Thread(target=self._srv.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._srv is not None:
            self._srv.shutdown()
            self._srv.server_close()
            for c in list(self._srv.conns):    # kept-alive connections go down too
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._srv = None

    def reset(self) -> None:
        with self._lock:
            self.hits = self.checks = 0
            self.paths.clear()
            self.cookies.clear()

    def __enter__(self) -> "Steered":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
