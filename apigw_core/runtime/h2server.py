"""The HTTP/2 connection driver (server side): streams as tasks, one writer per connection.

Strategy (one writer per connection, ARCHITECTURE.md).  Three kinds of task share one
`http2.ServerConnection`, which is sans-IO and synchronous, so no lock is needed around it:
- the reader (the connection's own task) feeds received bytes to the connection and hands
  each event to its stream: a Request starts a stream task, Data / EndOfMessage go to that
  stream's queue, a StreamReset cancels its task;
- one task per stream runs the request handler with an `H2Stream`, which has the same verbs
  as the HTTP/1.1 `H1Stream` (the `stream.HTTPStream` contract), so the proxy does not know which protocol carries it;
- the writer is the only task that writes to the transport: it sleeps until kicked, then
  writes whatever `data_to_send()` frames (two tasks writing one trio stream at once raise
  BusyResourceError; one writer cannot).

Flow control ties a stream to its client's pace.  Inbound: a Data event's credit is given
back (`acknowledge_received`) only when the handler takes it from the queue, so a slow
backend stops the client after one stream window (64 KiB) per stream.  Outbound:
`H2Stream.flush()` waits until the writer has taken what the stream queued, and while the
client's windows leave no room for this stream (`available() == 0`), so at most one window
plus one read buffer is queued per stream, and one more read buffer is in a send stuck on
a client that does not read; a client that never opens its window (or never reads) is
dropped after `write_timeout`.

Timeouts: `idle_timeout` while no stream is open (then GOAWAY and close, as Envoy), none on
the connection while streams run (a long download is not idle), `body_timeout` for a
stream waiting for its request body (408), `write_timeout` for a stalled writer.
Graceful shutdown sends GOAWAY(NO_ERROR) on every connection, idle ones too (RFC 9113
§6.8: a client racing a request learns it was not processed), lets open streams finish,
then closes after a short lingering read (so the GOAWAY is read, not lost to a reset).

Limits as on HTTP/1.1 (ServerConfig): a header section over `max_head` bytes or
`max_fields` fields is answered 431 on its stream (the protocol reports it as
`RequestRejected`; only a block over twice `max_head` is a flood, GOAWAY); a request body
over `max_body` is answered 413 before anything is forwarded when its content-length says
so, or when the streamed body grows past it while nothing was answered yet, and else its
stream is reset with ENHANCE_YOUR_CALM (which gRPC clients read as RESOURCE_EXHAUSTED).
"""

from __future__ import annotations

import collections
import logging
from time import perf_counter as _now
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import trio

from ..protocol import (
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    InformationalResponse,
    ProtocolError,
    Request,
    StreamReset,
)
from ..protocol.events import _new_response  # a frozen event without __setattr__
from ..protocol.http2 import H2Limits, RequestRejected, ServerConnection
from .clock import with_date
from .stream import BodyError, ClientGone, Handler, Replies, Tunnel
from .transport import Transport, TransportClosed, TransportTimeout

if TYPE_CHECKING:
    from ..gateway.config import ServerConfig

__all__ = ["H2Driver", "H2Stream", "h2_limits"]

log = logging.getLogger("apigw_core.runtime")

_NO_ERROR, _INTERNAL_ERROR, _ENHANCE_YOUR_CALM = 0, 2, 11
_FOREVER = 365 * 86400.0
_LINGER = 2.0  # after our last GOAWAY, how long the client gets to read it and close


def h2_limits(settings: "ServerConfig") -> H2Limits:
    """HTTP/2 limits for a listener: H2Limits' defaults (Envoy's edge values), with the
    header section limited like an HTTP/1.1 head (431 over `max_head` bytes or `max_fields`
    fields; a flood only over twice `max_head`), and extended CONNECT (RFC 8441) advertised
    for WebSocket over HTTP/2 (APIs that do not allow it refuse the CONNECT)."""
    return H2Limits(max_header_list_size=2 * settings.max_head,
                    max_header_section=settings.max_head,
                    max_header_fields=settings.max_fields, enable_connect_protocol=True)


def _content_length(headers: Sequence[tuple[bytes, bytes]]) -> int:
    for name, value in headers:
        if name == b"content-length":
            return int(value)  # the protocol checked it is 1*DIGIT
    return -1


class _H2Tunnel(Tunnel):
    __slots__ = ("_st",)

    def __init__(self, st: "H2Stream") -> None:
        self._st = st

    async def receive(self, timeout: float) -> bytes:
        st = self._st
        if st.body_done:
            return b""
        try:
            ev = await st.receive_body(timeout)
        except BodyError:
            raise TransportTimeout("tunnel idle") from None
        return ev.data if ev.__class__ is Data else b""  # type: ignore[attr-defined]

    async def send(self, data: bytes) -> None:
        self._st.send_data(data)
        await self._st.flush()

    async def close(self) -> None:
        st = self._st
        if not st.response_complete:
            st.send_end()
            await st.flush()


class H2Stream(Replies):
    """One HTTP/2 request as a handler sees it: the verbs of `stream.HTTPStream`."""

    __slots__ = ("_drv", "request", "stream_id", "client", "scheme", "tls", "body_complete",
                 "response_started", "response_complete", "_sent_100", "_queue", "_lot",
                 "reset_code", "body_done", "eom_received", "scope", "no_credit",
                 "body_limit", "body_taken", "tel", "status", "t_resp", "bytes_out")

    def __init__(self, drv: "H2Driver", request: Request) -> None:
        self._drv = drv
        self.request = request
        self.stream_id = request.stream_id
        self.client = drv.transport.peer
        self.scheme = drv.scheme
        self.tls = drv.transport.tls   # clientcert.ConnectionTLS or None
        self.body_complete = False  # the whole body was here when the handler started
        self.eom_received = False   # the client ended its side of the stream
        self.body_done = False      # the handler took the EndOfMessage
        self.response_started = False
        self.response_complete = False
        self._sent_100 = False
        self._queue: collections.deque = collections.deque()
        self._lot: Optional[trio.lowlevel.ParkingLot] = None  # made when the body is awaited
        self.reset_code: Optional[int] = None
        self.scope: Optional[trio.CancelScope] = None
        self.no_credit = 0  # body bytes that came through an h2c upgrade, not DATA frames
        # server.max-body (a CONNECT's DATA is a tunnel, not a body: no limit)
        self.body_limit = None if request.method == b"CONNECT" else drv.settings.max_body
        self.body_taken = 0
        self.tel = None   # telemetry.py's Record, and what it reads at the end
        self.status = 0
        self.t_resp = 0.0
        self.bytes_out = 0

    @property
    def bytes_in(self) -> int:
        return self.body_taken

    def _feed(self, ev: Event) -> None:
        self._queue.append(ev)
        if ev.__class__ is EndOfMessage:
            self.eom_received = True
        lot = self._lot
        if lot:
            lot.unpark_all()

    # -- request body --------------------------------------------------------------------

    async def receive_body(self, timeout: Optional[float] = None) -> Event:
        """The next Data or EndOfMessage; its flow-control credit goes back to the client
        now that it has been taken.  BodyError(408) after `timeout` (body_timeout)."""
        q = self._queue
        if not q:
            if self.body_done:
                raise RuntimeError("request body already consumed")
            await self.continue_()
            if self._lot is None:
                self._lot = trio.lowlevel.ParkingLot()
            with trio.move_on_after(self._drv.settings.body_timeout if timeout is None
                                    else timeout):
                while not q:
                    if self.reset_code is not None or self._drv.dead:
                        raise ClientGone("stream reset while sending the body")
                    await self._lot.park()
            if not q:
                raise BodyError(408, "request body not received in time")
        ev = q.popleft()
        if ev.__class__ is Data:
            n = len(ev.data)
            self.body_taken += n
            if self.body_limit is not None and self.body_taken > self.body_limit:
                q.appendleft(ev)  # its credit goes back when the stream ends
                self.body_taken -= n
                raise BodyError(413, "request body too large")
            if self.no_credit:
                free = min(n, self.no_credit)
                self.no_credit -= free
                n -= free
            if n:
                drv = self._drv
                drv.conn.acknowledge_received(self.stream_id, n)
                drv.kick()
        else:
            self.body_done = True
        return ev

    async def continue_(self) -> None:
        if self.request.expect_continue and not self._sent_100 and not self.response_started:
            self._sent_100 = True
            self._drv.conn.send(InformationalResponse(self.stream_id, 100, []))
            self._drv.kick()

    # -- response ------------------------------------------------------------------------

    def send_response(self, status: int, headers: list[tuple[bytes, bytes]],
                      reason: bytes = b"", *, close: bool = False) -> None:
        # `close` is HTTP/1.1's: an HTTP/2 answer ends its stream, never the connection
        tel = self.tel
        if tel is not None and tel.resp_headers is not None:   # request tracing's
            headers = headers + tel.resp_headers
        self._drv.conn.send(_new_response(self.stream_id, status, with_date(headers)))
        self.response_started = True
        self.status = status
        self.t_resp = _now()

    async def drain_upload(self) -> None:
        """Before a local answer: take a small upload still on its way (up to 64 KiB,
        0.2 s).  An answer that ends a stream the client is still sending on is followed
        by RST_STREAM(NO_ERROR) (RFC 9113 §8.1), which some clients (curl 7.88) take for
        a failure even after a complete response; nginx lingers on HTTP/1.1 likewise."""
        left = 64 * 1024
        with trio.move_on_after(0.2):
            try:
                while not self.eom_received and not self.body_done and left > 0:
                    ev = await self.receive_body(0.2)
                    if ev.__class__ is Data:
                        left -= len(ev.data)  # type: ignore[attr-defined]
            except (BodyError, ClientGone):
                pass

    async def open_tunnel(self, headers: list[tuple[bytes, bytes]]) -> Tunnel:
        """Answer an extended CONNECT (RFC 8441) with 200 and `headers`; the stream's
        DATA then carries the tunnelled protocol both ways."""
        self.send_response(200, headers)
        await self.flush()
        return _H2Tunnel(self)

    def send_informational(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        if status != 101:
            self._drv.conn.send(InformationalResponse(self.stream_id, status, headers))

    async def flush(self) -> None:
        """Let the writer frame what is queued, and wait while the client's windows leave
        this stream no room (backpressure)."""
        drv = self._drv
        drv.kick()
        if self.response_complete:
            return
        conn = drv.conn
        sid = self.stream_id
        # Wait for the writer to take what we queued, too: a client that opened its
        # windows wide and does not read leaves the writer stuck in a send, and without
        # this every stream would go on queueing the backend's body up to those windows
        # (gigabytes).  So a stream has at most one read buffer queued and one in the
        # writer's hands.
        rounds = drv.rounds
        with trio.move_on_after(drv.settings.write_timeout):
            while drv.rounds == rounds or conn.available(sid) <= 0:
                if self.reset_code is not None or drv.dead:
                    raise ClientGone("stream reset")
                await drv.window_lot.park()
            return
        raise ClientGone("client did not open its flow-control window, or did not read, "
                         "in time")



class H2Driver:
    """Runs one HTTP/2 connection until it closes.  See the module docstring."""

    def __init__(self, transport: Transport, handler: Handler, settings: "ServerConfig",
                 scheme: bytes = b"https", draining: Callable[[], bool] = lambda: False,
                 *, conn: Optional[ServerConnection] = None, initial: bytes = b"",
                 first_events: Sequence[Event] = ()) -> None:
        self.transport = transport
        self.handler = handler
        self.settings = settings
        self.scheme = scheme
        self.conn = conn if conn is not None else ServerConnection(
            # the run's clock itself: trio.current_time is the same, through two calls
            limits=h2_limits(settings), clock=trio.lowlevel.current_clock().current_time)
        self._draining = draining
        self._initial = initial
        self._first_events = list(first_events)
        self.streams: dict[int, H2Stream] = {}
        self.dead = False
        self.window_lot = trio.lowlevel.ParkingLot()  # streams waiting for window room
        self._kick_lot = trio.lowlevel.ParkingLot()   # the writer, waiting for work
        self._writer_done = trio.Event()
        self.rounds = 0  # times the writer took data_to_send(): H2Stream.flush waits for one
        self._final = False
        self._goaway_sent = False
        self._failed = False  # we sent GOAWAY for a connection error
        self._reader_scope = trio.CancelScope()  # cancelled when the writer fails
        self._busy_wait: Optional[trio.CancelScope] = None  # the reader, streams open
        self._idle_wait: Optional[trio.CancelScope] = None  # the reader, no stream open
        self._nursery: Optional[trio.Nursery] = None

    # -- for the gateway -----------------------------------------------------------------

    @property
    def idle(self) -> bool:
        return not self.streams

    def close_if_idle(self) -> None:
        """Graceful shutdown: GOAWAY once (idle or not); the reader ends the connection
        once the GOAWAY is out and no stream is left (`run`)."""
        if not self._goaway_sent:
            self._goaway_sent = True
            self.conn.close(_NO_ERROR)
            self.kick()
        if not self.streams and self._idle_wait is not None:
            # the reader: look again (the drain calls this every 50 ms, so a response
            # still being framed when its handler ended is waited for)
            self._idle_wait.cancel()

    def kick(self) -> None:
        if self._kick_lot:
            self._kick_lot.unpark_all()

    # -- the tasks -----------------------------------------------------------------------

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._writer)
                with self._reader_scope:
                    await self._reader()
                # flush what the connection still has to say (GOAWAY), then stop
                self._final = True
                self.kick()
                with trio.move_on_after(self.settings.write_timeout):
                    if self._failed or self._goaway_sent:
                        await self._linger()
                    else:
                        await self._writer_done.wait()
                self.dead = True
                nursery.cancel_scope.cancel()
        finally:
            self.dead = True
            await self.transport.close()

    async def _reader(self) -> None:
        conn = self.conn
        t = self.transport
        s = self.settings
        data = self._initial
        if self._first_events:  # after an h2c upgrade: stream 1 is the HTTP/1.1 request
            self._dispatch(self._first_events)
            for ev in self._first_events:
                st = self.streams.get(1)
                if ev.__class__ is Data and ev.stream_id == 1 and st is not None:  # type: ignore
                    st.no_credit += len(ev.data)  # type: ignore[attr-defined]
        elif data:
            if not await self._receive(data):
                return
        while True:
            self.kick()
            if conn.should_close:  # GOAWAY sent (or received) and every stream complete
                return
            try:
                if self.streams:
                    # no timeout while streams run (a long download is not idle); the last
                    # stream to end cancels this wait (`_serve`): the idle timer starts then
                    with trio.CancelScope() as self._busy_wait:
                        data = await t.receive(_FOREVER)
                    if self._busy_wait.cancelled_caught:
                        self._busy_wait = None
                        continue
                    self._busy_wait = None
                else:
                    # the connection stays open at the timeout, so the GOAWAY can go out;
                    # a graceful shutdown cancels the wait (close_if_idle)
                    with trio.CancelScope() as scope:
                        self._idle_wait = scope
                        data = await t.receive_or_timeout(s.idle_timeout)
                    self._idle_wait = None
                    if scope.cancelled_caught:
                        continue
            except TransportTimeout:
                if not self.streams and not self.dead:
                    conn.close(_NO_ERROR)  # idle: say so before closing (Envoy)
                return
            except TransportClosed:
                self._lost()
                return
            if not await self._receive(data):
                return
            if not data:
                self._lost()
                return

    async def _linger(self) -> None:
        """After our GOAWAY (a connection error, or a graceful shutdown): read and drop
        what the client still sends while the GOAWAY goes out, then until the client
        closes (at most `_LINGER` s).  Closing a socket with unread bytes sends a reset,
        and the reset throws away what is still in our send buffer: a flooding client
        would never see the GOAWAY saying why, nor a client racing a request the GOAWAY
        saying it was not processed (nginx's lingering close does the same)."""
        eof = trio.Event()
        t = self.transport

        async def discard() -> None:
            try:
                while await t.receive(_FOREVER):
                    pass
            except (TransportClosed, TransportTimeout):
                pass
            eof.set()

        self._nursery.start_soon(discard)  # type: ignore[union-attr]
        await self._writer_done.wait()
        with trio.move_on_after(_LINGER):
            await eof.wait()

    async def _receive(self, data: bytes) -> bool:
        try:
            events = self.conn.receive_data(data)
        except ProtocolError as exc:  # GOAWAY is queued by the connection
            log.debug("HTTP/2 connection error: %s", exc)
            self._failed = True
            self._lost()
            return False
        if events:
            self._dispatch(events)
        if self.window_lot:
            self.window_lot.unpark_all()
        await trio.lowlevel.checkpoint()
        return True

    def _dispatch(self, events: Sequence[Event]) -> None:
        streams = self.streams
        conn = self.conn
        for ev in events:
            t = ev.__class__
            if t is Request:
                st = H2Stream(self, ev)  # type: ignore[arg-type]
                streams[st.stream_id] = st
                self._nursery.start_soon(self._serve, st)  # type: ignore[union-attr]
            elif t is RequestRejected:  # over max_head / max_fields: 431 on its stream
                st = H2Stream(self, ev.request)  # type: ignore[attr-defined]
                streams[st.stream_id] = st
                self._nursery.start_soon(self._serve, st,  # type: ignore[union-attr]
                                         (ev.status_code, ev.reason))  # type: ignore
            elif t is Data or t is EndOfMessage:
                st = streams.get(ev.stream_id)  # type: ignore[attr-defined]
                if st is not None:
                    st._feed(ev)
                elif t is Data:  # its handler is gone: return the credit at once
                    conn.acknowledge_received(ev.stream_id, len(ev.data))  # type: ignore
            elif t is StreamReset:
                st = streams.get(ev.stream_id)  # type: ignore[attr-defined]
                if st is not None:
                    st.reset_code = ev.error_code  # type: ignore[attr-defined]
                    if st._lot:  # None or empty: nobody waits
                        st._lot.unpark_all()
                    if st.scope is not None:
                        st.scope.cancel()
            elif t is ConnectionClosed and ev.error_code:  # type: ignore[attr-defined]
                self._lost()

    def _lost(self) -> None:
        """The connection is over: every stream task stops."""
        self.dead = True
        for st in self.streams.values():
            if st._lot:
                st._lot.unpark_all()
            if st.scope is not None:
                st.scope.cancel()
        if self.window_lot:
            self.window_lot.unpark_all()

    async def _serve(self, st: H2Stream,
                     refusal: Optional[tuple[int, str]] = None) -> None:
        conn = self.conn
        sid = st.stream_id
        reset = _INTERNAL_ERROR  # for a response we cannot finish
        try:
            with trio.CancelScope() as scope:
                st.scope = scope
                # a body that is all here already (at most one stream window: we have
                # not given credit back) may be kept whole and replayed by the proxy
                st.body_complete = st.eom_received
                # (a request that ended with no DATA has no content-length over 0: the
                # protocol resets such a stream, so the scan is skipped)
                if refusal is None and st.body_limit is not None and not (
                        st.eom_received and len(st._queue) == 1) and _content_length(
                        st.request.headers) > st.body_limit:
                    refusal = (413, "request body too large")  # before any forwarding
                try:
                    if refusal is not None:
                        await st.error(*refusal)
                    else:
                        await self.handler(st)  # type: ignore[arg-type]
                except BodyError as exc:
                    if not st.response_started and not self.dead:
                        await st.error(exc.status, exc.message)
                    elif exc.status == 413:  # too late for an answer: "you sent too much"
                        reset = _ENHANCE_YOUR_CALM
                except ClientGone:
                    pass
                except Exception:  # a bug in a handler must not show on the wire
                    log.exception("handler failed for %r", st.request.target)
                    if not st.response_started and not self.dead:
                        await st.error(500, "internal error")
        finally:
            del self.streams[sid]
            if not self.streams and self._busy_wait is not None:
                self._busy_wait.cancel()  # the reader: the idle timeout starts now
            if not self.dead:
                if not st.response_complete:
                    if st.reset_code is None:  # we gave up (backend failed mid-answer)
                        conn.send(StreamReset(sid, reset))
                # answered before the upload ended: the connection itself resets the
                # stream with NO_ERROR once the response is framed (RFC 9113 §8.1); a
                # reset sent from here would throw away the response still queued
                self.kick()
            if self._draining() and not self._goaway_sent:
                self.close_if_idle()

    async def _writer(self) -> None:
        conn = self.conn
        t = self.transport
        timeout = self.settings.write_timeout
        try:
            while True:
                data = conn.data_to_send()
                self.rounds += 1
                if self.window_lot:  # framing freed queue room
                    self.window_lot.unpark_all()
                if data:
                    await t.send(data, timeout)
                    continue
                if self._final:
                    return
                await self._kick_lot.park()
        except (TransportClosed, TransportTimeout):
            self._lost()
            self._reader_scope.cancel()  # it may wait for a client that is gone for good
        finally:
            self._writer_done.set()
