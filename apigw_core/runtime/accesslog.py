"""The JSON access log: one line per request, written off the request path.

Strategy.  A request only appends its record (a dict) to a list; a trio task wakes every
quarter second, takes the list, and hands it to a worker thread that encodes the lines
and writes them with one `write` per batch, so a slow disk never stalls the event loop
and a line is on disk well within a second.  While a write is under way new records
pile up in the list; the list is bounded (`buffer` records): past it records are
dropped and counted (`apigw_access_log_dropped_total`), never waited for.  `path: "-"`
is stdout.  What goes in a record is decided by the caller (runtime/telemetry.py), which
already left out keys and secrets.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, Callable, Optional

import trio

__all__ = ["AccessLog"]

log = logging.getLogger("apigw_core.runtime")

_INTERVAL = 0.25
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"),
                          check_circular=False).encode


class AccessLog:
    """Buffered JSON lines to `path` (see the module docstring)."""

    def __init__(self, path: str, limit: int,
                 on_drop: Optional[Callable[[int], None]] = None) -> None:
        self.path = path
        self.limit = limit
        self.on_drop = on_drop
        self.pending: list[dict[str, Any]] = []
        self.dropped = 0
        self.written = 0
        self._fd: Optional[int] = None

    def add(self, record: dict[str, Any]) -> None:
        """Queue one record (the request path: no I/O, no encoding)."""
        if len(self.pending) >= self.limit:
            self.dropped += 1
            if self.on_drop is not None:
                self.on_drop(1)
            return
        self.pending.append(record)

    def open(self) -> None:
        """Open the file now (a path that cannot be written fails the start)."""
        if self.path == "-":
            self._fd = sys.stdout.fileno()
        else:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def _write(self, batch: list[dict[str, Any]]) -> None:
        data = "".join([_dumps(r) + "\n" for r in batch]).encode("utf-8", "replace")
        fd = self._fd
        assert fd is not None
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        self.written += len(batch)

    async def run(self) -> None:
        """Write what piles up, until cancelled (then what is left, synchronously)."""
        try:
            while True:
                await trio.sleep(_INTERVAL)
                if self.pending:
                    batch, self.pending = self.pending, []
                    try:
                        await trio.to_thread.run_sync(self._write, batch)
                    except OSError as exc:
                        log.error("access log %s: %s (%d lines lost)", self.path, exc,
                                  len(batch))
        finally:
            self.close()

    def close(self) -> None:
        batch, self.pending = self.pending, []
        if self._fd is None:
            return
        try:
            if batch:
                self._write(batch)
        except OSError as exc:
            log.error("access log %s: %s", self.path, exc)
        if self.path != "-":
            os.close(self._fd)
        self._fd = None
