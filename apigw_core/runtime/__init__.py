"""The trio runtime: the only layer that owns sockets, TLS, timers, tasks and processes.

`serve(config, workers=1)` runs a gateway in the foreground until SIGTERM/SIGINT (first
signal: graceful drain; second: stop now) and returns the exit status (1, after one line
on stderr, when it cannot start: see startup.py).  SIGHUP reloads the config file
(`config.source`), and so does a change of it with `watch=True` (its size, mtime and
inode looked at every second): see reload.py and Gateway.reload.  `Gateway` is the
embeddable piece: `await nursery.start(Gateway(config).run)`, then `gateway.shutdown()`.
"""

from __future__ import annotations

import logging
import signal
import sys
from functools import partial
from typing import Callable, Optional

import trio

from ..gateway.config import GatewayConfig
from .echo import serve_echo
from .gateway import Gateway
from .listeners import split_hostport
from .reload import FileWatch
from .startup import StartupError, run_reporting

__all__ = ["serve", "Gateway", "serve_echo", "run_gateway", "StartupError"]

log = logging.getLogger("apigw_core.runtime")


WATCH_INTERVAL = 1.0   # seconds between two looks at the config file (--watch)


async def run_gateway(config: GatewayConfig, *, echo: Optional[str] = None,
                      reuse_port: bool = False, announce: bool = True,
                      watch: bool = False, gateway: Optional[Gateway] = None,
                      task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run one gateway (and optionally the echo backend) until a signal drains it;
    `task_status.started(gateway)` once every listener accepts connections.  SIGHUP, or
    a change of the file with `watch`, reloads it.  `gateway`: one made by the caller
    (`--workers` sets its reload hooks); else `Gateway(config)`."""
    gw = gateway or Gateway(config, reuse_port=reuse_port)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            if echo:
                host, port = split_hostport(echo)
                await nursery.start(serve_echo, host, port)
                if announce:
                    print(f"apigw: echo backend on http://{echo}/", flush=True)

            async def run(task_status=trio.TASK_STATUS_IGNORED) -> None:
                await gw.run(task_status=task_status)
                nursery.cancel_scope.cancel()  # drained: stop the echo and the watchers

            await nursery.start(run)
            if announce:
                for (host, port), lc in zip(gw.addresses, config.listeners):
                    scheme = "https" if lc.tls is not None else "http"
                    print(f"apigw: listening on {scheme}://{_fmt(host)}:{port}/", flush=True)
                if gw.admin_address:
                    host, port = gw.admin_address
                    print(f"apigw: admin on http://{_fmt(host)}:{port}/healthz", flush=True)

            async def watch_signals() -> None:
                async for sig in signals:
                    if sig == signal.SIGHUP:
                        gw.trigger_reload()
                    elif not gw.draining:
                        log.info("signal %d: draining", sig)
                        gw.shutdown()
                    else:
                        nursery.cancel_scope.cancel()  # a second signal: now

            nursery.start_soon(watch_signals)
            if watch:
                nursery.start_soon(watch_file, config.source, gw.trigger_reload)
            task_status.started(gw)


async def watch_file(path: str, changed: Callable[[], None],
                     interval: float = WATCH_INTERVAL) -> None:
    """Call `changed()` whenever the file at `path` changes (polled: no dependency)."""
    w = FileWatch(path)
    while True:
        await trio.sleep(interval)
        if w.changed():
            log.info("%s changed: reloading", path)
            changed()


def _fmt(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def serve(config: GatewayConfig, *, workers: int = 1, echo: Optional[str] = None,
          watch: bool = False) -> int:
    """Run the gateway in the foreground; the process exit status.  `watch`: reload the
    config file when it changes (SIGHUP reloads it in any case)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(process)d %(levelname)s %(message)s")
    if workers > 1:
        from .workers import supervise
        return supervise(config, workers, echo=echo, watch=watch)
    return run_reporting(partial(run_gateway, config, echo=echo, watch=watch))
