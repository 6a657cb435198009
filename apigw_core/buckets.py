"""Token buckets, fixed-window counters and semaphores shared by every worker process.

The one Python wrapper of native/src/buckets.c (``apigw_bk_*`` in the ``_native``
extension); when the extension is not built, or ``APIGW_CORE_PUREPYTHON=1``, the
pure-Python twin ``apigw_core._purepy.buckets`` does the same work on the same memory
layout with the same integer maths (identical results, slower).

Memory.  A ``BucketTable`` is a file in /dev/shm (the temp dir elsewhere) mapped shared:
a 64-byte header (magic, version, slot count, group size, hash seed) then groups of 8
slots, each group a cache line of the slots' fingerprints followed by its 64-byte slots
(one cache line each).  The supervisor creates it before it forks the workers and each
worker attaches by name, so every process draws from the same buckets with no server.
A key is hashed twice with the table's random seed: one 64-bit hash picks its two
candidate groups (two-choice hashing: a new key goes to the less occupied one, which
keeps groups from overflowing up to ~70 % load where a linear probe of 16 overflows
at ~33 %), the other is the fingerprint stored for its slot, so two keys that share a
group never share a bucket.  Each kind (bucket, counter, semaphore) hashes in its own
namespace.  A lookup reads one fingerprint line, then the slot: two cache lines.

Concurrency (C).  Each slot has a lock word taken by compare-and-swap (it holds the
holder's pid; a waiter that finds the holder dead takes it over), held for a few dozen
instructions with no system call; a key's first claim also takes the claim word of its
first group, so two processes claiming the same new key cannot put it in two slots, and
claim words are never taken while a slot lock is held (no deadlock).  The twin instead
serialises whole calls with an flock on the table file (see its module docstring).

Eviction.  When both of a key's groups are full, the new key takes, among their 16
slots that are idle at the caller's ``now``, the one idle longest: a token bucket that
has refilled to full (age: its last update), a counter whose window has ended (age: its
window start; period 0 never ends), a semaphore at zero.  A live slot is never
overwritten; when there is no idle one the call raises ``BucketTableFull``.  ``refund``,
``peek`` and ``release`` never claim.  Size the table for the keys live at once: 65536
slots (4.7 MB) hold ~45k live keys.

Token bucket (APIM v2 rate-limit).  A new bucket is full at ``calls`` tokens and refills
continuously at ``calls / period``, kept exactly in integer token-nanoseconds (one token
= ``period_ns`` credits; each nanosecond adds ``calls`` credits; capped at
``calls * period_ns``), so there is no rounding drift and ``wait_ns`` is exact: a take
of ``n`` refused with ``wait_ns = w`` is refused at ``now + w - 1`` and allowed at
``now + w`` (if nothing else took meanwhile; from a caller whose clock reading is
older than the bucket's last update, ``w`` includes that lag).  Worst case: a burst of at most ``calls``,
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
native_available: bool = _lib is not None and hasattr(_lib, "apigw_bk_take_packed")


def _path(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"bad bucket table name {name!r} (letters, digits, . _ -)")
    return os.path.join(SHM_DIR, name)


class BucketTable:
    """A shared table of token buckets, counters and semaphores (see the module doc).

    ``slots``: up to 8, or a multiple of 8 (a power of two is usual).
    ``create=True`` makes a new zeroed table (``name=None``: a fresh private name) and
    fails if the name exists; ``create=False`` attaches to an existing one by name.
    ``native=None`` picks C when available, ``True`` requires it, ``False`` forces the
    twin.  ``seed`` (tests) fixes the hash seed, else it is random per table."""

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
            why = _py.check_slots(slots)
            if why:
                raise ValueError(why)
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
        # the take / peek entry points get the address as an int: cheaper to pass
        self._addr = int(_ffi.cast("uintptr_t", self._c)) if native else 0
        if not native:
            self._use_twin()

    # -- lifetime ------------------------------------------------------------------
    def close(self) -> None:
        """Unmaps this process's view (the table lives on until unlinked)."""
        if getattr(self, "_mm", None) is None:
            return
        if getattr(self, "_py", None) is not None:
            self._py.detach()
        if getattr(self, "_c", None) is not None:
            self._addr = 0  # C refuses 0: a closed table raises, never touches the unmapped
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

    def __del__(self) -> None:
        try:  # a table dropped without close() must not keep its fd open
            self.close()
        except Exception:  # noqa: BLE001 - half-built, or at interpreter exit
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

    def _use_twin(self) -> None:
        """Instance attributes shadow the C fast paths below."""
        self.take = self._twin_take  # type: ignore[method-assign]
        self.refund = self._twin_refund  # type: ignore[method-assign]
        self.peek = self._twin_peek  # type: ignore[method-assign]
        self.count = self._twin_count  # type: ignore[method-assign]
        self.acquire = self._twin_acquire  # type: ignore[method-assign]
        self.release = self._twin_release  # type: ignore[method-assign]

    def _twin_take(self, key: bytes, calls: int, period_ns: int, n: int, now_ns: int
                   ) -> tuple[bool, int, int]:
        _py.check_bucket(calls, period_ns)
        _py.check_time(now_ns)
        _py.check_count(n)
        return self._twin("take", bytes(key), calls, period_ns, n, now_ns)

    def _twin_refund(self, key: bytes, calls: int, period_ns: int, n: int, now_ns: int
                     ) -> None:
        _py.check_bucket(calls, period_ns)
        _py.check_time(now_ns)
        _py.check_count(n)
        self._twin("refund", bytes(key), calls, period_ns, n, now_ns)

    def _twin_peek(self, key: bytes, calls: int, period_ns: int, now_ns: int
                   ) -> tuple[int, int]:
        _py.check_bucket(calls, period_ns)
        _py.check_time(now_ns)
        return self._twin("peek", bytes(key), calls, period_ns, now_ns)

    def _twin_count(self, key: bytes, limit: int, period_ns: int, start_ns: int, n: int,
                    now_ns: int, force: bool = False) -> tuple[bool, int, int]:
        _py.check_count(n, limit)
        _py.check_time(now_ns, start_ns, period_ns)
        if period_ns < 0:
            raise ValueError("period_ns must be >= 0")
        return self._twin("count", bytes(key), limit, period_ns, start_ns, n, now_ns,
                          bool(force))

    def _twin_acquire(self, key: bytes, max_count: int) -> bool:
        _py.check_count(max_count)
        return self._twin("acquire", bytes(key), max_count)

    def _twin_release(self, key: bytes) -> None:
        self._twin("release", bytes(key))

    # -- C: errors -------------------------------------------------------------------
    def _error(self, rc: int | BaseException) -> Exception:
        """The exception for a C error code, or for what cffi raised on the arguments."""
        if self._c is None:
            return ValueError("bucket table is closed")
        if isinstance(rc, BaseException):
            if isinstance(rc, OverflowError):  # an int beyond int64: out of range too
                return ValueError(f"bucket arguments out of range: {rc}")
            return rc
        if rc == _py.E_FULL:
            return BucketTableFull("bucket table full: no idle slot in the key's groups")
        return ValueError("bucket arguments out of range (see apigw_core.buckets)")

    def _out(self) -> Any:
        try:
            return self._tls.out
        except AttributeError:
            out = self._tls.out = _ffi.new("int64_t[3]")
            return out

    # -- token bucket (C fast paths; the twin's instances shadow them) -----------------
    def take(self, key: bytes, calls: int, period_ns: int, n: int, now_ns: int
             ) -> tuple[bool, int, int]:
        """Takes ``n`` tokens if there are: (allowed, remaining, wait_ns until ``n``
        would pass; 0 when allowed, -1 when ``n > calls``)."""
        try:
            r = _take(self._addr, key, len(key), calls, period_ns, n, now_ns)
        except (TypeError, OverflowError) as exc:
            raise self._error(exc) from None
        if r & 1:  # allowed (errors come as twice their code: even)
            return True, r >> 1, 0
        if r >= 0:
            return False, r >> 1, _last_wait()
        raise self._error(r >> 1)

    def refund(self, key: bytes, calls: int, period_ns: int, n: int, now_ns: int) -> None:
        """Gives ``n`` tokens back (capped at ``calls``); no-op for an unknown key."""
        try:
            rc = _refund(self._c, key, len(key), calls, period_ns, n, now_ns)
        except (TypeError, OverflowError) as exc:
            raise self._error(exc) from None
        if rc < 0:
            raise self._error(rc)

    def peek(self, key: bytes, calls: int, period_ns: int, now_ns: int) -> tuple[int, int]:
        """(remaining, wait_ns until one token) without taking; an unknown key is full."""
        try:
            r = _peek(self._addr, key, len(key), calls, period_ns, now_ns)
        except (TypeError, OverflowError) as exc:
            raise self._error(exc) from None
        if r < 0:
            raise self._error(r >> 1)
        return r >> 1, (0 if r >> 1 else _last_wait())

    # -- fixed window counter ------------------------------------------------------------
    def count(self, key: bytes, limit: int, period_ns: int, start_ns: int, n: int,
              now_ns: int, force: bool = False) -> tuple[bool, int, int]:
        """Counts ``n`` in the current window: (allowed, remaining, ns until the window
        renews; 0 if it never does)."""
        try:
            out = self._tls.out
        except AttributeError:
            out = self._out()
        try:
            rc = _count(self._c, key, len(key), limit, period_ns, start_ns, n, now_ns,
                        1 if force else 0, out)
        except (TypeError, OverflowError) as exc:
            raise self._error(exc) from None
        if rc < 0:
            raise self._error(rc)
        return out[0] != 0, out[1], out[2]

    # -- semaphore --------------------------------------------------------------------
    def acquire(self, key: bytes, max_count: int) -> bool:
        """One more holder if fewer than ``max_count`` hold it."""
        try:
            rc = _acquire(self._c, key, len(key), max_count)
        except (TypeError, OverflowError) as exc:
            raise self._error(exc) from None
        if rc < 0:
            raise self._error(rc)
        return rc == 1

    def release(self, key: bytes) -> None:
        """One holder fewer (never below zero; no-op for an unknown key)."""
        try:
            rc = _release(self._c, key, len(key))
        except (TypeError, OverflowError) as exc:
            raise self._error(exc) from None
        if rc < 0:
            raise self._error(rc)


if native_available:
    _take, _peek, _last_wait = _lib.apigw_bk_take_packed, _lib.apigw_bk_peek_packed, \
        _lib.apigw_bk_last_wait
    _refund, _count = _lib.apigw_bk_refund, _lib.apigw_bk_count
    _acquire, _release = _lib.apigw_bk_acquire, _lib.apigw_bk_release
