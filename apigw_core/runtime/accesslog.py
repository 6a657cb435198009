"""The JSON access log: one line per request, written off the request path.

Strategy.  A request only appends a tuple of raw values (`Entry`, below: bytes as they
came, the request event itself) to a list; a trio task wakes every quarter second, takes
the list, and hands it to a worker thread that formats the lines and writes them with one
`write` per batch, so a slow disk never stalls the event loop and a line is on disk well
within a second.  The lines are made by native/src/accesslog.c (`apigw_al_line`) into one
1 MiB buffer; its pure-Python twin `format_entry` (one f-string, each string escaped by
the json module's C escaper, the time's seconds part cached) makes them without the
extension, and the lines C leaves to it (a trace policy's entries, a path that is not
UTF-8), so both give the same bytes (tests/native/test_accesslog_twin.py).  Per line C
costs 27k instructions against the twin's 36k (Python still unpacks the entry and hands
over 34 arguments), the first cut of the writer thread's share.  While a write is under way new entries pile up in the list; the
list is bounded (`buffer` entries): past it entries are dropped and counted
(`apigw_access_log_dropped_total`), never waited for.  `path: "-"` is stdout.

No secret is written: of the headers only Host and User-Agent are read, and the path's
subscription-key query values (`key_names`) are replaced by `REDACTED`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from json.encoder import encode_basestring as _q   # the C escaper: '"..."'
from typing import Any, Callable, Optional

import trio

from .. import native

__all__ = ["AccessLog", "format_entry", "redact_query"]

log = logging.getLogger("apigw_core.runtime")

_INTERVAL = 0.25
_HTTP = {b"1.1": '"HTTP/1.1"', b"1.0": '"HTTP/1.0"', b"2": '"HTTP/2"'}

# Entry: (time, total s, backend s | None, client s | None, request id | None, trace id,
#         client ip | None, protocol.Request, status, bytes in, bytes out, api, operation,
#         product, subscription id | None, backend, upstream address | None, attempts,
#         last-error reason, last-error message, trace-policy entries | None)
Entry = tuple
_STATIC = '"api":%s,"operation":%s,"product":%s,"backend":%s,"upstream_address":%s'
_MS = ["%03d" % i for i in range(1000)]   # a millisecond field's three digits
_second = [-1, "", b""]   # the second formatted last: its number, as str, as bytes
# escaped forms of the values that repeat (hosts, agents, addresses, API names): a dict
# hit instead of an escaper call; bounded, so a client sending random hosts cannot grow it
_CACHE: dict = {None: "null", "": "null", b"": "null"}
_CACHE_MAX = 4096
_GROUPS: dict = {}
# the C line's inputs that repeat, as UTF-8 bytes: config strings and client IPs (a dict
# hit instead of an encode), the escaped protocol and group segments
_BYTES: dict = {None: b"", "": b""}   # b"": written null
_GROUPS_B: dict = {}
_HTTP_B = {k: v.encode() for k, v in _HTTP.items()}
_SPACE, _FALLBACK = native.AL_E_SPACE, native.AL_E_FALLBACK
_CAP = 1 << 20        # the C lines' batch buffer (a line is at most a few hundred KiB)


def _esc(v: Any) -> str:
    r = _q(v.decode("latin-1") if v.__class__ is bytes else v)
    if v and len(_CACHE) < _CACHE_MAX:   # (an empty one is null, but `""` as a protocol)
        _CACHE[v] = r
    return r


def _utf8(v: Any) -> bytes:
    """A str (or latin-1 bytes) field as the UTF-8 the C line takes; cached, bounded."""
    if not v:
        return b""
    r = (v.decode("latin-1") if v.__class__ is bytes else v).encode("utf-8", "replace")
    if len(_BYTES) < _CACHE_MAX:
        _BYTES[v] = r
    return r


def _group_bytes(gk: tuple) -> bytes:
    c = _CACHE
    r = (_STATIC % tuple(c.get(v) or _esc(v) for v in gk)).encode("utf-8", "replace")
    if len(_GROUPS_B) < _CACHE_MAX:
        _GROUPS_B[gk] = r
    return r


def _ms(v: Optional[float]) -> str:
    """Seconds as milliseconds with three decimals (integer arithmetic: no float format);
    None, and a negative (impossible) duration, are null."""
    if v is None or v < 0:
        return "null"
    us = int(v * 1e6 + 0.5)
    return f"{us // 1000}.{_MS[us % 1000]}"


def redact_query(target: bytes, names: tuple[bytes, ...]) -> bytes:
    """`target` with the values of the query parameters `names` (lower-case) replaced."""
    path, sep, query = target.partition(b"?")
    if not sep or not query:
        return target
    parts = query.split(b"&")
    changed = False
    for i, p in enumerate(parts):
        name, eq, _ = p.partition(b"=")
        if eq and name.lower() in names:
            parts[i] = name + b"=REDACTED"
            changed = True
    return path + b"?" + b"&".join(parts) if changed else target


def _tick(sec: int) -> None:
    _second[0] = sec
    _second[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    _second[2] = _second[1].encode()


def _where(req: Any, key_names: tuple[bytes, ...]) -> tuple:
    """(host, user agent, the logged path) of the request: the path without scheme and
    authority, its subscription-key query values redacted."""
    host = ua = None
    for n, v in req.headers:
        if n == b"host":
            host = v
        elif n == b"user-agent":
            ua = v
    target = req.target
    if target[:1] != b"/":   # absolute form, and HTTP/2's :scheme://:authority/path
        rest = target.partition(b"://")[2]
        i = rest.find(b"/")
        if host is None:
            host = rest[:i] if i >= 0 else rest
        target = rest[i:] if i >= 0 else b"/"
    if target.find(b"?") >= 0:   # (`in` on bytes tries an int first: 10x the cost)
        target = redact_query(target, key_names)
    return host, ua, target


def format_entry(e: Entry, key_names: tuple[bytes, ...]) -> str:
    """One JSON line (see the module docstring)."""
    (t, total, bdur, cdur, rid, trace, ip, req, status, bin_, bout, api, op, product, sub,
     backend, upstream, attempts, reason, message, traces) = e
    start = t - total
    sec = int(start)
    if _second[0] != sec:
        _tick(sec)
    host, ua, target = _where(req, key_names)
    c = _CACHE
    gk = (api, op, product, backend, upstream)
    group = _GROUPS.get(gk)
    if group is None:
        group = _STATIC % tuple(c.get(v) or _esc(v) for v in gk)
        if len(_GROUPS) < _CACHE_MAX:
            _GROUPS[gk] = group
    # one f-string: its parts are joined once, no template is parsed per line
    return (f'{{"time":"{_second[1]}.{_MS[int(start * 1000) % 1000]}Z",'
            f'"request_id":{_q(rid.decode("latin-1")) if rid else "null"},'
            f'"trace_id":"{trace.decode()}","client_ip":{c.get(ip) or _esc(ip)},'
            f'"method":{c.get(req.method) or _esc(req.method)},'
            f'"host":{c.get(host) or _esc(host)},'
            f'"path":{_q(target.decode("utf-8", "replace"))},'
            f'"protocol":{_HTTP.get(req.http_version) or _esc(req.http_version)},'
            f'"status":{status},"bytes_in":{bin_},"bytes_out":{bout},'
            f'"duration_ms":{_ms(total)},'
            f'"backend_duration_ms":{_ms(bdur)},"client_duration_ms":{_ms(cdur)},{group},'
            f'"subscription_id":{c.get(sub) or _esc(sub)},"attempts":{attempts},'
            f'"last_error_reason":{c.get(reason) or _esc(reason)},'
            f'"last_error_message":{c.get(message) or _esc(message)},'
            f'"user_agent":{c.get(ua) or _esc(ua)}'
            + ((',"traces":' + json.dumps(traces, ensure_ascii=False, separators=(",", ":")))
               if traces else "") + "}\n")


class AccessLog:
    """Buffered JSON lines to `path` (see the module docstring)."""

    def __init__(self, path: str, limit: int,
                 on_drop: Optional[Callable[[int], None]] = None,
                 key_names: tuple[bytes, ...] = (b"subscription-key",)) -> None:
        self.path = path
        self.limit = limit
        self.on_drop = on_drop
        self.key_names = key_names
        self.pending: list[Entry] = []
        self.dropped = 0
        self.written = 0
        self._fd: Optional[int] = None
        self._buf: Any = None    # the C lines' buffer, made on first use
        self.use_c = native.access_line is not None   # tests compare both ways
        self.cap = _CAP

    def add(self, record: Entry) -> None:
        """Queue one entry (the request path: no I/O, no formatting)."""
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

    def _write(self, batch: list[Entry]) -> None:
        if self.use_c:
            self._write_c(batch)
        else:
            keys = self.key_names
            self._out("".join([format_entry(e, keys) for e in batch])
                      .encode("utf-8", "replace"))
        self.written += len(batch)

    def _out(self, data: Any) -> None:
        fd = self._fd
        assert fd is not None
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]

    def _write_c(self, batch: list[Entry]) -> None:
        """The lines by native/src/accesslog.c into one buffer, written when full; a line
        it leaves to Python (a trace policy's entries, a path that is not UTF-8) is
        format_entry's, in its place."""
        buf = self._buf
        if buf is None:
            buf = self._buf = native.new_buffer(self.cap)
        line, keys, b, gb, cap = (native.access_line, self.key_names, _BYTES, _GROUPS_B,
                                  self.cap)
        off = 0
        for e in batch:
            (t, total, bdur, cdur, rid, trace, ip, req, status, bin_, bout, api, op,
             product, sub, backend, upstream, attempts, reason, message, traces) = e
            n = _FALLBACK
            if not traces:
                start = t - total
                sec = int(start)
                if _second[0] != sec:
                    _tick(sec)
                host, ua, target = _where(req, keys)
                gk = (api, op, product, backend, upstream)
                group = gb.get(gk) or _group_bytes(gk)
                ipb, subb, rb, mb = b.get(ip), b.get(sub), b.get(reason), b.get(message)
                if ipb is None:
                    ipb = _utf8(ip)
                if subb is None:
                    subb = _utf8(sub)
                if rb is None:
                    rb = _utf8(reason)
                if mb is None:
                    mb = _utf8(message)
                proto = _HTTP_B.get(req.http_version) or _esc(req.http_version).encode()
                sb, meth = _second[2], req.method
                rid, host, ua = rid or b"", host or b"", ua or b""   # b"": null
                args = (sb, len(sb), int(start * 1000) % 1000, rid, len(rid),
                        trace, len(trace), ipb, len(ipb), meth, len(meth),
                        host, len(host), target, len(target), proto,
                        len(proto), status, bin_, bout, total,
                        -1.0 if bdur is None else bdur, -1.0 if cdur is None else cdur,
                        group, len(group), subb, len(subb), attempts, rb, len(rb), mb,
                        len(mb), ua, len(ua))
                try:
                    n = line(buf + off, cap - off, *args)
                    if n == _SPACE and off:
                        self._out(native.buffer_view(buf, off))
                        off = 0
                        n = line(buf, cap, *args)
                except (OverflowError, TypeError):   # a count beyond int64: Python's
                    n = _FALLBACK
            if n > 0:
                off += n
                continue
            if off:
                self._out(native.buffer_view(buf, off))
                off = 0
            self._out(format_entry(e, keys).encode("utf-8", "replace"))
        if off:
            self._out(native.buffer_view(buf, off))

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
