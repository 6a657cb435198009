"""The export buffer (runtime/otel.py `Otel.add`, `Otel._export`) against a real
OTLP/HTTP receiver, with the C span writer and with its twin: the buffer grows for what
waits and shrinks back after the export, every span arrives once, in order; beyond the
largest buffer a request's spans are dropped and counted; a request whose time is not
sendable is counted as failed and the others still go."""

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
    """A finished request as `Otel.record` passes it to `add`: one backend attempt."""
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
        while o._n:
            assert await o._export()
            posts += 1
    finally:
        await o.client.close()
    return posts


@pytest.mark.parametrize("which", WRITERS)
def test_the_buffer_grows_then_shrinks(rx, which, monkeypatch):
    o = exporter(rx, which, monkeypatch, buf=2048)
    for i in range(40):                 # 2 KiB holds a few requests, not 40
        o.add(item(i))
    assert o._buf_cap > 2048
    assert trio.run(export_all, o) == 1 and o._buf_cap == 2048
    assert [s.trace_id.hex() for s in rx.spans] == [
        "%032x" % (i + 1) for i in range(40) for _ in (0, 1)]
    assert [s.kind for s in rx.spans] == [2, 3] * 40
    assert o.exported == 80 and o.failed == o.dropped == 0


@pytest.mark.parametrize("which", WRITERS)
def test_beyond_the_largest_buffer_spans_are_dropped(rx, which, monkeypatch):
    o = exporter(rx, which, monkeypatch, buf=256)
    monkeypatch.setattr(otel_mod, "_BUF_MAX", 4096)
    big = b"/" + b"x" * 5000
    for it in (item(0), item(1, path=big), item(2), item(3, path=big * 2)):
        o.add(it)
    trio.run(export_all, o)
    assert [s.trace_id.hex()[-1] for s in rx.spans if s.kind == 2] == ["1", "3"]
    assert o.exported == 4 and o.dropped == 4 and o.failed == 0
    o.add(item(4, path=big[:3000]))       # one request larger than _BUF: it grows
    trio.run(export_all, o)
    url_path = {a.key: a.value.string_value for a in rx.spans[-2].attributes}["url.path"]
    assert url_path == big[:3000].decode() and o.exported == 6


@pytest.mark.parametrize("which", WRITERS)
def test_an_unsendable_time_is_counted(rx, which, monkeypatch):
    o = exporter(rx, which, monkeypatch, buf=1 << 16)
    for it in (item(0), item(1, end=math.nan), item(2, end=-1e12)):
        o.add(it)
    trio.run(export_all, o)
    assert sorted({s.trace_id.hex()[-1] for s in rx.spans}) == ["1"]
    assert o.exported == 2 and o.failed == 4
