"""rate-limit, rate-limit-by-key, quota, quota-by-key, limit-concurrency, sans-IO: the
policies' commands run on a model store with a fake clock (limits_kit)."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from apigw_core.gateway.pipeline.policies.limits import (
    Acquire, CountQuota, RefundTokens, TakeTokens, retry_seconds, timespan,
)

from helpers import (
    ApiConfig, FakeBackend, OperationConfig, ProductConfig, SubscriptionConfig, config_errors,
    make_ctx, one_api, program_of, sections,
)
from limits_kit import LimitsDriver, ModelStore, call


def by_key(**kw) -> dict:
    body = {"calls": 3, "renewal-period": 60, "counter-key": "{request.ip}"}
    body.update(kw)
    return {"rate-limit-by-key": body}


def body_of(ctx) -> dict:
    return json.loads(ctx.response.body)


def header(ctx, name: bytes):
    return ctx.response.headers.get(name)


# --- answers ------------------------------------------------------------------------------

def test_retry_seconds_and_timespan():
    assert [retry_seconds(x) for x in (0.2, 1.0, 19.0001, 20.0, 57)] == [1, 1, 20, 20, 57]
    assert timespan(300) == "00:05:00"
    assert timespan(14 * 86400 + 7 * 3600 + 13 * 60 + 56) == "14.07:13:56"
    assert timespan(3599.2) == "01:00:00"


def test_rate_limit_by_key_429_exact_body_and_retry_after():
    prog = one_api(inbound=[by_key()])
    drv = LimitsDriver()
    for _ in range(3):
        result, ctx = call(prog, drv)
        assert result.kind == "response" and ctx.response.status == 200
    result, ctx = call(prog, drv)
    assert result.kind == "error" and ctx.response.status == 429
    # 3 calls per 60 s: one token every 20 s
    assert body_of(ctx) == {"statusCode": 429,
                            "message": "Rate limit is exceeded. Try again in 20 seconds."}
    assert header(ctx, b"retry-after") == b"20"
    assert result.error.reason == "RateLimitExceeded" and result.error.source == "rate-limit-by-key"
    # nothing was forwarded for the refused call
    assert len(drv.backend.seen) == 3


def test_refused_calls_take_nothing_and_recovery_at_the_refill_rate():
    prog = one_api(inbound=[by_key()])
    drv = LimitsDriver()
    for _ in range(3):
        call(prog, drv)
    drv.store.now = Fraction(5)
    for _ in range(10):                      # hammering while over the limit ...
        result, ctx = call(prog, drv)
        assert ctx.response.status == 429
    assert header(ctx, b"retry-after") == b"15"
    drv.store.now = Fraction(20)             # ... does not push recovery back
    assert call(prog, drv)[1].response.status == 200
    assert call(prog, drv)[1].response.status == 429
    drv.store.now = Fraction(60)             # two more tokens by now, not three
    assert [call(prog, drv)[1].response.status for _ in range(3)] == [200, 200, 429]


def test_keys_are_separate_counters():
    prog = one_api(inbound=[by_key(calls=1)])
    drv = LimitsDriver()
    assert call(prog, drv, ip="10.0.0.1")[1].response.status == 200
    assert call(prog, drv, ip="10.0.0.1")[1].response.status == 429
    assert call(prog, drv, ip="10.0.0.2")[1].response.status == 200


def test_optional_header_and_variable_names():
    prog = one_api(inbound=[by_key(**{
        "retry-after-header-name": "x-retry", "retry-after-variable-name": "retry",
        "remaining-calls-header-name": "x-remaining",
        "remaining-calls-variable-name": "left", "total-calls-header-name": "x-total"})])
    drv = LimitsDriver()
    result, ctx = call(prog, drv)
    assert ctx.variables["left"] == 2
    assert (b"x-remaining", b"2") in ctx.response_headers
    assert (b"x-total", b"3") in ctx.response_headers
    call(prog, drv), call(prog, drv)
    result, ctx = call(prog, drv)
    assert ctx.response.status == 429
    assert header(ctx, b"x-retry") == b"20" and header(ctx, b"retry-after") is None
    assert ctx.variables["retry"] == 20 and ctx.variables["left"] == 0
    assert header(ctx, b"x-remaining") == b"0" and header(ctx, b"x-total") == b"3"


def test_grpc_caller_gets_the_pushback_hint():
    prog = one_api(inbound=[by_key(calls=1)])
    drv = LimitsDriver()
    call(prog, drv, protocol="grpc")
    result, ctx = call(prog, drv, protocol="grpc")
    assert ctx.response.status == 429
    assert header(ctx, b"retry-after") == b"60"
    assert header(ctx, b"grpc-retry-pushback-ms") == b"60000"


# --- increment-condition / increment-count ---------------------------------------------------

def test_increment_count_constant():
    prog = one_api(inbound=[by_key(calls=5, **{"increment-count": 2})])
    drv = LimitsDriver()
    assert [call(prog, drv)[1].response.status for _ in range(3)] == [200, 200, 429]
    assert drv.commands[0].n == 2


def test_increment_condition_on_the_request_counts_only_matching_calls():
    prog = one_api(inbound=[by_key(calls=2, **{
        "increment-condition": 'request.method == "POST"'})])
    drv = LimitsDriver()
    for _ in range(5):                       # GETs are not counted
        assert call(prog, drv, method="GET")[1].response.status == 200
    assert call(prog, drv, method="POST")[1].response.status == 200
    assert call(prog, drv, method="POST")[1].response.status == 200
    # over the limit now: even an uncounted GET is refused (the limit still applies)
    assert call(prog, drv, method="GET")[1].response.status == 429


def test_increment_condition_on_the_response_is_settled_when_the_call_is_over():
    prog = one_api(inbound=[by_key(calls=2, **{
        "increment-condition": "response.status >= 200 and response.status < 300"})])
    failing = LimitsDriver(backend=FakeBackend(status=500))
    for _ in range(6):                       # failed calls give their token back
        assert call(prog, failing)[1].response.status == 500
    ok = LimitsDriver(store=failing.store)
    assert [call(prog, ok)[1].response.status for _ in range(3)] == [200, 200, 429]


def test_a_call_in_flight_holds_its_token():
    # a call that reached the limit counts even before (and whether or not) it succeeds
    prog = one_api(inbound=[by_key(calls=1, **{"increment-condition": "response.status == 200"})])
    drv = LimitsDriver()
    r1, ctx1 = call(prog, drv, finish=False)          # not over yet
    assert call(prog, drv)[1].response.status == 429
    for fn in ctx1.finish:
        fn(ctx1)


def test_increment_count_from_the_response():
    prog = one_api(inbound=[by_key(calls=10, **{
        "increment-count": "{response.headers.x-cost}"})])
    drv = LimitsDriver(backend=FakeBackend(headers=[("x-cost", "4")]))
    assert [call(prog, drv)[1].response.status for _ in range(4)] == [200, 200, 200, 429]
    # 4 + 4 + 4 > 10: the third call was admitted on its provisional token, then charged
    assert drv.store.take(drv.commands[0].key, 10, 60, 0).remaining == 0


# --- rate-limit (per subscription, api / operation children) -------------------------------

def subscribed(entry: dict, **kw):
    api = ApiConfig("orders", path="/orders", operations=(OperationConfig("get"),
                                                          OperationConfig("put")),
                    policies=sections(inbound=[entry]))
    return api


def test_rate_limit_per_subscription_with_children():
    entry = {"rate-limit": {"calls": 10, "renewal-period": 60, "api": [
        {"name": "orders", "calls": 3, "renewal-period": 60,
         "operation": [{"name": "get", "calls": 2, "renewal-period": 60}]}]}}
    api = subscribed(entry)
    prog_get = program_of([api], operation="get")
    prog_put = program_of([api], operation="put")
    drv = LimitsDriver()
    alice, bob = SubscriptionConfig("alice"), SubscriptionConfig("bob")
    a = dict(api=api, subscription=alice)
    assert call(prog_get, drv, operation=api.operations[0], **a)[1].response.status == 200
    assert call(prog_get, drv, operation=api.operations[0], **a)[1].response.status == 200
    # the operation's 2 are gone; its refusal gives back what the other buckets took
    result, ctx = call(prog_get, drv, operation=api.operations[0], **a)
    assert ctx.response.status == 429 and header(ctx, b"retry-after") == b"30"
    assert any(isinstance(c, RefundTokens) for c in drv.commands)
    assert call(prog_put, drv, operation=api.operations[1], **a)[1].response.status == 200
    # the API's 3 are gone now (get, get, put)
    assert call(prog_put, drv, operation=api.operations[1], **a)[1].response.status == 429
    # another subscription has its own counters
    assert call(prog_get, drv, operation=api.operations[0], api=api,
                subscription=bob)[1].response.status == 200
    # no subscription: nothing to count per
    assert call(prog_get, drv, operation=api.operations[0], api=api)[1].response.status == 200


def test_rate_limit_remaining_is_the_tightest_bucket():
    entry = {"rate-limit": {"calls": 10, "renewal-period": 60,
                            "remaining-calls-variable-name": "left",
                            "api": {"name": "orders", "calls": 3, "renewal-period": 60}}}
    api = subscribed(entry)
    prog = program_of([api])
    _, ctx = call(prog, LimitsDriver(), api=api, subscription=SubscriptionConfig("a"))
    assert ctx.variables["left"] == 2


# --- counter scopes ----------------------------------------------------------------------------

def test_counters_are_per_scope_unless_global():
    entry = by_key(calls=1, **{"counter-key": "k"})
    two = [ApiConfig("a", path="/a", policies=sections(inbound=[entry])),
           ApiConfig("b", path="/b", policies=sections(inbound=[entry]))]
    drv = LimitsDriver()
    for name in ("a", "b"):     # API-scope policies with the same key: separate counters
        prog = program_of(two, api=name)
        assert call(prog, drv, api=two[0] if name == "a" else two[1])[1].response.status == 200
    shared = [ApiConfig("a", path="/a"), ApiConfig("b", path="/b")]
    drv = LimitsDriver()
    statuses = [call(program_of(shared, api=n, policies=sections(inbound=[entry])), drv,
                     api=shared[i])[1].response.status for i, n in enumerate("ab")]
    assert statuses == [200, 429]      # one global policy: one counter for its key
    assert drv.commands[0].key == "rate-limit-by-key|global|k"


# --- config errors ---------------------------------------------------------------------------

@pytest.mark.parametrize("body,message", [
    ({"calls": 3, "renewal-period": 301, "counter-key": "k"},
     "rate-limit-by-key.renewal-period: expected an integer from 1 to 300, got 301"),
    ({"renewal-period": 60, "counter-key": "k"}, "rate-limit-by-key.calls: required"),
    ({"calls": 100_000_000, "renewal-period": 300, "counter-key": "k"},
     "rate-limit-by-key.calls: calls x renewal-period must be at most 4611686018"),
    ({"calls": 3, "renewal-period": 60}, "rate-limit-by-key.counter-key: required"),
    ({"calls": 3, "renewal-period": 60, "counter-key": "k", "store": "memcached"},
     "rate-limit-by-key.store: expected one of local, redis"),
    ({"calls": 3, "renewal-period": 60, "counter-key": "k", "on-store-failure": "maybe"},
     "rate-limit-by-key.on-store-failure: expected one of allow, deny, local"),
    ({"calls": 3, "renewal-period": 60, "counter-key": "k", "increment-count": "x"},
     "rate-limit-by-key.increment-count: expected a non-negative integer"),
    ({"calls": 3, "renewal-period": 60, "counter-key": "k", "increment-count": 4},
     "rate-limit-by-key.increment-count: 4 is more than calls (3): no call could ever pass"),
    ({"calls": 3, "renewal-period": 60, "counter-key": "k", "colls": 1},
     "rate-limit-by-key.colls: unknown attribute"),
])
def test_rate_limit_by_key_config_errors(body, message):
    errors = config_errors([ApiConfig("orders", policies=sections(inbound=[
        {"rate-limit-by-key": body}]))])
    assert any(e.startswith("apis[0].policies.inbound[0]." + message) for e in errors), errors


def test_rate_limit_errors_and_sections():
    errors = config_errors([ApiConfig("orders", policies=sections(inbound=[
        {"rate-limit": {"calls": 5, "renewal-period": 400, "api": [{"calls": 1,
                                                                      "renewal-period": 1}]}}],
        outbound=[{"rate-limit": {"calls": 1, "renewal-period": 1}}]))])
    text = "\n".join(errors)
    assert "apis[0].policies.inbound[0].rate-limit.renewal-period: expected an integer " \
           "from 1 to 300, got 400" in text
    assert "apis[0].policies.inbound[0].rate-limit.api[0].name: required" in text
    assert "apis[0].policies.outbound[0].rate-limit: not allowed in outbound" in text


# --- quota, quota-by-key ---------------------------------------------------------------------

def quota_by_key(**kw) -> dict:
    body = {"calls": 2, "renewal-period": 3600, "counter-key": "{request.ip}"}
    body.update(kw)
    return {"quota-by-key": body}


def test_quota_by_key_403_with_timespan_and_renewal():
    prog = one_api(inbound=[quota_by_key()])
    drv = LimitsDriver()
    assert [call(prog, drv)[1].response.status for _ in range(2)] == [200, 200]
    drv.store.now = Fraction(600)
    result, ctx = call(prog, drv)
    assert ctx.response.status == 403 and result.error.reason == "QuotaExceeded"
    assert body_of(ctx) == {"statusCode": 403, "message": "Out of call volume quota. Quota "
                                                         "will be replenished in 00:50:00."}
    assert header(ctx, b"retry-after") == b"3000"
    drv.store.now = Fraction(3600)         # a new window: the full quota again
    assert [call(prog, drv)[1].response.status for _ in range(3)] == [200, 200, 403]


def test_quota_first_period_start_aligns_the_windows():
    prog = one_api(inbound=[quota_by_key(**{"calls": 1, "renewal-period": 86400,
                                            "first-period-start": "2024-01-01T06:00:00Z"})])
    drv = LimitsDriver()
    call(prog, drv)
    cmd = drv.commands[0]
    assert isinstance(cmd, CountQuota) and cmd.start == 6 * 3600    # 06:00 UTC, any day
    _, ctx = call(prog, drv)
    assert body_of(ctx)["message"].endswith("replenished in 06:00:00.")


def test_quota_period_zero_never_renews():
    prog = one_api(inbound=[quota_by_key(**{"calls": 1, "renewal-period": 0})])
    drv = LimitsDriver()
    call(prog, drv)
    drv.store.now = Fraction(10 ** 9)
    _, ctx = call(prog, drv)
    assert ctx.response.status == 403 and header(ctx, b"retry-after") is None
    assert body_of(ctx)["message"] == "Out of call volume quota."


def test_bandwidth_quota_counted_after_the_response():
    entry = {"quota-by-key": {"bandwidth": 2, "renewal-period": 60, "counter-key": "k"}}
    prog = one_api(inbound=[entry])
    drv = LimitsDriver(backend=FakeBackend(headers=[("content-length", "1500")]))
    # 1500 + 1500 bytes: the second call is admitted (under 2048 when it starts) ...
    assert call(prog, drv)[1].response.status == 200
    assert call(prog, drv)[1].response.status == 200
    _, ctx = call(prog, drv)               # ... and the third refused: 3000 > 2048
    assert ctx.response.status == 403
    assert body_of(ctx)["message"] == ("Out of bandwidth quota. Quota will be replenished "
                                       "in 00:01:00.")


def test_quota_increment_condition_on_the_response():
    prog = one_api(inbound=[quota_by_key(**{"increment-condition": "response.status == 200"})])
    bad = LimitsDriver(backend=FakeBackend(status=503))
    assert [call(prog, bad)[1].response.status for _ in range(4)] == [503] * 4
    good = LimitsDriver(store=bad.store)
    assert [call(prog, good)[1].response.status for _ in range(3)] == [200, 200, 403]


def test_quota_per_subscription_in_a_product():
    entry = {"quota": {"calls": 1, "renewal-period": 60}}
    api = ApiConfig("orders", path="/orders")
    prod = ProductConfig("starter", apis=("orders",), policies=sections(inbound=[entry]))
    prog = program_of([api], product="starter", products={"starter": prod})
    drv = LimitsDriver()
    kw = dict(api=api, product=prod)
    assert call(prog, drv, subscription=SubscriptionConfig("a"), **kw)[1].response.status == 200
    assert call(prog, drv, subscription=SubscriptionConfig("a"), **kw)[1].response.status == 403
    assert call(prog, drv, subscription=SubscriptionConfig("b"), **kw)[1].response.status == 200
    assert drv.commands[0].key == "quota|product:starter|a|calls"


def test_quota_config_errors():
    errors = config_errors([ApiConfig("orders", policies=sections(inbound=[
        {"quota": {"renewal-period": 60}},
        {"quota-by-key": {"calls": 1, "renewal-period": 60, "counter-key": "k",
                          "first-period-start": "yesterday"}}]))])
    text = "\n".join(errors)
    assert "apis[0].policies.inbound[0].quota: expected calls, bandwidth or both" in text
    assert "apis[0].policies.inbound[1].quota-by-key.first-period-start: expected an ISO " \
           "8601 date-time" in text


# --- limit-concurrency -------------------------------------------------------------------

def test_limit_concurrency_holds_until_the_call_is_over():
    lc = {"limit-concurrency": {"key": "{request.ip}", "max-count": 2,
                                "policies": ["forward-request"]}}
    prog = one_api(backend=[lc])
    drv = LimitsDriver()
    open_calls = [call(prog, drv, finish=False)[1] for _ in range(2)]
    assert all(c.response.status == 200 for c in open_calls)
    result, ctx = call(prog, drv)
    assert ctx.response.status == 429 and result.error.reason == "ConcurrencyLimitExceeded"
    assert len(drv.backend.seen) == 2                 # the nested forward did not run
    assert call(prog, drv, ip="10.9.9.9")[1].response.status == 200   # another key
    for fn in open_calls[0].finish:                   # one call over: its slot is free
        fn(open_calls[0])
    assert call(prog, drv)[1].response.status == 200
    assert isinstance(drv.commands[0], Acquire) and drv.commands[0].key == \
        "limit-concurrency|127.0.0.1"


def test_limit_concurrency_errors():
    errors = config_errors([ApiConfig("orders", policies=sections(backend=[
        {"limit-concurrency": {"max-count": 0, "policies": [{"nope": {}}]}}]))])
    text = "\n".join(errors)
    assert "limit-concurrency.key: required" in text
    assert "limit-concurrency.max-count: expected an integer from 1" in text
    assert "limit-concurrency.policies[0]: unknown policy nope" in text


def test_commands_carry_the_store_attributes():
    prog = one_api(inbound=[by_key(store="redis", **{"on-store-failure": "deny"})])
    drv = LimitsDriver()
    call(prog, drv)
    cmd = drv.commands[0]
    assert isinstance(cmd, TakeTokens) and (cmd.store, cmd.on_failure) == ("redis", "deny")
    assert (cmd.calls, cmd.period, cmd.n) == (3, 60.0, 1)


def test_model_store_is_a_token_bucket():
    s = ModelStore()
    assert s.take("k", 2, 10, 1).allowed and s.take("k", 2, 10, 1).allowed
    d = s.take("k", 2, 10, 1)
    assert not d.allowed and d.retry_after == 5.0
    _ = make_ctx
