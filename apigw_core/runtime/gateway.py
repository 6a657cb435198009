"""The gateway process: listeners, connections, pools, admin endpoints, graceful shutdown.

`Gateway(config).run()` opens every listener (and the admin one), serves until
`shutdown()`, then drains: the listeners close at once, idle keep-alive connections are
closed, requests in flight finish (their responses say `connection: close`) until
`server.shutdown_timeout`, and whatever is left is cancelled.  The admin listener keeps
answering during the drain, so a load balancer polling `/ready` sees 503, not silence.
`run` is meant for `nursery.start(gateway.run)`: it reports the bound addresses when it is
ready, so tests and embedding servers can bind port 0.  What keeps it from starting (a
port in use, a TLS file that does not load) raises `StartupError`, before any port is
taken when it can be.

Reload (`reload()`, `trigger_reload()`; runtime/reload.py says what may change): the new
file is read and compiled into a `GatewayState` in a worker thread, so the event loop
keeps serving meanwhile, then swapped in with one assignment; a request holds the state
it started on until it ends.  The pools the new state does not use are retired: closed at
once (idle connections now, busy ones when released) and again once no request holds the
old state (a weak reference tells), for the HTTP/2 connections and the ad-hoc pools that
late requests of the old state opened.  Reloads run one at a time; the triggers that
arrive while one runs make one more.  Admin: `GET /config` (version, loaded-at, source,
last-error) and `POST /reload` (`reload_everywhere`: this process, or with `--workers`
every worker through the supervisor), answered once this process's reload is done.
"""


from __future__ import annotations

import logging
import re
import socket
import ssl
import time
import weakref
from typing import Any, Awaitable, Callable, Optional

import trio

from ..buckets import BucketTable
from ..gateway.config import BackendConfig, GatewayConfig, ListenerConfig
from ..gateway.forwarding import RequestIds
from ..gateway.router import Router
from ..protocol.alpn import H2, HTTP11, alpn_protocols, protocol_from_alpn, sniff
from .h1server import H1Driver
from .h2server import H2Driver, h2_limits
from .listeners import ConnectionLimit, accept_loop, bind_socket
from .proxy import proxy_handler
from .reload import ReloadRefused, ReloadStatus, load_reloadable, restart_only_changes
from .state import GatewayState
from .startup import StartupError
from .stream import HTTPStream
from .clientcert import ListenerCerts, configure_client_auth
from .telemetry import Telemetry
from .tls import server_ssl_context
from .transport import (SocketTransport, StreamTransport, Transport, TransportClosed,
                        TransportTimeout, Watchdog)
from .h2upstream import H2UpstreamPool
from .health_checks import admin_backends
from .upstream import UpstreamPool

__all__ = ["Gateway", "AdminHandler"]

AdminHandler = Callable[["Gateway", HTTPStream], Awaitable[None]]

log = logging.getLogger("apigw_core.runtime")


class Gateway:
    """One gateway process (one worker).  See the module docstring."""

    def __init__(self, config: GatewayConfig, *, reuse_port: bool = False, version: int = 1,
                 pin: Optional[Callable[[GatewayConfig], GatewayConfig]] = None,
                 reload_everywhere: Optional[Callable[[], None]] = None,
                 buckets: Optional[BucketTable] = None) -> None:
        self.watchdog = Watchdog()
        # rate limits' shared memory: the supervisor's table (workers), else made on first
        # use; it outlives reloads (state swaps never touch it)
        self._buckets = buckets
        self._write_timeout = config.server.write_timeout   # server.* needs a restart
        # everything derived from the config, swapped as one on reload (runtime/state.py)
        self.state = GatewayState(config, self.watchdog, version=version,
                                  make_pool=self._pool)
        self.pin = pin  # applied to a reloaded file (workers: the supervisor's ports)
        # what POST /reload triggers: this process, or (workers) all of them
        self.reload_everywhere = reload_everywhere or self.trigger_reload
        self.last_reload_error: Optional[tuple[float, list[str]]] = None
        self._reload_lock = trio.Lock()
        self._reload_wanted = trio.Event()
        self._reloads_started = 0
        self._reloads_done = 0
        self._reload_done = trio.lowlevel.ParkingLot()
        self._conns: Optional[trio.Nursery] = None
        self.request_ids = RequestIds()
        self.reuse_port = reuse_port
        self.draining = False
        self.addresses: list[tuple[str, int]] = []      # bound listener addresses
        self.admin_address: Optional[tuple[str, int]] = None
        self.limit = ConnectionLimit(config.server.max_connections)
        self._drivers: set = set()  # H1Driver / H2Driver
        self._stop = trio.Event()
        self._ready = False
        self.telemetry = Telemetry(config)   # restart-only: built once per process
        self._handler = self.telemetry.wrap(proxy_handler(self))
        self._admin_routes: dict[bytes, tuple[tuple[bytes, ...], AdminHandler]] = {}
        self._admin_prefixes: dict[bytes, tuple[tuple[bytes, ...], AdminHandler]] = {}
        self.add_admin_route(b"/healthz", lambda gw, s: _text(s, 200, b"ok\n"), methods=())
        self.add_admin_route(b"/ready", Gateway._admin_ready, methods=())
        self.add_admin_route(b"/config", lambda gw, s: _json(s, 200, gw.reload_status().to_json()))
        self.add_admin_route(b"/reload", Gateway._admin_reload, methods=(b"POST",))
        self.add_admin_route(b"/backends", admin_backends)   # runtime/health_checks.py
        from .admin_telemetry import add_routes   # /metrics, /stats, / (the live page)
        add_routes(self)
        from .debugtrace import add_routes as add_trace_routes   # request tracing
        add_trace_routes(self)

    def _pool(self, name: str, b: BackendConfig):
        try:  # an https backend loads its CA file here
            return (UpstreamPool(b, self.watchdog) if b.http_version == "1" else
                    H2UpstreamPool(b, self.watchdog, self._write_timeout))
        except (ssl.SSLError, OSError) as exc:
            what = "TLS CA file or client certificate" if b.tls.cert else "TLS CA file"
            raise StartupError(f"backend {name}: cannot load its {what}: "
                               f"{_ssl_reason(exc)}") from None

    @property
    def buckets(self) -> BucketTable:
        """The token buckets, counters and semaphores every worker shares
        (apigw_core.buckets).  Without workers: this process's own, private table."""
        if self._buckets is None:
            self._buckets = BucketTable()
            self._buckets.unlink()  # private: nothing to leave behind in /dev/shm
        return self._buckets

    @property
    def config(self) -> GatewayConfig:
        return self.state.config

    @property
    def router(self) -> Router:
        return self.state.router

    @property
    def pools(self) -> dict:
        return self.state.pools

    @property
    def active_connections(self) -> int:
        return self.limit.active

    def shutdown(self) -> None:
        """Start a graceful shutdown (idempotent; callable from any task of this run)."""
        self._stop.set()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        cfg = self.config
        socks: list[tuple[socket.socket, ListenerConfig]] = []
        admin_sock = None
        handlers = [self._serve_for(lc) for lc in cfg.listeners]  # TLS loads: before any bind
        try:
            for lc in cfg.listeners:
                socks.append((bind_socket(lc.host, lc.port, reuse_port=self.reuse_port), lc))
            if cfg.admin is not None:
                admin_sock = bind_socket(cfg.admin.host, cfg.admin.port,
                                         reuse_port=self.reuse_port)
            self.addresses = [s.getsockname()[:2] for s, _ in socks]
            if admin_sock is not None:
                self.admin_address = admin_sock.getsockname()[:2]
            self.telemetry.open()   # an access log that cannot be opened fails the start
            async with trio.open_nursery() as conns:
                conns.start_soon(self.watchdog.run)
                conns.start_soon(self.telemetry.run)
                self.state.start(conns)  # HTTP/2 backend connections run here
                self._conns = conns
                conns.start_soon(self._reloader)
                if admin_sock is not None:  # answers (/ready: 503) until the drain ends
                    conns.start_soon(accept_loop, admin_sock, conns, self._serve_admin)
                async with trio.open_nursery() as accepting:
                    for (sock, _), serve in zip(socks, handlers):
                        accepting.start_soon(accept_loop, sock, conns, serve, self.limit)
                    self._ready = True
                    task_status.started(self)
                    await self._stop.wait()
                    accepting.cancel_scope.cancel()
                for sock, _ in socks:
                    sock.close()
                socks.clear()
                await self._drain(conns)
        finally:
            for sock, _ in socks:
                sock.close()
            if admin_sock is not None:
                admin_sock.close()
            for pool in self.state.all_pools():
                pool.close()

    async def _drain(self, conns: trio.Nursery) -> None:
        self.draining = True
        self._ready = False
        for drv in list(self._drivers):
            drv.close_if_idle()
        with trio.move_on_after(self.config.server.shutdown_timeout):
            while self._drivers:
                for drv in list(self._drivers):
                    drv.close_if_idle()  # those that just finished a request
                await trio.sleep(0.05)
        conns.cancel_scope.cancel()

    # -- reload --------------------------------------------------------------------------

    def trigger_reload(self) -> None:
        """Reload soon (a signal, the file watch): triggers that arrive while a reload
        is pending make one reload, which reads the file as it is then."""
        self._reload_wanted.set()

    async def _reloader(self) -> None:
        while True:
            await self._reload_wanted.wait()
            self._reload_wanted = trio.Event()
            await self.reload()

    async def reload(self, config: Optional[GatewayConfig] = None) -> bool:
        """Apply the config file again (or `config`).  True: the new config serves every
        request from now on.  False: it was refused, the running one keeps serving, and
        `last_reload_error` (logged too) says why."""
        async with self._reload_lock:
            self._reloads_started += 1
            try:
                return await self._reload(config)
            finally:
                self._reloads_done += 1
                self._reload_done.unpark_all()

    async def _reload(self, config: Optional[GatewayConfig]) -> bool:
        old = self.state
        source = old.config.source
        if self.draining:
            log.info("reload of %s ignored: draining", source)
            return False
        try:
            new = await trio.to_thread.run_sync(self._build, old, config)
        except ReloadRefused as exc:
            self.last_reload_error = (time.time(), exc.errors)
            self.telemetry.reloaded(False)
            for e in exc.errors:
                log.error("reload of %s refused: %s", source, e)
            log.error("reload of %s refused: config version %d keeps serving", source,
                      old.version)
            return False
        if self._conns is not None:
            new.start(self._conns)
        self.state = new   # the switch: the next request reads the new state
        self.last_reload_error = None
        self.telemetry.reloaded(True)
        log.info("reloaded %s: config version %d", source, new.version)
        retired = old.retired_pools(new)
        for pool in retired:  # idle connections now, busy ones when released
            pool.close()
        if self._conns is not None:
            self._conns.start_soon(self._retire, weakref.ref(old), new, retired)
        return True

    def _build(self, old: GatewayState, config: Optional[GatewayConfig]) -> GatewayState:
        """The new state (in a worker thread: reading and compiling take a while)."""
        if config is None:
            config = load_reloadable(old.config, self.pin)
        else:
            changed = restart_only_changes(old.config, config)
            if changed:
                raise ReloadRefused(changed)
        try:
            return GatewayState(config, self.watchdog, version=old.version + 1,
                                previous=old, make_pool=self._pool)
        except StartupError as exc:  # a backend's CA file that does not load
            raise ReloadRefused([str(exc)]) from None
        except Exception as exc:  # noqa: BLE001 - a bug: logged, and the old config stays
            log.exception("reload of %s: building the new config failed", config.source)
            raise ReloadRefused([f"internal error building the config: "
                                 f"{type(exc).__name__} (logged)"]) from None

    async def _retire(self, old_ref: "weakref.ref[GatewayState]", new: GatewayState,
                      retired: list[Any]) -> None:
        """Until no request holds the old state: close the ad-hoc pools its requests
        open meanwhile; then close every retired pool again (HTTP/2 connections that were
        busy at the swap get their GOAWAY)."""
        # held: their ids stay theirs (a counter store kept by the new state, too)
        keep = {id(p): p for p in (*new.pools.values(), *new.stores.values())}
        del new
        closed: dict[int, Any] = {id(p): p for p in retired}
        while True:
            old = old_ref()
            if old is None:  # no request holds it any more
                break
            for pool in old.all_pools():  # ad-hoc pools may appear while requests run
                if id(pool) not in keep and id(pool) not in closed:
                    pool.close()
                    closed[id(pool)] = pool
            del old
            await trio.sleep(1)
        for pool in closed.values():  # HTTP/2 connections whose streams ended since
            pool.close()

    def reload_status(self) -> ReloadStatus:
        state = self.state
        return ReloadStatus(state.version, state.loaded_at, state.config.source,
                            self.last_reload_error)

    async def _admin_reload(self, stream: HTTPStream) -> None:
        if self.draining:
            await stream.error(503, "draining: not reloading")
            return
        target = self._reloads_started + 1  # the next reload to start reads the file now
        self.reload_everywhere()
        with trio.move_on_after(30):
            while self._reloads_done < target:
                await self._reload_done.park()
        if self._reloads_done < target:
            await stream.error(504, "the reload did not finish in time")
            return
        status = self.reload_status()
        await _json(stream, 200 if status.last_error is None else 400, status.to_json())

    # -- connections ---------------------------------------------------------------------

    def _serve_for(self, lc: ListenerConfig):
        """The connection handler of one listener: TLS or not, then the protocol (ALPN
        over TLS; the client preface, or an `Upgrade: h2c`, over cleartext h2c)."""
        settings = self.config.server
        handler = self._handler
        draining = self._is_draining
        http1 = "http1" in lc.protocols
        ctx = None
        certs = ListenerCerts(lc) if (lc.tls is not None and lc.tls.client_certificate) \
            or lc.forward_client_cert != "sanitize" else None
        if lc.tls is not None:
            try:
                ctx = server_ssl_context(lc.tls, alpn_protocols("h2" in lc.protocols, http1),
                                         lambda c: configure_client_auth(c, lc))
            except (ssl.SSLError, OSError) as exc:
                what = ("certificate, key or client CA" if lc.tls.client_certificate
                        else "certificate or key")
                raise StartupError(f"listener {lc.bind}: cannot load its TLS {what}: "
                                   f"{_ssl_reason(exc)}") from None
        h2c = h2_limits(settings) if "h2c" in lc.protocols else None

        async def serve(sock: socket.socket, addr: tuple) -> None:
            if ctx is not None:
                t = await _tls_accept(sock, ctx, settings.head_timeout)
                if t is None:
                    return
                if certs is not None:   # the client's certificate, once per connection
                    t.tls = certs.for_connection(t.stream)
                alpn = t.stream.selected_alpn_protocol()  # type: ignore[attr-defined]
                if protocol_from_alpn(alpn) == H2:
                    await self._drive(H2Driver(t, handler, settings, b"https", draining))
                elif http1:
                    await self._drive(H1Driver(t, handler, settings, b"https", draining))
                else:
                    await t.close()
                return
            transport = SocketTransport(sock, addr, self.watchdog)
            if certs is not None:
                transport.tls = certs.for_connection(None)
            initial = b""
            if h2c is not None:  # prior knowledge: the client preface, or else HTTP/1.1
                proto = None
                while proto is None:
                    try:
                        data = await transport.receive(settings.head_timeout)
                    except (TransportTimeout, TransportClosed):
                        await transport.close()
                        return
                    initial += data
                    proto = sniff(initial) if data else HTTP11
                if proto == H2:
                    await self._drive(H2Driver(transport, handler, settings, b"http",
                                               draining, initial=initial))
                    return
            if not http1:
                await transport.close()
                return
            up = await self._drive(H1Driver(transport, handler, settings, b"http",
                                            draining, initial=initial, h2c=h2c))
            if up is not None:  # `Upgrade: h2c` answered 101: HTTP/2 from here on
                await self._drive(H2Driver(transport, handler, settings, b"http", draining,
                                           conn=up.conn, first_events=up.first_events),
                                  accepted=False)

        return serve

    async def _drive(self, drv: "H1Driver | H2Driver", accepted: bool = True):
        """Run a driver (in the set the drain walks); an H1Driver's h2c upgrade is
        returned, with no checkpoint before the caller's next driver joins the set.
        `accepted`: a new connection (counted by protocol), not an upgraded one."""
        self._drivers.add(drv)
        if accepted:
            self.telemetry.connection("h2" if drv.__class__ is H2Driver else "http1")
        try:
            return await drv.run()
        finally:
            self._drivers.discard(drv)

    def open_by_protocol(self) -> dict[tuple[str], int]:
        """Client connections open now by protocol (the metrics' read at flush time):
        http1 / h2 drivers, and `handshake` for those still in TLS or protocol sniffing."""
        h2 = sum(1 for d in self._drivers if d.__class__ is H2Driver)
        h1 = len(self._drivers) - h2
        return {("http1",): h1, ("h2",): h2,
                ("handshake",): max(0, self.limit.active - h1 - h2)}

    def _is_draining(self) -> bool:
        return self.draining

    async def _serve_admin(self, sock: socket.socket, addr: tuple) -> None:
        # Not in self._drivers, and never "draining" (a draining driver closes before it
        # reads a request): a health check during the drain must get its /ready 503.  The
        # drain does not wait for admin connections; they end with it.
        await H1Driver(SocketTransport(sock, addr, self.watchdog), self._admin_handler,
                       self.config.server, b"http").run()

    def add_admin_route(self, path: bytes, handler: AdminHandler,
                        methods: tuple[bytes, ...] = (b"GET", b"HEAD"),
                        prefix: bool = False) -> None:
        """Serve `path` on the admin listener with `await handler(gateway, stream)`; with
        `prefix`, every path under it (`/traces/` answers `/traces/abc`); `methods=()`
        takes any method.  Later features (backends, metrics, traces) add theirs when the
        gateway is built."""
        (self._admin_prefixes if prefix else self._admin_routes)[path] = (methods, handler)

    async def _admin_handler(self, stream: HTTPStream) -> None:
        path = stream.request.target.partition(b"?")[0]
        route = self._admin_routes.get(path)
        if route is None:
            route = next((r for p, r in self._admin_prefixes.items()
                          if path.startswith(p)), None)
        if route is None:
            names = ", ".join(sorted(p.decode() + ("*" if p in self._admin_prefixes else "")
                                     for p in (*self._admin_routes, *self._admin_prefixes)))
            await stream.error(404, f"admin endpoints: {names}")
            return
        methods, handler = route
        if methods and stream.request.method not in methods:
            await stream.reply(405, [(b"allow", b", ".join(methods)),
                                     (b"content-length", b"0")], b"")
            return
        await handler(self, stream)

    async def _admin_ready(self, stream: HTTPStream) -> None:
        if self._ready and not self.draining:
            await _text(stream, 200, b"ready\n")
        else:
            await _text(stream, 503, b"draining\n" if self.draining else b"starting\n")


def _ssl_reason(exc: OSError) -> str:
    """'[SSL] PEM lib (_ssl.c:3905)' -> '[SSL] PEM lib'; an OSError's strerror."""
    return re.sub(r" \(_ssl\.c:\d+\)$", "", exc.strerror or str(exc))


async def _json(stream: HTTPStream, status: int, body: bytes) -> None:
    await stream.reply(status, [(b"content-type", b"application/json"),
                                (b"content-length", b"%d" % len(body))], body)


async def _text(stream: HTTPStream, status: int, body: bytes) -> None:
    await stream.reply(status, [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", b"%d" % len(body))], body)


async def _tls_accept(sock: socket.socket, ctx: ssl.SSLContext,
                      timeout: float) -> Optional[Transport]:
    stream = trio.SSLStream(trio.SocketStream(trio.socket.from_stdlib_socket(sock)), ctx,
                            server_side=True, https_compatible=True)
    with trio.move_on_after(timeout):
        try:
            await stream.do_handshake()
            return StreamTransport(stream, sock)
        except (trio.BrokenResourceError, ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake failed: %s", exc)
    await trio.aclose_forcefully(stream)
    return None

