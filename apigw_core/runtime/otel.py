"""OpenTelemetry traces: a SERVER span per request, a CLIENT span per backend attempt.

Strategy.  The request path does not run the SDK's tracer (its context machinery costs
more than the whole proxy hop): runtime/telemetry.py already has what a span needs, the
W3C ids (gateway/tracecontext.py), the start and end times, each backend attempt.  So the
sampling decision is made here once per request (`sampled`, the SDK's sampler rules
re-stated over the ids we hold), each sampled attempt gets its own span id, which is the
parent in the `traceparent` sent to the backend (`client_span`), and when the request is
over `record` encodes the finished spans (runtime/otlp.py: by hand, the SDK's encoder
costs more than the proxy hop) and hands them to the SDK's BatchSpanProcessor: a bounded
queue, exported over OTLP/HTTP by the SDK's exporter client from the SDK's own thread.
A full queue drops spans; an export that fails (a dead collector) is counted
(`apigw_otel_spans_failed`) and logged once, never retried on the request path.

The SDK is imported lazily, only when `telemetry.otel` is configured (the config refuses
that section when the extra `apigw_core[otel]` is missing).  Retries are siblings: every
attempt's CLIENT span has the SERVER span as parent, with `http.request.resend_count`.
"""

from __future__ import annotations

import logging
import random
from typing import Any, Optional

from ..gateway.config._telemetry import OtelConfig
from . import otlp

__all__ = ["Otel"]

log = logging.getLogger("apigw_core.runtime")
_bits = random.getrandbits
_MASK64 = (1 << 64) - 1


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


class Otel:
    """The exporter of one gateway process (see the module docstring)."""

    def __init__(self, cfg: OtelConfig) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import (BatchSpanProcessor, SpanExporter,
                                                    SpanExportResult)
        from opentelemetry.trace import SpanContext, TraceFlags

        # what BatchSpanProcessor.on_end reads of an item: a sampled context
        self._sampled_ctx = SpanContext(1, 1, False, TraceFlags(TraceFlags.SAMPLED))
        self._res = otlp.resource(cfg.service_name)
        self.failed = 0       # spans an export lost (written by the exporter thread)
        self.exported = 0
        self._parent_based = cfg.sampler.startswith("parentbased_")
        root = cfg.sampler.removeprefix("parentbased_")
        self._bound = {"always_on": 1 << 64, "always_off": 0}.get(
            root, round(cfg.ratio * (1 << 64)))
        # the exporter's own error logs would repeat per batch: the counter says it
        for name in ("opentelemetry.exporter.otlp.proto.http.trace_exporter",
                     "opentelemetry.exporter.otlp.proto.http",
                     "opentelemetry.exporter.http_transport",
                     "opentelemetry.sdk._shared_internal"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        owner = self
        res = self._res

        class _Export(SpanExporter):
            """Joins the requests' pre-encoded spans into one ExportTraceServiceRequest
            and posts it with the OTLP/HTTP exporter's client (its retries, timeout,
            session); counts what was accepted and what was lost."""

            def __init__(self, inner: Any) -> None:
                self.inner = inner
                self.down = False

            def _post(self, body: bytes) -> bool:
                client = getattr(self.inner, "_client", None)
                if client is not None and hasattr(client, "export"):
                    return bool(client.export(body).success)
                import urllib.request   # an SDK without that client: a plain POST
                req = urllib.request.Request(cfg.endpoint, body, method="POST", headers={
                    "Content-Type": "application/x-protobuf"})
                with urllib.request.urlopen(req, timeout=5) as r:
                    return 200 <= r.status < 300

            def export(self, items: Any) -> Any:
                spans = [b for it in items for b in it.data]
                try:
                    ok = self._post(otlp.request(res, spans))
                except Exception:  # noqa: BLE001 - a broken collector is a count
                    ok = False
                if ok:
                    owner.exported += len(spans)
                    if self.down:
                        log.warning("OTLP export to %s works again", cfg.endpoint)
                        self.down = False
                    return SpanExportResult.SUCCESS
                owner.failed += len(spans)
                if not self.down:
                    log.warning("OTLP export to %s failed: spans are counted in "
                                "apigw_otel_spans_failed", cfg.endpoint)
                    self.down = True
                return SpanExportResult.FAILURE

            def shutdown(self) -> None:
                self.inner.shutdown()

        self.processor = BatchSpanProcessor(
            _Export(OTLPSpanExporter(endpoint=cfg.endpoint, timeout=5)),
            max_queue_size=cfg.queue, schedule_delay_millis=500,
            max_export_batch_size=min(1024, cfg.queue), export_timeout_millis=5000)

    def sampled(self, trace: Any) -> bool:
        """The sampler's decision for a request's trace context."""
        if self._parent_based and trace.parent_id is not None:
            return _flags_sampled(trace.flags)
        return (int(trace.trace_id[16:], 16) & _MASK64) < self._bound

    def shutdown(self) -> None:
        """Export what is queued (bounded by the export timeout) and stop the thread."""
        self.processor.shutdown()

    # -- spans ---------------------------------------------------------------------------

    def record(self, stream: Any, rec: Any, status: int, api: str, op: str, product: str,
               reason: str, end: float, now: float) -> None:
        """Hand the finished request's spans to the batch processor (no I/O here)."""
        def ns(t: float) -> int:        # perf_counter time -> Unix nanoseconds
            return int((now - (end - t)) * 1e9)

        tc = rec.trace
        trace_id = bytes.fromhex(tc.trace_id.decode())
        server_id = bytes.fromhex(tc.span_id.decode())
        parent = bytes.fromhex(tc.parent_id.decode()) if tc.parent_id is not None else None
        req = stream.request
        method = req.method.decode("latin-1")
        target = req.target
        q = target.find(b"?")
        path = (target if q < 0 else target[:q]).decode("utf-8", "replace")
        host = b""
        for n, v in req.headers:
            if n == b"host" or n == b":authority":
                host = v
                break
        sch = stream.scheme
        attrs: dict = {"http.request.method": method, "url.path": path,
                       "url.scheme": sch.decode() if isinstance(sch, bytes) else str(sch),
                       "network.protocol.version": req.http_version.decode("latin-1")}
        if q >= 0:
            attrs["url.query"] = "REDACTED"   # subscription keys may ride in the query
        if host:
            h, _, port = host.decode("latin-1").rpartition(":")
            if h and port.isdigit():
                attrs["server.address"], attrs["server.port"] = h, int(port)
            else:
                attrs["server.address"] = host.decode("latin-1")
        if stream.client:
            attrs["client.address"] = stream.client[0]
        if status:
            attrs["http.response.status_code"] = status
        if api:
            attrs["apim.api"] = api
            if op:
                attrs["apim.operation"] = op
            if product:
                attrs["apim.product"] = product
        events: tuple = ()
        pctx = rec.ctx
        if pctx is not None and pctx.last_error is not None:
            e = pctx.last_error
            events = ((ns(end), "policy.error", {
                "apim.policy": e.source, "apim.reason": e.reason, "apim.message": e.message,
                "apim.scope": e.scope, "apim.section": e.section, "apim.path": e.path}),)
        err = status >= 500 or status == 0
        if err or reason:
            attrs["error.type"] = reason or str(status or "unfinished")
        name = method if rec.route is None else f"{method} {rec.route.api.path or '/'}"
        data = [otlp.span(trace_id, server_id, parent, name, otlp.SERVER, ns(rec.start),
                          ns(end), attrs, events, (reason or str(status)) if err else None)]
        attempts = rec.spans or ()
        last = len(attempts) - 1
        for i, (span_id, t0, backend, authority, url) in enumerate(attempts):
            t1 = attempts[i + 1][1] if i < last else (rec.t_head or end)
            a: dict = {"http.request.method": method, "apim.backend": backend,
                       "url.full": url}
            h, _, port = authority.decode("latin-1").rpartition(":")
            if h and port.isdigit():
                a["server.address"], a["server.port"] = h.strip("[]"), int(port)
            if i:
                a["http.request.resend_count"] = i
            failed = i < last or bool(reason) or not rec.t_head
            if not failed and status:
                a["http.response.status_code"] = status
            if failed:
                a["error.type"] = "retried" if i < last else (reason or "unfinished")
            data.append(otlp.span(trace_id, bytes.fromhex(span_id.decode()), server_id,
                                  method, otlp.CLIENT, ns(t0), ns(max(t1, t0)), a, (),
                                  a["error.type"] if failed else None))
        self.processor.on_end(_Item(self._sampled_ctx, data))


class _Item:
    """One request's encoded spans in the processor's queue."""

    __slots__ = ("context", "data")

    def __init__(self, context: Any, data: list) -> None:
        self.context, self.data = context, data


def new_span_id() -> bytes:
    return b"%016x" % (_bits(64) or 1)
