"""`--workers 2`: both workers draw from the gateway's one shared-memory table, so the limit
is exact for the gateway, not per process (issue 10: "limits multiplied by the number of
workers").  Requests go on fresh connections, which the kernel spreads over the workers
(SO_REUSEPORT); with a table per process the two would admit up to twice the limit."""

from __future__ import annotations

import time

import httpx
import pytest

from pipeline_kit import echo  # noqa: F401  (fixture)
from procs import start_gateway

LIMIT = 20
PERIOD = 300          # one token back every 15 s: at most a couple during the test


@pytest.fixture(scope="module")
def gw2(tmp_path_factory, echo):  # noqa: F811
    cfg = {
        "listeners": [{"bind": "127.0.0.1:0"}],
        "admin": {"bind": "127.0.0.1:0"},
        "backends": {"echo": {"url": f"http://127.0.0.1:{echo.port}", "timeout": "5s"}},
        "apis": [{"name": "rl", "path": "/rl", "backend": "echo", "policies": {"inbound": [
            {"rate-limit-by-key": {"calls": LIMIT, "renewal-period": PERIOD,
                                   "counter-key": "everyone"}}]}}],
    }
    p = start_gateway(tmp_path_factory.mktemp("gw2"), cfg, workers=2)
    yield p
    p.stop()


def _workers(gw) -> set:
    pids = set()
    for _ in range(40):
        with httpx.Client(timeout=10) as c:   # a new connection each time
            pids.add(c.get(f"http://127.0.0.1:{gw.admin_port}/config").json()["pid"])
    return pids


def test_two_workers_admit_exactly_the_limit_between_them(gw2):
    assert len(_workers(gw2)) == 2          # both workers take connections
    t0 = time.monotonic()
    statuses = []
    for _ in range(3 * LIMIT):
        with httpx.Client(timeout=10) as c:   # fresh connections: spread over both
            statuses.append(c.get(f"{gw2.url}/rl/x").status_code)
    elapsed = time.monotonic() - t0
    admitted = statuses.count(200)
    refills = int(elapsed * LIMIT / PERIOD)   # tokens back while the test ran
    assert statuses.count(429) == len(statuses) - admitted
    assert LIMIT <= admitted <= LIMIT + refills, (admitted, elapsed)
