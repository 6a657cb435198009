"""The HTTP/1.1 connection driver: bytes from a transport through `ServerConnection` to a
request handler, and the handler's response back.

Strategy.  HTTP/1.1 answers requests strictly in order (RFC 9112 §9.3.2), so one request is
handled at a time and the connection's own task runs the handler: no task per request, no
channel, no lock (spawning a task and handing it the body costs more than parsing the request
here).  The handler is therefore the only writer while it runs, and the only reader while it
pulls its body (`H1Stream.receive_body`).  HTTP/2 (h2server.py) gets a writer task and a
task per stream behind the same `stream.HTTPStream` verbs, so handlers never know which one
carries them.  An `Upgrade: h2c` that succeeds ends this driver: `run` returns an
`H2cUpgrade` and its caller (gateway.py) goes on with an HTTP/2 driver, so the two drivers
never import each other.

Timeouts (ServerConfig): `idle_timeout` waiting for the first byte of a request (then a
silent close, as nginx), `head_timeout` from that first byte to the end of the head
(slowloris: 408 and close), `body_timeout` between two reads of a body, `write_timeout` for
a stalled client.  A ProtocolError is answered with its status and a close; a handler that
fails before answering gets a 500, after answering an abort.  One scheduling checkpoint per
request keeps trio fair when every read succeeds at once: the driver's own, unless the
request's socket waits already passed one (transport.WAITS moved; the backend's answer is
usually waited for).

Client abort (`server.client-abort: cancel`, the default): while a request whose body is
in is being served, nobody reads the client socket, so the watchdog's sweep looks at it
(abort.py); a client that closed, reset or half-closed gets the connection's cancel scope
cancelled (one per connection, not per request): the handler's backend exchange is
released unfinished and `H1Stream.abort_status` says 499.
"""

from __future__ import annotations

import logging
import socket
import dataclasses
from time import perf_counter as _now
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import trio

from ..gateway.replies import local_reply
from ..protocol import (
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    InformationalResponse,
    ProtocolError,
    Request,
)
from ..protocol.alpn import h2c_settings
from ..protocol.events import _new_response
from ..protocol.http1 import ServerConnection, reason_phrase
from ..protocol.http2 import H2Limits
from ..protocol.http2 import ServerConnection as H2ServerConnection
from . import abort
from .clock import http_date, with_date
from .stream import (BodyError, ClientGone, Handler, HTTPStream, Replies, Tunnel,
                     send_local_reply)
from .transport import WAITS as _WAITS
from .transport import SocketTransport, Transport, TransportClosed, TransportTimeout

if TYPE_CHECKING:
    from ..gateway.config import ServerConfig

# HTTPStream and the rest of the stream contract live in stream.py (re-exported here for
# older imports)
__all__ = ["H1Stream", "H1Driver", "H2cUpgrade", "HTTPStream", "ClientGone", "BodyError",
           "Handler", "Replies", "Tunnel"]

log = logging.getLogger("apigw_core.runtime")

_checkpoint = trio.lowlevel.checkpoint
_NO_EVENTS: Sequence[Event] = ()


class _H1Tunnel(Tunnel):
    __slots__ = ("_drv", "_pending")

    def __init__(self, drv: "H1Driver", pending: bytes) -> None:
        self._drv = drv
        self._pending = pending  # what the client sent after its upgrade request

    async def receive(self, timeout: float) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        try:  # a timeout leaves the connection open (a WebSocket Close still goes out)
            return await self._drv.transport.receive_or_timeout(timeout)
        except TransportClosed:
            return b""

    async def send(self, data: bytes) -> None:
        try:
            await self._drv.transport.send(data, self._drv.settings.write_timeout)
        except (TransportClosed, TransportTimeout) as exc:
            raise ClientGone(str(exc)) from None

    async def close(self) -> None:
        await self._drv.transport.close()

    async def linger_close(self, timeout: float) -> None:
        """A FIN after our last bytes, then read and drop what the client still sends
        until it closes (at most `timeout` s): closing a socket with unread bytes sends a
        reset, and a reset destroys what the client has not read yet, our last WebSocket
        frame (the Close saying why) included (nginx's lingering close).  Under TLS there
        is no half-close (trio's SSLStream has no send_eof): the draining alone."""
        t = self._drv.transport
        if isinstance(t, SocketTransport) and not t.closed:
            try:
                t.raw.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        with trio.move_on_after(timeout):
            try:
                while await self.receive(timeout):
                    pass
            except (TransportTimeout, TransportClosed):
                pass
        await t.close()


class H1Stream(Replies):
    """One HTTP/1.1 request: the verbs of `stream.HTTPStream`."""

    __slots__ = ("_drv", "request", "stream_id", "client", "scheme", "tls", "body_complete",
                 "response_started", "response_complete", "_sent_100", "abort_status",
                 "tel", "status", "t_resp", "bytes_in", "bytes_out")   # telemetry.py

    def __init__(self, drv: "H1Driver", request: Request, body_complete: bool) -> None:
        self._drv = drv
        self.request = request
        self.stream_id = request.stream_id
        self.client = drv.transport.peer
        self.scheme = drv.scheme
        self.tls = drv.transport.tls   # clientcert.ConnectionTLS or None
        self.body_complete = body_complete  # the EndOfMessage is already received
        self.response_started = False
        self.response_complete = False
        self._sent_100 = False
        self.tel = None
        self.status = 0
        self.t_resp = 0.0
        self.bytes_in = self.bytes_out = 0
        self.abort_status = 0   # 499 when the client closed and the request was cancelled

    @property
    def transport(self) -> Transport:
        return self._drv.transport

    def client_aborted(self) -> None:
        """The client closed while this request was served (abort.sweep): 499, and the
        connection's work cancelled (the backend request with it).  `status` is the
        access log's (telemetry.py): 499 unless a response had started."""
        self.abort_status = abort.CLIENT_CLOSED_STATUS
        if not self.response_started:
            self.status = abort.CLIENT_CLOSED_STATUS
        log.info("client %s closed while %s %r was served: cancelled (499)",
                 self.client[0], self.request.method.decode("latin-1"),
                 self.request.target.decode("latin-1", "replace")[:200])
        self._drv.scope.cancel()

    # -- request body --------------------------------------------------------------------

    async def receive_body(self) -> Event:
        """The next Data or EndOfMessage of the request body."""
        ev = await self._drv.next_body_event(self)
        if ev.__class__ is Data:
            self.bytes_in += len(ev.data)  # type: ignore[attr-defined]
        return ev

    def take_body(self) -> Optional[list]:
        """The body's events at once when the driver holds them all (a GET, a small
        upload that came with its head): no coroutine per event on the hot path."""
        drv = self._drv
        events = drv._events
        i = drv._i
        sid = self.stream_id
        out = []
        n = len(events)
        while i < n:
            ev = events[i]
            if ev.stream_id != sid:  # type: ignore[attr-defined]
                return None
            out.append(ev)
            i += 1
            if ev.__class__ is EndOfMessage:
                drv._i = i
                drv._body_done_id = sid
                for d in out:
                    if d.__class__ is Data:
                        self.bytes_in += len(d.data)  # type: ignore[attr-defined]
                return out
        return None

    async def continue_(self) -> None:
        if self.request.expect_continue and not self._sent_100 and not self.response_started:
            self._sent_100 = True
            self._drv.conn.send(InformationalResponse(self.stream_id, 100, []))
            await self.flush()

    # -- response ------------------------------------------------------------------------

    def send_response(self, status: int, headers: list[tuple[bytes, bytes]],
                      reason: bytes = b"", *, close: bool = False) -> None:
        """Queue the response head (`close`: the connection ends with this answer); a
        `date` is added when `headers` (lower-case names) carry none."""
        drv = self._drv
        headers = with_date(headers)
        tel = self.tel
        if tel is not None and tel.resp_headers is not None:   # request tracing's
            headers = headers + tel.resp_headers
        if close or drv._draining() or (not self.body_complete
                                               and drv._body_done_id != self.stream_id):
            # draining, or answering before the whole upload arrived: the rest of it
            # would be read as the next request, so the connection ends with this answer
            headers = headers + [(b"connection", b"close")]
        # (_new_response: the frozen dataclass's __init__ costs ~80 bytecodes more)
        self._drv.conn.send(_new_response(self.stream_id, status, headers, b"1.1", reason))
        self.response_started = True
        self.status = status
        self.t_resp = _now()

    def send_informational(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        if self.request.http_version != b"1.0":  # no 1xx to HTTP/1.0 (RFC 9110 §15.2)
            self._drv.conn.send(InformationalResponse(self.stream_id, status, headers))

    async def flush(self) -> None:
        await self._drv.flush()

    async def open_tunnel(self, headers: list[tuple[bytes, bytes]]) -> Tunnel:
        """Answer `101 Switching Protocols` with `headers` and hand over the connection:
        after the handler returns, it is closed (no more HTTP on it)."""
        drv = self._drv
        drv.conn.send(InformationalResponse(self.stream_id, 101, headers))
        await drv.flush()
        self.response_started = self.response_complete = True
        self.status = 101
        self.t_resp = _now()
        drv.tunnelled = True
        return _H1Tunnel(drv, drv.conn.trailing_data)


@dataclasses.dataclass(frozen=True)
class H2cUpgrade:
    """What `H1Driver.run` returns after a `101` to `Upgrade: h2c`: the HTTP/2 connection
    (the upgrade request already its stream 1) and its first events, for an H2Driver on
    the same transport."""

    conn: H2ServerConnection
    first_events: Sequence[Event]


class H1Driver:
    """Runs one HTTP/1.1 connection until it closes.  See the module docstring."""

    __slots__ = ("transport", "conn", "handler", "settings", "scheme", "_events", "_i",
                 "_draining", "idle", "_body_done_id", "_served", "_wlock", "_initial",
                 "h2c", "upgraded", "tunnelled", "linger", "scope", "_watch")

    def __init__(self, transport: Transport, handler: Handler, settings: "ServerConfig",
                 scheme: bytes = b"http",
                 draining: Callable[[], bool] = lambda: False, *, initial: bytes = b"",
                 h2c: Optional[H2Limits] = None) -> None:
        self.transport = transport
        self._initial = initial  # bytes already read from the transport (protocol sniffing)
        # honour `Upgrade: h2c` (a cleartext listener with h2c), with these HTTP/2 limits
        self.h2c = h2c
        self.upgraded: Optional[H2cUpgrade] = None  # after a 101 to an h2c upgrade
        self.tunnelled = False  # a handler took the connection over (open_tunnel)
        # the connection ends with request bytes maybe still coming: close lingering
        self.linger = False
        self.handler = handler
        self.settings = settings
        self.scheme = scheme
        self.conn = ServerConnection(max_request_line=settings.max_request_line,
                                     max_head=settings.max_head,
                                     max_fields=settings.max_fields,
                                     max_body_size=settings.max_body)
        self._events: Sequence[Event] = _NO_EVENTS
        self._i = 0
        self._draining = draining
        self.idle = False   # waiting for the first byte of a request: may be closed
        self._body_done_id = 0  # the stream whose EndOfMessage the handler has taken
        self._served = 0
        # The handler is the only writer, except for a `100 Continue` sent by the task that
        # pumps an upload: the lock keeps a blocked partial write from being interleaved.
        self._wlock = trio.Lock()
        # client-abort cancel: requests served with their body in are watched (abort.py);
        # cancelling `scope` ends the connection's work
        self._watch = getattr(settings, "client_abort", "cancel") == "cancel"
        self.scope: Optional[trio.CancelScope] = None

    def gateway_draining(self) -> bool:
        return self._draining()

    def close_if_idle(self) -> None:
        """Graceful shutdown: end the connection now if no request is in progress."""
        if self.idle and self.upgraded is None:
            self.transport.expire()

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> Optional[H2cUpgrade]:
        """Serve until the connection ends (then it is closed), or until an h2c upgrade
        (then the transport stays open for the HTTP/2 driver the caller starts)."""
        try:
            with trio.CancelScope() as self.scope:
                await self._loop()
            if self.scope.cancelled_caught:
                return None   # the client went away mid-request (abort.py): just close
            if self.upgraded is not None:
                return self.upgraded
            if self.linger:
                # nginx's lingering_close: FIN after the answer, then take (and drop) what
                # the client is still sending, so its stack delivers the answer, not a reset
                await self.transport.linger_close()
        except ClientGone:
            self.transport.abort()
        finally:
            if self.upgraded is None:
                await self.transport.close()
        return None

    async def _loop(self) -> None:
        conn = self.conn
        while True:
            events = self._events
            i = self._i
            if i >= len(events):
                if conn.pending_error is not None:  # a later pipelined request was bad
                    await self._protocol_error(conn.pending_error)
                    return
                # draining: a connection accepted just before the drain still gets its
                # first request served (its answer says connection: close)
                if conn.should_close or (self._served and self._draining()):
                    return
                # idle until the next request: hold nothing of the last one (its head,
                # stream and record) while waiting, which may be for a long time
                events = ev = stream = nxt = None   # type: ignore[assignment]
                self._events = _NO_EVENTS
                if not await self._read_head():
                    return
                continue
            ev = events[i]
            self._i = i + 1
            t = ev.__class__
            if t is Request:
                err = conn.pending_error
                if err is not None and conn.error_stream_id == ev.stream_id:  # type: ignore
                    # its own body is already known to be bad (a chunk-size line, over
                    # max-body): answer now, before anything reaches a backend
                    await self._protocol_error(err)
                    return
                nxt = events[i + 1] if i + 1 < len(events) else None
                complete = nxt.__class__ is EndOfMessage or (
                    nxt.__class__ is Data and i + 2 < len(events)
                    and events[i + 2].__class__ is EndOfMessage)
                if ev.upgrade == b"h2c" and self.h2c is not None and complete:  # type: ignore
                    if await self._upgrade_h2c(ev, self.h2c):  # type: ignore[arg-type]
                        return
                stream = H1Stream(self, ev, complete)  # type: ignore[arg-type]
                self._served += 1
                waits = _WAITS[0]
                await self._serve(stream)
                if self.tunnelled:
                    return  # the connection carried another protocol: it ends with it
                if not stream.response_complete:
                    return  # the handler gave up mid-response: the close says so
                if not self._skip_body(stream.stream_id):
                    self.linger = True
                    return  # body left unread: the next bytes are not a request head
                if _WAITS[0] == waits:   # no trio wait while serving: be fair here
                    await _checkpoint()
            elif t is ConnectionClosed:
                return
            # Data / EndOfMessage of an answered request were skipped by _skip_body

    async def _upgrade_h2c(self, req: Request, limits: H2Limits) -> bool:
        """`Upgrade: h2c` (RFC 7540 §3.2): answer 101 and hand the connection over as
        HTTP/2 (`self.upgraded`), the request becoming stream 1; False (plain HTTP/1.1
        goes on) when the upgrade is not valid."""
        if h2c_settings(req) is None:
            return False
        body = []
        i = self._i
        while i < len(self._events) and self._events[i].__class__ is Data:
            body.append(self._events[i].data)  # type: ignore[attr-defined]
            i += 1
        try:
            h2conn, first = H2ServerConnection.from_h1_upgrade(
                req, self.conn.trailing_data, body=b"".join(body),
                limits=limits, clock=trio.current_time)
        except ProtocolError:
            return False
        self.conn.send(InformationalResponse(req.stream_id, 101, [
            (b"connection", b"Upgrade"), (b"upgrade", b"h2c")]))
        await self.flush()
        self.upgraded = H2cUpgrade(h2conn, first)
        return True

    async def _serve(self, stream: H1Stream) -> None:
        watched = self._watch and stream.body_complete and stream.request.upgrade is None
        if watched:
            abort.WATCHED[stream] = False
        try:
            await self.handler(stream)
        except (ClientGone, trio.Cancelled):
            raise
        except BodyError as exc:
            if not stream.response_started:
                await self._answer_error(exc.status, exc.message, stream)
            return
        except Exception:  # a bug in a handler must not show on the wire
            log.exception("handler failed for %r", stream.request.target)
            if not stream.response_started:
                await self._answer_error(500, "internal error", stream)
            return
        finally:
            if watched:
                abort.WATCHED.pop(stream, None)

    async def _answer_error(self, status: int, message: str, stream: H1Stream) -> None:
        self.linger = status != 408  # a client too slow to send has nothing to drain
        try:
            await send_local_reply(stream, status, message, close=True)
        except ClientGone:
            raise
        except Exception:  # the connection state refuses: just close
            return

    def _skip_body(self, stream_id: int) -> bool:
        """After a response: drop the rest of this request's body if it was received
        whole; False if some of it is still on the wire (then we close)."""
        events = self._events
        i = self._i
        n = len(events)
        while i < n:
            ev = events[i]
            if ev.__class__ is Data and ev.stream_id == stream_id:  # type: ignore
                i += 1
            elif ev.__class__ is EndOfMessage and ev.stream_id == stream_id:  # type: ignore
                self._i = i + 1
                return True
            else:
                break
        self._i = i
        # else the EndOfMessage was already taken by receive_body, or is still to come
        return i < n or self._body_done_id == stream_id

    async def _read_head(self) -> bool:
        """Read until the next request head is complete; False to close."""
        conn = self.conn
        s = self.settings
        t = self.transport
        # idle: no byte of the next request yet.  A new connection gets head_timeout for
        # its first byte (nginx's client_header_timeout): an idle keep-alive allowance is
        # earned by a first request, or slowloris would hold sockets for idle_timeout.
        # A timeout here ends the connection silently (nginx, Envoy), so the transport's
        # cheap watchdog timeout fits; a graceful shutdown expires idle transports too.
        if self._initial:
            data, self._initial = self._initial, b""
        else:
            self.idle = True
            try:
                data = await t.receive(s.idle_timeout if self._served else s.head_timeout)
            except (TransportTimeout, TransportClosed):
                return False
            finally:
                self.idle = False
        deadline = None
        while True:
            try:
                events = conn.receive_data(data)
            except ProtocolError as exc:
                await self._protocol_error(exc)
                return False
            if events:
                self._events = events
                self._i = 0
                return True
            if not data:
                return False
            if deadline is None:
                deadline = trio.current_time() + s.head_timeout
            left = deadline - trio.current_time()
            try:
                if left <= 0:
                    raise TransportTimeout
                data = await t.receive_or_timeout(left)
            except TransportTimeout:
                await self._send_raw_error(408, "request head not received in time")
                return False
            except TransportClosed:
                return False

    async def next_body_event(self, stream: H1Stream) -> Event:
        events = self._events
        i = self._i
        if i < len(events):
            ev = events[i]
            if ev.stream_id == stream.stream_id:  # type: ignore[attr-defined]
                self._i = i + 1
                if ev.__class__ is EndOfMessage:
                    self._body_done_id = stream.stream_id
                return ev
            raise RuntimeError("request body already consumed")
        if self._body_done_id == stream.stream_id:
            raise RuntimeError("request body already consumed")
        err = self.conn.pending_error
        if err is not None:  # the rest of the body is bad: no point waiting for it
            raise BodyError(err.status_hint, err.message)
        await stream.continue_()
        while True:
            try:
                data = await self.transport.receive_or_timeout(self.settings.body_timeout)
            except TransportTimeout:
                raise BodyError(408, "request body not received in time") from None
            except TransportClosed:
                raise ClientGone("reset while sending the body") from None
            try:
                events = self.conn.receive_data(data)
            except ProtocolError as exc:
                if not data:
                    raise ClientGone("closed before the end of the body") from None
                raise BodyError(exc.status_hint, exc.message) from None
            if events:
                self._events = events
                self._i = 0
                return await self.next_body_event(stream)

    # -- writing -------------------------------------------------------------------------

    async def flush(self) -> None:
        lock = self._wlock
        try:
            lock.acquire_nowait()  # no checkpoint when uncontended (the usual case)
        except trio.WouldBlock:
            await lock.acquire()
        try:
            data = self.conn.data_to_send()
            if data:
                await self.transport.send(data, self.settings.write_timeout)
        except (TransportClosed, TransportTimeout) as exc:
            raise ClientGone(str(exc)) from None
        finally:
            lock.release()

    async def _protocol_error(self, exc: ProtocolError) -> None:
        conn = self.conn
        # no request to shape it for: the JSON answer
        _, headers, body = local_reply(exc.status_hint, exc.message, None, ())
        self.linger = True
        try:
            # local_reply's content-type (send_error frames the rest), and a date
            conn.send_error(exc.status_hint, body, [headers[0], (b"date", http_date())])
            await self.flush()
        except ClientGone:
            pass
        except Exception:  # nothing to answer (e.g. the peer closed mid-head)
            pass

    async def _send_raw_error(self, status: int, message: str) -> None:
        """An answer with no request to attach it to (408 on a partial head)."""
        status, headers, body = local_reply(status, message, None, ())
        head = [b"HTTP/1.1 %d %b\r\n" % (status, reason_phrase(status))]
        head += [b"%b: %b\r\n" % h for h in headers]
        head.append(b"date: %b\r\nconnection: close\r\n\r\n" % http_date())
        try:
            await self.transport.send(b"".join(head) + body, self.settings.write_timeout)
        except (TransportClosed, TransportTimeout):
            pass
