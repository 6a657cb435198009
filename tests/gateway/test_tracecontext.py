"""W3C Trace Context rules (gateway/tracecontext.py), in memory: what is valid, what is
kept, what is replaced, and what the next hop gets."""

from __future__ import annotations

import pytest

from apigw_core.gateway.tracecontext import forward_trace, parse_traceparent

TRACE = b"4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = b"00f067aa0ba902b7"
VALID = b"00-" + TRACE + b"-" + PARENT + b"-01"
SPAN = b"a" * 16
NEW = b"b" * 32


def test_valid_parsed():
    assert parse_traceparent(VALID) == (TRACE, PARENT, b"01")
    # a future version: its first four fields, extra ones after a dash
    assert parse_traceparent(b"01-" + TRACE + b"-" + PARENT + b"-01-what") == \
        (TRACE, PARENT, b"01")


@pytest.mark.parametrize("bad", [
    b"", b"garbage", VALID[:-1], VALID + b"0", VALID.upper(),
    b"ff-" + TRACE + b"-" + PARENT + b"-01",               # version ff is invalid
    b"00-" + b"0" * 32 + b"-" + PARENT + b"-01",            # all-zero trace id
    b"00-" + TRACE + b"-" + b"0" * 16 + b"-01",             # all-zero parent
    b"00-" + TRACE + b"-" + PARENT + b"-01-extra",          # version 00 has 4 fields
    b"00_" + TRACE + b"-" + PARENT + b"-01",
    b"00-" + TRACE[:-1] + b"g-" + PARENT + b"-01",
])
def test_invalid_refused(bad):
    assert parse_traceparent(bad) is None


def test_kept_with_a_new_parent_and_its_state():
    h = [(b"host", b"x"), (b"traceparent", VALID), (b"tracestate", b"congo=t61rcWkgMzE")]
    ctx = forward_trace(h, SPAN, NEW)
    assert (ctx.trace_id, ctx.parent_id, ctx.flags) == (TRACE, PARENT, b"01")
    assert h == [(b"host", b"x"), (b"traceparent", b"00-" + TRACE + b"-" + SPAN + b"-01"),
                 (b"tracestate", b"congo=t61rcWkgMzE")]


def test_started_when_absent():
    h = [(b"host", b"x")]
    ctx = forward_trace(h, SPAN, NEW)
    assert ctx.parent_id is None and ctx.trace_id == NEW
    assert h == [(b"host", b"x"), (b"traceparent", b"00-" + NEW + b"-" + SPAN + b"-00")]


@pytest.mark.parametrize("fields", [
    [(b"traceparent", b"00-nothex")],
    [(b"traceparent", VALID), (b"traceparent", VALID)],     # duplicates are invalid
])
def test_bad_one_replaced_and_its_state_dropped(fields):
    h = [(b"host", b"x"), *fields, (b"tracestate", b"a=b")]
    ctx = forward_trace(h, SPAN, NEW)
    assert ctx.trace_id == NEW and ctx.parent_id is None
    assert h == [(b"host", b"x"), (b"traceparent", b"00-" + NEW + b"-" + SPAN + b"-00")]
