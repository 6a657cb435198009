"""llm-token-limit, sans-IO: the prompt estimate, the usage meter on JSON and SSE bodies,
tokens-per-minute and token quotas settled to the response's usage (model store, fake
clock)."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from apigw_core.gateway.pipeline.policies.llm import UsageMeter, estimate_prompt_tokens

from helpers import ApiConfig, FakeBackend, config_errors, make_ctx, one_api, response, sections
from limits_kit import LimitsDriver, call


def chat(text: str, stream: bool = False) -> bytes:
    doc = {"model": "m", "messages": [{"role": "user", "content": text}]}
    if stream:
        doc["stream"] = True
    return json.dumps(doc).encode()


def completion(total: int) -> bytes:
    return json.dumps({"choices": [{"message": {"content": "hi"}}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": total - 1,
                                 "total_tokens": total}}).encode()


def sse(chunks: list[str], usage: int | None = None) -> bytes:
    out = b""
    for c in chunks:
        out += b"data: " + json.dumps({"choices": [{"delta": {"content": c}}]}).encode() + b"\n\n"
    if usage is not None:
        out += b"data: " + json.dumps({"choices": [], "usage": {"total_tokens": usage}}).encode() \
            + b"\n\n"
    return out + b"data: [DONE]\n\n"


def test_estimate_prompt_tokens():
    # 3 per message + ceil(chars / 4) + 3 for the reply
    assert estimate_prompt_tokens(chat("x" * 40)) == 3 + 10 + 3
    two = json.dumps({"messages": [
        {"role": "system", "content": "abcd"},
        {"role": "user", "content": [{"type": "text", "text": "abcdefgh"},
                                     {"type": "image_url", "image_url": {"url": "x" * 99}}]}]})
    assert estimate_prompt_tokens(two.encode()) == (3 + 1) + (3 + 2) + 3
    assert estimate_prompt_tokens(b'{"prompt": "abcdefghi"}') == 3
    assert estimate_prompt_tokens(b'{"input": ["abcd", "abcd"]}') == 2
    assert estimate_prompt_tokens(b"not json") == 0 and estimate_prompt_tokens(None) == 0


def test_meter_reads_json_usage_and_sse_usage_and_estimates_a_bare_stream():
    ctx = make_ctx(response=response(200, {"content-type": "application/json"}))
    m = UsageMeter(ctx, 5)
    body = completion(42)
    for i in range(0, len(body), 3):
        m.feed(body[i:i + 3])
    assert m.total(ctx) == 42
    ctx = make_ctx(response=response(200, {"content-type": "text/event-stream"}))
    m = UsageMeter(ctx, 5)
    body = sse(["hello ", "world"], usage=17)
    for i in range(0, len(body), 5):
        m.feed(body[i:i + 5])
    assert m.total(ctx) == 17
    m = UsageMeter(ctx, 5)
    m.feed(sse(["x" * 8, "y" * 4]))                 # no usage: prompt + ceil(12 / 4)
    assert m.total(ctx) == 5 + 3
    m = UsageMeter(make_ctx(response=response(500)), 5)
    m.feed(b'{"error": "nope"}')                     # no usage at all: the estimate
    assert m.total(m.ctx) == 5


def tpm(**kw) -> dict:
    body = {"counter-key": "{request.ip}", "tokens-per-minute": 100,
            "estimate-prompt-tokens": True, "remaining-tokens-variable-name": "left",
            "tokens-consumed-variable-name": "used"}
    body.update(kw)
    return {"llm-token-limit": body}


def test_tokens_per_minute_settled_to_the_usage():
    prog = one_api(inbound=[tpm()])
    drv = LimitsDriver(request_body=chat("x" * 40),      # estimate 16
                       backend=FakeBackend(headers=[("content-type", "application/json")],
                                           body=completion(60)))
    result, ctx = call(prog, drv)
    assert ctx.response.status == 200 and ctx.variables["left"] == 100 - 16
    assert ctx.variables["used"] == 60
    # 60 charged: 40 left, the next one (estimate 16) passes and charges 60 more: drained
    assert call(prog, drv)[1].response.status == 200
    result, ctx = call(prog, drv)
    assert ctx.response.status == 429 and result.error.reason == "TokenLimitExceeded"
    body = json.loads(ctx.response.body)
    # 16 tokens at 100 per 60 s: 9.6 s -> 10
    assert body == {"statusCode": 429, "message": "Token limit is exceeded. Try again in 10 "
                                                  "seconds."}
    assert ctx.response.headers.get(b"retry-after") == b"10"
    drv.store.now = Fraction(10)
    assert call(prog, drv)[1].response.status == 200


def test_streamed_response_is_counted_from_its_usage_chunk():
    prog = one_api(inbound=[tpm(**{"tokens-per-minute": 50})])
    drv = LimitsDriver(request_body=chat("hi", stream=True),
                       backend=FakeBackend(headers=[("content-type", "text/event-stream")],
                                           body=sse(["a", "b"], usage=45)))
    _, ctx = call(prog, drv)
    assert ctx.response.status == 200 and ctx.variables["used"] == 45
    _, ctx = call(prog, drv)          # 5 left: the estimate (3 + 1 + 3 = 7) does not fit
    assert ctx.response.status == 429


def test_token_quota_hourly_403():
    prog = one_api(inbound=[{"llm-token-limit": {
        "counter-key": "k", "token-quota": 100, "token-quota-period": "Hourly",
        "remaining-quota-tokens-header-name": "x-quota-left"}}])
    drv = LimitsDriver(backend=FakeBackend(body=completion(70)))
    drv.store.now = Fraction(1800)
    _, ctx = call(prog, drv)
    assert ctx.response.status == 200 and (b"x-quota-left", b"100") in ctx.response_headers
    assert call(prog, drv)[1].response.status == 200      # 30 left when it starts
    result, ctx = call(prog, drv)                          # 140 used: over
    assert ctx.response.status == 403 and result.error.reason == "TokenQuotaExceeded"
    assert json.loads(ctx.response.body)["message"] == \
        "Token quota is exceeded. Quota will be replenished in 00:30:00."
    drv.store.now = Fraction(3600)
    assert call(prog, drv)[1].response.status == 200


@pytest.mark.parametrize("body,message", [
    ({"counter-key": "k"}, "expected tokens-per-minute, token-quota or both"),
    ({"counter-key": "k", "token-quota": 5}, "llm-token-limit.token-quota-period: required"),
    ({"counter-key": "k", "token-quota": 5, "token-quota-period": "Fortnightly"},
     "llm-token-limit.token-quota-period: expected one of Hourly, Daily, Weekly, Monthly"),
    ({"counter-key": "k", "tokens-per-minute": 5, "tokens-consumed-header-name": "x"},
     "llm-token-limit.tokens-consumed-header-name: not supported"),
    ({"tokens-per-minute": 5}, "llm-token-limit.counter-key: required"),
    ({"counter-key": "k", "tokens-per-minute": 5, "remaining-tokens-header-name": "a b"},
     "llm-token-limit.remaining-tokens-header-name: not a header name: 'a b'"),
])
def test_config_errors(body, message):
    errors = config_errors([ApiConfig("orders", policies=sections(inbound=[
        {"llm-token-limit": body}]))])
    assert any(message in e for e in errors), errors


def test_monthly_quota_asks_for_a_calendar_window():
    prog = one_api(inbound=[{"azure-openai-token-limit": {
        "counter-key": "k", "token-quota": 10, "token-quota-period": "Monthly"}}])
    drv = LimitsDriver()
    drv.store.count = lambda *a, **k: type("D", (), {"allowed": True, "remaining": 10,
                                                      "retry_after": 1.0})()
    call(prog, drv)
    assert drv.commands[0].calendar == "Monthly"


def test_a_bad_retry_after_name_is_reported_once():
    errors = config_errors([ApiConfig("orders", policies=sections(inbound=[
        {"llm-token-limit": {"counter-key": "k", "tokens-per-minute": 5,
                             "retry-after-header-name": "a b"}}]))])
    assert errors == ["apis[0].policies.inbound[0].llm-token-limit.retry-after-header-name: "
                      "not a header name: 'a b'"]
