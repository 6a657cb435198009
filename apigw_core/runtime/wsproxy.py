"""WebSocket through the gateway: the handshake on both sides, then a frame relay.

Strategy (protocol/websocket/ does the deciding).  The client's request (HTTP/1.1
Upgrade or HTTP/2 extended CONNECT) is checked first (400 / 426 answered here).  The backend
gets its own HTTP/1.1 connection, never a pooled one shared with other requests: after a
101 it carries WebSocket until the end.  Only a 101 whose Sec-WebSocket-Accept is right
switches the client over (`open_tunnel`); any other answer is relayed as plain HTTP and the
client connection stays HTTP, so a backend cannot smuggle an upgrade.  Then two tasks pump
bytes, one per direction, through the sans-IO `WebSocketRelay` (masking, UTF-8, limits,
close codes); each side's writes are serialised by a lock, because both tasks may produce
bytes for the same peer (a relayed frame, a Close answered, a pong).  The connection
closes on both sides when one side goes away, or after `websocket-idle-timeout` with no
byte either way.  A client that has not sent its Close (it was failed, say with 1009 in the
middle of a big message, or its backend went away) may still be sending: its connection
gets a lingering close (`Tunnel.linger_close`), since closing with its bytes unread would
send a reset that destroys our Close before the client reads it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from ..gateway.forwarding import forward_response_headers
from ..protocol import (
    ConnectionClosed,
    Data,
    EndOfMessage,
    InformationalResponse,
    ProtocolError,
    Response,
)
from ..protocol import websocket as ws
from .stream import ClientGone, send_local_reply
from .transport import TransportClosed, TransportTimeout
from .upstream import (BAD_RESPONSE, CLOSED, CONNECT_FAILED, TIMED_OUT, UpstreamError,
                       UpstreamPool, log_failure)

if TYPE_CHECKING:
    from ..gateway.config import ServerConfig
    from ..gateway.router import Route

__all__ = ["proxy_websocket"]

log = logging.getLogger("apigw_core.runtime")

_CLOSE_GRACE = 1.0  # seconds the other direction gets to finish a closing handshake
_LINGER = 2.0       # seconds a client still sending gets to read our Close and leave


async def proxy_websocket(stream, route: "Route", pool, headers: list, rid: bytes,
                          settings: "ServerConfig") -> None:
    """Handle one WebSocket request end to end (see the module docstring)."""
    offer = ws.server_handshake(stream.request)
    if isinstance(offer, ws.HandshakeRefusal):
        await send_local_reply(stream, offer.status_code, offer.message,
                               headers=offer.headers)
        return
    h1pool: UpstreamPool = pool if isinstance(pool, UpstreamPool) else pool.h1
    try:
        up = await h1pool.acquire()
    except UpstreamError as exc:
        await _fail(stream, exc.status, exc.public, str(exc), rid, route)
        return
    try:
        await _handshake_and_relay(stream, offer, route, up, headers, rid, settings)
    finally:
        h1pool.discard(up)  # never back in the pool: it spoke WebSocket (or failed)


async def _handshake_and_relay(stream, offer, route, up, headers, rid, settings) -> None:
    hs = ws.BackendHandshake(offer)
    conn = up.conn
    conn.send(hs.request(route.path, headers))
    conn.send(EndOfMessage(1))
    backend = route.backend
    try:
        await up.transport.send(conn.data_to_send(), settings.write_timeout)
    except (TransportClosed, TransportTimeout) as exc:
        await _fail(stream, 502, CONNECT_FAILED, f"sending the request: {exc}", rid, route)
        return
    accepted = None
    answered = False
    while accepted is None:
        try:
            data = await up.transport.receive(backend.timeout)
            events = conn.receive_data(data)
        except TransportTimeout:
            await _fail(stream, 504, TIMED_OUT, f"no answer within {backend.timeout}s", rid,
                        route)
            return
        except (TransportClosed, ProtocolError) as exc:
            await _fail(stream, 502, BAD_RESPONSE if isinstance(exc, ProtocolError)
                        else CLOSED, str(exc), rid, route)
            return
        for ev in events:
            t = ev.__class__
            if t is InformationalResponse or t is Response:
                try:
                    accepted = hs.check_response(ev)
                except ProtocolError as exc:
                    await _fail(stream, 502, BAD_RESPONSE, exc.message, rid, route)
                    return
                if accepted is not None:
                    break
                if t is Response:  # refused: relay it as plain HTTP
                    stream.send_response(ev.status_code,  # type: ignore[attr-defined]
                                         forward_response_headers(ev.headers))  # type: ignore
                    answered = True
            elif t is Data and answered:
                stream.send_data(ev.data)  # type: ignore[attr-defined]
            elif t is EndOfMessage and answered:
                stream.send_end(ev.trailers)  # type: ignore[attr-defined]
                await stream.flush()
                return
            elif t is ConnectionClosed:
                await _fail(stream, 502, CLOSED, "closed before answering", rid, route)
                return
        if answered:
            await stream.flush()
    head = accepted.client_response()
    tunnel = await stream.open_tunnel(head.headers)
    limits = ws.WSLimits(max_frame_size=settings.websocket_max_message,
                         max_message_size=settings.websocket_max_message)
    relay = accepted.relay(limits=limits)
    rec = getattr(stream, "tel", None)
    if rec is not None:   # its message counts are read when the request ends
        rec.ws = relay
    await _relay(tunnel, up.transport, relay, conn.trailing_data, settings)


async def _fail(stream, status: int, message: str, detail: str, rid: bytes,
                route: "Route") -> None:
    """`message` for the client (fixed per case), `detail` for the log only."""
    log_failure(rid, route.backend.name, status, detail, stream.response_started)
    if not stream.response_started:
        await stream.error(status, message, rid)
    else:
        raise ClientGone(message)


async def _relay(tunnel, backend, relay, pending: bytes, settings) -> None:
    idle = settings.websocket_idle_timeout
    write_timeout = settings.write_timeout
    to_client = trio.Lock()
    to_backend = trio.Lock()

    async def flush() -> None:
        data = relay.client.data_to_send()
        if data:
            async with to_client:
                await tunnel.send(data)
        data = relay.backend.data_to_send()
        if data:
            async with to_backend:
                await backend.send(data, write_timeout)

    last = [trio.current_time()]  # the last byte either way: idle means both are quiet
    client_eof = [False]

    async def pump(side, receive) -> None:
        try:
            while not side.should_close:
                try:
                    data = await receive(idle)
                except TransportTimeout:
                    quiet = trio.current_time() - last[0]
                    if quiet < idle:  # the other direction is busy: not idle
                        continue
                    raise
                last[0] = trio.current_time()
                if not data and side is relay.client:
                    client_eof[0] = True
                try:
                    side.receive_data(data)
                except ProtocolError as exc:  # both Close frames are queued already
                    log.debug("websocket: %s", exc)
                await flush()
                if not data or relay.finished:
                    break
        except (TransportTimeout, TransportClosed, ClientGone):
            relay.close(1001, "going away")  # idle, or a peer vanished: tell the other
            try:
                await flush()
            except (TransportTimeout, TransportClosed, ClientGone):
                pass
        finally:
            # this direction is over: the other gets a moment to finish its closing
            # handshake (RFC 6455 §7.1.1), then everything ends
            scope = nursery.cancel_scope
            scope.deadline = min(scope.deadline, trio.current_time() + (
                0 if relay.finished else _CLOSE_GRACE))

    async with trio.open_nursery() as nursery:
        if pending:
            relay.backend.receive_data(pending)
            await flush()
        # receive_or_timeout: an idle timeout must leave the sockets open for the Close
        nursery.start_soon(pump, relay.client, tunnel.receive)
        nursery.start_soon(pump, relay.backend, backend.receive_or_timeout)
    try:
        if relay.client.close_received or client_eof[0]:
            await tunnel.close()
        else:  # it may still be sending (it was failed, or the backend went away)
            await tunnel.linger_close(_LINGER)
    except (TransportClosed, TransportTimeout, ClientGone):
        pass
