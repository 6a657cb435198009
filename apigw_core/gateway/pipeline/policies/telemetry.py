"""Telemetry policies: `trace` and `emit-metric` (APIM's names and attributes;
/work/shared/APIM-REFERENCE.md "Observability").

Strategy.  Both are generators that yield one command for the runtime (policies do no
I/O): `TraceEntry` (the rendered message and metadata; runtime/telemetry.py redacts
secrets, logs it at the severity, and keeps it in the request's access-log record and,
later, its debug trace) and `EmitMetric` (a Prometheus counter `apigw_custom_<namespace>_
<name>` incremented by `value`, its dimensions the labels, capped per metric by
`telemetry.metrics.max-dimension-values`).  Everything fixed is checked at compile time:
severity, 1 to 10 dimensions with distinct names, a numeric constant value.

```yaml
- trace: {source: orders, severity: information, message: "id {request.params.id}",
          metadata: [{name: tenant, value: "{request.headers.x-tenant}"}]}
- emit-metric: {name: orders, namespace: shop, value: 1,
                dimensions: [{name: API ID}, {name: tier, value: "{request.headers.x-tier}"}]}
```
A dimension without a value takes APIM's default for its name (`API ID`, `Operation
ID`, `Product ID`, `Subscription ID`, `Gateway ID`), else is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from ..contract import Command, Context, Policy, Site
from ..registry import register
from ._spec import Spec, describe

__all__ = ["TraceEntry", "EmitMetric", "TracePolicy", "EmitMetricPolicy"]

_ALL = frozenset({"inbound", "backend", "outbound", "on-error"})
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_ .-]*$")


@dataclass(frozen=True, slots=True)
class TraceEntry(Command):
    """Keep and log a trace message (the `trace` policy)."""

    source: str
    severity: str
    message: str
    metadata: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class EmitMetric(Command):
    """Add `value` to the custom counter (namespace, name) with these dimensions."""

    namespace: str
    name: str
    value: float
    dimensions: tuple[tuple[str, str], ...] = ()


def _pairs(s: Spec, key: str, what: str, defaults: Optional[Mapping[str, Any]] = None,
           ) -> list[tuple[str, Any]]:
    """A list of {name, value} children: (name, compiled template or a default getter)."""
    out: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for i, item in enumerate(s.items(key)):
        where = f"{key}[{i}]"
        if not isinstance(item, Mapping):
            s.error(f"expected a mapping of name, value, got {describe(item)}", where)
            continue
        for k in item:
            if k not in ("name", "value"):
                s.error("unknown attribute (expected one of name, value)", f"{where}.{k}")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            s.error("required (a non-empty string)", f"{where}.name")
            continue
        if defaults is not None and not _NAME.match(name):
            s.error(f"not a usable dimension name {name!r}", f"{where}.name")
            continue
        if name.lower() in seen:
            s.error(f"{what} {name!r} given twice", f"{where}.name")
            continue
        seen.add(name.lower())
        if item.get("value") is None:
            default = (defaults or {}).get(name.lower())
            if default is None:
                s.error("required" + (" (no default value for this dimension name)"
                                      if defaults is not None else ""), f"{where}.value")
                continue
            out.append((name, default))
            continue
        t = s.template(f"{where}.value", value=item["value"])
        if t is not None:
            out.append((name, t))
    return out


def _render(v: Any, ctx: Context) -> str:
    return v(ctx) if callable(v) else v.render(ctx)


@register
class TracePolicy(Policy):
    """`trace: {source, severity, message, metadata: [{name, value}]}`."""

    name = "trace"
    sections = _ALL

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        s = Spec(spec, site, ("source", "severity", "message", "metadata"))
        self.source = s.text("source", required=True) or ""
        self.severity = s.choice("severity", ("verbose", "information", "error"),
                                 "verbose") or "verbose"
        self.message = s.template("message", required=True)
        self.metadata = _pairs(s, "metadata", "metadata")
        parts = [self.message] + [t for _, t in self.metadata]
        self.reads_request_body = any(getattr(p, "reads_request_body", False) for p in parts)
        self.reads_response_body = any(getattr(p, "reads_response_body", False)
                                       for p in parts)

    def apply(self, ctx: Context):
        msg = self.message.render(ctx) if self.message is not None else ""
        meta = tuple((n, _render(t, ctx)) for n, t in self.metadata)
        yield TraceEntry(self.source, self.severity, msg, meta)


_DEFAULTS: dict[str, Any] = {
    "api id": lambda ctx: ctx.api.name if ctx.api is not None else "",
    "operation id": lambda ctx: ctx.operation.name if ctx.operation is not None else "",
    "product id": lambda ctx: ctx.product.name if ctx.product is not None else "",
    "subscription id": lambda ctx: ctx.subscription.id if ctx.subscription is not None
    else "",
    "gateway id": lambda ctx: "apigw",
}


@register
class EmitMetricPolicy(Policy):
    """`emit-metric: {name, namespace, value, dimensions: [{name, value}]}`."""

    name = "emit-metric"
    sections = _ALL

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        s = Spec(spec, site, ("name", "namespace", "value", "dimensions"))
        self.metric = s.text("name", required=True) or ""
        if self.metric and not _NAME.match(self.metric):
            s.error(f"not a usable metric name {self.metric!r}", "name")
        self.namespace = s.text("namespace", "") or ""
        if self.namespace and not _NAME.match(self.namespace):
            s.error(f"not a usable namespace {self.namespace!r}", "namespace")
        raw = s.raw("value", 1)
        value: Optional[float] = None
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            value = float(raw)
        elif isinstance(raw, str):
            try:
                value = float(raw)
            except ValueError:
                pass
        if value is None or value < 0:
            s.error(f"expected a number >= 0, got {raw!r}", "value")
            value = 1.0
        self.value = value
        dims = s.items("dimensions")
        if not 1 <= len(dims) <= 10:
            s.error("expected 1 to 10 dimensions", "dimensions")
        self.dimensions = _pairs(s, "dimensions", "dimension", _DEFAULTS)
        self.reads_request_body = any(getattr(t, "reads_request_body", False)
                                      for _, t in self.dimensions)
        self.reads_response_body = any(getattr(t, "reads_response_body", False)
                                       for _, t in self.dimensions)

    def apply(self, ctx: Context):
        dims = tuple((n, _render(t, ctx)) for n, t in self.dimensions)
        yield EmitMetric(self.namespace, self.metric, self.value, dims)
