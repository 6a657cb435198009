"""One request's telemetry: trace context, metrics and the access log, at one place.

Strategy.  `Telemetry.wrap(handler)` wraps the listeners' request handler, so every
request (direct path, pipeline, WebSocket, gRPC, the gateway's own 404s) is seen once:
before it runs, the W3C trace context is read and rewritten for the backend
(gateway/tracecontext.py) and a `Record` is hung on the stream (`stream.tel`); the
proxy and the executor fill in what only they know (route, pipeline context, backend
attempts and timings, the failure reason) with plain attribute writes; when the handler
returns, `_finish` records it once: a dict update for the metrics (runtime/metrics.py),
one line for the access log (runtime/accesslog.py: made in C, written by a thread) if
the filters take it, and a
short tuple in the ring of latest requests (the admin page).  Nothing here does I/O on
the request path; the trio task `run` flushes both every so often.

Secrets: the access log has no header but the user agent; the logged path has the
subscription-key query value (the API's name for it, and `subscription-key`) replaced by
`REDACTED`; trace-policy text has the request's Authorization and key values and every
named value replaced by `{{name}}` before it is kept (`redact`).

OpenTelemetry (`telemetry.otel`, runtime/otel.py, imported only then): `wrap` asks the
sampler once; a sampled request gets `rec.spans`, one entry per backend attempt whose span
id `attempt` writes into the attempt's `traceparent`; `_finish` hands the spans over.

Gateway-made answers carry the trace too: `send_local_reply` adds a `traceparent` response
header (the trace id and the gateway's span), so a client can quote it; the APIM JSON body
is unchanged.
"""

from __future__ import annotations

import collections
import logging
import random
import time
from typing import Any, Optional

import trio

from ..gateway.config import GatewayConfig
from ..gateway.pipeline.policies.telemetry import EmitMetric, TraceEntry
from . import state_metrics
from ..gateway.tracecontext import TraceContext, forward_trace
from ..protocol import grpc
from .accesslog import AccessLog, redact_query
from .commands import command_handler
from .startup import StartupError
from .debugtrace import DebugTracing
from .metrics import Metrics
from .otel import _MASK64, set_traceparent
from .stream import ClientGone

__all__ = ["Telemetry", "Record", "redact_query"]

log = logging.getLogger("apigw_core.runtime")
trace_log = logging.getLogger("apigw_core.trace")

_now = time.perf_counter
_bits = random.getrandbits
_FLUSH = 0.5           # seconds between two metric flushes
_RECENT = 50           # latest requests kept for the admin page


class Record:
    """What one request did; written by the handler code, read once at its end."""

    __slots__ = ("start", "trace", "route", "ctx", "rid", "backend", "upstream",
                 "attempts", "t_backend", "t_head", "reason", "message", "traces", "ws",
                 "grpc", "spans", "debug", "debug_attempts", "resp_headers", "tp_head")

    def __init__(self, start: float, trace: TraceContext) -> None:
        self.start = start
        self.trace = trace
        self.route: Any = None      # gateway.router.Route once routed
        self.ctx: Any = None        # the pipeline's Context (policies, subscriptions)
        self.rid: Optional[bytes] = None
        self.backend: Optional[str] = None
        self.upstream: Optional[bytes] = None
        self.attempts = 0
        self.t_backend = 0.0        # the first attempt opened
        self.t_head = 0.0           # the response head received (or the backend failed)
        self.reason = ""            # last-error reason (direct path; the pipeline's ctx)
        self.message = ""
        self.traces: Optional[list] = None   # the trace policy's entries
        self.ws: Any = None         # the WebSocket relay (protocol.websocket), once switched
        self.grpc: Optional[GrpcCounts] = None   # a gRPC call's messages, both ways
        self.spans: Optional[list] = None    # OTel, sampled: the attempts' CLIENT spans
        self.debug: Any = None               # request tracing: debugtrace.Trace
        self.debug_attempts: Optional[list] = None
        self.resp_headers: Optional[list] = None   # added to the response head (tracing)
        self.tp_head: Optional[bytes] = None   # the parent id in a ForwardedHead's traceparent

    def attempt(self, pool: Any, headers: Optional[list] = None, head: Any = None) -> None:
        """A backend attempt starts on `pool`; `headers`: the ones it sends (a sampled
        trace's `traceparent` there gets the attempt's CLIENT span as parent), or, when
        they were written in C (`headers` None), `head`: the ForwardedHead, whose
        traceparent (the request's, as forwarded) is rewritten in its bytes."""
        self.attempts += 1
        t = _now()
        if not self.t_backend:
            self.t_backend = t
        self.backend = pool.backend.name
        self.upstream = pool.authority
        if self.debug is not None:
            da = self.debug_attempts
            if da is None:
                da = self.debug_attempts = []
            elif da[-1][3] is None:
                da[-1][3] = t      # the attempt before ends where this one starts
            da.append([t, pool.backend.name, pool.authority, None])
        if self.spans is not None and (headers is not None or head is not None):
            sid = b"%016x" % (_bits(64) or 1)   # the attempt's CLIENT span id (never 0)
            tc = self.trace
            if headers is not None:
                set_traceparent(headers, b"00-%s-%s-%s" % (tc.trace_id, sid, tc.flags))
            else:
                # the parent id in the field as C copied it from the request (the SERVER
                # span's; a retry: the one set last time), found as "-<id>-": the ids are
                # random draws of this request, which nothing before them in the head
                # can carry
                was = self.tp_head or tc.span_id
                head.head = head.head.replace(b"-%s-" % was, b"-%s-" % sid, 1)
                self.tp_head = sid
            self.spans.append((sid, t, pool.backend.name, pool.authority, pool.backend.url))


    def debug_routed(self, route: Any, host: bytes) -> None:
        DebugTracing.routed(self, route, host)


class _Count:
    """Counts the gRPC messages of one direction (the length prefixes only: nothing is
    copied); a stream that breaks the framing stops being counted, never fails.

    Chunks that hold whole messages (a unary call's, nearly always) are walked here,
    prefix by prefix; the first chunk that cuts a message or has a flag other than 0/1
    hands the stream from there to a grpc.MessageDecoder, made only then (its state at a
    message boundary is a new decoder's)."""

    __slots__ = ("whole", "dec", "obs")

    def __init__(self) -> None:
        self.whole = 0         # messages counted here, before any decoder
        self.dec: Any = None
        self.obs: Any = None

    @property
    def count(self) -> int:
        return self.whole + (self.obs.count if self.obs is not None else 0)

    def __call__(self, data: bytes) -> None:
        if self.obs is None:
            end, pos, n = len(data), 0, 0
            while end - pos >= 5 and data[pos] <= 1:
                pos += 5 + int.from_bytes(data[pos + 1:pos + 5], "big")
                n += 1
            if pos == end:
                self.whole += n
                return
            self.obs = grpc.MessageObserver()
            self.dec = grpc.MessageDecoder(max_message_size=(1 << 32) - 1, encoding=b"any",
                                           observer=self.obs, collect=False)
        if self.dec is not None:
            try:
                self.dec.feed(data)
            except grpc.GrpcError:
                self.dec = None


class GrpcCounts:
    """`up(data)`: bytes of the call sent to the backend; `down(data)`: received from it."""

    __slots__ = ("up", "down")

    def __init__(self) -> None:
        self.up, self.down = _Count(), _Count()


def _in(status: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    for lo, hi in ranges:
        if lo <= status <= hi:
            return True
    return False


class Telemetry:
    """One gateway process's telemetry (see the module docstring)."""

    def __init__(self, config: GatewayConfig) -> None:
        tc = config.telemetry
        # the query parameters whose values are subscription keys: redacted in paths
        self.key_names = tuple({k.query.lower().encode() for k in
                                (api.subscription_key for api in config.apis)}
                               | {b"subscription-key"})
        self.metrics: Optional[Metrics] = (
            Metrics(tc.metrics.max_dimension_values) if tc.metrics.enabled else None)
        self.access: Optional[AccessLog] = None
        self._sample = 1.0
        self._statuses: tuple = ()
        if tc.access_log is not None:
            a = tc.access_log
            self.access = AccessLog(a.path, a.buffer, self._dropped, self.key_names)
            self._sample, self._statuses = a.sample, a.statuses
        self.recent: collections.deque = collections.deque(maxlen=_RECENT)
        self.started = time.time()
        self.named_values = dict(config.named_values)
        self.otel: Any = None
        if tc.otel is not None:
            from .otel import Otel
            self.otel = Otel(tc.otel)
        self._otel_seen = (0, 0, 0)
        self.debug = DebugTracing(api.name for api in config.apis)
        m = self.metrics
        if m is not None:
            m.counter("apigw_connections_accepted", "Client connections accepted.",
                      ("protocol",))
            m.counter("apigw_config_reloads", "Config reloads, by result.", ("result",))
            m.counter("apigw_access_log_dropped", "Access-log lines dropped (buffer full).")
            m.counter("apigw_websocket_messages", "WebSocket messages relayed.",
                      ("api", "direction"))
            m.counter("apigw_grpc_messages", "gRPC messages relayed.", ("api", "direction"))
            state_metrics.declare(m)   # rate-limit decisions, store failures, retries
            if self.otel is not None:
                m.counter("apigw_otel_spans_exported", "OTel spans the collector accepted.")
                m.counter("apigw_otel_spans_failed",
                          "OTel spans lost: the export failed (collector down or refusing).")
                m.counter("apigw_otel_spans_dropped",
                          "OTel spans dropped: the exporter's queue was full.")

    # -- lifecycle -----------------------------------------------------------------------

    def open(self) -> None:
        """Open the access log; one that cannot be opened keeps the gateway from starting."""
        if self.access is not None:
            try:
                self.access.open()
            except OSError as exc:
                raise StartupError(f"cannot open the access log {self.access.path}: "
                                   f"{exc.strerror or exc}") from None

    async def run(self) -> None:
        """Flush the metrics every half second; run the access-log writer and the OTLP
        exporter (its cancellation exports what is queued, bounded)."""
        try:
            async with trio.open_nursery() as nursery:
                if self.access is not None:
                    nursery.start_soon(self.access.run)
                if self.otel is not None:
                    nursery.start_soon(self.otel.run)
                while self.metrics is not None:
                    await trio.sleep(_FLUSH)
                    self._otel_counts()
                    self.metrics.flush()
                await trio.sleep_forever()
        finally:   # after the exporter's last export
            if self.metrics is not None:
                self._otel_counts()
                self.metrics.flush()   # SIGTERM: nothing counted is lost

    def _otel_counts(self) -> None:
        o = self.otel
        if o is not None and self.metrics is not None:
            seen = (o.exported, o.failed, o.dropped)   # the exporter's running totals
            for name, now, before in zip(("apigw_otel_spans_exported", "apigw_otel_spans_failed",
                                          "apigw_otel_spans_dropped"), seen, self._otel_seen):
                if now > before:
                    self.metrics.count(name, (), now - before)
            self._otel_seen = seen

    def _dropped(self, n: int) -> None:
        if self.metrics is not None:
            self.metrics.count("apigw_access_log_dropped", (), n)

    def connection(self, protocol: str) -> None:
        if self.metrics is not None:
            self.metrics.count("apigw_connections_accepted", (protocol,))

    def reloaded(self, ok: bool) -> None:
        if self.metrics is not None:
            self.metrics.count("apigw_config_reloads", ("ok" if ok else "refused",))

    # -- the request ---------------------------------------------------------------------

    def wrap(self, handler: Any) -> Any:
        finish = self._finish
        otel = self.otel
        root_sampled = otel.sampled_root if otel is not None else None
        debug = self.debug

        async def handle(stream: Any) -> None:
            r = _bits(192)
            ids = b"%048x" % r   # span id and trace id from one draw
            # a trace the gateway starts is sampled (or not) before its traceparent is
            # written: the trace id's low 64 bits are r's
            root = root_sampled(r & _MASK64) if otel is not None else False
            rec = Record(_now(), forward_trace(stream.request.headers, ids[:16], ids[16:],
                                               b"01" if root else b"00"))
            if otel is not None and (root if rec.trace.parent_id is None
                                     else otel.sampled(rec.trace)):
                rec.spans = []
                if rec.trace.flags != b"01":   # the backend sees a sampled trace
                    rec.trace.flags = b"%02x" % (int(rec.trace.flags, 16) | 1)
                    set_traceparent(stream.request.headers, rec.trace.traceparent())
            if debug.active:    # credentials were issued: look for the header
                debug.begin(rec, stream.request.headers)
            stream.tel = rec
            status = 0
            try:
                await handler(stream)
            except ClientGone:
                status = 499          # nginx's "client closed request"
                raise
            except BaseException as exc:
                status = getattr(exc, "status", 500)
                raise
            finally:
                try:
                    finish(stream, rec, status)
                except Exception:  # noqa: BLE001 - telemetry must never fail a request
                    log.exception("recording a request failed")

        return handle

    def _finish(self, stream: Any, rec: Record, failed: int) -> None:
        end = _now()
        now = time.time()
        status = stream.status or failed
        route, ctx = rec.route, rec.ctx
        api = op = product = ""
        reason = rec.reason
        if ctx is not None:
            api = ctx.api.name
            op = ctx.operation.name if ctx.operation is not None else ""
            product = ctx.product.name if ctx.product is not None else ""
            if ctx.last_error is not None:
                reason = ctx.last_error.reason
        elif route is not None:
            api = route.api.name
        backend = rec.backend or ""
        req = stream.request
        total = end - rec.start
        t_head = rec.t_head
        # -1.0: that part did not happen (as both the metrics and the log's C take it)
        b_dur = (t_head - rec.t_backend) if rec.t_backend and t_head else -1.0
        c_dur = (end - stream.t_resp) if stream.t_resp else -1.0
        m = self.metrics
        if m is not None:
            m.record((api, op, product, backend, req.method, status, reason), total, b_dur,
                     c_dur)
            if rec.grpc is not None:
                m.count("apigw_grpc_messages", (api, "client_to_backend"),
                        rec.grpc.up.count)
                m.count("apigw_grpc_messages", (api, "backend_to_client"),
                        rec.grpc.down.count)
            if rec.ws is not None:
                m.count("apigw_websocket_messages", (api, "client_to_backend"),
                        rec.ws.client.messages_received)
                m.count("apigw_websocket_messages", (api, "backend_to_client"),
                        rec.ws.backend.messages_received)
        if self.access is not None and (not self._statuses or _in(status, self._statuses)) \
                and (self._sample >= 1.0 or random.random() < self._sample):
            # the line is made in C now (no I/O); the writer thread writes it
            rid = rec.rid
            sub = msg = None
            if ctx is not None:
                if rid is None:
                    rid = ctx.request_id.encode("latin-1")
                if ctx.subscription is not None:
                    sub = ctx.subscription.id
                if ctx.last_error is not None:
                    msg = ctx.last_error.message
            self.access.log(now, total, b_dur, c_dur, rid, rec.trace.trace_id,
                            stream.client[0] if stream.client else None, req, status,
                            stream.bytes_in, stream.bytes_out, api, op, product, sub,
                            backend, rec.upstream, rec.attempts, reason, msg or rec.message,
                            rec.traces)
        self.recent.append((now, req.method, req.target, status, total, api, backend,
                            reason))
        if rec.spans is not None:
            self.otel.record(stream, rec, status, api, op, product, reason, end, now)
        if rec.debug is not None:
            self.debug.finish(rec, status, end)

    def latest(self) -> list[dict]:
        """The latest requests, newest first (the admin page), paths redacted."""
        return [{"time": t, "method": meth.decode("latin-1"),
                 "path": redact_query(target, self.key_names).decode("utf-8", "replace")[:200],
                 "status": st, "duration_ms": round(d * 1000, 3), "api": a, "backend": b,
                 "reason": r}
                for t, meth, target, st, d, a, b, r in reversed(self.recent)]

    # -- the trace and emit-metric policies ---------------------------------------------

    def redact(self, text: str, ctx: Any) -> str:
        """`text` without secrets: named values back to `{{name}}`, the request's
        Authorization and subscription key values replaced."""
        for name, value in self.named_values.items():
            if len(value) >= 3 and value in text:
                text = text.replace(value, "{{%s}}" % name)
        if ctx is not None:
            secrets = [v.decode("latin-1") for n, v in ctx.request.headers.items
                       if n in (b"authorization", b"proxy-authorization")]
            if ctx.subscription_key:
                secrets.append(ctx.subscription_key)
            for s in secrets:
                if s and s in text:
                    text = text.replace(s, "REDACTED")
        return text

    def trace(self, rec: Optional[Record], ctx: Any, source: str, severity: str,
              message: str, metadata: tuple[tuple[str, str], ...]) -> None:
        entry = {"source": source, "severity": severity,
                 "message": self.redact(message, ctx)}
        if metadata:
            entry["metadata"] = {k: self.redact(v, ctx) for k, v in metadata}
        if rec is not None:
            if rec.debug is not None:
                rec.debug.add("trace", _now(), section=getattr(ctx, "section", ""), **entry)
            if rec.traces is None:
                rec.traces = []
            if len(rec.traces) < 100:
                rec.traces.append(entry)
        level = {"verbose": logging.DEBUG, "information": logging.INFO,
                 "error": logging.ERROR}.get(severity, logging.INFO)
        trace_log.log(level, "trace %s: %s", source, entry["message"],
                       extra={"apigw_trace": entry,
                              "trace_id": rec.trace.trace_id.decode() if rec else None})


# -- the policies' commands (gateway/pipeline/policies/telemetry.py) ---------------------

@command_handler(TraceEntry)
async def _trace(call: Any, cmd: TraceEntry) -> None:
    call.gw.telemetry.trace(call.stream.tel, call.ctx, cmd.source, cmd.severity,
                            cmd.message, cmd.metadata)


@command_handler(EmitMetric)
async def _emit(call: Any, cmd: EmitMetric) -> None:
    m = call.gw.telemetry.metrics
    if m is not None:
        m.emit(cmd.namespace, cmd.name, cmd.dimensions, cmd.value)
