"""`--workers N`: N gateway processes on the same ports, supervised.

Strategy.  The supervisor does no trio and serves nothing.  It first binds every listener
with `SO_REUSEPORT` but does not listen (a bound, non-listening socket takes no connections
yet holds the port, and turns port 0 into a concrete port the workers all use), then forks
the workers; each binds and listens on the same ports with `SO_REUSEPORT`, so the kernel
spreads connections over them.  The supervisor announces the ports only once each first
worker has reported (one byte on a pipe) that it accepts connections: until then a client
that believed the announcement would be refused.  A worker that dies is forked again (with
a back-off when it dies young, so a broken worker cannot fork-bomb).  SIGTERM/SIGINT are forwarded as SIGTERM
(each worker drains gracefully); workers still alive after the drain deadline are killed.
Workers run in their own process group, so a terminal's Ctrl-C reaches only the
supervisor (a second signal would make a worker stop without draining), and ask the kernel
for SIGTERM if the supervisor dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import select
import signal
import sys
import time
from functools import partial
from typing import Optional

import trio

from ..gateway.config import GatewayConfig
from .listeners import bind_socket, split_hostport

__all__ = ["supervise"]

log = logging.getLogger("apigw_core.runtime")

_PR_SET_PDEATHSIG = 1
_POLL = 0.1


def _reserve(config: GatewayConfig) -> tuple[GatewayConfig, list]:
    """Bind (not listen) each port, so port 0 becomes one port shared by all workers."""
    socks = []
    listeners = []
    for lc in config.listeners:
        s = bind_socket(lc.host, lc.port, reuse_port=True, listen=False)
        socks.append(s)
        port = s.getsockname()[1]
        listeners.append(dataclasses.replace(lc, port=port, bind=f"{lc.host}:{port}"))
    admin = config.admin
    if admin is not None:
        s = bind_socket(admin.host, admin.port, reuse_port=True, listen=False)
        socks.append(s)
        port = s.getsockname()[1]
        admin = dataclasses.replace(admin, port=port, bind=f"{admin.host}:{port}")
    return dataclasses.replace(config, listeners=tuple(listeners), admin=admin), socks


def _child(config: GatewayConfig, role: str, echo: Optional[str], socks: list,
           ready_fd: int) -> int:
    for s in socks:
        s.close()
    os.setpgid(0, 0)
    try:
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    from . import run_gateway
    from .echo import echo_until_signal

    def ready() -> None:
        try:
            os.write(ready_fd, b"r")
        except OSError:  # the supervisor no longer listens (a restarted worker)
            pass
        os.close(ready_fd)

    async def worker() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(run_gateway, config, reuse_port=True,
                                        announce=False))
            ready()

    try:
        if role == "echo":
            host, port = split_hostport(echo)  # type: ignore[arg-type]
            ready()
            trio.run(echo_until_signal, host, port)
        else:
            trio.run(worker)
    except BaseException:  # noqa: BLE001 - a worker must report, then exit non-zero
        log.exception("worker %s failed", role)
        return 1
    return 0


def _wait_ready(fds: list[int], timeout: float = 30.0) -> None:
    """Until each child wrote its ready byte or exited (EOF: the main loop restarts it)."""
    deadline = time.monotonic() + timeout
    pending = set(fds)
    try:
        while pending and time.monotonic() < deadline:
            readable, _, _ = select.select(list(pending), [], [],
                                           max(0.0, deadline - time.monotonic()))
            for fd in readable:
                os.read(fd, 1)
                pending.discard(fd)
    except InterruptedError:  # a signal: the main loop handles it
        pass
    finally:
        for fd in fds:
            os.close(fd)


def supervise(config: GatewayConfig, workers: int, echo: Optional[str] = None) -> int:
    try:
        config, socks = _reserve(config)
    except OSError as exc:
        print(f"apigw: {exc}", file=sys.stderr)
        return 1
    children: dict[int, tuple[str, float]] = {}   # pid -> (role, started at)
    young_deaths = 0
    stopping = False

    def spawn(role: str) -> int:
        """Fork a child; the read end of its readiness pipe."""
        sys.stdout.flush()
        sys.stderr.flush()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(r)
                code = _child(config, role, echo, socks, w)
            finally:
                os._exit(code)
        os.close(w)
        children[pid] = (role, time.monotonic())
        return r

    def on_signal(signum: int, _frame) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        if echo:
            os.close(spawn("echo"))
            print(f"apigw: echo backend on http://{echo}/", flush=True)
        _wait_ready([spawn(f"worker-{i}") for i in range(workers)])
        for lc in config.listeners:
            scheme = "https" if lc.tls is not None else "http"
            print(f"apigw: listening on {scheme}://{lc.bind}/ with {workers} workers "
                  f"(supervisor pid {os.getpid()})", flush=True)
        if config.admin is not None:
            print(f"apigw: admin on http://{config.admin.bind}/healthz", flush=True)
        deadline: Optional[float] = None
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                if stopping:
                    if deadline is None:
                        deadline = time.monotonic() + config.server.shutdown_timeout + 5
                    elif time.monotonic() > deadline:
                        for p in children:
                            os.kill(p, signal.SIGKILL)
                time.sleep(_POLL)
                continue
            role, started = children.pop(pid)
            if stopping:
                continue
            log.warning("%s (pid %d) exited with status %d; restarting", role, pid,
                        os.waitstatus_to_exitcode(status))
            young_deaths = young_deaths + 1 if time.monotonic() - started < 1 else 0
            if young_deaths >= 5:
                log.error("%s keeps dying at start: giving up", role)
                on_signal(signal.SIGTERM, None)
                continue
            time.sleep(min(0.1 * 2 ** young_deaths, 5))
            os.close(spawn(role))
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for s in socks:
            s.close()
    return 1 if young_deaths >= 5 else 0
