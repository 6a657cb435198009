"""Token buckets, fixed-window counters and semaphores shared by every worker process.

The one Python wrapper of native/src/buckets.c (``apigw_bk_*`` in the ``_native``
extension); when the extension is not built, or ``APIGW_CORE_PUREPYTHON=1``, the
pure-Python twin ``apigw_core._purepy.buckets`` does the same work on the same memory
layout with the same integer maths (identical results, slower).

Memory.  A ``BucketTable`` is a file in /dev/shm (the temp dir elsewhere) mapped shared:
a 64-byte header (magic, version, slot count, probe window, hash seed) then ``slots``
64-byte slots (one cache line each).  The supervisor creates it before it forks the
workers and each worker attaches by name, so every process draws from the same buckets
with no server.  A key is hashed twice with the table's random seed: one 64-bit hash
picks its home slot, the other is the fingerprint stored in the slot, so two keys that
share a home never share a bucket (the second probes on, up to 16 slots).  Each kind
(bucket, counter, semaphore) hashes in its own namespace.

Concurrency (C).  Each slot has a lock word taken by compare-and-swap (it holds the
holder's pid; a waiter that finds the holder dead takes it over), held for a few dozen
instructions with no system call; a key's first claim also takes the claim word of its
home slot, so two processes claiming the same new key cannot put it in two slots, and
claim words are never taken while a slot lock is held (no deadlock).  The twin instead
serialises whole calls with an flock on the table file (see its module docstring).

Eviction.  A full probe window evicts, among its slots that are idle at the caller's
``now``, the one idle longest: a token bucket that has refilled to full (age: its last
update), a counter whose window has ended (age: its window start; period 0 never
ends), a semaphore at zero.  A live slot is never overwritten; when there is no idle one
the call raises ``BucketTableFull``.  ``refund``, ``peek`` and ``release`` never claim.

Token bucket (APIM v2 rate-limit).  A new bucket is full at ``calls`` tokens and refills
continuously at ``calls / period``, kept exactly in integer token-nanoseconds (one token
= ``period_ns`` credits; each nanosecond adds ``calls`` credits; capped at
``calls * period_ns``), so there is no rounding drift and ``wait_ns`` is exact: a take
of ``n`` refused with ``wait_ns = w`` is refused at ``now + w - 1`` and allowed at
``now + w`` (if nothing else took meanwhile).  Worst case: a burst of at most ``calls``,
then never faster than the refill rate; so any window of ``period`` admits at most
``2 * calls - 1`` (the full bucket, plus less than one period of refill), and never the
``2 x calls`` a fixed window lets through at its boundary.  A refused take takes nothing
(no lock-out: a client over the limit recovers at the refill rate).  ``n > calls`` can
never pass: refused with ``wait_ns == -1``.  An allowed take reports ``wait_ns == 0``.
Changing ``calls``/``period`` for a live key keeps its whole tokens (clamped).

Counter (quota).  Windows of ``period_ns`` aligned on ``start_ns`` (period 0: one window
forever); a count is allowed when ``used + n <= limit`` and then added; ``force`` adds it
even when not allowed (bandwidth counted after the response).  Semaphore: ``acquire``
succeeds below ``max_count``; ``release`` never goes below zero.

Ranges: times within +-2**61 ns, ``calls * period_ns <= 2**62``, counts within 0..2**62;
outside them ``ValueError``.  Time is always passed in (monotonic ns).
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import tempfile
import threading
import mmap
from typing import Any

from ._purepy import buckets as _py
from ._purepy.buckets import BucketTableFull

__all__ = ["BucketTable", "BucketTableFull", "native_available", "SHM_DIR"]

SHM_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}\Z")

_ffi: Any = None
_lib: Any = None
if os.environ.get("APIGW_CORE_PUREPYTHON", "") in ("", "0"):
    try:
        from ._native import ffi as _ffi, lib as _lib  # type: ignore[import-not-found]
    except ImportError:  # apigw_core.native warns about it once
        pass
native_available: bool = _lib is not None and hasattr(_lib, "apigw_bk_take")


def _path(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"bad bucket table name {name!r} (letters, digits, . _ -)")
    return os.path.join(SHM_DIR, name)


class BucketTable:
    """A shared table of token buckets, counters and semaphores (see the module doc).

    ``create=True`` makes a new zeroed table (``name=None``: a fresh private name) and
    fails if the name exists; ``create=False`` attaches to an existing one by name.
    ``native=None`` picks C when available, ``True`` requires it, ``False`` forces the
    twin."""

    def __init__(self, slots: int = 65536, *, name: str | None = None, create: bool = True,
                 native: bool | None = None, seed: int | None = None) -> None:
        if native is None:
            native = native_available
        elif native and not native_available:
            raise RuntimeError("the C bucket table is not available (extension not built)")
        self.native = native
        if name is None:
            if not create:
                raise ValueError("attaching (create=False) needs the table's name")
            name = f"apigw-buckets-{os.getpid()}-{secrets.token_hex(6)}"
        self.name = name
        path = _path(name)
        if create:
            if not 1 <= slots <= 1 << 32:
                raise ValueError("slots must be in 1 .. 2**32")
            size = _py.table_bytes(slots)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.ftruncate(fd, size)  # zero-filled
                mm = mmap.mmap(fd, size)
                _py.Table.init(mm, slots, secrets.randbits(64) if seed is None else seed)
            except BaseException:
                os.close(fd)
                os.unlink(path)
                raise
        else:
            fd = os.open(path, os.O_RDWR)
            try:
                mm = mmap.mmap(fd, os.fstat(fd).st_size)
            except BaseException:
                os.close(fd)
                raise
        self._fd, self._mm = fd, mm
        try:
            self._py = _py.Table(mm)  # validates the header
        except ValueError:
            self.close()
            raise
        self.slots = self._py.slots
        self._lock = threading.Lock()
        self._tls = threading.local()
        self._c = _ffi.from_buffer(mm) if native else None

    # -- lifetime ------------------------------------------------------------------
    def close(self) -> None:
        """Unmaps this process's view (the table lives on until unlinked)."""
        if self._mm is None:
            return
        if getattr(self, "_py", None) is not None:
            self._py.detach()
        if getattr(self, "_c", None) is not None:
            _ffi.release(self._c)
            self._c = None
        self._mm.close()
        os.close(self._fd)
        self._mm = None

    def unlink(self) -> None:
        """Removes the name (mapped views keep working until closed)."""
        try:
            os.unlink(_path(self.name))
        except FileNotFoundError:
            pass

    def __enter__(self) -> "BucketTable":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        impl = "C" if self.native else "twin"
        return f"<BucketTable {self.name} slots={self.slots} {impl}>"

    # -- the twin's serialisation ---------------------------------------------------------
    def _twin(self, op: str, *args: Any) -> Any:
        if self._mm is None:
            raise ValueError("bucket table is closed")
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                return getattr(self._py, op)(*args)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _out(self) -> Any:
        try:
            return self._tls.out
        except AttributeError:
            out = self._tls.out = _ffi.new("int64_t[3]")
            return out

    def _fail(self, rc: int) -> None:
        if self._c is None:
            raise ValueError("bucket table is closed")
        if rc == _py.E_FULL:
            raise BucketTableFull("bucket table full: no idle slot in the probe window")
        raise ValueError("bucket arguments out of range (see apigw_core.buckets)")

    # -- token bucket -------------------------------------------------------------------
    def take(self, key: bytes, calls: int, period_ns: int, n: int, now_ns: int
             ) -> tuple[bool, int, int]:
        """Takes ``n`` tokens if there are: (allowed, remaining, wait_ns until ``n``
        would pass; 0 when allowed, -1 when ``n > calls``)."""
        if self._c is not None:
            out = self._out()
            rc = _lib.apigw_bk_take(self._c, key, len(key), calls, period_ns, n, now_ns, out)
            if rc < 0:
                self._fail(rc)
            return out[0] != 0, out[1], out[2]
        _py.check_bucket(calls, period_ns)
        _py.check_time(now_ns)
        _py.check_count(n)
        return self._twin("take", bytes(key), calls, period_ns, n, now_ns)

    def refund(self, key: bytes, calls: int, period_ns: int, n: int, now_ns: int) -> None:
        """Gives ``n`` tokens back (capped at ``calls``); no-op for an unknown key."""
        if self._c is not None:
            rc = _lib.apigw_bk_refund(self._c, key, len(key), calls, period_ns, n, now_ns)
            if rc < 0:
                self._fail(rc)
            return
        _py.check_bucket(calls, period_ns)
        _py.check_time(now_ns)
        _py.check_count(n)
        self._twin("refund", bytes(key), calls, period_ns, n, now_ns)

    def peek(self, key: bytes, calls: int, period_ns: int, now_ns: int) -> tuple[int, int]:
        """(remaining, wait_ns until one token) without taking; an unknown key is full."""
        if self._c is not None:
            out = self._out()
            rc = _lib.apigw_bk_peek(self._c, key, len(key), calls, period_ns, now_ns, out)
            if rc < 0:
                self._fail(rc)
            return out[1], out[2]
        _py.check_bucket(calls, period_ns)
        _py.check_time(now_ns)
        return self._twin("peek", bytes(key), calls, period_ns, now_ns)

    # -- fixed window counter ------------------------------------------------------------
    def count(self, key: bytes, limit: int, period_ns: int, start_ns: int, n: int,
              now_ns: int, force: bool = False) -> tuple[bool, int, int]:
        """Counts ``n`` in the current window: (allowed, remaining, ns until the window
        renews; 0 if it never does)."""
        if self._c is not None:
            out = self._out()
            rc = _lib.apigw_bk_count(self._c, key, len(key), limit, period_ns, start_ns, n,
                                     now_ns, 1 if force else 0, out)
            if rc < 0:
                self._fail(rc)
            return out[0] != 0, out[1], out[2]
        _py.check_count(n, limit)
        _py.check_time(now_ns, start_ns, period_ns)
        if period_ns < 0:
            raise ValueError("period_ns must be >= 0")
        return self._twin("count", bytes(key), limit, period_ns, start_ns, n, now_ns,
                          bool(force))

    # -- semaphore --------------------------------------------------------------------
    def acquire(self, key: bytes, max_count: int) -> bool:
        """One more holder if fewer than ``max_count`` hold it."""
        if self._c is not None:
            rc = _lib.apigw_bk_acquire(self._c, key, len(key), max_count)
            if rc < 0:
                self._fail(rc)
            return rc == 1
        _py.check_count(max_count)
        return self._twin("acquire", bytes(key), max_count)

    def release(self, key: bytes) -> None:
        """One holder fewer (never below zero; no-op for an unknown key)."""
        if self._c is not None:
            rc = _lib.apigw_bk_release(self._c, key, len(key))
            if rc < 0:
                self._fail(rc)
            return
        self._twin("release", bytes(key))
