"""HTTP/2 from the client side for the end-to-end tests, two ways:

- raw frames (hyperframe + hpack) on a plain socket, for the attacks: `h2c_socket(port)`
  sends the client preface and a SETTINGS frame (prior knowledge), `req_block()` encodes a
  request head, `FrameReader` parses what the gateway sends, `read_until_close()` reads
  frames until the gateway closes and reports the GOAWAY it sent;
- `H2Client`: h2's client connection over a plain or TLS socket, blocking, with full
  control of flow control (`auto_ack=False`: never send WINDOW_UPDATE) and of the windows
  announced, for trailers, stalled readers and graceful shutdown.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import h2.config
import h2.connection
import h2.events
import h2.settings
from hpack import Encoder
from hyperframe.frame import Frame, GoAwayFrame, SettingsFrame

__all__ = ["PREFACE", "h2c_socket", "req_block", "FrameReader", "read_until_close",
           "Closed", "H2Client", "Reply"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h2c_socket(port: int, settings: Optional[dict] = None, *, rcvbuf: Optional[int] = None,
               timeout: float = 30.0) -> socket.socket:
    """A cleartext HTTP/2 connection by prior knowledge: preface + SETTINGS sent."""
    s = socket.socket()
    if rcvbuf is not None:  # before connect, so the window scale is chosen for it
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(PREFACE + SettingsFrame(0, settings=settings or {}).serialize())
    return s


def req_block(enc: Encoder, path: str = "/", method: str = "GET",
              authority: str = "gw.test", extra: Iterable[tuple[str, str]] = ()) -> bytes:
    return enc.encode([(":method", method), (":scheme", "http"), (":path", path),
                       (":authority", authority), *extra])


class FrameReader:
    """Frames from a socket, one at a time (None at EOF)."""

    def __init__(self, s: socket.socket) -> None:
        self.s = s
        self.buf = bytearray()

    def next(self, timeout: float = 30.0) -> Optional[Frame]:
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) >= 9 + n:
                    f, _ = Frame.parse_frame_header(memoryview(bytes(self.buf[:9])))
                    f.parse_body(memoryview(bytes(self.buf[9:9 + n])))
                    del self.buf[:9 + n]
                    return f
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no frame in time")
            self.s.settimeout(left)
            data = self.s.recv(1 << 20)
            if not data:
                return None
            self.buf += data


@dataclass
class Closed:
    how: str                         # "eof", "reset" or "timeout"
    goaway: Optional[GoAwayFrame]    # the first GOAWAY received
    frames: int                      # frames received in all
    seconds: float

    @property
    def error_code(self) -> Optional[int]:
        return None if self.goaway is None else self.goaway.error_code


def read_until_close(s: socket.socket, timeout: float = 30.0,
                     reader: Optional[FrameReader] = None) -> Closed:
    """Read (and discard) frames until the gateway closes the connection."""
    r = reader or FrameReader(s)
    t0 = time.monotonic()
    deadline = t0 + timeout
    goaway = None
    n = 0
    while True:
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise socket.timeout()
            f = r.next(left)
        except socket.timeout:
            return Closed("timeout", goaway, n, time.monotonic() - t0)
        except (ConnectionResetError, BrokenPipeError):
            return Closed("reset", goaway, n, time.monotonic() - t0)
        if f is None:
            return Closed("eof", goaway, n, time.monotonic() - t0)
        n += 1
        if isinstance(f, GoAwayFrame) and goaway is None:
            goaway = f
            if f.error_code:  # as a client does: nothing more to say on this connection
                try:
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass


# ---------------------------------------------------------------------------------------
# h2's client connection, blocking
# ---------------------------------------------------------------------------------------

@dataclass
class Reply:
    status: Optional[int] = None
    headers: list = field(default_factory=list)
    trailers: list = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    size: int = 0
    sha256: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    ended: bool = False
    reset: Optional[int] = None

    def header(self, name: bytes) -> Optional[bytes]:
        for n, v in self.headers:
            if n == name:
                return v
        return None


class H2Client:
    """h2's client connection over `sock` (plain, or TLS with ALPN h2 already chosen).

    `keep_body`: bodies up to that many bytes are kept (all are hashed and counted);
    `auto_ack`: give flow-control credit back as data arrives (False: never, the
    peer stalls after our windows); `settings`: what we announce (e.g. a small
    INITIAL_WINDOW_SIZE)."""

    def __init__(self, sock: socket.socket, *, settings: Optional[dict] = None,
                 auto_ack: bool = True, keep_body: int = 1 << 20) -> None:
        self.sock = sock
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None))
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.auto_ack = auto_ack
        self.keep_body = keep_body
        self.replies: dict[int, Reply] = {}
        self.goaway: Optional[h2.events.ConnectionTerminated] = None
        self.closed = False
        self.events: list = []
        self.flush()

    @classmethod
    def h2c(cls, port: int, **kw) -> "H2Client":
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(s, **kw)

    @classmethod
    def tls(cls, port: int, cafile: str, server_name: str = "localhost", **kw) -> "H2Client":
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=30)
        # no Nagle: the tail of each window's worth of DATA would wait for the gateway's
        # delayed ACK (40 ms), every window (an upload at ~1 MB/s)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s = ctx.wrap_socket(raw, server_hostname=server_name)
        assert s.selected_alpn_protocol() == "h2", s.selected_alpn_protocol()
        return cls(s, **kw)

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path: str, method: str = "GET", headers: Iterable = (),
                body: bytes = b"", authority: str = "gw.test", scheme: str = "http",
                end: bool = True) -> int:
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(b":method", method.encode()), (b":scheme", scheme.encode()),
                (b":path", path.encode()), (b":authority", authority.encode()),
                *[(n if isinstance(n, bytes) else n.encode(),
                   v if isinstance(v, bytes) else v.encode()) for n, v in headers]]
        self.conn.send_headers(sid, hdrs, end_stream=end and not body)
        self.replies[sid] = Reply()
        if body:
            self.send_body(sid, body, end=end)
        self.flush()
        return sid

    def send_body(self, sid: int, body: bytes, end: bool = True,
                  timeout: float = 30.0) -> None:
        """Send `body` respecting the server's windows (reads while it waits; at most
        `timeout` s without the server opening a window)."""
        view = memoryview(body)
        r = self.replies.get(sid)
        while view:
            if self.closed or (r is not None and (r.ended or r.reset is not None)):
                return  # answered (or reset) before the whole body went
            n = min(len(view), self.conn.local_flow_control_window(sid),
                    self.conn.max_outbound_frame_size)
            if n <= 0:
                self.flush()
                deadline = time.monotonic() + timeout
                while not self.conn.local_flow_control_window(sid):
                    if self.closed or (r is not None and (r.ended or r.reset is not None)):
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(f"no window to send on stream {sid} "
                                           f"({len(view)} bytes left)")
                    self.pump(min(left, 1.0))
                continue
            self.conn.send_data(sid, bytes(view[:n]))
            view = view[n:]
        if end:
            self.conn.end_stream(sid)
        self.flush()

    def pump(self, timeout: float = 5.0) -> bool:
        """One read from the socket, its events handled; False at EOF or timeout."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            return False
        except (ConnectionResetError, ssl.SSLError, OSError):
            data = b""
        if not data:
            self.closed = True
            return False
        for ev in self.conn.receive_data(data):
            self.events.append(ev)
            r = self.replies.get(getattr(ev, "stream_id", 0) or 0)
            if isinstance(ev, h2.events.ResponseReceived):
                r.headers = ev.headers
                r.status = int(dict(ev.headers)[b":status"])
            elif isinstance(ev, h2.events.DataReceived):
                r.size += len(ev.data)
                r.sha256.update(ev.data)
                if len(r.body) < self.keep_body:
                    r.body += ev.data[:self.keep_body - len(r.body)]
                if self.auto_ack and ev.flow_controlled_length:
                    self.conn.acknowledge_received_data(ev.flow_controlled_length,
                                                        ev.stream_id)
            elif isinstance(ev, h2.events.TrailersReceived):
                r.trailers = ev.headers
            elif isinstance(ev, h2.events.StreamEnded):
                r.ended = True
            elif isinstance(ev, h2.events.StreamReset):
                if r is not None:
                    r.reset = ev.error_code
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = ev
        try:
            self.flush()
        except OSError:
            self.closed = True
        return True

    def run_until(self, done: Callable[[], bool], timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return done()
            self.pump(min(left, 1.0))
        return True

    def get(self, path: str, timeout: float = 60.0, **kw) -> Reply:
        sid = self.request(path, **kw)
        r = self.replies[sid]
        assert self.run_until(lambda: r.ended or r.reset is not None, timeout), (path, r)
        return r

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
