"""Handlers for pipeline commands added by later features, by command class.

Strategy.  The executor (executor.py) carries out the core commands itself (forward,
bodies, send-request) with no lookup; any other command class is looked up here.  A
feature module registers its handler at import time:

    @command_handler(TakeTokens)
    async def _take(call, cmd):    # call: the executor's _Call (state, stream, ctx)
        ...

and the handler returns the command's result, or raises PolicyError to throw it into the
policy.  `run_finish` runs a request's `ctx.finish` callbacks when it is over.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

__all__ = ["COMMAND_HANDLERS", "command_handler", "run_finish"]

log = logging.getLogger("apigw_core.runtime")

Handler = Callable[[Any, Any], Awaitable[Any]]
COMMAND_HANDLERS: dict[type, Handler] = {}


def command_handler(cls: type) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        if cls in COMMAND_HANDLERS:
            raise ValueError(f"a handler for {cls.__name__} is registered already")
        COMMAND_HANDLERS[cls] = fn
        return fn
    return register


def run_finish(ctx: Any, rid: bytes) -> None:
    """Each `ctx.finish` callback once, in order; one that fails is logged, the rest run."""
    callbacks, ctx.finish = ctx.finish, []
    for fn in callbacks:
        try:
            fn(ctx)
        except Exception:
            log.exception("request %s: a finish callback failed", rid.decode("latin-1"))
