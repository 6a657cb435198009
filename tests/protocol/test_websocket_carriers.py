"""WebSocket end to end in memory: real clients and backends (wsproto with its h11 handshake,
and the websockets library's sans-IO protocols) through our HTTP/1.1 and HTTP/2 connections,
the handshake checks and the relay, wired the way a driver would wire them."""

from __future__ import annotations

from typing import Optional

import pytest
from h2_helpers import Pair
from support import lazy_module
from wsproto import WSConnection
from wsproto.connection import ConnectionType
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    RejectConnection,
    RejectData,
    Request as WsprotoRequest,
    TextMessage,
)
from wsproto.frame_protocol import FrameProtocol

from apigw_core.protocol import (
    Data,
    EndOfMessage,
    InformationalResponse,
    ProtocolError,
    Request,
    Response,
    http1,
)
from apigw_core.protocol.events import Close
from apigw_core.protocol.http2 import H2Limits
from apigw_core.protocol.http2 import ServerConnection as H2Server
from apigw_core.protocol.websocket import (
    BackendHandshake,
    HandshakeRefusal,
    WebSocketAccepted,
    WebSocketRelay,
    server_handshake,
)

from ws_helpers import whole

# the websockets library is the second peer of some tests only: imported at first use, so
# that without it those tests skip and the wsproto ones still run
_ws_client = lazy_module("websockets.client")
_ws_server = lazy_module("websockets.server")
_ws_frames = lazy_module("websockets.frames")
_ws_http11 = lazy_module("websockets.http11")
_ws_uri = lazy_module("websockets.uri")
_ws_pmd = lazy_module("websockets.extensions.permessage_deflate")


class H1Gateway:
    """A miniature driver: our HTTP/1.1 server connection facing the client, our HTTP/1.1
    client connection facing the backend, the handshake in between, then the relay."""

    def __init__(self) -> None:
        self.front = http1.ServerConnection()
        self.back = http1.ClientConnection()
        self.hs: Optional[BackendHandshake] = None
        self.relay: Optional[WebSocketRelay] = None
        self.accepted: Optional[WebSocketAccepted] = None
        self.front_events: list = []
        self.relay_events: list = []
        self.refusal: Optional[HandshakeRefusal] = None

    def from_client(self, data: bytes) -> None:
        if self.relay is not None:
            self.relay_events += self.relay.client.receive_data(data)
            return
        for ev in self.front.receive_data(data):
            self.front_events.append(ev)
            if isinstance(ev, Request) and ev.upgrade is not None:
                offer = server_handshake(ev)
                if isinstance(offer, HandshakeRefusal):
                    self.refusal = offer
                    self.front.send_error(offer.status_code, offer.message.encode(),
                                          offer.headers)
                    continue
                self.hs = BackendHandshake(offer)
                self.back.send(self.hs.request(b"/backend" + ev.target, ev.headers))
                self.back.send(EndOfMessage(1))

    def from_backend(self, data: bytes) -> None:
        if self.relay is not None:
            self.relay_events += self.relay.backend.receive_data(data)
            return
        for ev in self.back.receive_data(data):
            if isinstance(ev, (InformationalResponse, Response)):
                accepted = self.hs.check_response(ev)  # type: ignore[union-attr]
                if accepted is None:  # any other answer: plain HTTP, no switch
                    self.front.send(Response(1, ev.status_code, ev.headers))
                    continue
                self.accepted = accepted
                self.front.send(accepted.client_response())
                self.relay = accepted.relay()
                if self.front.trailing_data:  # (b"" would mean EOF)
                    self.relay.client.receive_data(self.front.trailing_data)
                if self.back.trailing_data:
                    self.relay_events += self.relay.backend.receive_data(
                        self.back.trailing_data)
            elif isinstance(ev, (Data, EndOfMessage)) and self.relay is None:
                self.front.send(type(ev)(1, *([ev.data] if isinstance(ev, Data) else [])))

    def to_client(self) -> bytes:
        out = self.front.data_to_send()
        if self.relay is not None:
            out += self.relay.client.data_to_send()
        return out

    def to_backend(self) -> bytes:
        out = self.back.data_to_send()
        if self.relay is not None:
            out += self.relay.backend.data_to_send()
        return out


# -- wsproto peers, with their own HTTP/1.1 handshake over h11 --------------------------------

class WsprotoRun:
    def __init__(self, subprotocols: list[str], backend_picks: Optional[str],
                 reject: bool = False) -> None:
        self.gw = H1Gateway()
        self.client = WSConnection(ConnectionType.CLIENT)
        self.server = WSConnection(ConnectionType.SERVER)
        self.backend_picks = backend_picks
        self.reject = reject
        self.client_events: list = []
        self.server_events: list = []
        self.gw.from_client(self.client.send(WsprotoRequest(
            host="example.com", target="/chat", subprotocols=subprotocols)))
        self.pump()

    def pump(self) -> None:
        for _ in range(20):
            moved = False
            data = self.gw.to_backend()
            if data:
                moved = True
                self.server.receive_data(data)
                for ev in self.server.events():
                    self.server_events.append(ev)
                    out = self._backend(ev)
                    if out:
                        self.gw.from_backend(out)
            data = self.gw.to_client()
            if data:
                moved = True
                self.client.receive_data(data)
                self.client_events += list(self.client.events())
            if not moved:
                return

    def _backend(self, ev: object) -> bytes:
        if isinstance(ev, WsprotoRequest):
            if self.reject:
                return (self.server.send(RejectConnection(
                    status_code=403, headers=[(b"content-length", b"6")], has_body=True))
                    + self.server.send(RejectData(data=b"nope!\n")))
            # accept, and greet at once: the greeting arrives with the 101 (trailing data)
            return (self.server.send(AcceptConnection(subprotocol=self.backend_picks))
                    + self.server.send(TextMessage("welcome")))
        if isinstance(ev, (TextMessage, BytesMessage)) and ev.message_finished:
            return self.server.send(type(ev)(data=ev.data))
        if isinstance(ev, CloseConnection):
            return self.server.send(ev.response())
        return b""


def test_wsproto_client_and_backend_over_http1():
    run = WsprotoRun(["chat", "superchat"], "superchat")
    (accept,) = [e for e in run.client_events if isinstance(e, AcceptConnection)]
    assert accept.subprotocol == "superchat"
    assert whole(run.client_events[1:]) == ["welcome"]  # sent right behind the 101
    req = run.server_events[0]
    assert req.subprotocols == ["chat", "superchat"] and req.target == "/backend/chat"
    run.gw.from_client(run.client.send(TextMessage("héllo")))
    run.gw.from_client(run.client.send(BytesMessage(b"\x00" * 100_000)))
    run.pump()
    assert whole(run.client_events[1:]) == ["welcome", "héllo", b"\x00" * 100_000]
    run.gw.from_client(run.client.send(CloseConnection(4000, "done")))
    run.pump()
    assert run.client_events[-1] == CloseConnection(4000, "done")
    assert run.gw.relay_events == [Close(1, 4000, "done"), Close(1, 4000, "done")]
    assert run.gw.relay.finished


def test_refused_upgrade_is_relayed_and_the_client_stays_http():
    run = WsprotoRun([], None, reject=True)
    rejects = [e for e in run.client_events if isinstance(e, (RejectConnection, RejectData))]
    assert rejects[0].status_code == 403
    assert b"".join(e.data for e in rejects[1:]) == b"nope!\n"
    assert run.gw.relay is None and not run.gw.front.switched
    # the client's connection is still HTTP/1.1: a next request is parsed as one
    events = run.gw.front.receive_data(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
    assert isinstance(events[0], Request) and events[0].target == b"/next"


def test_bad_accept_from_the_backend_is_a_502_and_nothing_is_relayed():
    gw = H1Gateway()
    client = WSConnection(ConnectionType.CLIENT)
    gw.from_client(client.send(WsprotoRequest(host="a", target="/")))
    gw.to_backend()
    bogus = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
             b"Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
             b"\r\n" + b"\x81\x05hello")
    with pytest.raises(ProtocolError) as info:
        gw.from_backend(bogus)
    assert info.value.status_hint == 502
    assert gw.relay is None and gw.back.switched  # the backend connection is dropped
    gw.front.send_error(502)
    client.receive_data(gw.to_client())
    (ev,) = [e for e in client.events() if isinstance(e, RejectConnection)]
    assert ev.status_code == 502


def test_bad_version_is_refused_with_426():
    gw = H1Gateway()
    gw.from_client(b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                   b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   b"Sec-WebSocket-Version: 8\r\n\r\n")
    out = gw.to_client()
    assert out.startswith(b"HTTP/1.1 426 ") and b"sec-websocket-version: 13\r\n" in out
    assert gw.to_backend() == b""


# -- the websockets library's peers, with permessage-deflate --------------------------------

class WebsocketsRun:
    def __init__(self, deflate_client: bool = True, deflate_server: bool = True) -> None:
        self.gw = H1Gateway()
        self.client = _ws_client.ClientProtocol(
            _ws_uri.parse_uri("ws://example.com/chat"), subprotocols=["v1"], max_size=1 << 24,
            extensions=[_ws_pmd.ClientPerMessageDeflateFactory()] if deflate_client else [])
        self.server = _ws_server.ServerProtocol(
            subprotocols=["v1"], max_size=1 << 24,
            extensions=[_ws_pmd.ServerPerMessageDeflateFactory()] if deflate_server else [])
        self.client.send_request(self.client.connect())
        self.client_got: list = []
        self.server_got: list = []
        self.pump()

    def pump(self) -> None:
        for _ in range(50):
            moved = False
            for data in self.client.data_to_send():
                if data:
                    moved = True
                    self.gw.from_client(data)
            data = self.gw.to_backend()
            if data:
                moved = True
                self.server.receive_data(data)
                for ev in self.server.events_received():
                    if isinstance(ev, _ws_http11.Request):
                        self.server.send_response(self.server.accept(ev))
                    else:
                        self.server_got.append(ev)
                        op = _ws_frames.Opcode
                        if ev.opcode in (op.TEXT, op.BINARY, op.CONT):
                            self.server.send_frame(_ws_frames.Frame(ev.opcode, ev.data, ev.fin))
            for out in self.server.data_to_send():
                if out:
                    moved = True
                    self.gw.from_backend(out)
            data = self.gw.to_client()
            if data:
                moved = True
                self.client.receive_data(data)
                self.client_got += [e for e in self.client.events_received()
                                    if isinstance(e, _ws_frames.Frame)]
            if not moved:
                return


def _payloads(frames: list) -> list[tuple[int, bytes, bool]]:
    return [(int(f.opcode), f.data, f.fin) for f in frames]


def test_websockets_peers_negotiate_permessage_deflate_through_the_gateway():
    run = WebsocketsRun()
    assert run.gw.accepted is not None and run.gw.accepted.deflate
    assert run.gw.accepted.subprotocol == b"v1"
    assert run.client.state.name == "OPEN" and run.server.state.name == "OPEN"
    texts = ["hello " * 2000, "κόσμε" * 300, ""]
    for t in texts:
        run.client.send_text(t.encode())
    big = bytes(range(256)) * 4096  # 1 MiB, barely compressible
    run.client.send_binary(big)
    run.pump()
    assert _payloads(run.client_got) == [(1, t.encode(), True) for t in texts] + [(2, big, True)]
    # the frames on the client's wire were compressed (RSV1) and passed through unchanged
    assert run.gw.relay.client.bytes_received < len("".join(texts).encode())


def test_websockets_fragmented_compressed_message_with_a_ping_inside():
    run = WebsocketsRun()
    run.client.send_text(b"part one, ", fin=False)
    run.client.send_ping(b"are you there")
    run.client.send_continuation(b"part two, ", fin=False)
    run.client.send_continuation(b"the end.", fin=True)
    run.pump()
    got = [(int(f.opcode), f.data, f.fin) for f in run.server_got]
    assert (9, b"are you there", True) in got
    data = [f for f in got if f[0] in (0, 1)]
    assert b"".join(d for _, d, _ in data) == b"part one, part two, the end." and data[-1][2]
    op = _ws_frames.Opcode
    echoed = [f for f in run.client_got if f.opcode in (op.TEXT, op.CONT)]
    assert b"".join(f.data for f in echoed) == b"part one, part two, the end."
    # the server's automatic pong came back through the relay
    assert [f.data for f in run.client_got if f.opcode == op.PONG] == [b"are you there"]


@pytest.mark.parametrize("deflate", [True, False])
def test_websockets_close_codes_both_ways(deflate):
    run = WebsocketsRun(deflate_client=deflate, deflate_server=deflate)
    assert run.gw.accepted.deflate is deflate
    run.server.send_close(1012, "restarting")
    run.pump()
    assert run.client.close_rcvd == _ws_frames.Close(1012, "restarting")
    assert run.server.close_rcvd == _ws_frames.Close(1012, "restarting")  # the client's answer
    assert run.gw.relay.finished
    run.client.receive_eof()  # the driver closes the client's connection (server side)
    assert run.client.close_code == 1012 and run.client.state.name == "CLOSED"


def test_websockets_client_without_deflate_gets_none():
    run = WebsocketsRun(deflate_client=False)
    assert not run.gw.accepted.deflate and run.gw.accepted.extensions is None
    run.client.send_text(b"plain")
    run.pump()
    assert _payloads(run.client_got) == [(1, b"plain", True)]


def test_backend_too_big_message_closes_both():
    run = WebsocketsRun(deflate_client=False, deflate_server=False)
    relay = run.gw.relay
    relay.backend._max_msg = 1000  # as if WSLimits(max_message_size=1000)
    run.server.send_binary(b"x" * 1001)
    with pytest.raises(ProtocolError) as info:
        run.pump()
    assert info.value.error_code == 1009 and relay.backend.should_close
    # a driver stops reading the failed side; the client is told, and answers
    run.client.receive_data(relay.client.data_to_send())
    assert run.client.close_rcvd.code == 1011  # the backend failed: an internal error
    for data in run.client.data_to_send():
        if data:
            relay.client.receive_data(data)
    assert relay.finished


# -- HTTP/2 extended CONNECT (RFC 8441) from the client --------------------------------------

def test_h2_extended_connect_client_to_http1_backend():
    pair = Pair(server=H2Server(limits=H2Limits(enable_connect_protocol=True)))
    pair.client.send(Request(1, b"CONNECT", b"/chat", [
        (b"host", b"example.com"), (b"sec-websocket-version", b"13"),
        (b"sec-websocket-protocol", b"chat")], protocol=b"websocket"))
    sev, _ = pair.exchange()
    (req,) = [e for e in sev if isinstance(e, Request)]
    offer = server_handshake(req)
    assert not isinstance(offer, HandshakeRefusal) and offer.key is None
    # the backend: wsproto over our HTTP/1.1 client connection
    back = http1.ClientConnection()
    hs = BackendHandshake(offer)
    back.send(hs.request(req.target, req.headers))
    back.send(EndOfMessage(1))
    backend = WSConnection(ConnectionType.SERVER)
    backend.receive_data(back.data_to_send())
    (wreq,) = list(backend.events())
    assert wreq.subprotocols == ["chat"]
    (head,) = back.receive_data(backend.send(AcceptConnection(subprotocol="chat")))
    accepted = hs.check_response(head)
    assert accepted is not None
    pair.server.send(accepted.client_response())
    _, cev = pair.exchange()
    assert cev == [Response(1, 200, [(b"sec-websocket-protocol", b"chat")], b"2")]
    relay = accepted.relay()
    # WebSocket frames ride in DATA frames of stream 1, masked as on HTTP/1.1 (RFC 8441 §5)
    wsc = FrameProtocol(client=True, extensions=[])
    pair.client.send(Data(1, bytes(wsc.send_data("over h2"))))
    sev, _ = pair.exchange()
    for ev in sev:
        if isinstance(ev, Data):
            relay.client.receive_data(ev.data)
            pair.server.acknowledge_received(1, len(ev.data))
    backend.receive_data(relay.backend.data_to_send())
    assert whole(list(backend.events())) == ["over h2"]
    relay.backend.receive_data(backend.send(TextMessage("back over h2")))
    relay.backend.receive_data(backend.send(CloseConnection(1000)))
    pair.server.send(Data(1, relay.client.data_to_send()))
    _, cev = pair.exchange()
    wsc.receive_bytes(b"".join(e.data for e in cev if isinstance(e, Data)))
    frames = list(wsc.received_frames())
    assert [(f.opcode.name, f.payload) for f in frames] == [
        ("TEXT", "back over h2"), ("CLOSE", (1000, ""))]
    relay.client.receive_data(bytes(wsc.close(1000)))
    assert relay.finished  # then the driver ends stream 1 (END_STREAM)


def test_h2_request_without_version_gets_426():
    pair = Pair(server=H2Server(limits=H2Limits(enable_connect_protocol=True)))
    pair.client.send(Request(1, b"CONNECT", b"/chat", [(b"host", b"a")], protocol=b"websocket"))
    sev, _ = pair.exchange()
    (req,) = [e for e in sev if isinstance(e, Request)]
    refusal = server_handshake(req)
    assert isinstance(refusal, HandshakeRefusal) and refusal.status_code == 426
    pair.server.send(Response(1, 426, refusal.headers))
    pair.server.send(EndOfMessage(1))
    _, cev = pair.exchange()
    assert cev[0] == Response(1, 426, [(b"sec-websocket-version", b"13")], b"2")
