"""The runtime side of `llm-emit-token-metric` (gateway/pipeline/policies/llm_metric.py).

Strategy.  The command asks for the call's token counts when it is over.  If an
`llm-token-limit` already tapped the response (its `UsageMeter.feed` is among
`call.taps`), that meter is read, so the limit and the metric count the same tokens;
else a meter of its own is tapped (its prompt estimate from the request body when a
policy buffered it).  The counts go to emit-metric's counters in a ctx.finish callback:
dict updates, flushed with the rest (runtime/metrics.py).
"""

from __future__ import annotations

from typing import Any, Optional

from ..gateway.pipeline.policies.llm import UsageMeter, estimate_prompt_tokens
from ..gateway.pipeline.policies.llm_metric import EmitTokenMetric
from .commands import command_handler

__all__ = ["find_meter"]


def find_meter(taps: list) -> Optional[UsageMeter]:
    """The UsageMeter whose `feed` is tapped already, if any."""
    for fn in taps:
        owner = getattr(fn, "__self__", None)
        if isinstance(owner, UsageMeter):
            return owner
    return None


@command_handler(EmitTokenMetric)
async def _emit_tokens(call: Any, cmd: EmitTokenMetric) -> None:
    m = call.gw.telemetry.metrics
    if m is None:
        return
    meter = find_meter(call.taps)
    if meter is None:
        body = call.ctx.request.body
        meter = UsageMeter(call.ctx, estimate_prompt_tokens(body) if body else 0)
        call.taps.append(meter.feed)

    def emit(ctx: Any) -> None:
        for e in cmd.metrics(ctx, meter):
            m.emit(e.namespace, e.name, e.dimensions, e.value)
    call.ctx.finish.append(emit)
