"""The runtime side of the `retry` policy: its two commands, and the retry budget's
per-request bookkeeping (gateway/pipeline/policies/retry.py decides; this carries out).

Strategy.  `Sleep` is a plain `trio.sleep` (cancelled with the request).  `PrepareRetry`
decides whether the request can go to the backend once more, and if so makes the call
ready for a second `ForwardRequest`:

- the body must be replayable: buffered (`forward-request buffer-request-body: true`, or
  any policy that read it) or empty.  A body that was streamed to the backend is gone,
  and one that merely arrived with the head is not replayed either (whether it did
  depends on how the client's packets fell, and a retry must not); gRPC-Web (its
  translator keeps state across one exchange) and WebSocket requests are never retried;
- the backend's retry budget (runtime/budget.py) must have room; a request takes its
  slot at its first admitted retry and keeps it until it is over;
- the previous exchange is released (reused when its whole response was already read,
  else closed) and the call's response state reset, so `_forward` starts afresh.

A refusal returns its reason (the policy then keeps the current answer) and is logged
with the request id.  A retry to a pool goes to a member not tried yet while there is one:
the executor's `call.tried` (runtime/balance.py fills it at each forward).  The budget is
the pool's (the backend the request names), counted by that name.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import trio

from ..gateway.pipeline.policies.retry import PrepareRetry, Sleep
from ..protocol import Data, EndOfMessage
from .budget import BUDGETS
from .commands import command_handler
from .state_metrics import count_retry

__all__ = ["started", "finished", "replay_refusal"]

log = logging.getLogger("apigw_core.runtime")


def started(call: Any, pool: Any) -> None:
    """A forward of `call` to `pool`: counted active on its backend (the first time)."""
    name = pool.backend.name
    if call.budget_key is None:
        call.budget_key = name
        call.budget = pool.backend.retry_budget
        BUDGETS.start(name)


def finished(call: Any) -> None:
    """The request is over: out of the active count, its retry slot given back."""
    BUDGETS.done(call.budget_key, call.retry_slot)
    call.budget_key = None
    call.retry_slot = False


def replay_refusal(call: Any) -> Optional[str]:
    """Why the request cannot be sent again (None: it can)."""
    if call.websocket:
        return "a WebSocket request is not retried"
    if call.web is not None:
        return "a gRPC-Web request is not retried"
    if call.ctx.request.body is not None:
        return None                        # buffered: replayed from ctx.request.body
    events = call.body_events
    if events is None:
        return "the request body was streamed (buffer-request-body is false)"
    if any(ev.__class__ is Data and ev.data for ev in events) or events[-1].trailers:
        return "the request body is not buffered (buffer-request-body is false)"
    return None


def _release(call: Any) -> None:
    ex, call.ex = call.ex, None
    if ex is not None:
        pending = call.pending
        whole = bool(pending) and pending[-1].__class__ is EndOfMessage and all(
            ev.__class__ is Data for ev in pending[:-1])
        ex.release(whole)
    call.pending = []
    call.resp_done = False
    call.resp_trailers = ()


@command_handler(Sleep)
async def _sleep(call: Any, cmd: Sleep) -> None:
    await trio.sleep(cmd.seconds)


@command_handler(PrepareRetry)
async def _prepare(call: Any, cmd: PrepareRetry) -> Optional[str]:
    name = call.budget_key     # None: nothing was forwarded yet (send-request retried)
    reason = replay_refusal(call) if name is not None else None
    if reason is None and name is not None and not call.retry_slot:
        if BUDGETS.admit(name, call.budget):
            call.retry_slot = True
        else:
            active, retrying = BUDGETS.snapshot(name)
            reason = (f"the retry budget of backend {name} is spent ({retrying} retries in "
                      f"progress, {active} active requests, {call.budget.percent:g}% and "
                      f"at least {call.budget.min_concurrency} allowed)")
    if name is not None:
        count_retry(call, name, reason is None)
    if reason is not None:
        log.info("request %s: not retried (attempt %d): %s", call.rid.decode("latin-1"),
                 cmd.attempt, reason)
        return reason
    _release(call)
    log.debug("request %s: attempt %d", call.rid.decode("latin-1"), cmd.attempt)
    return None
