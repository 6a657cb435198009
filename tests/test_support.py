"""The suite's own helpers (tests/support.py, tests/conftest.py, backends.Refused): a poll
that fails with its message, skips for missing dependencies, the one Hypothesis profile,
and a refused port that stays refused."""

from __future__ import annotations

import socket

import pytest
from hypothesis import HealthCheck, settings

from backends import Refused
from support import lazy_module, need_binary, wait_until


def test_wait_until_returns_the_value_or_fails_with_the_message():
    calls = []
    assert wait_until(lambda: calls.append(1) or (len(calls) >= 3 and "yes")) == "yes"
    with pytest.raises(pytest.fail.Exception, match="the moon is blue"):
        wait_until(lambda: False, timeout=0.05, message="the moon is blue")


def test_missing_dependencies_skip_the_test_that_needs_them():
    mod = lazy_module("no_such_module_for_apigw_tests")   # importing it is fine
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        mod.anything
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        need_binary("no-such-binary-for-apigw-tests")


def test_one_hypothesis_profile_is_loaded():
    assert settings.default.deadline is None
    assert HealthCheck.too_slow in settings.default.suppress_health_check
    assert settings.default.derandomize is False


def test_refused_port_refuses_and_cannot_be_taken():
    with Refused() as r:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", r.port), timeout=10)
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", r.port))
