"""Config of issue 12 part 2: a backend's `retry-budget` and `server.client-abort`
(defaults, values, errors with their paths)."""

from __future__ import annotations

import pytest

from apigw_core.gateway.config import ConfigError, RetryBudgetConfig, parse_config


def _cfg(backend: dict | None = None, server: dict | None = None) -> dict:
    cfg = {"listeners": [{"bind": "127.0.0.1:0"}],
           "backends": {"b": {"url": "http://127.0.0.1:9", **(backend or {})}},
           "apis": [{"name": "a", "path": "/a", "backend": "b"}]}
    if server is not None:
        cfg["server"] = server
    return cfg


def _errors(cfg: dict) -> list[str]:
    with pytest.raises(ConfigError) as e:
        parse_config(cfg)
    return e.value.errors


def test_defaults_are_envoys_and_cancel():
    c = parse_config(_cfg())
    assert c.backends["b"].retry_budget == RetryBudgetConfig(20.0, 3)
    assert c.server.client_abort == "cancel"


def test_values():
    c = parse_config(_cfg({"retry-budget": {"percent": 50, "min-concurrency": 0}},
                          {"client-abort": "ignore"}))
    assert c.backends["b"].retry_budget == RetryBudgetConfig(50.0, 0)
    assert c.server.client_abort == "ignore"
    c = parse_config(_cfg({"retry-budget": {"percent": 12.5}}))
    assert c.backends["b"].retry_budget == RetryBudgetConfig(12.5, 3)


def test_errors_name_the_field():
    errs = _errors(_cfg({"retry-budget": {"percent": 101, "min-concurrency": "3",
                                          "max": 1}}, {"client-abort": "sometimes"}))
    joined = "\n".join(errs)
    assert "backends.b.retry-budget.percent:" in joined
    assert "backends.b.retry-budget.min-concurrency:" in joined
    assert "backends.b.retry-budget.max: unknown key" in joined
    assert "server.client-abort:" in joined and "cancel, ignore" in joined


def test_a_pool_takes_a_retry_budget():
    cfg = _cfg()
    cfg["backends"]["p"] = {"pool": [{"backend": "b"}],
                            "retry-budget": {"percent": 10, "min-concurrency": 1}}
    c = parse_config(cfg)
    assert c.backends["p"].retry_budget == RetryBudgetConfig(10.0, 1)
