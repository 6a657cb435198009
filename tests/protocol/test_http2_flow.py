"""HTTP/2 flow control both ways: credit goes back only when the application acknowledges
what it consumed (a slow consumer slows its peer; memory stays within the windows), and
our sending never exceeds the peer's windows or frame size (queued data waits)."""

from __future__ import annotations

import pytest
from h2_helpers import (
    FLOW_CONTROL_ERROR,
    POST,
    DataFrame,
    Pair,
    RawClient,
    RstStreamFrame,
    WindowUpdateFrame,
    settings_frame,
)

from apigw_core.protocol import Data, EndOfMessage, Request, Response, StreamReset, UsageError
from apigw_core.protocol.http2 import ClientConnection, H2Limits, ServerConnection


def body_bytes(events, sid=None) -> int:
    return sum(len(e.data) for e in events
               if isinstance(e, Data) and (sid is None or e.stream_id == sid))


def data_frames(sid: int, data: bytes) -> list:
    return [DataFrame(sid, data[i:i + 16384]) for i in range(0, len(data), 16384)]


def upload_pair(**limits) -> Pair:
    return Pair(server=ServerConnection(limits=H2Limits(**limits)))


def test_slow_consumer_stops_its_peer_after_one_stream_window():
    p = upload_pair(initial_stream_window=65536)
    c = p.client
    c.send(Request(1, b"POST", b"/up", [(b"host", b"a")]))
    c.send(Data(1, b"x" * 300_000))
    c.send(EndOfMessage(1))
    sev, _ = p.exchange()
    got = body_bytes(sev)
    assert got == 65536            # one window, not a byte more
    assert c.available(1) == 0     # the client knows it must wait
    assert c._queued_total == 300_000 - 65536
    # the consumer takes 40 KiB: WINDOW_UPDATE (over half a window) lets 40 KiB more in
    p.server.acknowledge_received(1, 40_000)
    sev, _ = p.exchange()
    assert body_bytes(sev) == 40_000
    # draining everything as it comes: all of it arrives, then EndOfMessage
    total = got + 40_000
    p.server.acknowledge_received(1, total - 40_000)
    for _ in range(50):
        sev, _ = p.exchange()
        n = body_bytes(sev)
        total += n
        if n:
            p.server.acknowledge_received(1, n)
        if any(isinstance(e, EndOfMessage) for e in sev):
            break
    assert total == 300_000


def test_connection_window_bounds_all_streams_together():
    p = upload_pair(initial_stream_window=65536, initial_connection_window=200_000)
    c = p.client
    for sid in range(1, 20, 2):
        c.send(Request(sid, b"POST", b"/", [(b"host", b"a")]))
        c.send(Data(sid, b"y" * 65536))
    sev, _ = p.exchange()
    assert body_bytes(sev) <= 200_000
    assert all(body_bytes(sev, sid) <= 65536 for sid in range(1, 20, 2))
    # nothing acknowledged: nothing more comes however often we shuttle
    assert body_bytes(p.exchange()[0]) == 0


def test_available_and_sending_never_exceed_peer_windows_or_frame_size():
    rc = RawClient()
    rc.send_bytes(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + settings_frame({4: 10}))
    rc.read()
    rc.send(rc.headers(1))
    s = rc.server
    s.send(Response(1, 200, []))
    assert s.available(1) == 10
    s.send(Data(1, b"z" * 100))
    assert s.available(1) == 0
    s.send(EndOfMessage(1))
    frames = rc.read()
    data = [f for f in frames if isinstance(f, DataFrame)]
    assert [len(f.data) for f in data] == [10] and "END_STREAM" not in data[0].flags
    rc.send(WindowUpdateFrame(1, window_increment=30))
    data = [f for f in rc.read() if isinstance(f, DataFrame)]
    assert [len(f.data) for f in data] == [30]
    rc.send(WindowUpdateFrame(1, window_increment=1000))
    data = [f for f in rc.read() if isinstance(f, DataFrame)]
    assert [len(f.data) for f in data] == [60] and "END_STREAM" in data[-1].flags


def test_big_response_is_split_at_the_peer_max_frame_size():
    rc = RawClient()
    rc.handshake({4: 1 << 20})
    rc.send(WindowUpdateFrame(0, window_increment=1 << 20))
    rc.send(rc.headers(1))
    rc.server.send(Response(1, 200, []))
    rc.server.send(Data(1, b"q" * 50_000))
    rc.server.send(EndOfMessage(1))
    sizes = [len(f.data) for f in rc.read() if isinstance(f, DataFrame)]
    assert sizes == [16384, 16384, 16384, 848] and sum(sizes) == 50_000


def test_window_shrinking_by_settings_is_respected():
    rc = RawClient()
    rc.handshake()
    rc.send(rc.headers(1))
    rc.server.send(Response(1, 200, []))
    rc.send(settings_frame({4: 0}))  # §6.9.2: windows may go to zero (or below)
    rc.server.send(Data(1, b"abc"))
    assert not [f for f in rc.read() if isinstance(f, DataFrame)]
    rc.send(WindowUpdateFrame(1, window_increment=3))
    assert [f.data for f in rc.read() if isinstance(f, DataFrame)] == [b"abc"]


def test_padding_credit_is_returned_without_the_application():
    rc = RawClient(limits=H2Limits(initial_connection_window=65535))
    rc.handshake()
    for sid in range(1, 21, 2):
        rc.send(rc.headers(sid, POST, end_stream=False))
        for _ in range(30):  # 30 x 256 flow-controlled bytes, 1 of them data
            rc.send(DataFrame(sid, b"d", pad_length=254, flags=["PADDED"]))
    assert rc.error is None  # 76800 flow-controlled bytes > 65535: padding was credited
    assert body_bytes(rc.events) == 300


def test_reset_stream_returns_its_unconsumed_credit():
    rc = RawClient(limits=H2Limits(initial_connection_window=65535))
    rc.handshake()
    rc.send(rc.headers(1, POST, end_stream=False), *data_frames(1, b"a" * 60_000))
    assert rc.error is None
    rc.send(RstStreamFrame(1, error_code=8))
    rc.send(rc.headers(3, POST, end_stream=False), *data_frames(3, b"b" * 60_000))
    assert rc.error is None and body_bytes(rc.events, 3) == 60_000
    # whereas with credit kept by the consumer, the same bytes overflow the window
    rc.send(rc.headers(5, POST, end_stream=False), *data_frames(5, b"c" * 60_000))
    assert rc.error is not None and rc.error.error_code == FLOW_CONTROL_ERROR


def test_acknowledge_rules():
    p = upload_pair()
    p.client.send(Request(1, b"POST", b"/", [(b"host", b"a")]))
    p.client.send(Data(1, b"abc"))
    p.exchange()
    with pytest.raises(UsageError):
        p.server.acknowledge_received(1, 4)
    p.server.acknowledge_received(1, 3)
    p.server.acknowledge_received(99, 10)  # unknown / gone: nothing to give back
    p.client.send(StreamReset(1, 8))
    p.exchange()
    p.server.acknowledge_received(1, 1)    # after the reset: ignored


def test_stream_memory_is_bounded_by_the_window_whatever_the_client_sends():
    # A client that ignores our window is a FLOW_CONTROL_ERROR, so what we hold for a
    # stream the application does not read never exceeds the window.
    rc = RawClient(limits=H2Limits(initial_stream_window=16384))
    rc.handshake()
    rc.send(rc.headers(1, POST, end_stream=False))
    rc.send(DataFrame(1, b"x" * 16384))
    assert rc.error is None
    rc.send(DataFrame(1, b"x"))
    assert rc.error is not None and rc.error.error_code == FLOW_CONTROL_ERROR


def test_lazy_framing_rotates_streams_waiting_for_connection_window():
    rc = RawClient()
    rc.handshake({4: 1 << 20})  # big stream windows; the connection window stays 65535
    rc.send(rc.headers(1), rc.headers(3))
    for sid in (1, 3):
        rc.server.send(Response(sid, 200, []))
        rc.server.send(Data(sid, b"w" * 65535))
    first = {f.stream_id for f in rc.read() if isinstance(f, DataFrame)}
    rc.send(WindowUpdateFrame(0, window_increment=16384))
    second = {f.stream_id for f in rc.read() if isinstance(f, DataFrame)}
    assert first == {1} and second == {3}  # stream 3 gets its turn


def test_client_available_before_the_stream_is_framed():
    c = ClientConnection()
    c.send(Request(1, b"POST", b"/", [(b"host", b"a")]))
    assert c.available(1) == 65535
    c.send(Data(1, b"x" * 1000))
    assert c.available(1) == 64535
    c.send(EndOfMessage(1))
    assert c.available(1) == 0


def test_queued_counts_what_waits_for_the_peer_window():
    """`queued()` is what a driver waits on once a message has ended (available() is 0
    then): body bytes sent by the application and not framed for lack of window."""
    from apigw_core.protocol import EndOfMessage, Request
    from apigw_core.protocol.http2 import ClientConnection, ServerConnection
    client, server = ClientConnection(scheme=b"http"), ServerConnection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    client.send(Request(1, b"POST", b"/", [(b"host", b"h")]))
    client.send(Data(1, b"x" * 100_000))  # more than the server's stream window
    client.send(EndOfMessage(1))
    assert client.queued(1) == 100_000
    server.receive_data(client.data_to_send())
    assert client.queued(1) == 100_000 - server.limits.initial_stream_window
    assert client.available(1) == 0
    assert client.queued(99) == 0


def test_stalled_only_when_the_windows_hold_queued_bytes_back():
    """`stalled()` is what an upload's flush waits on: a whole request queued at once that
    the windows take (a unary gRPC call) does not wait for the writer; one bigger than the
    stream window does, until the peer's WINDOW_UPDATE makes room."""
    client, server = ClientConnection(scheme=b"http"), ServerConnection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    window = server.limits.initial_stream_window
    client.send(Request(1, b"POST", b"/", [(b"host", b"h")]))
    assert not client.stalled(1)                    # a head, no body bytes
    client.send(Data(1, b"x" * 69))
    client.send(EndOfMessage(1))
    assert client.queued(1) == 69 and client.available(1) == 0 and not client.stalled(1)
    client.send(Request(3, b"POST", b"/", [(b"host", b"h")]))
    client.send(Data(3, b"y" * (window + 1)))
    assert client.stalled(3)                        # open body, no room left
    client.send(EndOfMessage(3))
    assert client.stalled(3)                        # ended, one byte more than the window
    server.receive_data(client.data_to_send())      # all of stream 1, a window of 3
    assert not client.stalled(1) and client.queued(3) == 1
    assert client.stalled(3)                        # no credit back yet
    server.acknowledge_received(3, window)
    client.receive_data(server.data_to_send())
    assert not client.stalled(3)
    assert not client.stalled(99)
