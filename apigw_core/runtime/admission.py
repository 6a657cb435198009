"""A request's way into its policy program: operation, subscription key, context.

Strategy.  `run_pipeline` is what proxy.py calls for every API that is not plain: it
matches the operation (OperationNotFound unless a CORS preflight), resolves the
subscription key (APIM's 401s), picks the program for api / operation / product, builds
the `Context` the policies see (the request id forwarded is the one they see), and hands
them to the executor: its usual case (an HTTP/1.x request, the body in, no WebSocket,
gRPC, deadline, debug trace or sampled span) to lean.py's `run_lean` in the connection's
own task, else to the executor's `_Call` (executor.py), in the connection's own task
when the body is in and no deadline applies, else in a nursery beside the upload pump,
under the caller's grpc-timeout.
"""

from __future__ import annotations

from operator import itemgetter
from typing import TYPE_CHECKING, Any, Optional

import trio

from ..gateway.operations import OperationMatch
from ..gateway.pipeline import Context, Headers, PolicyError, RequestView
from ..gateway.subscriptions import Access
from ..protocol import Request, grpc
from .debugtrace import traced_program
from .executor import _Call
from .lean import run_lean
from .proxy import _deadline_exceeded
from .stream import BodyError, ClientGone

if TYPE_CHECKING:
    from .stream import HTTPStream
    from .state import GatewayState

__all__ = ["run_pipeline"]

_first = itemgetter(0)   # a field's name


def _request_view(stream: "HTTPStream", route: Any, host: Optional[bytes],
                  params: Any, protocol: str, query: bytes, scheme: str) -> RequestView:
    req = stream.request
    api_path = route.api.path
    full = (api_path.encode() + route.rest) if route.rest or api_path else b"/"
    # positional (method, scheme, host, path, query, headers, ip, params, body, tls,
    # protocol): a dataclass __init__ called with keywords costs twice as much
    tls = stream.tls
    return RequestView(
        req.method.decode("ascii"), scheme,
        host.decode("latin-1") if host else "",
        full.decode("utf-8", "surrogateescape") or "/",
        query.decode("utf-8", "surrogateescape") if query else "", Headers(list(req.headers)),
        stream.client[0], dict(params) if params else {}, None,
        tls.cert if tls is not None else None, protocol)


def _is_preflight(req: Request) -> bool:
    if req.method != b"OPTIONS":
        return False
    origin = acrm = False
    for n, _ in req.headers:
        if n == b"origin":
            origin = True
        elif n == b"access-control-request-method":
            acrm = True
    return origin and acrm


def _has_cors(program: Any) -> bool:
    return any(step.name == "cors" for step in program.inbound)


async def run_pipeline(gw: Any, state: "GatewayState", stream: "HTTPStream", route: Any,
                       host: Optional[bytes], web: Any, protocol: str,
                       grpc_timeout: Optional[float] = None) -> None:
    """Serve one request of a non-plain API: operation, subscription, program, commands.
    `grpc_timeout`: the caller's grpc-timeout, enforced here and forwarded as what is left."""
    req = stream.request
    api = route.api
    query = route.path.partition(b"?")[2]
    scheme = stream.scheme.decode("ascii")
    error: Optional[PolicyError] = None
    op_match = state.operations.match(api, req.method, route.rest, query)
    preflight = req.method == b"OPTIONS" and _is_preflight(req)
    if op_match.__class__ is OperationMatch or hasattr(op_match, "operation"):
        operation, params = op_match.operation, op_match.params
    else:   # Denied: OperationNotFound
        operation, params = None, {}
        if not (preflight and _has_cors(state.programs.get(api.name, None, None))):
            error = PolicyError(op_match.status, op_match.reason, op_match.message,
                                op_match.headers, source="configuration")
    op_name = operation.name if operation is not None else None
    product = subscription = key = None
    if error is None:
        if preflight and _has_cors(state.programs.get(api.name, op_name, None)):
            # APIM answers a preflight with the cors policy alone: no operation (browsers
            # send OPTIONS to any URL) and no subscription key (they send no key)
            access: Any = None
        else:
            access = state.subscriptions.resolve_request(
                api, req.headers, query, scheme=scheme,
                host=host or b"")
        if access is not None and not isinstance(access, Access):
            error = PolicyError(access.status, access.reason, access.message,
                                access.headers, source="configuration")
        elif access is not None:
            product, subscription, key = access.product, access.subscription, access.key
    program = state.programs.get(api.name, op_name, getattr(product, "name", None))
    client_rid = None   # the client's x-request-id (rarely sent: a C scan first)
    if b"x-request-id" in map(_first, req.headers):
        for n, v in req.headers:
            if n == b"x-request-id":
                client_rid = v
                break
    rid = client_rid if client_rid is not None and 0 < len(client_rid) <= 200 \
        else gw.request_ids()
    ctx = Context(_request_view(stream, route, host, params, protocol, query, scheme),
                  rid.decode("latin-1"),
                  api, operation, product, subscription, key)
    if rid is not client_rid:   # the id policies see is the one forwarded
        if client_rid is None:  # (nothing to replace: the copy just gets it)
            ctx.request.headers.items.append((b"x-request-id", rid))
        else:
            ctx.request.headers.set(b"x-request-id", (rid,))
    deadline = None
    if grpc_timeout is not None:
        deadline = trio.current_time() + grpc_timeout
        ctx.request.headers.items = grpc.with_timeout(ctx.request.headers.items, grpc_timeout)
    rec = stream.tel
    if rec is not None:   # runtime/telemetry.py reads the rest from ctx at the end
        rec.route, rec.ctx, rec.rid = route, ctx, rid
        if rec.debug is not None:   # a traced request: each step records what it did
            rec.debug.secure(state.config, ctx)
            program = traced_program(program, rec.debug)
    if (protocol == "http" and grpc_timeout is None and stream.body_complete
            and req.http_version != b"2"
            and (rec is None or rec.spans is None and rec.debug is None)):
        # the usual case (an HTTP/1.x call, no WebSocket, gRPC or deadline, no sampled
        # span, the body in): one coroutine, a _Call only when it needs one
        await run_lean(gw, state, stream, route, ctx, program, rid, error)
        return
    call = _Call(gw, state, stream, route, ctx, program, web, rid)
    if grpc_timeout is None and stream.body_complete:   # no task, no scope
        await call.run(error)
        return

    async def go() -> None:
        if stream.body_complete:
            await call.run(error)
            return
        async with trio.open_nursery() as nursery:
            call.nursery = nursery
            try:
                await call.run(error)
            except (ClientGone, BodyError) as e:
                call.pump_error.append(e)
            nursery.cancel_scope.cancel()
        if call.pump_error:
            raise call.pump_error[0]

    if deadline is None:
        await go()
        return
    with trio.move_on_at(deadline) as scope:
        await go()
    if scope.cancelled_caught:
        await _deadline_exceeded(stream, web)

