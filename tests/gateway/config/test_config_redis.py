"""The top-level `redis:` section (gateway/config/_redis.py): defaults, every field, the
error paths, and `store: redis` without the section."""

from __future__ import annotations

import pickle

import pytest

from apigw_core.gateway.config import ConfigError, RedisConfig, json_schema, parse_config

BASE = {"listeners": [{"bind": "127.0.0.1:0"}],
        "backends": {"b": {"url": "http://127.0.0.1:9"}},
        "apis": [{"name": "a", "path": "", "backend": "b"}]}


def errors(extra: dict) -> list[str]:
    with pytest.raises(ConfigError) as e:
        parse_config({**BASE, **extra})
    return e.value.errors


def test_absent_and_defaults():
    assert parse_config(BASE).redis is None
    c = parse_config({**BASE, "redis": {}}).redis
    assert c == RedisConfig("redis://127.0.0.1:6379/0", 0.05, 8, (), None)


def test_every_field():
    c = parse_config({**BASE, "redis": {
        "url": "redis://user:p%40ss@10.0.0.5:6380/3", "timeout": "20ms", "pool": 4,
        "sentinels": ["10.0.0.1:26379", "[::1]:26380"], "master": "mymaster"}}).redis
    assert c == RedisConfig("redis://user:p%40ss@10.0.0.5:6380/3", 0.02, 4,
                            (("10.0.0.1", 26379), ("::1", 26380)), "mymaster")
    assert "p%40ss" not in repr(c) and "pass" not in repr(c)   # no password in logs
    assert pickle.loads(pickle.dumps(c)) == c and hash(c)


@pytest.mark.parametrize("redis, expected", [
    ({"url": "http://x:1/0"}, "redis.url: expected a redis://host:port/db URL, got scheme 'http'"),
    ({"url": "rediss://x:1/0"}, "redis.url: expected a redis://host:port/db URL, got scheme "
                                "'rediss' (TLS to Redis is not supported yet)"),
    ({"url": "redis://x:1/zero"}, "redis.url: the database is a number (redis://host:port/0), "
                                  "got 'zero'"),
    ({"url": 5}, "redis.url: expected string, got int"),
    ({"timeout": 0}, "redis.timeout: expected a duration > 0"),
    ({"timeout": "soon"}, "redis.timeout: invalid duration 'soon' (e.g. 30, 2.5, '30s', "
                          "'500ms', '1m30s')"),
    ({"pool": 0}, "redis.pool: expected 1..1024, got 0"),
    ({"sentinels": ["nope"]}, "redis.sentinels[0]: expected 'host:port' (IPv6 as '[::1]:8080'), "
                              "got 'nope'"),
    ({"sentinels": ["h:1"]}, "redis.master: sentinels need the master's name (master: NAME)"),
    ({"master": "m"}, "redis.sentinels: master names a Sentinel master: give the sentinels too"),
    ({"cluster": True}, "redis.cluster: unknown key"),
])
def test_error_paths(redis, expected):
    got = errors({"redis": redis})
    assert len(got) == 1 and got[0].startswith(expected), got


def test_store_redis_needs_the_section():
    rl = {"rate-limit-by-key": {"calls": 1, "renewal-period": 1, "counter-key": "k",
                                "store": "redis"}}
    got = errors({"rate-limits": {"store": "redis"},
                  "apis": [{"name": "a", "path": "", "backend": "b",
                            "policies": {"inbound": [rl]}}]})
    msg = "store: redis needs the top-level redis: section"
    assert got == [f"rate-limits.store: {msg} (redis: {{url: redis://host:port/0}})",
                   f"apis[0].policies.inbound[0].rate-limit-by-key.store: {msg} "
                   "(redis: {url: redis://host:port/0})"]
    ok = parse_config({**BASE, "redis": {}, "rate-limits": {"store": "redis"},
                       "apis": [{"name": "a", "path": "", "backend": "b",
                                 "policies": {"inbound": [rl]}}]})
    assert ok.redis is not None


def test_json_schema_lists_the_section():
    props = json_schema()["$defs"]["Redis"]["properties"]
    assert set(props) == {"url", "timeout", "pool", "sentinels", "master"}
