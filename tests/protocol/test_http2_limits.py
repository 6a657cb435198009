"""HTTP/2 header-section limits, sans-IO: what is merely too large (431 on its stream, the
connection goes on: RFC 9113 §10.5.1) and what is a flood (GOAWAY ENHANCE_YOUR_CALM).

`H2Limits.max_header_section` (bytes, §6.5.2 size) and `max_header_fields` (regular
fields, cookie crumbs joined) are the soft limits; `max_header_list_size` stays the flood
cap.  Here: 1000 bytes / 10 fields soft, 2000 bytes hard."""

from __future__ import annotations

import pytest

from h2_helpers import (ENHANCE_YOUR_CALM, POST, PROTOCOL_ERROR, REQ, ContinuationFrame,
                        DataFrame, HeadersFrame, RawClient, goaways, rsts)

from apigw_core.protocol import Data, EndOfMessage, Request, Response, StreamReset
from apigw_core.protocol.http2 import H2Limits, RequestRejected, ServerConnection

LIMITS = H2Limits(max_header_list_size=2000, max_header_section=1000, max_header_fields=10)


def ready(limits: H2Limits = LIMITS) -> RawClient:
    rc = RawClient(ServerConnection(limits=limits))
    rc.handshake()
    rc.read()
    return rc


def fields(n: int, size: int = 1) -> list[tuple[bytes, bytes]]:
    return [(b"x-f%d" % i, b"v" * size) for i in range(n)]


def section_size(headers) -> int:
    return sum(32 + len(n) + len(v) for n, v in headers)


def test_settings_announce_the_soft_limit():
    rc = RawClient(ServerConnection(limits=LIMITS))
    frames = rc.handshake()
    assert frames[0].settings[0x6] == 1000  # SETTINGS_MAX_HEADER_LIST_SIZE


def test_without_soft_limits_the_flood_cap_is_announced():
    rc = RawClient(ServerConnection(limits=H2Limits(max_header_list_size=5000)))
    assert rc.handshake()[0].settings[0x6] == 5000


@pytest.mark.parametrize("headers, why", [
    (REQ + fields(11), "more than 10 header fields"),
    (REQ + [(b"x-big", b"v" * 1000)], "header section larger than 1000 bytes"),
], ids=["fields", "bytes"])
def test_a_section_over_the_soft_limits_is_rejected_431_on_its_stream(headers, why):
    rc = ready()
    evs = rc.send(rc.headers(1, headers), rc.headers(3))
    assert rc.error is None
    assert [type(e) for e in evs] == [RequestRejected, EndOfMessage, Request, EndOfMessage]
    rej = evs[0]
    assert (rej.stream_id, rej.status_code, rej.reason) == (1, 431, why)
    assert rej.request.target == b"/" and rej.request.headers[0] == (b"host", b"example.com")
    # the stream is open for the application's answer; the other stream is untouched
    rc.server.send(Response(1, 431, [(b"content-length", b"2")]))
    rc.server.send(Data(1, b"no"))
    rc.server.send(EndOfMessage(1))
    rc.server.send(Response(3, 200, []))
    rc.server.send(EndOfMessage(3))
    frames = rc.read()
    heads = [f for f in frames if isinstance(f, HeadersFrame)]
    assert [(f.stream_id, f.headers[0]) for f in heads] == [(1, (b":status", b"431")),
                                                            (3, (b":status", b"200"))]
    assert not goaways(frames) and not rsts(frames)


def test_exactly_at_the_soft_limits_is_a_request():
    rc = ready()
    ten = REQ + fields(9)  # host (from :authority) + 9: ten regular fields
    evs = rc.send(rc.headers(1, ten))
    assert isinstance(evs[0], Request) and len(evs[0].headers) == 10
    pad = 1000 - section_size(REQ + [(b"x-pad", b"")])
    exact = REQ + [(b"x-pad", b"v" * pad)]
    assert section_size(exact) == 1000
    evs = rc.send(rc.headers(3, exact))
    assert isinstance(evs[0], Request)
    evs = rc.send(rc.headers(5, REQ + [(b"x-pad", b"v" * (pad + 1))]))
    assert isinstance(evs[0], RequestRejected)


def test_cookie_crumbs_count_as_one_field():
    """Browsers split cookies into crumbs for HPACK (§8.2.3); an HTTP/1.1 head carries one
    Cookie line, so the field count is taken after joining them."""
    rc = ready()
    evs = rc.send(rc.headers(1, REQ + [(b"cookie", b"c%d=1" % i) for i in range(12)]))
    assert isinstance(evs[0], Request)
    assert [n for n, _ in evs[0].headers].count(b"cookie") == 1


def test_hpack_state_survives_a_rejected_block():
    """The rejected block is decoded whole: its dynamic-table entries serve later blocks."""
    rc = ready()
    big = [(b"x-shared-%d" % i, b"s" * 20) for i in range(11)]
    rc.send(rc.headers(1, REQ + big))  # rejected, but its fields entered the table
    evs = rc.send(rc.headers(3, REQ + big[:5]))  # encoded as indexed references
    assert isinstance(evs[0], Request) and evs[0].headers[1:] == big[:5]


def test_a_rejected_request_body_arrives_as_usual():
    rc = ready()
    evs = rc.send(rc.headers(1, POST + fields(11), end_stream=False),
                  DataFrame(1, b"abc", flags=["END_STREAM"]))
    assert [type(e) for e in evs] == [RequestRejected, Data, EndOfMessage]


def test_over_the_flood_cap_is_goaway():
    rc = ready()
    rc.send(rc.headers(1, REQ + [(b"x-big", b"v" * 2000)]))
    assert rc.error is not None and rc.error.error_code == ENHANCE_YOUR_CALM
    assert goaways(rc.read())[0].error_code == ENHANCE_YOUR_CALM


def test_header_block_bytes_over_the_flood_cap_is_goaway():
    """The CONTINUATION guard counts against the flood cap, not the soft limit."""
    rc = ready()
    rc.send(HeadersFrame(1, b"\x00" * 1500),
            ContinuationFrame(1, b"\x00" * 600, flags=["END_HEADERS"]))
    assert rc.error is not None and rc.error.error_code == ENHANCE_YOUR_CALM


def test_trailers_over_the_soft_limits_reset_their_stream():
    rc = ready()
    rc.send(rc.headers(1, POST, end_stream=False))
    evs = rc.send(rc.headers(3, REQ), rc.headers(1, fields(11)))
    assert rc.error is None
    assert StreamReset(1, PROTOCOL_ERROR) in evs and isinstance(evs[0], Request)
    assert [f.error_code for f in rsts(rc.read())] == [PROTOCOL_ERROR]


def test_soft_limits_must_fit_under_the_flood_cap():
    with pytest.raises(ValueError):
        H2Limits(max_header_list_size=1000, max_header_section=2000)
    with pytest.raises(ValueError):
        H2Limits(max_header_fields=-1)


def test_without_soft_limits_nothing_is_rejected():
    rc = ready(H2Limits())
    evs = rc.send(rc.headers(1, REQ + fields(150)))
    assert isinstance(evs[0], Request) and len(evs[0].headers) == 151


@pytest.mark.parametrize("steps", [
    [],                                   # never set: h2's 2**32 + 1
    [("local", 7)],                       # set by us, not yet acknowledged
    [("local", 7), ("ack", None)],
    [("local", 7), ("ack", None), ("local", 3)],
    [("remote", 0)],                      # a peer's SETTINGS (applied at once)
    [("remote", 250), ("remote", 1)],
])
def test_max_streams_reads_what_h2s_property_reads(steps):
    from h2.settings import SettingCodes, Settings
    from apigw_core.protocol.http2._engine import max_streams
    for client in (True, False):
        s = Settings(client=client)
        for kind, value in steps:
            if kind == "local":
                s.max_concurrent_streams = value
            elif kind == "ack":
                s.acknowledge()
            else:
                s.update({SettingCodes.MAX_CONCURRENT_STREAMS: value})
                s.acknowledge()
            assert max_streams(s) == s.max_concurrent_streams
