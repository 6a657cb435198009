"""Upstream connection pools: one per backend, HTTP/1.1 keep-alive, bounded.

Strategy (nginx `keepalive` / Envoy's HTTP/1 pool):
- idle connections are kept LIFO (the most recently used is the most likely alive and warm)
  and dropped after the backend's `idle_timeout`;
- before reuse an idle connection is checked without blocking (`MSG_PEEK`): a backend that
  closed it, reset it or sent unsolicited bytes gets it discarded instead of reused;
- at most `max_connections` are open (in use + idle); a request that finds the pool full
  waits for one up to `connect_timeout`, then gets 503 (Envoy's overflow);
- connect errors raise `UpstreamConnectError` (→ 502), a connect timeout
  `UpstreamTimeout` (→ 504, as nginx's proxy_connect_timeout).
A connection is returned with `release()` only when its HTTP/1.1 exchange ended cleanly and
both sides allow reuse (`ClientConnection.is_reusable`); anything else is closed.

Failures carry their answer (`UpstreamError.status`, `.public`): the client is told a short
fixed text per case, as Envoy and nginx do, never a backend address or errno text; the
exception's own text is the detail, for the log (`log_failure`, with the request id).
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
from typing import Optional, Sequence

import trio

from ..gateway.config import BackendConfig
from ..protocol import Data, EndOfMessage, Request
from ..protocol.http1 import ClientConnection, ForwardedHead
from .transport import SocketTransport, StreamTransport, Transport, Watchdog

__all__ = ["UpstreamPool", "Upstream", "UpstreamError", "UpstreamConnectError",
           "UpstreamTimeout", "PoolOverflow", "H1Exchange", "connect_backend",
           "client_ssl_context", "log_failure", "CONNECT_FAILED", "TIMED_OUT", "POOL_FULL",
           "BAD_RESPONSE", "STREAM_RESET", "CLOSED", "BackendUnavailable", "BREAKER_OPEN",
           "UNHEALTHY", "NO_MEMBER"]

log = logging.getLogger("apigw_core.runtime")

# What a client is told when its backend fails (the detail goes to the log only).
CONNECT_FAILED = "backend connection failed"
TIMED_OUT = "backend did not answer in time"
POOL_FULL = "backend connection pool is full"
BAD_RESPONSE = "backend sent an invalid response"
STREAM_RESET = "backend reset the stream"
CLOSED = "backend closed the connection"
# A backend the gateway does not try (runtime/balance.py); {backend} is its config name.
BREAKER_OPEN = "backend {backend} is unavailable: its circuit breaker is open"
UNHEALTHY = "backend {backend} is unavailable: its health checks fail"
NO_MEMBER = ("no backend of pool {backend} is available (circuit breakers open, "
             "unhealthy or ejected)")


class UpstreamError(Exception):
    """No exchange with the backend: `status` and `public` are the client's answer, the
    exception's text is the detail for the log."""

    status = 502
    public = CONNECT_FAILED


class UpstreamConnectError(UpstreamError):
    """The backend refused the connection or could not be reached."""


class UpstreamTimeout(UpstreamError):
    """The backend did not accept the connection (or answer) in time."""

    status = 504
    public = TIMED_OUT


class BackendUnavailable(UpstreamError):
    """Not tried: the breaker is open, or no member is available (`public` names it)."""

    status = 503

    def __init__(self, public: str, detail: str) -> None:
        super().__init__(detail)
        self.public = public


class PoolOverflow(UpstreamError):
    """Every allowed connection to the backend is busy."""

    status = 503
    public = POOL_FULL


def log_failure(request_id: bytes, backend: str, status: int, detail: str,
                mid_response: bool = False) -> None:
    """Log a backend failure that the client sees as `status` (or as an abort)."""
    log.warning("request %s: backend %s: %s (%s)", request_id.decode("latin-1"), backend,
                detail, "aborted mid-response" if mid_response else f"answered {status}")


class Upstream:
    """One connection to a backend: its transport and its sans-IO HTTP/1.1 state."""

    __slots__ = ("transport", "conn", "idle_since", "reused")

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.conn = ClientConnection()
        self.idle_since = 0.0
        self.reused = False


def client_ssl_context(backend: BackendConfig,
                       alpn: Sequence[str] = ("http/1.1",)) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=backend.tls.ca)
    if not backend.tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if backend.tls.cert is not None:   # backend mTLS: tls.client-certificate, authentication-certificate
        ctx.load_cert_chain(backend.tls.cert, backend.tls.key, backend.tls.password)
    ctx.set_alpn_protocols(list(alpn))
    return ctx


class H1Exchange:
    """One request/response on a pooled HTTP/1.1 connection, in the shape the proxy
    drives every upstream exchange (HTTP/2 streams have the same verbs)."""

    __slots__ = ("pool", "up", "conn", "transport", "reused", "answered", "_request")

    def __init__(self, pool: "UpstreamPool", up: Upstream,
                 request: "Request | ForwardedHead") -> None:
        self.pool = pool
        self.up = up
        self.conn = up.conn
        self.transport = up.transport
        self.reused = up.reused
        self.answered = False  # a byte of the response arrived: never retried after that
        self._request = request   # for `chunked`, looked at only with trailers
        up.conn.send(request)

    @property
    def chunked(self) -> bool:
        """The request goes chunked (the only HTTP/1.1 framing that carries trailers)."""
        r = self._request
        if r.__class__ is ForwardedHead:
            return r.chunked  # type: ignore[union-attr]
        for name, _ in r.headers:  # type: ignore[union-attr]
            if name == b"transfer-encoding":
                return True
        return False

    def send_data(self, data: bytes) -> None:
        self.conn.send(Data(1, data))

    def send_end(self, trailers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        # Only chunked framing carries trailers on HTTP/1.1: after a Content-Length (an
        # HTTP/2 client's, its body streamed) they are dropped, as RFC 9110 §6.5.1 allows
        self.conn.send(EndOfMessage(1, trailers if trailers and self.chunked else ()))

    async def flush(self, timeout: float) -> None:
        data = self.conn.data_to_send()
        if data:
            await self.transport.send(data, timeout)

    async def receive(self, timeout: float) -> list:
        """The next response events; TransportTimeout, TransportClosed or ProtocolError
        when the backend does not answer properly."""
        data = await self.transport.receive(timeout)
        events = self.conn.receive_data(data)
        if data:
            self.answered = True
        return events

    def release(self, ok: bool) -> None:
        if ok:
            self.pool.release(self.up)
        else:
            self.pool.discard(self.up)


class UpstreamPool:
    """Connections to one backend.  Not thread-safe; one per trio run."""

    def __init__(self, backend: BackendConfig, watchdog: Optional[Watchdog] = None) -> None:
        self.backend = backend
        self.watchdog = watchdog
        self.authority = (backend.host.encode() if backend.port == (
            443 if backend.scheme == "https" else 80) else
            b"%s:%d" % (_bracket(backend.host).encode(), backend.port))
        self._idle: list[Upstream] = []
        self._open = 0
        self._freed = trio.lowlevel.ParkingLot()
        self._ssl = client_ssl_context(backend) if backend.scheme == "https" else None
        self.closed = False

    @property
    def open_connections(self) -> int:
        return self._open

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    async def open(self, request: "Request | ForwardedHead") -> H1Exchange:
        """An exchange for `request` (its head queued, not yet written)."""
        up = self._reuse() if self._idle else None   # the usual case: no await at all
        return H1Exchange(self, up if up is not None else await self.acquire(), request)

    def _reuse(self) -> Optional[Upstream]:
        """A live idle connection (the newest first), or None."""
        idle = self._idle
        now = trio.current_time()
        limit = self.backend.idle_timeout
        while idle:
            up = idle.pop()
            if now - up.idle_since < limit and up.transport.alive():  # type: ignore
                up.conn = ClientConnection()
                up.reused = True
                return up
            self._drop(up)
        return None

    async def acquire(self) -> Upstream:
        """A connection ready for one request: reused if a live idle one exists."""
        if self._idle:
            up = self._reuse()
            if up is not None:
                return up
        if self._open >= self.backend.max_connections:
            with trio.move_on_after(self.backend.connect_timeout):
                while self._open >= self.backend.max_connections and not self._idle:
                    await self._freed.park()
            if self._idle:
                return await self.acquire()
            if self._open >= self.backend.max_connections:
                raise PoolOverflow(f"backend {self.backend.name}: "
                                   f"{self.backend.max_connections} connections busy")
        self._open += 1
        try:
            return Upstream(await self._connect())
        except BaseException:
            self._open -= 1
            if self._freed:
                self._freed.unpark()
            raise

    async def _connect(self) -> Transport:
        return await connect_backend(self.backend, self._ssl, self.watchdog)

    def adopt(self, transport: Transport) -> None:
        """Take a fresh connection made elsewhere (an `http-version: 2or1` backend that
        chose HTTP/1.1 through ALPN) as an idle one."""
        self._open += 1
        up = Upstream(transport)
        up.idle_since = trio.current_time()
        self._idle.append(up)

    def release(self, up: Upstream) -> None:
        """Give a connection back after its exchange: kept if reusable, else closed."""
        if up.conn.is_reusable and not self.closed:
            up.idle_since = trio.current_time()
            self._idle.append(up)
            if self._freed:
                self._freed.unpark()
        else:
            self._drop(up)

    def discard(self, up: Upstream) -> None:
        """Reset a connection whose exchange did not end cleanly (never reused): the
        backend sees an abort, not a request that looks complete."""
        self._drop(up, reset=True)

    def _drop(self, up: Upstream, reset: bool = False) -> None:
        self._open -= 1
        if reset:
            up.transport.abort()
        else:
            up.transport.close_now()
        if self._freed:
            self._freed.unpark()

    def close(self) -> None:
        """Close the idle connections; in-use ones are closed by their release()."""
        self.closed = True
        while self._idle:
            self._drop(self._idle.pop())


async def connect_backend(b: BackendConfig, ssl_ctx: Optional[ssl.SSLContext],
                          watchdog: Optional[Watchdog]) -> Transport:
    """A connection to backend `b` (TLS when `ssl_ctx`), within its connect timeout."""
    with trio.move_on_after(b.connect_timeout):
        try:
            infos = await trio.socket.getaddrinfo(b.host, b.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise UpstreamConnectError(f"resolve {b.host}: {exc}") from exc
        last: Optional[Exception] = None
        for family, type_, proto, _, addr in infos:
            sock = socket.socket(family, type_, proto)
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:
                    sock.connect(addr)
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(sock)
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, os.strerror(err))
            except OSError as exc:
                trio.lowlevel.notify_closing(sock)
                sock.close()
                last = exc
                continue
            except BaseException:
                trio.lowlevel.notify_closing(sock)
                sock.close()
                raise
            if ssl_ctx is None:
                return SocketTransport(sock, None, watchdog)
            return await _tls(b, ssl_ctx, sock)
        raise UpstreamConnectError(f"connect to {b.host}:{b.port}: {last}")
    raise UpstreamTimeout(f"connect to {b.host}:{b.port}: timed out "
                          f"after {b.connect_timeout}s")

async def _tls(b: BackendConfig, ctx: ssl.SSLContext, sock: socket.socket) -> Transport:
    stream = trio.SSLStream(trio.SocketStream(trio.socket.from_stdlib_socket(sock)),
                            ctx, server_hostname=b.host, https_compatible=True)
    try:
        await stream.do_handshake()
        # a backend that refuses our certificate (TLS 1.3: after the handshake) may have
        # closed already: getpeername() fails, and that is a failed connect too
        return StreamTransport(stream, sock)
    except (trio.BrokenResourceError, ssl.SSLError, OSError) as exc:
        await trio.aclose_forcefully(stream)
        raise UpstreamConnectError(f"TLS to {b.host}: {exc}") from exc


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host

