"""Access-log lines: the C lines (native/src/accesslog.c, through AccessLog.log) and the
pure-Python twin (format_entry, in the writer thread) write the same bytes for the same
entries.

Inputs: random bytes where the wire gives bytes (method, host, user agent, request id,
path: so invalid UTF-8, control characters, quotes, latin-1), random text where config
and the pipeline give str (API names, reasons, messages: lone surrogates included),
durations None / negative / huge, counts beyond int64, trace-policy entries, and a small
C buffer so that lines are flushed mid-batch and a line too long for it falls back.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apigw_core import native
from apigw_core.protocol.events import Request
from apigw_core.runtime.accesslog import AccessLog

pytestmark = pytest.mark.skipif(not native.enabled, reason="C extension not built")

EXAMPLES = int(os.environ.get("APIGW_TWIN_EXAMPLES", "1000"))
KEYS = (b"subscription-key", b"key")

wire = st.one_of(st.binary(max_size=40), st.sampled_from([b"", b"GET", b"127.0.0.1:80"]))
paths = st.one_of(st.binary(max_size=60).map(lambda b: b"/" + b),
                  st.sampled_from([b"/", b"/a?subscription-key=s3cr3t&x=1", b"*",
                                   b"http://h.example/p?key=k", b"https://h2", b""]))
text = st.one_of(st.none(), st.just(""), st.text(max_size=20),
                 st.sampled_from(["échο", "a\ud800b", 'q"\\\n\t\x01']))
secs = st.one_of(st.none(), st.floats(-1.0, 1e13, allow_nan=False),
                 st.sampled_from([0.0, 0.0005, 0.0012, 1e-7, 0.9999996, 1e12]))
counts = st.one_of(st.integers(0, 10 ** 6), st.integers(-5, 2 ** 64))


@st.composite
def entries(draw) -> tuple:
    headers = []
    for name in draw(st.lists(st.sampled_from([b"host", b"user-agent", b"accept"]),
                              max_size=3)):
        headers.append((name, draw(wire)))
    req = Request(1, draw(wire), draw(paths), headers,
                  draw(st.sampled_from([b"1.1", b"1.0", b"2", b"", b"9\xff"])))
    total = draw(secs)
    traces = draw(st.one_of(st.none(), st.just([]),
                            st.just([{"source": "s", "severity": "error", "message": "m"}])))
    return (draw(st.floats(1e9, 2e9)), 0.001 if total is None else total, draw(secs),
            draw(secs), draw(st.one_of(st.none(), wire)), b"0af7651916cd43dd8448eb211c80319c",
            draw(st.one_of(st.none(), st.sampled_from(["127.0.0.1", "::1", ""]), text)),
            req, draw(counts), draw(counts), draw(counts), draw(text) or "", draw(text) or "",
            draw(text) or "", draw(text), draw(text) or "",
            draw(st.one_of(st.none(), wire)), draw(counts), draw(text) or "", draw(text),
            traces)


def _written(tmp_path, name: str, batch: list, use_c: bool, cap: int) -> bytes:
    path = str(tmp_path / name)
    log = AccessLog(path, 10 ** 6, key_names=KEYS)
    log.use_c, log.cap = use_c, cap
    log.open()
    for e in batch:
        log.log(*e)
    log.close()
    assert log.written == len(batch)
    with open(path, "rb") as f:
        return f.read()


@settings(max_examples=max(EXAMPLES // 3, 50), deadline=None)
@given(batch=st.lists(entries(), min_size=1, max_size=8), cap=st.sampled_from([1 << 20, 900]))
def test_c_lines_equal_the_twin(tmp_path_factory, batch, cap):
    tmp = tmp_path_factory.mktemp("al")
    c = _written(tmp, "c.log", batch, True, cap)
    py = _written(tmp, "py.log", batch, False, cap)
    assert c == py
    lines = c.split(b"\n")
    assert lines[-1] == b"" and len(lines) == len(batch) + 1
    for line, e in zip(lines, batch):
        rec = json.loads(line)
        assert rec["status"] == e[8] and rec["attempts"] == e[17]
        target = e[7].target
        if target in (b"/a?subscription-key=s3cr3t&x=1", b"http://h.example/p?key=k"):
            assert b"s3cr3t" not in line and rec["path"].endswith(("key=REDACTED&x=1",
                                                                  "key=REDACTED"))


def test_c_line_is_used_and_falls_back(tmp_path):
    """The C function writes the usual line itself; a path that is not UTF-8 is left to
    Python (which writes U+FFFD), and the buffer's bound is kept."""
    from apigw_core.runtime import accesslog
    buf = native.new_buffer(64)
    args = (b"2026-12-02T10:00:00", 19, 1764669600.0059, b"", 0, b"ab", 2, b"/x", 2, 200, 0,
            2, 0.0012, -1.0, 0.0001, b'"api":"a"', 9)
    assert native.access_line(buf, 0, 64, *args) == native.AL_E_SPACE
    big = native.new_buffer(4096)
    assert native.access_line(big, 4000, 4096, *args) == native.AL_E_SPACE
    assert native.access_line(big, 5000, 4096, *args) == native.AL_E_SPACE
    n = native.access_line(big, 0, 4096, *args)
    line = bytes(native.buffer_view(big, n))
    rec = json.loads(line)
    assert line.endswith(b"}\n") and rec["duration_ms"] == 1.2 and rec["api"] == "a"
    assert rec["backend_duration_ms"] is None and rec["request_id"] is None
    assert rec["time"] == "2026-12-02T10:00:00.005Z" and rec["path"] == "/x"
    bad = args[:7] + (b"/\xff", 2) + args[9:]
    assert native.access_line(big, 0, 4096, *bad) == native.AL_E_FALLBACK
    assert accesslog._FALLBACK == native.AL_E_FALLBACK
    log = AccessLog(str(tmp_path / "a.log"), 10)
    log.open()
    req = Request(1, b"GET", b"/\xff", [(b"host", b"h")])
    log.log(1.7e9, 0.001, None, None, None, b"ab", "::1", req, 200, 0, 0, "a", "", "", None,
            "b", None, 1, "", None, None)
    assert log.pending and log.pending[-1][7] is req   # queued for the twin
    log.close()
    assert json.loads((tmp_path / "a.log").read_bytes())["path"] == "/\ufffd"
    assert log.written == 1 and log.queued == 0


def test_escape_caches_stay_bounded(tmp_path):
    """A client sending a new host each time cannot grow the caches, and a cache renewed
    when full still writes null for what is missing."""
    from apigw_core.runtime import accesslog
    log = AccessLog(str(tmp_path / "b.log"), 10 ** 5)
    log.open()
    n = accesslog._CACHE_MAX + 500
    for i in range(n):
        req = Request(1, b"GET", b"/", [(b"host", b"h%d" % i)])
        log.log(1.7e9, 0.001, None, None, None, b"ab", "::1", req, 200, 0, 0, "a", "", "",
                None, "b", None, 1, "", None, None)
        if i % 2:   # the twin's path too
            accesslog.format_entry((1.7e9, 0.001, None, None, None, b"ab", "::1", req, 200,
                                    0, 0, "a", "", "", None, "b", None, 1, "", None, None),
                                   KEYS)
    log.close()
    assert len(accesslog._CACHE) <= accesslog._CACHE_MAX
    assert len(accesslog._TAILS) <= accesslog._CACHE_MAX
    assert len(accesslog._TAILS_B) <= accesslog._CACHE_MAX
    lines = (tmp_path / "b.log").read_bytes().split(b"\n")[:-1]
    assert len(lines) == n
    last = json.loads(lines[-1])
    assert last["host"] == "h%d" % (n - 1) and last["user_agent"] is None
    assert last["subscription_id"] is None and last["operation"] is None


@pytest.mark.parametrize("use_c", [True, False])
def test_lines_past_the_buffer_are_dropped_and_counted(tmp_path, use_c):
    drops: list = []
    log = AccessLog(str(tmp_path / "d.log"), 2, drops.append)
    log.use_c = use_c
    log.open()
    req = Request(1, b"GET", b"/", [(b"host", b"h")])
    for _ in range(5):
        log.log(1.7e9, 0.001, None, None, None, b"ab", "::1", req, 200, 0, 0, "a", "", "",
                None, "b", None, 1, "", None, None)
    log.close()
    assert log.dropped == 3 and drops == [1, 1, 1] and log.written == 2
    assert len((tmp_path / "d.log").read_bytes().split(b"\n")) == 3


@settings(max_examples=EXAMPLES)
@given(starts=st.lists(st.one_of(st.floats(0, 253402300799.999),
                                 st.sampled_from([0.0, 951782400.0, 951868799.5, 4107542400.0,
                                                  253402300799.0, 1764669600.0059])),
                       min_size=1, max_size=4))
def test_put_makes_the_seconds_text_of_time_gmtime(starts):
    """apigw_al_put's own UTC second (days-to-civil, kept between lines) is the text
    time.strftime makes of time.gmtime, over the whole four-digit-year range, and each
    line lands at the batch's offset."""
    import time as _time
    batch, buf = native.new_al_batch(4096)
    off = 0
    for start in starts:
        n = native.access_put(batch, start, b"", 0, b"ab", b"/", 1, 200, 0, 0, 0.001, -1.0,
                              -1.0, b'"api":"a"')
        assert n > 0 and batch.off == off + n
        line = bytes(native.buffer_view(buf, batch.off))[off:]
        off += n
        sec = int(start)
        want = _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(sec))
        assert json.loads(line)["time"] == f"{want}.{int(start * 1000) % 1000:03d}Z"


def test_put_leaves_the_twin_what_it_must():
    """A start from year 10000 on (a fifth %Y digit), a negative one and a full buffer
    write nothing and leave the offset where it was."""
    batch, buf = native.new_al_batch(400)
    args = (b"", 0, b"ab", b"/", 1, 200, 0, 0, 0.001, -1.0, -1.0, b'"api":"a"')
    assert native.access_put(batch, 253402300800.0, *args) == native.AL_E_FALLBACK
    assert native.access_put(batch, -1.0, *args) == native.AL_E_FALLBACK
    assert batch.off == 0
    n = native.access_put(batch, 1.7e9, *args)
    assert 200 < n < 400 and batch.off == n
    assert native.access_put(batch, 1.7e9, *args) == native.AL_E_SPACE and batch.off == n
