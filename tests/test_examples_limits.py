"""examples/rate-limits.yaml does what its header promises (tests/test_examples.py runs
and validates every example; this checks this one's behaviour)."""

from __future__ import annotations

import httpx

from test_examples import _echo_urls, _start, echo  # noqa: F401  (fixture)


def test_rate_limits_example(tmp_path, echo):  # noqa: F811
    p = _start("rate-limits.yaml", tmp_path, _echo_urls(echo))
    try:
        with httpx.Client(base_url=p.url, timeout=10) as c:
            rs = [c.get("/orders/1") for _ in range(4)]
            assert [r.status_code for r in rs] == [200, 200, 200, 429]
            assert [r.headers.get("x-ratelimit-remaining") for r in rs[:3]] == ["2", "1", "0"]
            retry = int(rs[3].headers["retry-after"])
            assert 1 <= retry <= 10
            assert rs[3].json() == {"statusCode": 429, "message": "Rate limit is exceeded. "
                                                                  f"Try again in {retry} seconds."}
            key = {"Ocp-Apim-Subscription-Key": "trial-key-1"}
            assert c.get("/trial/x", headers=key).status_code == 200
            assert c.get("/trial/x").status_code == 401
    finally:
        p.stop()
