"""Where finished request traces are kept: `MemoryRing` (one process) or `DirRing`
(every worker of a `--workers N` gateway).

Strategy.  A trace is written once and read by id, rarely, so with workers the simplest
robust shared store is a directory: the supervisor makes a fresh temp directory before it
forks (`APIGW_TRACES_DIR`, like the metrics directory), each worker writes a trace as one
file `<id>.json` (written to a temp name, then renamed: a reader never sees half a
file), and any worker's `GET /traces/{id}` opens it.  Files outlive the worker that wrote
them (a restarted worker finds its predecessor's traces); the supervisor removes the
directory when it exits.  Bounded: at most `count` traces (after each write the oldest
beyond it are removed; two workers trimming at once only remove more), each at most
`MAX_BYTES` (larger documents lose their entries past the limit and say so).  Only
traced requests touch the directory.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import time
from typing import Any, Optional

__all__ = ["MemoryRing", "DirRing", "open_store", "ENV", "MAX_BYTES"]

log = logging.getLogger(__name__)
ENV = "APIGW_TRACES_DIR"
MAX_BYTES = 512 * 1024       # one trace document, JSON
_ID = re.compile(r"[0-9a-f]{32}")


def encode(doc: dict) -> bytes:
    """`doc` as JSON, its entries cut so that it fits in MAX_BYTES."""
    body = json.dumps(doc, default=str).encode()
    if len(body) <= MAX_BYTES:
        return body
    entries = doc.get("entries", [])
    doc = dict(doc, truncated=True, traceEntries={})
    lo, hi = 0, len(entries)
    while lo < hi:                  # the most entries that fit
        mid = (lo + hi + 1) // 2
        if len(json.dumps(dict(doc, entries=entries[:mid]), default=str).encode()) \
                <= MAX_BYTES:
            lo = mid
        else:
            hi = mid - 1
    return json.dumps(dict(doc, entries=entries[:lo]), default=str).encode()


class _Latest:
    def latest(self, n: int = 10) -> list[dict]:
        """The newest `n` documents, newest first (the admin page)."""
        out = []
        for tid in self.ids()[:n]:       # type: ignore[attr-defined]
            body = self.get(tid)         # type: ignore[attr-defined]
            if body is not None:
                out.append(json.loads(body))
        return out


class MemoryRing(_Latest):
    """The latest `count` traces of this process, as encoded JSON."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.docs: collections.OrderedDict[str, bytes] = collections.OrderedDict()

    def put(self, tid: str, doc: dict) -> None:
        self.docs[tid] = encode(doc)
        while len(self.docs) > self.count:
            self.docs.popitem(last=False)

    def get(self, tid: str) -> Optional[bytes]:
        return self.docs.get(tid)

    def ids(self) -> list[str]:
        """Newest first."""
        return list(reversed(self.docs))

    def __len__(self) -> int:
        return len(self.docs)


class DirRing(_Latest):
    """The latest `count` traces of every worker, one file each in `path`."""

    def __init__(self, path: str, count: int) -> None:
        self.path, self.count = path, count

    def put(self, tid: str, doc: dict) -> None:
        if not _ID.fullmatch(tid):
            raise ValueError(f"bad trace id {tid!r}")
        tmp = os.path.join(self.path, f".{tid}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(encode(doc))
            now = time.time_ns()      # file times are coarse (a jiffy): the order is ours
            os.utime(tmp, ns=(now, now))
            os.replace(tmp, os.path.join(self.path, f"{tid}.json"))
            self._trim()
        except FileNotFoundError:   # the directory is gone: the gateway is stopping
            return
        except OSError as e:        # a full disk must not fail the request
            log.warning("request trace %s not stored: %s", tid, e)

    def _files(self) -> list[tuple[int, str]]:
        found = []
        with os.scandir(self.path) as it:
            for e in it:
                if e.name.endswith(".json"):
                    try:
                        found.append((e.stat().st_mtime_ns, e.name))
                    except FileNotFoundError:
                        pass
        found.sort()
        return found

    def _trim(self) -> None:
        found = self._files()
        if len(found) <= self.count:
            return
        for _, name in found[:len(found) - self.count]:
            try:
                os.unlink(os.path.join(self.path, name))
            except FileNotFoundError:
                pass

    def get(self, tid: str) -> Optional[bytes]:
        if not _ID.fullmatch(tid):
            return None
        try:
            with open(os.path.join(self.path, f"{tid}.json"), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def ids(self) -> list[str]:
        """Newest first."""
        return [name[:-5] for _, name in reversed(self._files())]

    def __len__(self) -> int:
        return len(self._files())


def open_store(count: int) -> Any:
    """The directory the supervisor made (`APIGW_TRACES_DIR`), else this process's ring."""
    path = os.environ.get(ENV)
    if path and os.path.isdir(path):
        return DirRing(path, count)
    return MemoryRing(count)
