"""`GET /metrics` against real gateway processes, read by prometheus-client's own text
parser: the request counts equal what the test sent (by api, status, backend and
last-error reason), with one worker and with two (one scrape sums both), and counts of a
worker killed with SIGKILL stay in the sum after the supervisor replaces it.  Also:
connections accepted, config reloads, the admin page's `/stats`, and metrics that can be
turned off."""

from __future__ import annotations

import os
import signal

import httpx
from prometheus_client.parser import text_string_to_metric_families

from backends import Refused
from support import wait_until


def scrape(gw) -> dict:
    """{(sample name, frozenset(labels)): value} of one scrape."""
    r = httpx.get(f"http://127.0.0.1:{gw.admin_port}/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    out = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def requests_total(samples: dict, **labels) -> float:
    want = set(labels.items())
    return sum(v for (name, lab), v in samples.items()
               if name == "apigw_requests_total" and want <= lab)


def _config(echo_url: str, refused_url: str) -> dict:
    return {
        "listeners": [{"bind": "127.0.0.1:0"}],
        "backends": {"echo": {"url": echo_url}, "down": {"url": refused_url}},
        "apis": [{"name": "plain", "path": "/plain", "backend": "echo"},
                 {"name": "down", "path": "/down", "backend": "down"},
                 {"name": "pol", "path": "/pol", "backend": "echo", "operations": [
                     {"name": "get-item", "method": "GET", "url-template": "/items/{id}"}]}],
        "admin": {"bind": "127.0.0.1:0"},
    }


def _traffic(url: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as c:
        for i in range(7):
            assert c.get(f"/plain/x{i}").status_code == 200
        for i in range(3):
            assert c.get(f"/pol/items/{i}").status_code == 200
        assert c.get("/pol/nothing").status_code == 404       # OperationNotFound
        assert c.get("/down/a").status_code == 502
        assert c.get("/down/b").status_code == 502
        assert c.get("/no-api").status_code == 404


def _counted(gw, times: int) -> dict:
    """A scrape in which every count of `times` rounds of traffic is in: a worker flushes
    its counters and histograms one family after the other, so a scrape in between may
    see the requests counted and their durations not yet."""
    def whole():
        s = scrape(gw)
        try:
            _check_counts(s, times)
        except AssertionError:
            return None
        return s
    return wait_until(whole, message=f"{14 * times} requests counted, histograms too")


def _check_counts(samples: dict, times: int = 1) -> None:
    assert requests_total(samples, api="plain", status_code="200", backend="echo",
                          method="GET", status_class="2xx") == 7 * times
    assert requests_total(samples, api="pol", operation="get-item", status_code="200") \
        == 3 * times
    assert requests_total(samples, api="pol", status_code="404",
                          last_error_reason="OperationNotFound") == 1 * times
    assert requests_total(samples, api="down", status_code="502", backend="down",
                          last_error_reason="BackendConnectionFailure") == 2 * times
    assert requests_total(samples, api="", status_code="404") == 1 * times
    hist = sum(v for (n, lab), v in samples.items()
               if n == "apigw_request_duration_seconds_count")
    assert hist == 14 * times
    backend = sum(v for (n, lab), v in samples.items()
                  if n == "apigw_request_backend_duration_seconds_count"
                  and ("api", "plain") in lab)
    assert backend == 7 * times
    # no path, no subscription id among the labels
    names = {k for (n, lab) in samples if n.startswith("apigw_request") for k, _ in lab}
    assert names <= {"api", "operation", "product", "backend", "method", "status_code",
                     "status_class", "last_error_reason", "le"}


def test_counts_equal_what_was_sent(gateway, echo):
    down = Refused()
    try:
        gw = gateway(_config(echo.url, down.url))
        _traffic(gw.url)
        samples = _counted(gw, times=1)
        accepted = sum(v for (n, lab), v in samples.items()
                       if n == "apigw_connections_accepted_total")
        assert accepted >= 1
        assert ("apigw_connections_open", frozenset()) in samples
        assert samples[("apigw_upstream_connections",
                        frozenset({("backend", "echo"), ("state", "idle")}))] >= 1
        # the admin page's document agrees
        st = httpx.get(f"http://127.0.0.1:{gw.admin_port}/stats", timeout=10).json()
        assert st["total"]["requests"] == 14
        assert st["apis"]["plain"]["requests"] == 7
        assert st["errors_by_reason"]["BackendConnectionFailure"] == 2
        assert st["total"]["p50_ms"] is not None
        assert st["backends"]["echo"]["requests"] == 10
        assert len(st["recent"]) == 14 and st["recent"][0]["path"] == "/no-api"
    finally:
        down.close()


def test_two_workers_one_sum_and_a_killed_worker_keeps_its_counts(gateway, echo):
    down = Refused()
    try:
        gw = gateway(_config(echo.url, down.url), workers=2)
        _traffic(gw.url)
        _traffic(gw.url)
        _counted(gw, times=2)   # over both workers
        workers = [int(p) for p in os.popen(f"pgrep -P {gw.pid}").read().split()]
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)
        wait_until(lambda: len(set(os.popen(f"pgrep -P {gw.pid}").read().split())
                               - {str(workers[0])}) == 2, message="the worker replaced")
        _check_counts(scrape(gw), times=2)   # nothing it had counted is lost
        _traffic(gw.url)
        _counted(gw, times=3)
    finally:
        down.close()


def test_reloads_counted(tmp_path, gateway, echo):
    gw = gateway({"listeners": [{"bind": "127.0.0.1:0"}],
                  "backends": {"echo": {"url": echo.url}},
                  "apis": [{"name": "a", "path": "/a", "backend": "echo"}],
                  "admin": {"bind": "127.0.0.1:0"}})
    r = httpx.post(f"http://127.0.0.1:{gw.admin_port}/reload", timeout=30)
    assert r.status_code == 200
    samples = wait_until(lambda: scrape(gw).get(
        ("apigw_config_reloads_total", frozenset({("result", "ok")}))) == 1 or None)
    assert samples


def test_metrics_can_be_off(gateway, echo):
    gw = gateway({"listeners": [{"bind": "127.0.0.1:0"}],
                  "backends": {"echo": {"url": echo.url}},
                  "apis": [{"name": "a", "path": "/a", "backend": "echo"}],
                  "admin": {"bind": "127.0.0.1:0"},
                  "telemetry": {"metrics": {"enabled": False}}})
    assert httpx.get(f"{gw.url}/a/x").status_code == 200
    assert httpx.get(f"http://127.0.0.1:{gw.admin_port}/metrics").status_code == 404
    st = httpx.get(f"http://127.0.0.1:{gw.admin_port}/stats").json()
    assert st["metrics"] is False and len(st["recent"]) == 1
