"""Prometheus metrics: counted per request in plain dicts, exposed by prometheus-client.

Strategy.  The request path pays for one dict lookup and one C call at the end of each
request: the label tuple (api, operation, product, backend, method, status, last-error
reason) keys a small array of counts, bucket counters and sums, which
native/src/histogram.c adds the request's three durations into (the twin,
_purepy/histogram.py, on a list without the extension; ~3k instructions a request fewer
than the bisects and list updates in Python did).  Going
through prometheus-client's own objects per request costs 6 us (13 us in multiprocess
mode, where every value is an mmap write under a lock) against 1.7 us for the dicts
(/tmp bench in the issue-13 report), so the dicts are moved into prometheus-client's
objects by `flush()`: every half second (a trio task), before this process answers a
scrape, and when the gateway stops.  prometheus-client then does what it is good at:
the exposition format and, with `--workers N`, its multiprocess mode (the supervisor sets
PROMETHEUS_MULTIPROC_DIR; each worker's values live in its own mmap file, which outlives
the worker, so a scrape sums every worker, dead ones included, exactly).  What a worker
killed with SIGKILL loses is its last half second not yet flushed; SIGTERM flushes.

Other features publish their state without touching the hot path: `add_gauges(name, doc,
labelnames, read)` registers a function called at flush time that returns {label tuple:
value} read from plain attributes (pools, breakers, health); in multiprocess mode the
gauges are `livesum` (the sum over live workers) unless the caller picks another of
prometheus-client's modes (`livemax`, `livemin`: a state each worker keeps for itself).
`add_totals(name, doc, labelnames, read)` is the same for running totals some feature
keeps in a plain attribute (breaker trips, Redis failures): the counter grows by what
the total grew since the last flush.  `count(name, labels, n)` bumps a counter declared
with `counter(name, doc, labelnames)`.  Subscription ids and paths are
never request labels; emit-metric's dimensions are capped per metric (`other` beyond).
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Callable, Iterable, Mapping, Optional

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram,
                               disable_created_metrics, values)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from .. import native

__all__ = ["Metrics", "REQUEST_LABELS", "BUCKETS", "MULTIPROC_ENV", "CONTENT_TYPE"]

log = logging.getLogger("apigw_core.runtime")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST.encode()
REQUEST_LABELS = ("api", "operation", "product", "backend", "method", "status_code",
                  "status_class", "last_error_reason")
# a gateway's own latency is sub-millisecond: finer low buckets than the client default
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
           10.0, 30.0, 60.0, float("inf"))
_NB = len(BUCKETS)
# one request label set's accumulator, a flat array (C doubles; a list without the
# extension): [count, sum total, sum backend, sum client, total buckets (_NB), backend
# buckets, client buckets] (native/include/apigw/histogram.h)
_B0, _B1, _B2 = 4, 4 + _NB, 4 + 2 * _NB
_SIZE = 4 + 3 * _NB
_BOUNDS = native.new_doubles(_NB, BUCKETS)   # as hist_observe reads them
_observe = native.hist_observe
_new_acc = native.new_doubles
_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
_NAME_BAD = re.compile(r"[^a-zA-Z0-9_]")


def metric_name(namespace: str, name: str) -> str:
    """emit-metric's (namespace, name) as a Prometheus name: `apigw_custom_<ns>_<name>`."""
    full = "_".join(p for p in (namespace, name) if p)
    return "apigw_custom_" + _NAME_BAD.sub("_", full).strip("_").lower()


def label_name(dimension: str) -> str:
    n = _NAME_BAD.sub("_", dimension).strip("_").lower() or "dimension"
    return ("_" + n) if n[0].isdigit() else n


class _Custom:
    """One emit-metric counter: its labels and the label sets seen (capped)."""

    __slots__ = ("counter", "labels", "seen")

    def __init__(self, counter: Counter, labels: tuple[str, ...]) -> None:
        self.counter, self.labels, self.seen = counter, labels, set()


class Metrics:
    """One process's metrics (see the module docstring)."""

    def __init__(self, max_dimension_values: int = 100) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        if self.multiprocess:
            # the supervisor set the directory after prometheus-client may have been
            # imported (value classes are chosen at import): choose again
            values.ValueClass = values.get_value_class()
        disable_created_metrics()   # no `_created` series: half the text, no use here
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._requests = Counter("apigw_requests", "Requests served, by outcome.",
                                 REQUEST_LABELS, registry=r)
        self._hist = tuple(Histogram(n, d, REQUEST_LABELS, buckets=BUCKETS, registry=r)
                           for n, d in (
            ("apigw_request_duration_seconds", "Request duration, first byte in to last "
             "byte out."),
            ("apigw_request_backend_duration_seconds", "Backend time: the first attempt "
             "sent to the response head received."),
            ("apigw_request_client_duration_seconds", "Client time: the response head "
             "sent to the last byte written.")))
        self._acc: dict[tuple, list] = {}
        # label set -> (the counter's child, the histograms' children, made when first
        # fed): prometheus-client's labels() is a lock and a dict walk per call
        self._children: dict[tuple, tuple[Any, list, tuple]] = {}
        self._counters: dict[str, Counter] = {}
        self._counts: dict[tuple[str, tuple], float] = {}
        self._gauges: list[tuple[Gauge, Callable[[], Mapping[tuple, float]], set]] = []
        self._totals: list[tuple[Counter, Callable[[], Mapping[tuple, float]], dict]] = []
        self._custom: dict[str, _Custom] = {}
        self.max_dimension_values = max_dimension_values
        self.counter("apigw_emit_metric_dropped", "emit-metric values dropped (their "
                     "dimensions differ from the metric's first).", ("metric",))

    # -- the request path ----------------------------------------------------------------

    def record(self, key: tuple, total: float, backend: Optional[float],
               client: Optional[float]) -> None:
        """One finished request: `key` is (api, operation, product, backend, method
        (bytes), status, last-error reason); durations in seconds (None or below zero:
        that part did not happen)."""
        a = self._acc.get(key)
        if a is None:
            a = self._acc[key] = _new_acc(_SIZE)
        try:
            _observe(a, _SIZE, _BOUNDS, _NB, total, backend, client)
        except TypeError:   # a None (C takes doubles; nothing was added): as below zero
            _observe(a, _SIZE, _BOUNDS, _NB, total, -1.0 if backend is None else backend,
                     -1.0 if client is None else client)

    def count(self, name: str, labels: tuple = (), n: float = 1) -> None:
        k = (name, labels)
        self._counts[k] = self._counts.get(k, 0) + n

    # -- declaring -----------------------------------------------------------------------

    def counter(self, name: str, documentation: str, labelnames: Iterable[str] = ()) -> None:
        """Declare a counter `name` (without `_total`) for `count()`."""
        if name not in self._counters:
            self._counters[name] = Counter(name, documentation, tuple(labelnames),
                                           registry=self.registry)

    def add_gauges(self, name: str, documentation: str, labelnames: Iterable[str],
                   read: Callable[[], Mapping[tuple, float]], mode: str = "livesum") -> None:
        """A gauge family read at flush time: `read()` -> {label values: value}.  With
        workers, the value seen is the sum over the live workers (`mode`: another of
        prometheus-client's multiprocess modes)."""
        g = Gauge(name, documentation, tuple(labelnames), registry=self.registry,
                  multiprocess_mode=mode)
        self._gauges.append((g, read, set()))

    def add_totals(self, name: str, documentation: str, labelnames: Iterable[str],
                   read: Callable[[], Mapping[tuple, float]]) -> None:
        """A counter `name` (without `_total`) fed at flush time from running totals:
        `read()` -> {label values: total so far}.  A total that went down (its owner was
        rebuilt by a reload) counts from zero again."""
        c = Counter(name, documentation, tuple(labelnames), registry=self.registry)
        self._totals.append((c, read, {}))

    def emit(self, namespace: str, name: str, dimensions: tuple[tuple[str, str], ...],
             value: float) -> None:
        """emit-metric: `value` added to the counter of (namespace, name); a label set
        beyond the first `max_dimension_values` of this metric counts as `other`."""
        full = metric_name(namespace, name)
        labels = tuple(label_name(d) for d, _ in dimensions)
        c = self._custom.get(full)
        if c is None:
            try:
                counter = Counter(full, f"emit-metric {namespace}/{name}".strip("/"),
                                  labels, registry=self.registry)
            except ValueError as exc:   # the name clashes with one of ours
                log.error("emit-metric %s: %s", full, exc)
                return
            c = self._custom[full] = _Custom(counter, labels)
        if labels != c.labels:
            log.error("emit-metric %s: dimensions %s differ from %s (first seen); dropped",
                      full, labels, c.labels)
            self.count("apigw_emit_metric_dropped", (full,))
            return
        vals = tuple(v for _, v in dimensions)
        if vals not in c.seen:
            if len(c.seen) >= self.max_dimension_values:
                vals = ("other",) * len(vals)
            else:
                c.seen.add(vals)
        self.count("\0" + full, vals, value)

    # -- flushing and exposing -----------------------------------------------------------

    def flush(self) -> None:
        acc, self._acc = self._acc, {}
        children = self._children
        for key, a in acc.items():
            ch = children.get(key)
            if ch is None:
                api, op, product, backend, method, status, reason = key
                labels = (api, op, product, backend, method.decode("latin-1"), str(status),
                          _CLASSES.get(status // 100, "other"), reason)
                ch = children[key] = (self._requests.labels(*labels), [None] * 3, labels)
            ch[0].inc(a[0])
            hists = ch[1]
            for j, lo in enumerate((_B0, _B1, _B2)):
                buckets = a[lo:lo + _NB]
                if not any(buckets):
                    continue
                child = hists[j]
                if child is None:
                    child = hists[j] = self._hist[j].labels(*ch[2])
                # prometheus-client's own fields: one inc per bucket, not per observation
                for i, n in enumerate(buckets):
                    if n:
                        child._buckets[i].inc(n)
                child._sum.inc(a[1 + j])
        counts, self._counts = self._counts, {}
        for (name, labels), n in counts.items():
            if name[:1] == "\0":
                counter: Any = self._custom[name[1:]].counter
            else:
                counter = self._counters.get(name)
                if counter is None:
                    log.error("metric %s counted but not declared", name)
                    continue
            (counter.labels(*labels) if labels else counter).inc(n)
        for c, read, last in self._totals:
            try:
                now = dict(read())
            except Exception:  # noqa: BLE001 - as the gauges below
                log.exception("counter %s: reading it failed", c._name)
                continue
            for labels, v in now.items():
                before = last.get(labels, 0)
                grown = v - before if v >= before else v
                if grown:
                    (c.labels(*labels) if labels else c).inc(grown)
            last.clear()
            last.update(now)
        for g, read, seen in self._gauges:
            try:
                now = dict(read())
            except Exception:  # noqa: BLE001 - another feature's reader must not stop ours
                log.exception("gauge %s: reading it failed", g._name)
                continue
            for labels in seen - now.keys():
                g.labels(*labels).set(0)
            for labels, v in now.items():
                (g.labels(*labels) if labels else g).set(v)
            seen.clear()
            seen.update(k for k in now if k)

    def expose(self) -> bytes:
        """The Prometheus text of the whole gateway (every worker's, with workers)."""
        self.flush()
        if not self.multiprocess:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess
        r = CollectorRegistry()
        multiprocess.MultiProcessCollector(r)
        return generate_latest(r)

    def families(self) -> list:
        """Every metric family of the whole gateway, as prometheus-client collects it."""
        self.flush()
        if not self.multiprocess:
            return list(self.registry.collect())
        from prometheus_client import multiprocess
        return list(multiprocess.MultiProcessCollector(None).collect())
