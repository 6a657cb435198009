"""`--workers 2`: a trace recorded by either worker is found by a `GET /traces/{id}` that
lands on either worker (the supervisor's trace directory, runtime/tracestore.py).  Traced
requests go on fresh connections until both workers served one (each document names the
worker's pid); then every trace id is fetched many times on fresh connections, which the
kernel spreads over both workers' admin listeners (SO_REUSEPORT), and always found."""

from __future__ import annotations

import httpx
import pytest

from procs import start_gateway
from support import wait_until


@pytest.fixture(scope="module")
def gw2(tmp_path_factory, echo):
    cfg = {"listeners": [{"bind": "127.0.0.1:0"}], "admin": {"bind": "127.0.0.1:0"},
           "backends": {"echo": {"url": echo.url, "timeout": "5s"}},
           "apis": [{"name": "shop", "path": "/shop", "backend": "echo", "policies": {
               "inbound": [{"set-header": {"name": "x-t", "value": ["{request.method}"]}}]}}]}
    p = start_gateway(tmp_path_factory.mktemp("gw2"), cfg, workers=2)
    yield p
    p.stop()


def _admin(gw, path: str) -> httpx.Response:
    with httpx.Client(timeout=10) as c:     # a new connection: any worker may answer
        return c.get(f"http://127.0.0.1:{gw.admin_port}{path}")


def test_any_worker_finds_any_trace(gw2):
    r = httpx.post(f"http://127.0.0.1:{gw2.admin_port}/debug-credentials",
                   json={"api": "shop"}, timeout=10)
    tok = r.json()["token"]
    ids: dict[str, int] = {}        # trace id -> the pid of the worker that recorded it
    answered_by: set[int] = set()   # admin pids seen

    def one_more() -> bool:
        with httpx.Client(timeout=10) as c:
            resp = c.get(gw2.url + "/shop/x", headers={"apim-debug-authorization": tok})
        assert resp.status_code == 200
        tid = resp.headers["apim-trace-id"]
        def stored():   # written when the request is over, just after the response
            t = _admin(gw2, f"/traces/{tid}")
            return t.json() if t.status_code == 200 else None
        doc = wait_until(stored, timeout=30)
        ids[tid] = doc["worker"]
        answered_by.add(_admin(gw2, "/config").json()["pid"])
        return len(set(ids.values())) == 2 and len(answered_by) == 2

    wait_until(one_more, timeout=60)
    assert len(set(ids.values())) == 2           # both workers recorded traces
    for _ in range(6):
        for tid, pid in ids.items():
            t = _admin(gw2, f"/traces/{tid}")
            assert t.status_code == 200, (tid, t.text)
            assert t.json()["worker"] == pid and t.json()["traceEntries"]["inbound"]
    kept = _admin(gw2, "/traces/").json()["traces"]
    assert set(ids) <= set(kept)
