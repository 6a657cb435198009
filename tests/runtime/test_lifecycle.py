"""Process lifecycle against real gateway processes: graceful shutdown with requests in
flight, the drain deadline, the admin endpoints, and `--workers N` supervision.

Worker processes are found as the supervisor's children (/proc/PID/task/PID/children), and
which worker accepted a given client connection is read from /proc: the gateway-side socket
of the connection (local port = the gateway's, remote port = the client's) is found in
/proc/net/tcp, and its inode among the workers' open file descriptors.

Nothing here depends on how fast the machine is: backends are "held" (they answer when
the test releases them), waits poll (support.wait_until), and a deadline is shown by a
lower bound plus a generous limit that only the wrong behaviour (waiting for a much longer
timeout) would reach.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Optional

from backends import Backend, ResponseReader, connect, read_until_close
from support import lazy_module, wait_until

httpx = lazy_module("httpx")


def _config(backends: dict[str, str], **server) -> dict:
    return {
        "listeners": [{"bind": "127.0.0.1:0"}],
        "backends": {n: {"url": u} for n, u in backends.items()},
        "apis": [{"name": n, "path": f"/{n}", "backend": n} for n in backends],
        "admin": {"bind": "127.0.0.1:0"},
        "server": {k.replace("_", "-"): v for k, v in server.items()},
    }


def _get(port: int, path: str, timeout: float = 30.0):
    s = connect(port, timeout)
    try:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: gw\r\n\r\n" % path.encode())
        return ResponseReader(s).read()
    finally:
        s.close()


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=10).close()
    except ConnectionRefusedError:
        return True
    return False


# -- graceful shutdown ---------------------------------------------------------------------

def test_sigterm_drains_requests_in_flight(gateway):
    """SIGTERM with five requests in flight: new connections are refused at once (while the
    five are still held at the backend), an idle keep-alive connection is closed silently,
    the five finish with `connection: close`, and the gateway exits 0 as soon as they are
    done, long before shutdown-timeout."""
    with Backend("held") as slow, Backend("ok") as rec:
        gw = gateway(_config({"slow": slow.url, "rec": rec.url}, shutdown_timeout=120))
        try:
            assert _get(gw.admin_port, "/ready").status == 200
            assert _get(gw.admin_port, "/healthz").status == 200
            idle = connect(gw.port)    # a keep-alive connection, idle at the signal
            idle.sendall(b"GET /rec/idle HTTP/1.1\r\nHost: gw\r\n\r\n")
            assert ResponseReader(idle).read().status == 200

            results: list = [None] * 5

            def call(i: int) -> None:
                try:
                    results[i] = _get(gw.port, f"/slow/{i}", timeout=60)
                except Exception as exc:  # noqa: BLE001 - reported by the assert below
                    results[i] = exc

            threads = [threading.Thread(target=call, args=(i,)) for i in range(5)]
            for th in threads:
                th.start()
            wait_until(lambda: sum(c.requests for c in slow.conns) == 5,
                       message="the five requests reached the backend")
            gw.proc.send_signal(signal.SIGTERM)

            # new connections are refused while the five are still held; the idle one is
            # closed silently
            wait_until(lambda: _refused(gw.port), message="refusing after SIGTERM")
            assert all(r is None for r in results), results
            assert read_until_close(idle, 30) == (b"", "eof")
            idle.close()

            slow.release.set()
            for th in threads:
                th.join(60)
            for r in results:
                assert not isinstance(r, Exception), r
                assert r.status == 200, r
                assert r.headers.get("connection") == "close"   # draining
            assert gw.proc.wait(60) == 0   # done with the requests, not at the deadline
        finally:
            gw.stop()


def test_ready_is_503_while_draining(gateway):
    """A load balancer polls /ready to take a draining gateway out of rotation: during the
    drain the admin listener answers 503, it does not go silent."""
    with Backend("held") as slow:
        gw = gateway(_config({"slow": slow.url}, shutdown_timeout=120))
        try:
            assert _get(gw.admin_port, "/ready").status == 200
            th = threading.Thread(target=lambda: _get(gw.port, "/slow/x", timeout=60))
            th.start()
            assert slow.wait_connections(1)
            wait_until(lambda: slow.conns[0].requests == 1)
            gw.proc.send_signal(signal.SIGTERM)
            wait_until(lambda: _refused(gw.port), message="refusing after SIGTERM")
            r = _get(gw.admin_port, "/ready")
            assert r.status == 503
            assert r.body == b"draining\n"
            assert _get(gw.admin_port, "/healthz").status == 200
            slow.release.set()
            th.join(60)
            assert gw.proc.wait(60) == 0
        finally:
            gw.stop()


def test_drain_deadline_ends_a_request_that_never_finishes(gateway):
    """shutdown-timeout 1 s, a request the backend never answers (its timeout 300 s): the
    gateway exits 0 at the drain deadline, not before, and not at the request's timeout."""
    with Backend("hang") as hang:
        cfg = _config({"hang": hang.url}, shutdown_timeout=1)
        cfg["backends"]["hang"]["timeout"] = 300
        gw = gateway(cfg)
        try:
            s = connect(gw.port)
            s.sendall(b"GET /hang/x HTTP/1.1\r\nHost: gw\r\n\r\n")
            assert hang.wait_connections(1)
            t0 = time.monotonic()
            gw.proc.send_signal(signal.SIGTERM)
            assert gw.proc.wait(60) == 0
            elapsed = time.monotonic() - t0
            assert elapsed >= 0.9, elapsed
            data, how = read_until_close(s, 30)
            assert how in ("eof", "reset")
            assert not data.startswith(b"HTTP/1.1 200")
            s.close()
            # the backend connection went with it
            assert hang.new_conns[0].done.wait(30)
        finally:
            gw.stop()


def test_second_signal_stops_without_waiting(gateway):
    """A second signal during the drain (shutdown-timeout 300 s, a request that never ends)
    stops the gateway at once."""
    with Backend("hang") as hang:
        cfg = _config({"hang": hang.url}, shutdown_timeout=300)
        cfg["backends"]["hang"]["timeout"] = 300
        gw = gateway(cfg)
        try:
            s = connect(gw.port)
            s.sendall(b"GET /hang/x HTTP/1.1\r\nHost: gw\r\n\r\n")
            assert hang.wait_connections(1)
            gw.proc.send_signal(signal.SIGTERM)
            wait_until(lambda: _refused(gw.port), message="draining after SIGTERM")
            assert gw.proc.poll() is None   # draining, the request still in flight
            gw.proc.send_signal(signal.SIGINT)
            gw.proc.wait(60)                         # well before the 300 s deadline
            s.close()
        finally:
            gw.stop()


# -- workers -------------------------------------------------------------------------------

def _children(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return set()
    return {int(x) for x in text.split()}


def _socket_inode(server_port: int, client_port: int) -> Optional[str]:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            f = line.split()
            local, remote, inode = f[1], f[2], f[9]
            if (int(local.rsplit(":", 1)[1], 16) == server_port
                    and int(remote.rsplit(":", 1)[1], 16) == client_port):
                return inode
    return None


def _owner(pids: set[int], server_port: int, client: socket.socket) -> Optional[int]:
    """The worker holding the gateway side of `client`'s connection."""
    inode = _socket_inode(server_port, client.getsockname()[1])
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            for fd in os.scandir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(fd.path) == target:
                        return pid
                except OSError:
                    continue
        except OSError:
            continue
    return None


def _owners(port: int, pids: set[int], n: int) -> list[Optional[int]]:
    """Open n connections, one request each (so each is accepted), and tell who holds it."""
    held = []
    try:
        for i in range(n):
            s = connect(port)
            s.sendall(b"GET /rec/w%d HTTP/1.1\r\nHost: gw\r\n\r\n" % i)
            assert ResponseReader(s).read().status == 200
            held.append(s)
        return [_owner(pids, port, s) for s in held]
    finally:
        for s in held:
            s.close()


def _gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def test_workers_share_the_port_and_a_killed_worker_is_restarted(gateway):
    """--workers 2: both workers accept on the one port; a worker killed with SIGKILL while
    a client loops over new connections is replaced, the new worker takes connections, the
    client loses at most the one request the dead worker held, and the service keeps
    answering after the kill.  (What must hold, not how many requests fit in a window.)"""
    with Backend("ok") as rec:
        gw = gateway(_config({"rec": rec.url}, shutdown_timeout=2), workers=2)
        try:
            assert gw.port != 0     # port 0: the supervisor picked one port for all
            wait_until(lambda: len(_children(gw.pid)) == 2, message="two workers")
            workers = _children(gw.pid)
            # both workers accept connections on the one port
            wait_until(lambda: set(_owners(gw.port, workers, 4)) == workers, step=0,
                       message="connections reach both workers")

            # kill -9 one worker while a client loops over new connections
            stop = threading.Event()
            ok: list[float] = []
            failed: list[tuple[float, str]] = []

            get = httpx.get   # here: a missing httpx skips the test, not the thread

            def loop() -> None:
                while not stop.is_set():
                    try:
                        r = get(gw.url + "/rec/loop", timeout=30)
                        assert r.status_code == 200
                        ok.append(time.monotonic())
                    except Exception as exc:  # noqa: BLE001 - counted
                        failed.append((time.monotonic(), repr(exc)))

            th = threading.Thread(target=loop)
            th.start()
            try:
                wait_until(lambda: len(ok) >= 3, message="the client loop is running")
                victim = min(workers)
                os.kill(victim, signal.SIGKILL)
                t_kill = time.monotonic()
                wait_until(lambda: len(_children(gw.pid) - workers) == 1,
                           message="the killed worker restarted")
                new = (_children(gw.pid) - workers).pop()
                assert victim not in _children(gw.pid)
                now = _children(gw.pid)
                wait_until(lambda: new in _owners(gw.port, now, 4), step=0,
                           message="the new worker takes connections")
                # the looping client is served after the kill, by whichever worker
                wait_until(lambda: sum(1 for t in ok if t > t_kill) >= 10,
                           message="requests answered after the kill")
            finally:
                stop.set()
                th.join(60)
            assert len(failed) <= 1, failed   # at most the killed worker's one connection

            # SIGTERM to the supervisor: every process exits, status 0
            gw.proc.send_signal(signal.SIGTERM)
            assert gw.proc.wait(60) == 0
            wait_until(lambda: all(_gone(p) for p in now), message="all workers exited")
        finally:
            gw.stop()
