"""The executor's usual case in one coroutine: a forward-request to a plain HTTP/1.1 pool,
the answer streamed back with its head as the policies left it.

Strategy.  admission.run_pipeline runs a request here instead of through `_Call.run`
when nothing about the request itself needs the general executor: an HTTP/1.x caller, no
WebSocket, gRPC or deadline, the whole body in, no debug trace and no sampled span.  The
program's decisions stay in the engine (gateway.pipeline.engine): when its backend
section is a lone plain forward-request (`Program.lone_forward`), this calls
`engine.inbound`, carries out that command the way executor._Call._forward does (the
head written in C, one attempt, and a second on a fresh connection when a reused one
failed before answering), puts the response head in ctx.response and calls
`engine.outbound`; when that says "send the response" and the backend's whole body came
with its head, head and body go out in one flush.  No generator, no `_Call`.

Anything else, at any point (a refusal, an answer, a policy that yields commands, a
forward the C head cannot write, a failed forward, a 1xx, a body still to come), goes to
a `_Call` built from what is done so far (the body taken, the exchange open, the budget
counted) with the generator the engine gives for the rest of the request
(`engine.run`, `from_backend`, `forward_failed`, or what `inbound` / `outbound`
returned), and `_Call.drive` carries on from there.  What this saves is the `_Call`
object, the engine's generator and three coroutine levels per request: the work is the
same.
"""

from __future__ import annotations

from time import perf_counter as _now
from typing import TYPE_CHECKING, Any, Optional

from ..gateway.forwarding import forward_request_head, forward_response_headers
from ..gateway.pipeline import Context, Headers, PolicyError, ResponseView, run
from ..gateway.pipeline.engine import Result, forward_failed, from_backend, inbound, outbound
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


def _handover(args: tuple, **done: Any) -> _Call:
    """A `_Call` for the rest of the request, with what is done so far."""
    gw, state, stream, route, ctx, program, original, rid = args
    call = _Call(gw, state, stream, route, ctx, program, None, rid)
    call.original = original
    for k, v in done.items():
        setattr(call, k, v)
    return call


async def run_lean(gw: Any, state: "GatewayState", stream: "HTTPStream", route: Any,
                   ctx: Context, program: Any, rid: bytes,
                   error: Optional[PolicyError]) -> None:
    """One request through `program` (see the module docstring); the caller checked that
    the request qualifies."""
    req = ctx.request
    original = (req.path, req.query)
    args = (gw, state, stream, route, ctx, program, original, rid)
    cmd = program.lone_forward
    if error is not None or cmd is None:   # a refusal, or a backend section of its own
        await _handover(args).drive(run(program, ctx, error))
        return
    rest = inbound(program, ctx)
    if rest is not None:   # answered, failed, or a policy that yields commands
        await _handover(args).drive(rest)
        return
    key_cfg = getattr(ctx.api, "subscription_key", None)
    if (cmd.buffer_request_body or req.body is not None or ctx.backend_url is not None
            or ctx.backend_certificate is not None
            or (key_cfg is not None and not key_cfg.forward)):
        await _handover(args).drive(from_backend(program, ctx))
        return
    pool = state.pool_for(ctx.backend_id or route.backend.name, cmd.http_version)
    if pool.__class__.open is not _H1_OPEN:   # a balanced pool, HTTP/2, a test's pool
        await _handover(args).drive(from_backend(program, ctx))
        return
    backend = pool.backend
    method = req.method.encode("ascii")
    creq = stream.request
    target = creq.target
    base_path = backend.base_path
    upath = route.path if (req.path == original[0] and req.query == original[1]
                           and base_path == route.backend.base_path) \
        else target_of(ctx, route, original, base_path)   # a policy moved it
    fast = forward_request_head(
        method, upath, req.headers.items,
        stream.client[0], stream.scheme, pool.authority, gw.request_ids,
        None if target[:1] == b"/" else _authority_of(target), creq.http_version,
        stream.tls)
    body = stream.take_body()
    if fast is None or body is None:
        await _handover(args, body_events=body).drive(from_backend(program, ctx))
        return
    upreq = ForwardedHead(1, method, fast[0], fast[2], fast[3])
    before = ctx.response      # (an inbound set-status may have started one)
    name = backend.name
    active = BUDGETS.active   # retrying.started (BUDGETS.start) inline: the request is
    active[name] = active.get(name, 0) + 1   # active on its backend until it is over
    timeout = cmd.timeout if cmd.timeout is not None else backend.timeout
    rec = stream.tel
    ex: Any = None
    call: Optional[_Call] = None
    failed: Optional[_Failed] = None
    try:
        replayable = method in _IDEMPOTENT and len(body) == 1
        for attempt in (1, 2):
            may_retry = replayable and attempt == 1
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
                    await ex.flush(gw.config.server.write_timeout)
                except (TransportClosed, TransportTimeout) as e:
                    raise _Failed(502, CONNECT_FAILED, f"sending the request: {e}",
                                  may_retry and ex.reused) from None
                may_retry = may_retry and ex.reused
                try:
                    events = await ex.receive(timeout)
                except (TransportTimeout, TransportClosed, ProtocolError) as e:
                    raise receive_failed(e, ex, timeout, may_retry) from None
                if not events or events[0].__class__ is not Response:
                    # a 1xx, a head in pieces, an EOF: the call's own loop takes them
                    call = _handover(args, body_events=body, budget_key=name,
                                     budget=backend.retry_budget, timeout=timeout)
                    while not await call._head(events, may_retry, True):
                        events = await call._receive(ex, timeout, may_retry)
            except _Failed as f:
                ex.release(False)
                ex = call = None
                if f.retry and attempt == 1:
                    continue
                failed = f
            break
        if failed is not None:   # the forward failed: the program sees it (on-error)
            log_failure(rid, name, failed.status, failed.detail, False)
            if rec is not None and not rec.t_head:
                rec.t_head = _now()
            call = _handover(args, body_events=body, budget_key=name, budget=backend.retry_budget)
            name = None   # (the call counts the budget down now)
            await call.drive(forward_failed(program, ctx, PolicyError(
                failed.status, _REASON_FOR.get(failed.status, "BackendConnectionFailure"),
                failed.public, source="forward-request"), before))
            return
        if call is None:
            head = events[0]
            if rec is not None:
                rec.t_head = _now()
            ctx.response = ResponseView(   # positional, as respond.Responding._response_head
                head.status_code, head.reason.decode("latin-1"),
                Headers(forward_response_headers(head.headers, head.http_version)))
            pending = events[1:]
        else:
            pending = call.pending
        out = outbound(program, ctx, ctx.response is not before)
        r = ctx.response
        if (call is not None or out.__class__ is not Result or out.kind != "response"
                or r.body is not None or stream.response_complete or not pending
                or pending[-1].__class__ is not EndOfMessage
                or len(pending) > 2 and not all(ev.__class__ is Data for ev in pending[:-1])
                or len(pending) == 2 and pending[0].__class__ is not Data):
            if call is None:
                call = _handover(args, body_events=body, budget_key=name,
                                 budget=backend.retry_budget, pending=pending, timeout=timeout)
            call.ex = ex
            ex = name = None   # (the call releases the exchange and counts the budget down)
            await (call.drive(None, result=out) if out.__class__ is Result
                   else call.drive(out))
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
