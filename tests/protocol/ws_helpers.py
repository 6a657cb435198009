"""WebSocket test helpers: raw frames built and read by hand, and benches that put our relay
between a client and a real wsproto backend (an echo server, as Autobahn's tests expect)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterable, Optional

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.extensions import PerMessageDeflate

from apigw_core.protocol import ProtocolError
from apigw_core.protocol.events import Event
from apigw_core.protocol.websocket import WebSocketRelay, WSLimits

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0, 1, 2, 8, 9, 10
KEY = b"\x37\xfa\x21\x3d"


def counter_random(n: int) -> bytes:
    """Deterministic 'randomness' for masking keys in tests."""
    counter_random.i = (getattr(counter_random, "i", 0) + 1) % 251  # type: ignore[attr-defined]
    return bytes((counter_random.i + j) % 256 for j in range(n))  # type: ignore[attr-defined]


def mask(data: bytes, key: bytes) -> bytes:
    """XOR with the key repeated (written independently of the relay's own)."""
    n = len(data)
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def frame(op: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
          masked: bool = True, key: bytes = KEY, length: Optional[int] = None,
          wide: Optional[int] = None) -> bytes:
    """One frame, byte by byte.  `rsv` is the 3 RSV bits (4=RSV1, 2=RSV2, 1=RSV3); `length`
    overrides the declared payload length; `wide` forces the 2- or 8-byte length form."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | op
    mbit = 0x80 if masked else 0
    if wide == 8 or (wide is None and n > 0xFFFF):
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    elif wide == 2 or (wide is None and n > 125):
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = bytes((b0, mbit | n))
    if masked:
        return head + key + mask(payload, key)
    return head + payload


def close_frame(code: Optional[int] = None, reason: bytes = b"", **kw: object) -> bytes:
    payload = b"" if code is None else struct.pack("!H", code) + reason
    return frame(CLOSE, payload, **kw)  # type: ignore[arg-type]


@dataclass
class Frame:
    fin: bool
    rsv: int
    op: int
    masked: bool
    payload: bytes


def read_frames(data: bytes) -> list[Frame]:
    """Every frame in `data` (which must hold whole frames), unmasked."""
    out = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        n = b1 & 0x7F
        pos += 2
        if n == 126:
            n = struct.unpack("!H", data[pos:pos + 2])[0]
            pos += 2
        elif n == 127:
            n = struct.unpack("!Q", data[pos:pos + 8])[0]
            pos += 8
        key = None
        if b1 & 0x80:
            key = data[pos:pos + 4]
            pos += 4
        payload = data[pos:pos + n]
        assert len(payload) == n, "partial frame"
        pos += n
        out.append(Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, key is not None,
                         mask(payload, key) if key else payload))
    return out


def messages(frames: Iterable[Frame]) -> list[tuple[int, bytes]]:
    """(opcode, payload) per complete data message; control frames as themselves."""
    out: list[tuple[int, bytes]] = []
    cur: Optional[list] = None
    for f in frames:
        if f.op >= 8:
            out.append((f.op, f.payload))
            continue
        if f.op != CONT:
            cur = [f.op, f.payload]
        else:
            assert cur is not None
            cur[1] += f.payload
        if f.fin:
            out.append((cur[0], cur[1]))  # type: ignore[index]
            cur = None
    return out


class EchoBackend:
    """A wsproto server that echoes each whole message, answers pings and closes."""

    def __init__(self, extensions: Optional[list] = None) -> None:
        self.ws = Connection(ConnectionType.SERVER, extensions=extensions)
        self.received: list[object] = []  # whole messages (str/bytes), Ping, Pong, Close
        self.failed: Optional[CloseConnection] = None  # wsproto found our frames invalid
        self._parts: list = []

    def feed(self, data: bytes) -> bytes:
        out = b""
        if not data or self.ws.state is ConnectionState.CLOSED:
            return out
        self.ws.receive_data(data)
        for ev in self.ws.events():
            if isinstance(ev, (TextMessage, BytesMessage)):
                self._parts.append(ev.data)
                if ev.message_finished:
                    msg = ("" if isinstance(ev, TextMessage) else b"").join(self._parts)
                    self._parts = []
                    self.received.append(msg)
                    out += self.ws.send(type(ev)(data=msg))
            elif isinstance(ev, Ping):
                self.received.append(ev)
                out += self.ws.send(ev.response())
            elif isinstance(ev, Pong):
                self.received.append(ev)
            elif isinstance(ev, CloseConnection):
                if self.ws.state is not ConnectionState.REMOTE_CLOSING and (
                        self.ws.state is not ConnectionState.CLOSED):
                    self.failed = ev  # wsproto's parse error, not a Close frame
                    return out
                self.received.append(ev)
                if self.ws.state is ConnectionState.REMOTE_CLOSING:
                    out += self.ws.send(ev.response())
        return out


class Bench:
    """Raw client bytes -> relay -> wsproto echo backend, and back to the client."""

    def __init__(self, limits: Optional[WSLimits] = None, deflate: bool = False,
                 backend: Optional[EchoBackend] = None) -> None:
        self.relay = WebSocketRelay(limits=limits, deflate=deflate, random=counter_random)
        self.backend = backend or EchoBackend()
        self.client_bytes = b""  # everything the relay sent to the client
        self.backend_bytes = b""  # everything the relay sent to the backend
        self.events: list[Event] = []  # from relay.client
        self.backend_events: list[Event] = []
        self.error: Optional[ProtocolError] = None  # raised by relay.client
        self.backend_error: Optional[ProtocolError] = None

    def send(self, *chunks: bytes) -> "Bench":
        """Feed the client's bytes, chunk by chunk, pumping both ways after each."""
        for chunk in chunks:
            if self.error is not None:
                break
            try:
                self.events += self.relay.client.receive_data(chunk)
            except ProtocolError as exc:
                self.error = exc
            self.pump()
        return self

    def pump(self) -> None:
        for _ in range(50):
            to_b = self.relay.backend.data_to_send()
            self.backend_bytes += to_b
            answer = self.backend.feed(to_b)
            if answer and self.backend_error is None:
                try:
                    self.backend_events += self.relay.backend.receive_data(answer)
                except ProtocolError as exc:
                    self.backend_error = exc
            to_c = self.relay.client.data_to_send()
            self.client_bytes += to_c
            if not (to_b or answer or to_c):
                return
        raise AssertionError("no quiescence")

    def client_frames(self) -> list[Frame]:
        return read_frames(self.client_bytes)

    def client_messages(self) -> list[tuple[int, bytes]]:
        return messages(self.client_frames())

    def close_code(self) -> Optional[int]:
        """The code of the Close the client received (None: none; 1005: empty)."""
        for f in self.client_frames():
            if f.op == CLOSE:
                return struct.unpack("!H", f.payload[:2])[0] if f.payload else 1005
        return None

    def check_wire(self) -> None:
        """What the relay wrote is valid on each wire: masked to the backend only, and
        the backend's wsproto never failed our frames."""
        assert all(not f.masked for f in self.client_frames())
        assert all(f.masked for f in read_frames(self.backend_bytes))
        assert self.backend.failed is None, self.backend.failed


class WsPair:
    """A wsproto client and a wsproto server with our relay between them."""

    def __init__(self, limits: Optional[WSLimits] = None, deflate: bool = False,
                 client_ext: Optional[list] = None, server_ext: Optional[list] = None
                 ) -> None:
        self.relay = WebSocketRelay(limits=limits, deflate=deflate, random=counter_random)
        if deflate:
            client_ext = client_ext or [enabled_pmd()]
            server_ext = server_ext or [enabled_pmd()]
        self.client = Connection(ConnectionType.CLIENT, extensions=client_ext)
        self.server = Connection(ConnectionType.SERVER, extensions=server_ext)

    def c2s(self, *events: object) -> tuple[list[Event], list[object]]:
        """The client sends; returns (relay events, what the server's wsproto saw)."""
        data = b"".join(self.client.send(e) for e in events)  # type: ignore[arg-type]
        evs = self.relay.client.receive_data(data)
        _deliver(self.server, self.relay.backend.data_to_send())
        _deliver(self.client, self.relay.client.data_to_send())
        return evs, list(self.server.events())

    def s2c(self, *events: object) -> tuple[list[Event], list[object]]:
        data = b"".join(self.server.send(e) for e in events)  # type: ignore[arg-type]
        evs = self.relay.backend.receive_data(data)
        _deliver(self.client, self.relay.client.data_to_send())
        _deliver(self.server, self.relay.backend.data_to_send())
        return evs, list(self.client.events())


def _deliver(conn: Connection, data: bytes) -> None:
    if data:
        conn.receive_data(data)


def enabled_pmd(**kw: object) -> PerMessageDeflate:
    """A wsproto permessage-deflate already negotiated (as if by a handshake)."""
    ext = PerMessageDeflate(**kw)  # type: ignore[arg-type]
    ext.finalize("permessage-deflate")
    return ext


def whole(events: list[object]) -> list[object]:
    """wsproto message pieces joined into whole messages (str or bytes); others kept."""
    out: list[object] = []
    parts: list = []
    for ev in events:
        if isinstance(ev, (TextMessage, BytesMessage)):
            parts.append(ev.data)
            if ev.message_finished:
                out.append(("" if isinstance(ev, TextMessage) else b"").join(parts))
                parts = []
        else:
            out.append(ev)
    return out


def kuhn_utf8_cases() -> dict[str, tuple[bool, bytes]]:
    """Markus Kuhn's UTF-8 decoder stress test as Autobahn groups and numbers it (cases
    6.5.x to 6.23.x): {case: (valid, payload)}.  The vectors are written out here."""
    kosme = "κόσμε".encode()
    groups: list[list[tuple[bool, bytes]]] = []
    groups.append([(True, b"hello$world"), (True, "hello¢world".encode()),
                   (True, "hello€world".encode()), (True, "hello𤭢world".encode()),
                   (True, kosme)])
    prefixes = []
    for i in range(1, len(kosme) + 1):
        try:
            kosme[:i].decode()
            ok = True
        except UnicodeDecodeError:
            ok = False
        prefixes.append((ok, kosme[:i]))
    groups.append(prefixes)
    groups.append([(True, b"\x00"), (True, b"\xc2\x80"), (True, b"\xe0\xa0\x80"),
                   (True, b"\xf0\x90\x80\x80")])
    groups.append([(False, b"\xf8\x88\x80\x80\x80"), (False, b"\xfc\x84\x80\x80\x80\x80")])
    groups.append([(True, b"\x7f"), (True, b"\xdf\xbf"), (True, b"\xef\xbf\xbf"),
                   (True, b"\xf4\x8f\xbf\xbf")])
    groups.append([(False, b"\xf7\xbf\xbf\xbf"), (False, b"\xfb\xbf\xbf\xbf\xbf"),
                   (False, b"\xfd\xbf\xbf\xbf\xbf\xbf")])
    groups.append([(True, b"\xed\x9f\xbf"), (True, b"\xee\x80\x80"), (True, b"\xef\xbf\xbd"),
                   (True, b"\xf4\x8f\xbf\xbf"), (False, b"\xf4\x90\x80\x80")])
    groups.append([(False, bytes(s)) for s in ([0x80], [0xbf], [0x80, 0xbf],
                                               [0x80, 0xbf, 0x80], [0x80, 0xbf] * 2,
                                               [0x80, 0xbf] * 2 + [0x80], [0x80, 0xbf] * 3,
                                               list(range(0x80, 0xbf)))])
    groups.append([(False, b"".join(bytes((c, 0x20)) for c in range(lo, hi)))
                   for lo, hi in ((0xc0, 0xdf), (0xe0, 0xef), (0xf0, 0xf7), (0xf8, 0xfb),
                                  (0xfc, 0xfd))])
    missing = [b"\xc0", b"\xe0\x80", b"\xf0\x80\x80", b"\xf8\x80\x80\x80",
               b"\xfc\x80\x80\x80\x80", b"\xdf", b"\xef\xbf", b"\xf7\xbf\xbf",
               b"\xfb\xbf\xbf\xbf", b"\xfd\xbf\xbf\xbf\xbf"]
    groups.append([(False, m) for m in missing])
    groups.append([(False, b"".join(missing))])
    groups.append([(False, b"\xfe"), (False, b"\xff"), (False, b"\xfe\xfe\xff\xff")])
    groups.append([(False, b"\xc0\xaf"), (False, b"\xe0\x80\xaf"), (False, b"\xf0\x80\x80\xaf"),
                   (False, b"\xf8\x80\x80\x80\xaf"), (False, b"\xfc\x80\x80\x80\x80\xaf")])
    groups.append([(False, b"\xc1\xbf"), (False, b"\xe0\x9f\xbf"), (False, b"\xf0\x8f\xbf\xbf"),
                   (False, b"\xf8\x87\xbf\xbf\xbf"), (False, b"\xfc\x83\xbf\xbf\xbf\xbf")])
    groups.append([(False, b"\xc0\x80"), (False, b"\xe0\x80\x80"), (False, b"\xf0\x80\x80\x80"),
                   (False, b"\xf8\x80\x80\x80\x80"), (False, b"\xfc\x80\x80\x80\x80\x80")])
    singles = [b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xae\x80", b"\xed\xaf\xbf",
               b"\xed\xb0\x80", b"\xed\xbe\x80", b"\xed\xbf\xbf"]
    groups.append([(False, s) for s in singles])
    groups.append([(False, hi + lo) for hi in singles[:4] for lo in (singles[4], singles[6])])
    nonchars = [b"\xef\xbf\xbe", b"\xef\xbf\xbf"]
    for z1 in b"\xf0\xf1\xf2\xf3\xf4":
        for z2 in b"\x8f\x9f\xaf\xbf":
            if z1 == 0xf4 and z2 != 0x8f:
                continue  # above U+10FFFF
            for z3 in b"\xbe\xbf":
                seq = bytes((z1, z2, 0xbf, z3))
                if z1 != 0xf0 or z2 != 0x8f:  # not overlong
                    nonchars.append(seq)
    groups.append([(True, s) for s in nonchars])
    groups.append([(True, bytes((0xef, 0xbf, c))) for c in range(0xb9, 0xc0)])
    return {"6.%d.%d" % (g + 5, j + 1): case
            for g, group in enumerate(groups) for j, case in enumerate(group)}
