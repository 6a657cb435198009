"""Router micro-benchmarks: `Router.match` on the common path (no "%", "\\", "/." or "#":
no normalising) and on paths that are normalised (gateway/paths.py), with the Date helper
that every response pays beside it.

51 APIs over no host, one exact and one wildcard host, as in gateway/router.py's docstring.

    pytest benchmarks/test_bench_router.py --benchmark-only
"""

from __future__ import annotations

import pytest

from apigw_core.gateway.config import parse_config
from apigw_core.gateway.router import Router
from apigw_core.runtime.clock import with_date

APIS = [{"name": f"a{i}", "path": f"/svc{i}", "backend": "b"} for i in range(48)] + [
    {"name": "orders", "path": "/orders", "backend": "b"},
    {"name": "ex", "path": "/orders", "backend": "b", "host": "api.example.com"},
    {"name": "wild", "path": "/orders", "backend": "b", "host": "*.example.com"},
]
ROUTER = Router(parse_config({"listeners": [{"bind": "127.0.0.1:0"}],
                              "backends": {"b": {"url": "http://b/api"}}, "apis": APIS}))


@pytest.mark.parametrize("target", [
    b"/orders/7/lines?x=1",          # plain: the common path
    b"/svc3",
    b"/orders/7/%41b?x=1",           # an escape: normalised
    b"/orders/a/./b/../c",           # dot segments: removed
])
def test_match(benchmark, target):
    match = ROUTER.match
    route = benchmark(match, b"h", target)
    assert route is not None


def test_with_date(benchmark):
    headers = [(b"content-type", b"application/json"), (b"content-length", b"17"),
               (b"server", b"x"), (b"cache-control", b"no-store"), (b"via", b"1.1 apigw")]
    assert benchmark(with_date, headers)[-1][0] == b"date"
