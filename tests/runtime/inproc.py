"""In-process plumbing for the runtime's pieces (pools, drivers, the proxy) without
processes or listening ports: socket pairs, and small trio backends on their far ends.

- `Pairs`: a stand-in for a pool's connect step.  Each `connect()` makes a socket pair,
  returns a `SocketTransport` on one end (what the pool would get from a real connect) and
  hands the other end, as a trio SocketStream, to whoever serves it (`accepted`).
- `serve_h1(stream, answer)`: a minimal HTTP/1.1 backend on one such end: reads request
  heads (and Content-Length bodies) and writes `answer(target, nth)`'s bytes (then hangs
  up if it returns `(bytes, "close")`), or hangs up without answering when it returns
  None; records the requests and which connections it closed.
- `client_pair()`: (the server-side SocketTransport, a client trio SocketStream) for driving
  H1Driver / H2Driver from a test client in the same trio run.
- `config(...)`: a GatewayConfig from plain data (as a YAML file would give it).
- `run(fn)`: trio.run with a bound, so a wait that never ends fails instead of hanging.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Optional

import trio
import trio.testing

from apigw_core.gateway.config import GatewayConfig, parse_config
from apigw_core.runtime.transport import SocketTransport, Watchdog

__all__ = ["Pairs", "BackendLog", "serve_h1", "ok", "client_pair", "config", "run",
           "read_until"]


def run(fn: Callable[[], Awaitable[None]], *, virtual: bool = False,
        limit: float = 60.0) -> None:
    """`trio.run(fn)`, failing after `limit` s (virtual seconds on a MockClock)."""
    async def bounded() -> None:
        with trio.fail_after(limit):
            await fn()
    clock = trio.testing.MockClock(autojump_threshold=0) if virtual else None
    trio.run(bounded, clock=clock)


def _stream(sock: socket.socket) -> trio.SocketStream:
    return trio.SocketStream(trio.socket.from_stdlib_socket(sock))


class Pairs:
    """Connections made of socket pairs; `accepted` yields the far ends."""

    def __init__(self, watchdog: Optional[Watchdog] = None) -> None:
        self.watchdog = watchdog
        self.count = 0
        self._send, self.accepted = trio.open_memory_channel(64)

    async def connect(self, *_ignored) -> SocketTransport:
        a, b = socket.socketpair()
        self.count += 1
        await self._send.send(_stream(b))
        return SocketTransport(a, ("127.0.0.1", 9000 + self.count), self.watchdog)


@dataclass
class BackendLog:
    requests: list = field(default_factory=list)    # (connection no, nth, target)
    closed: list = field(default_factory=list)      # connection nos that saw EOF / closed


async def read_until(stream: trio.SocketStream, buf: bytearray, marker: bytes) -> bool:
    while marker not in buf:
        data = await stream.receive_some(65536)
        if not data:
            return False
        buf += data
    return True


async def serve_h1(stream: trio.SocketStream, conn_no: int, log: BackendLog,
                   answer: Callable[[bytes, int], Optional[bytes]]) -> None:
    buf = bytearray()
    nth = 0
    try:
        while await read_until(stream, buf, b"\r\n\r\n"):
            head, _, rest = bytes(buf).partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            target = lines[0].split(b" ")[1]
            n = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    n = int(value)
            buf = bytearray(rest)
            while len(buf) < n:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buf += data
            del buf[:n]
            nth += 1
            log.requests.append((conn_no, nth, target))
            out = answer(target, nth)
            if out is None:               # hang up without answering
                return
            hang_up = isinstance(out, tuple)  # (bytes, "close"): answer, then hang up
            await stream.send_all(out[0] if hang_up else out)
            if hang_up:
                return
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        log.closed.append(conn_no)
        await trio.aclose_forcefully(stream)


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%b" % (len(body), body)


def client_pair(watchdog: Optional[Watchdog] = None) -> tuple[SocketTransport,
                                                               trio.SocketStream]:
    a, b = socket.socketpair()
    return SocketTransport(a, ("127.0.0.1", 40000), watchdog), _stream(b)


def config(backends: dict, apis: Optional[list] = None, **server) -> GatewayConfig:
    data: dict = {
        "listeners": [{"bind": "127.0.0.1:0", "protocols": ["http1", "h2c"]}],
        "backends": backends,
        "apis": apis if apis is not None else [
            {"name": n, "path": f"/{n}", "backend": n} for n in backends],
    }
    if server:
        data["server"] = {k.replace("_", "-"): v for k, v in server.items()}
    return parse_config(data)
