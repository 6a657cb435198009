"""Events: frozen, slotted, equal whichever constructor built them (how much cheaper the
hot-path constructors are than the dataclass __init__ is measured in
benchmarks/test_bench_events.py, never asserted here)."""

from __future__ import annotations

import dataclasses

import pytest

from apigw_core.protocol import (
    ConnectionClosed,
    Data,
    EndOfMessage,
    InformationalResponse,
    ProtocolError,
    Request,
    Response,
    StreamReset,
    UsageError,
)
from apigw_core.protocol.events import _new_data, _new_eom, _new_request

H = [(b"host", b"a")]
ALL = [
    Request(1, b"GET", b"/", H),
    InformationalResponse(1, 100, []),
    Response(1, 200, H),
    Data(1, b"x"),
    EndOfMessage(1),
    StreamReset(3, 8),
    ConnectionClosed(),
]


@pytest.mark.parametrize("event", ALL, ids=lambda e: type(e).__name__)
def test_frozen_and_slotted(event):
    assert not hasattr(event, "__dict__")
    field = dataclasses.fields(event)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(event, field, 5)


def test_defaults():
    r = Request(1, b"GET", b"/", H)
    assert (r.http_version, r.upgrade, r.expect_continue) == (b"1.1", None, False)
    assert Response(1, 200, []).http_version == b"1.1" and Response(1, 200, []).reason == b""
    assert EndOfMessage(2).trailers == ()
    assert ConnectionClosed() == ConnectionClosed(0, None)


@pytest.mark.parametrize("fast,slow", [
    (lambda: _new_request(7, b"POST", b"/x", H, b"1.0", b"h2c", True),
     lambda: Request(7, b"POST", b"/x", H, b"1.0", b"h2c", True)),
    (lambda: _new_data(2, b"abc"), lambda: Data(2, b"abc")),
    (lambda: _new_eom(2, [(b"a", b"b")]), lambda: EndOfMessage(2, [(b"a", b"b")])),
    (lambda: _new_eom(2), lambda: EndOfMessage(2)),
])
def test_fast_constructors_build_equal_frozen_objects(fast, slow):
    a, b = fast(), slow()
    assert a == b and type(a) is type(b) and repr(a) == repr(b)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.stream_id = 9


def test_errors():
    e = ProtocolError("too big", status_hint=413, stream_id=3)
    assert (e.status_hint, e.error_code, e.stream_id, str(e)) == (413, None, 3, "too big")
    assert ProtocolError("x").status_hint == 400
    assert not issubclass(UsageError, ProtocolError) and not issubclass(ProtocolError, UsageError)
