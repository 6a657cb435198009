"""Small misbehaving backends for the failure tests, run in the test process.

Each is a plain listening socket on 127.0.0.1 with one accept thread and one thread per
connection, so a test can ask afterwards exactly what the gateway did on the backend side:
every byte received (`received`), how many connections were opened, and how each one ended
(`eof` for a FIN, `reset` for an RST, with the time).  The behaviours:

- `Refused()`: a loopback port with nothing listening (connection refused), held for the
  object's lifetime so that no parallel test can take it;
- `Blackhole()`: a loopback port that never answers a SYN (connect timeout);
- `Backend("hang")`: accepts and reads, never answers;
- `Backend("half")`: answers `Content-Length: 1000` and sends 500 bytes, then closes;
- `Backend("stall")`: the same 500 of 1000 bytes, then neither sends nor closes;
- `Backend("once")`: answers the first request of each connection; at the next one on the
  same connection it closes without answering (a keep-alive connection that dies just as
  the gateway reuses it);
- `Backend("ok")`: records everything; answers each request with a small 200 (keep-alive)
  whose body is the request target (or `body=`);
- `Backend("slow", delay=s)`: as "ok" after waiting `delay` seconds per request;
- `Backend("held")`: as "ok", but each answer waits until the test sets `release` (an
  Event; 60 s at most), so a test decides when a request is done instead of guessing;
- `Backend("ok", idle_close=s)`: closes a keep-alive connection idle for `s` seconds;
- `Backend("stream", interval=s)`: a chunked 200 whose 1 KB chunks never end (one every
  `interval` seconds, 10 ms by default; 0: as fast as the gateway reads) until the
  gateway closes or resets the connection.

Requests are framed by Content-Length or chunked encoding, enough for the gateway's
well-formed forwarding; anything else is still recorded byte for byte.

The raw-client helpers at the end (`connect`, `read_until_close`, `ResponseReader`) let the
tests see exactly which bytes the gateway sends and when it closes.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

__all__ = ["Backend", "BackendConn", "Blackhole", "Refused", "RawResponse", "connect",
           "read_until_close", "ResponseReader"]


class Refused:
    """A loopback port that refuses connections for as long as this object is open: a
    socket bound to it and never listening.  On Linux a SYN to a bound, non-listening port
    gets a RST (ECONNREFUSED), and nobody else can bind the port meanwhile.  (Closing a
    probe socket and handing its number on would let a parallel test take the port.)"""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "Refused":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_HELD: list[Refused] = []   # held for the whole test session: nobody else takes the ports


def refused_url() -> str:
    """The URL of a port that refuses connections for the rest of the session."""
    r = Refused()
    _HELD.append(r)
    return r.url


class Blackhole:
    """A port whose SYNs go unanswered (a connect timeout without leaving the machine): a
    listener with a zero backlog that never accepts, its one accept-queue slot taken, so the
    kernel drops every further SYN.  (A "non-routable" address such as 10.255.255.1 is not
    reliable: a sandbox's transparent proxy may answer it.)"""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(0)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._fillers = []
        for _ in range(2):  # the queue holds backlog + 1: fill it, then check it is full
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", self.port))
            self._fillers.append(f)
        _, w, _ = select.select([], [self._fillers[-1]], [], 0.2)
        assert not w, "the backlog did not fill: SYNs would be answered"

    def close(self) -> None:
        for f in self._fillers:
            f.close()
        self._sock.close()

    def __enter__(self) -> "Blackhole":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class BackendConn:
    """One connection the gateway opened to the backend."""

    opened: float
    received: bytearray = field(default_factory=bytearray)
    requests: int = 0
    end: Optional[str] = None          # "eof" | "reset" | "closed-by-us"
    ended: Optional[float] = None
    done: threading.Event = field(default_factory=threading.Event)

    def finish(self, how: str) -> None:
        if self.end is None:
            self.end = how
            self.ended = time.monotonic()
        self.done.set()


class _Closed(Exception):
    pass


class Backend:
    """A purpose-built backend; use as a context manager.  See the module docstring."""

    def __init__(self, mode: str = "ok", *, delay: float = 0.0,
                 body: Optional[bytes] = None, interval: float = 0.01,
                 idle_close: Optional[float] = None) -> None:
        assert mode in ("hang", "half", "stall", "once", "ok", "slow", "held", "stream"), mode
        self.mode = mode
        self.delay = delay
        self.interval = interval
        self.idle_close = idle_close
        self.body = body
        self.release = threading.Event()
        self.conns: list[BackendConn] = []
        self._base = 0
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    # -- what the tests read ----------------------------------------------------------

    @property
    def received(self) -> bytes:
        """Every byte received since the last `reset()`, all connections."""
        with self._lock:
            return b"".join(bytes(c.received) for c in self.conns)

    @property
    def connections(self) -> int:
        """Connections opened since the last `reset()`."""
        with self._lock:
            return len(self.conns) - self._base

    @property
    def new_conns(self) -> list[BackendConn]:
        """The connections opened since the last `reset()`, oldest first."""
        with self._lock:
            return self.conns[self._base:]

    def reset(self) -> None:
        """Start recording afresh: forget finished connections and what every connection
        received so far (the gateway's pooled connections stay open and recorded)."""
        with self._lock:
            self.conns = [c for c in self.conns if not c.done.is_set()]
            for c in self.conns:
                c.received.clear()
            self._base = len(self.conns)

    def wait_connections(self, n: int, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.connections >= n:
                return True
            if self.interval:
                time.sleep(self.interval)
        return False

    # -- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        self._stop.set()
        self.release.set()
        try:
            self._sock.close()
        except OSError:
            pass
        with self._lock:
            socks, self._open = self._open, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- serving ----------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                s, _ = self._sock.accept()
            except OSError:
                return
            rec = BackendConn(time.monotonic())
            with self._lock:
                self.conns.append(rec)
                self._open.append(s)
            threading.Thread(target=self._serve, args=(s, rec), daemon=True).start()

    def _recv(self, s: socket.socket, rec: BackendConn) -> bytes:
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            rec.finish("reset")
            raise _Closed() from None
        except OSError:
            rec.finish("closed-by-us")
            raise _Closed() from None
        if not data:
            rec.finish("eof")
            raise _Closed()
        rec.received += data
        return data

    def _read_request(self, s: socket.socket, rec: BackendConn,
                      buf: bytearray) -> tuple[bytes, bytearray]:
        """Read one request (head + framed body) from buf/s: its target, the bytes after."""
        while b"\r\n\r\n" not in buf:
            buf += self._recv(s, rec)
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        buf = bytearray(rest)
        lines = head.split(b"\r\n")
        target = lines[0].split(b" ")[1] if lines[0].count(b" ") == 2 else b"?"
        lines = lines[1:]
        fields = {}
        for line in lines:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip().lower()
        if b"chunked" in fields.get(b"transfer-encoding", b""):
            while True:
                while b"\r\n" not in buf:
                    buf += self._recv(s, rec)
                size_line, _, rest = bytes(buf).partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                buf = bytearray(rest)
                if size == 0:
                    while b"\r\n\r\n" not in b"\r\n" + bytes(buf):  # trailers
                        buf += self._recv(s, rec)
                    end = (b"\r\n" + bytes(buf)).index(b"\r\n\r\n") + 2
                    return target, bytearray(bytes(buf)[end:])
                while len(buf) < size + 2:
                    buf += self._recv(s, rec)
                buf = buf[size + 2:]
        n = int(fields.get(b"content-length", b"0") or 0)
        while len(buf) < n:
            buf += self._recv(s, rec)
        return target, buf[n:]

    def _serve(self, s: socket.socket, rec: BackendConn) -> None:
        buf = bytearray()
        if self.idle_close:
            s.settimeout(self.idle_close)   # a timeout in recv closes the connection
        try:
            if self.mode == "hang":
                while True:
                    self._recv(s, rec)
            while True:
                target, buf = self._read_request(s, rec, buf)
                rec.requests += 1
                if self.mode in ("half", "stall"):
                    s.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n" + b"x" * 500)
                    if self.mode == "stall":
                        while True:
                            self._recv(s, rec)
                    time.sleep(0.05)
                    s.close()
                    rec.finish("closed-by-us")
                    return
                if self.mode == "once" and rec.requests > 1:
                    s.close()
                    rec.finish("closed-by-us")
                    return
                if self.mode == "stream":
                    self._stream(s, rec)
                    return
                if self.mode == "slow":
                    time.sleep(self.delay)
                if self.mode == "held":
                    self.release.wait(60)
                body = self.body if self.body is not None else target + b"\n"
                s.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n"
                          b"content-length: %d\r\n\r\n%b" % (len(body), body))
        except _Closed:
            pass
        except OSError:
            rec.finish("reset")
        finally:
            rec.done.set()
            try:
                s.close()
            except OSError:
                pass

    def _stream(self, s: socket.socket, rec: BackendConn) -> None:
        s.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                  b"transfer-encoding: chunked\r\n\r\n")
        chunk = b"data: " + b"x" * 1000 + b"\n\n"
        frame = b"%x\r\n%b\r\n" % (len(chunk), chunk)
        pending = memoryview(b"")
        s.setblocking(False)
        while not self._stop.is_set():
            r, w, _ = select.select([s], [s], [], 0.01)
            if r:  # the gateway never sends after the request: only its FIN or RST
                try:
                    data = s.recv(65536)
                except ConnectionResetError:
                    rec.finish("reset")
                    return
                except BlockingIOError:
                    data = None
                if data == b"":
                    rec.finish("eof")
                    return
                if data:
                    rec.received += data
            if w:
                if not pending:
                    pending = memoryview(frame)
                try:
                    pending = pending[s.send(pending):]
                except BlockingIOError:
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    rec.finish("reset")
                    return
            if self.interval:
                time.sleep(self.interval)


# -- raw clients: what a test needs to look at the bytes the gateway sends ------------------

@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]          # lower-case names; repeated names joined with ", "
    body: bytes


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_until_close(s: socket.socket, timeout: float) -> tuple[bytes, str]:
    """Everything until the gateway closes: (bytes, "eof" | "reset" | "timeout")."""
    deadline = time.monotonic() + timeout
    out = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(out), "timeout"
        s.settimeout(left)
        try:
            data = s.recv(65536)
        except socket.timeout:
            return bytes(out), "timeout"
        except ConnectionResetError:
            return bytes(out), "reset"
        if not data:
            return bytes(out), "eof"
        out += data


class ResponseReader:
    """Reads successive responses (pipelining, keep-alive) from one socket."""

    def __init__(self, s: socket.socket) -> None:
        self.s = s
        self.buf = bytearray()

    def _more(self) -> None:
        data = self.s.recv(65536)
        if not data:
            raise ConnectionError("closed by the gateway")
        self.buf += data

    def read(self, head_request: bool = False) -> RawResponse:
        while b"\r\n\r\n" not in self.buf:
            self._more()
        i = self.buf.index(b"\r\n\r\n")
        head = bytes(self.buf[:i]).decode("latin-1").split("\r\n")
        del self.buf[:i + 4]
        status = int(head[0].split(" ")[1])
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if head_request or status in (204, 304) or status < 200:
            return RawResponse(status, headers, b"")
        if "chunked" in headers.get("transfer-encoding", ""):
            body = bytearray()
            while True:
                while b"\r\n" not in self.buf:
                    self._more()
                j = self.buf.index(b"\r\n")
                size = int(bytes(self.buf[:j]).split(b";")[0], 16)
                del self.buf[:j + 2]
                if size == 0:
                    while not (self.buf.startswith(b"\r\n") or b"\r\n\r\n" in self.buf):
                        self._more()
                    k = 2 if self.buf.startswith(b"\r\n") else self.buf.index(b"\r\n\r\n") + 4
                    del self.buf[:k]
                    return RawResponse(status, headers, bytes(body))
                while len(self.buf) < size + 2:
                    self._more()
                body += self.buf[:size]
                del self.buf[:size + 2]
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < n:
                self._more()
            body = bytes(self.buf[:n])
            del self.buf[:n]
            return RawResponse(status, headers, body)
        while True:  # close-delimited
            try:
                self._more()
            except ConnectionError:
                body = bytes(self.buf)
                self.buf.clear()
                return RawResponse(status, headers, body)
