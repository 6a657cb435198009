"""http2.ClientConnection: request heads on the wire, responses as neutral events, bad
backend responses as stream resets, stream limits and GOAWAY, and interop with h2 itself."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import pytest
from h2_helpers import (
    CANCEL,
    FLOW_CONTROL_ERROR,
    NO_ERROR,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    RawServer,
    RstStreamFrame,
    WindowUpdateFrame,
    merge_data,
    rsts,
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
from apigw_core.protocol.http2 import ClientConnection, H2Limits


def ready(settings=None, **kw) -> RawServer:
    rs = RawServer(**kw)
    rs.handshake(settings)
    return rs


def sent_heads(rs: RawServer) -> list:
    return [(f.stream_id, f.headers, "END_STREAM" in f.flags)
            for f in rs.read() if isinstance(f, HeadersFrame)]


def test_preface_settings_and_connection_window():
    rs = RawServer()
    frames = rs.handshake()
    s = frames[0].settings
    assert s[2] == 0 and s[3] == 100 and s[4] == 65536  # no push; our limits
    assert any(isinstance(f, WindowUpdateFrame) and f.stream_id == 0 for f in frames)


def test_request_head_mapping():
    rs = ready(scheme=b"https")
    c = rs.client
    assert c.next_stream_id == 1
    c.send(Request(1, b"GET", b"/a?b", [(b"Host", b"api:8443"), (b"Accept", b"*/*"),
                                         (b"connection", b"keep-alive"), (b"te", b"gzip")]))
    c.send(EndOfMessage(1))
    assert c.next_stream_id == 3
    c.send(Request(3, b"GET", b"http://other.example/x", [(b"host", b"ignored")]))
    c.send(EndOfMessage(3))
    c.send(Request(5, b"CONNECT", b"db:5432", []))
    assert sent_heads(rs) == [
        (1, [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"api:8443"),
             (b":path", b"/a?b"), (b"accept", b"*/*")], True),
        (3, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"other.example"),
             (b":path", b"/x")], True),
        (5, [(b":method", b"CONNECT"), (b":authority", b"db:5432")], False)]


def test_request_usage_errors():
    rs = ready()
    c = rs.client
    with pytest.raises(UsageError):
        c.send(Request(2, b"GET", b"/", [(b"host", b"a")]))   # even id
    with pytest.raises(UsageError):
        c.send(Request(1, b"G T", b"/", [(b"host", b"a")]))
    with pytest.raises(UsageError):
        c.send(Request(1, b"GET", b"no-slash", [(b"host", b"a")]))
    with pytest.raises(UsageError):
        c.send(Request(1, b"GET", b"/", [(b"x", b"a\r\nb")]))
    with pytest.raises(UsageError):  # the server did not enable extended CONNECT
        c.send(Request(1, b"CONNECT", b"/ws", [(b"host", b"a")], protocol=b"websocket"))
    with pytest.raises(UsageError):
        c.send(Response(1, 200, []))
    c.send(Request(3, b"POST", b"/", [(b"host", b"a"), (b"content-length", b"2")]))
    with pytest.raises(UsageError):
        c.send(Request(1, b"GET", b"/", [(b"host", b"a")]))  # lower than one used
    with pytest.raises(UsageError):
        c.send(Data(3, b"abc"))
    with pytest.raises(UsageError):
        c.send(EndOfMessage(3))


def test_extended_connect_when_the_server_allows_it():
    rs = ready({8: 1})
    rs.client.send(Request(1, b"CONNECT", b"/chat", [(b"host", b"a")], protocol=b"websocket"))
    ((_, head, end),) = sent_heads(rs)
    assert head == [(b":method", b"CONNECT"), (b":scheme", b"https"), (b":authority", b"a"),
                    (b":path", b"/chat"), (b":protocol", b"websocket")] and not end


def test_response_events_with_informational_data_and_trailers():
    rs = ready()
    c = rs.client
    c.send(Request(1, b"POST", b"/", [(b"host", b"a")]))
    c.send(EndOfMessage(1))
    rs.read()
    evs = rs.send(rs.headers(1, [(b":status", b"103"), (b"link", b"</a>")]),
                  rs.headers(1, [(b":status", b"200"), (b"content-length", b"4")]),
                  DataFrame(1, b"ab"), DataFrame(1, b"cd", pad_length=3, flags=["PADDED"]),
                  rs.headers(1, [(b"grpc-status", b"0")], end_stream=True))
    assert merge_data(evs) == [
        InformationalResponse(1, 103, [(b"link", b"</a>")]),
        Response(1, 200, [(b"content-length", b"4")], b"2"),
        Data(1, b"abcd"),
        EndOfMessage(1, [(b"grpc-status", b"0")])]
    assert c.open_streams == 0


BAD_RESPONSES = {
    "no-status": [(b"content-type", b"x")],
    "status-not-first": [(b"x", b"1"), (b":status", b"200")],
    "bad-status": [(b":status", b"20")],
    "status-101": [(b":status", b"101")],
    "request-pseudo": [(b":status", b"200"), (b":path", b"/")],
    "connection-field": [(b":status", b"200"), (b"connection", b"close")],
    "uppercase": [(b":status", b"200"), (b"X-A", b"1")],
    "bad-value": [(b":status", b"200"), (b"x", b"a\nb")],
}


@pytest.mark.parametrize("name", sorted(BAD_RESPONSES))
def test_malformed_response_resets_that_stream_only(name):
    rs = ready()
    c = rs.client
    for sid in (1, 3):
        c.send(Request(sid, b"GET", b"/", [(b"host", b"a")]))
        c.send(EndOfMessage(sid))
    rs.read()
    evs = rs.send(rs.headers(1, BAD_RESPONSES[name]))
    assert evs == [StreamReset(1, PROTOCOL_ERROR)]
    assert [(f.stream_id, f.error_code) for f in rsts(rs.read())] == [(1, PROTOCOL_ERROR)]
    evs = rs.send(rs.headers(3, [(b":status", b"200")], end_stream=True))
    assert evs == [Response(3, 200, [], b"2"), EndOfMessage(3)]
    assert rs.error is None


def test_body_rules_for_head_204_and_content_length():
    rs = ready()
    c = rs.client
    c.send(Request(1, b"HEAD", b"/", [(b"host", b"a")]))
    c.send(EndOfMessage(1))
    c.send(Request(3, b"GET", b"/", [(b"host", b"a")]))
    c.send(EndOfMessage(3))
    rs.read()
    evs = rs.send(rs.headers(1, [(b":status", b"200"), (b"content-length", b"10")],
                             end_stream=True))
    assert evs == [Response(1, 200, [(b"content-length", b"10")], b"2"), EndOfMessage(1)]
    evs = rs.send(rs.headers(3, [(b":status", b"204")]), DataFrame(3, b"x"))
    assert evs == [Response(3, 204, [], b"2"), StreamReset(3, PROTOCOL_ERROR)]


def test_server_limits_and_can_open():
    rs = ready({3: 2})
    c = rs.client
    assert c.max_streams == 2
    c.send(Request(1, b"GET", b"/", [(b"host", b"a")]))
    c.send(Request(3, b"GET", b"/", [(b"host", b"a")]))
    assert not c.can_open
    with pytest.raises(UsageError):
        c.send(Request(5, b"GET", b"/", [(b"host", b"a")]))
    rs.read()
    rs.send(RstStreamFrame(1, error_code=REFUSED_STREAM))
    assert c.can_open


def test_graceful_goaway_refuses_streams_above_last_and_lets_the_rest_finish():
    rs = ready()
    c = rs.client
    for sid in (1, 3, 5):
        c.send(Request(sid, b"GET", b"/", [(b"host", b"a")]))
        c.send(EndOfMessage(sid))
    rs.read()
    evs = rs.send(GoAwayFrame(0, last_stream_id=1, error_code=NO_ERROR))
    assert evs == [StreamReset(3, REFUSED_STREAM), StreamReset(5, REFUSED_STREAM),
                   ConnectionClosed(NO_ERROR, 1)]
    assert not c.can_open and not c.should_close
    with pytest.raises(UsageError):
        c.send(Request(7, b"GET", b"/", [(b"host", b"a")]))
    evs = rs.send(rs.headers(1, [(b":status", b"200")], end_stream=True))
    assert evs == [Response(1, 200, [], b"2"), EndOfMessage(1)]
    assert c.should_close


def test_goaway_with_error_and_eof():
    rs = ready()
    c = rs.client
    c.send(Request(1, b"GET", b"/", [(b"host", b"a")]))
    rs.read()
    evs = rs.send(GoAwayFrame(0, last_stream_id=1, error_code=2))
    assert evs == [StreamReset(1, 2), ConnectionClosed(2, 1)]
    assert c.should_close and c.receive_data(b"") == []
    rs = ready()
    rs.client.send(Request(1, b"GET", b"/", [(b"host", b"a")]))
    assert rs.client.receive_data(b"") == [StreamReset(1, CANCEL), ConnectionClosed()]


def test_backend_connection_error_is_502_with_code():
    rs = ready()
    rs.client.send(Request(1, b"GET", b"/", [(b"host", b"a")]))
    rs.read()
    with pytest.raises(ProtocolError) as ei:
        rs.client.receive_data(WindowUpdateFrame(0, window_increment=2**31 - 1).serialize())
    assert ei.value.status_hint == 502 and ei.value.error_code == FLOW_CONTROL_ERROR


def test_push_promise_is_a_connection_error():
    rs = ready()
    rs.client.send(Request(1, b"GET", b"/", [(b"host", b"a")]))
    rs.read()
    pp = (b"\x00\x00\x05\x05\x04\x00\x00\x00\x01" + b"\x00\x00\x00\x02" + b"\x82")
    rs.send(pp)
    assert rs.error is not None and rs.error.error_code == PROTOCOL_ERROR


# -- interop: our client against h2 itself ----------------------------------------------

def test_interop_with_h2_server():
    srv = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    srv.initiate_connection()
    c = ClientConnection(scheme=b"http")
    for sid in (1, 3):
        c.send(Request(sid, b"POST", b"/up", [(b"host", b"a")]))
        c.send(Data(sid, b"x" * 70000))   # more than the 65535 window: waits
        c.send(EndOfMessage(sid, [(b"x-sum", b"1")]))
    got: dict[int, int] = {1: 0, 3: 0}
    ended = set()
    client_events = []
    for _ in range(50):
        for ev in srv.receive_data(c.data_to_send()):
            if isinstance(ev, h2.events.DataReceived):
                got[ev.stream_id] += len(ev.data)
                srv.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                ended.add(ev.stream_id)
                srv.send_headers(ev.stream_id, [(":status", "200")])
                srv.send_data(ev.stream_id, b"ok", end_stream=True)
        data = srv.data_to_send()
        if data:
            client_events += c.receive_data(data)
        if ended == {1, 3} and not data:
            break
    assert got == {1: 70000, 3: 70000} and ended == {1, 3}
    assert merge_data(client_events) == [
        Response(1, 200, [], b"2"), Data(1, b"ok"), EndOfMessage(1),
        Response(3, 200, [], b"2"), Data(3, b"ok"), EndOfMessage(3)]


def test_limits_object_is_used():
    c = ClientConnection(limits=H2Limits(initial_stream_window=1 << 20))
    rs = RawServer(client=c)
    assert rs.handshake()[0].settings[4] == 1 << 20
