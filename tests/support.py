"""Helpers every test directory may import (tests/conftest.py puts tests/ and
tests/runtime/ on sys.path): polling instead of fixed sleeps, and skips for optional test
dependencies that are missing.

A test on a busy machine must never depend on how much happened in a given time: it waits
for the condition it needs (`wait_until`, with a generous timeout that only a real bug
exhausts) and asserts what must hold.  A missing optional dependency (a Python package of
the `test` extra, or a binary such as curl or h2load) skips the tests that need it, with a
reason, and nothing else: `lazy_module` defers the import to the first attribute use
inside a test, `need_binary` skips at the call site.
"""

from __future__ import annotations

import shutil
import time
from types import ModuleType
from typing import Any, Callable, Optional

import pytest

__all__ = ["WAIT", "wait_until", "lazy_module", "need_binary"]

WAIT = 30.0   # the default patience of a poll: far beyond any healthy run, even a loaded one


def wait_until(predicate: Callable[[], Any], timeout: float = WAIT, step: float = 0.01,
               message: Optional[str] = None) -> Any:
    """Poll `predicate` until it returns something truthy, and return that; fail the test
    (with `message`, or the predicate's name) once `timeout` seconds pass without it."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", "condition")
            pytest.fail(f"timed out after {timeout:g} s waiting for: {what}")
        time.sleep(step)


class _LazyModule:
    """A module imported at its first attribute access; skips the test if it is absent."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._mod: Optional[ModuleType] = None

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        if self._mod is None:
            self._mod = pytest.importorskip(
                self._name, reason=f"optional test dependency {self._name!r} is not installed")
        return getattr(self._mod, attr)


def lazy_module(name: str) -> Any:
    """`httpx = lazy_module("httpx")`: imported when a test first uses it; that test is
    skipped (not the module, not the session) if the package is not installed."""
    return _LazyModule(name)


def need_binary(name: str) -> str:
    """The path of executable `name`; skips the calling test if it is not on PATH."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path
