"""Admin endpoints of telemetry: `GET /metrics`, `GET /stats`, and the live page `GET /`.

Strategy.  `/metrics` is prometheus-client's text of the whole gateway (runtime/metrics.py
sums the workers).  `/stats` is the admin page's one JSON document, derived from the same
metric families (so with `--workers` its totals are the gateway's, whichever worker
answers) plus the answering worker's ring of latest requests: requests and errors, latency
percentiles interpolated from the histogram buckets, errors by reason, one row per API and
per backend (with every gauge family that has a `backend` label: pool connections, and the
breaker and health states other features register), connections, and the latest
request traces (debugtrace.py's store: any worker's with --workers).  `/` is one
self-contained HTML file (admin_page.html: inline CSS and JS, no CDN, no build) that polls
`/stats` every second and derives requests per second from successive totals.
"""

from __future__ import annotations

import json
import time
from importlib import resources
from typing import TYPE_CHECKING, Any, Optional

from . import state_metrics
from .metrics import BUCKETS, CONTENT_TYPE

if TYPE_CHECKING:
    from .gateway import Gateway
    from .stream import HTTPStream

__all__ = ["add_routes", "stats", "percentile"]

_PAGE: Optional[bytes] = None


def add_routes(gw: "Gateway") -> None:
    m = gw.telemetry.metrics
    if m is not None:
        m.add_gauges("apigw_connections_open", "Client connections open now.", (),
                     lambda: {(): gw.limit.active})
        m.add_gauges("apigw_connections_open_by_protocol",
                     "Client connections open now, by protocol (handshake: TLS or the "
                     "protocol not known yet).", ("protocol",), gw.open_by_protocol)
        m.add_gauges("apigw_upstream_connections", "Backend connections, by state.",
                     ("backend", "state"), lambda: _pool_gauges(gw))
        state_metrics.register(gw, m)   # breakers, health, limits, stores, retries
        gw.add_admin_route(b"/metrics", _metrics)
    gw.add_admin_route(b"/stats", _stats)
    gw.add_admin_route(b"/", _page)


def _pool_gauges(gw: "Gateway") -> dict:
    out: dict = {}
    for name, pool in gw.state.pools.items():
        h2 = getattr(pool, "conns", None)        # HTTP/2 pools: connections with streams
        if isinstance(h2, list):
            busy = sum(1 for up in h2 if getattr(up, "streams", None))
            out[(name, "idle")], out[(name, "busy")] = len(h2) - busy, busy
            pool = getattr(pool, "h1", None)     # and their HTTP/1.1 fallback
        total = getattr(pool, "_open", None)     # HTTP/1.1 pools: open and idle sockets
        idle = getattr(pool, "_idle", None)
        if isinstance(total, int) and isinstance(idle, list):
            out[(name, "idle")] = out.get((name, "idle"), 0) + len(idle)
            out[(name, "busy")] = out.get((name, "busy"), 0) + total - len(idle)
    return out


async def _reply(stream: "HTTPStream", ctype: bytes, body: bytes) -> None:
    head = stream.request.method == b"HEAD"
    await stream.reply(200, [(b"content-type", ctype), (b"cache-control", b"no-store"),
                             (b"content-length", b"%d" % len(body))], b"" if head else body)


async def _metrics(gw: "Gateway", stream: "HTTPStream") -> None:
    m = gw.telemetry.metrics
    assert m is not None
    await _reply(stream, CONTENT_TYPE, m.expose())


async def _stats(gw: "Gateway", stream: "HTTPStream") -> None:
    await _reply(stream, b"application/json", json.dumps(stats(gw)).encode())


async def _page(gw: "Gateway", stream: "HTTPStream") -> None:
    global _PAGE
    if _PAGE is None:
        _PAGE = resources.files(__package__).joinpath("admin_page.html").read_bytes()
    await _reply(stream, b"text/html; charset=utf-8", _PAGE)


def percentile(buckets: list[float], q: float) -> Optional[float]:
    """The q-quantile (0..1) of a histogram given its per-bucket (not cumulative) counts
    over BUCKETS, by linear interpolation inside the bucket (as PromQL's
    histogram_quantile); None when empty.  The +Inf bucket answers its lower bound."""
    total = sum(buckets)
    if not total:
        return None
    rank = q * total
    seen = 0.0
    lower = 0.0
    for bound, n in zip(BUCKETS, buckets):
        if n and seen + n >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * ((rank - seen) / n)
        seen += n
        lower = bound
    return lower


class _Row:
    __slots__ = ("requests", "errors", "buckets", "bbuckets")

    def __init__(self) -> None:
        self.requests = 0.0
        self.errors = 0.0
        self.buckets = [0.0] * len(BUCKETS)
        self.bbuckets = [0.0] * len(BUCKETS)

    def json(self) -> dict:
        def ms(b: list, q: float) -> Optional[float]:
            v = percentile(b, q)
            return None if v is None else round(v * 1000, 3)
        return {"requests": self.requests, "errors": self.errors,
                "p50_ms": ms(self.buckets, .5), "p95_ms": ms(self.buckets, .95),
                "p99_ms": ms(self.buckets, .99), "backend_p50_ms": ms(self.bbuckets, .5)}


_INDEX = {("%s" % b if b != float("inf") else "+Inf"): i for i, b in enumerate(BUCKETS)}


def _le_index(le: str) -> Optional[int]:
    i = _INDEX.get(le)
    if i is None:
        try:
            f = float(le)
        except ValueError:
            return None
        i = next((j for j, b in enumerate(BUCKETS) if b == f), None)
    return i


def stats(gw: "Gateway") -> dict:
    """The admin page's document (see the module docstring)."""
    tel = gw.telemetry
    m = tel.metrics
    total = _Row()
    apis: dict[str, _Row] = {}
    backends: dict[str, _Row] = {}
    reasons: dict[str, float] = {}
    gauges: dict[str, dict[str, dict[str, float]]] = {}
    accepted: dict[str, float] = {}
    open_conns: Optional[float] = None
    cum: dict[tuple, list] = {}   # (family, labels without le) -> cumulative buckets
    for fam in (m.families() if m is not None else ()):
        for s in fam.samples:
            lab = s.labels
            if s.name == "apigw_requests_total":
                err = int(lab["status_code"]) >= 400
                for row in (total, apis.setdefault(lab["api"] or "-", _Row()),
                            backends.setdefault(lab["backend"], _Row())
                            if lab["backend"] else None):
                    if row is not None:
                        row.requests += s.value
                        row.errors += s.value if err else 0
                if err:
                    k = lab["last_error_reason"] or lab["status_code"]
                    reasons[k] = reasons.get(k, 0) + s.value
            elif s.name in ("apigw_request_duration_seconds_bucket",
                            "apigw_request_backend_duration_seconds_bucket"):
                i = _le_index(lab["le"])
                if i is None:
                    continue
                key = (s.name, tuple(sorted((k, v) for k, v in lab.items() if k != "le")))
                cum.setdefault(key, [0.0] * len(BUCKETS))[i] = s.value
            elif s.name == "apigw_connections_accepted_total":
                accepted[lab["protocol"]] = s.value
            elif s.name == "apigw_connections_open":
                open_conns = s.value
            elif fam.type == "gauge" and "backend" in lab:
                col = fam.name + "".join(f"{{{k}={v}}}" for k, v in sorted(lab.items())
                                         if k != "backend")
                gauges.setdefault(lab["backend"], {})[col] = s.value
    for (name, labels), c in cum.items():
        lab = dict(labels)
        per = [c[0]] + [c[i] - c[i - 1] for i in range(1, len(c))]
        attr = "buckets" if name == "apigw_request_duration_seconds_bucket" else "bbuckets"
        rows = [total, apis.setdefault(lab["api"] or "-", _Row())]
        if lab["backend"]:
            rows.append(backends.setdefault(lab["backend"], _Row()))
        for row in rows:
            b = getattr(row, attr)
            for i, n in enumerate(per):
                b[i] += n
    for name in gw.state.pools:
        backends.setdefault(name, _Row())
    return {
        "time": time.time(), "uptime_s": round(time.time() - tel.started, 1),
        "metrics": m is not None,
        "workers": bool(m is not None and m.multiprocess),
        "total": total.json(),
        "errors_by_reason": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        "apis": {k: v.json() for k, v in sorted(apis.items())},
        "backends": {k: {**v.json(), "state": gauges.get(k, {})}
                     for k, v in sorted(backends.items())},
        "connections": {"open": open_conns if open_conns is not None
                        else gw.limit.active, "accepted": accepted},
        "recent": tel.latest(),
        "traces": _traces(tel.debug),
        "access_log": None if tel.access is None else {
            "written": tel.access.written, "dropped": tel.access.dropped},
    }


def _traces(debug: Any) -> list[dict]:
    """The latest request traces (debugtrace.py), newest first, as the page's rows; each
    full document is at /traces/{id}."""
    if debug is None:
        return []
    out = []
    for doc in debug.ring.latest(10):
        routing = next((e for e in doc.get("entries", ()) if e.get("kind") == "routing"), {})
        out.append({"id": doc.get("id"), "time": doc.get("time"), "api": doc.get("api"),
                    "status": doc.get("status"), "duration_ms": doc.get("duration_ms"),
                    "path": routing.get("backend_path"),
                    "policies": sum(1 for e in doc.get("entries", ())
                                    if e.get("kind") == "policy"),
                    "error": (doc.get("last_error") or {}).get("reason")})
    return out
