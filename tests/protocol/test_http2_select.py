"""Protocol selection: ALPN, the prior-knowledge preface, and the HTTP/1.1 -> h2c
hand-over (with h2's own client on the other end)."""

from __future__ import annotations

import base64

import h2.config
import h2.connection
import h2.events
import pytest
from h2_helpers import PREFACE, settings_frame

from apigw_core.protocol import (
    Data,
    EndOfMessage,
    InformationalResponse,
    ProtocolError,
    Request,
    Response,
)
from apigw_core.protocol import http1
from apigw_core.protocol.alpn import alpn_protocols, h2c_settings, protocol_from_alpn, sniff
from apigw_core.protocol.http2 import ServerConnection


@pytest.mark.parametrize("data,verdict", [
    (PREFACE, "h2"), (PREFACE + b"\x00\x00", "h2"), (PREFACE[:5], None), (b"", None),
    (b"GET / HTTP/1.1\r\n", "http/1.1"), (b"PRI * HTTP/1.1", "http/1.1"), (b"P", None),
    (b"POST", "http/1.1"),
])
def test_sniff(data, verdict):
    assert sniff(data) == verdict


def test_alpn_helpers():
    assert alpn_protocols() == ["h2", "http/1.1"]
    assert alpn_protocols(h2=False) == ["http/1.1"]
    assert protocol_from_alpn("h2") == "h2"
    assert protocol_from_alpn(None) == "http/1.1"
    assert protocol_from_alpn("http/1.1") == "http/1.1"
    assert protocol_from_alpn("h2", offered=["http/1.1"]) == "http/1.1"


SETTINGS_B64 = base64.urlsafe_b64encode(b"\x00\x03\x00\x00\x00\x64").rstrip(b"=")


def upgrade_request(over: dict | None = None) -> Request:
    headers = {b"host": b"a", b"connection": b"Upgrade, HTTP2-Settings",
               b"upgrade": b"h2c", b"http2-settings": SETTINGS_B64}
    headers.update(over or {})
    return Request(1, b"GET", b"/", [(k, v) for k, v in headers.items() if v is not None],
                   upgrade=b"h2c")


def test_h2c_settings_validity():
    assert h2c_settings(upgrade_request()) == SETTINGS_B64  # 8 chars: no padding needed
    two = base64.urlsafe_b64encode(b"\x00\x03\x00\x00\x00\x64\x00\x04\x00\x01\x00\x00")
    assert h2c_settings(upgrade_request({b"http2-settings": two})) == two
    assert h2c_settings(upgrade_request({b"http2-settings": b""})) == b""
    assert h2c_settings(upgrade_request({b"http2-settings": None})) is None
    assert h2c_settings(upgrade_request({b"connection": b"Upgrade"})) is None
    assert h2c_settings(upgrade_request({b"http2-settings": b"!!"})) is None
    assert h2c_settings(upgrade_request({b"http2-settings": b"AAMAAA"})) is None  # 4 bytes
    r = upgrade_request()
    assert h2c_settings(Request(1, b"GET", b"/", r.headers, upgrade=b"websocket")) is None
    assert h2c_settings(Request(1, b"GET", b"/", r.headers + [(b"http2-settings", b"")],
                                upgrade=b"h2c")) is None


def test_from_h1_upgrade_rejects_invalid_requests():
    with pytest.raises(ProtocolError) as ei:
        ServerConnection.from_h1_upgrade(upgrade_request({b"connection": b"upgrade"}))
    assert ei.value.status_hint == 400


def test_h2c_upgrade_hand_over_end_to_end():
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    settings_header = client.initiate_upgrade_connection()
    client.data_to_send()  # the preface goes after the 101
    raw = (b"POST /up HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\n"
           b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
           b"HTTP2-Settings: " + settings_header + b"\r\n\r\nabc")
    h1 = http1.ServerConnection()
    events = h1.receive_data(raw)
    assert [type(e) for e in events] == [Request, Data, EndOfMessage]
    req = events[0]
    assert req.upgrade == b"h2c" and h2c_settings(req) is not None
    h1.send(InformationalResponse(req.stream_id, 101, [(b"connection", b"Upgrade"),
                                                       (b"upgrade", b"h2c")]))
    assert h1.data_to_send().startswith(b"HTTP/1.1 101 ")
    # the client's preface arrives right behind the request
    client_preface = PREFACE + settings_frame()
    conn, first = ServerConnection.from_h1_upgrade(req, h1.trailing_data + client_preface,
                                                   body=events[1].data)
    assert first == [Request(1, b"POST", b"/up", [(b"host", b"example.com"),
                                                  (b"content-length", b"3")], b"2"),
                     Data(1, b"abc"), EndOfMessage(1)]
    conn.send(Response(1, 200, [(b"content-type", b"text/plain")]))
    conn.send(Data(1, b"done"))
    conn.send(EndOfMessage(1))
    got = client.receive_data(conn.data_to_send())
    kinds = [type(e).__name__ for e in got]
    assert "ResponseReceived" in kinds and "StreamEnded" in kinds
    body = b"".join(e.data for e in got if isinstance(e, h2.events.DataReceived))
    assert body == b"done"
    # and the connection goes on as HTTP/2: stream 3 from the client
    client.send_headers(3, [(":method", "GET"), (":scheme", "http"), (":path", "/2"),
                            (":authority", "example.com")], end_stream=True)
    evs = conn.receive_data(client.data_to_send())
    assert [type(e) for e in evs] == [Request, EndOfMessage] and evs[0].stream_id == 3
