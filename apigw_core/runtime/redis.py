"""A small Redis client over trio: RESP through hiredis' Reader, a pool, a deadline per
call, a breaker, EVALSHA with the NOSCRIPT fallback, and Sentinel master discovery.

Strategy.  The gateway asks Redis one thing per decision (a Lua script, one round trip),
so the client is built for that and nothing else: a call takes a pooled connection for
itself (at most `pool` per process; a caller over that waits, inside its deadline), writes
its commands in one send (several commands are pipelined: one write, the replies read in
order), reads the replies with hiredis' `Reader` and gives the connection back.  No
background task, so the client needs no nursery and costs nothing while unused.

Every call has one deadline (`timeout`, 50 ms by default) covering the wait for a
connection, the dial, the Sentinel lookup, the write and the read; past it the call raises
`RedisUnavailable` and the connection it held is closed (its reply may still come, and
would answer the next caller).  A request never waits longer than that for Redis.

The breaker turns a dead or stalled server into fast failures: after `threshold`
consecutive failures the client is *down*: calls raise at once, without dialling, for a
cool-down (0.25 s, doubling to 4 s while probes fail); then one call is let through as the
probe, and its success brings the client *up* again.  Each change of state is one log line
(never one per request) and `failures` counts every failed call (for the metrics).  A
connection that was idle in the pool and turns out dead before any reply byte arrived (the
server restarted) is retried once on a fresh one, inside the same deadline.

Addresses: `redis://[[user]:password@]host[:port][/db]`; with `sentinels` the host of the
URL is ignored and the master named `master` is asked from the first sentinel that answers
(`SENTINEL get-master-addr-by-name`), checked with `ROLE` on each new connection and asked
again after any failure, so a failover is followed.  Redis Cluster is not supported: a node
that answers `MOVED` / `ASK` / `CLUSTERDOWN` raises `RedisError` saying so (our scripts
touch one key each, so a cluster client could route them; not built yet).  `rediss://`
(TLS) and unix sockets are refused by the config.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import logging
import os
import socket as _stdsocket
from typing import Any, Optional, Sequence

import hiredis
import trio

from ..gateway.config._redis import RedisAddress, parse_redis_url

__all__ = ["RedisClient", "RedisError", "RedisUnavailable", "Script", "RedisAddress",
           "parse_redis_url"]

log = logging.getLogger("apigw_core.runtime")

_RECV = 65536


class RedisUnavailable(Exception):
    """Redis did not answer within the deadline (down, stalled, unreachable, breaker open)."""


class RedisError(Exception):
    """Redis answered with an error reply (a bug in a script, a wrong password, a cluster)."""


class Script:
    """A Lua script run by SHA1 (EVALSHA); sent whole (EVAL) once per server that lacks it."""

    __slots__ = ("source", "sha")

    def __init__(self, source: str) -> None:
        self.source = source.encode()
        self.sha = hashlib.sha1(self.source).hexdigest().encode()


class _Conn:
    __slots__ = ("sock", "reader")

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.reader = hiredis.Reader()

    async def roundtrip(self, payload: bytes, n: int) -> list[Any]:
        """Send `payload` (n commands) and read n replies.  _Stale if the peer closed
        before the first reply byte; OSError / EOFError otherwise.  The socket is called
        first and waited on only when it would block (one trip through trio's scheduler
        per decision, not four: measured, each costs more than the syscall)."""
        sock, reader = self.sock, self.reader
        try:
            await _send_all(sock, payload)
        except OSError as exc:
            raise _Stale(exc) from None
        replies: list[Any] = []
        got = False
        while len(replies) < n:
            r = reader.gets()
            if r is False:
                try:
                    data = await _recv(sock)
                except OSError as exc:
                    if got:
                        raise
                    raise _Stale(exc) from None
                if not data:
                    if got:
                        raise EOFError("redis closed the connection")
                    raise _Stale(EOFError("redis closed the connection"))
                got = True
                reader.feed(data)
                continue
            replies.append(r)
        return replies

    def close(self) -> None:
        self.sock.close()


class _Stale(Exception):
    """The connection was dead before any reply came: the commands did not run."""


async def _send_all(sock: _stdsocket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view):]
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)


async def _recv(sock: _stdsocket.socket) -> bytes:
    while True:
        try:
            return sock.recv(_RECV)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(sock)


_UP, _DOWN, _PROBING = "up", "down", "probing"


class RedisClient:
    """See the module docstring.  `failures` counts failed calls; `state` is up / down /
    probing; `close()` closes idle connections now and busy ones when they come back (a
    late call still works, on a connection of its own: requests of a replaced config)."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, timeout: float = 0.05,
                 pool: int = 8, sentinels: Sequence[tuple[str, int]] = (),
                 master: Optional[str] = None, threshold: int = 3,
                 cool_down: tuple[float, float] = (0.25, 4.0)) -> None:
        self.address = parse_redis_url(url)
        self.timeout = timeout
        self.size = pool
        self.sentinels = tuple(sentinels)
        self.master = master
        if self.sentinels and not master:
            raise ValueError("sentinels need the master's name")
        self.threshold = threshold
        self.cool_down = cool_down
        self.failures = 0            # every failed call, for the metrics
        self.state = _UP
        self._consecutive = 0
        self._pause = cool_down[0]
        self._retry_at = 0.0
        self._down_since = 0.0
        self._idle: list[_Conn] = []
        self._busy = 0
        self._waiting = trio.lowlevel.ParkingLot()   # callers over `pool` busy connections
        self._target: Optional[tuple[str, int]] = None   # resolved master (sentinels)
        self._closed = False

    @property
    def where(self) -> str:
        if self.sentinels:
            return f"master {self.master!r} via sentinels " + ",".join(
                f"{h}:{p}" for h, p in self.sentinels)
        return f"{self.address.host}:{self.address.port}"

    # -- calls ------------------------------------------------------------------------------

    async def execute(self, *args: Any) -> Any:
        """One command; its reply (bytes, int, list, None).  RedisError on an error reply."""
        return _raise_error((await self._call(hiredis.pack_command(args), 1))[0])

    async def pipeline(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Several commands in one write and one round trip; their replies in order, an
        error reply as a RedisError instance in its place (not raised)."""
        payload = b"".join(hiredis.pack_command(tuple(c)) for c in commands)
        return [_as_error(r) for r in await self._call(payload, len(commands))]

    async def run_script(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """EVALSHA; on NOSCRIPT the whole script with EVAL, on the same connection and
        inside the same deadline (once per server: it caches it)."""
        ev = hiredis.pack_command(("EVALSHA", script.sha, len(keys), *keys, *args))
        return _raise_error((await self._call(ev, 1, script, keys, args))[0])

    async def _call(self, payload: bytes, n: int, script: Optional[Script] = None,
                    keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> list[Any]:
        probe = False
        if self.state != _UP:
            now = trio.current_time()
            if self.state == _PROBING or now < self._retry_at:
                self.failures += 1
                raise RedisUnavailable(f"redis {self.where} is down (failing fast)")
            self.state = _PROBING  # this call is the probe; the others still fail fast
            probe = True
        reason = "timed out"
        try:
            with trio.move_on_after(self.timeout):
                try:
                    replies = await self._attempt(payload, n)
                    if script is not None and _noscript(replies[0]):
                        replies = await self._attempt(hiredis.pack_command(
                            ("EVAL", script.source, len(keys), *keys, *args)), 1)
                except (OSError, EOFError, _Stale, RedisUnavailable,
                        hiredis.ProtocolError) as exc:
                    reason = _reason(exc)
                else:
                    self._succeeded()
                    return replies
            self._failed(reason)
        finally:
            if probe and self.state == _PROBING:   # the probe's caller went away: the
                self.state = _DOWN                 # next call probes instead
                self._retry_at = trio.current_time()
        raise RedisUnavailable(f"redis {self.where}: {reason}")

    async def _attempt(self, payload: bytes, n: int) -> list[Any]:
        while self._busy >= self.size:   # a free slot takes no trip through the scheduler
            await self._waiting.park()
        self._busy += 1
        try:
            for fresh in (False, True):
                conn = self._idle.pop() if self._idle and not fresh else None
                reused = conn is not None
                if conn is None:
                    conn = await self._dial()
                ok = False
                try:
                    replies = await conn.roundtrip(payload, n)
                    ok = True
                except _Stale:
                    if not reused:
                        raise
                    self._drop_idle()   # its siblings are from the same dead server
                    continue            # the commands did not run: once more, fresh
                finally:
                    if not ok:
                        conn.close()
                if self._closed:
                    conn.close()
                else:
                    self._idle.append(conn)
                return replies
            raise AssertionError("unreachable")
        finally:
            self._busy -= 1
            self._waiting.unpark()

    # -- connections ------------------------------------------------------------------------

    async def _dial(self) -> _Conn:
        a = self.address
        if self.sentinels:
            host, port = self._target or await self._resolve()
        else:
            host, port = a.host, a.port
        conn = await _connect(host, port)
        hello: list[tuple] = []
        if a.password is not None:
            hello.append(("AUTH", a.username, a.password) if a.username else ("AUTH", a.password))
        if a.db:
            hello.append(("SELECT", a.db))
        if self.sentinels:
            hello.append(("ROLE",))
        if hello:
            try:
                replies = await conn.roundtrip(b"".join(hiredis.pack_command(c) for c in hello),
                                               len(hello))
            except BaseException:
                conn.close()
                raise
            bad = next((r for r in replies if isinstance(r, hiredis.ReplyError)), None)
            if bad is not None:
                conn.close()
                raise RedisUnavailable(f"redis {host}:{port} refused the connection: {bad}")
            if self.sentinels and not (replies[-1] and replies[-1][0] == b"master"):
                conn.close()
                self._target = None
                raise RedisUnavailable(f"{host}:{port} is not the master any more")
        return conn

    async def _resolve(self) -> tuple[str, int]:
        """The master's address from the first sentinel that knows it."""
        why = "no sentinel answered"
        for host, port in self.sentinels:
            try:
                conn = await _connect(host, port)
            except OSError as exc:
                why = f"sentinel {host}:{port}: {_reason(exc)}"
                continue
            try:
                reply = (await conn.roundtrip(hiredis.pack_command(
                    ("SENTINEL", "get-master-addr-by-name", self.master)), 1))[0]
            except (OSError, EOFError, _Stale) as exc:
                why = f"sentinel {host}:{port}: {_reason(exc)}"
                continue
            finally:
                conn.close()
            if isinstance(reply, list) and len(reply) == 2:
                self._target = (reply[0].decode(), int(reply[1]))
                return self._target
            why = f"sentinel {host}:{port} does not know master {self.master!r}"
        raise RedisUnavailable(why)

    def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for c in idle:
            c.close()

    # -- the breaker -----------------------------------------------------------------------

    def _succeeded(self) -> None:
        self._consecutive = 0
        if self.state != _UP:
            self.state = _UP
            self._pause = self.cool_down[0]
            log.warning("redis %s is available again (after %.1f s)", self.where,
                        trio.current_time() - self._down_since)

    def _failed(self, reason: str) -> None:
        self.failures += 1
        self._consecutive += 1
        self._drop_idle()
        self._target = None   # ask the sentinels again
        now = trio.current_time()
        if self.state == _PROBING:
            self.state = _DOWN
            self._pause = min(self._pause * 2, self.cool_down[1])
            self._retry_at = now + self._pause
        elif self.state == _UP and self._consecutive >= self.threshold:
            self.state = _DOWN
            self._down_since = now
            self._pause = self.cool_down[0]
            self._retry_at = now + self._pause
            log.warning("redis %s is unavailable (%s): failing fast, probing every %g-%g s",
                        self.where, reason, *self.cool_down)

    def close(self) -> None:
        """Idle connections now; busy ones as their calls end.  Idempotent."""
        self._closed = True
        self._drop_idle()


async def _connect(host: str, port: int) -> _Conn:
    """A non-blocking stdlib socket connected to host:port (a name is resolved first, in
    trio's resolver thread)."""
    try:
        ipaddress.ip_address(host)
        family, addr = (_stdsocket.AF_INET6 if ":" in host else _stdsocket.AF_INET), (host, port)
    except ValueError:
        infos = await trio.socket.getaddrinfo(host, port, type=_stdsocket.SOCK_STREAM)
        if not infos:
            raise OSError(f"cannot resolve {host}") from None
        family, addr = infos[0][0], infos[0][4]
    sock = _stdsocket.socket(family, _stdsocket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(_stdsocket.IPPROTO_TCP, _stdsocket.TCP_NODELAY, 1)
        err = sock.connect_ex(addr)
        if err == errno.EINPROGRESS:
            await trio.lowlevel.wait_writable(sock)
            err = sock.getsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))
    except BaseException:
        sock.close()
        raise
    return _Conn(sock)


def _noscript(reply: Any) -> bool:
    return isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT")


_CLUSTER = ("MOVED ", "ASK ", "CLUSTERDOWN")


def _as_error(reply: Any) -> Any:
    if not isinstance(reply, hiredis.ReplyError):
        return reply
    text = str(reply)
    if text.startswith(_CLUSTER):
        text += " (Redis Cluster is not supported: use a standalone server or sentinels)"
    return RedisError(text)


def _raise_error(reply: Any) -> Any:
    r = _as_error(reply)
    if isinstance(r, RedisError):
        raise r
    return r


def _reason(exc: BaseException) -> str:
    if isinstance(exc, _Stale):
        exc = exc.args[0]
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
