"""Listening sockets and the accept loop.

Sockets are plain non-blocking stdlib sockets driven by trio's low-level waits (see
transport.py for why).  `SO_REUSEPORT` is set only when several worker processes share a
port: set by default, it would let a second gateway started by mistake silently take half
of the traffic.  The accept loop pauses at the connection cap instead of accepting and
dropping: the kernel's backlog then holds (and finally refuses) the excess, as nginx does
when worker_connections is reached.

A port that cannot be had is the commonest reason a gateway does not start: `bind_socket`
raises `ListenError`, a `startup.StartupError` whose message names the address.
"""

from __future__ import annotations

import socket
from typing import Awaitable, Callable, Optional

import trio

from .startup import StartupError

__all__ = ["bind_socket", "accept_loop", "ConnectionLimit", "split_hostport", "ListenError"]

BACKLOG = 1024


class ListenError(StartupError, OSError):
    """A listening socket cannot be opened: `cannot listen on HOST:PORT: REASON`."""

    def __init__(self, host: str, port: int, exc: OSError) -> None:
        reason = exc.strerror or str(exc) or type(exc).__name__
        super().__init__(exc.errno, reason[:1].lower() + reason[1:])
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def __str__(self) -> str:
        return f"cannot listen on {self.address}: {self.strerror}"

    def __reduce__(self) -> tuple:  # (host, port) are gone: rebuild from the message
        return (StartupError, (str(self),))


def split_hostport(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    return host.strip("[]"), int(port)


def bind_socket(host: str, port: int, *, reuse_port: bool = False,
                listen: bool = True) -> socket.socket:
    """A bound (and by default listening) non-blocking socket; ListenError if the
    address cannot be had (in use, not local, no such host, a privileged port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:  # EMFILE, or no IPv6 in this kernel
        raise ListenError(host, port, exc) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ListenError(host, port, exc) from None
    except BaseException:
        sock.close()
        raise
    return sock


class ConnectionLimit:
    """Counts open connections; `wait_for_slot` blocks while at the cap."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.active = 0
        self._lot = trio.lowlevel.ParkingLot()

    async def wait_for_slot(self) -> None:
        while self.active >= self.cap:
            await self._lot.park()

    def acquire(self) -> None:
        self.active += 1

    def release(self) -> None:
        self.active -= 1
        self._lot.unpark()


Serve = Callable[[socket.socket, tuple], Awaitable[None]]


async def accept_loop(lsock: socket.socket, nursery: trio.Nursery, serve: Serve,
                      limit: Optional[ConnectionLimit] = None) -> None:
    """Accept connections forever, each served in its own task."""
    wait_readable = trio.lowlevel.wait_readable

    async def run(conn: socket.socket, addr: tuple) -> None:
        try:
            await serve(conn, addr)
        finally:
            if limit is not None:
                limit.release()

    try:
        while True:
            if limit is not None:
                await limit.wait_for_slot()
            try:
                conn, addr = lsock.accept()
            except BlockingIOError:
                await wait_readable(lsock)
                continue
            except OSError as exc:  # EMFILE & co: back off instead of spinning
                if exc.errno in (24, 23, 105, 12):
                    await trio.sleep(0.1)
                    continue
                raise
            conn.setblocking(False)
            if conn.family != socket.AF_UNIX:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if limit is not None:
                limit.acquire()
            nursery.start_soon(run, conn, addr)
    finally:
        trio.lowlevel.notify_closing(lsock)
