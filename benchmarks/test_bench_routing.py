"""Routing micro-benchmarks: API + operation match, and subscription resolve, at scale.

1,000 APIs (`/svc0` .. `/svc999`) with 20 operations each, the templates a REST API has
(literals, `{id}`, nested `{id}/items/{item}`, a `?q={q}` query, `{*path}` wildcards), and
3,000 subscriptions (a product one per API, api-scoped, all-apis).  Each case is the whole
decision the runtime makes per request: Router.match (host + prefix), the split of the
query, OperationIndex.match (method + template); or SubscriptionIndex.resolve_request (key
header or query parameter -> Access or 401).

    pytest benchmarks/test_bench_routing.py --benchmark-only --benchmark-group-by=group
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "gateway"))
from apim_model import gateway  # noqa: E402  (the test helper: real or stand-in config)

from apigw_core.gateway.denied import Denied  # noqa: E402
from apigw_core.gateway.operations import OperationIndex  # noqa: E402
from apigw_core.gateway.router import Router  # noqa: E402
from apigw_core.gateway.subscriptions import SubscriptionIndex  # noqa: E402

N_APIS = 1000
TEMPLATES = [
    ("GET", "/"), ("POST", "/"), ("GET", "/me"), ("GET", "/health"), ("GET", "/stats"),
    ("GET", "/search?q={q}"), ("GET", "/{id}"), ("PUT", "/{id}"), ("PATCH", "/{id}"),
    ("DELETE", "/{id}"), ("GET", "/{id}/items"), ("POST", "/{id}/items"),
    ("GET", "/{id}/items/{item}"), ("DELETE", "/{id}/items/{item}"), ("GET", "/{id}/history"),
    ("POST", "/{id}/actions/{action}"), ("GET", "/v2/{id}"), ("GET", "/files/{*path}"),
    ("PUT", "/files/{*path}"), ("*", "/legacy/{*rest}"),
]
assert len(TEMPLATES) == 20


def _doc() -> dict:
    apis = [{"name": f"svc{i}", "path": f"/svc{i}", "operations": [
        {"name": f"op{j}", "method": m, "url-template": t}
        for j, (m, t) in enumerate(TEMPLATES)]} for i in range(N_APIS)]
    products = {f"p{i}": {"apis": [f"svc{i}"]} for i in range(N_APIS)}
    subs = ([{"id": f"s{i}", "product": f"p{i}", "primary-key": f"p{i:031x}",
              "secondary-key": f"s{i:031x}"} for i in range(N_APIS)]
            + [{"id": f"a{i}", "api": f"svc{i}", "primary-key": f"a{i:031x}"}
               for i in range(N_APIS)]
            + [{"id": f"all{i}", "scope": "all-apis", "primary-key": f"c{i:031x}"}
               for i in range(N_APIS)])
    return {"apis": apis, "products": products, "subscriptions": subs}


CFG = gateway(_doc())
ROUTER = Router(CFG)
OPS = OperationIndex(CFG.apis)
SUBS = SubscriptionIndex(CFG)


def route_and_match(method: bytes, host: bytes, target: bytes):
    route = ROUTER.match(host, target)
    q = target.find(b"?")
    return OPS.match(route.api, method, route.rest, target[q + 1:] if q >= 0 else b"")


REQUESTS = {
    "literal": (b"GET", b"/svc500/me", "op2"),
    "param": (b"GET", b"/svc17/4711", "op6"),
    "nested": (b"GET", b"/svc999/4711/items/42", "op12"),
    "query": (b"GET", b"/svc3/search?q=cats&page=2", "op5"),
    "wildcard": (b"GET", b"/svc250/files/a/b/c.txt", "op17"),
    "encoded": (b"GET", b"/svc250/files/a%20b/c%2Fd.txt", "op17"),
    "star-method": (b"OPTIONS", b"/svc42/legacy/x/y", "op19"),
    "not-found": (b"POST", b"/svc42/4711/unknown", None),
}


@pytest.mark.parametrize("case", list(REQUESTS))
def test_route_and_operation(benchmark, case: str) -> None:
    benchmark.group = "route + operation (1,000 APIs x 20 operations)"
    method, target, want = REQUESTS[case]
    got = benchmark(route_and_match, method, b"gw.example.com", target)
    assert (None if isinstance(got, Denied) else got.operation.name) == want


@pytest.mark.parametrize("case", ["param", "query"])
def test_router_alone(benchmark, case: str) -> None:
    benchmark.group = "router alone (the share of Router.match, same run)"
    _method, target, _want = REQUESTS[case]
    assert benchmark(ROUTER.match, b"gw.example.com", target) is not None


@pytest.mark.parametrize("case", list(REQUESTS))
def test_operation_alone(benchmark, case: str) -> None:
    benchmark.group = "operation match alone"
    method, target, want = REQUESTS[case]
    route = ROUTER.match(b"gw.example.com", target)
    q = target.find(b"?")
    query = target[q + 1:] if q >= 0 else b""
    got = benchmark(OPS.match, route.api, method, route.rest, query)
    assert (None if isinstance(got, Denied) else got.operation.name) == want


API = {a.name: a for a in CFG.apis}
KEY_CASES = {
    "product key (header)": ("svc700", [(b"ocp-apim-subscription-key", b"p%031x" % 700)], b"",
                             "s700"),
    "all-apis key (header)": ("svc700", [(b"ocp-apim-subscription-key", b"c%031x" % 9)], b"",
                              "all9"),
    "product secondary key (query)": ("svc700", [], b"a=1&subscription-key=s%031x" % 700, "s700"),
    "invalid key": ("svc700", [(b"ocp-apim-subscription-key", b"p%031x" % 701)], b"", None),
    "missing key": ("svc700", [(b"accept", b"*/*")], b"a=1", None),
}


@pytest.mark.parametrize("case", list(KEY_CASES))
def test_subscription_resolve(benchmark, case: str) -> None:
    benchmark.group = "subscription resolve (3,000 subscriptions)"
    api, headers, query, want = KEY_CASES[case]
    headers = [(b"host", b"gw.example.com"), (b"user-agent", b"curl/8"), *headers]
    got = benchmark(SUBS.resolve_request, API[api], headers, query, host=b"gw.example.com")
    assert (None if isinstance(got, Denied) else got.subscription.id) == want
