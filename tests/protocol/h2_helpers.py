"""HTTP/2 test helpers: an in-memory client/server pair of our own connections, and a raw
peer that writes frames by hand (hyperframe + hpack) and reads what our side answers."""

from __future__ import annotations

from typing import Iterable, Optional

from hpack import Decoder, Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from apigw_core.protocol import ProtocolError
from apigw_core.protocol.events import Data, Event
from apigw_core.protocol.http2 import ClientConnection, ServerConnection

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
REQ = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
       (b":authority", b"example.com")]
POST = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/p"),
        (b":authority", b"example.com")]

# error codes (RFC 9113 §7)
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0, 1, 2, 3
SETTINGS_TIMEOUT, STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM = 4, 5, 6, 7
CANCEL, COMPRESSION_ERROR, CONNECT_ERROR, ENHANCE_YOUR_CALM = 8, 9, 10, 11


def merge_data(events: list[Event]) -> list[Event]:
    out: list[Event] = []
    for ev in events:
        if (isinstance(ev, Data) and out and isinstance(out[-1], Data)
                and out[-1].stream_id == ev.stream_id):
            out[-1] = Data(ev.stream_id, out[-1].data + ev.data)
        else:
            out.append(ev)
    return out


class Pair:
    """Our ClientConnection talking to our ServerConnection in memory."""

    def __init__(self, server: Optional[ServerConnection] = None,
                 client: Optional[ClientConnection] = None) -> None:
        self.server = server or ServerConnection()
        self.client = client or ClientConnection(scheme=b"http")
        self.server_events: list[Event] = []
        self.client_events: list[Event] = []
        self.exchange()

    def c2s(self) -> list[Event]:
        data = self.client.data_to_send()
        evs = self.server.receive_data(data) if data else []
        self.server_events += evs
        return evs

    def s2c(self) -> list[Event]:
        data = self.server.data_to_send()
        evs = self.client.receive_data(data) if data else []
        self.client_events += evs
        return evs

    def exchange(self, rounds: int = 10) -> tuple[list[Event], list[Event]]:
        """Shuttle bytes until both sides are quiet; return (server events, client events)
        seen during this call."""
        s0, c0 = len(self.server_events), len(self.client_events)
        for _ in range(rounds):
            if not (self.c2s() or self.s2c()):
                if not (self.client._engine._data_to_send or self.server._engine._data_to_send
                        or self.client._ready or self.server._ready):
                    break
        return self.server_events[s0:], self.client_events[c0:]


def settings_frame(settings: Optional[dict] = None, ack: bool = False) -> bytes:
    f = SettingsFrame(0, settings or {}, flags=["ACK"] if ack else [])
    return f.serialize()


def raw_frame(type_: int, flags: int, stream_id: int, payload: bytes,
              length: Optional[int] = None) -> bytes:
    """A frame built byte by byte (for frames hyperframe refuses to build)."""
    n = len(payload) if length is None else length
    return (n.to_bytes(3, "big") + bytes([type_, flags]) + stream_id.to_bytes(4, "big")
            + payload)


class RawClient:
    """A hand-driven client in front of our ServerConnection."""

    def __init__(self, server: Optional[ServerConnection] = None, **server_kw: object
                 ) -> None:
        self.server = server or ServerConnection(**server_kw)  # type: ignore[arg-type]
        self.enc = Encoder()
        self.dec = Decoder()
        self.events: list[Event] = []
        self.error: Optional[ProtocolError] = None

    def handshake(self, settings: Optional[dict] = None) -> list[Frame]:
        """Client preface + SETTINGS, ACK the server's SETTINGS; returns its frames."""
        self.send_bytes(PREFACE + settings_frame(settings))
        frames = self.read()
        self.send_bytes(settings_frame(ack=True))
        return frames

    def headers(self, stream_id: int, headers: Iterable[tuple[bytes, bytes]] = REQ,
                end_stream: bool = True, end_headers: bool = True, **kw: object) -> bytes:
        flags = (["END_STREAM"] if end_stream else []) + (
            ["END_HEADERS"] if end_headers else [])
        f = HeadersFrame(stream_id, self.enc.encode(list(headers)), flags=flags, **kw)
        return f.serialize()

    def block(self, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
        return self.enc.encode(list(headers))

    def send_bytes(self, data: bytes) -> list[Event]:
        """Feed bytes; remember events and the error (never raises ProtocolError)."""
        try:
            evs = self.server.receive_data(data)
            if self.server.pending_error is not None:
                self.error = self.server.pending_error
        except ProtocolError as exc:
            self.error = exc
            return []
        self.events += evs
        return evs

    def send(self, *frames: object) -> list[Event]:
        data = b"".join(f if isinstance(f, bytes) else f.serialize() for f in frames)
        return self.send_bytes(data)

    def read(self) -> list[Frame]:
        """Parse everything the server queued; HEADERS frames get `.headers` decoded."""
        return parse_frames(self.server.data_to_send(), self.dec)


class RawServer:
    """A hand-driven server in front of our ClientConnection."""

    def __init__(self, client: Optional[ClientConnection] = None, **client_kw: object
                 ) -> None:
        self.client = client or ClientConnection(**client_kw)  # type: ignore[arg-type]
        self.enc = Encoder()
        self.dec = Decoder()
        self.events: list[Event] = []
        self.error: Optional[ProtocolError] = None

    def handshake(self, settings: Optional[dict] = None) -> list[Frame]:
        """Read the client preface; answer SETTINGS (+ ACK of the client's)."""
        data = self.client.data_to_send()
        assert data.startswith(PREFACE)
        frames = parse_frames(data[len(PREFACE):], self.dec)
        self.send_bytes(settings_frame(settings) + settings_frame(ack=True))
        return frames + self.read()

    def headers(self, stream_id: int, headers: Iterable[tuple[bytes, bytes]],
                end_stream: bool = False, end_headers: bool = True) -> bytes:
        flags = (["END_STREAM"] if end_stream else []) + (
            ["END_HEADERS"] if end_headers else [])
        return HeadersFrame(stream_id, self.enc.encode(list(headers)), flags=flags).serialize()

    def send_bytes(self, data: bytes) -> list[Event]:
        try:
            evs = self.client.receive_data(data)
            if self.client.pending_error is not None:
                self.error = self.client.pending_error
        except ProtocolError as exc:
            self.error = exc
            return []
        self.events += evs
        return evs

    def send(self, *frames: object) -> list[Event]:
        data = b"".join(f if isinstance(f, bytes) else f.serialize() for f in frames)
        return self.send_bytes(data)

    def read(self) -> list[Frame]:
        return parse_frames(self.client.data_to_send(), self.dec)


def parse_frames(data: bytes, dec: Optional[Decoder] = None) -> list[Frame]:
    frames = []
    pos = 0
    while pos + 9 <= len(data):
        f, length = Frame.parse_frame_header(memoryview(data[pos:pos + 9]))
        f.parse_body(memoryview(data[pos + 9:pos + 9 + length]))
        pos += 9 + length
        if isinstance(f, HeadersFrame) and dec is not None:
            f.headers = dec.decode(f.data, raw=True)  # type: ignore[attr-defined]
        frames.append(f)
    assert pos == len(data), "partial frame in output"
    return frames


def goaways(frames: list[Frame]) -> list[GoAwayFrame]:
    return [f for f in frames if isinstance(f, GoAwayFrame)]


def rsts(frames: list[Frame]) -> list[RstStreamFrame]:
    return [f for f in frames if isinstance(f, RstStreamFrame)]


__all__ = ["Pair", "RawClient", "RawServer", "parse_frames", "settings_frame", "raw_frame", "goaways",
           "rsts", "merge_data", "REQ", "POST", "PREFACE", "DataFrame", "HeadersFrame",
           "ContinuationFrame", "PingFrame", "PriorityFrame", "RstStreamFrame",
           "SettingsFrame", "WindowUpdateFrame", "GoAwayFrame"]
