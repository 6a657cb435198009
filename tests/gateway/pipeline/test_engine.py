"""The engine: sections in order, commands yielded to the runtime, answers that end the
pipeline, errors recorded as last-error and handled by on-error, bugs kept off the wire."""

from __future__ import annotations

import json

import pytest

from apigw_core.gateway.pipeline import run
from apigw_core.gateway.pipeline.contract import (
    Answer, ForwardRequest, PolicyError, ReadRequestBody, ReadResponseBody, SendRequest,
    ServiceResponse,
)

from helpers import (
    ApiConfig, Driver, FakeBackend, OperationConfig, make_ctx, one_api, program_of,
    run_program, sections,
)


def mark(tag: str) -> dict:
    return {"set-variable": {"name": "t", "value": "{variables.t}" + tag}}


def fail(status=401, reason="Nope", message="nope") -> dict:
    return {"helpers:Fail": {"status": status, "reason": reason, "message": message}}


RETURN_418 = {"return-response": {"set-status": {"code": 418, "reason": "Teapot"},
                                  "set-body": "short and stout"}}


def test_sections_run_in_order_around_the_backend():
    prog = one_api(inbound=[mark("i")], backend=[mark("b"), {"forward-request": {}}, mark("B")],
                   outbound=[mark("o")])
    seen = []

    class Spy(Driver):
        def execute(self, cmd, ctx):
            seen.append((type(cmd).__name__, ctx.variables.get("t"), ctx.section))
            return super().execute(cmd, ctx)

    result, ctx, driver = run_program(prog, driver=Spy(backend=FakeBackend(201)))
    assert seen == [("ForwardRequest", "ib", "backend")]
    assert ctx.variables["t"] == "ibBo"
    assert result.kind == "response" and result.forwarded
    assert ctx.response.status == 201 and ctx.section == "outbound"


def test_the_runtime_drives_one_generator():
    # What the runtime's executor sees: exactly one command for a plain proxied request.
    prog = one_api(inbound=[mark("a")])
    ctx = make_ctx()
    gen = run(prog, ctx)
    cmd = gen.send(None)
    assert isinstance(cmd, ForwardRequest) and cmd.timeout is None
    from helpers import response
    ctx.response = response(204)
    with pytest.raises(StopIteration) as stop:
        gen.send(None)
    assert stop.value.value.kind == "response"


def test_return_response_in_inbound_ends_everything():
    prog = one_api(inbound=[mark("a"), RETURN_418, mark("never")], outbound=[mark("o")])
    result, ctx, driver = run_program(prog)
    assert result.kind == "answer" and not result.forwarded
    assert result.answer == Answer(418, (), b"short and stout", "Teapot")
    assert driver.commands == []                    # the backend was not called
    assert ctx.variables["t"] == "a"                # outbound did not run (APIM)


def test_return_response_in_outbound_replaces_the_backend_answer():
    prog = one_api(outbound=[RETURN_418])
    result, ctx, driver = run_program(prog)
    assert result.kind == "answer" and result.forwarded       # the runtime drops the body
    assert result.answer.status == 418


def test_policy_error_runs_on_error_with_last_error():
    prog = one_api(inbound=[mark("a"), fail(401, "HeaderNotFound", "Header x was not found"),
                            mark("never")],
                   on_error=[{"set-variable": {"name": "e", "value":
                       "{last-error.source}|{last-error.reason}|{last-error.message}|"
                       "{last-error.scope}|{last-error.section}|{last-error.path}"}}],
                   outbound=[mark("o")])
    result, ctx, driver = run_program(prog)
    assert result.kind == "error" and result.exception is None and not result.forwarded
    assert ctx.variables["t"] == "a"
    assert ctx.variables["e"] == ("helpers:Fail|HeaderNotFound|Header x was not found|api|"
                                  "inbound|helpers:Fail[1]")
    assert driver.commands == []
    # the error's own answer, APIM's JSON, in ctx.response for the local-reply path
    assert ctx.response.status == 401
    assert json.loads(ctx.response.body) == {"statusCode": 401,
                                             "message": "Header x was not found"}
    assert ctx.response.headers.get(b"content-type") == b"application/json"
    assert result.error.status == 401 and ctx.last_error is result.error


def test_on_error_answer_wins():
    prog = one_api(inbound=[fail(403, "Forbidden", "go away")],
                   on_error=[{"return-response": {"set-status": {"code": 599},
                                                  "set-body": "{last-error.reason}"}}])
    result, ctx, _ = run_program(prog)
    assert result.kind == "answer" and result.answer.status == 599
    assert result.answer.body == b"Forbidden" and result.error.reason == "Forbidden"


def test_on_error_edits_the_error_answer():
    prog = one_api(inbound=[fail(429, "RateLimitExceeded", "slow down")],
                   on_error=[{"helpers:Tag": {"tag": "handled"}}])
    result, ctx, _ = run_program(prog)
    assert result.kind == "error"
    assert ctx.response.status == 429 and ctx.response.headers.get(b"x-tag") == b"handled"


def test_error_headers_reach_the_answer():
    prog = one_api(backend=[{"forward-request": {}}])
    err = PolicyError(401, "SubscriptionKeyNotFound", "missing key",
                      headers=[(b"www-authenticate", b"AzureApiManagementKey realm=x")])
    result, ctx, driver = run_program(prog, error=err)
    assert result.kind == "error" and driver.commands == []
    assert ctx.response.headers.get(b"www-authenticate") == b"AzureApiManagementKey realm=x"
    assert result.error.reason == "SubscriptionKeyNotFound"


def test_an_error_given_to_run_goes_straight_to_on_error():
    prog = one_api(inbound=[mark("never")], on_error=[mark("e")])
    result, ctx, driver = run_program(prog, error=PolicyError(404, "OperationNotFound",
                                                              "Unable to match"))
    assert ctx.variables["t"] == "e" and driver.commands == []
    assert result.error.reason == "OperationNotFound" and ctx.response.status == 404


def test_error_inside_on_error_keeps_the_original_answer():
    prog = one_api(inbound=[fail(401, "First", "first")],
                   on_error=[{"helpers:Tag": {"tag": "x"}}, fail(500, "Second", "second")])
    result, ctx, _ = run_program(prog)
    assert result.kind == "error" and result.error.reason == "First"
    assert ctx.response.status == 401 and json.loads(ctx.response.body)["message"] == "first"
    assert ctx.response.headers.get(b"x-tag") is None      # on-error's edits are undone
    assert isinstance(result.exception, PolicyError)       # the second error, for the log


def test_a_bug_is_a_500_internal_error_with_no_details_on_the_wire():
    prog = one_api(inbound=[{"helpers:Boom": {}}], on_error=[mark("e")])
    result, ctx, _ = run_program(prog)
    assert result.kind == "error" and isinstance(result.exception, RuntimeError)
    assert result.error.reason == "InternalError" and result.error.source == "helpers:Boom"
    assert ctx.response.status == 500
    assert json.loads(ctx.response.body) == {"statusCode": 500, "message": "internal error"}
    assert b"passwd" not in ctx.response.body and ctx.variables["t"] == "e"


def test_a_policy_returning_junk_is_a_bug():
    result, ctx, _ = run_program(one_api(inbound=[{"helpers:Junk": {}}]))
    assert result.kind == "error" and isinstance(result.exception, TypeError)
    assert "apply() returned int" in str(result.exception)


def test_backend_failure_thrown_in_by_the_runtime():
    prog = one_api(on_error=[mark("e")])
    backend = FakeBackend(error=PolicyError(502, "BackendConnectionFailure", "refused"))
    result, ctx, _ = run_program(prog, driver=Driver(backend=backend))
    e = result.error
    assert (e.source, e.reason, e.section, e.scope, e.path) == (
        "forward-request", "BackendConnectionFailure", "backend", "global", "forward-request[1]")
    assert not result.forwarded and ctx.response.status == 502


def test_error_in_outbound_after_the_backend_answered():
    prog = one_api(outbound=[mark("o"), fail(500, "Bad", "bad")])
    result, ctx, _ = run_program(prog)
    assert result.kind == "error" and result.forwarded      # the backend body is dropped
    assert result.error.section == "outbound"


def test_nested_error_path_and_policy_id():
    choose = {"choose": {"when": [
        {"condition": "false", "policies": []},
        {"condition": "true", "policies": [mark("x"), {"helpers:Fail": {
            "id": "the-check", "status": 400}}]}]}}
    api = ApiConfig("orders", operations=(OperationConfig("get", policies=sections(
        inbound=[mark("y"), choose])),))
    prog = program_of([api], operation="get")
    result, ctx, _ = run_program(prog)
    e = result.error
    assert e.path == "choose[1]\\when[2]\\helpers:Fail[1]"
    assert (e.scope, e.policy_id, e.status) == ("operation", "the-check", 400)


def test_condition_failure_points_at_its_when():
    choose = {"choose": {"when": [{"condition": "true", "policies": [{"choose": {"when": [
        {"condition": "false", "policies": []},
        {"condition": "request.headers.x-none > 3", "policies": []}]}}]}]}}
    result, ctx, _ = run_program(one_api(inbound=[choose]))
    e = result.error
    assert e.reason == "ExpressionValueEvaluationFailure" and e.status == 500
    assert e.path == "choose[1]\\when[1]\\choose[1]\\when[2]"


def test_request_body_read_once_when_a_policy_needs_it():
    prog = one_api(inbound=[mark("a"),
                            {"set-variable": {"name": "b1", "value": "{request.body}"}},
                            {"set-variable": {"name": "b2", "value": "<{request.body}>"}}])
    result, ctx, driver = run_program(prog, driver=Driver(request_body=b"hello"))
    assert [type(c) for c in driver.commands] == [ReadRequestBody, ForwardRequest]
    assert ctx.variables["b1"] == "hello" and ctx.variables["b2"] == "<hello>"


def test_request_body_over_the_limit_is_a_413():
    prog = one_api(inbound=[{"set-variable": {"name": "b", "value": "{request.body}"}}])
    result, ctx, driver = run_program(prog, driver=Driver(request_body=b"x" * (prog.body_limit
                                                                               + 1)))
    assert result.kind == "error" and ctx.response.status == 413
    assert [type(c) for c in driver.commands] == [ReadRequestBody]


def test_a_body_read_in_outbound_is_fetched_before_the_backend():
    # outbound reads the request body: it must be buffered before it is forwarded
    prog = one_api(outbound=[{"set-variable": {"name": "b", "value": "{request.body}"}}])
    assert prog.reads_request_body
    result, ctx, driver = run_program(prog, driver=Driver(request_body=b"up"))
    assert [type(c) for c in driver.commands] == [ReadRequestBody, ForwardRequest]
    assert ctx.variables["b"] == "up"


def test_response_body_read_in_outbound():
    prog = one_api(outbound=[{"set-variable": {"name": "r", "value": "{response.body}"}}])
    assert prog.reads_response_body
    result, ctx, driver = run_program(prog, driver=Driver(backend=FakeBackend(body=b"down")))
    assert [type(c) for c in driver.commands] == [ForwardRequest, ReadResponseBody]
    assert ctx.variables["r"] == "down"


def test_a_generator_policy_in_the_middle_of_plain_ones():
    services = []

    def service(cmd: SendRequest) -> ServiceResponse:
        services.append((cmd.method, cmd.url))
        return ServiceResponse(200, ((b"x-a", b"1"),), b"token-7")
    prog = one_api(inbound=[mark("a"), {"send-request": {
        "set-url": "http://auth.local/token", "response-variable-name": "tok"}},
        mark("b"), {"set-variable": {"name": "got", "value": "{variables.tok.body}"}}])
    result, ctx, driver = run_program(prog, driver=Driver(services=service))
    assert services == [("GET", "http://auth.local/token")]
    assert ctx.variables["t"] == "ab" and ctx.variables["got"] == "token-7"
    assert [type(c) for c in driver.commands] == [SendRequest, ForwardRequest]


def test_closing_the_generator_runs_nothing_more():
    # The client went away while the backend was being called: the runtime closes the
    # generator; GeneratorExit must not be taken for a policy error.
    prog = one_api(outbound=[mark("o")], on_error=[mark("e")])
    ctx = make_ctx()
    gen = run(prog, ctx)
    assert isinstance(gen.send(None), ForwardRequest)
    gen.close()
    assert "t" not in ctx.variables and ctx.last_error is None


def test_zero_policies_is_one_forward():
    prog = program_of([ApiConfig("orders")])
    assert (prog.inbound, prog.outbound, prog.on_error) == ((), (), ())
    result, ctx, driver = run_program(prog)
    assert result.kind == "response" and [type(c) for c in driver.commands] == [ForwardRequest]


def test_a_response_started_in_inbound_is_not_a_forward():
    # set-status in inbound starts ctx.response (APIM's context.Response always exists);
    # with no forward-request the result must not claim a backend body to stream.
    prog = one_api(inbound=[{"set-status": {"code": 202, "reason": "Accepted"}}],
                   backend=[mark("b")])
    result, ctx, driver = run_program(prog)
    assert result.kind == "response" and not result.forwarded and driver.commands == []
    assert ctx.response.status == 202
