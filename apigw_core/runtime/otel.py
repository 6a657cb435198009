"""OpenTelemetry traces: a SERVER span per request, a CLIENT span per backend attempt.

Strategy.  The request path does not run the SDK's tracer (its context machinery costs
more than the whole proxy hop): runtime/telemetry.py already has what a span needs, the
W3C ids (gateway/tracecontext.py), the start and end times, each backend attempt.  So the
sampling decision is made here once per request (`sampled`, the SDK's sampler rules
re-stated over the ids we hold; for a trace the gateway starts, `sampled_root` on the
draw its ids came from, before its traceparent is written), each sampled attempt gets
its own span id, which is the parent in the `traceparent` sent to the backend
(`Record.attempt`), and when the request is over `record` writes its SERVER and CLIENT
spans, protobuf-encoded, after the ones already waiting in one export buffer
(native/src/otlp.c through `native.otlp_span`, or its twin `otlp.span_into`; the
attribute blocks that repeat come from bounded caches; the usual request, one attempt
that answered and no error, takes one `native.otlp_pair` call for both spans, its
repeating fields one cached `parts`): no I/O, no lock, no thread on the request path.
Encoding there holds no request's values alive after it (a queue of tuples for the
exporter to encode later did) and costs the same: 541k against 545k instructions per
request in memory (callgrind, when it was introduced).  `queue`
requests wait at most (and 64 MiB of spans); beyond, a request's spans are dropped and
counted (`apigw_otel_spans_dropped`), and so are (as failed) those whose times are not
sendable.

`run`, a task of the gateway's trio loop, exports: every half second, or as soon as half
the queue is waiting, it wraps the buffer's spans in one ExportTraceServiceRequest (one
copy), empties the buffer and POSTs the copy over a kept-alive connection
(runtime/otlp_http.py).  No exporter thread: the export's CPU stays in the gateway's
process, without GIL hand-overs.  An export that fails (a dead collector) counts its
spans (`apigw_otel_spans_failed`), is logged once per outage, and backs the exporter off
(0.5 s doubling to 8 s; what waits meanwhile is dropped when the queue fills), never
retried on the request path.

The SDK is not imported (the config refuses the section when the extra `apigw_core[otel]`
is missing).  Retries are siblings: every attempt's CLIENT span has the SERVER span as
parent, with `http.request.resend_count`.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Optional

import trio

from .. import native
from ..gateway.config._telemetry import OtelConfig
from ..native import OTLP_E_SPACE
from . import otlp
from .otlp_http import ExportError, OtlpHttp

__all__ = ["Otel"]

log = logging.getLogger("apigw_core.runtime")
_MASK64 = (1 << 64) - 1
_DELAY = 0.5            # seconds between exports (sooner when half the queue waits)
_BATCH = 2048           # requests per export, at most
_BACKOFF = (0.5, 8.0)   # a failed export waits this long, doubling up to the second
_CACHE_MAX = 4096
_BUF = 1 << 20          # bytes of the export buffer (a batch of _BATCH requests ~ 0.7 MiB)
_BUF_MAX = 64 << 20     # it grows to this, at most (a collector that is down)
_EVENT_KEYS = ("apim.policy", "apim.reason", "apim.message", "apim.scope", "apim.section",
               "apim.path")


# one span into a buffer: C (native/src/otlp.c) or its twin, the same bytes and results
if native.otlp_span is not None:
    _put, _new_buffer, _view = native.otlp_span, native.new_buffer, native.buffer_view
    _pair = native.otlp_pair
else:
    _put, _pair, _new_buffer = otlp.span_into, otlp.pair_into, bytearray

    def _view(buf: bytearray, n: int) -> memoryview:
        return memoryview(buf)[:n]

_status = functools.lru_cache(maxsize=256)(otlp.status_error)   # a few reasons repeat


def _flags_sampled(flags: bytes) -> bool:
    try:
        return bool(int(flags, 16) & 1)
    except ValueError:
        return False


def set_traceparent(headers: list, value: bytes) -> None:
    """Replace (or add) the `traceparent` field of an outgoing header list."""
    for i, (name, _) in enumerate(headers):
        if name == b"traceparent":
            headers[i] = (b"traceparent", value)
            return
    headers.append((b"traceparent", value))


def _cached(cache: dict, key: Any, make: Any) -> bytes:
    b = cache.get(key)
    if b is None:
        b = make()
        if len(cache) >= _CACHE_MAX:   # bounded: unique values (paths) must not grow it
            cache.clear()
        cache[key] = b
    return b


class Otel:
    """The exporter of one gateway process (see the module docstring)."""

    def __init__(self, cfg: OtelConfig) -> None:
        self.cfg = cfg
        self._res = otlp.resource(cfg.service_name)
        self.failed = 0       # spans an export lost
        self.exported = 0     # spans the collector accepted
        self.dropped = 0      # spans the full queue refused
        self._parent_based = cfg.sampler.startswith("parentbased_")
        root = cfg.sampler.removeprefix("parentbased_")
        self._bound = {"always_on": 1 << 64, "always_off": 0}.get(
            root, round(cfg.ratio * (1 << 64)))
        self._cap = max(1, cfg.queue)
        self._n = 0           # requests whose spans wait in the buffer
        self._nspans = 0      # ... and their spans
        self._pos = 0         # the end of what they take in it
        self._wake_at = max(1, min(_BATCH, self._cap // 2))
        self._wake = trio.Event()
        self.client = OtlpHttp(cfg.endpoint)
        self._down = False
        self._server_attrs: dict = {}
        self._client_attrs: dict = {}
        self._names: dict = {}
        self._pairs: dict = {}     # `parts` of the usual request's two spans
        self._buf_cap = _BUF
        self._buf = _new_buffer(_BUF)     # the spans of the next export, encoded

    def sampled_root(self, low64: int) -> bool:
        """The sampler's decision for a trace the gateway starts, from the low 64 bits of
        its trace id (what `sampled` reads of it, here as the int it was drawn as)."""
        return low64 < self._bound

    def sampled(self, trace: Any) -> bool:
        """The sampler's decision for a request's trace context."""
        if self._parent_based and trace.parent_id is not None:
            return _flags_sampled(trace.flags)
        return (int(trace.trace_id[16:], 16) & _MASK64) < self._bound

    def shutdown(self) -> None:
        """Nothing to stop: the exporter is `run`'s task (its cancellation flushes)."""

    # -- the request path ------------------------------------------------------------------

    def record(self, stream: Any, rec: Any, status: int, api: str, op: str, product: str,
               reason: str, end: float, now: float) -> None:
        """Write the finished request's spans into the export buffer (no I/O)."""
        if self._n >= self._cap:
            self.dropped += 1 + len(rec.spans)
            return
        tc = rec.trace
        req = stream.request
        host = b""
        for n, v in req.headers:
            if n == b"host" or n == b":authority":
                host = v
                break
        pctx = rec.ctx
        e = None if pctx is None else pctx.last_error
        client = stream.client
        route = rec.route
        self.add((tc.trace_id, tc.span_id, tc.parent_id, req.method, req.target, host,
                  stream.scheme, client[0] if client else None, req.http_version, status,
                  api, op, product, reason, None if route is None else route.api.path,
                  None if e is None else (e.source, e.reason, e.message, e.scope, e.section,
                                          e.path),
                  rec.spans, rec.t_head, rec.start, end, now - end))

    def add(self, item: tuple) -> None:
        """Encode one request's spans (`record`'s tuple) after the ones already waiting."""
        spans = 1 + len(item[16])
        pos = self._pos
        end = self._encode(item, self._buf, pos, self._buf_cap)
        while end == OTLP_E_SPACE and self._buf_cap < _BUF_MAX:
            self._grow(self._buf_cap * 2)
            end = self._encode(item, self._buf, pos, self._buf_cap)
        if end < 0:     # larger than _BUF_MAX with the rest, or a time out of range
            if end == OTLP_E_SPACE:
                self.dropped += spans
            else:
                self.failed += spans
            return
        self._pos = end
        self._nspans += spans
        self._n += 1
        if self._n == self._wake_at:
            self._wake.set()

    def _grow(self, cap: int) -> None:
        buf = _new_buffer(cap)
        if self._pos:
            buf[0:self._pos] = bytes(_view(self._buf, self._pos))
        self._buf, self._buf_cap = buf, cap

    # -- the exporter task -----------------------------------------------------------------

    async def run(self) -> None:
        """Export what is waiting until cancelled; then a last, bounded export."""
        delay = 0.0     # the back-off after a failed export
        try:
            while True:
                if delay:
                    await trio.sleep(delay)
                else:
                    with trio.move_on_after(_DELAY):
                        await self._wake.wait()
                if self._wake.is_set():
                    self._wake = trio.Event()
                if not self._n:
                    continue
                if await self._export():
                    delay = 0.0
                else:
                    delay = min(delay * 2, _BACKOFF[1]) if delay else _BACKOFF[0]
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                if self._n:
                    await self._export()
            self.failed += self._nspans     # what the last export could not send
            self._n = self._nspans = self._pos = 0
            await self.client.close()

    async def _export(self) -> bool:
        """POST what waits in the buffer.  False when the collector did not take it."""
        spans = self._nspans
        body = otlp.request(self._res, [_view(self._buf, self._pos)])
        self._n = self._nspans = self._pos = 0      # the requests after this write anew
        if self._buf_cap > _BUF:
            self._buf, self._buf_cap = _new_buffer(_BUF), _BUF
        try:
            await self.client.post(body)
        except BaseException as exc:
            self.failed += spans     # cancelled mid-export (shutdown) too
            if not isinstance(exc, ExportError):
                raise

            if not self._down:
                log.warning("OTLP export to %s failed (%s): spans are counted in "
                            "apigw_otel_spans_failed", self.cfg.endpoint, exc)
                self._down = True
            return False
        self.exported += spans
        if self._down:
            log.warning("OTLP export to %s works again", self.cfg.endpoint)
            self._down = False
        return True

    # -- encoding (the exporter's side) ------------------------------------------------------

    def _encode(self, item: tuple, buf: Any, pos: int, cap: int) -> int:
        """Write the SERVER and CLIENT spans of one queued request at buf[pos:cap].

        The end of what was written, or OTLP_E_SPACE / OTLP_E_INPUT (what follows `pos`
        is then garbage: the caller writes the next request at `pos` again).
        """
        (trace_id, span_id, parent_id, method, target, host, sch, client, version, status,
         api, op, product, reason, rpath, e, attempts, t_head, start, end, off) = item
        put = _put
        q = target.find(b"?")
        path = target if q < 0 else target[:q]
        err = status >= 500 or status == 0
        etype = (reason or str(status or "unfinished")) if err or reason else None
        key = (method, path, sch, version, q >= 0, host, client, status, api, op, product,
               etype)
        if len(attempts) == 1 and etype is None and e is None and t_head:
            # the usual request: one attempt that answered, no error; both spans in one
            # call, their repeating fields as one cached `parts`
            cspan, t0, backend, authority, url = attempts[0]
            pk = (key, rpath, backend, url, authority)
            parts = self._pairs.get(pk)
            if parts is None:
                parts = _cached(self._pairs, pk, lambda: otlp.pair_parts(
                    self._name(method, rpath), self._attrs(key), b"", self._name(method, 0),
                    self._cattrs((method, backend, url, authority, 0, status, None)), b""))
            n = _pair(buf, pos, cap, parts, len(parts), trace_id, span_id, parent_id or b"",
                      cspan, start, end, t0, t_head if t_head > t0 else t0, off)
            return n if n < 0 else pos + n
        attrs = self._attrs(key)
        name = self._name(method, rpath)
        tail = b""
        if e is not None:
            tail = otlp.event(int(end * 1e9 + off * 1e9), "policy.error",
                              dict(zip(_EVENT_KEYS, e)))
        if err:
            tail += otlp.status_error(reason or str(status))
        parent = parent_id or b""
        tn, sn = len(trace_id), len(span_id)
        n = put(buf, pos, cap, trace_id, tn, span_id, sn, parent, len(parent), name,
                len(name), 2, start, end, off, attrs, len(attrs), tail, len(tail))
        if n < 0:
            return n
        pos += n
        last = len(attempts) - 1
        cname = self._name(method, 0)
        for i, (cspan, t0, backend, authority, url) in enumerate(attempts):
            t1 = attempts[i + 1][1] if i < last else (t_head or end)
            failed = i < last or bool(reason) or not t_head
            cet = ("retried" if i < last else (reason or "unfinished")) if failed else None
            ca = self._cattrs((method, backend, url, authority, i, None if failed else status,
                               cet))
            tail = b"" if cet is None else _status(cet)
            n = put(buf, pos, cap, trace_id, tn, cspan, len(cspan), span_id, sn, cname,
                    len(cname), 3, t0, t1 if t1 > t0 else t0, off, ca, len(ca), tail,
                    len(tail))
            if n < 0:
                return n
            pos += n
        return pos

    def _attrs(self, key: tuple) -> bytes:
        a = self._server_attrs.get(key)
        return a if a is not None else _cached(self._server_attrs, key,
                                               lambda: _server_attrs(*key))

    def _cattrs(self, ckey: tuple) -> bytes:
        a = self._client_attrs.get(ckey)
        return a if a is not None else _cached(self._client_attrs, ckey,
                                               lambda: _client_attrs(*ckey))

    def _name(self, method: bytes, rpath: Any) -> bytes:
        """The SERVER span's name field (`rpath`: the API's path or None), or with rpath
        0 the CLIENT spans' (the method)."""
        n = self._names.get((method, rpath))
        if n is None:
            n = _cached(self._names, (method, rpath), lambda: otlp.field(
                5, method if rpath is None or rpath == 0
                else b"%s %s" % (method, rpath.encode() or b"/")))
        return n


def _server_attrs(method: bytes, path: bytes, sch: Any, version: bytes, query: bool,
                  host: bytes, client: Optional[str], status: int, api: str, op: str,
                  product: str, etype: Optional[str]) -> bytes:
    attrs: dict = {"http.request.method": method.decode("latin-1"),
                   "url.path": path.decode("utf-8", "replace"),
                   "url.scheme": sch.decode() if isinstance(sch, bytes) else str(sch),
                   "network.protocol.version": version.decode("latin-1")}
    if query:
        attrs["url.query"] = "REDACTED"   # subscription keys may ride in the query
    if host:
        h, _, port = host.decode("latin-1").rpartition(":")
        if h and port.isdigit():
            attrs["server.address"], attrs["server.port"] = h, int(port)
        else:
            attrs["server.address"] = host.decode("latin-1")
    if client:
        attrs["client.address"] = client
    if status:
        attrs["http.response.status_code"] = status
    if api:
        attrs["apim.api"] = api
        if op:
            attrs["apim.operation"] = op
        if product:
            attrs["apim.product"] = product
    if etype is not None:
        attrs["error.type"] = etype
    return otlp.attributes(9, attrs)


def _client_attrs(method: bytes, backend: str, url: str, authority: bytes, i: int,
                  status: Optional[int], etype: Optional[str]) -> bytes:
    a: dict = {"http.request.method": method.decode("latin-1"), "apim.backend": backend,
               "url.full": url}
    h, _, port = authority.decode("latin-1").rpartition(":")
    if h and port.isdigit():
        a["server.address"], a["server.port"] = h.strip("[]"), int(port)
    if i:
        a["http.request.resend_count"] = i
    if status:
        a["http.response.status_code"] = status
    if etype is not None:
        a["error.type"] = etype
    return otlp.attributes(9, a)

