"""The `trace` and `emit-metric` policies, in memory: what they yield for the runtime
(rendered message and metadata; namespace, name, value and dimensions with APIM's
default values), and the config errors, each at the attribute's path."""

from __future__ import annotations

import pytest

from apigw_core.gateway.config import ApiConfig
from apigw_core.gateway.pipeline.policies.telemetry import EmitMetric, TraceEntry

from helpers import make_ctx
from policy_kit import PATH, compile_policy, config_errors


def _one(policy, ctx):
    gen = policy.apply(ctx)
    cmd = next(gen)
    with pytest.raises(StopIteration):
        gen.send(None)
    return cmd


def test_trace_renders_message_and_metadata():
    p = compile_policy("trace", {"source": "orders", "severity": "error",
                                 "message": "id {request.params.id} via {request.method}",
                                 "metadata": [{"name": "tenant",
                                               "value": "{request.headers.x-tenant}"}]})
    ctx = make_ctx(headers={"x-tenant": "acme"})
    ctx.request.params["id"] = "7"
    assert _one(p, ctx) == TraceEntry("orders", "error", "id 7 via GET", (("tenant", "acme"),))


def test_trace_severity_defaults_to_verbose():
    p = compile_policy("trace", {"source": "s", "message": "m"}, section="outbound")
    assert _one(p, make_ctx()).severity == "verbose"


@pytest.mark.parametrize("body, error", [
    ({"message": "m"}, "trace.source: required"),
    ({"source": "s"}, "trace.message: required"),
    ({"source": "s", "message": "m", "severity": "debug"},
     "trace.severity: expected one of verbose, information, error"),
    ({"source": "s", "message": "m", "metadata": [{"value": "v"}]},
     "trace.metadata[0].name: required (a non-empty string)"),
    ({"source": "s", "message": "m", "metadata": [{"name": "a"}]},
     "trace.metadata[0].value: required"),
    ({"source": "s", "message": "m", "color": "red"},
     "trace.color: unknown attribute (expected one of source, severity, message, metadata)"),
])
def test_trace_errors(body, error):
    assert f"{PATH}.inbound[0].{error}" in config_errors("trace", body)


def test_emit_metric_with_default_and_template_dimensions():
    p = compile_policy("emit-metric", {
        "name": "orders", "namespace": "shop", "value": 3,
        "dimensions": [{"name": "API ID"}, {"name": "tier",
                                            "value": "{request.headers.x-tier}"}]})
    ctx = make_ctx(headers={"x-tier": "gold"})
    ctx.api = ApiConfig(name="orders-api", path="/orders", backend="b")
    assert _one(p, ctx) == EmitMetric("shop", "orders", 3.0,
                                      (("API ID", "orders-api"), ("tier", "gold")))


def test_emit_metric_value_defaults_to_one():
    p = compile_policy("emit-metric", {"name": "n", "dimensions": [{"name": "Gateway ID"}]})
    assert _one(p, make_ctx()) == EmitMetric("", "n", 1.0, (("Gateway ID", "apigw"),))


@pytest.mark.parametrize("body, error", [
    ({"dimensions": [{"name": "API ID"}]}, "emit-metric.name: required"),
    ({"name": "n"}, "emit-metric.dimensions: expected 1 to 10 dimensions"),
    ({"name": "n", "dimensions": [{"name": f"d{i}", "value": "v"} for i in range(11)]},
     "emit-metric.dimensions: expected 1 to 10 dimensions"),
    ({"name": "n", "dimensions": [{"name": "color"}]},
     "emit-metric.dimensions[0].value: required (no default value for this dimension name)"),
    ({"name": "n", "dimensions": [{"name": "a", "value": "1"}, {"name": "A", "value": "2"}]},
     "emit-metric.dimensions[1].name: dimension 'A' given twice"),
    ({"name": "n", "value": "lots", "dimensions": [{"name": "API ID"}]},
     "emit-metric.value: expected a number >= 0, got 'lots'"),
    ({"name": "bad{name}", "dimensions": [{"name": "API ID"}]},
     "emit-metric.name: not a usable metric name 'bad{name}'"),
])
def test_emit_metric_errors(body, error):
    assert f"{PATH}.inbound[0].{error}" in config_errors("emit-metric", body)
