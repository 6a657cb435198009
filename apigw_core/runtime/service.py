"""send-request: a whole exchange with another service, for the pipeline's executor.

Strategy.  The URL a policy names gets a pool of its own (GatewayState.pool_for_url, kept
warm and bounded per state); the request goes with a Content-Length, the answer is read
whole up to the command's limit, and every failure becomes the PolicyError APIM's
on-error expects (BackendConnectionFailure, or Timeout past the command's timeout).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import trio

from ..gateway.pipeline import PolicyError, SendRequest, ServiceResponse
from ..protocol import (ConnectionClosed, Data, EndOfMessage, ProtocolError, Request, Response,
                        StreamReset)
from .transport import TransportClosed, TransportTimeout
from .upstream import CLOSED, CONNECT_FAILED, UpstreamError

if TYPE_CHECKING:
    from .state import GatewayState

__all__ = ["send_request", "send_on_pool"]

_BODY_FRAMING = (b"host", b"content-length", b"transfer-encoding")


async def send_request(state: "GatewayState", cmd: SendRequest) -> ServiceResponse:
    """One whole exchange with a service named by URL (send-request); failures are
    PolicyErrors (BackendConnectionFailure, Timeout), as on-error expects."""
    u = urlsplit(cmd.url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise PolicyError(500, "ExpressionValueEvaluationFailure",
                          "send-request needs an absolute http(s) URL")
    port = u.port or (443 if u.scheme == "https" else 80)
    pool = state.pool_for_url(u.scheme, u.hostname, port)
    if pool is None:
        raise PolicyError(503, "BackendConnectionFailure", "too many backend origins")
    return await send_on_pool(pool, cmd)


async def send_on_pool(pool: Any, cmd: SendRequest) -> ServiceResponse:
    """The same exchange over a pool the caller owns (runtime/jwks.py's key fetches)."""
    u = urlsplit(cmd.url)
    target = ((u.path or "/") + ("?" + u.query if u.query else "")).encode()
    headers = [h for h in cmd.headers if h[0] not in _BODY_FRAMING]
    headers.insert(0, (b"host", pool.authority))
    if cmd.body or cmd.method not in ("GET", "HEAD"):
        headers.append((b"content-length", b"%d" % len(cmd.body)))
    try:
        with trio.fail_after(cmd.timeout):
            return await _service_call(pool, Request(1, cmd.method.encode(), target,
                                                     headers), cmd)
    except trio.TooSlowError:
        raise PolicyError(504, "Timeout", "send-request timed out",
                          source="send-request") from None

async def _service_call(pool: Any, request: Request, cmd: SendRequest
                        ) -> ServiceResponse:
    try:
        ex = await pool.open(request)
    except UpstreamError as e:
        raise PolicyError(e.status, "BackendConnectionFailure", e.public,
                          source="send-request") from None
    ok = False
    try:
        if cmd.body:
            ex.send_data(cmd.body)
        ex.send_end()
        status, reason, headers, chunks, size = 0, "", (), [], 0
        await ex.flush(cmd.timeout)
        while True:
            for ev in await ex.receive(cmd.timeout):
                t = ev.__class__
                if t is Response:
                    status, reason = ev.status_code, ev.reason.decode("latin-1")
                    headers = tuple(ev.headers)
                elif t is Data:
                    size += len(ev.data)
                    if size > cmd.max_body:
                        raise PolicyError(502, "BackendConnectionFailure",
                                          "send-request response too large",
                                          source="send-request")
                    chunks.append(ev.data)
                elif t is EndOfMessage:
                    ok = True
                    return ServiceResponse(status, headers, b"".join(chunks), reason)
                elif t is StreamReset or t is ConnectionClosed:
                    raise PolicyError(502, "BackendConnectionFailure", CLOSED,
                                      source="send-request")
    except (TransportClosed, TransportTimeout, ProtocolError):
        raise PolicyError(502, "BackendConnectionFailure", CONNECT_FAILED,
                          source="send-request") from None
    finally:
        ex.release(ok)
