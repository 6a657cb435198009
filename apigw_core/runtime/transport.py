"""Byte transports for the connection drivers: a raw non-blocking socket, or any trio Stream.

Strategy.  The drivers need three verbs with a deadline each: `receive(timeout)`,
`send(data, timeout)` and `close()`.  `SocketTransport` calls the non-blocking socket first
and waits with trio's `wait_readable` / `wait_writable` only when the call would block: on a
busy keep-alive connection the data is usually there already, and skipping trio's
SocketStream wrapper (and a cancel scope per call) is worth about a third of the CPU of a
proxied request (measured for the target design, ARCHITECTURE.md: ~22k vs ~30k requests per CPU-second for a do-nothing proxy).
Trio's promises are kept by the drivers, which pass a scheduling checkpoint at least once
per request (`trio.lowlevel.checkpoint`), and by every wait here being cancellable.
`StreamTransport` wraps a trio Stream (TLS: trio.SSLStream) with the same verbs.
`WAITS[0]` counts the trio waits that returned (each a checkpoint): a driver that sees it
moved while it served a request knows its task passed a checkpoint, and skips its own
(h1server.py; no other task can move it unless this one yielded).

Timeouts raise `TransportTimeout`; a peer reset or a broken pipe raises `TransportClosed`;
a clean EOF is `b""` from `receive`.

Two kinds of receive timeout.  `receive(timeout)` is for waits whose timeout ends the
connection anyway (a keep-alive connection idle too long, a backend that does not answer):
with a `Watchdog` it costs no cancel scope (creating one with a deadline costs ~5 us here,
about 5 % of a proxied request, and a request waits twice): the transport is put in the
watchdog's set with its deadline, and the watchdog's sweep (every 0.1 s) closes the
transports whose deadline passed, which wakes their waiting task through
`trio.lowlevel.notify_closing`.  `receive_or_timeout(timeout)` keeps the connection usable
after a timeout (a slow request head gets a 408): it uses a cancel scope.

Lingering close (nginx `lingering_close`).  Closing a socket whose receive queue holds
unread bytes sends a reset, and a reset can destroy the answer just written (unsent bytes
are dropped, and some client stacks discard what they received).  After answering a
request it did not read whole (413, 431, ...), a driver calls `linger_close()`: FIN our
side (shutdown SHUT_WR), then read and drop what the client still sends until its EOF, for
at most LINGER_TIME seconds, LINGER_READ seconds per read and LINGER_BYTES bytes (nginx:
30 s, 5 s, unbounded; ours only has to let an answer be read), then close.  Over TLS a
half-close would end the TLS session, so the draining happens without it.
"""

from __future__ import annotations

import errno
import socket
from typing import Any, Optional

import trio

from .abort import WATCHED as _CLIENTS, sweep as _client_sweep

__all__ = ["Transport", "SocketTransport", "StreamTransport", "TransportTimeout",
           "TransportClosed", "RECV_SIZE", "Watchdog", "LINGER_TIME", "LINGER_READ",
           "LINGER_BYTES", "WAITS"]

RECV_SIZE = 65536  # bounded read buffer per connection and per read
LINGER_TIME = 2.0           # a lingering close's whole drain
LINGER_READ = 1.0           # ... and its wait for each next read
LINGER_BYTES = 16 * 1024 * 1024  # ... and what it takes at most

_wait_readable = trio.lowlevel.wait_readable
_wait_writable = trio.lowlevel.wait_writable
WAITS = [0]  # trio waits (checkpoints) that returned, in this thread's trio run
_RESET_ERRNOS = {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED, errno.ETIMEDOUT,
                 errno.ENOTCONN, errno.EBADF}


class TransportTimeout(Exception):
    """A receive or send did not progress within its timeout."""


class TransportClosed(Exception):
    """The connection was reset, or written after the peer went away."""


# a plain int: `|` on the socket module's IntFlag members runs enum's Python code (ten
# Python calls per pooled request)
_PEEK = int(socket.MSG_PEEK | socket.MSG_DONTWAIT)
_LINGER_0 = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # struct linger {on, 0 s}


class Watchdog:
    """Closes the transports whose deadline passed; `run` is its sweep task.  `watched`
    holds anything with a `deadline` and an `expire()`: transports, and the HTTP/2
    backend exchanges waiting for an answer (h2upstream.H2Exchange)."""

    TICK = 0.1  # timeout precision; timeouts are seconds, and a sweep costs a set scan

    def __init__(self) -> None:
        self.watched: set[Any] = set()

    async def run(self) -> None:
        watched = self.watched
        while True:
            await trio.sleep(self.TICK)
            if watched:
                now = trio.current_time()
                for t in [t for t in watched if t.deadline <= now]:
                    watched.discard(t)
                    t.expire()
            if _CLIENTS:   # requests in progress whose client may close (abort.py)
                _client_sweep()


class Transport:
    """What the drivers use; see the module docstring."""

    __slots__ = ()
    raw: socket.socket  # the connected socket underneath
    peer: tuple  # (ip, port) of the other end
    local: tuple
    closed: bool
    tls: object  # clientcert.ConnectionTLS (client certificate, XFCC mode) or None

    async def receive(self, timeout: float) -> bytes:
        """The next bytes (b"" at EOF); on timeout the connection is closed."""
        raise NotImplementedError

    async def receive_or_timeout(self, timeout: float) -> bytes:
        """The next bytes (b"" at EOF); on timeout the connection stays open."""
        return await self.receive(timeout)

    def expire(self) -> None:
        """Called by the watchdog (or a graceful shutdown): end the pending wait with
        TransportTimeout by closing the connection."""
        self.close_now()

    async def send(self, data: bytes, timeout: float) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def linger_close(self) -> None:
        """Close after taking what the peer still sends (see the module docstring)."""
        if self.closed:
            return
        self._half_close()
        left = LINGER_BYTES
        with trio.move_on_after(LINGER_TIME):
            try:
                while left > 0:
                    data = await self.receive_or_timeout(LINGER_READ)
                    if not data:
                        break
                    left -= len(data)
            except (TransportTimeout, TransportClosed):
                pass
        await self.close()

    def _half_close(self) -> None:
        """Send our FIN, keep reading (where the transport can)."""

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
            self.raw.recv(1, _PEEK)
        except BlockingIOError:
            return True
        except OSError:
            return False
        # EOF, or bytes from a peer that has nothing to say: under TLS a close_notify
        # alert (session tickets come with the first response and were read with it)
        return False


class SocketTransport(Transport):
    """A connected non-blocking stdlib socket, driven through trio's low-level waits."""

    __slots__ = ("raw", "peer", "local", "closed", "watchdog", "deadline", "timed_out", "tls")

    def __init__(self, sock: socket.socket, peer: Optional[tuple] = None,
                 watchdog: Optional[Watchdog] = None) -> None:
        sock.setblocking(False)
        self.tls = None   # clientcert.ConnectionTLS when the listener says (XFCC trust)
        self.raw = sock
        self.peer = peer if peer is not None else sock.getpeername()
        self.local = sock.getsockname()
        self.closed = False
        self.watchdog = watchdog
        self.deadline = 0.0
        self.timed_out = False

    def expire(self) -> None:
        self.timed_out = True
        self.close_now()

    async def receive(self, timeout: float) -> bytes:
        sock = self.raw
        try:
            return sock.recv(RECV_SIZE)
        except BlockingIOError:
            pass
        except OSError as exc:
            raise self._closed_error(exc) from None
        wd = self.watchdog
        if wd is None:
            return await self._wait_receive(timeout)
        self.deadline = trio.current_time() + timeout
        watched = wd.watched
        watched.add(self)
        try:
            return await self._wait_loop(sock)
        finally:
            watched.discard(self)

    async def receive_or_timeout(self, timeout: float) -> bytes:
        sock = self.raw
        try:
            return sock.recv(RECV_SIZE)
        except BlockingIOError:
            pass
        except OSError as exc:
            raise self._closed_error(exc) from None
        return await self._wait_receive(timeout)

    async def _wait_receive(self, timeout: float) -> bytes:
        with trio.move_on_after(timeout):
            return await self._wait_loop(self.raw)
        raise TransportTimeout("receive timed out")

    async def _wait_loop(self, sock: socket.socket) -> bytes:
        while True:
            try:
                await _wait_readable(sock)
            except trio.ClosedResourceError as exc:  # expire() closed it under us
                raise self._closed_error(exc) from None
            WAITS[0] += 1
            try:
                return sock.recv(RECV_SIZE)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise self._closed_error(exc) from None

    def _half_close(self) -> None:
        try:
            self.raw.shutdown(socket.SHUT_WR)
        except OSError:  # already reset: the reads that follow end at once
            pass

    def _closed_error(self, exc: BaseException) -> Exception:
        if self.timed_out:
            return TransportTimeout("timed out")
        return TransportClosed(str(exc) or "closed")

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
                WAITS[0] += 1
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

    __slots__ = ("stream", "peer", "local", "closed", "raw", "tls")

    def __init__(self, stream: trio.abc.Stream, raw: socket.socket) -> None:
        self.tls = None   # clientcert.ConnectionTLS: the client's certificate, XFCC mode
        self.stream = stream
        self.raw = raw
        self.peer = raw.getpeername()
        self.local = raw.getsockname()
        self.closed = False

    async def receive(self, timeout: float) -> bytes:
        with trio.move_on_after(timeout):
            try:
                data = await self.stream.receive_some(RECV_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise TransportClosed(str(exc)) from exc
            WAITS[0] += 1   # every trio Stream call is a checkpoint
            return data
        raise TransportTimeout("receive timed out")

    async def send(self, data: bytes, timeout: float) -> None:
        with trio.move_on_after(timeout):
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise TransportClosed(str(exc)) from exc
            WAITS[0] += 1
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
