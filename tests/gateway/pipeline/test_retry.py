"""The retry policy in memory: attempts, APIM's wait formulas with a fixed random source,
caps, first-fast-retry, the condition on statuses and on failures, nested policy lists,
the runtime's refusal (PrepareRetry), config errors with their paths."""

from __future__ import annotations

import random

import pytest

from apigw_core.gateway.pipeline.contract import ForwardRequest, PolicyError
from apigw_core.gateway.pipeline.policies.retry import (
    PrepareRetry, Retry, Sleep, parse_duration, wait_seconds,
)

from helpers import Driver, config_errors, ApiConfig, make_ctx, one_api, response, \
    run_program, sections


class ScriptedDriver(Driver):
    """The backend answers `script` in order (an int status, or a PolicyError to throw);
    Sleep is a fake clock (the waits are recorded); PrepareRetry answers `refuse`."""

    def __init__(self, script, refuse=None) -> None:
        super().__init__()
        self.script = list(script)
        self.forwards = 0
        self.sleeps: list[float] = []
        self.prepared: list[int] = []
        self.refuse = refuse

    def execute(self, cmd, ctx):
        if isinstance(cmd, Sleep):
            self.commands.append(cmd)
            self.sleeps.append(cmd.seconds)
            return None
        if isinstance(cmd, PrepareRetry):
            self.commands.append(cmd)
            self.prepared.append(cmd.attempt)
            return self.refuse(cmd.attempt) if self.refuse else None
        if isinstance(cmd, ForwardRequest):
            self.commands.append(cmd)
            self.forwards += 1
            step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
            if isinstance(step, PolicyError):
                raise step
            ctx.response = response(step)
            return None
        return super().execute(cmd, ctx)


def retry(**attrs):
    body = {"condition": "response.status >= 500", "count": 3, "interval": 1,
            "policies": ["forward-request"]}
    body.update(attrs)
    return {"retry": body}


def run(entry, script, refuse=None, on_error=None):
    program = one_api(backend=[entry], **({} if on_error is None else {}))
    if on_error is not None:
        program = one_api(backend=[entry], on_error=on_error)
    d = ScriptedDriver(script, refuse)
    result, ctx, _ = run_program(program, make_ctx(), d)
    return result, ctx, d


def refused():
    return PolicyError(502, "BackendConnectionFailure", "Backend connection failed.",
                       source="forward-request")


# --- attempts and the condition ------------------------------------------------------------

def test_retries_until_the_condition_is_false():
    result, ctx, d = run(retry(), [500, 503, 200])
    assert d.forwards == 3
    assert ctx.response.status == 200 and result.kind == "response"
    assert d.prepared == [2, 3]


def test_count_caps_the_retries_and_the_last_answer_stands():
    result, ctx, d = run(retry(count=2), [500])
    assert d.forwards == 3          # the first attempt and 2 retries
    assert ctx.response.status == 500 and result.kind == "response"


def test_no_retry_when_the_condition_is_false_at_once():
    _, ctx, d = run(retry(), [404])
    assert d.forwards == 1 and d.sleeps == [] and d.prepared == []


def test_failure_counts_as_an_attempt_and_the_condition_sees_502():
    result, ctx, d = run(retry(), [refused(), refused(), 200])
    assert d.forwards == 3 and ctx.response.status == 200
    assert ctx.last_error is None   # the failures of earlier attempts leave no trace


def test_failures_to_the_end_go_to_on_error():
    on_error = [{"set-header": {"name": "x-why", "value": "{last-error.reason}"}}]
    result, ctx, d = run(retry(count=2), [refused()], on_error=on_error)
    assert d.forwards == 3
    assert result.kind == "error" and result.error.reason == "BackendConnectionFailure"
    assert result.error.path == "retry[1]\\forward-request[1]"    # APIM's path
    assert result.error.section == "backend"
    assert ctx.response.status == 502
    assert ctx.response.headers.get(b"x-why") == b"BackendConnectionFailure"


def test_condition_on_last_error_reason_only():
    timeout = PolicyError(504, "Timeout", "Backend timed out.", source="forward-request")
    entry = retry(condition='last-error.reason == "Timeout"')
    _, ctx, d = run(entry, [timeout, 500])
    assert d.forwards == 2 and ctx.response.status == 500   # 500: no failure, no retry
    _, _, d = run(entry, [refused()])
    assert d.forwards == 1                                   # not a timeout


def test_other_errors_are_not_retried():
    err = PolicyError(413, "RequestEntityTooLarge", "too large")
    result, _, d = run(retry(), [err])
    assert d.forwards == 1 and result.kind == "error" and result.error.status == 413


def test_fail_on_error_status_code_is_retried_with_the_real_response():
    entry = retry(condition="response.status == 503",
                  policies=[{"forward-request": {"fail-on-error-status-code": True}}])
    result, ctx, d = run(entry, [503, 503, 200])
    assert d.forwards == 3 and ctx.response.status == 200 and result.kind == "response"


def test_nested_policy_list_runs_every_attempt():
    entry = retry(count=2, policies=[
        {"set-variable": {"name": "n", "value": "{variables.n}x"}}, "forward-request"])
    _, ctx, d = run(entry, [500])
    assert ctx.variables["n"] == "xxx" and d.forwards == 3


def test_runtime_refusal_keeps_the_current_answer():
    _, ctx, d = run(retry(), [500, 200], refuse=lambda attempt: "over the retry budget")
    assert d.forwards == 1 and ctx.response.status == 500 and d.sleeps == []


def test_condition_false_constant_and_return_response_inside():
    _, _, d = run(retry(condition=False), [500])
    assert d.forwards == 1
    entry = retry(policies=[{"return-response": {"set-status": 418}}])
    result, _, d = run(entry, [500])
    assert result.kind == "answer" and result.answer.status == 418 and d.forwards == 0


# --- waits ------------------------------------------------------------------------------

def test_fixed_interval():
    _, _, d = run(retry(interval="250ms"), [500, 500, 500, 200])
    assert d.sleeps == [0.25, 0.25, 0.25]


def test_linear_interval():
    _, _, d = run(retry(interval=1, delta=2, count=4), [500])
    assert d.sleeps == [1, 3, 5, 7]             # interval + (n-1)*delta


class Fixed(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def uniform(self, a, b):
        assert (a, b) == (0.8, 1.2)
        return self.value


def _with_rng(entry, value):
    program = one_api(backend=[entry])
    policy = program.backend[0].policy
    assert isinstance(policy, Retry)
    policy.rng = Fixed(value)
    return program


@pytest.mark.parametrize("factor", [0.8, 1.0, 1.2])
def test_exponential_interval_with_its_random_factor_and_cap(factor):
    program = _with_rng(retry(interval=1, delta=1, **{"max-interval": 20}, count=5), factor)
    d = ScriptedDriver([500])
    run_program(program, make_ctx(), d)
    expected = [min(20.0, 1 + (2 ** n - 1) * factor * 1) for n in range(1, 6)]
    assert d.sleeps == pytest.approx(expected)
    assert d.sleeps[-1] == 20.0                 # 1 + 31*factor > 20: capped


def test_first_fast_retry():
    _, _, d = run(retry(interval=1, delta=1, **{"first-fast-retry": True}, count=3), [500])
    assert d.sleeps == [2, 3]   # retry 1 immediate (no Sleep), then linear for n = 2, 3
    assert d.forwards == 4


def test_wait_formula_function():
    assert wait_seconds(3, 0.5, None, None, False, 1.0) == 0.5
    assert wait_seconds(3, 0.5, 0.25, None, False, 1.0) == 1.0
    assert wait_seconds(3, 0.5, 0.25, 10.0, False, 1.1) == pytest.approx(0.5 + 7 * 1.1 * 0.25)
    assert wait_seconds(1, 0.5, 0.25, 10.0, True, 1.1) == 0.0
    assert wait_seconds(9, 0.5, 0.25, 10.0, False, 1.0) == 10.0


@pytest.mark.parametrize("text,seconds", [("100ms", 0.1), ("2s", 2.0), (3, 3.0), ("1.5", 1.5),
                                          ("1m", 60.0), (0, 0.0)])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


# --- config errors ----------------------------------------------------------------------

def errors_of(body):
    return config_errors([ApiConfig("orders", policies=sections(backend=[{"retry": body}]))])


def test_config_errors_name_their_paths():
    errs = errors_of({"count": 51, "interval": "soon", "max-interval": 5,
                      "first-fast-retry": "maybe", "colour": 1, "policies": ["forward-request"]})
    p = "apis[0].policies.backend[0].retry"
    assert f"{p}.condition: required" in errs
    assert any(e.startswith(f"{p}.count: expected an integer from 1 to 50") for e in errs)
    assert any(e.startswith(f"{p}.interval: expected a duration") for e in errs)
    assert any(e.startswith(f"{p}.max-interval: needs delta") for e in errs)
    assert any(e.startswith(f"{p}.first-fast-retry: expected true or false") for e in errs)
    assert any(e.startswith(f"{p}.colour: unknown attribute") for e in errs)


def test_config_errors_inside_nested_policies_and_condition():
    errs = errors_of({"condition": "response.status >>= 5", "count": 1, "interval": 0,
                      "policies": [{"forward-request": {"timeout": "never"}}]})
    p = "apis[0].policies.backend[0].retry"
    assert any(e.startswith(f"{p}.condition:") for e in errs), errs
    assert any(e.startswith(f"{p}.policies[0].forward-request.timeout:") for e in errs), errs


def test_count_and_interval_required_and_policies_required():
    errs = errors_of({"condition": "true"})
    p = "apis[0].policies.backend[0].retry"
    assert f"{p}.count: required" in errs and f"{p}.interval: required" in errs
    assert any(e.startswith(f"{p}.policies: required") for e in errs)
