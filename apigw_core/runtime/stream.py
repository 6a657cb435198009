"""The stream contract both connection drivers implement, and what they share.

Strategy.  A request handler (proxy, pipeline executor, admin, echo) sees one request as an
`HTTPStream` and never knows which protocol carries it: `h1server.H1Stream` (HTTP/1.1, the
connection's own task) and `h2server.H2Stream` (HTTP/2, a task per stream) both implement
the verbs below.  `HTTPStream` is a `typing.Protocol`, so the drivers depend on this module
and not on each other; `Replies` is the base class they share (body and end verbs framed by
their connection object, and the whole-answer verbs built on them); `Tunnel` is what a
protocol switch (WebSocket) hands over.  `ClientGone` and `BodyError` are the two ways a
stream fails under a handler: the client went away, or its body cannot be read.
`send_local_reply` writes every answer the gateway makes itself, in the shape
`gateway.replies.local_reply` chooses for the caller (APIM JSON, or trailers-only gRPC).
"""

from __future__ import annotations

from typing import Awaitable, Callable, Optional, Protocol, Sequence

from ..gateway.replies import local_reply
from ..protocol import Event, Request
from ..protocol.events import _new_data, _new_eom  # frozen events without __setattr__

__all__ = ["HTTPStream", "Replies", "ClientGone", "BodyError", "Tunnel", "Handler",
           "send_local_reply"]


class ClientGone(Exception):
    """The client closed or reset the connection, or stopped reading (write stall)."""


class BodyError(Exception):
    """The request body could not be read: `status` is the answer (400, 408, 413)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Tunnel:
    """Bytes both ways after a protocol switch (WebSocket): `receive()` (b"" when the
    client is done), `send(data)`, `close()`.  HTTP/1.1: the connection itself after a
    101; HTTP/2: the stream's DATA after a 200 to an extended CONNECT (RFC 8441)."""

    async def receive(self, timeout: float) -> bytes:
        raise NotImplementedError

    async def send(self, data: bytes) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def linger_close(self, timeout: float) -> None:
        """Close while the client may still be sending (it was sent a Close it has not
        answered).  HTTP/2: a plain close (a stream end never resets the connection)."""
        await self.close()


class HTTPStream(Protocol):
    """One request as a handler sees it, whatever protocol carried it.

    `send_response` / `send_data` / `send_end` queue the answer (stream ids are filled
    in), `flush()` writes what is queued (and waits for the client: backpressure),
    `receive_body()` returns the next Data or EndOfMessage of the request body,
    `continue_()` sends `100 Continue` once if the client asked for it."""

    request: Request
    stream_id: int
    client: tuple
    scheme: bytes
    tls: object              # clientcert.ConnectionTLS (client certificate, XFCC) or None
    body_complete: bool      # the whole body had arrived when the handler started
    response_started: bool
    response_complete: bool

    async def receive_body(self) -> Event: ...

    async def continue_(self) -> None: ...

    def send_response(self, status: int, headers: list[tuple[bytes, bytes]],
                      reason: bytes = b"", *, close: bool = False) -> None:
        """`close`: the connection ends with this answer (HTTP/1.1; a no-op on HTTP/2,
        where only the stream ends)."""

    def send_informational(self, status: int,
                           headers: list[tuple[bytes, bytes]]) -> None: ...

    def send_data(self, data: bytes) -> None: ...

    def send_end(self, trailers: Sequence[tuple[bytes, bytes]] = ()) -> None: ...

    async def flush(self) -> None: ...

    async def reply(self, status: int, headers: list[tuple[bytes, bytes]],
                    body: bytes = b"") -> None: ...

    async def error(self, status: int, message: str,
                    request_id: Optional[bytes] = None) -> None: ...

    async def drain_upload(self) -> None: ...

    async def open_tunnel(self, headers: list[tuple[bytes, bytes]]) -> Tunnel: ...


Handler = Callable[[HTTPStream], Awaitable[None]]


async def send_local_reply(stream: HTTPStream, status: int, message: str, *,
                           request_id: Optional[bytes] = None,
                           headers: Sequence[tuple[bytes, bytes]] = (),
                           grpc_code: Optional[int] = None, close: bool = False) -> None:
    """A gateway-made answer, shaped for the caller (`replies.local_reply`): `headers`
    are added to it, `grpc_code` forces a gRPC status, `close` ends an HTTP/1.1
    connection with it.  A small upload still arriving is taken first (drain_upload)."""
    status, out, body = local_reply(status, message, request_id, stream.request.headers,
                                    headers, grpc_code=grpc_code)
    rec = getattr(stream, "tel", None)
    if rec is not None:  # the trace this answer belongs to (runtime/telemetry.py)
        out.append((b"traceparent", rec.trace.traceparent()))
    await stream.drain_upload()
    stream.send_response(status, out, close=close)
    stream.send_data(body)
    stream.send_end()
    await stream.flush()


class Replies:
    """What every stream kind (HTTP/1.1, HTTP/2) shares: body and end verbs (its
    connection object frames them), and the whole-answer verbs built on send_response /
    send_data / send_end / flush."""

    __slots__ = ()
    request: Request
    stream_id: int

    def send_data(self, data: bytes) -> None:
        if data:
            self._drv.conn.send(_new_data(self.stream_id, data))  # type: ignore[attr-defined]
            self.bytes_out += len(data)  # type: ignore[attr-defined]

    def send_end(self, trailers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        self._drv.conn.send(_new_eom(self.stream_id, trailers))  # type: ignore
        self.response_complete = True

    async def reply(self, status: int, headers: list[tuple[bytes, bytes]],
                    body: bytes = b"") -> None:
        """A whole small response at once."""
        self.send_response(status, headers)  # type: ignore[attr-defined]
        self.send_data(body)
        self.send_end()
        await self.flush()  # type: ignore[attr-defined]

    async def drain_upload(self) -> None:
        """Before a local answer (HTTP/2 takes a small upload still arriving first)."""

    def take_body(self) -> Optional[list]:
        """The whole request body's events (Data..., EndOfMessage) when they are all at
        hand and none was taken yet, taken without an await; None: use receive_body."""
        return None

    async def error(self, status: int, message: str,
                    request_id: Optional[bytes] = None) -> None:
        """A local error reply: JSON, or a trailers-only status for a gRPC caller."""
        await send_local_reply(self, status, message,  # type: ignore[arg-type]
                               request_id=request_id)
