"""The top-level `rate-limits:` section: defaults, values, and errors with their paths."""

from __future__ import annotations

import pytest

from apigw_core.gateway.config import ConfigError, parse_config

BASE = {"listeners": [{"bind": "127.0.0.1:0"}]}


def test_defaults_and_values():
    assert (parse_config(BASE).rate_limits.store,
            parse_config(BASE).rate_limits.on_store_failure) == ("local", "allow")
    c = parse_config({**BASE, "rate-limits": {"store": "redis", "on-store-failure": "deny"},
                      "redis": {}})   # store: redis needs a redis: section (branch redis)
    assert (c.rate_limits.store, c.rate_limits.on_store_failure) == ("redis", "deny")


@pytest.mark.parametrize("section,message", [
    ({"store": "memcached"}, "rate-limits.store: expected one of local, redis, got 'memcached'"),
    ({"on-store-failure": "retry"}, "rate-limits.on-store-failure: expected one of allow, "
                                    "deny, local, got 'retry'"),
    ({"stor": "local"}, "rate-limits.stor: unknown key"),
])
def test_errors_name_the_field(section, message):
    with pytest.raises(ConfigError) as e:
        parse_config({**BASE, "rate-limits": section})
    assert any(err.startswith(message) for err in e.value.errors), e.value.errors
