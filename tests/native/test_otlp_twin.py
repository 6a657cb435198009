"""OTLP spans: the C encoder (native/src/otlp.c, native.otlp_span) and the pure-Python
twin (runtime/otlp.span_entry, span_into) write the same bytes; with either, the
exporter's `Otel._encode` writes a request's SERVER and CLIENT spans as span_entry builds
them; what they write decodes with opentelemetry-proto's ScopeSpans to the ids, times and kind given.

Inputs: random hex ids (both cases), names, attribute and tail blocks (random bytes for
the C == twin check, real encoded fields for the decode check), kinds, times with the
offset to Unix time; bad ids, kinds and times (NaN, negative, 2^64 ns and beyond); small
caps and offsets.
"""

from __future__ import annotations

import math
import os
from binascii import unhexlify

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apigw_core import native
from apigw_core.runtime import otlp
from otel_writers import WRITERS, writer

EXAMPLES = int(os.environ.get("APIGW_TWIN_EXAMPLES", "1000"))
needs_c = pytest.mark.skipif(not native.enabled, reason="C extension not built")


def hexes(n: int):
    return st.text("0123456789abcdefABCDEF", min_size=n, max_size=n).map(str.encode)


names = st.binary(max_size=40).map(lambda b: otlp.field(5, b))
times = st.floats(0, 1e6, allow_nan=False)
offs = st.one_of(st.floats(0, 2e9, allow_nan=False), st.just(1764669600.123456))


def c_span(args: tuple, cap: int = 1 << 16, off: int = 0) -> "int | bytes":
    trace, span, parent, name, kind, start, end, o, attrs, tail = args
    buf = native.new_buffer(max(cap, off, 1))
    n = native.otlp_span(buf, off, cap, trace, len(trace), span, len(span), parent or b"",
                         len(parent or b""), name, len(name), kind, start, end, o, attrs,
                         len(attrs), tail, len(tail))
    return n if n < 0 else bytes(native.buffer_view(buf, off + n))[off:]


spans = st.tuples(hexes(32), hexes(16), st.one_of(st.none(), hexes(16)), names,
                  st.integers(0, 127), times, times, offs, st.binary(max_size=300),
                  st.binary(max_size=200))


@needs_c
@settings(max_examples=EXAMPLES, deadline=None)
@given(args=spans, off=st.integers(0, 40))
def test_c_equals_the_twin(args, off):
    want = otlp.span_entry(*args)
    assert c_span(args, off=off, cap=off + len(want)) == want
    assert c_span(args, off=off, cap=off + len(want) - 1) == native.OTLP_E_SPACE


@needs_c
@settings(max_examples=max(EXAMPLES // 5, 50), deadline=None)
@given(args=spans, cap=st.integers(0, 120))
def test_small_caps(args, cap):
    want = otlp.span_entry(*args)
    got = c_span(args, cap=cap)
    assert got == (want if len(want) <= cap else native.OTLP_E_SPACE)


attr_blocks = st.dictionaries(st.text(min_size=1, max_size=10),
                              st.one_of(st.text(max_size=10), st.integers(0, 2 ** 40)),
                              max_size=4).map(lambda d: otlp.attributes(9, d))
tails = st.one_of(st.just(b""), st.text(max_size=20).map(otlp.status_error),
                  st.builds(lambda t, m: otlp.event(t, "policy.error", {"apim.message": m})
                            + otlp.status_error(m), st.integers(0, 2 ** 63), st.text()))


@settings(max_examples=max(EXAMPLES // 3, 50), deadline=None)
@given(trace=hexes(32), span=hexes(16), parent=st.one_of(st.none(), hexes(16)),
       name=st.text(max_size=30), kind=st.integers(0, 5), start=times, end=times, off=offs,
       attrs=attr_blocks, tail=tails)
def test_decodes_with_opentelemetry_proto(trace, span, parent, name, kind, start, end, off,
                                          attrs, tail):
    trace_pb2 = pytest.importorskip("opentelemetry.proto.trace.v1.trace_pb2")
    args = (trace, span, parent, otlp.field(5, name.encode("utf-8", "surrogatepass")), kind,
            start, end, off, attrs, tail)
    entry = otlp.span_entry(*args)
    if native.enabled:
        assert c_span(args) == entry
    if not all(0xD800 > ord(c) or ord(c) > 0xDFFF for c in name):
        return      # (protobuf refuses a string that is not UTF-8)
    ss = trace_pb2.ScopeSpans.FromString(entry)
    assert len(ss.spans) == 1
    s = ss.spans[0]
    assert s.trace_id == unhexlify(trace) and s.span_id == unhexlify(span)
    assert s.parent_span_id == (unhexlify(parent) if parent else b"")
    assert s.name == name and s.kind == kind
    assert s.start_time_unix_nano == int(start * 1e9 + off * 1e9)
    assert s.end_time_unix_nano == int(end * 1e9 + off * 1e9)


GOOD = (b"0af7651916cd43dd8448eb211c80319c", b"b7ad6b7169203331", b"00f067aa0ba902b7",
        otlp.field(5, b"GET"), 2, 1.5, 2.25, 1764669600.0, b"", b"")


def bad_inputs():
    def with_(i, v):
        return GOOD[:i] + (v,) + GOOD[i + 1:]
    yield with_(0, GOOD[0][:31])
    yield with_(0, GOOD[0][:31] + b"g")
    yield with_(1, b"b7ad6b716920333 ")
    yield with_(1, GOOD[1] + b"00")
    yield with_(2, b"00f067aa")
    yield with_(2, b"00f067aa0ba902b\xff")
    yield with_(4, 128)
    yield with_(4, 255)
    yield with_(5, math.nan)
    yield with_(6, math.inf)
    yield with_(5, -1764669601.0)
    yield with_(6, 2e10)
    yield GOOD[:5] + (0.0, 18446744073.709553, 0.0) + GOOD[8:]    # 2^64 ns
    yield GOOD[:5] + (0.0, 1.0, -1e-10) + GOOD[8:]                # -0.1 ns


@pytest.mark.parametrize("args", list(bad_inputs()))
def test_bad_input(args):
    with pytest.raises(ValueError):
        otlp.span_entry(*args)
    if native.enabled:
        assert c_span(args) == native.OTLP_E_INPUT
        assert c_span(args, cap=0) == native.OTLP_E_INPUT


@settings(max_examples=max(EXAMPLES // 5, 50), deadline=None)
@given(args=spans, which=st.integers(0, 2), junk=st.binary(min_size=1, max_size=3))
def test_random_bad_ids(args, which, junk):
    bad = list(args)
    bad[which] = (bad[which] or b"0" * 16)[:-len(junk)] + junk
    ok_hex = all(chr(c) in "0123456789abcdefABCDEF" for c in junk)
    if ok_hex:
        return
    with pytest.raises(ValueError):
        otlp.span_entry(*bad)
    if native.enabled:
        assert c_span(tuple(bad)) == native.OTLP_E_INPUT


def test_edges():
    last = GOOD[:5] + (0.0, 18446744073.70955, 0.0) + GOOD[8:]    # 2^64 - 2048 ns
    e = otlp.span_entry(*last)
    assert int.from_bytes(e[-8:], "little") == 2 ** 64 - 2048
    neg = GOOD[:5] + (-0.0, 1.0, 0.0) + GOOD[8:]                  # -0.0 ns is 0
    e = otlp.span_entry(*neg)
    assert e[-17:-9] == bytes(8)
    if native.enabled:
        assert c_span(last) == otlp.span_entry(*last) and c_span(neg) == e
    assert otlp.span_entry(*(GOOD[:2] + (b"",) + GOOD[3:])) == otlp.span_entry(
        *(GOOD[:2] + (None,) + GOOD[3:]))


# -- the twin against the exporter's own encoding ------------------------------------------

@needs_c
@settings(max_examples=EXAMPLES // 2, deadline=None)
@given(args=spans, off=st.integers(0, 40), short=st.integers(0, 3))
def test_span_into_equals_c(args, off, short):
    """span_into (bytearray) returns what native.otlp_span returns and writes the same."""
    trace, span, parent, name, kind, start, end, o, attrs, tail = args
    parent = parent or b""
    cap = off + len(otlp.span_entry(*args)) - short
    flat = (trace, len(trace), span, len(span), parent, len(parent), name, len(name), kind,
            start, end, o, attrs, len(attrs), tail, len(tail))
    cbuf, pbuf = native.new_buffer(cap + 1), bytearray(cap + 1)
    n = native.otlp_span(cbuf, off, cap, *flat)
    assert otlp.span_into(pbuf, off, cap, *flat) == n
    assert len(pbuf) == cap + 1
    if n > 0:
        assert bytes(pbuf[off:off + n]) == bytes(native.buffer_view(cbuf, off + n))[off:]
    else:
        assert n == native.OTLP_E_SPACE and not any(pbuf)


@pytest.mark.parametrize("which", WRITERS)
def test_otel_encode_writes_span_entries(which, monkeypatch):
    """A queued request (the tuple `Otel.record` appends) written by `Otel._encode` is
    the SERVER span and CLIENT spans that span_entry builds from the same values."""
    from apigw_core.gateway.config._telemetry import OtelConfig
    from apigw_core.runtime import otel as otel_mod

    writer(which, monkeypatch)
    o = otel_mod.Otel(OtelConfig(endpoint="http://127.0.0.1:9/v1/traces"))

    def encode(item: tuple, at: int = 7) -> bytes:
        buf = otel_mod._new_buffer(1 << 16)
        end = o._encode(item, buf, at, 1 << 16)
        assert end > at
        return bytes(otel_mod._view(buf, end))[at:]

    trace, server, parent = (b"0af7651916cd43dd8448eb211c80319c", b"B7AD6B7169203331",
                             b"00f067aa0ba902b7")
    c1, c2 = b"1111111111111111", b"2222222222222222"
    t_head, start, end, off = 1000.25, 1000.0, 1000.5, 1764669000.123456
    attempts = ((c1, 1000.01, "pool-a", b"b.example:8080", "http://b.example:8080/x"),
                (c2, 1000.2, "pool-a", b"[::1]:8081", "http://[::1]:8081/x"))
    e = ("policy", "reason", "message", "scope", "section", "path")
    item = (trace, server, parent, b"GET", b"/api/x?k=v", b"gw.example:443", b"https",
            "10.0.0.1", b"1.1", 502, "api", "op", "prod", "backend_error", "/api", e,
            attempts, t_head, start, end, off)
    off_ns = off * 1e9
    end_ns = int(end * 1e9 + off_ns)
    s_attrs = otel_mod._server_attrs(b"GET", b"/api/x", b"https", b"1.1", True,
                                     b"gw.example:443", "10.0.0.1", 502, "api", "op", "prod",
                                     "backend_error")
    s_tail = (otlp.event(end_ns, "policy.error", dict(zip(otel_mod._EVENT_KEYS, e)))
              + otlp.status_error("backend_error"))
    cname = otlp.field(5, b"GET")
    a1 = otel_mod._client_attrs(b"GET", "pool-a", "http://b.example:8080/x",
                                b"b.example:8080", 0, None, "retried")
    a2 = otel_mod._client_attrs(b"GET", "pool-a", "http://[::1]:8081/x", b"[::1]:8081", 1,
                                None, "backend_error")
    assert encode(item) == b"".join([
        otlp.span_entry(trace, server, parent, otlp.field(5, b"GET /api"), otlp.SERVER,
                        start, end, off, s_attrs, s_tail),
        otlp.span_entry(trace, c1, server, cname, otlp.CLIENT, 1000.01, 1000.2, off, a1,
                        otlp.status_error("retried")),
        otlp.span_entry(trace, c2, server, cname, otlp.CLIENT, 1000.2, t_head, off, a2,
                        otlp.status_error("backend_error"))])

    # a plain request: no parent, no error, one attempt that answered
    item = (trace, server, None, b"POST", b"/", b"", "http", None, b"2", 200, "", "", "",
            "", None, None, ((c1, 1000.01, "p", b"h", "http://h/"),), t_head, start, end, off)
    s_attrs = otel_mod._server_attrs(b"POST", b"/", "http", b"2", False, b"", None, 200, "",
                                     "", "", None)
    a = otel_mod._client_attrs(b"POST", "p", "http://h/", b"h", 0, 200, None)
    assert encode(item, at=0) == otlp.span_entry(
        trace, server, None, otlp.field(5, b"POST"), otlp.SERVER, start, end, off, s_attrs,
        b"") + otlp.span_entry(trace, c1, server, otlp.field(5, b"POST"), otlp.CLIENT,
                               1000.01, t_head, off, a, b"")

    # too little room, or a time that is no uint64 of nanoseconds: nothing to send
    buf = otel_mod._new_buffer(64)
    assert o._encode(item, buf, 0, 64) == native.OTLP_E_SPACE
    bad = item[:18] + (math.nan,) + item[19:]
    assert o._encode(bad, otel_mod._new_buffer(4096), 0, 4096) == native.OTLP_E_INPUT


# -- the usual request's two spans in one call (native.otlp_pair, otlp.pair_into) ----------

def _pair_c(args: tuple, cap: int, off: int = 0) -> "int | bytes":
    buf = native.new_buffer(max(cap, off, 1))
    n = native.otlp_pair(buf, off, cap, args[0], len(args[0]), *args[1:])
    return n if n < 0 else bytes(native.buffer_view(buf, off + n))[off:]


def _pair_py(args: tuple, cap: int, off: int = 0) -> "int | bytes":
    buf = bytearray(max(cap, off, 1))
    n = otlp.pair_into(buf, off, cap, args[0], len(args[0]), *args[1:])
    return n if n < 0 else bytes(buf[off:off + n])


six = st.tuples(names, st.binary(max_size=100), st.binary(max_size=30), names,
                st.binary(max_size=100), st.binary(max_size=30))
pairs = st.tuples(six, hexes(32), hexes(16), st.one_of(st.just(b""), hexes(16)), hexes(16),
                  times, times, times, times, offs)


@settings(max_examples=max(EXAMPLES // 2, 50), deadline=None)
@given(args=pairs, off=st.integers(0, 40), short=st.integers(0, 3))
def test_pair_is_the_two_span_entries(args, off, short):
    """pair_into (and C) writes the SERVER span_entry and the CLIENT one whose parent it
    is, back to back; one byte short of both is E_SPACE."""
    f, trace, span, parent, cspan, start, end, t0, t1, o = args
    want = (otlp.span_entry(trace, span, parent or None, f[0], otlp.SERVER, start, end, o,
                            f[1], f[2])
            + otlp.span_entry(trace, cspan, span, f[3], otlp.CLIENT, t0, t1, o, f[4], f[5]))
    flat = (otlp.pair_parts(*f), trace, span, parent, cspan, start, end, t0, t1, o)
    impls = [_pair_py] + ([_pair_c] if native.enabled else [])
    for impl in impls:
        assert impl(flat, off + len(want), off) == want
        assert impl(flat, off + len(want) - 1 - short, off) == otlp.E_SPACE


@settings(max_examples=max(EXAMPLES // 2, 50), deadline=None)
@given(args=pairs, parts=st.one_of(st.binary(max_size=60), six.map(
           lambda f: otlp.pair_parts(*f)).flatmap(
           lambda p: st.sampled_from([p[:-1], p + b"\0", p[:3]]))),
       which=st.integers(0, 4), junk=st.sampled_from([b"g", b"\xff", b"", b"0"]),
       cap=st.integers(0, 600))
def test_pair_c_equals_the_twin_on_bad_input(args, parts, which, junk, cap):
    """Random or cut `parts`, an id made bad or of the wrong length, any cap: C and the
    twin give the same result and bytes."""
    flat = list((parts,) + args[1:])
    if which:
        flat[which] = flat[which][:-1] + junk
    flat = tuple(flat)
    got = _pair_py(flat, cap)
    if native.enabled:
        assert _pair_c(flat, cap) == got
    if which and junk in (b"g", b"\xff", b"") and (which != 3 or flat[3]):
        assert got == otlp.E_INPUT


def test_pair_checks_the_client_span_before_space():
    """A bad CLIENT span id is E_INPUT even with no room at all (input before space)."""
    f = (otlp.field(5, b"GET"), b"", b"", otlp.field(5, b"GET"), b"", b"")
    flat = (otlp.pair_parts(*f), b"0" * 32, b"1" * 16, b"", b"2" * 15 + b"x", 1.0, 2.0, 1.1,
            1.9, 0.0)
    assert _pair_py(flat, 0) == otlp.E_INPUT
    if native.enabled:
        assert _pair_c(flat, 0) == otlp.E_INPUT
        assert _pair_c(flat[:4] + (b"2" * 16,) + flat[5:], 0) == otlp.E_SPACE
