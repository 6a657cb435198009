"""Startup failures that the operator must fix, reported in one line, not a traceback.

A port in use, an address that is not local, a TLS certificate that does not load: the
runtime raises `StartupError` (its message is one line naming what failed), and the
commands run their trio main through `run_reporting`, which prints `apigw: MESSAGE` and
returns exit status 1.  trio wraps whatever a task raises in an ExceptionGroup, which is
why a plain `except OSError` around `trio.run` never sees a port in use;
`startup_errors` digs them out.  Anything else in the group is a bug and keeps its
traceback.
"""

from __future__ import annotations

import sys
from typing import Any, Awaitable, Callable

import trio

__all__ = ["StartupError", "startup_errors", "run_reporting", "EXIT_STARTUP"]

EXIT_STARTUP = 1  # the exit status of a process that could not start


class StartupError(Exception):
    """The gateway (or the echo backend) cannot start, for a reason its operator must fix;
    the message is one line for them (`apigw` prints `apigw: MESSAGE` and exits 1)."""


def startup_errors(exc: BaseException) -> list[StartupError]:
    """The StartupErrors that `exc` is made of (trio nests what tasks raise in
    ExceptionGroups), or [] if anything else is in it: that one is a bug, for a
    traceback."""
    if isinstance(exc, StartupError):
        return [exc]
    inner = getattr(exc, "exceptions", None)  # a (Base)ExceptionGroup, 3.10's backport too
    if not inner:
        return []
    found: list[StartupError] = []
    for e in inner:
        errors = startup_errors(e)
        if not errors:
            return []
        found += [x for x in errors if str(x) not in map(str, found)]
    return found


def run_reporting(async_fn: Callable[..., Awaitable[Any]], *args: Any) -> int:
    """`trio.run(async_fn, *args)` as a process exit status: 0, or EXIT_STARTUP after
    printing each StartupError it failed with (once each) on stderr."""
    try:
        trio.run(async_fn, *args)
    except BaseException as exc:  # noqa: BLE001 - re-raised unless it is a StartupError
        errors = startup_errors(exc)
        if not errors:
            raise
        for e in errors:
            print(f"apigw: {e}", file=sys.stderr, flush=True)
        return EXIT_STARTUP
    return 0
