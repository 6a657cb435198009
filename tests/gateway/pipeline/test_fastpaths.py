"""The request path's shortcuts (issue 14, branch pipecost) behave as the general code:
a lone forward-request yielded by the engine itself, set-header with constants, ip-filter's
memoised decisions, the subscription key looked up by the dict's own hash."""

from __future__ import annotations

import sys
from pathlib import Path

from apigw_core.gateway.pipeline.contract import ForwardRequest, PolicyError
from apigw_core.gateway.pipeline.policies import access  # noqa: F401  (registers)
from apigw_core.gateway.subscriptions import Access, Denied, SubscriptionIndex
from apigw_core.runtime.tracetwin import _Step

from helpers import Driver, FakeBackend, make_ctx, one_api, run_program
from policy_kit import compile_policy, run

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from apim_model import gateway  # noqa: E402


def test_a_lone_forward_request_is_its_bare_command():
    prog = one_api(backend=[{"forward-request": {"timeout": 7}}])
    assert prog.backend[0].bare == ForwardRequest(timeout=7.0)
    result, ctx, driver = run_program(prog)
    assert result.kind == "response" and result.forwarded
    assert driver.commands == [ForwardRequest(timeout=7.0)]


def test_the_status_check_keeps_the_generator():
    prog = one_api(backend=[{"forward-request": {"fail-on-error-status-code": True}}])
    assert prog.backend[0].bare is None
    result, _, _ = run_program(prog, driver=Driver(backend=FakeBackend(500)))
    assert result.kind == "error" and result.error.reason == "BackendErrorStatusCode"


def test_a_failed_bare_forward_is_marked_with_its_step():
    prog = one_api(backend=[{"forward-request": {}}], on_error=[
        {"set-variable": {"name": "t", "value": "on-error ran"}}])
    fail = PolicyError(504, "Timeout", "no answer", source="forward-request")
    result, ctx, _ = run_program(prog, driver=Driver(backend=FakeBackend(error=fail)))
    step = prog.backend[0]
    assert result.kind == "error" and result.forwarded is False
    err = result.error
    assert (err.source, err.reason, err.section) == ("forward-request", "Timeout", "backend")
    assert (err.path, err.scope) == (step.apim_path, step.scope) and err.path
    assert ctx.variables["t"] == "on-error ran" and ctx.response.status == 504


def test_a_traced_step_never_takes_the_shortcut():
    prog = one_api(backend=[{"forward-request": {}}])
    traced = _Step(prog.backend[0], prog.backend[0].apply, None, [])
    assert prog.backend[0].bare is not None and traced.bare is None


def test_set_header_constants_on_both_sides():
    prog = one_api(inbound=[{"set-header": {"name": "X-In", "value": ["a", "b"]}}],
                   outbound=[{"set-header": {"name": "X-Out", "value": ["c"]}}])
    ctx = make_ctx(headers=[("x-in", "old"), ("accept", "*/*")])
    result, ctx, driver = run_program(prog, ctx)
    assert ctx.request.headers.items == [(b"accept", b"*/*"), (b"x-in", b"a,b")]
    assert ctx.response.headers.get(b"x-out") == b"c"


def test_ip_filter_decisions_per_address_stay_right():
    policy = compile_policy("ip-filter", {"action": "allow", "address-range": [
        {"from": "10.0.0.1", "to": "10.0.0.9"}]})
    for _ in range(3):   # the second and third rounds answer from the memo
        assert run(policy, make_ctx(ip="10.0.0.5")) is None
        for ip, reason in (("10.0.0.10", "CallerIpNotAllowed"),
                           ("not-an-ip", "FailedToParseCallerIP")):
            try:
                run(policy, make_ctx(ip=ip))
            except PolicyError as e:
                assert e.reason == reason
            else:
                raise AssertionError(f"{ip} was let through")


def test_subscription_keys_as_bytes_or_str():
    cfg = gateway({"apis": [{"name": "a", "path": "/a", "subscription-required": True}],
                   "subscriptions": [{"id": "s", "scope": "all-apis", "primary-key": "k-1"}]})
    index, api = SubscriptionIndex(cfg), cfg.apis[0]
    for key in (b"k-1", "k-1", bytearray(b"k-1")):
        got = index.resolve(api, key, None)
        assert isinstance(got, Access) and got.subscription.id == "s"
    assert isinstance(index.resolve_request(api, [(b"ocp-apim-subscription-key", b"k-1")],
                                            b""), Access)
    for key in (b"k-2", b"k-", b"k-1 "):
        assert isinstance(index.resolve_request(
            api, [(b"ocp-apim-subscription-key", key)], b""), Denied)
