"""The traced twin of a program (runtime/tracetwin.py), in memory through `engine.run`:
nested policies in retry and choose are recorded once per run with their paths and
values, decisions (answer, error) are recorded, and the original program is untouched,
so a request run without a trace afterwards records nothing and gets the same result."""

from __future__ import annotations

import time
from types import SimpleNamespace

from apigw_core.gateway.pipeline import Programs, run
from apigw_core.gateway.pipeline.contract import (
    Context, ForwardRequest, Headers, RequestView, ResponseView,
)
from apigw_core.gateway.pipeline.program import CompiledStep
from apigw_core.runtime.debugtrace import Trace, apim_entries, scrub
from apigw_core.runtime.tracetwin import traced_program

RETRY_CHOOSE = {
    "inbound": [{"set-variable": {"name": "n", "value": "0"}}],
    "backend": [{"retry": {"condition": "response.status == 503", "count": 2,
                           "interval": 0, "policies": [
                               {"choose": {"when": [{"condition": 'request.method == "GET"',
                                                     "policies": ["forward-request"]}]}}]}}],
    "outbound": [{"choose": {"when": [{"condition": "response.status == 200", "policies": [
        {"return-response": {"set-status": {"code": 201},
                             "set-body": "done {request.method}"}}]}]}}],
    "on-error": [],
}


def _programs(policies: dict) -> Programs:
    cfg = SimpleNamespace(apis=(SimpleNamespace(name="a", operations=(), policies=policies),),
                          backends={"b": None}, products={}, named_values={},
                          policies=None, source="<test>")
    progs = Programs(cfg)
    assert progs.errors == [], progs.errors
    return progs


def _drive(program, statuses: list[int]):
    ctx = Context(request=RequestView("GET", "http", "h", "/a/x", "", Headers([]),
                                      "127.0.0.1"), request_id="r")
    gen = run(program, ctx)
    sent = None
    try:
        while True:
            cmd = gen.send(sent)
            sent = None
            if type(cmd) is ForwardRequest:
                ctx.response = ResponseView(statuses.pop(0), "", Headers([]), b"")
    except StopIteration as stop:
        return stop.value


def test_nested_in_retry_and_choose_each_attempt():
    program = _programs(RETRY_CHOOSE).get("a")
    tr = Trace("a", time.perf_counter())
    result = _drive(traced_program(program, tr), [503, 503, 200])
    assert result.kind == "answer" and result.answer.status == 201
    pol = [e for e in tr.entries if e["kind"] == "policy"]
    names = [(p["policy"], p["apim_path"]) for p in pol]
    fwd = ("forward-request", "retry[1]\\choose[1]\\when[1]\\forward-request[1]")
    assert names.count(fwd) == 3                     # one per attempt
    assert names[0] == ("set-variable", "set-variable[1]")
    assert names[1] == ("retry", "retry[1]")
    retry = pol[1]
    # the retry's condition after each attempt that may be retried (not after the last)
    assert [x["value"] for x in retry["expressions"]] == [True, True]
    assert retry["decision"] == "continue"
    last = pol[-1]
    assert last["policy"] == "return-response" and last["decision"] == "answer"
    assert last["status"] == 201 and last["expressions"][0]["value"] == "done GET"
    assert pol[-2]["policy"] == "choose" and pol[-2]["decision"] == "answer"
    assert not tr.stack                              # every entry closed
    assert all("_t0" not in p for p in pol)
    te = apim_entries(tr)
    assert [e["source"] for e in te["outbound"]] == ["choose", "return-response"]
    assert te["backend"][0]["source"] == "retry"


def test_error_decision_and_the_original_untouched():
    progs = _programs({"inbound": [{"choose": {"when": [{"condition": "true", "policies": [
        {"check-header": {"name": "x-must", "failed-check-httpcode": 401,
                          "failed-check-error-message": "missing"}}]}]}}]})
    program = progs.get("a")
    before = [(s, s.policy, s.policy.branches[0][1][0]) for s in program.inbound]
    tr = Trace("a", time.perf_counter())
    result = _drive(traced_program(program, tr), [200])
    assert result.kind == "error" and result.error.status == 401
    assert result.error.path == "choose[1]\\when[1]\\check-header[1]"   # as untraced
    pol = [e for e in tr.entries if e["kind"] == "policy"]
    assert [(p["policy"], p["decision"]) for p in pol] == [
        ("choose", "error"), ("check-header", "error")]
    # the program and its policies are the same objects as before, recording nothing
    assert [(s, s.policy, s.policy.branches[0][1][0]) for s in program.inbound] == before
    assert all(type(s) is CompiledStep for s in program.inbound)
    assert type(program.inbound[0].policy.branches[0][0]).__name__ == "Condition"
    n = len(tr.entries)
    plain = _drive(program, [200])
    assert plain.kind == "error" and plain.error.path == result.error.path
    assert len(tr.entries) == n


def test_scrub_replaces_secrets_at_any_depth():
    doc = {"a": ["x Bearer zzz y", {"k-Bearer zzz": "s3cret!"}], "n": 3}
    out = scrub(doc, {"Bearer zzz": "REDACTED", "s3cret!": "{{pw}}"})
    assert out == {"a": ["x REDACTED y", {"k-REDACTED": "{{pw}}"}], "n": 3}
