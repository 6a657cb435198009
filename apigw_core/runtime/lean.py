"""The executor's usual case in one coroutine: a forward-request to a plain HTTP/1.1 pool,
the answer streamed back with its head as the policies left it.

Strategy.  admission.run_pipeline runs a request here instead of through `_Call.run`
when nothing about the request itself needs the general executor: an HTTP/1.x caller, no
WebSocket, gRPC or deadline, the whole body in, no debug trace and no sampled span.  It
drives the same engine generator (gateway.pipeline.engine.run: every decision stays
there) and carries out the one command it knows, a `ForwardRequest` with no buffering,
the way executor._Call._forward does: the head written in C, one attempt, and a second
on a fresh connection when a reused one failed before answering; the response head in
ctx.response for outbound; and, when the program ends with "send the response" and the
backend's whole body came with its head, head and body written in one flush.

Anything else, at any point (another command, a forward the C head cannot write, a failed
forward, an answer or an error, a body still to come), goes to a `_Call` built from what
is done so far (the body taken, the exchange open, the budget counted), whose `drive`
carries on exactly where this stopped.  What this saves is the `_Call` object and its
three coroutine levels per request: the work is the same.
"""

from __future__ import annotations

from time import perf_counter as _now
from typing import TYPE_CHECKING, Any, Optional

from ..gateway.forwarding import forward_request_head, forward_response_headers
from ..gateway.pipeline import Context, ForwardRequest, Headers, PolicyError, ResponseView, run
from ..protocol import Data, EndOfMessage, ProtocolError, Response
from ..protocol.http1 import ForwardedHead
from .budget import BUDGETS
from .commands import run_finish
from .executor import _IDEMPOTENT, _H1_OPEN, _Call, target_of
from .proxy import _authority_of
from .respond import _REASON_FOR, _Failed, _merge, receive_failed
from .transport import TransportClosed, TransportTimeout
from .upstream import CONNECT_FAILED, UpstreamError, log_failure

if TYPE_CHECKING:
    from .state import GatewayState
    from .stream import HTTPStream

__all__ = ["run_lean"]


async def run_lean(gw: Any, state: "GatewayState", stream: "HTTPStream", route: Any,
                   ctx: Context, program: Any, rid: bytes,
                   error: Optional[PolicyError]) -> None:
    """One request through `program` (see the module docstring); the caller checked that
    the request qualifies."""
    req = ctx.request
    original = (req.path, req.query)
    gen = run(program, ctx, error)

    def handover(**done: Any) -> _Call:
        call = _Call(gw, state, stream, route, ctx, program, None, rid)
        call.original = original
        for k, v in done.items():
            setattr(call, k, v)
        return call

    try:
        cmd = gen.send(None)
    except StopIteration as stop:   # answered (or refused) before any forward
        await handover().drive(gen, result=stop.value)
        return
    key_cfg = getattr(ctx.api, "subscription_key", None)
    if (cmd.__class__ is not ForwardRequest or cmd.buffer_request_body
            or req.body is not None or ctx.backend_url is not None
            or ctx.backend_certificate is not None
            or (key_cfg is not None and not key_cfg.forward)):
        await handover().drive(gen, cmd=cmd)
        return
    pool = state.pool_for(ctx.backend_id or route.backend.name, cmd.http_version)
    if pool.__class__.open is not _H1_OPEN:   # a balanced pool, HTTP/2, a test's pool
        await handover().drive(gen, cmd=cmd)
        return
    backend = pool.backend
    method = req.method.encode("ascii")
    creq = stream.request
    target = creq.target
    fast = forward_request_head(
        method, target_of(ctx, route, original, backend.base_path), req.headers.items,
        stream.client[0], stream.scheme, pool.authority, gw.request_ids,
        None if target[:1] == b"/" else _authority_of(target), creq.http_version,
        stream.tls)
    body = stream.take_body()
    if fast is None or body is None:
        await handover(body_events=body).drive(gen, cmd=cmd)
        return
    upreq = ForwardedHead(1, method, fast[0], fast[2], fast[3])
    name = backend.name
    BUDGETS.start(name)   # retrying.started: active on its backend until the end
    timeout = cmd.timeout if cmd.timeout is not None else backend.timeout
    wt = gw.config.server.write_timeout
    rec = stream.tel
    ex: Any = None
    failed: Optional[_Failed] = None
    try:
        for attempt in (1, 2):
            may_retry = attempt == 1 and method in _IDEMPOTENT and len(body) == 1
            if rec is not None:
                rec.attempt(pool)
            try:
                ex = await pool.open(upreq)
            except UpstreamError as e:
                failed = _Failed(e.status, e.public, str(e))
                break
            try:
                for ev in body:
                    if ev.__class__ is Data:
                        ex.send_data(ev.data)
                    else:
                        ex.send_end(ev.trailers)
                try:
                    await ex.flush(wt)
                except (TransportClosed, TransportTimeout) as e:
                    raise _Failed(502, CONNECT_FAILED, f"sending the request: {e}",
                                  may_retry and ex.reused) from None
                may_retry = may_retry and ex.reused
                try:
                    events = await ex.receive(timeout)
                except (TransportTimeout, TransportClosed, ProtocolError) as e:
                    raise receive_failed(e, ex, timeout, may_retry) from None
            except _Failed as f:
                ex.release(False)
                ex = None
                if f.retry and attempt == 1:
                    continue
                failed = f
                break
            if not events or events[0].__class__ is not Response:   # a 1xx, a partial head
                call = handover(body_events=body, budget_key=name, budget=backend.retry_budget,
                                timeout=timeout)
                try:
                    while not await call._head(events, may_retry, True):
                        events = await call._receive(ex, timeout, may_retry)
                except _Failed as f:
                    ex.release(False)
                    ex = None
                    if f.retry and attempt == 1:
                        continue
                    failed = f
                    break
                call.ex, ex = ex, None
                name = None   # (the call counts the budget down now)
                await call.drive(gen)
                return
            head = events[0]
            if rec is not None:
                rec.t_head = _now()
            ctx.response = ResponseView(   # positional, as respond.Responding._response_head
                head.status_code, head.reason.decode("latin-1"),
                Headers(forward_response_headers(head.headers, head.http_version)))
            break
        if failed is not None:   # the forward failed: the program sees it (on-error)
            log_failure(rid, name, failed.status, failed.detail, False)
            if rec is not None and not rec.t_head:
                rec.t_head = _now()
            call = handover(body_events=body, budget_key=name, budget=backend.retry_budget)
            name = None   # (the call counts the budget down now)
            await call.drive(gen, exc=PolicyError(
                failed.status, _REASON_FOR.get(failed.status, "BackendConnectionFailure"),
                failed.public, source="forward-request"))
            return
        pending = events[1:]
        try:
            cmd = gen.send(None)   # outbound
        except StopIteration as stop:
            result = stop.value
        else:
            result = None
        r = ctx.response
        if (result is None or result.kind != "response" or r.body is not None
                or stream.response_complete or not pending
                or pending[-1].__class__ is not EndOfMessage
                or len(pending) > 2 and not all(ev.__class__ is Data for ev in pending[:-1])
                or len(pending) == 2 and pending[0].__class__ is not Data):
            call = handover(body_events=body, budget_key=name, budget=backend.retry_budget,
                            ex=ex, pending=pending, timeout=timeout)
            ex = name = None
            await (call.drive(gen, cmd=cmd) if result is None else call.drive(gen, result=result))
            return
        extra = ctx.response_headers
        stream.send_response(r.status, _merge(r.headers.items, list(extra)) if extra
                             else r.headers.items, r.reason.encode("latin-1"))
        for ev in pending[:-1]:
            stream.send_data(ev.data)
        ex.release(True)   # the whole answer is in: the connection goes back at once
        ex = None
        stream.send_end(pending[-1].trailers)
        await stream.flush()
    finally:
        if ex is not None:
            ex.release(False)   # not relayed to its end: never reused
        if name is not None:
            BUDGETS.done(name, False)
            if ctx.finish:
                run_finish(ctx, rid)
