"""runtime/metrics.py and the admin page's arithmetic, in memory: per-request records
become exact prometheus-client counts and histogram buckets at flush; emit-metric's label
sets are capped (`other` beyond); gauges read at flush time; percentiles interpolated
from buckets like PromQL's histogram_quantile; the access-log path redaction."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from apigw_core.runtime.admin_telemetry import percentile
from apigw_core.runtime.metrics import BUCKETS, Metrics
from apigw_core.runtime.telemetry import redact_query


def _samples(m: Metrics) -> dict:
    out = {}
    for fam in text_string_to_metric_families(m.expose().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_records_become_exact_counts_and_buckets():
    m = Metrics()
    key = ("a", "op", "", "b", b"GET", 200, "")
    for d in (0.0004, 0.0004, 0.003, 2.0):
        m.record(key, d, d / 2, None)
    m.record(("a", "op", "", "b", b"GET", 503, "Timeout"), 0.02, None, 0.001)
    s = _samples(m)
    lab = (("api", "a"), ("backend", "b"), ("last_error_reason", ""), ("method", "GET"),
           ("operation", "op"), ("product", ""), ("status_class", "2xx"),
           ("status_code", "200"))
    assert s[("apigw_requests_total", lab)] == 4
    assert s[("apigw_request_duration_seconds_count", lab)] == 4
    assert s[("apigw_request_duration_seconds_sum", lab)] == pytest.approx(2.0038)
    le = lambda b: tuple(sorted(lab + (("le", b),)))  # noqa: E731
    assert s[("apigw_request_duration_seconds_bucket", le("0.0005"))] == 2
    assert s[("apigw_request_duration_seconds_bucket", le("0.005"))] == 3
    assert s[("apigw_request_duration_seconds_bucket", le("+Inf"))] == 4
    assert s[("apigw_request_backend_duration_seconds_count", lab)] == 4
    assert ("apigw_request_client_duration_seconds_count", lab) not in s
    err = tuple(sorted(dict(lab, status_code="503", status_class="5xx",
                            last_error_reason="Timeout").items()))
    assert s[("apigw_requests_total", err)] == 1
    assert s[("apigw_request_client_duration_seconds_count", err)] == 1
    m.record(key, 0.1, None, None)     # a second flush adds to the first
    assert _samples(m)[("apigw_requests_total", lab)] == 5


def test_emit_metric_dimensions_capped():
    m = Metrics(max_dimension_values=3)
    for i in range(10):
        m.emit("shop", "orders", (("API ID", "a"), ("user", f"u{i}")), 2)
    s = _samples(m)
    users = {dict(k[1])["user"]: v for k, v in s.items()
             if k[0] == "apigw_custom_shop_orders_total"}
    assert users == {"u0": 2, "u1": 2, "u2": 2, "other": 14}
    m.emit("shop", "orders", (("other dims", "x"),), 1)   # a different label set: dropped
    s = _samples(m)
    assert s[("apigw_emit_metric_dropped_total", (("metric", "apigw_custom_shop_orders"),))] \
        == 1


def test_gauges_read_at_flush():
    m = Metrics()
    state = {("x", "idle"): 2}
    m.add_gauges("apigw_test_pool", "t", ("backend", "state"), lambda: dict(state))
    assert _samples(m)[("apigw_test_pool", (("backend", "x"), ("state", "idle")))] == 2
    state = {("y", "idle"): 1}
    s = _samples(m)
    assert s[("apigw_test_pool", (("backend", "x"), ("state", "idle")))] == 0  # gone: 0
    assert s[("apigw_test_pool", (("backend", "y"), ("state", "idle")))] == 1


def test_percentile_interpolates_inside_the_bucket():
    b = [0.0] * len(BUCKETS)
    assert percentile(b, 0.5) is None
    b[0] = 10            # 10 in (0, 0.5 ms]
    b[1] = 10            # 10 in (0.5 ms, 1 ms]
    assert percentile(b, 0.5) == pytest.approx(0.0005)
    assert percentile(b, 0.75) == pytest.approx(0.00075)
    b[-1] = 80           # the +Inf bucket answers its lower bound
    assert percentile(b, 0.99) == BUCKETS[-2]


@pytest.mark.parametrize("target, out", [
    (b"/a?subscription-key=s3cr3t&x=1", b"/a?subscription-key=REDACTED&x=1"),
    (b"/a?x=1&Subscription-Key=s3cr3t", b"/a?x=1&Subscription-Key=REDACTED"),
    (b"/a?x=1", b"/a?x=1"), (b"/a", b"/a"), (b"/a?subscription-key", b"/a?subscription-key"),
])
def test_redact_query(target, out):
    assert redact_query(target, (b"subscription-key",)) == out
