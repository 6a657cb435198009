"""`store: redis` through two running gateway processes sharing one real redis-server:
exact limits between them, the configured `on-store-failure` within the deadline while
Redis is stopped (SIGSTOP) or killed, one log line per change of state, and exact limits
again once Redis is back (the breaker probes and recovers on its own)."""

from __future__ import annotations

import itertools
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from pipeline_kit import echo, gateway  # noqa: F401  (fixtures)
from procs import start_gateway, write_config
from redis_proc import RedisProc, command
from support import wait_until

CALLS = 10
_ids = itertools.count()


def fresh(prefix: str) -> dict:
    """A counter key no earlier request used."""
    return {"x-client": f"{prefix}-{next(_ids)}-{time.time_ns()}"}


@pytest.fixture(scope="module")
def redis():
    r = RedisProc()
    yield r
    r.stop()


def _limit(mode: str, **more) -> dict:
    return {"rate-limit-by-key": {"calls": CALLS, "renewal-period": 300,
                                  "counter-key": "{request.headers.x-client}",
                                  "store": "redis", "on-store-failure": mode, **more}}


@pytest.fixture(scope="module")
def gws(tmp_path_factory, echo, redis):  # noqa: F811
    e = f"http://127.0.0.1:{echo.port}"
    cfg = {
        "listeners": [{"bind": "127.0.0.1:0"}],
        "backends": {"echo": {"url": e, "timeout": "5s"}},
        # 500 ms, not the 50 ms default: this machine is shared and loaded, and a decision
        # that misses its deadline is (rightly) a store failure, which would spoil the
        # exact counts; the outage checks still see each request end in well under 2 s
        "redis": {"url": redis.url, "timeout": "500ms"},
        "apis": [
            {"name": "deny", "path": "/deny", "backend": "echo",
             "policies": {"inbound": [_limit("deny")]}},
            {"name": "allow", "path": "/allow", "backend": "echo",
             "policies": {"inbound": [_limit("allow")]}},
            {"name": "local", "path": "/local", "backend": "echo",
             "policies": {"inbound": [_limit("local")]}},
            {"name": "quota", "path": "/quota", "backend": "echo",
             "policies": {"inbound": [{"quota-by-key": {
                 "calls": 5, "renewal-period": 3600, "store": "redis",
                 "counter-key": "{request.headers.x-client}"}}]}},
        ],
    }
    ps = [gateway(tmp_path_factory, cfg), gateway(tmp_path_factory, cfg)]
    yield ps
    for p in ps:
        p.stop()


def _get(url: str, headers: dict) -> tuple[int, float, httpx.Response]:
    t0 = time.monotonic()
    r = httpx.get(url, headers=headers, timeout=20)
    return r.status_code, time.monotonic() - t0, r


def hammer(gws, path: str, headers: dict, n: int) -> list[tuple[int, float, httpx.Response]]:
    """n concurrent requests, spread over both gateways."""
    urls = [gws[i % 2].url + path for i in range(n)]
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda u: _get(u, headers), urls))


def exact(gws, path: str = "/deny") -> None:
    who = fresh("exact")
    got = [s for s, _, _ in hammer(gws, path, who, 3 * CALLS)]
    assert got.count(200) == CALLS and got.count(429) == 2 * CALLS, got


def test_two_gateways_admit_exactly_the_limit_between_them(gws):
    exact(gws)
    who = fresh("seq")
    statuses = [httpx.get(gws[i % 2].url + "/allow", headers=who).status_code
                for i in range(CALLS + 3)]
    assert statuses == [200] * CALLS + [429] * 3
    r = httpx.get(gws[0].url + "/allow", headers=who)
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 30
    assert r.json()["message"].startswith("Rate limit is exceeded. Try again in ")


def test_quota_shared_between_gateways(gws):
    who = fresh("quota")
    got = [s for s, _, _ in hammer(gws, "/quota", who, 12)]
    assert got.count(200) == 5 and got.count(403) == 7, got


def _outage_checks(gws) -> None:
    """While Redis cannot answer: each mode, within the deadline (never a stall)."""
    for _ in range(2):   # the first calls time out (0.5 s), later ones fail fast
        for p in gws:
            s, took, r = _get(p.url + "/deny", fresh("down"))
            assert s == 503 and r.json()["message"] == "Rate limit store unavailable"
            assert r.headers["retry-after"] == "1"
            assert took < 2.0   # generous: the deadline is 0.5 s; a stall would be more
            s, took, _ = _get(p.url + "/allow", fresh("down"))
            assert s == 200 and took < 2.0
    # local: this gateway's own table decides (exact for one gateway)
    who = fresh("local")
    statuses = [_get(gws[0].url + "/local", who)[0] for _ in range(CALLS + 2)]
    assert statuses == [200] * CALLS + [429] * 2


def _recovered(gws) -> None:
    def both_up() -> bool:
        return all(_get(p.url + "/deny", fresh("probe"))[0] == 200 for p in gws)
    wait_until(both_up, message="both gateways use redis again")
    exact(gws)


def _lines(p, text: str) -> int:
    return sum(text in line for line in p.output)


def test_redis_stopped_then_resumed(gws, redis):
    before = [(_lines(p, "is unavailable"), _lines(p, "available again")) for p in gws]
    redis.pause()
    try:
        _outage_checks(gws)
    finally:
        redis.resume()
    _recovered(gws)
    for p, (down, up) in zip(gws, before):   # one line each way, not one per request
        assert (_lines(p, "is unavailable"), _lines(p, "available again")) == (down + 1, up + 1)


def test_redis_killed_then_started_again(gws, redis):
    redis.kill()
    try:
        _outage_checks(gws)
    finally:
        redis.start()   # same port, empty (no persistence)
    _recovered(gws)


def test_a_reload_that_changes_redis_swaps_the_store(tmp_path, echo, redis):  # noqa: F811
    other = RedisProc()
    try:
        def cfg(url: str) -> dict:
            return {"listeners": [{"bind": "127.0.0.1:0"}], "admin": {"bind": "127.0.0.1:0"},
                    "backends": {"echo": {"url": f"http://127.0.0.1:{echo.port}"}},
                    "redis": {"url": url, "timeout": "500ms"},
                    "apis": [{"name": "a", "path": "", "backend": "echo",
                              "policies": {"inbound": [_limit("deny")]}}]}
        p = start_gateway(tmp_path, cfg(redis.url))
        try:
            assert httpx.get(p.url + "/", headers={"x-client": "swap-1"}).status_code == 200
            write_config(tmp_path, cfg(other.url))
            r = httpx.post(f"http://127.0.0.1:{p.admin_port}/reload", timeout=30)
            assert r.status_code == 200, r.text
            assert httpx.get(p.url + "/", headers={"x-client": "swap-2"}).status_code == 200
            keys_old = command(redis.port, b"KEYS *swap-*\r\n")
            keys_new = command(other.port, b"KEYS *swap-*\r\n")
            assert b"swap-1" in keys_old and b"swap-2" not in keys_old
            assert b"swap-2" in keys_new and b"swap-1" not in keys_new
        finally:
            p.stop()
    finally:
        other.stop()
