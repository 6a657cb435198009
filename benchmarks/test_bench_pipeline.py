"""Pipeline overhead per request, in memory: 0, 5 and 20 policies (issue 9).

Each request builds a fresh `Context` (as the runtime does from the request head: a
browser-like set of 10 header fields), runs `engine.run(program, ctx)` to its end with a
trivial executor (ForwardRequest answers at once with a 200 ResponseView), and takes the
Result.  No sockets, no bodies: what the policies and the engine cost on top of proxying.

  * 0 policies: the default program (backend [forward-request] and nothing else);
  * 5 policies (the issue's end-to-end set, at global scope): check-header, ip-filter
    allow 127.0.0.1, set-header on the request, cors (actual request with an allowed
    Origin), set-header on the response;
  * 20 policies: those 5 plus set-variable x4, set-header x4 (request x2, response x2),
    check-header x3, choose x2 (conditions on method and a header), ip-filter x2.

    pytest benchmarks/test_bench_pipeline.py --benchmark-only --benchmark-group-by=group
    python benchmarks/test_bench_pipeline.py      # the table (min of 7 runs, us/request)
"""

from __future__ import annotations

import timeit
from types import SimpleNamespace

import pytest

from apigw_core.gateway.pipeline import Programs, run
from apigw_core.gateway.pipeline.contract import (
    Context, ForwardRequest, Headers, RequestView, ResponseView,
)

HEADERS = [
    (b"host", b"api.example.com"), (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64)"),
    (b"accept", b"application/json"), (b"accept-encoding", b"gzip, deflate, br"),
    (b"accept-language", b"en-US,en;q=0.9"), (b"origin", b"https://app.example.com"),
    (b"x-api-client", b"web"), (b"x-tier", b"gold"),
    (b"ocp-apim-subscription-key", b"0123456789abcdef"), (b"x-request-id", b"r-1"),
]

FIVE = [
    {"check-header": {"name": "x-api-client", "failed-check-httpcode": 401,
                      "failed-check-error-message": "no client", "ignore-case": True}},
    {"ip-filter": {"action": "allow", "address": ["127.0.0.1"]}},
    {"set-header": {"name": "x-forwarded-by", "value": ["apigw"]}},
    {"cors": {"allowed-origins": ["https://app.example.com"], "allowed-methods": ["GET"],
              "allowed-headers": ["x-api-client"]}},
]
FIVE_OUT = [{"set-header": {"name": "x-served-by", "value": ["apigw"]}}]

FIFTEEN_IN = (
    [{"set-variable": {"name": f"v{i}", "value": "{request.headers.x-tier}"}} for i in range(4)]
    + [{"set-header": {"name": f"x-in-{i}", "value": ["{request.method}"]}} for i in range(2)]
    + [{"check-header": {"name": "x-tier", "failed-check-httpcode": 403,
                         "failed-check-error-message": "no", "ignore-case": False,
                         "value": ["gold", "silver"]}} for _ in range(3)]
    + [{"choose": {"when": [{"condition": 'request.method == "POST"',
                             "policies": [{"set-variable": {"name": "p", "value": "1"}}]},
                            {"condition": 'request.headers.x-tier in ["gold", "silver"]',
                             "policies": [{"set-variable": {"name": "g", "value": "1"}}]}]}}
       for _ in range(2)]
    + [{"ip-filter": {"action": "forbid", "address-range": [{"from": "10.0.0.0",
                                                              "to": "10.255.255.255"}]}}
       for _ in range(2)]
)
FIFTEEN_OUT = [{"set-header": {"name": f"x-out-{i}", "value": ["{response.status}"]}}
               for i in range(2)]


def _program(inbound: list, outbound: list):
    policies = {"inbound": inbound, "outbound": outbound} if inbound or outbound else None
    cfg = SimpleNamespace(apis=(SimpleNamespace(name="orders", operations=(), policies=None),),
                          backends={"b": None}, products={}, named_values={},
                          policies=policies, source="<bench>")
    programs = Programs(cfg)
    assert programs.errors == [], programs.errors
    return programs.get("orders")


PROGRAMS = {
    0: lambda: _program([], []),
    5: lambda: _program(FIVE, FIVE_OUT),
    20: lambda: _program(FIVE + FIFTEEN_IN, FIVE_OUT + FIFTEEN_OUT),
}


def one_request(program) -> object:
    ctx = Context(request=RequestView("GET", "http", "api.example.com", "/orders/7", "x=1",
                                      Headers(list(HEADERS)), "127.0.0.1"),
                  request_id="r-1")
    gen = run(program, ctx)
    try:
        cmd = gen.send(None)
        while True:
            if type(cmd) is ForwardRequest:
                ctx.response = ResponseView(200, "OK", Headers([(b"content-type",
                                                                 b"application/json")]))
            cmd = gen.send(None)
    except StopIteration as stop:
        return stop.value


@pytest.mark.parametrize("n", sorted(PROGRAMS))
def test_pipeline_overhead(benchmark, n):
    program = PROGRAMS[n]()
    assert len(program.inbound) + len(program.outbound) == n
    result = one_request(program)
    assert result.kind == "response"
    benchmark.group = "pipeline per request"
    benchmark(one_request, program)


def main() -> None:
    base = None
    print("| policies | us/request | over 0 policies |")
    print("|---------:|-----------:|----------------:|")
    for n in sorted(PROGRAMS):
        program = PROGRAMS[n]()
        number = 20000
        best = min(timeit.repeat(lambda: one_request(program), number=number, repeat=7))
        us = best / number * 1e6
        base = us if base is None else base
        print(f"| {n:8d} | {us:10.2f} | {us - base:+15.2f} |")


if __name__ == "__main__":
    main()
