"""The Redis client (apigw_core/runtime/redis.py) against a real redis-server started here:
commands and replies, pipelining, the pool, EVALSHA/NOSCRIPT, the deadline against a
SIGSTOPped server, reconnecting after a restart, the breaker, and Sentinel discovery."""

from __future__ import annotations

import logging
import time

import pytest
import trio

from apigw_core.runtime.redis import (RedisClient, RedisError, RedisUnavailable, Script,
                                      parse_redis_url)
from redis_proc import RedisProc, SentinelProc, free_port


@pytest.fixture
def redis():
    r = RedisProc()
    yield r
    r.stop()


def run(fn, *args):
    return trio.run(fn, *args)


def test_url_parsing():
    a = parse_redis_url("redis://:s3cr%40t@10.0.0.1:6380/2")
    assert (a.host, a.port, a.db, a.username, a.password) == ("10.0.0.1", 6380, 2, None, "s3cr@t")
    assert parse_redis_url("redis://localhost").port == 6379
    for bad, why in [("http://x", "scheme"), ("rediss://x", "TLS"), ("redis://x/db", "database"),
                     ("redis:///0", "no host"), ("redis://x:99999/0", "port")]:
        with pytest.raises(ValueError, match=why):
            parse_redis_url(bad)


def test_commands_and_replies(redis):
    async def main():
        c = RedisClient(redis.url, timeout=5)
        assert await c.execute("SET", "k", b"v\r\n1") == b"OK"
        assert await c.execute("GET", "k") == b"v\r\n1"
        assert await c.execute("INCRBY", "n", 5) == 5
        assert await c.execute("GET", "missing") is None
        assert await c.execute("MGET", "k", "missing") == [b"v\r\n1", None]
        with pytest.raises(RedisError, match="WRONGTYPE"):
            await c.execute("LPUSH", "k", "x")
        assert c.state == "up" and c.failures == 0   # an error reply is not an outage
        c.close()
    run(main)


def test_pipeline_is_one_round_trip_with_replies_in_order(redis):
    async def main():
        c = RedisClient(redis.url, pool=2, timeout=5)
        cmds = [("INCR", "p")] * 200 + [("GET", "p"), ("HGET", "p", "x")]
        replies = await c.pipeline(cmds)
        assert replies[:200] == list(range(1, 201)) and replies[200] == b"200"
        assert isinstance(replies[201], RedisError)
        # the connection is whole again: the next call reads its own reply
        assert await c.execute("GET", "p") == b"200"
        before = await c.execute("INFO", "stats")
        n0 = _stat(before, "total_commands_processed")
        await c.pipeline([("PING",)] * 10)
        n1 = _stat(await c.execute("INFO", "stats"), "total_commands_processed")
        assert n1 - n0 == 11   # 10 PINGs + the first INFO, and no extra command
    run(main)


def _stat(info: bytes, name: str) -> int:
    for line in info.decode().splitlines():
        if line.startswith(name + ":"):
            return int(line.split(":")[1])
    raise KeyError(name)


def test_pool_shares_connections_and_is_capped(redis):
    async def main():
        c = RedisClient(redis.url, pool=3, timeout=5)
        async with trio.open_nursery() as n:
            for i in range(50):
                n.start_soon(c.execute, "INCR", "shared")
        assert await c.execute("GET", "shared") == b"50"
        clients = (await c.execute("CLIENT", "LIST")).decode().splitlines()
        assert 1 <= len(clients) <= 3
        assert len(c._idle) == len(clients)
        c.close()
        assert c._idle == []
        assert await c.execute("PING") == b"PONG"   # a late call: its own connection,
        assert c._idle == []                        # closed when it is done
    run(main)


def test_script_evalsha_with_noscript_fallback(redis):
    async def main():
        c = RedisClient(redis.url, timeout=5)
        s = Script("return {KEYS[1], tonumber(ARGV[1]) + 1}")
        assert await c.run_script(s, ["a"], [41]) == [b"a", 42]     # EVALSHA, NOSCRIPT, EVAL
        assert await c.execute("SCRIPT", "EXISTS", s.sha) == [1]
        assert await c.run_script(s, ["b"], [1]) == [b"b", 2]       # EVALSHA only
        await c.execute("SCRIPT", "FLUSH")
        assert await c.run_script(s, ["c"], [2]) == [b"c", 3]       # loaded again
        with pytest.raises(RedisError, match="boom"):
            await c.run_script(Script("return redis.error_reply('boom')"), [], [])
    run(main)


def test_deadline_against_a_stopped_server(redis):
    async def main():
        c = RedisClient(redis.url, timeout=0.05, threshold=1000)
        assert await c.execute("PING") == b"PONG"
        redis.pause()
        try:
            for fresh in (False, True):   # a pooled connection, then a new dial
                t0 = time.monotonic()
                with pytest.raises(RedisUnavailable, match="timed out"):
                    await c.execute("PING")
                # generous bound: the point is "about the deadline", never seconds
                assert time.monotonic() - t0 < 1.0
        finally:
            redis.resume()
        assert await c.execute("PING") == b"PONG"
        assert c.failures == 2
    run(main)


def test_reconnect_after_restart(redis):
    async def main():
        c = RedisClient(redis.url, timeout=1)
        await c.execute("SET", "x", 1)
        assert len(c._idle) == 1
        redis.restart()   # same port; the pooled connection is dead
        # the stale connection is noticed before any reply: retried on a new one
        assert await c.execute("GET", "x") is None
        assert c.failures == 0
    run(main)


def test_breaker_fails_fast_then_probes_and_recovers(redis, caplog):
    caplog.set_level(logging.WARNING, "apigw_core.runtime")

    async def main():
        c = RedisClient(redis.url, timeout=0.05, threshold=3, cool_down=(0.2, 0.4))
        await c.execute("PING")
        redis.kill()
        for _ in range(3):
            with pytest.raises(RedisUnavailable):
                await c.execute("PING")
        assert c.state == "down"
        dials = []
        real = c._dial

        async def counting_dial():
            dials.append(1)
            return await real()
        c._dial = counting_dial
        for _ in range(100):   # fail fast: not one dial while it cools down
            with pytest.raises(RedisUnavailable, match="failing fast"):
                await c.execute("PING")
        assert dials == []
        await trio.sleep(0.25)
        with pytest.raises(RedisUnavailable):   # the probe dials, and fails
            await c.execute("PING")
        assert dials == [1] and c.state == "down"
        redis.start()
        while True:   # polls: the probe after the next cool-down succeeds
            try:
                assert await c.execute("PING") == b"PONG"
                break
            except RedisUnavailable:
                await trio.sleep(0.02)
        assert c.state == "up"
        assert c.failures >= 104
    run(main)
    lines = [r.getMessage() for r in caplog.records if "redis" in r.getMessage()]
    assert len(lines) == 2, lines   # one per change of state, not one per failed call
    assert "unavailable" in lines[0] and "available again" in lines[1]


def test_refused_connection_fails_at_once():
    async def main():
        c = RedisClient(f"redis://127.0.0.1:{free_port()}/0", timeout=5)
        t0 = time.monotonic()
        with pytest.raises(RedisUnavailable, match="refused"):
            await c.execute("PING")
        assert time.monotonic() - t0 < 2.5   # refused, not the 5 s deadline
    run(main)


def test_select_and_auth_on_connect(redis):
    async def main():
        admin = RedisClient(redis.url, timeout=5)
        await admin.execute("CONFIG", "SET", "requirepass", "pw")
        await admin.execute("AUTH", "pw")
        bad = RedisClient(f"redis://:nope@127.0.0.1:{redis.port}/0", threshold=100, timeout=5)
        with pytest.raises(RedisUnavailable, match="refused the connection"):
            await bad.execute("PING")
        c = RedisClient(f"redis://:pw@127.0.0.1:{redis.port}/3", timeout=5)
        await c.execute("SET", "in3", 1)
        assert await admin.execute("EXISTS", "in3") == 0
        assert await admin.pipeline([("SELECT", 3), ("EXISTS", "in3")]) == [b"OK", 1]
    run(main)


def test_sentinel_resolves_the_master(redis, tmp_path):
    s = SentinelProc(tmp_path, redis)
    try:
        async def main():
            c = RedisClient("redis://ignored:1/0", sentinels=[("127.0.0.1", free_port()),
                                                              ("127.0.0.1", s.port)],
                            master="mymaster", timeout=2)
            assert await c.execute("SET", "via-sentinel", 1) == b"OK"
            assert c._target == ("127.0.0.1", redis.port)
            direct = RedisClient(redis.url, timeout=5)
            assert await direct.execute("GET", "via-sentinel") == b"1"
            other = RedisClient("redis://ignored:1/0", sentinels=[("127.0.0.1", s.port)],
                                master="nosuch", timeout=2)
            with pytest.raises(RedisUnavailable, match="does not know master"):
                await other.execute("PING")
        run(main)
    finally:
        s.stop()


def test_a_cancelled_probe_lets_the_next_call_probe(redis):
    async def main():
        c = RedisClient(redis.url, timeout=5, threshold=1, cool_down=(0.01, 0.01))
        redis.pause()
        try:
            with pytest.raises(RedisUnavailable):
                with trio.fail_after(5):   # the deadline of this one call: 0.2 s
                    c.timeout = 0.2
                    await c.execute("PING")
            assert c.state == "down"
            await trio.sleep(0.02)
            c.timeout = 5
            with trio.move_on_after(0.1):   # the probe's caller gives up (client gone)
                await c.execute("PING")
            assert c.state == "down"        # not stuck "probing" for ever
        finally:
            redis.resume()
        assert await c.execute("PING") == b"PONG" and c.state == "up"
    run(main)
