"""http2.ServerConnection: the neutral-event contract (mapping, trailers, 1xx, resets,
GOAWAY/EOF), RFC 9113 §8 request validation as stream errors, and connection errors."""

from __future__ import annotations

import pytest
from h2_helpers import (
    ENHANCE_YOUR_CALM,
    FRAME_SIZE_ERROR,
    NO_ERROR,
    POST,
    PREFACE,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    REQ,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    Pair,
    PingFrame,
    RawClient,
    RstStreamFrame,
    goaways,
    merge_data,
    rsts,
    settings_frame,
)

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
from apigw_core.protocol.http2 import H2Limits, ServerConnection


def ready(**kw) -> RawClient:
    rc = RawClient(**kw)
    rc.handshake()
    return rc


# -- mapping ---------------------------------------------------------------------------------

def test_request_mapping_pseudo_headers_and_host_first():
    rc = ready()
    hdrs = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/a?b=1"),
            (b":authority", b"api.example:8443"), (b"accept", b"*/*"),
            (b"user-agent", b"t")]
    evs = rc.send(rc.headers(1, hdrs))
    assert evs == [Request(1, b"GET", b"/a?b=1",
                           [(b"host", b"api.example:8443"), (b"accept", b"*/*"),
                            (b"user-agent", b"t")], b"2"),
                   EndOfMessage(1)]


def test_host_header_without_authority_is_kept_and_matching_host_is_merged():
    rc = ready()
    evs = rc.send(rc.headers(1, [(b":method", b"GET"), (b":scheme", b"http"),
                                 (b":path", b"/"), (b"host", b"h.example")]))
    assert evs[0].headers == [(b"host", b"h.example")]
    evs = rc.send(rc.headers(3, REQ + [(b"host", b"example.com")]))
    assert evs[0].headers == [(b"host", b"example.com")]


def test_cookies_are_joined_and_expect_continue_is_surfaced():
    rc = ready()
    evs = rc.send(rc.headers(1, POST + [(b"cookie", b"a=1"), (b"x", b"y"), (b"cookie", b"b=2"),
                                        (b"expect", b"100-continue")], end_stream=False))
    req = evs[0]
    assert req.expect_continue
    assert req.headers == [(b"host", b"example.com"), (b"cookie", b"a=1; b=2"), (b"x", b"y"),
                           (b"expect", b"100-continue")]


def test_plain_connect_targets_the_authority():
    rc = ready()
    evs = rc.send(rc.headers(1, [(b":method", b"CONNECT"), (b":authority", b"db:5432")],
                             end_stream=False))
    assert evs == [Request(1, b"CONNECT", b"db:5432", [(b"host", b"db:5432")], b"2")]


def test_extended_connect_needs_the_setting_and_surfaces_protocol():
    ws = [(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"https"),
          (b":path", b"/chat"), (b":authority", b"example.com"),
          (b"sec-websocket-version", b"13")]
    rc = RawClient(limits=H2Limits(enable_connect_protocol=True))
    frames = rc.handshake()
    assert frames[0].settings.get(8) == 1  # SETTINGS_ENABLE_CONNECT_PROTOCOL advertised
    evs = rc.send(rc.headers(1, ws, end_stream=False))
    assert evs[0].protocol == b"websocket" and evs[0].target == b"/chat"
    assert evs[0].method == b"CONNECT"
    # without the setting :protocol is malformed: the stream is reset, nothing surfaces
    rc = ready()
    assert rc.send(rc.headers(1, ws, end_stream=False)) == []
    assert [(f.stream_id, f.error_code) for f in rsts(rc.read())] == [(1, PROTOCOL_ERROR)]


def test_round_trip_with_trailers_both_ways():
    p = Pair()
    c, s = p.client, p.server
    c.send(Request(1, b"POST", b"/rpc", [(b"host", b"a"), (b"te", b"trailers"),
                                         (b"content-type", b"application/grpc")]))
    c.send(Data(1, b"\x00\x00\x00\x00\x01x"))
    c.send(EndOfMessage(1, [(b"x-req-trailer", b"1")]))
    sev, _ = p.exchange()
    assert merge_data(sev) == [
        Request(1, b"POST", b"/rpc", [(b"host", b"a"), (b"te", b"trailers"),
                                      (b"content-type", b"application/grpc")], b"2"),
        Data(1, b"\x00\x00\x00\x00\x01x"),
        EndOfMessage(1, [(b"x-req-trailer", b"1")])]
    s.send(Response(1, 200, [(b"content-type", b"application/grpc")]))
    s.send(Data(1, b"\x00\x00\x00\x00\x00"))
    s.send(EndOfMessage(1, [(b"grpc-status", b"0"), (b"grpc-message", b"")]))
    _, cev = p.exchange()
    assert merge_data(cev) == [
        Response(1, 200, [(b"content-type", b"application/grpc")], b"2"),
        Data(1, b"\x00\x00\x00\x00\x00"),
        EndOfMessage(1, [(b"grpc-status", b"0"), (b"grpc-message", b"")])]


def test_informational_responses_then_final():
    p = Pair()
    p.client.send(Request(1, b"POST", b"/", [(b"host", b"a"), (b"expect", b"100-continue")]))
    p.exchange()
    p.server.send(InformationalResponse(1, 100, []))
    p.server.send(InformationalResponse(1, 103, [(b"link", b"</s.css>; rel=preload")]))
    _, cev = p.exchange()
    assert cev == [InformationalResponse(1, 100, []),
                   InformationalResponse(1, 103, [(b"link", b"</s.css>; rel=preload")])]
    with pytest.raises(UsageError):
        p.server.send(InformationalResponse(1, 101, []))
    p.client.send(EndOfMessage(1))
    p.server.send(Response(1, 204, [(b"content-length", b"0")]))
    with pytest.raises(UsageError):
        p.server.send(InformationalResponse(1, 100, []))  # after the final head
    with pytest.raises(UsageError):
        p.server.send(Data(1, b"x"))  # a 204 has no body
    p.server.send(EndOfMessage(1))
    _, cev = p.exchange()
    assert cev == [Response(1, 204, [], b"2"), EndOfMessage(1)]  # no content-length on 204
    p.server.send(Data(1, b"x"))  # the stream is complete: late sends are dropped
    assert p.server.data_to_send() == b""


def test_response_and_end_travel_in_one_headers_frame_and_data_with_end_stream():
    rc = ready()
    rc.send(rc.headers(1), rc.headers(3))
    s = rc.server
    s.send(Response(1, 200, [(b"content-length", b"0")]))
    s.send(EndOfMessage(1))
    s.send(Response(3, 200, []))
    s.send(Data(3, b"ab"))
    s.send(Data(3, b"cd"))
    s.send(EndOfMessage(3))
    frames = rc.read()
    kinds = [(type(f).__name__, f.stream_id, "END_STREAM" in f.flags) for f in frames]
    assert kinds == [("HeadersFrame", 1, True), ("HeadersFrame", 3, False),
                     ("DataFrame", 3, False), ("DataFrame", 3, True)]
    assert frames[1].headers == [(b":status", b"200")]


def test_head_response_body_is_dropped_and_content_length_enforced():
    rc = ready()
    rc.send(rc.headers(1, [(b":method", b"HEAD")] + REQ[1:]), rc.headers(3))
    s = rc.server
    s.send(Response(1, 200, [(b"content-length", b"5")]))
    s.send(Data(1, b"hello"))   # the GET path, reused: dropped
    s.send(EndOfMessage(1))
    s.send(Response(3, 200, [(b"content-length", b"2")]))
    with pytest.raises(UsageError):
        s.send(Data(3, b"abc"))
    with pytest.raises(UsageError):
        s.send(EndOfMessage(3))  # 0 of 2 bytes sent
    frames = rc.read()
    assert not [f for f in frames if isinstance(f, DataFrame) and f.data]


def test_outbound_connection_specific_fields_are_dropped_and_names_lowercased():
    rc = ready()
    rc.send(rc.headers(1))
    rc.server.send(Response(1, 200, [(b"Connection", b"close, x-hop"), (b"X-Hop", b"1"),
                                     (b"Transfer-Encoding", b"chunked"), (b"Keep-Alive", b"5"),
                                     (b"X-Kept", b"v"), (b"authorization", b"secret")]))
    rc.server.send(EndOfMessage(1))
    (f,) = rc.read()
    assert f.headers == [(b":status", b"200"), (b"x-kept", b"v"), (b"authorization", b"secret")]


@pytest.mark.parametrize("value", [b"a\r\nb", b"a\x00", b" lead", b"trail\t", b"x\ny"])
def test_outbound_bad_values_are_usage_errors(value):
    rc = ready()
    rc.send(rc.headers(1))
    with pytest.raises(UsageError):
        rc.server.send(Response(1, 200, [(b"x-v", value)]))
    with pytest.raises(UsageError):
        rc.server.send(Response(1, 200, [(b"bad name", b"v")]))


def test_usage_errors():
    rc = ready()
    rc.send(rc.headers(1))
    s = rc.server
    with pytest.raises(UsageError):
        s.send(Data(1, b"x"))                  # before the Response
    with pytest.raises(UsageError):
        s.send(Response(9, 200, []))           # a stream the client never opened
    with pytest.raises(UsageError):
        s.send(Request(1, b"GET", b"/", []))  # servers do not send requests
    s.send(Response(1, 200, []))
    with pytest.raises(UsageError):
        s.send(Response(1, 200, []))
    with pytest.raises(UsageError):
        s.send(Response(1, 99, []))


# -- malformed requests: one stream reset, the others go on ----------------------------------

MALFORMED = {
    "uppercase-name": REQ + [(b"X-Upper", b"1")],
    "connection": REQ + [(b"connection", b"keep-alive")],
    "keep-alive": REQ + [(b"keep-alive", b"5")],
    "proxy-connection": REQ + [(b"proxy-connection", b"x")],
    "transfer-encoding": REQ + [(b"transfer-encoding", b"chunked")],
    "upgrade": REQ + [(b"upgrade", b"websocket")],
    "te-gzip": REQ + [(b"te", b"gzip")],
    "value-lf": REQ + [(b"x", b"a\nb")],
    "value-cr": REQ + [(b"x", b"a\rb")],
    "value-nul": REQ + [(b"x", b"a\x00b")],
    "value-leading-space": REQ + [(b"x", b" a")],
    "value-trailing-tab": REQ + [(b"x", b"a\t")],
    "name-space": REQ + [(b"x y", b"1")],
    "name-colon": REQ + [(b"x:y", b"1")],
    "empty-name": REQ + [(b"", b"1")],
    "pseudo-after-regular": REQ[:3] + [(b"x", b"1"), REQ[3]],
    "unknown-pseudo": REQ + [(b":foo", b"1")],
    "response-pseudo": REQ + [(b":status", b"200")],
    "no-method": REQ[1:],
    "no-scheme": [REQ[0]] + REQ[2:],
    "no-path": REQ[:2] + REQ[3:],
    "empty-path": REQ[:2] + [(b":path", b"")] + REQ[3:],
    "absolute-path": REQ[:2] + [(b":path", b"http://x/")] + REQ[3:],
    "star-path-get": REQ[:2] + [(b":path", b"*")] + REQ[3:],
    "dup-method": REQ + [(b":method", b"GET")],
    "dup-path": REQ[:3] + [(b":path", b"/")] + REQ[3:],
    "dup-scheme": REQ[:2] + [(b":scheme", b"http")] + REQ[2:],
    "dup-authority": REQ + [(b":authority", b"x")],
    "authority-userinfo": REQ[:3] + [(b":authority", b"u@example.com")],
    "host-mismatch": REQ + [(b"host", b"other.example")],
    "two-hosts": REQ[:3] + [(b"host", b"a"), (b"host", b"a")],
    "no-authority-no-host": REQ[:3],
    "connect-with-path": [(b":method", b"CONNECT"), (b":authority", b"a:1"), (b":path", b"/")],
    "connect-no-authority": [(b":method", b"CONNECT")],
    "bad-method": [(b":method", b"G T")] + REQ[1:],
    "bad-content-length": REQ + [(b"content-length", b"1x")],
    "two-content-length": REQ + [(b"content-length", b"0"), (b"content-length", b"0")],
    "content-length-no-body": REQ + [(b"content-length", b"3")],
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_request_resets_only_its_stream(name):
    rc = ready()
    rc.send(rc.headers(1, POST, end_stream=False))
    evs = rc.send(rc.headers(3, MALFORMED[name]))
    assert not [e for e in evs if isinstance(e, Request)]
    frames = rc.read()
    assert [(f.stream_id, f.error_code) for f in rsts(frames)] == [(3, PROTOCOL_ERROR)]
    assert not goaways(frames) and rc.error is None
    # stream 1 still works, and a new stream after the bad one too
    assert rc.send(DataFrame(1, b"abc", flags=["END_STREAM"])) == [Data(1, b"abc"),
                                                                   EndOfMessage(1)]
    assert [type(e) for e in rc.send(rc.headers(5))] == [Request, EndOfMessage]


def test_malformed_after_the_request_is_reported_as_stream_reset():
    rc = ready()
    rc.send(rc.headers(1, POST + [(b"content-length", b"2")], end_stream=False))
    evs = rc.send(DataFrame(1, b"abc"))  # more than content-length
    assert evs == [StreamReset(1, PROTOCOL_ERROR)]
    rc.send(rc.headers(3, POST + [(b"content-length", b"2")], end_stream=False))
    evs = rc.send(DataFrame(3, b"a", flags=["END_STREAM"]))  # fewer
    assert evs == [Data(3, b"a"), StreamReset(3, PROTOCOL_ERROR)]
    rc.send(rc.headers(5, POST, end_stream=False))
    evs = rc.send(rc.headers(7, POST, end_stream=False),
                  rc.headers(5, [(b"x-t", b"1")], end_stream=False))  # trailers w/o END
    assert evs[-1] == StreamReset(5, PROTOCOL_ERROR)
    evs = rc.send(rc.headers(7, [(b":status", b"200")]))  # pseudo-header in trailers
    assert evs == [StreamReset(7, PROTOCOL_ERROR)]
    frames = rc.read()
    assert [(f.stream_id, f.error_code) for f in rsts(frames)] == [
        (1, PROTOCOL_ERROR), (3, PROTOCOL_ERROR), (5, PROTOCOL_ERROR), (7, PROTOCOL_ERROR)]
    assert not goaways(frames) and rc.error is None


# -- resets, GOAWAY, EOF ---------------------------------------------------------------------

def test_client_reset_is_reported_and_later_sends_are_dropped():
    rc = ready()
    rc.send(rc.headers(1))
    rc.read()
    evs = rc.send(RstStreamFrame(1, error_code=8))
    assert evs == [StreamReset(1, 8)]
    rc.server.send(Response(1, 200, []))  # a race, not a bug: dropped
    rc.server.send(EndOfMessage(1))
    assert rc.read() == []


def test_server_reset_goes_out():
    rc = ready()
    rc.send(rc.headers(1, POST, end_stream=False))
    rc.server.send(StreamReset(1, 2))
    (f,) = rc.read()
    assert isinstance(f, RstStreamFrame) and (f.stream_id, f.error_code) == (1, 2)
    assert rc.server.open_streams == 0


def test_eof_resets_open_streams_then_connection_closed():
    rc = ready()
    rc.send(rc.headers(1, POST, end_stream=False), rc.headers(3))
    rc.server.send(Response(3, 200, []))
    rc.server.send(EndOfMessage(3))
    rc.read()
    assert rc.server.receive_data(b"") == [StreamReset(1, 8), ConnectionClosed()]
    assert rc.server.receive_data(b"") == []
    assert rc.server.should_close
    with pytest.raises(UsageError):
        rc.server.receive_data(b"x")


def test_client_goaway_no_error_lets_streams_finish():
    rc = ready()
    rc.send(rc.headers(1))
    evs = rc.send(GoAwayFrame(0, last_stream_id=0, error_code=0))
    assert evs == [ConnectionClosed(0, 0)]
    assert not rc.server.should_close
    rc.server.send(Response(1, 200, []))
    rc.server.send(EndOfMessage(1))
    assert [type(f) for f in rc.read()] == [HeadersFrame]
    assert rc.server.should_close


def test_client_goaway_with_error_resets_everything():
    rc = ready()
    rc.send(rc.headers(1, POST, end_stream=False))
    evs = rc.send(GoAwayFrame(0, last_stream_id=0, error_code=2))
    assert evs == [StreamReset(1, 2), ConnectionClosed(2, 0)]
    assert rc.server.should_close
    assert rc.send(DataFrame(1, b"x")) == []  # ignored after that


def test_graceful_shutdown_refuses_new_streams_and_finishes_old_ones():
    rc = ready()
    rc.send(rc.headers(1, POST, end_stream=False))
    rc.server.close()
    (g,) = rc.read()
    assert isinstance(g, GoAwayFrame) and (g.last_stream_id, g.error_code) == (1, NO_ERROR)
    assert rc.send(rc.headers(3)) == []
    assert [(f.stream_id, f.error_code) for f in rsts(rc.read())] == [(3, REFUSED_STREAM)]
    assert not rc.server.should_close
    assert rc.send(DataFrame(1, b"x", flags=["END_STREAM"])) == [Data(1, b"x"),
                                                                 EndOfMessage(1)]
    rc.server.send(Response(1, 200, []))
    rc.server.send(EndOfMessage(1))
    rc.read()
    assert rc.server.should_close


def test_close_with_error_code():
    rc = ready()
    rc.server.close(ENHANCE_YOUR_CALM, debug=b"bye")
    (g,) = rc.read()
    assert (g.error_code, g.additional_data) == (ENHANCE_YOUR_CALM, b"bye")
    assert rc.server.should_close


# -- connection errors ----------------------------------------------------------------------

def test_connection_error_raises_with_code_and_queues_goaway():
    rc = ready()
    with pytest.raises(ProtocolError) as ei:
        rc.server.receive_data(DataFrame(2, b"x").serialize())  # even stream, idle
    assert ei.value.error_code == PROTOCOL_ERROR and ei.value.status_hint == 400
    (g,) = goaways(rc.read())
    assert g.error_code == PROTOCOL_ERROR
    with pytest.raises(ProtocolError):
        rc.server.receive_data(b"more")
    assert rc.server.should_close


def test_events_before_a_connection_error_are_returned_then_error_raised():
    rc = ready()
    data = rc.headers(1) + DataFrame(2, b"x").serialize()
    evs = rc.server.receive_data(data)
    assert [type(e) for e in evs] == [Request, EndOfMessage]
    assert rc.server.pending_error is not None
    with pytest.raises(ProtocolError):
        rc.server.receive_data(b"")


def test_bad_preface_and_first_frame_not_settings():
    with pytest.raises(ProtocolError) as ei:
        ServerConnection().receive_data(b"GET / HTTP/1.1\r\n\r\n")
    assert ei.value.error_code == PROTOCOL_ERROR
    s = ServerConnection()
    with pytest.raises(ProtocolError):
        s.receive_data(PREFACE + RawClient().headers(1))
    s = ServerConnection()
    assert s.receive_data(PREFACE[:10]) == [] and s.receive_data(PREFACE[10:]) == []


def test_frame_over_max_frame_size_is_refused_from_its_header_alone():
    rc = ready()
    header = (16385).to_bytes(3, "big") + bytes([0, 0]) + (1).to_bytes(4, "big")
    with pytest.raises(ProtocolError) as ei:
        rc.server.receive_data(header)  # no body needed to decide
    assert ei.value.error_code == FRAME_SIZE_ERROR


def test_concurrency_limit_refuses_the_extra_stream_only():
    rc = RawClient(limits=H2Limits(max_concurrent_streams=2))
    frames = rc.handshake()
    assert frames[0].settings[3] == 2
    rc.send(rc.headers(1, end_stream=False), rc.headers(3, end_stream=False))
    assert rc.send(rc.headers(5)) == []
    assert [(f.stream_id, f.error_code) for f in rsts(rc.read())] == [(5, REFUSED_STREAM)]
    rc.send(rc.headers(1, [(b"x-t", b"1")]))   # trailers end stream 1 ...
    rc.server.send(Response(1, 200, []))
    rc.server.send(EndOfMessage(1))            # ... and our answer closes it
    rc.read()
    assert [type(e) for e in rc.send(rc.headers(7))] == [Request, EndOfMessage]
    assert rc.error is None


def test_settings_we_advertise():
    frames = RawClient().handshake()
    s = frames[0].settings
    assert s[3] == 100 and s[6] == 65536 and s[4] == 65536 and s[5] == 16384
    (wu,) = [f for f in frames if f.type == 8]
    assert wu.stream_id == 0 and wu.window_increment == (1 << 20) - 65535


def test_limits_are_validated():
    with pytest.raises(ValueError):
        H2Limits(max_frame_size=1000)
    with pytest.raises(ValueError):
        H2Limits(initial_stream_window=2**31)
    with pytest.raises(ValueError):
        H2Limits(max_concurrent_streams=-1)


def test_settings_ack_of_peer_is_sent_and_ping_answered():
    rc = RawClient()
    rc.send_bytes(PREFACE + settings_frame({4: 1000}))
    frames = rc.read()
    assert [f.type for f in frames if "ACK" in f.flags] == [4]
    rc.send(PingFrame(0, b"12345678"))
    (pong,) = rc.read()
    assert pong.type == 6 and "ACK" in pong.flags and pong.opaque_data == b"12345678"


def test_fast_request_constructor_with_protocol_equals_dataclass():
    from apigw_core.protocol.events import _new_request
    a = _new_request(1, b"CONNECT", b"/", [], b"2", None, False, b"websocket")
    assert a == Request(1, b"CONNECT", b"/", [], b"2", None, False, b"websocket")
    assert _new_request(1, b"GET", b"/", [], b"1.1", None, False).protocol is None


def test_complete_response_before_the_request_ends_resets_with_no_error():
    rc = ready()
    rc.send(rc.headers(1, POST, end_stream=False), DataFrame(1, b"part"))
    rc.server.send(Response(1, 413, [(b"content-length", b"0")]))
    rc.server.send(EndOfMessage(1))
    frames = rc.read()
    assert [type(f) for f in frames] == [HeadersFrame, RstStreamFrame]
    assert frames[1].error_code == NO_ERROR and "END_STREAM" in frames[0].flags
    assert rc.server.open_streams == 0
    assert rc.send(DataFrame(1, b"more")) == []   # late body: no events
    assert rc.error is None


def test_outbound_buffered_counts_queued_body_and_built_frames():
    rc = RawClient()
    rc.send_bytes(PREFACE + settings_frame({4: 10}))
    rc.send(rc.headers(1))
    rc.read()
    s = rc.server
    assert s.outbound_buffered == 0
    s.send(Response(1, 200, []))
    s.send(Data(1, b"x" * 1000))
    assert s.outbound_buffered == 1000
    data = s.data_to_send()          # HEADERS + 10 bytes go; 990 wait for the window
    assert len(data) > 10 and s.outbound_buffered == 990
    rc.send(PingFrame(0, b"12345678"))  # the PING ACK waits in the built frames
    assert s.outbound_buffered == 990 + 17


def test_repeated_heads_are_checked_as_the_first():
    # parse_request / response_block remember their last head: a repeat gives the same
    # answer, in a list of its own, and a broken head is refused every time
    from hpack import NeverIndexedHeaderTuple

    from apigw_core.protocol.http2._headers import Malformed, parse_request, response_block

    head = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/a"),
            (b":authority", b"h"), (b"accept", b"*/*")]
    first, again = parse_request(head, False), parse_request(list(head), False)
    assert first == again and first[2] is not again[2]
    again[2].append((b"x", b"y"))
    assert parse_request(head, False) == first
    bad = head + [(b"connection", b"close")]
    for _ in range(2):
        with pytest.raises(Malformed):
            parse_request(bad, False)
    plain = [(b"x-token", b"a=1")]  # equal to its never-indexed twin, not the same
    block, _ = response_block(200, plain)
    assert not isinstance(block[1], NeverIndexedHeaderTuple)
    secret, _ = response_block(200, [NeverIndexedHeaderTuple(b"x-token", b"a=1")])
    assert isinstance(secret[1], NeverIndexedHeaderTuple)
    again, _ = response_block(200, plain)
    assert again == block and not isinstance(again[1], NeverIndexedHeaderTuple)
