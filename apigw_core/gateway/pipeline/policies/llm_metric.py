"""`llm-emit-token-metric` (and its older name `azure-openai-emit-token-metric`): the token
counts of an OpenAI-shaped call as metrics (/work/shared/APIM-REFERENCE.md "Observability";
APIM's llm-emit-token-metric-policy page).

Strategy.  APIM's statement is `<llm-emit-token-metric namespace="..."> <dimension
name="..." value="..."/>... </llm-emit-token-metric>`; here

```yaml
- llm-emit-token-metric:
    namespace: openai             # default "API Management"; no expressions (as APIM)
    dimensions: [{name: API ID}, {name: model, value: "{request.headers.x-model}"}]
```

It emits three counters, APIM's metric names under the namespace: `Prompt Tokens`,
`Completion Tokens` and `Total Tokens`, i.e. `apigw_custom_<namespace>_prompt_tokens_total`
and so on (emit-metric's naming, runtime/metrics.py).  The counts are those of the call's
`llm-token-limit` when one ran before it (the same `UsageMeter`, so both agree), else the
policy reads the response's `usage` itself as it goes to the client (nothing buffered
beyond the JSON body's first MiB; an SSE stream's last `usage` chunk, or the streamed
text's estimate).  Chat / completions (`prompt_tokens`, `completion_tokens`,
`total_tokens`) and the Responses API (`input_tokens`, `output_tokens`) are read.  They
are emitted when the request is over; a response with no usage and no estimate (an error
answer) emits nothing.

Dimensions: 1 to 10, as emit-metric's: a dimension without a value takes APIM's default
for its name (`API ID`, `Operation ID`, `Product ID`, `Subscription ID`, `Gateway ID`,
`Backend ID`); values are rendered when the request is over, so response expressions work.
Deviation from APIM: a metric's label sets are capped like emit-metric's
(`telemetry.metrics.max-dimension-values`, `other` beyond), and nothing is a label unless
it is named: `Subscription ID` only when a dimension asks for it (APIM adds no default
dimensions either, but Application Insights tolerates unbounded ones; Prometheus does not).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from ..contract import Command, Context, Policy, Site
from ..registry import register
from ._spec import Spec
from .llm import UsageMeter
from .telemetry import _DEFAULTS, _NAME, EmitMetric, _pairs, _render

__all__ = ["EmitTokenMetric", "LlmEmitTokenMetric", "TOKEN_METRICS", "DEFAULT_NAMESPACE"]

DEFAULT_NAMESPACE = "API Management"
TOKEN_METRICS = ("Prompt Tokens", "Completion Tokens", "Total Tokens")

_DIMENSION_DEFAULTS: dict[str, Any] = {
    **_DEFAULTS,
    "backend id": lambda ctx: ctx.backend_id or (
        getattr(ctx.api, "backend", None) or "" if ctx.api is not None else ""),
}


@dataclass(frozen=True, slots=True)
class EmitTokenMetric(Command):
    """When the request is over, emit `metrics(ctx, meter)`; `meter` is the call's
    llm-token-limit UsageMeter if there is one, else a new one the runtime taps."""

    metrics: Callable[[Context, UsageMeter], list[EmitMetric]]


@register
class LlmEmitTokenMetric(Policy):
    """`llm-emit-token-metric: {namespace, dimensions: [{name, value}]}`."""

    name = "llm-emit-token-metric"
    sections = frozenset({"inbound"})

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        s = Spec(spec, site, ("namespace", "dimensions"))
        self.namespace = s.text("namespace", DEFAULT_NAMESPACE) or DEFAULT_NAMESPACE
        if not _NAME.match(self.namespace):
            s.error(f"not a usable namespace {self.namespace!r}", "namespace")
        if not 1 <= len(s.items("dimensions")) <= 10:
            s.error("expected 1 to 10 dimensions", "dimensions")
        self.dimensions = _pairs(s, "dimensions", "dimension", _DIMENSION_DEFAULTS)
        self.reads_request_body = any(getattr(t, "reads_request_body", False)
                                      for _, t in self.dimensions)
        self.reads_response_body = False   # the meter sees the body as it passes

    def metrics(self, ctx: Context, meter: UsageMeter) -> list[EmitMetric]:
        """The three counters' increments for this call (none: nothing to count)."""
        counts: Optional[tuple[int, int, int]] = meter.counts(ctx)
        if counts is None:
            return []
        dims = tuple((n, _render(t, ctx)) for n, t in self.dimensions)
        return [EmitMetric(self.namespace, name, float(n), dims)
                for name, n in zip(TOKEN_METRICS, counts)]

    def apply(self, ctx: Context):
        yield EmitTokenMetric(self.metrics)


@register
class AzureOpenAiEmitTokenMetric(LlmEmitTokenMetric):
    """APIM's older name for the same policy."""

    name = "azure-openai-emit-token-metric"
