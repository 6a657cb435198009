"""The exporter's batches (runtime/otel.py `Otel._export`) against a real OTLP/HTTP
receiver, with the C span writer and with its twin: a buffer too small for the queue
sends what fits and leaves the rest queued, in order, none twice; one request larger
than the whole buffer grows it; a request whose time is not sendable is counted as
failed and the others still go."""

from __future__ import annotations

import math

import pytest
import trio

pytest.importorskip("opentelemetry.proto")
from otlp_receiver import KeepAliveReceiver  # noqa: E402

from apigw_core.gateway.config._telemetry import OtelConfig  # noqa: E402
from apigw_core.runtime import otel as otel_mod  # noqa: E402

from otel_writers import WRITERS, writer  # noqa: E402


def item(i: int, path: bytes = b"/p", end: float = 1000.5) -> tuple:
    """A queued request as `Otel.record` appends it: one backend attempt."""
    trace = b"%032x" % (i + 1)
    attempt = (b"%016x" % (i + 1 << 8), 1000.1, "b", b"127.0.0.1:9", "http://127.0.0.1:9/")
    return (trace, b"%016x" % (i + 1), None, b"GET", path, b"gw:80", b"http", "127.0.0.1",
            b"1.1", 200, "api", "", "", "", "/p", None, (attempt,), 1000.25, 1000.0, end,
            1764669000.0)


@pytest.fixture
def rx():
    r = KeepAliveReceiver()
    yield r
    r.close()


def exporter(rx, which, monkeypatch, buf: int) -> otel_mod.Otel:
    writer(which, monkeypatch)
    monkeypatch.setattr(otel_mod, "_BUF", buf)
    return otel_mod.Otel(OtelConfig(endpoint=rx.url))


async def export_all(o: otel_mod.Otel) -> int:
    posts = 0
    try:
        while o._q:
            assert await o._export()
            posts += 1
    finally:
        await o.client.close()
    return posts


@pytest.mark.parametrize("which", WRITERS)
def test_a_full_buffer_leaves_the_rest_queued(rx, which, monkeypatch):
    o = exporter(rx, which, monkeypatch, buf=2048)
    o._q.extend(item(i) for i in range(40))
    posts = trio.run(export_all, o)
    assert posts > 2 and rx.posts == posts       # 2 KiB holds a few requests, not 40
    assert [s.trace_id.hex() for s in rx.spans] == [
        "%032x" % (i + 1) for i in range(40) for _ in (0, 1)]
    assert [s.kind for s in rx.spans] == [2, 3] * 40
    assert o.exported == 80 and o.failed == 0


@pytest.mark.parametrize("which", WRITERS)
def test_one_request_larger_than_the_buffer(rx, which, monkeypatch):
    o = exporter(rx, which, monkeypatch, buf=256)
    big = b"/" + b"x" * 5000
    o._q.extend([item(0), item(1, path=big), item(2)])
    trio.run(export_all, o)
    assert o._buf_cap >= 5000
    assert [s.trace_id.hex()[-1] for s in rx.spans if s.kind == 2] == ["1", "2", "3"]
    url_path = {a.key: a.value.string_value for a in rx.spans[2].attributes}["url.path"]
    assert url_path == big.decode()
    assert o.exported == 6 and o.failed == 0


@pytest.mark.parametrize("which", WRITERS)
def test_an_unsendable_time_is_counted(rx, which, monkeypatch):
    o = exporter(rx, which, monkeypatch, buf=1 << 16)
    o._q.extend([item(0), item(1, end=math.nan), item(2, end=-1e12)])
    trio.run(export_all, o)
    assert sorted({s.trace_id.hex()[-1] for s in rx.spans}) == ["1"]
    assert o.exported == 2 and o.failed == 4
