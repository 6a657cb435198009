"""HTTP/2 towards backends: few multiplexed connections per backend, streams as exchanges.

Strategy (Envoy's HTTP/2 pool).  A backend with `http-version: 2` gets HTTP/2 over TLS
(ALPN `h2`) or, for an `http://` URL, cleartext h2c with prior knowledge; `2or1` offers
`h2` and `http/1.1` over TLS and speaks whatever the backend picks (over cleartext there is
nothing to negotiate: HTTP/1.1).  Requests become streams on the first connection that can
open one (`ClientConnection.can_open`: the backend's SETTINGS_MAX_CONCURRENT_STREAMS, no
GOAWAY); when none can, another connection is opened, up to the backend's
`max-connections`, and then a request waits for a free stream up to `connect-timeout`
(503 after, as for HTTP/1.1).  A connection that received GOAWAY takes no new streams and
goes away when its last stream ends.

Each connection has a reader and a writer task (the writer is the only one that writes, as
on the server side) in the gateway's connection nursery.  An `H2Exchange` has the verbs the
proxy drives for HTTP/1.1 (`send_data`, `send_end`, `flush`, `receive`, `release`):
`receive` hands over the stream's queued events and gives the backend its flow-control
credit back for the previous batch only then, i.e. once the proxy has written it to the
client: a slow client slows the backend, and at most one stream window per stream is held.
"""

from __future__ import annotations

import collections
import logging
from typing import Optional, Sequence

import trio

from ..gateway.config import BackendConfig
from ..protocol import (
    ConnectionClosed,
    Data,
    EndOfMessage,
    ProtocolError,
    Request,
    StreamReset,
)
from ..protocol.alpn import H2, alpn_protocols, protocol_from_alpn
from ..protocol.http2 import ClientConnection, H2Limits
from .transport import Transport, TransportClosed, TransportTimeout, Watchdog
from .upstream import (PoolOverflow, UpstreamConnectError, UpstreamPool, UpstreamTimeout,
                       client_ssl_context, connect_backend)

__all__ = ["H2UpstreamPool", "H2Exchange"]

log = logging.getLogger("apigw_core.runtime")

_CANCEL = 8
_FOREVER = 365 * 86400.0


class H2Exchange:
    """One request/response as a stream on an HTTP/2 backend connection."""

    __slots__ = ("up", "sid", "queue", "lot", "reused", "answered", "ended", "_unacked",
                 "finished", "deadline", "timed_out")

    def __init__(self, up: "H2UpConn", sid: int, reused: bool) -> None:
        self.up = up
        self.sid = sid
        self.queue: collections.deque = collections.deque()
        self.lot: Optional[trio.lowlevel.ParkingLot] = None  # made when receive() waits
        self.reused = reused
        self.answered = False
        self.ended = False      # the response ended (EndOfMessage or reset)
        self.finished = False   # released
        self._unacked = 0       # bytes handed to the proxy, credit not yet given back
        self.deadline = 0.0     # of the receive() waiting, for the pool's watchdog
        self.timed_out = False

    def send_data(self, data: bytes) -> None:
        self.up.conn.send(Data(self.sid, data))

    def send_end(self, trailers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        self.up.conn.send(EndOfMessage(self.sid, trailers))

    async def flush(self, timeout: float) -> None:
        """Let the writer frame what is queued; wait while this stream has body bytes
        queued that the backend's windows do not let out (an upload goes at the
        backend's pace)."""
        up = self.up
        up.kick()
        conn = up.conn
        sid = self.sid
        if not conn.stalled(sid):   # (a unary call's whole request fits: no wait)
            return
        with trio.move_on_after(timeout):
            while conn.stalled(sid) and not self.ended:
                if up.dead:
                    raise TransportClosed("backend connection lost")
                await up.window_lot.park()
            return
        raise TransportTimeout("backend did not open its flow-control window")

    async def receive(self, timeout: float) -> list:
        """The response events queued so far (waiting up to `timeout` for one)."""
        up = self.up
        if self._unacked:
            up.conn.acknowledge_received(self.sid, self._unacked)
            self._unacked = 0
            up.kick()
        q = self.queue
        if not q:
            if self.lot is None:
                self.lot = trio.lowlevel.ParkingLot()
            wd = up.pool.watchdog
            if wd is None:
                with trio.move_on_after(timeout):
                    while not q:
                        if up.dead:
                            raise TransportClosed("backend connection lost")
                        await self.lot.park()
            else:   # the watchdog's sweep ends the wait (expire), as for a socket's
                # receive: no CancelScope per response waited for
                self.deadline = trio.current_time() + timeout
                self.timed_out = False
                watched = wd.watched
                watched.add(self)
                try:
                    while not q and not self.timed_out:
                        if up.dead:
                            raise TransportClosed("backend connection lost")
                        await self.lot.park()
                finally:
                    watched.discard(self)
            if not q:
                raise TransportTimeout("backend did not answer in time")
        events = list(q)
        q.clear()
        for ev in events:
            if ev.__class__ is Data:
                self._unacked += len(ev.data)
        self.answered = True
        return events

    def expire(self) -> None:
        """The watchdog's call when receive()'s deadline passed: its wait ends."""
        self.timed_out = True
        if self.lot is not None:
            self.lot.unpark_all()

    def release(self, ok: bool) -> None:
        if self.finished:
            return
        self.finished = True
        up = self.up
        if not self.ended and not up.dead:
            up.conn.send(StreamReset(self.sid, _CANCEL))  # abandoned: the backend stops
        elif self._unacked and not up.dead:
            up.conn.acknowledge_received(self.sid, self._unacked)
        up.streams.pop(self.sid, None)
        if not up.streams and up._wake is not None:
            up._wake.cancel()
        up.kick()
        up.pool.stream_ended(up)


class H2UpConn:
    """One HTTP/2 connection to a backend, with its reader and writer tasks."""

    def __init__(self, pool: "H2UpstreamPool", transport: Transport,
                 conn: ClientConnection) -> None:
        self.pool = pool
        self.transport = transport
        self.conn = conn
        self.streams: dict[int, H2Exchange] = {}
        self.dead = False
        self.used = False
        self.window_lot = trio.lowlevel.ParkingLot()
        self._kick_lot = trio.lowlevel.ParkingLot()
        self._wake: Optional[trio.CancelScope] = None  # the reader's wait while busy
        # the backend's first bytes (its SETTINGS) arrived: until then its
        # MAX_CONCURRENT_STREAMS is unknown and no stream is opened
        self.settled = trio.Event()

    def kick(self) -> None:
        if self._kick_lot:
            self._kick_lot.unpark_all()

    def open(self, request: Request) -> H2Exchange:
        conn = self.conn
        sid = conn.next_stream_id
        ex = H2Exchange(self, sid, self.used)
        self.used = True
        conn.send(Request(sid, request.method, request.target, request.headers))
        self.streams[sid] = ex
        self.kick()
        return ex

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer)
                await self._reader()
                nursery.cancel_scope.cancel()
        finally:
            self._lost()
            self.settled.set()
            self.transport.close_now()
            self.pool.forget(self)

    async def _reader(self) -> None:
        conn = self.conn
        idle = self.pool.backend.idle_timeout
        while True:
            if conn.should_close and not self.streams:
                return
            try:
                data = await self._receive(idle)
            except (TransportTimeout, TransportClosed):
                return
            if data is None:
                continue  # the last stream ended: idle timeout and GOAWAY apply again
            try:
                events = conn.receive_data(data)
            except ProtocolError as exc:
                log.info("HTTP/2 backend %s: %s", self.pool.backend.name, exc)
                self.kick()
                return
            if not self.settled.is_set():
                self.settled.set()
                self.pool.stream_ended(self)  # waiting requests may use it now
            for ev in events:
                t = ev.__class__
                if t is ConnectionClosed:
                    if ev.error_code:  # type: ignore[attr-defined]
                        return
                    continue  # graceful GOAWAY: can_open is False now
                ex = self.streams.get(ev.stream_id)  # type: ignore[attr-defined]
                if ex is None:
                    if t is Data:  # nobody will read it: credit back at once
                        conn.acknowledge_received(ev.stream_id, len(ev.data))  # type: ignore
                    continue
                ex.queue.append(ev)
                if t is EndOfMessage or t is StreamReset:
                    ex.ended = True
                if ex.lot:
                    ex.lot.unpark_all()
            if self.window_lot:
                self.window_lot.unpark_all()
            self.kick()
            if not data:
                return

    async def _receive(self, idle: float) -> Optional[bytes]:
        """The next bytes; while streams are open, with no timeout, but the release of
        the last stream wakes the wait (None) so that an idle connection times out and a
        connection that got GOAWAY goes away."""
        if not self.streams:
            return await self.transport.receive(idle)
        with trio.CancelScope() as scope:
            self._wake = scope
            try:
                return await self.transport.receive(_FOREVER)
            finally:
                self._wake = None
        return None

    async def _writer(self) -> None:
        conn = self.conn
        timeout = self.pool.write_timeout
        try:
            while True:
                data = conn.data_to_send()
                if data:
                    if self.window_lot:
                        self.window_lot.unpark_all()
                    await self.transport.send(data, timeout)
                    continue
                await self._kick_lot.park()
        except (TransportClosed, TransportTimeout):
            self._lost()

    def _lost(self) -> None:
        self.dead = True
        for ex in self.streams.values():
            if ex.lot:
                ex.lot.unpark_all()
        if self.window_lot:
            self.window_lot.unpark_all()


class H2UpstreamPool:
    """The pool of a backend with `http-version: 2` or `2or1`."""

    def __init__(self, backend: BackendConfig, watchdog: Optional[Watchdog] = None,
                 write_timeout: float = 60.0) -> None:
        self.backend = backend
        self.watchdog = watchdog
        self.write_timeout = write_timeout
        self.h1 = UpstreamPool(backend, watchdog)  # for 2or1 when ALPN says http/1.1
        self.authority = self.h1.authority
        tls = backend.scheme == "https"
        # 2or1: HTTP/1.1 over cleartext, or once the backend chose it through ALPN
        self._h1_only = backend.http_version == "2or1" and not tls
        self._ssl = client_ssl_context(
            backend, alpn_protocols(True, backend.http_version == "2or1")) if tls else None
        self._scheme = b"https" if tls else b"http"
        self.conns: list[H2UpConn] = []
        self._connecting = 0
        self._freed = trio.lowlevel.ParkingLot()
        self.nursery: Optional[trio.Nursery] = None  # set by the gateway
        self.closed = False

    async def open(self, request: Request):
        """An exchange for `request`: a new stream (or an HTTP/1.1 connection when the
        backend chose it)."""
        if self._h1_only:
            return await self.h1.open(request)
        deadline = trio.current_time() + self.backend.connect_timeout
        while True:
            settling = self._connecting > 0
            for up in self.conns:
                if not up.settled.is_set():
                    settling = True  # its stream limit is not known yet: wait for it
                elif not up.dead and up.conn.can_open:
                    return up.open(request)
            if self._h1_only:
                return await self.h1.open(request)
            if not settling and (len(self.conns) + self._connecting
                                 < self.backend.max_connections):
                up = await self._connect()
                if up is None:  # the backend chose HTTP/1.1 on this connection
                    return await self.h1.open(request)
                continue
            if trio.current_time() >= deadline:
                raise PoolOverflow(f"backend {self.backend.name}: every stream of "
                                   f"{len(self.conns)} connections busy")
            with trio.move_on_at(deadline):
                await self._freed.park()

    async def _connect(self) -> Optional[H2UpConn]:
        self._connecting += 1
        try:
            transport = await connect_backend(self.backend, self._ssl, self.watchdog)
        except BaseException:
            self._connecting -= 1
            raise
        self._connecting -= 1
        if self._ssl is not None:
            alpn = transport.stream.selected_alpn_protocol()  # type: ignore[attr-defined]
            if protocol_from_alpn(alpn) != H2:
                if self.backend.http_version == "2":
                    transport.abort()
                    raise UpstreamConnectError(
                        f"backend {self.backend.name} does not speak HTTP/2 (ALPN: {alpn})")
                self._h1_only = True  # it will choose the same next time
                self.h1.adopt(transport)
                return None
        up = H2UpConn(self, transport, ClientConnection(scheme=self._scheme,
                                                        limits=H2Limits()))
        self.conns.append(up)
        assert self.nursery is not None, "the gateway sets the pool's nursery"
        self.nursery.start_soon(up.run)
        with trio.move_on_after(self.backend.connect_timeout):
            await up.settled.wait()  # RFC 9113 §3.4: the server preface is SETTINGS
        if not up.settled.is_set():
            raise UpstreamTimeout(f"backend {self.backend.name}: no HTTP/2 SETTINGS "
                                  f"within {self.backend.connect_timeout}s")
        if up.dead:   # closed before its SETTINGS (a TLS 1.3 server refusing our
            # certificate does it after the handshake): a failed connect, not a retry loop
            raise UpstreamConnectError(f"backend {self.backend.name}: connection closed "
                                       f"before the HTTP/2 SETTINGS")
        return up

    def stream_ended(self, up: H2UpConn) -> None:
        if self._freed:
            self._freed.unpark_all()

    def forget(self, up: H2UpConn) -> None:
        if up in self.conns:
            self.conns.remove(up)
        if self._freed:
            self._freed.unpark_all()

    def close(self) -> None:
        self.closed = True
        self.h1.close()
        for up in list(self.conns):
            if not up.streams:
                up.conn.close(0)
                up.kick()
