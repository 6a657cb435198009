"""The one executor of pipeline commands: a request through its policy program.

Strategy.  The pipeline (gateway.pipeline.engine.run) is a generator that decides and
yields commands; this module is the only place that carries them out, over the request's
`HTTPStream` and the backend pools:

- `ReadRequestBody`: the client's body, buffered up to the limit (413 past it);
- `ForwardRequest`: the request as the policies left it (method, path, query, headers,
  body) to the selected backend; it returns when the response *head* is in, so outbound
  policies see status and headers while the body still waits in the backend connection.
  Its head is written whole in C (gateway.forwarding.forward_request_head, sent as a
  `ForwardedHead`, as on the direct path) when those bytes are the general path's: an
  HTTP/1.x client, a plain HTTP/1.1 pool (UpstreamPool's `open`), no body a policy set,
  no gRPC-Web, no sampled trace (whose traceparent changes per attempt), and a
  `forward: false` subscription key only when its field is one the forwarding rules pass
  on as it is (`forwarding.passed_through`: removed from their input instead of their
  output); else `forward_request_headers`, `without_key` and a `Request`;
- `ReadResponseBody`: that body, buffered up to the limit (502 past it);
- `SendRequest`: a whole exchange with another service (send-request).

A failure becomes a `PolicyError` thrown into the generator (APIM's reasons:
BackendConnectionFailure, Timeout), so on-error sees it.  When the generator returns, its
`Result` is written: a policy's answer, the error's answer (APIM JSON as on-error left it,
or a trailers-only gRPC status for a gRPC caller), or the response, its body streamed from
the backend unless a policy buffered or replaced it.  Bodies are never buffered unless a
policy asks: a streaming upload is pumped to the backend by a second task, as on the
direct path (proxy.py), and a streamed response is relayed batch by batch.

The response half (the backend's head and body taken in, the `Result` written) is
respond.py's `Responding`, `_Call`'s base class.

A backend that is a pool (or has a breaker or health checks) is a `BalancedPool`
(runtime/balance.py): `_Call.tried` is the set of pool members this request went to;
each forward adds the member it picked, and a later forward of the same request (a retry)
goes to a member not in it while one is available.
"""

from __future__ import annotations

import dataclasses
import logging
from time import perf_counter as _now
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import urlsplit

import trio

from ..gateway.forwarding import forward_request_head, forward_request_headers, passed_through
from ..gateway.pipeline import (
    Context, ForwardRequest, PolicyError, ReadRequestBody, ReadResponseBody, SendRequest, run,
)
from ..gateway.subscriptions import without_key
from ..protocol import Data, EndOfMessage, Request, Response
from ..protocol.http1 import ForwardedHead
from .stream import BodyError
# proxy.py imports this module lazily (via admission.py, inside proxy_handler), so importing it here at the
# top makes no cycle, and the request path does no import work
from .proxy import _authority_of, _h1_framing, pump_upload
from .balance import BalancedPool
from .commands import COMMAND_HANDLERS, run_finish
from . import retrying  # noqa: F401  (registers the retry policy's commands)
from .budget import BUDGETS   # retrying.py's per-request counts, kept inline here
from . import telemetry as _telemetry  # noqa: F401  (the trace / emit-metric handlers)
from . import llm_metrics as _llm_metrics  # noqa: F401  (llm-emit-token-metric's handler)
from . import limits as _limits  # noqa: F401  (the limit policies' handlers)
from .respond import _BODY_FRAMING, Responding, _Failed, _REASON_FOR, _with_length, _without
from .service import send_request
from .transport import TransportClosed, TransportTimeout
from .wsproxy import proxy_websocket
from .upstream import CONNECT_FAILED, UpstreamError, UpstreamPool, log_failure

if TYPE_CHECKING:
    from .stream import HTTPStream
    from .state import GatewayState

__all__: list[str] = []   # the entry point is admission.run_pipeline; _Call is its engine

log = logging.getLogger("apigw_core.runtime")

_IDEMPOTENT = frozenset((b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"))
_H1_OPEN = UpstreamPool.open   # a pool with this open sends a ForwardedHead as it is


def target_of(ctx: Context, route: Any, original: tuple[str, str], base_path: str) -> bytes:
    """The upstream target: the backend's base path + the path after the API prefix, as
    the policies left it (the router's own when nothing changed since `original`, the
    request's (path, query) before the program ran)."""
    req = ctx.request
    if (req.path, req.query) == original and base_path == route.backend.base_path:
        return route.path
    prefix = ctx.api.path
    rest = req.path[len(prefix):] if req.path.startswith(prefix) else req.path
    path = (base_path + rest) or "/"
    if not path.startswith("/"):
        path = "/" + path
    target = path + ("?" + req.query if req.query else "")
    return target.encode("utf-8", "surrogateescape")


class _Call(Responding):
    """One request's run through its program (see the module docstring); the response
    half (the backend's answer taken in, the result written) is respond.py's."""

    # retry bookkeeping (runtime/retrying.py): the backend counted active, its budget,
    # a retry slot held
    budget_key: Optional[str] = None
    budget: Any = None
    retry_slot = False
    # per-request state that starts the same in every call: class defaults, assigned
    # (never mutated in place) when it changes, so __init__ sets only what differs
    body_events: Optional[list] = None   # the client's body, when at hand
    ex: Any = None              # the backend exchange after ForwardRequest
    pending: list = []          # response events received with the head (never mutated)
    resp_done = False           # the backend's EndOfMessage was taken
    resp_trailers: Any = ()
    nursery: Optional[trio.Nursery] = None
    ws_done = False

    def __init__(self, gw: Any, state: "GatewayState", stream: "HTTPStream", route: Any,
                 ctx: Context, program: Any, web: Any, rid: bytes) -> None:
        self.gw, self.state, self.stream, self.route = gw, state, stream, route
        self.ctx, self.program, self.web, self.rid = ctx, program, web, rid
        req = stream.request
        self.original = (ctx.request.path, ctx.request.query)
        self.pump_error: list[BaseException] = []
        self.websocket = req.upgrade == b"websocket" or req.protocol == b"websocket"
        self.tried: set[str] = set()     # pool members this request went to (a retry
                                         # goes to another one: runtime/balance.py)
        self.taps: list = []   # f(bytes): sees the response body as it goes (TapResponse)

    # -- driving the generator -------------------------------------------------------------

    async def run(self, error: Optional[PolicyError]) -> None:
        await self.drive(run(self.program, self.ctx, error))

    async def drive(self, gen: Any, result: Any = None) -> None:
        """Carry out `gen`'s commands, write its Result and clean up; with `result`, only
        the last two (what runtime/lean.py hands over: a generator for the rest of the
        request, or the Result it came to)."""
        value: Any = None
        exc: Optional[BaseException] = None
        try:
            while result is None:
                try:
                    cmd = gen.throw(exc) if exc is not None else gen.send(value)
                except StopIteration as stop:
                    result = stop.value
                    break
                value = exc = None
                try:
                    if cmd.__class__ is ForwardRequest:   # the usual one: no dispatch call
                        value = await self._forward(cmd)
                    else:
                        value = await self._execute(cmd)
                except PolicyError as e:
                    exc = e
            if result.exception is not None:
                log.error("policy failed for request %s", self.rid.decode("latin-1"),
                          exc_info=result.exception)
            await self._write(result)
        finally:
            if self.ex is not None:
                self.ex.release(False)   # not relayed to its end: never reused
                self.ex = None
            if self.budget_key is not None:   # retrying.finished, inline
                BUDGETS.done(self.budget_key, self.retry_slot)
                self.budget_key, self.retry_slot = None, False
            if self.ctx.finish:
                run_finish(self.ctx, self.rid)
        if self.pump_error:
            raise self.pump_error[0]

    async def _execute(self, cmd: Any) -> Any:
        t = cmd.__class__
        if t is ForwardRequest:
            return await self._forward(cmd)
        if t is ReadRequestBody:
            return await self._read_request_body(cmd.limit)
        if t is ReadResponseBody:
            return await self._read_response_body(cmd.limit)
        if t is SendRequest:
            return await send_request(self.state, cmd)
        handler = COMMAND_HANDLERS.get(t)
        if handler is not None:   # commands of later features (runtime/commands.py)
            return await handler(self, cmd)
        raise PolicyError(500, "InternalError", "internal error",
                          source=f"unknown command {t.__name__}")

    # -- the request body ----------------------------------------------------------------

    async def _client_body(self, limit: Optional[int]) -> list:
        """Every body event of the client's request (taken once, kept for a retry)."""
        if self.body_events is None:
            # the whole body at hand (a GET, a small upload): taken at once, as on the
            # direct path (proxy.py), no coroutine per event
            # (a limit keeps the loop: a 413 leaves the rest unread, as before)
            events = self.stream.take_body() if limit is None else None
            if events is not None:
                self.body_events = events
                return events
            events = []
            size = 0
            while True:
                try:
                    ev = await self.stream.receive_body()
                except BodyError as e:
                    raise PolicyError(e.status, "ClientConnectionFailure", e.message) from None
                events.append(ev)
                if ev.__class__ is EndOfMessage:
                    break
                size += len(ev.data)
                if limit is not None and size > limit:
                    raise PolicyError(413, "RequestEntityTooLarge",
                                      "Request body is too large.")
            self.body_events = events
        return self.body_events

    async def _read_request_body(self, limit: int) -> bytes:
        events = await self._client_body(limit)
        body = b"".join(ev.data for ev in events if ev.__class__ is Data)
        self.ctx.request.body = body
        return body

    # -- forwarding ------------------------------------------------------------------------

    def _target(self, base_path: str) -> bytes:
        return target_of(self.ctx, self.route, self.original, base_path)

    def _pool_of(self, cmd: ForwardRequest) -> tuple[Any, str]:
        ctx, state = self.ctx, self.state
        if ctx.backend_url is not None:
            u = urlsplit(ctx.backend_url)
            scheme = u.scheme
            port = u.port or (443 if scheme == "https" else 80)
            pool = state.pool_for_url(scheme, u.hostname or "", port,
                                      cmd.http_version or "1")
            if pool is None:
                raise PolicyError(503, "BackendConnectionFailure", "too many backend origins")
            return pool, u.path.rstrip("/")
        name = ctx.backend_id or self.route.backend.name
        pool = state.pool_for(name, cmd.http_version)
        return pool, pool.backend.base_path

    async def _forward(self, cmd: ForwardRequest) -> None:
        ctx, stream = self.ctx, self.stream
        if self.ex is not None:
            raise PolicyError(500, "InternalError", "the request was forwarded already")
        if ctx.backend_url is None:   # the usual: a named backend (_pool_of's first case)
            pool = self.state.pool_for(ctx.backend_id or self.route.backend.name,
                                       cmd.http_version)
            base_path = pool.backend.base_path
        else:
            pool, base_path = self._pool_of(cmd)
        if ctx.backend_certificate is not None:   # authentication-certificate
            pool = self.state.with_certificate(pool, ctx.backend_certificate)
        if self.budget_key is None:   # retrying.started inline: counted active on its
            self.budget_key = name = pool.backend.name   # backend from the first forward
            self.budget = pool.backend.retry_budget
            BUDGETS.start(name)
        req = stream.request
        target = req.target
        authority = None if target[:1] == b"/" else _authority_of(target)
        upath = self._target(base_path)
        key_cfg = getattr(ctx.api, "subscription_key", None)
        strip = key_cfg is not None and not getattr(key_cfg, "forward", True)  # (not the default)
        method = ctx.request.method.encode("ascii")
        if self.websocket:
            headers, upath = self._headers(pool, upath, authority, strip)
            await self._tunnel(pool, headers, upath)
            return None
        if cmd.buffer_request_body and ctx.request.body is None:
            await self._read_request_body(self.program.body_limit)
        web = self.web
        rec = stream.tel
        # The whole head in C where its bytes are the general path's (forwarding.py:
        # forward_request_head, as on the direct path in proxy.py): an HTTP/1.x request
        # to a plain HTTP/1.1 pool (its open is UpstreamPool's: a BalancedPool rewrites
        # Host and path per member, an HTTP/2 pool takes a Request)
        # whose head nothing rewrites after forwarding: no body a policy set (its
        # Content-Length, trailers' chunking), no gRPC-Web, no HTTP/2 client's framing,
        # no sampled trace's traceparent per attempt.  (admission.py forwarded a gRPC
        # caller's grpc-timeout in the headers already.)
        upreq: Any = None
        if (ctx.request.body is None and pool.__class__.open is _H1_OPEN and web is None
                and req.http_version != b"2" and (rec is None or rec.spans is None)):
            items = ctx.request.headers.items
            fpath: Optional[bytes] = upath
            if strip:   # the key goes before the C call: the same bytes when its field
                # is one forward_request_headers only passes on (else the general path)
                if passed_through(key_cfg.header.lower().encode("ascii")):
                    items, fpath = without_key(ctx.api, items, upath)
                else:
                    fpath = None
            fast = None if fpath is None else forward_request_head(
                method, fpath, items, stream.client[0], stream.scheme, pool.authority,
                self.gw.request_ids, authority, req.http_version, stream.tls)
            if fast is not None:   # (its request id is ctx's x-request-id, as below)
                upreq = ForwardedHead(1, method, fast[0], fast[2], fast[3])
        if upreq is None:
            headers, upath = self._headers(pool, upath, authority, strip)
        body: Optional[list]
        if ctx.request.body is not None:   # (never with a head from C)
            trailers = self.body_events[-1].trailers if self.body_events else ()
            body = [Data(1, ctx.request.body), EndOfMessage(1, trailers)] \
                if ctx.request.body else [EndOfMessage(1, trailers)]
            if ctx.request.body or (method not in (b"GET", b"HEAD") and not trailers):
                headers = _with_length(headers, len(ctx.request.body))
            if trailers:
                headers = _without(headers, _BODY_FRAMING) + [(b"transfer-encoding", b"chunked")]
        elif stream.body_complete:   # _client_body(None), its usual case inline
            body = self.body_events
            if body is None:
                body = self.body_events = stream.take_body()
                if body is None:
                    body = await self._client_body(None)
        else:
            body = None     # streamed by the pump
        if upreq is None:
            upreq = Request(1, method, upath, headers)
        if web is not None:
            upreq = web.request_head(upreq)
            if body is not None:
                body = [x for ev in body for x in web.to_backend(ev)]
        if req.http_version == b"2" and ctx.request.body is None and (
                body is None or len(body) != 1 or body[0].trailers):
            upreq = _h1_framing(upreq, body)
        timeout = cmd.timeout if cmd.timeout is not None else pool.backend.timeout
        retry_ok = body is not None and method in _IDEMPOTENT and len(body) == 1
        for attempt in (1, 2):
            try:
                await self._exchange(pool, upreq, body, timeout, retry_ok and attempt == 1)
                break
            except _Failed as f:
                if f.retry and attempt == 1:
                    continue
                log_failure(self.rid, pool.backend.name, f.status, f.detail, False)
                rec = self.stream.tel
                if rec is not None and not rec.t_head:
                    rec.t_head = _now()
                raise PolicyError(f.status, _REASON_FOR.get(f.status, "BackendConnectionFailure"),
                                  f.public, source="forward-request") from None
        return None

    def _headers(self, pool: Any, upath: bytes, authority: Optional[bytes], strip: bool,
                 ) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """The general path's backend headers and target (the request id is ctx's
        x-request-id, which admission.py set; a new one only if a policy removed it)."""
        ctx, stream = self.ctx, self.stream
        headers, _ = forward_request_headers(
            ctx.request.headers.items, client_ip=stream.client[0], scheme=stream.scheme,
            backend_authority=pool.authority, new_id=self.gw.request_ids,
            authority=authority, version=stream.request.http_version, tls=stream.tls)
        if strip:   # subscription-key forward: false
            headers, upath = without_key(ctx.api, headers, upath)
        return headers, upath

    async def _exchange(self, pool: Any, upreq: "Request | ForwardedHead",
                        body: Optional[list],
                        timeout: float, may_retry: bool) -> None:
        # (a ForwardedHead's headers are None: attempt then has no traceparent to set,
        # and _forward makes one only when no trace is sampled)
        rec = self.stream.tel
        up = None
        if rec is not None:
            rec.attempt(pool, upreq.headers)
            if rec.grpc is not None and rec.attempts == 1:   # a retry sends the same again
                up = rec.grpc.up
        try:
            ex = await (pool.open(upreq, self.tried) if pool.__class__ is BalancedPool
                        else pool.open(upreq))
        except UpstreamError as e:
            raise _Failed(e.status, e.public, str(e)) from None
        try:
            for ev in body or ():
                if ev.__class__ is Data:
                    ex.send_data(ev.data)
                    if up is not None:
                        up(ev.data)
                else:
                    ex.send_end(ev.trailers)
            wt = self.gw.config.server.write_timeout
            try:
                await ex.flush(wt)
            except (TransportClosed, TransportTimeout) as e:
                raise _Failed(502, CONNECT_FAILED, f"sending the request: {e}",
                              may_retry and ex.reused) from None
            if body is None:
                self._start_pump(ex, wt)
            may_retry = may_retry and ex.reused
            while True:   # until the response head (a coroutine level less than a helper)
                events = await self._receive(ex, timeout, may_retry)
                if events and events[0].__class__ is Response:   # the usual: head first
                    self._response_head(events[0], events, 1)
                    break
                if await self._head(events, may_retry, body is not None):
                    break
        except BaseException:
            ex.release(False)
            raise
        self.ex = ex
        self.timeout = timeout

    def _start_pump(self, ex: Any, write_timeout: float) -> None:
        nursery = self.nursery
        assert nursery is not None, "a streamed upload runs inside the call's nursery"
        nursery.start_soon(pump_upload, self.stream, ex, self.web, write_timeout,
                           self.pump_error, nursery.cancel_scope)

    async def _tunnel(self, pool: Any, headers: list, upath: bytes) -> None:
        route = dataclasses.replace(self.route, path=upath)
        await proxy_websocket(self.stream, route, pool, headers, self.rid,
                              self.gw.config.server)
        self.ws_done = True
