"""Byte transports for the connection drivers: a raw non-blocking socket, or any trio Stream.

Strategy.  The drivers need three verbs with a deadline each: `receive(timeout)`,
`send(data, timeout)` and `close()`.  `SocketTransport` calls the non-blocking socket first
and waits with trio's `wait_readable` / `wait_writable` only when the call would block: on a
busy keep-alive connection the data is usually there already, and skipping trio's
SocketStream wrapper (and a cancel scope per call) is worth about a third of the CPU of a
proxied request (DESIGN.md: ~22k vs ~30k requests per CPU-second for a do-nothing proxy).
Trio's promises are kept by the drivers, which pass a scheduling checkpoint at least once
per request (`trio.lowlevel.checkpoint`), and by every wait here being cancellable.
`StreamTransport` wraps a trio Stream (TLS: trio.SSLStream) with the same verbs.

Timeouts raise `TransportTimeout`; a peer reset or a broken pipe raises `TransportClosed`;
a clean EOF is `b""` from `receive`.
"""

from __future__ import annotations

import errno
import socket
from typing import Optional

import trio

__all__ = ["Transport", "SocketTransport", "StreamTransport", "TransportTimeout",
           "TransportClosed", "RECV_SIZE"]

RECV_SIZE = 65536  # bounded read buffer per connection and per read

_wait_readable = trio.lowlevel.wait_readable
_wait_writable = trio.lowlevel.wait_writable
_RESET_ERRNOS = {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED, errno.ETIMEDOUT,
                 errno.ENOTCONN, errno.EBADF}


class TransportTimeout(Exception):
    """A receive or send did not progress within its timeout."""


class TransportClosed(Exception):
    """The connection was reset, or written after the peer went away."""


_LINGER_0 = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # struct linger {on, 0 s}


class Transport:
    """What the drivers use; see the module docstring."""

    __slots__ = ()
    raw: socket.socket  # the connected socket underneath
    peer: tuple  # (ip, port) of the other end
    local: tuple
    closed: bool
    # An idle HTTP/1.1 peer has nothing to say, but under TLS it may (a session ticket).
    idle_bytes_ok = False

    async def receive(self, timeout: float) -> bytes:
        raise NotImplementedError

    async def send(self, data: bytes, timeout: float) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def close_now(self) -> None:
        """Close at once with a FIN (no TLS close_notify): for idle pooled connections."""
        if not self.closed:
            self.closed = True
            # The socket may be registered with trio's epoll (we waited on it): tell trio
            # before the fd goes away, or a later fd with the same number gets confused.
            trio.lowlevel.notify_closing(self.raw)
            self.raw.close()

    def abort(self) -> None:
        """Close with a reset (SO_LINGER 0): the peer must not take what it got as
        complete."""
        if not self.closed:
            try:
                self.raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
            except OSError:
                pass
            self.close_now()

    def alive(self) -> bool:
        """For pooled idle connections: False if the peer closed, reset or sent bytes."""
        try:
            data = self.raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True
        except OSError:
            return False
        return self.idle_bytes_ok and data != b""


class SocketTransport(Transport):
    """A connected non-blocking stdlib socket, driven through trio's low-level waits."""

    __slots__ = ("raw", "peer", "local", "closed")

    def __init__(self, sock: socket.socket, peer: Optional[tuple] = None) -> None:
        sock.setblocking(False)
        self.raw = sock
        self.peer = peer if peer is not None else sock.getpeername()
        self.local = sock.getsockname()
        self.closed = False

    async def receive(self, timeout: float) -> bytes:
        sock = self.raw
        try:
            return sock.recv(RECV_SIZE)
        except BlockingIOError:
            pass
        except OSError as exc:
            raise TransportClosed(str(exc)) from exc
        with trio.move_on_after(timeout):
            while True:
                await _wait_readable(sock)
                try:
                    return sock.recv(RECV_SIZE)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    raise TransportClosed(str(exc)) from exc
        raise TransportTimeout("receive timed out")

    async def send(self, data: bytes, timeout: float) -> None:
        sock = self.raw
        try:
            n = sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError as exc:
            raise TransportClosed(str(exc)) from exc
        if n == len(data):
            return
        view = memoryview(data)[n:]
        with trio.move_on_after(timeout) as scope:
            while view:
                await _wait_writable(sock)
                # progress resets the stall timer: the timeout is for a *stalled* peer
                scope.deadline = trio.current_time() + timeout
                try:
                    n = sock.send(view)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    raise TransportClosed(str(exc)) from exc
                view = view[n:]
            return
        raise TransportTimeout("send stalled")

    async def close(self) -> None:
        self.close_now()


class StreamTransport(Transport):
    """Any trio Stream (an SSLStream over a SocketStream, for TLS)."""

    __slots__ = ("stream", "peer", "local", "closed", "raw")
    idle_bytes_ok = True

    def __init__(self, stream: trio.abc.Stream, raw: socket.socket) -> None:
        self.stream = stream
        self.raw = raw
        self.peer = raw.getpeername()
        self.local = raw.getsockname()
        self.closed = False

    async def receive(self, timeout: float) -> bytes:
        with trio.move_on_after(timeout):
            try:
                return await self.stream.receive_some(RECV_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise TransportClosed(str(exc)) from exc
        raise TransportTimeout("receive timed out")

    async def send(self, data: bytes, timeout: float) -> None:
        with trio.move_on_after(timeout):
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise TransportClosed(str(exc)) from exc
            return
        raise TransportTimeout("send stalled")

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            with trio.move_on_after(1):  # TLS close_notify; never hang on a dead peer
                try:
                    await self.stream.aclose()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass
            if self.raw.fileno() != -1:
                trio.lowlevel.notify_closing(self.raw)
                self.raw.close()
