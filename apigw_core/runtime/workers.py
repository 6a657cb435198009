"""`--workers N`: N gateway processes on the same ports, supervised.

Strategy.  The supervisor does no trio and serves nothing.  It first binds every listener
with `SO_REUSEPORT` but does not listen (a bound, non-listening socket takes no connections
yet holds the port, and turns port 0 into a concrete port the workers all use), then forks
the workers; each binds and listens on the same ports with `SO_REUSEPORT`, so the kernel
spreads connections over them.  The supervisor announces the ports only once each first
worker has reported (one byte on a pipe) that it accepts connections: until then a client
that believed the announcement would be refused.  A worker that dies is forked again (with
a back-off when it dies young, so a broken worker cannot fork-bomb), except one that
could not start for a reason restarting cannot fix (a `StartupError`: a port it cannot
have, a TLS file that does not load): it sends the message instead of the ready byte, and
the supervisor prints it once (however many workers failed alike), stops the others and
exits 1.  SIGTERM/SIGINT are forwarded as SIGTERM
(each worker drains gracefully); workers still alive after the drain deadline are killed.
Workers run in their own process group, so a terminal's Ctrl-C reaches only the
supervisor (a second signal would make a worker stop without draining), and ask the kernel
for SIGTERM if the supervisor dies (PR_SET_PDEATHSIG).

Reload.  Each worker reloads the file itself (runtime/reload.py); the supervisor fans the
trigger out.  SIGHUP to the supervisor is forwarded to every worker at once; `--watch`
polls the file in the supervisor, which then does the same; `POST /reload` lands in one
worker (the admin port is shared like the others), which sends SIGHUP to the supervisor,
so every worker reloads, and answers once its own reload is done.  A SIGHUP that reaches
a worker before its event loop listens for it is remembered and applied once it does.
The supervisor reads the file too, and keeps the last config it found valid (and its
version) for the workers it forks later, so a restarted worker serves what its siblings
serve.  Workers get the supervisor's concrete ports for `:0` listeners, and pin a reloaded
file the same way (`pin_ports`).

Rate limits.  Before the first fork the supervisor creates the shared `BucketTable`
(apigw_core/buckets.py) in /dev/shm; each worker, restarted ones too, attaches to it by
name (`gw.buckets`), so all of them draw from the same buckets.  The supervisor unlinks
it when it exits (a supervisor killed by SIGKILL leaves its `apigw-buckets-PID-*` file).

Request traces.  The supervisor also makes a fresh `apigw-traces-*` temp directory
(`APIGW_TRACES_DIR`, inherited by every worker): a traced request's document is a file
there, so `GET /traces/{id}` on any worker finds it (runtime/tracestore.py); removed at exit.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import select
import shutil
import signal
import sys
import tempfile
import time
from functools import partial
from typing import Callable, Optional

import trio

from ..buckets import SHM_DIR, BucketTable
from .tracestore import ENV as TRACES_ENV
from ..gateway.config import GatewayConfig
from .listeners import bind_socket, split_hostport
from .metrics import MULTIPROC_ENV
from .reload import FileWatch, ReloadRefused, load_reloadable, pin_ports
from .startup import EXIT_STARTUP, StartupError, startup_errors

__all__ = ["supervise"]

log = logging.getLogger("apigw_core.runtime")

_PR_SET_PDEATHSIG = 1
_POLL = 0.1
_WATCH = 1.0   # seconds between two looks at the config file (--watch)


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


@dataclasses.dataclass
class _Child:
    role: str
    started: float
    fd: int             # read end of its report pipe: b"r" (ready) or b"e" + why not
    report: bytes = b""
    eof: bool = False

    def read(self) -> None:
        """What the child wrote so far (blocks only until it wrote or exited)."""
        if not self.eof:
            data = os.read(self.fd, 4096)
            self.report += data
            self.eof = not data

    def read_all(self) -> None:
        """The whole report: a child exits right after writing it."""
        while not self.eof:
            self.read()

    def failure(self) -> Optional[str]:
        """Why it could not start (its StartupErrors, one per line), if it said so."""
        if self.report[:1] != b"e":
            return None
        self.read_all()
        return self.report[1:].decode("utf-8", "replace")


@dataclasses.dataclass(frozen=True)
class _Start:
    """What a worker starts from: the supervisor's last valid config and its version."""
    config: GatewayConfig
    version: int
    pin: Callable[[GatewayConfig], GatewayConfig]
    supervisor: int  # pid
    buckets: str = ""  # the name of the shared BucketTable each worker attaches to


def _child(start: _Start, role: str, echo: Optional[str], socks: list,
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
    early_hup: list[int] = []  # a reload asked for before trio listens for SIGHUP
    signal.signal(signal.SIGHUP, lambda signum, _frame: early_hup.append(signum))
    from . import run_gateway
    from .echo import echo_until_signal
    from .gateway import Gateway
    config = start.config

    reported = []

    def report(what: bytes) -> None:
        if reported:
            return
        reported.append(what)
        try:
            os.write(ready_fd, what)
        except OSError:  # the supervisor is gone
            pass
        os.close(ready_fd)

    async def worker() -> None:
        async with trio.open_nursery() as nursery:
            if role == "echo":
                host, port = split_hostport(echo)  # type: ignore[arg-type]
                await nursery.start(partial(echo_until_signal, host, port))
            else:
                gw: Gateway

                def reload_everywhere() -> None:  # POST /reload: via the supervisor
                    if os.getppid() == start.supervisor:
                        os.kill(start.supervisor, signal.SIGHUP)
                    else:  # it is gone (we are about to get SIGTERM): just this one
                        gw.trigger_reload()

                table = (BucketTable(name=start.buckets, create=False)
                         if start.buckets else None)
                gw = Gateway(config, reuse_port=True, version=start.version,
                             pin=start.pin, reload_everywhere=reload_everywhere,
                             buckets=table)
                await nursery.start(partial(run_gateway, config, announce=False,
                                            gateway=gw))
                if early_hup:  # trio's receiver is installed now: later ones reach it
                    gw.trigger_reload()
            report(b"r")

    try:
        trio.run(worker)
    except BaseException as exc:  # noqa: BLE001 - a worker must report, then exit non-zero
        errors = startup_errors(exc)
        if errors:
            report(b"e" + "\n".join(map(str, errors)).encode())
            return EXIT_STARTUP
        log.exception("worker %s failed", role)
        return 1
    return 0


def _metrics_dead(pid: int) -> None:
    """A worker is gone: its live gauges (open connections, pools) stop counting; its
    counters and histograms stay in the sum."""
    try:
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(pid)
    except Exception:  # noqa: BLE001 - never let metrics bookkeeping stop the supervisor
        log.exception("metrics: forgetting worker %d failed", pid)


def _wait_ready(children: list[_Child], timeout: float = 30.0) -> None:
    """Until each child reported (ready or not) or exited (EOF: the main loop restarts it)."""
    deadline = time.monotonic() + timeout
    pending = {c.fd: c for c in children}
    try:
        while pending and time.monotonic() < deadline:
            readable, _, _ = select.select(list(pending), [], [],
                                           max(0.0, deadline - time.monotonic()))
            for fd in readable:
                pending.pop(fd).read()
    except InterruptedError:  # a signal: the main loop handles it
        pass


def supervise(config: GatewayConfig, workers: int, echo: Optional[str] = None,
              watch: bool = False) -> int:
    started = config
    try:
        config, socks = _reserve(config)
    except StartupError as exc:
        print(f"apigw: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    pinned = config
    me = os.getpid()
    try:  # made before any worker, which all attach to it by name; unlinked at exit
        table = BucketTable()
    except OSError as exc:
        for s in socks:
            s.close()
        print(f"apigw: cannot create the shared bucket table in {SHM_DIR}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return EXIT_STARTUP
    # metrics: every worker writes its counts to its own files here and a scrape sums
    # them all, dead workers' included (runtime/metrics.py); fresh for each run
    metrics_dir = tempfile.mkdtemp(prefix="apigw-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir
    # request traces: each worker writes a traced request's document here and a GET on any
    # worker reads it (runtime/tracestore.py); outlives a restarted worker, removed at exit
    traces_dir = tempfile.mkdtemp(prefix="apigw-traces-")
    os.environ[TRACES_ENV] = traces_dir
    start = _Start(config, 1, partial(pin_ports, started=started, pinned=pinned), me,
                   buckets=table.name)
    children: dict[int, _Child] = {}   # by pid
    young_deaths = 0
    stopping = False
    reload_wanted = False
    failures: list[str] = []           # StartupErrors reported by the children
    watcher = FileWatch(config.source) if watch else None
    next_look = time.monotonic() + _WATCH

    def spawn(role: str) -> _Child:
        sys.stdout.flush()
        sys.stderr.flush()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(r)
                code = _child(start, role, echo, socks, w)
            finally:
                os._exit(code)
        os.close(w)
        child = children[pid] = _Child(role, time.monotonic(), r)
        return child

    def on_signal(signum: int, _frame) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def forward_hup() -> None:
        for pid, c in list(children.items()):
            if c.role != "echo":
                try:
                    os.kill(pid, signal.SIGHUP)
                except ProcessLookupError:
                    pass

    def on_hup(signum: int, _frame) -> None:
        nonlocal reload_wanted
        if os.getpid() != me or stopping:  # a child not yet past its own handlers
            return
        reload_wanted = True
        forward_hup()

    def reload_own() -> None:
        """The config (and version) that workers forked from now on start with."""
        nonlocal start
        try:
            new = load_reloadable(start.config, start.pin)
        except ReloadRefused as exc:  # the workers log the errors
            log.debug("supervisor: reload refused: %s", exc)
            return
        start = dataclasses.replace(start, config=new, version=start.version + 1)

    def failed(child: _Child) -> bool:
        """True (and everyone is told to stop) if `child` could not start."""
        why = child.failure()
        if why is None:
            return False
        for line in why.splitlines():
            if line not in failures:
                failures.append(line)
                print(f"apigw: {line}", file=sys.stderr, flush=True)
        on_signal(signal.SIGTERM, None)
        return True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    old[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_hup)
    try:
        first = [spawn("echo")] if echo else []
        if echo:
            _wait_ready(first)
            if not failed(first[0]):
                print(f"apigw: echo backend on http://{echo}/", flush=True)
        if not stopping:
            first += [spawn(f"worker-{i}") for i in range(workers)]
            _wait_ready(first)
        if not [c for c in first if failed(c)] and not stopping:  # each one said once
            for lc in config.listeners:
                scheme = "https" if lc.tls is not None else "http"
                print(f"apigw: listening on {scheme}://{lc.bind}/ with {workers} workers "
                      f"(supervisor pid {os.getpid()})", flush=True)
            if config.admin is not None:
                print(f"apigw: admin on http://{config.admin.bind}/healthz", flush=True)
        deadline: Optional[float] = None
        while children:
            if watcher is not None and not stopping and time.monotonic() >= next_look:
                next_look = time.monotonic() + _WATCH
                if watcher.changed():
                    log.info("%s changed: reloading", watcher.path)
                    reload_wanted = True
                    forward_hup()
            if reload_wanted and not stopping:
                reload_wanted = False
                reload_own()
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
            child = children.pop(pid)
            child.read_all()
            os.close(child.fd)
            _metrics_dead(pid)
            if stopping or failed(child):
                continue
            log.warning("%s (pid %d) exited with status %d; restarting", child.role, pid,
                        os.waitstatus_to_exitcode(status))
            young_deaths = young_deaths + 1 if time.monotonic() - child.started < 1 else 0
            if young_deaths >= 5:
                log.error("%s keeps dying at start: giving up", child.role)
                on_signal(signal.SIGTERM, None)
                continue
            time.sleep(min(0.1 * 2 ** young_deaths, 5))
            spawn(child.role)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for s in socks:
            s.close()
        for c in children.values():
            os.close(c.fd)
        table.close()
        table.unlink()
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(metrics_dir, ignore_errors=True)
        os.environ.pop(TRACES_ENV, None)
        shutil.rmtree(traces_dir, ignore_errors=True)
    return EXIT_STARTUP if failures or young_deaths >= 5 else 0
