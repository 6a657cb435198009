"""`llm-emit-token-metric` (and `azure-openai-emit-token-metric`), in memory: the command
it yields, the three counters it asks for from the response's usage (chat, Responses
API, SSE with and without usage, no usage at all), dimensions with APIM's defaults
rendered when the request is over, and the config errors at the attribute's path."""

from __future__ import annotations

import json

import pytest

from apigw_core.gateway.config import ApiConfig
from apigw_core.gateway.pipeline.policies.llm import UsageMeter
from apigw_core.gateway.pipeline.policies.llm_metric import EmitTokenMetric
from apigw_core.gateway.pipeline.policies.telemetry import EmitMetric

from helpers import config_errors as api_config_errors
from helpers import ApiConfig as HelperApi
from helpers import make_ctx, response, sections
from policy_kit import PATH, compile_policy, config_errors


def _command(policy, ctx) -> EmitTokenMetric:
    gen = policy.apply(ctx)
    cmd = next(gen)
    with pytest.raises(StopIteration):
        gen.send(None)
    assert isinstance(cmd, EmitTokenMetric)
    return cmd


def _fed(ctx, body: bytes, step: int = 7, estimate: int = 0) -> UsageMeter:
    m = UsageMeter(ctx, estimate)
    for i in range(0, len(body), step):
        m.feed(body[i:i + step])
    return m


def _json_ctx(**kw):
    ctx = make_ctx(response=response(200, {"content-type": "application/json"}), **kw)
    ctx.api = ApiConfig(name="chat", path="/chat", backend="openai")
    return ctx


def test_chat_usage_gives_prompt_completion_total_with_default_dimensions():
    p = compile_policy("llm-emit-token-metric", {
        "namespace": "openai", "dimensions": [{"name": "API ID"}, {"name": "Backend ID"},
                                              {"name": "model",
                                               "value": "{request.headers.x-model}"}]})
    ctx = _json_ctx(headers={"x-model": "gpt-4o"})
    cmd = _command(p, ctx)
    body = json.dumps({"choices": [{"message": {"content": "hi"}}], "usage": {
        "prompt_tokens": 11, "completion_tokens": 31, "total_tokens": 42}}).encode()
    dims = (("API ID", "chat"), ("Backend ID", "openai"), ("model", "gpt-4o"))
    assert cmd.metrics(ctx, _fed(ctx, body)) == [
        EmitMetric("openai", "Prompt Tokens", 11.0, dims),
        EmitMetric("openai", "Completion Tokens", 31.0, dims),
        EmitMetric("openai", "Total Tokens", 42.0, dims)]


def test_namespace_defaults_to_apim_and_the_alias_is_the_same_policy():
    for name in ("llm-emit-token-metric", "azure-openai-emit-token-metric"):
        p = compile_policy(name, {"dimensions": [{"name": "Gateway ID"}]})
        ctx = _json_ctx()
        out = _command(p, ctx).metrics(ctx, _fed(ctx, b'{"usage": {"prompt_tokens": 1, '
                                                      b'"completion_tokens": 2, '
                                                      b'"total_tokens": 3}}'))
        assert [(e.namespace, e.name, e.value) for e in out] == [
            ("API Management", "Prompt Tokens", 1.0),
            ("API Management", "Completion Tokens", 2.0),
            ("API Management", "Total Tokens", 3.0)]


def test_responses_api_usage_and_a_usage_without_total():
    p = compile_policy("llm-emit-token-metric", {"dimensions": [{"name": "API ID"}]})
    ctx = _json_ctx()
    out = _command(p, ctx).metrics(ctx, _fed(ctx, b'{"usage": {"input_tokens": 5, '
                                                  b'"output_tokens": 8}}'))
    assert [e.value for e in out] == [5.0, 8.0, 13.0]


def test_sse_usage_chunk_and_a_bare_stream_estimate():
    p = compile_policy("llm-emit-token-metric", {"dimensions": [{"name": "API ID"}]})
    ctx = make_ctx(response=response(200, {"content-type": "text/event-stream"}))
    chunks = [{"choices": [{"delta": {"content": "hello "}}]},
              {"choices": [{"delta": {"content": "world"}}]},
              {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2,
                                        "total_tokens": 6}}]
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) \
        + b"data: [DONE]\n\n"
    cmd = _command(p, ctx)
    assert [e.value for e in cmd.metrics(ctx, _fed(ctx, body, 5))] == [4.0, 2.0, 6.0]
    bare = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks[:2])
    # no usage: the prompt's estimate (3 here) + ceil(11 chars / 4)
    assert [e.value for e in cmd.metrics(ctx, _fed(ctx, bare, 5, estimate=3))] == \
        [3.0, 3.0, 6.0]


def test_no_usage_emits_nothing():
    p = compile_policy("llm-emit-token-metric", {"dimensions": [{"name": "API ID"}]})
    ctx = make_ctx(response=response(500, {"content-type": "application/json"}))
    assert _command(p, ctx).metrics(ctx, _fed(ctx, b'{"error": "nope"}')) == []


def test_dimensions_render_when_the_request_is_over():
    p = compile_policy("llm-emit-token-metric", {"dimensions": [
        {"name": "status", "value": "{response.status}"}]})
    ctx = make_ctx()
    cmd = _command(p, ctx)          # inbound: no response yet
    ctx.response = response(201, {"content-type": "application/json"})
    out = cmd.metrics(ctx, _fed(ctx, b'{"usage": {"prompt_tokens": 1, "total_tokens": 1}}'))
    assert out[0].dimensions == (("status", "201"),)
    assert [e.value for e in out] == [1.0, 0.0, 1.0]


@pytest.mark.parametrize("body, error", [
    ({}, "llm-emit-token-metric.dimensions: expected 1 to 10 dimensions"),
    ({"dimensions": [{"name": f"d{i}", "value": "v"} for i in range(11)]},
     "llm-emit-token-metric.dimensions: expected 1 to 10 dimensions"),
    ({"dimensions": [{"name": "color"}]},
     "llm-emit-token-metric.dimensions[0].value: required (no default value for this "
     "dimension name)"),
    ({"dimensions": [{"name": "API ID"}, {"name": "api id"}]},
     "llm-emit-token-metric.dimensions[1].name: dimension 'api id' given twice"),
    ({"namespace": "a/b", "dimensions": [{"name": "API ID"}]},
     "llm-emit-token-metric.namespace: not a usable namespace 'a/b'"),
    ({"dimensions": [{"name": "API ID"}], "value": 3},
     "llm-emit-token-metric.value: unknown attribute (expected one of namespace, "
     "dimensions)"),
])
def test_config_errors(body, error):
    assert f"{PATH}.inbound[0].{error}" in config_errors("llm-emit-token-metric", body)


def test_inbound_only():
    body = {"dimensions": [{"name": "API ID"}]}
    errors = api_config_errors([HelperApi("chat", policies=sections(
        inbound=[{"llm-emit-token-metric": body}],
        outbound=[{"azure-openai-emit-token-metric": body}]))])
    assert errors == ["apis[0].policies.outbound[0].azure-openai-emit-token-metric: not "
                      "allowed in outbound (allowed in inbound)"]
