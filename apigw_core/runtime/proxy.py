"""Forwarding one request to its backend and streaming the answer back.

Strategy.  The handler routes the request, rewrites its headers (gateway.forwarding), takes a
connection from the backend's pool and relays events between the client's `HTTPStream` and
the backend's sans-IO `ClientConnection`.  Bodies stream both ways with backpressure: every
piece read from one side is written to the other before the next read, so at most one read
buffer (64 KiB) per direction is held, whatever the body size.  A request body that is not
yet complete is pumped by a second task, so a backend that answers early (413, 401) is
relayed at once and the unread rest of the upload closes the client connection.

Errors (APIM / Envoy): no route 404; connect refused or unreachable 502; connect or response
timeout 504; pool full 503; a bad backend response 502.  The client gets a short fixed
message per case (never a backend address or errno text); the detail goes to the log with
the request id.  Once the response head went to the client nothing can be said any more:
the client connection is aborted instead, and the backend connection is never reused.
gRPC and gRPC-Web callers get these as trailers-only gRPC statuses (gateway.replies).

The backend's request head is written whole in C (gateway.forwarding.forward_request_head,
sent as a `ForwardedHead`) when nothing rewrites it after forwarding: an HTTP/1.x client,
a pool whose `open` is UpstreamPool's, no WebSocket, gRPC-Web or grpc-timeout (a sampled
trace's traceparent is rewritten in those bytes per attempt, telemetry.Record.attempt);
executor.py's forward-request does the same for the policy pipeline (not yet for sampled
traces).

A request is retried once, on a fresh connection, only when that is safe: the failed
connection was a reused keep-alive one (the backend may have closed it just as we wrote),
nothing of the response arrived, the method is idempotent and there is no body (so the
whole request is still at hand).
"""

from __future__ import annotations

import dataclasses
import logging
from time import perf_counter as _now
from typing import TYPE_CHECKING, Optional

import trio

from ..gateway.forwarding import (forward_request_head, forward_request_headers,
                                  forward_response_headers)
from ..gateway.paths import PathError
from ..protocol import grpc
from ..protocol import (
    ConnectionClosed,
    Data,
    EndOfMessage,
    InformationalResponse,
    ProtocolError,
    Request,
    Response,
    StreamReset,
)
from .stream import BodyError, ClientGone, HTTPStream, send_local_reply
from .transport import TransportClosed, TransportTimeout
from ..protocol.http1 import ForwardedHead
from .upstream import (BAD_RESPONSE, CLOSED, CONNECT_FAILED, STREAM_RESET, TIMED_OUT,
                       UpstreamError, UpstreamPool, log_failure)
from .telemetry import GrpcCounts
from .wsproxy import proxy_websocket

if TYPE_CHECKING:
    from .gateway import Gateway

__all__ = ["proxy_handler"]

log = logging.getLogger("apigw_core.runtime")

_REFUSED_STREAM = 7
_IDEMPOTENT = frozenset((b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"))
_H1_OPEN = UpstreamPool.open   # a pool with this open sends a ForwardedHead as it is
# last-error reasons of the direct path's failures (the executor's PolicyError reasons)
_REASON_FOR = {502: "BackendConnectionFailure", 503: "BackendConnectionFailure",
               504: "Timeout"}


class _Retry(Exception):
    """The reused connection failed before anything of the response arrived."""


class _BackendFailed(Exception):
    """`message` is for the client (fixed per case), `detail` for the log only."""

    def __init__(self, status: int, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail or message


def _authority_of(target: bytes) -> Optional[bytes]:
    """The authority of an absolute-form target (`http://a:1/p` -> `a:1`)."""
    scheme, sep, rest = target.partition(b"://")
    if not sep:
        return None
    end = len(rest)
    for c in (b"/", b"?", b"#"):
        i = rest.find(c)
        if 0 <= i < end:
            end = i
    return rest[:end].rpartition(b"@")[2] or None


def proxy_handler(gw: "Gateway"):
    """The request handler of a gateway listener."""
    from .admission import run_pipeline   # it reuses this module's helpers

    new_id = gw.request_ids
    write_timeout = gw.config.server.write_timeout

    async def handle(stream: HTTPStream) -> None:
        state = gw.state   # one config for the whole request, whatever reloads meanwhile
        req = stream.request
        host, ctype = _host_and_type(req.headers)
        try:
            route = state.router.match(host, req.target)
        except PathError as exc:  # every protocol's target goes through here
            await stream.error(exc.status, exc.message)
            return
        if route is None:
            await stream.error(404, "no API matches this request")
            return
        rec = stream.tel   # runtime/telemetry.py's Record (None without the wrapper)
        if rec is not None:
            rec.route = route
            if rec.debug is not None:   # request tracing (runtime/debugtrace.py)
                rec.debug_routed(route, host)
        ws_request = req.upgrade == b"websocket" or req.protocol == b"websocket"
        if ws_request and "websocket" not in route.api.protocols:
            if req.protocol is not None:  # an HTTP/2 CONNECT cannot go on as plain HTTP
                await stream.error(400, "WebSocket is not enabled for this API")
                return
            ws_request = False  # HTTP/1.1: forwarded as plain HTTP, the Upgrade dropped
        call = web = None
        if ctype is not None and ctype.startswith(b"application/grpc"):
            if "grpc" not in route.api.protocols:
                await _grpc_answer(stream, grpc.StatusCode.UNIMPLEMENTED,
                                   "gRPC is not enabled for this API")
                return
            try:
                call = grpc.check_request(req)
            except grpc.GrpcError as exc:
                await _grpc_answer(stream, exc.code, exc.message)
                return
            if call.web:
                web = grpc.GrpcWebTranslator(call, req)
            if stream.tel is not None:   # its messages counted (runtime/telemetry.py)
                stream.tel.grpc = GrpcCounts()
        if route.api.name not in state.plain:  # policies, operations or subscriptions
            protocol = ("websocket" if ws_request else "http" if call is None else
                        "grpc-web" if web is not None else "grpc")
            await run_pipeline(gw, state, stream, route, host, web, protocol,
                               call.timeout if call is not None else None)
            return
        pool = state.balanced.get(route.backend.name)   # a pool, breaker, health checks
        if pool is None:
            pool = state.pools[route.backend.name]
        target = req.target
        authority = None if target[:1] == b"/" else _authority_of(target)
        # The whole head in C where its bytes are the general path's (forwarding.py:
        # forward_request_head): an HTTP/1.x request to an HTTP/1.1 pool (UpstreamPool's
        # open: the in-memory bench's subclass only connects differently) whose head
        # nothing rewrites after forwarding (no WebSocket, gRPC-Web or grpc-timeout; a
        # sampled trace's traceparent per attempt is rewritten in the bytes: Record.attempt).
        fast = None
        if (pool.__class__.open is _H1_OPEN and not ws_request and web is None
                and (call is None or call.timeout is None) and req.http_version != b"2"):
            fast = forward_request_head(req.method, route.path, req.headers,
                                        stream.client[0], stream.scheme, pool.authority,
                                        new_id, authority, req.http_version, stream.tls)
        if fast is not None:
            head, rid, clen, chunked = fast
            if rec is not None:
                rec.rid = rid
            upreq = ForwardedHead(1, req.method, head, clen, chunked)
        else:
            headers, rid = forward_request_headers(
                req.headers, client_ip=stream.client[0], scheme=stream.scheme,
                backend_authority=pool.authority, new_id=new_id, authority=authority,
                version=req.http_version, tls=stream.tls)
            if rec is not None:
                rec.rid = rid
            if ws_request:
                await proxy_websocket(stream, route, pool, headers, rid, gw.config.server)
                return
            upreq = Request(1, req.method, route.path, headers)
        if web is not None:
            upreq = web.request_head(upreq)
        body: list = []
        if stream.body_complete:  # small bodies arrive with the head: replayable
            body = stream.take_body() or body   # type: ignore[attr-defined]
            while not body or body[-1].__class__ is not EndOfMessage:
                ev = await stream.receive_body()
                body.append(ev)
                if ev.__class__ is EndOfMessage:
                    break
        retry_ok = stream.body_complete and req.method in _IDEMPOTENT and (
            len(body) == 1)
        if web is not None:
            body = [x for ev in body for x in web.to_backend(ev)]
        if req.http_version == b"2" and (len(body) != 1 or not stream.body_complete
                                         or body[0].trailers):
            upreq = _h1_framing(upreq, body if stream.body_complete else None)
        if call is None or call.timeout is None:
            await _forward(stream, pool, upreq, body, route.backend.timeout, write_timeout,
                           retry_ok, rid, web)
            return
        # gRPC deadline: the backend is told how much is left, and the gateway enforces it
        deadline = trio.current_time() + call.timeout
        upreq = dataclasses.replace(upreq, headers=grpc.with_timeout(
            upreq.headers, call.timeout))
        with trio.move_on_at(deadline) as scope:
            await _forward(stream, pool, upreq, body, route.backend.timeout, write_timeout,
                           retry_ok, rid, web)
        if scope.cancelled_caught:  # the backend stream was cancelled by its release()
            await _deadline_exceeded(stream, web)

    return handle


def _host_and_type(headers: list[tuple[bytes, bytes]]) -> tuple[Optional[bytes],
                                                                 Optional[bytes]]:
    host = ctype = None
    for name, value in headers:
        if name == b"host":
            host = value
        elif name == b"content-type":
            ctype = value
    return host, ctype


def _h1_framing(upreq: Request, body: Optional[list]) -> Request:
    """An HTTP/2 request body needs no length; an HTTP/1.1 hop does: Content-Length when
    the whole body is at hand, else chunked; and chunked when the body at hand ends with
    trailers, the only framing that carries them on HTTP/1.1 (it replaces a content-length
    the client sent).  An HTTP/2 backend drops both: its DATA frames frame the body.  A
    body still arriving keeps a content-length the client sent; trailers that come after
    it are dropped on the HTTP/1.1 hop (upstream.H1Exchange.send_end)."""
    headers = upreq.headers
    if body and body[-1].trailers:
        headers = [h for h in headers if h[0] != b"content-length"
                   and h[0] != b"transfer-encoding"]
        framing = (b"transfer-encoding", b"chunked")
    elif any(n == b"content-length" or n == b"transfer-encoding" for n, _ in headers):
        return upreq
    elif body is not None:
        framing = (b"content-length",
                   b"%d" % sum(len(ev.data) for ev in body if ev.__class__ is Data))
    else:
        framing = (b"transfer-encoding", b"chunked")
    return dataclasses.replace(upreq, headers=headers + [framing])


async def _grpc_answer(stream: HTTPStream, code: int, message: str) -> None:
    """A trailers-only gRPC answer (HTTP 200, the status in the head), in the caller's
    content-type (gRPC-Web clients reject `application/grpc`)."""
    await send_local_reply(stream, 200, message, grpc_code=code)


async def _deadline_exceeded(stream: HTTPStream, web) -> None:
    message = "deadline exceeded at the gateway"
    if not stream.response_started:
        await _grpc_answer(stream, grpc.StatusCode.DEADLINE_EXCEEDED, message)
    elif not stream.response_complete:
        trailers = grpc.status_trailers(grpc.StatusCode.DEADLINE_EXCEEDED, message)
        end = EndOfMessage(stream.stream_id, trailers)
        for ev in (web.to_client(end) if web is not None else [end]):
            if ev.__class__ is Data:
                stream.send_data(ev.data)  # type: ignore[attr-defined]
            else:
                stream.send_end(ev.trailers)  # type: ignore[attr-defined]
        await stream.flush()


async def _forward(stream: HTTPStream, pool, upreq: Request, body: list, timeout: float,
                   write_timeout: float, retry_ok: bool, rid: bytes, web) -> None:
    """Send the request (retried once when that is safe) and relay the answer; a failure
    before the answer becomes a local reply, after it an abort."""
    for attempt in (1, 2):
        try:
            await _exchange(stream, pool, upreq, body, timeout, write_timeout,
                            retry_ok and attempt == 1, web)
            return
        except _Retry:
            if attempt == 1:
                continue
            failure = _BackendFailed(502, CLOSED, "closed again on a fresh connection")
        except _BackendFailed as exc:
            failure = exc
        log_failure(rid, pool.backend.name, failure.status, failure.detail,
                    stream.response_started)
        rec = stream.tel
        if rec is not None:
            rec.reason = _REASON_FOR.get(failure.status, "BackendConnectionFailure")
            rec.message = failure.message
            rec.t_head = rec.t_head or _now()
        if not stream.response_started:
            await stream.error(failure.status, failure.message, rid)
            return
        raise ClientGone("backend failed mid-response")


async def _exchange(stream: HTTPStream, pool, upreq: Request, body: list,
                    timeout: float, write_timeout: float, may_retry: bool, web=None) -> None:
    """One attempt: open an exchange on the backend's pool (HTTP/1.1 connection or HTTP/2
    stream: the same verbs), send the request, relay the answer."""
    rec = stream.tel
    up = None
    if rec is not None:
        rec.attempt(pool, upreq.headers, upreq)
        if rec.grpc is not None and rec.attempts == 1:   # a retry sends the same again
            up = rec.grpc.up
    try:
        ex = await pool.open(upreq)
    except UpstreamError as exc:
        raise _BackendFailed(exc.status, exc.public, str(exc)) from None
    ok = False
    try:
        for ev in body:
            if ev.__class__ is Data:
                ex.send_data(ev.data)
                if up is not None:
                    up(ev.data)
            else:
                ex.send_end(ev.trailers)
        try:
            await ex.flush(write_timeout)
        except (TransportClosed, TransportTimeout) as exc:
            if may_retry and ex.reused:
                raise _Retry() from None
            raise _BackendFailed(502, CONNECT_FAILED, f"sending the request: {exc}") from None
        if stream.body_complete:
            await _relay_response(stream, ex, timeout, may_retry and ex.reused,
                                  replayable=True, web=web)
        else:
            await _relay_with_upload(stream, ex, timeout, write_timeout, web)
        ok = True
    finally:
        ex.release(ok)


async def pump_upload(stream: HTTPStream, ex, web, write_timeout: float,
                      errors: list[BaseException], scope: trio.CancelScope) -> None:
    """Copy the rest of the client's upload to the backend exchange (a task beside the
    response relay).  A client failure is put in `errors` and cancels `scope`; a backend
    that stops reading ends the copy quietly (its answer or EOF tells the rest)."""
    rec = getattr(stream, "tel", None)
    up = rec.grpc.up if rec is not None and rec.grpc is not None else None
    try:
        while True:
            got = await stream.receive_body()
            for ev in (web.to_backend(got) if web is not None else (got,)):
                if ev.__class__ is Data:
                    ex.send_data(ev.data)  # type: ignore[attr-defined]
                    if up is not None:
                        up(ev.data)  # type: ignore[attr-defined]
                else:
                    ex.send_end(ev.trailers)  # type: ignore[attr-defined]
            await ex.flush(write_timeout)
            if got.__class__ is EndOfMessage:
                return
    except (TransportClosed, TransportTimeout):
        return
    except (BodyError, ClientGone) as exc:
        errors.append(exc)
        scope.cancel()


async def _relay_with_upload(stream: HTTPStream, ex, timeout: float,
                             write_timeout: float, web=None) -> None:
    """The request body is still arriving: pump it in a second task while relaying."""
    body_error: list[BaseException] = []

    # Nothing may be raised out of the nursery block: trio (strict exception groups)
    # would wrap it in an ExceptionGroup, which our callers do not catch.
    failed: list[BaseException] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump_upload, stream, ex, web, write_timeout, body_error,
                           nursery.cancel_scope)
        try:
            await _relay_response(stream, ex, timeout, False, replayable=False, web=web)
        except (_BackendFailed, ClientGone) as exc:
            failed.append(exc)
        nursery.cancel_scope.cancel()  # the answer is complete: stop reading the upload
    if body_error:
        raise body_error[0]
    if failed:
        raise failed[0]


async def _relay_response(stream: HTTPStream, ex, timeout: float, may_retry: bool,
                          replayable: bool, web=None) -> None:
    """Relay the backend's answer to the client, flushing after every batch (so server-sent
    events go out as they come, and a slow client slows the backend)."""
    rec = stream.tel
    while True:
        answered = ex.answered
        try:
            events = await ex.receive(timeout)
        except TransportTimeout:
            raise _BackendFailed(504, TIMED_OUT, f"no answer within {timeout}s") from None
        except TransportClosed as exc:
            if may_retry and not answered:
                raise _Retry() from None
            raise _BackendFailed(502, CLOSED, f"connection lost: {exc}") from None
        except ProtocolError as exc:
            if may_retry and not answered and not ex.answered:
                raise _Retry() from None
            raise _BackendFailed(502, BAD_RESPONSE, exc.message) from None
        if rec is not None and rec.grpc is not None:
            down = rec.grpc.down
            for ev in events:
                if ev.__class__ is Data:
                    down(ev.data)  # type: ignore[attr-defined]
        if web is not None:
            events = [x for ev in events for x in web.to_client(ev)]
        for ev in events:
            t = ev.__class__
            if t is Data:
                stream.send_data(ev.data)  # type: ignore[attr-defined]
            elif t is Response:
                if stream.tel is not None:
                    stream.tel.t_head = _now()
                stream.send_response(ev.status_code,  # type: ignore[attr-defined]
                                     forward_response_headers(  # type: ignore
                                         ev.headers, ev.http_version),  # type: ignore
                                     ev.reason)  # type: ignore[attr-defined]
            elif t is EndOfMessage:
                stream.send_end(ev.trailers)  # type: ignore[attr-defined]
                await stream.flush()
                return
            elif t is InformationalResponse:
                if ev.status_code not in (100, 101):  # type: ignore[attr-defined]
                    stream.send_informational(ev.status_code,  # type: ignore
                                              forward_response_headers(ev.headers))  # type: ignore
            elif t is StreamReset:  # an HTTP/2 backend gave up on this stream
                if (ev.error_code == _REFUSED_STREAM and replayable  # type: ignore
                        and not stream.response_started):
                    raise _Retry()  # RFC 9113 §8.7: refused streams were not processed
                raise _BackendFailed(502, STREAM_RESET, f"RST_STREAM error code "
                                          f"{ev.error_code}")  # type: ignore
            elif t is ConnectionClosed:  # EOF before any response byte
                if may_retry and not answered:
                    raise _Retry()
                raise _BackendFailed(502, CLOSED, "closed before answering")
        await stream.flush()
