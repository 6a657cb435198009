"""examples/retry.yaml does what its header promises (tests/test_examples.py runs the
others; this one is apart so that examples added in parallel do not collide)."""

from __future__ import annotations

import time

import httpx
import pytest

from test_examples import _echo_urls, _start, echo  # noqa: F401  (the echo fixture)


@pytest.fixture(scope="module")
def gw(tmp_path_factory, echo):  # noqa: F811
    p = _start("retry.yaml", tmp_path_factory.mktemp("retry"), _echo_urls(echo))
    yield p
    p.stop()


def test_buffered_post_is_answered(gw):
    r = httpx.post(gw.url + "/orders/new", content=b"order=42", timeout=30)
    assert r.status_code == 200
    d = r.json()
    assert d["path"] == "/new" and d["body"] == "order=42", d


def test_down_backend_is_tried_three_times_with_waits(gw):
    t = time.monotonic()
    r = httpx.get(gw.url + "/down/anything", timeout=30)
    took = time.monotonic() - t
    assert r.status_code == 502 and r.json()["statusCode"] == 502
    assert r.headers["x-error-reason"] == "BackendConnectionFailure"
    assert r.headers["x-attempts-marks"] == "xxx"
    assert took >= 0.1 + 0.1 + 3 * 0.05 * 0.8     # the two waits, lower bounds only


def test_condition_over_variables(gw):
    r = httpx.get(gw.url + "/thrice/x", timeout=30)
    assert r.status_code == 200 and r.headers["x-attempts-marks"] == "xxx"
