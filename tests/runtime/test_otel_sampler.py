"""runtime/otel.py's sampler, in-process: the SDK's rules over our ids (parent-based
follows the client's sampled flag; traceidratio compares the trace id's low 64 bits, as
the SDK's TraceIdRatioBased does, so both agree on every id)."""

from __future__ import annotations

import random

import pytest

pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased  # noqa: E402

from apigw_core.gateway.config._telemetry import OtelConfig  # noqa: E402
from apigw_core.gateway.tracecontext import TraceContext  # noqa: E402
from apigw_core.runtime.otel import Otel  # noqa: E402


def otel(sampler: str, ratio: float = 1.0) -> Otel:
    o = Otel(OtelConfig(endpoint="http://127.0.0.1:9/v1/traces", sampler=sampler, ratio=ratio))
    return o


def ctx(trace: int, parent: bool = False, flags: bytes = b"00") -> TraceContext:
    return TraceContext(b"%032x" % trace, b"00f067aa0ba902b7" if parent else None,
                        b"1111111111111111", flags)


def test_ratio_agrees_with_the_sdk():
    o = otel("traceidratio", 0.3)
    sdk = TraceIdRatioBased(0.3)
    rng = random.Random(7)
    ids = [rng.getrandbits(128) or 1 for _ in range(2000)]
    ours = [o.sampled(ctx(t)) for t in ids]
    theirs = [sdk.should_sample(None, t, "x").decision.is_sampled() for t in ids]
    assert ours == theirs
    assert 450 < sum(ours) < 750
    o.shutdown()


def test_parent_based_and_fixed():
    pb = otel("parentbased_traceidratio", 0.0)
    assert pb.sampled(ctx(5, parent=True, flags=b"01"))
    assert not pb.sampled(ctx(5, parent=True, flags=b"00"))
    assert not pb.sampled(ctx(5))                          # a new trace: ratio 0
    on, off = otel("always_on"), otel("always_off")
    assert on.sampled(ctx(5, parent=True, flags=b"00"))    # not parent-based: ignores it
    assert not off.sampled(ctx(5, parent=True, flags=b"01"))
    assert otel("parentbased_always_off").sampled(ctx(5, parent=True, flags=b"01"))
    for o in (pb, on, off):
        o.shutdown()


@pytest.mark.parametrize("sampler,ratio", [("traceidratio", 0.3), ("parentbased_traceidratio",
                                                                    0.5),
                                           ("always_on", 1.0), ("always_off", 1.0)])
def test_root_decision_from_the_draw_is_the_trace_ids(sampler, ratio):
    """telemetry.wrap decides a new trace from the int its ids were drawn as
    (`sampled_root(r & MASK64)`); that is `sampled` of the trace id made of that draw."""
    from apigw_core.gateway.tracecontext import forward_trace
    o = otel(sampler, ratio)
    rng = random.Random(11)
    agree = []
    for _ in range(2000):
        r = rng.getrandbits(192)
        ids = b"%048x" % r
        headers: list = []
        root = o.sampled_root(r & ((1 << 64) - 1))
        tc = forward_trace(headers, ids[:16], ids[16:], b"01" if root else b"00")
        assert root == o.sampled(tc)
        assert headers == [(b"traceparent", b"00-%s-%s-%s" % (ids[16:], ids[:16],
                                                                  b"01" if root else b"00"))]
        agree.append(root)
    if sampler == "always_on":
        assert all(agree)
    elif sampler == "always_off":
        assert not any(agree)
    else:
        assert 0.2 * 2000 < sum(agree) < 0.6 * 2000
