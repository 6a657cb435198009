"""The JSON access log: one line per request, written off the request path.

Strategy.  When a request ends, `log` hands its values to native/src/accesslog.c
(`apigw_al_put`, 14 arguments: the batch's offset and the second's UTC text are kept in
C), which writes the line into a 1 MiB buffer: one C call, no I/O, no Python string
built.  A trio task wakes every quarter second, takes the buffer's bytes
(and what else is queued) and hands them to a worker thread that writes them with one
`write` per batch, so a slow disk never stalls the event loop and a line is on disk well
within a second.  The pure-Python twin `format_entry` (one f-string, each string escaped
by the json module's C escaper, the time's seconds part cached) makes the lines without
the extension, and the lines C leaves to it (a trace policy's entries, a path that is not
UTF-8): those requests queue a tuple of raw values (`Entry`, below) that the writer thread
formats, in its place among the C lines.  Both give the same bytes
(tests/native/test_accesslog_twin.py).  Per line, C with its Python glue costs ~14k
instructions on the event loop (the fields that repeat are escaped once per distinct set
and handed over as one tail), the twin ~29k in the writer thread, whose GIL hand-offs
then cost the event loop too.  The queue is bounded (`buffer` lines between two writes):
past it lines are dropped and counted (`apigw_access_log_dropped_total`), never waited
for.  `path: "-"` is stdout.

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
# the fields that repeat from request to request (client, route, backend, outcome), each
# line's tail: escaped once per distinct set (_REST), the twin's as str, C's as bytes
_REST = ('"client_ip":%s,"method":%s,"host":%s,"protocol":%s,"api":%s,"operation":%s,'
         '"product":%s,"backend":%s,"upstream_address":%s,"subscription_id":%s,'
         '"attempts":%d,"last_error_reason":%s,"last_error_message":%s,"user_agent":%s')
_MS = ["%03d" % i for i in range(1000)]   # a millisecond field's three digits
_second = [-1, ""]    # the twin's second formatted last: its number, its text
# escaped values (hosts, agents, API names) and tails: a dict hit instead of escaping;
# bounded (emptied when full), so a client sending random hosts cannot grow them
_NULLS = {None: "null", "": "null", b"": "null"}
_CACHE: dict = dict(_NULLS)
_CACHE_MAX = 4096
_TAILS: dict = {}
_TAILS_B: dict = {}
_SPACE, _FALLBACK = native.AL_E_SPACE, native.AL_E_FALLBACK
_put = native.access_put
_CAP = 1 << 20        # the C lines' batch buffer (a line is at most a few hundred KiB)


def _esc(v: Any) -> str:
    global _CACHE
    r = _q(v.decode("latin-1") if v.__class__ is bytes else v)
    if v:   # (an empty one is null, but `""` as a protocol)
        if len(_CACHE) >= _CACHE_MAX:
            # a new dict, not clear(): the other thread never sees one without the nulls
            _CACHE = dict(_NULLS)
        _CACHE[v] = r
    return r


def _tail(k: tuple) -> str:
    """The repeating fields of `k` (the tuple that log() and format_entry build) as the
    line's escaped tail."""
    ip, method, host, ua, version, api, op, product, backend, upstream, sub, attempts, \
        reason, message = k
    c = _CACHE
    r = _REST % (c.get(ip) or _esc(ip), c.get(method) or _esc(method),
                 c.get(host) or _esc(host), _HTTP.get(version) or _esc(version),
                 c.get(api) or _esc(api), c.get(op) or _esc(op),
                 c.get(product) or _esc(product), c.get(backend) or _esc(backend),
                 c.get(upstream) or _esc(upstream), c.get(sub) or _esc(sub), attempts,
                 c.get(reason) or _esc(reason), c.get(message) or _esc(message),
                 c.get(ua) or _esc(ua))
    if len(_TAILS) >= _CACHE_MAX:
        _TAILS.clear()
    _TAILS[k] = r
    return r


def _tail_b(k: tuple) -> bytes:
    r = (_TAILS.get(k) or _tail(k)).encode("utf-8", "replace")
    if len(_TAILS_B) >= _CACHE_MAX:
        _TAILS_B.clear()
    _TAILS_B[k] = r
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
        _second[0], _second[1] = sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    host, ua, target = _where(req, key_names)
    k = (ip, req.method, host, ua, req.http_version, api, op, product, backend, upstream,
         sub, attempts, reason, message)
    # one f-string: its parts are joined once, no template is parsed per line
    return (f'{{"time":"{_second[1]}.{_MS[int(start * 1000) % 1000]}Z",'
            f'"request_id":{_q(rid.decode("latin-1")) if rid else "null"},'
            f'"trace_id":"{trace.decode()}",'
            f'"path":{_q(target.decode("utf-8", "replace"))},'
            f'"status":{status},"bytes_in":{bin_},"bytes_out":{bout},'
            f'"duration_ms":{_ms(total)},'
            f'"backend_duration_ms":{_ms(bdur)},"client_duration_ms":{_ms(cdur)},'
            f'{_TAILS.get(k) or _tail(k)}'
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
        # in order: [bytes, lines] (C lines, a buffer's worth) and entries for the twin
        self.pending: list[Any] = []
        self.queued = 0          # lines not yet handed to the writer thread
        self.dropped = 0
        self.written = 0
        self._fd: Optional[int] = None
        self.use_c = native.access_line is not None   # tests compare both ways
        self.cap = _CAP
        # the C lines' apigw_al_batch (its offset, the second's text) and its buffer,
        # made on first use
        self._batch: Any = None
        self._buf: Any = None
        self._mark = 0           # `queued` when the buffer was last cut
        self._last: tuple = ((), b"")   # (tail key, tail) of the last C line

    def _drop(self) -> None:
        self.dropped += 1
        if self.on_drop is not None:
            self.on_drop(1)

    def add(self, record: Entry) -> None:
        """Queue one entry for the twin, formatted by the writer thread (the request
        path: no I/O, no formatting)."""
        if self.queued >= self.limit:
            self._drop()
            return
        if self._batch is not None and self._batch.off:
            self._cut()      # the C lines before it stay before it
        self.pending.append(record)
        self.queued += 1
        self._mark = self.queued   # (the buffer is empty now)

    def log(self, t: float, total: float, bdur: Optional[float], cdur: Optional[float],
            rid: Optional[bytes], trace: bytes, ip: Optional[str], req: Any, status: int,
            bin_: int, bout: int, api: str, op: str, product: str, sub: Optional[str],
            backend: str, upstream: Optional[bytes], attempts: int, reason: str,
            message: Optional[str], traces: Optional[list]) -> None:
        """One request's line (an Entry's fields): made by C into the buffer now, one
        C call and no I/O; what C leaves to the twin is queued as an entry."""
        if not self.use_c or traces:
            self.add((t, total, bdur, cdur, rid, trace, ip, req, status, bin_, bout, api,
                      op, product, sub, backend, upstream, attempts, reason, message,
                      traces))
            return
        if self.queued >= self.limit:
            self._drop()
            return
        host, ua, target = _where(req, self.key_names)
        k = (ip, req.method, host, ua, req.http_version, api, op, product, backend,
             upstream, sub, attempts, reason, message)
        last = self._last   # the line before's tail: usually this one's (no tuple hash)
        if k == last[0]:
            tail = last[1]
        else:
            tail = _TAILS_B.get(k) or _tail_b(k)
            self._last = (k, tail)
        b = self._batch
        if b is None:
            self._batch, self._buf = native.new_al_batch(self.cap)
            b = self._batch
        rid = rid or b""   # b"": null
        try:
            n = _put(b, t - total, rid, len(rid), trace, target, len(target), status, bin_,
                     bout, total, bdur, cdur, tail)
        except (OverflowError, TypeError):   # a count beyond int64: the twin's
            n = _FALLBACK
            if bdur is None or cdur is None:   # None is null, as a negative is
                self.log(t, total, -1.0 if bdur is None else bdur,
                         -1.0 if cdur is None else cdur, rid, trace, ip, req, status, bin_,
                         bout, api, op, product, sub, backend, upstream, attempts, reason,
                         message, traces)
                return
        if n > 0:
            self.queued += 1
        elif n == _SPACE and b.off:   # the buffer is full: queue it, then again
            self._cut()
            self.log(t, total, bdur, cdur, rid, trace, ip, req, status, bin_, bout, api, op,
                     product, sub, backend, upstream, attempts, reason, message, traces)
        else:
            self.add((t, total, bdur, cdur, rid, trace, ip, req, status, bin_, bout, api,
                      op, product, sub, backend, upstream, attempts, reason, message,
                      traces))

    def _cut(self) -> None:
        """The buffer's lines, as bytes, onto the queue."""
        b = self._batch
        self.pending.append([native.buffer_view(self._buf, b.off)[:],
                             self.queued - self._mark])
        b.off, self._mark = 0, self.queued

    def _take(self) -> list:
        if self._batch is not None and self._batch.off:
            self._cut()
        batch, self.pending = self.pending, []
        self.queued = self._mark = 0
        return batch

    def open(self) -> None:
        """Open the file now (a path that cannot be written fails the start)."""
        if self.path == "-":
            self._fd = sys.stdout.fileno()
        else:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def _write(self, batch: list) -> None:
        """Write a batch (the writer thread): C lines as they are, entries formatted by
        the twin, in order."""
        keys, run = self.key_names, []
        for item in batch:
            if item.__class__ is list:
                if run:
                    self._lines(run, keys)
                    run = []
                self._out(item[0])
                self.written += item[1]
            else:
                run.append(item)
        if run:
            self._lines(run, keys)

    def _lines(self, entries: list, keys: tuple[bytes, ...]) -> None:
        self._out("".join([format_entry(e, keys) for e in entries])
                  .encode("utf-8", "replace"))
        self.written += len(entries)

    def _out(self, data: Any) -> None:
        fd = self._fd
        assert fd is not None
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]

    async def run(self) -> None:
        """Write what piles up, until cancelled (then what is left, synchronously)."""
        try:
            while True:
                await trio.sleep(_INTERVAL)
                if self.pending or (self._batch is not None and self._batch.off):
                    batch = self._take()
                    try:
                        await trio.to_thread.run_sync(self._write, batch)
                    except OSError as exc:
                        log.error("access log %s: %s (lines lost)", self.path, exc)
        finally:
            self.close()

    def close(self) -> None:
        batch = self._take()
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
