"""The one module that loads the C extension ``apigw_core._native``.

Everything else imports the hot-path functions from here and never knows which
implementation it got: the cffi extension when it was built and loads, otherwise the
pure-Python twins in ``apigw_core._purepy`` (same answers, slower).  Setting
``APIGW_CORE_PUREPYTHON=1`` forces the twins.  ``enabled`` says which one is in use.

Both implementations stay importable on their own (``CHeadParser`` is None without the
extension) so that tests can compare them on the same inputs.
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Any

from ._purepy import http1_head as _py_head
from ._purepy.http1_head import (  # noqa: F401  (re-exported)
    E_LAST,
    ERROR_NAMES,
    F_CHUNKED,
    F_CONN_CLOSE,
    F_CONN_KEEP_ALIVE,
    F_CONN_UPGRADE,
    F_EXPECT_CONTINUE,
    F_UPGRADE,
    INCOMPLETE,
    error_name,
    error_status,
)

PyHeadParser = _py_head.HeadParser

_ffi: Any = None
_lib: Any = None
if os.environ.get("APIGW_CORE_PUREPYTHON", "") not in ("", "0"):
    _why = None  # asked for: no warning
else:
    try:
        from ._native import ffi as _ffi, lib as _lib  # type: ignore[import-not-found]
    except ImportError as exc:  # not built: no compiler at install time
        _why = str(exc)
    else:
        _why = None

enabled: bool = _lib is not None
if not enabled and _why is not None:
    warnings.warn(
        f"apigw_core: C extension not available ({_why}); using the pure-Python "
        "parsers (correct but slower). Install a C compiler and reinstall to build it.",
        RuntimeWarning,
        stacklevel=2,
    )


class _Scratch(threading.local):
    """Per-thread output slots: cffi releases the GIL during the call, so two threads
    must never share them (and per connection they would cost 64 KiB each).  `bufs` is
    one tuple so the hot path reads the thread-local once."""

    cap = 0
    slots = -1

    def ensure(self, cap: int, slots: int) -> None:
        cap, slots = max(cap, self.cap), max(slots, self.slots)
        out = _ffi.new("char[]", cap)
        self.bufs = (_ffi.new("apigw_h1_request *"), _ffi.new("apigw_h1_field[]", max(slots, 1)),
                     _ffi.cast("unsigned char *", out), out, cap)
        self.cap, self.slots = cap, slots


class CHeadParser:
    """Parses one request head with the C parser; see ``_purepy.http1_head.HeadParser``
    for the result's shape (the two are interchangeable)."""

    __slots__ = ("max_request_line", "max_head", "max_fields", "_limits", "_scratch")

    def __init__(self, max_request_line: int = 8192, max_head: int = 65536,
                 max_fields: int = 100) -> None:
        _py_head.check_limits(max_request_line, max_head, max_fields)
        self.max_request_line = max_request_line
        self.max_head = max_head
        self.max_fields = max_fields
        self._limits = _ffi.new("apigw_h1_limits *",
                                [max_request_line, max_head, max_fields])
        self._scratch = _SCRATCH

    def parse(self, buf: bytes | bytearray | memoryview) -> int | tuple:
        s = self._scratch
        if s.cap < self.max_head or s.slots < self.max_fields:
            s.ensure(self.max_head, self.max_fields)
        req, fields, out_u, out, cap = s.bufs
        if type(buf) is not bytes:
            buf = _ffi.from_buffer(buf)
        n = _parse_request(buf, len(buf), self._limits, req, fields, out_u, cap)
        if n < 0:
            return n
        it = iter(_unpack(out, req.out_len).split(b"\0"))
        return (n, next(it), next(it), req.version_minor, list(zip(it, it)),
                req.content_length, req.flags)


if enabled:
    _SCRATCH = _Scratch()
    _parse_request = _lib.apigw_h1_parse_request
    _unpack = _ffi.unpack
    HeadParser: type = CHeadParser
else:
    CHeadParser = None  # type: ignore[assignment,misc]
    HeadParser = PyHeadParser
