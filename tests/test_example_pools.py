"""examples/pools.yaml does what its header promises: weighted 3:1 members under their own
base paths, the spare idle, /backends listing the members under the pool."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "runtime"))
from procs import start_echo, start_gateway  # noqa: E402
from test_examples import EXAMPLES, _rewrite  # noqa: E402


def test_pools_example(tmp_path):
    echo = start_echo()
    try:
        config = _rewrite(yaml.safe_load((EXAMPLES / "pools.yaml").read_text()),
                          {"127.0.0.1:8081": f"127.0.0.1:{echo.port}"})
        gw = start_gateway(tmp_path, config)
        try:
            paths = [httpx.get(gw.url + "/orders/7").json()["path"] for _ in range(4)]
            assert paths == ["/a/7", "/a/7", "/b/7", "/a/7"]
            doc = httpx.get(f"http://127.0.0.1:{gw.admin_port}/backends").json()["backends"]
            members = doc["orders"]["pool"]
            assert list(members) == ["orders-a", "orders-b", "orders-spare"]
            assert members["orders-a"]["weight"] == 3 and members["orders-a"]["breaker"] == "closed"
            assert members["orders-spare"]["priority"] == 2 and doc["orders"]["healthy"]
        finally:
            gw.stop()
    finally:
        echo.stop()
