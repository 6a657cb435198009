"""The one module that loads the C extension ``apigw_core._native``.

Everything else imports the hot-path functions from here and never knows which
implementation it got: the cffi extension when it was built and loads, otherwise the
pure-Python twins in ``apigw_core._purepy`` (same answers, slower).  Setting
``APIGW_CORE_PUREPYTHON=1`` forces the twins.  ``enabled`` says which one is in use.

Both implementations stay importable on their own (``CHeadParser`` is None without the
extension) so that tests can compare them on the same inputs.
"""

from __future__ import annotations

import functools
import os
import threading
import warnings
from typing import Any, Optional

from ._purepy import http1_head as _py_head
from ._purepy import http1_response as _py_resp
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
py_parse_response_head = _py_resp.parse_response_head
response_codes = _py_resp  # the response parser's codes and messages (both parsers')

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


class CHeadParser:
    """Parses one request head with the C parser; see ``_purepy.http1_head.HeadParser``
    for the result's shape (the two are interchangeable)."""

    __slots__ = ("max_request_line", "max_head", "max_fields", "_tls")

    def __init__(self, max_request_line: int = 8192, max_head: int = 65536,
                 max_fields: int = 100) -> None:
        _py_head.check_limits(max_request_line, max_head, max_fields)
        self.max_request_line = max_request_line
        self.max_head = max_head
        self.max_fields = max_fields
        # Slots per thread: cffi releases the GIL during the call, so two threads must
        # never share them (and per connection they would cost max_head bytes each).
        self._tls = threading.local()

    def _context(self) -> tuple:
        out = _ffi.new("char[]", self.max_head)
        fields = _ffi.new("apigw_h1_field[]", max(self.max_fields, 1))
        ctx = _ffi.new("apigw_h1_parser *", {
            "limits": [self.max_request_line, self.max_head, self.max_fields],
            "fields": fields, "out": _ffi.cast("unsigned char *", out),
            "out_cap": self.max_head})
        t = self._tls.ctx = (ctx, ctx.req, out, fields)  # fields: kept alive with ctx
        return t

    def parse(self, buf: bytes | bytearray | memoryview, pos: int = 0) -> int | tuple:
        try:
            ctx, req, out, _ = self._tls.ctx
        except AttributeError:
            ctx, req, out, _ = self._context()
        if type(buf) is not bytes:
            buf = _ffi.from_buffer(buf)
        n = _parse(ctx, buf, pos, len(buf))
        if n < 0:
            return n
        it = iter(_unpack(out, req.out_len).split(b"\0"))
        return (n, next(it), next(it), req.version_minor, list(zip(it, it)),
                req.content_length, req.flags)


class CResponseParser:
    """Parses one backend response head with the C parser; ``parse(buf, pos)`` answers
    what ``_purepy.http1_response.parse_response_head`` answers for these limits."""

    __slots__ = ("max_head", "max_fields", "_tls")

    def __init__(self, max_head: int = 65536, max_fields: int = 100) -> None:
        if not (0 < max_head < 2**31 and 0 <= max_fields < 2**31):
            raise ValueError("max_head and max_fields out of range")
        self.max_head = max_head
        self.max_fields = max_fields
        self._tls = threading.local()  # as CHeadParser: cffi releases the GIL

    def _context(self) -> tuple:
        out = _ffi.new("char[]", self.max_head)
        fields = _ffi.new("apigw_h1_field[]", max(self.max_fields, 1))
        r = _ffi.new("apigw_h1_response *", {
            "max_head": self.max_head, "max_fields": self.max_fields, "fields": fields,
            "out": _ffi.cast("unsigned char *", out), "out_cap": self.max_head})
        t = self._tls.ctx = (r, out, fields)
        return t

    def parse(self, buf: bytes | bytearray | memoryview, pos: int = 0) -> int | tuple:
        try:
            r, out, _ = self._tls.ctx
        except AttributeError:
            r, out, _ = self._context()
        if type(buf) is not bytes:
            buf = _ffi.from_buffer(buf)
        n = _parse_response(r, buf, pos, len(buf))
        if n < 0:
            return n
        it = iter(_unpack(out, r.out_len).split(b"\0"))
        return (pos + n, r.status, r.version_minor, next(it), list(zip(it, it)),
                r.content_length, r.flags)


class PyResponseParser:
    """The pure-Python twin with CResponseParser's interface."""

    __slots__ = ("max_head", "max_fields")

    def __init__(self, max_head: int = 65536, max_fields: int = 100) -> None:
        self.max_head = max_head
        self.max_fields = max_fields

    def parse(self, buf: bytes | bytearray | memoryview, pos: int = 0) -> int | tuple:
        return py_parse_response_head(bytes(buf) if type(buf) is not bytes else buf, pos,
                                      self.max_head, self.max_fields)


@functools.lru_cache(maxsize=64)
def response_parser(max_head: int = 65536, max_fields: int = 100) -> Any:
    """A shared response-head parser for these limits (C when built, else the twin)."""
    return ResponseParser(max_head, max_fields)


@functools.lru_cache(maxsize=64)
def head_parser(max_request_line: int = 8192, max_head: int = 65536,
                max_fields: int = 100) -> Any:
    """A shared HeadParser for these limits: parsers hold no state, and building one
    costs more than parsing a small head."""
    return HeadParser(max_request_line, max_head, max_fields)


if enabled:
    _parse = _lib.apigw_h1_parse
    _parse_response = _lib.apigw_h1_parse_response
    _unpack = _ffi.unpack
    HeadParser: type = CHeadParser
    ResponseParser: type = CResponseParser
else:
    CHeadParser = None  # type: ignore[assignment,misc]
    CResponseParser = None  # type: ignore[assignment,misc]
    HeadParser = PyHeadParser
    ResponseParser = PyResponseParser


# -- WebSocket payloads (native/src/ws.c, twin _purepy/ws.py) -----------------------------
from ._purepy import ws as _py_ws  # noqa: E402

WS_UTF8_INVALID = _py_ws.INVALID


def _src(data: Any) -> Any:
    return data if data.__class__ is bytes else _ffi.from_buffer(data)


def _key(key: Optional[bytes]) -> Any:
    if key is None:
        return _ffi.NULL
    if len(key) != 4:
        raise ValueError("a masking key is 4 bytes")
    return key


def _c_ws_mask(data: Any, key: bytes, phase: int = 0) -> bytes:
    n = len(data)
    out = bytearray(n)
    _lib.apigw_ws_mask(_src(data), n, _ffi.from_buffer(out), _key(key), phase & 3)
    return bytes(out)


def _c_ws_mask_into(buf: bytearray, off: int, data: Any, key: bytes,
                    phase: int = 0) -> None:
    n = len(data)
    if off < 0 or off + n > len(buf):
        raise ValueError("mask_into: destination too small")
    _lib.apigw_ws_mask(_src(data), n, _ffi.from_buffer(buf) + off, _key(key), phase & 3)


def _c_ws_utf8(state: int, data: Any, key: Optional[bytes] = None, phase: int = 0,
               final: bool = False) -> int:
    if state < 0 or state >> 32:
        return WS_UTF8_INVALID
    return _lib.apigw_ws_utf8(state, _src(data), len(data), _key(key), phase & 3, final)


def _c_ws_mask_utf8_into(state: int, buf: bytearray, off: int, data: Any,
                         vkey: Optional[bytes], okey: bytes, phase: int = 0,
                         final: bool = False) -> int:
    n = len(data)
    if off < 0 or off + n > len(buf):
        raise ValueError("mask_utf8_into: destination too small")
    if state < 0 or state >> 32:
        return WS_UTF8_INVALID
    return _lib.apigw_ws_mask_utf8(state, _src(data), n, _ffi.from_buffer(buf) + off,
                                   _key(vkey), _key(okey), phase & 3, final)


# ws_mask(data, key, phase=0) -> bytes; ws_mask_into(buf, off, data, key, phase=0);
# ws_utf8(state, data, key=None, phase=0, final=False) -> state or WS_UTF8_INVALID;
# ws_mask_utf8_into(state, buf, off, data, vkey, okey, phase=0, final=False): both at once
if enabled:
    ws_mask, ws_mask_into = _c_ws_mask, _c_ws_mask_into
    ws_utf8, ws_mask_utf8_into = _c_ws_utf8, _c_ws_mask_utf8_into
else:
    ws_mask, ws_mask_into = _py_ws.mask, _py_ws.mask_into
    ws_utf8, ws_mask_utf8_into = _py_ws.utf8, _py_ws.mask_utf8_into


# -- access-log lines (native/src/accesslog.c, twin runtime/accesslog.format_entry) ------
# access_line(out, cap, ...) -> bytes written, AL_E_SPACE or AL_E_FALLBACK (see
# native/include/apigw/accesslog.h); new_buffer(n): a C buffer it writes into.  None
# without the extension: runtime/accesslog.py then formats every line in Python.
# access_put(batch, start, rid, n, trace, path, n, status, bytes in, out, total,
# backend, client, tail): the same line at batch.buf + batch.off, fewer arguments to
# convert (the request path's); new_al_batch(cap): (an apigw_al_batch, its buffer).
AL_E_SPACE, AL_E_FALLBACK = -1, -2
access_line: Optional[Any] = _lib.apigw_al_line if enabled else None
access_put: Optional[Any] = _lib.apigw_al_put if enabled else None


def new_al_batch(cap: int) -> tuple[Any, Any]:
    """An empty apigw_al_batch and its buffer of `cap` bytes (keep both: the batch only
    points at the buffer)."""
    buf = _ffi.new("char[]", cap)
    return _ffi.new("apigw_al_batch *", {"buf": buf, "off": 0, "cap": cap, "sec": -1}), buf


# -- OTLP spans (native/src/otlp.c, twin runtime/otlp.span_entry) ------------------------
# otlp_span(out, off, cap, trace_hex, 32, span_hex, 16, parent_hex or b"", 16 or 0, name,
# len, kind, start, end, off_s, attrs, len, tail, len) -> bytes written, OTLP_E_SPACE or
# OTLP_E_INPUT (see native/include/apigw/otlp.h); None without the extension.
OTLP_E_SPACE, OTLP_E_INPUT = -1, -2
otlp_span: Optional[Any] = _lib.apigw_otlp_span if enabled else None
# otlp_pair(out, off, cap, parts, len, trace_hex, span_hex, parent_hex or b"", cspan_hex,
# start, end, t0, t1, off_s): a SERVER span and its one CLIENT span (twin otlp.pair_into)
otlp_pair: Optional[Any] = _lib.apigw_otlp_pair if enabled else None


# -- metrics accumulators (native/src/histogram.c, twin _purepy/histogram.py) ------------
# hist_observe(acc, n, bounds, nb, total, backend, client) -> 0 or HIST_E_SIZE (see
# native/include/apigw/histogram.h); new_doubles(n): a zeroed C double[n] it adds into
# (a list of floats without the extension, for the twin).
from ._purepy import histogram as _py_histogram  # noqa: E402

py_hist_observe = _py_histogram.observe
HIST_E_SIZE = _py_histogram.E_SIZE
hist_observe: Any = _lib.apigw_hist_observe if enabled else py_hist_observe


def new_doubles(n: int, values: Any = None) -> Any:
    """n doubles, zeroed (or `values`): C memory with the extension, else a list."""
    if not enabled:
        return [0.0] * n if values is None else [float(v) for v in values]
    return _ffi.new("double[]", n) if values is None else _ffi.new("double[]", values)


def new_buffer(n: int) -> Any:
    return _ffi.new("char[]", n)


def buffer_view(buf: Any, n: int) -> Any:
    """The first n bytes of a new_buffer, as a buffer (no copy)."""
    return _ffi.buffer(buf, n)


# -- backend request heads (native/src/http1_forward.c, twin _purepy/http1_forward.py) ---
# h1_forward(buf, cap, method, n, target, n, fields, n, num_fields, client_ip, n, scheme,
# n, backend, n, authority or NULL, n, version, n, id_prefix, n, id_next, keep_xfcc,
# xfcc or NULL, n, out) -> bytes written, H1F_E_SPACE or H1F_E_FALLBACK (see
# native/include/apigw/http1_forward.h); None without the extension: gateway/forwarding.py
# then takes its general path.  forward_buffers(): this thread's (buf, cap, out).
from ._purepy import http1_forward as _py_forward  # noqa: E402

py_forward_head = _py_forward.forward_head
H1F_E_SPACE, H1F_E_FALLBACK = _py_forward.E_SPACE, _py_forward.E_FALLBACK
H1F_CHUNKED, H1F_NEW_ID = _py_forward.CHUNKED, _py_forward.NEW_ID
H1F_CAP = 1 << 17   # the parser's max_head (64 KiB) and room for the gateway's fields
h1_forward: Optional[Any] = _lib.apigw_h1_forward if enabled else None
NULL: Any = _ffi.NULL if enabled else None   # h1_forward's "none" for authority, xfcc
_forward_tls = threading.local()


def forward_buffers() -> tuple:
    """This thread's output buffer, its size and the four outputs (cffi releases the GIL
    during the call: threads must not share them)."""
    try:
        return _forward_tls.bufs
    except AttributeError:
        t = _forward_tls.bufs = (_ffi.new("char[]", H1F_CAP), H1F_CAP,
                                 _ffi.new("int64_t[4]"))
        return t


def unpack(buf: Any, n: int) -> bytes:
    """The first n bytes of a C buffer, as bytes."""
    return _ffi.unpack(buf, n)
