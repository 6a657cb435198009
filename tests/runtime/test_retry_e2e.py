"""The retry policy through a running gateway (issue 12): attempts counted by a backend
the test controls (500 N times then 200, connections closed unanswered), waits in real
time (lower bounds only), a body replayed only when buffered, and the retry budget
capping retries under concurrency."""

from __future__ import annotations

import concurrent.futures
import re

import httpx
import pytest

from pipeline_kit import gateway   # noqa: F401
from retry_backend import RetryBackend
from support import wait_until


def _retry(**attrs) -> dict:
    body = {"condition": "response.status >= 500", "count": 2, "interval": 0,
            "policies": ["forward-request"]}
    body.update(attrs)
    return {"retry": body}


@pytest.fixture(scope="module")
def backend():
    b = RetryBackend()
    yield b
    b.close()


@pytest.fixture(scope="module")
def nokeep():
    b = RetryBackend(keepalive=False)
    yield b
    b.close()


@pytest.fixture(scope="module")
def gw(tmp_path_factory, backend, nokeep):
    def api(name, *backend_policies, to="b"):
        return {"name": name, "path": f"/{name}", "backend": to,
                "policies": {"backend": list(backend_policies)}}
    cfg = {
        "listeners": [{"bind": "127.0.0.1:0"}],
        "backends": {"b": {"url": backend.url, "timeout": "10s"},
                     "nokeep": {"url": nokeep.url, "timeout": "10s"},
                     "tight": {"url": backend.url, "timeout": "10s",
                               "retry-budget": {"percent": 0, "min-concurrency": 2}},
                     # a pool whose heavy member always fails: a retry must go to the other
                     "bad": {"url": backend.url + "/always/500", "timeout": "10s"},
                     "good": {"url": backend.url + "/fail/0", "timeout": "10s"},
                     "pool": {"pool": [{"backend": "bad", "weight": 100},
                                       {"backend": "good", "weight": 1}]}},
        "apis": [
            api("plain", _retry()),
            api("closing", _retry(), to="nokeep"),
            api("fixed", _retry(interval="200ms", count=3)),
            api("linear", _retry(interval="100ms", delta="150ms", count=3)),
            api("streamed", _retry()),
            api("buffered", _retry(policies=[{"forward-request": {
                "buffer-request-body": True}}])),
            api("budget", _retry(count=1), to="tight"),
            api("pooled", _retry(count=1), to="pool"),
        ],
    }
    p = gateway(tmp_path_factory, cfg)
    yield p
    p.stop()


def test_500_twice_then_200_is_answered_200_after_three_attempts(gw, backend):
    r = httpx.get(f"{gw.url}/plain/fail/2/a1", timeout=30)
    assert r.status_code == 200 and r.text == "attempt 3"
    assert backend.count("a1") == 3


def test_count_caps_attempts_and_the_last_answer_stands(gw, backend):
    r = httpx.get(f"{gw.url}/plain/always/503/a2", timeout=30)
    assert r.status_code == 503 and r.text == "attempt 3"
    assert backend.count("a2") == 3        # the request and count: 2 retries


def test_no_retry_on_a_good_answer(gw, backend):
    r = httpx.get(f"{gw.url}/plain/always/404/a3", timeout=30)
    assert r.status_code == 404 and backend.count("a3") == 1


def test_connection_failures_are_retried(gw, nokeep):
    r = httpx.get(f"{gw.url}/closing/close/2/a4", timeout=30)
    assert r.status_code == 200 and r.text == "attempt 3"
    assert nokeep.count("a4") == 3
    r = httpx.get(f"{gw.url}/closing/close/9/a5", timeout=30)
    assert r.status_code == 502                     # still failing after the retries
    assert nokeep.count("a5") == 3


def test_fixed_interval_waits_in_real_time(gw, backend):
    r = httpx.get(f"{gw.url}/fixed/fail/3/w1", timeout=30)
    assert r.status_code == 200
    t = backend.times("w1")
    assert len(t) == 4
    gaps = [b - a for a, b in zip(t, t[1:])]
    assert all(g >= 0.2 for g in gaps), gaps        # lower bounds only


def test_linear_interval_waits_grow(gw, backend):
    r = httpx.get(f"{gw.url}/linear/fail/3/w2", timeout=30)
    assert r.status_code == 200
    t = backend.times("w2")
    gaps = [b - a for a, b in zip(t, t[1:])]
    assert len(gaps) == 3
    for gap, least in zip(gaps, (0.1, 0.25, 0.4)):   # interval + (n-1)*delta
        assert gap >= least, gaps


def test_a_streamed_body_is_not_retried(gw, backend):
    def chunks():
        yield b"part one, "
        yield b"part two"
    r = httpx.post(f"{gw.url}/streamed/fail/2/s1", content=chunks(), timeout=30)
    assert r.status_code == 500 and r.text == "attempt 1"   # the first answer stands
    assert backend.count("s1") == 1
    # a body sent whole with its head is not replayed either (not buffered)
    r = httpx.post(f"{gw.url}/streamed/fail/2/s2", content=b"whole", timeout=30)
    assert r.status_code == 500 and backend.count("s2") == 1
    assert "not retried" in "".join(gw.output) and "buffer-request-body is false" in \
        "".join(gw.output)


def test_a_buffered_body_is_replayed_whole(gw, backend):
    def chunks():
        yield b"part one, "
        yield b"part two"
    r = httpx.post(f"{gw.url}/buffered/fail/2/s3", content=chunks(), timeout=30)
    assert r.status_code == 200 and r.text == "attempt 3"
    assert backend.bodies["s3"] == [b"part one, part two"] * 3


def test_an_empty_body_is_retried(gw, backend):
    r = httpx.post(f"{gw.url}/streamed/fail/1/s4", timeout=30)
    assert r.status_code == 200 and backend.count("s4") == 2


def test_retry_budget_caps_concurrent_retries(gw, backend):
    n = 8     # 8 requests at once, all answered 500; the budget allows 2 retries at once
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(httpx.get, f"{gw.url}/budget/barrier/{n}/b1", timeout=60)
                   for _ in range(n)]
        # 6 are refused a retry and answered at once; 2 retries wait at the backend (a
        # retry may reach it after the 6 answers: wait for both, then hold it to 2)
        wait_until(lambda: sum(f.done() for f in futures) >= n - 2
                   and backend.count("b1") >= n + 2,
                   message="the requests over the budget answered, 2 retries arrived")
        assert backend.count("b1") == n + 2
        assert sum(f.done() for f in futures) == n - 2   # the 2 retried still wait
        backend.release.set()
        statuses = [f.result().status_code for f in futures]
    assert statuses == [500] * n
    assert backend.count("b1") == n + 2
    out = "".join(gw.output)
    assert re.search(r"retry budget of backend tight is spent", out), out[-2000:]


def test_a_retry_goes_to_another_pool_member(gw, backend):
    # weights 100:1 send nearly every first attempt to the failing member; with count 1,
    # only a retry that avoids the member already tried can answer 200
    for i in range(6):
        r = httpx.get(f"{gw.url}/pooled/p{i}", timeout=30)
        assert r.status_code == 200, (i, r.text)
    assert sum(backend.count(f"p{i}") for i in range(6)) >= 11   # at most one lucky first
