"""A real `redis-server` (and `redis-server --sentinel`) for the Redis tests, on a free
loopback port, with no persistence (`--save "" --appendonly no`).

`RedisProc` can be paused (SIGSTOP: the socket stays open, nothing answers, as a server
stuck in a long command or a swapped-out host), resumed, killed, and started again on the
same port.  Tests that need it skip when redis-server is not installed (`.ci/run`
installs it).
"""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path
from typing import Optional

from support import need_binary, wait_until

__all__ = ["RedisProc", "SentinelProc", "free_port", "ping"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ping(port: int, timeout: float = 0.5) -> bool:
    """True when a server on `port` answers PING (stdlib socket: no client under test)."""
    return command(port, b"PING\r\n", timeout) == b"+PONG\r\n"


def command(port: int, raw: bytes, timeout: float = 0.5) -> Optional[bytes]:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(raw)
            return s.recv(65536)
    except OSError:
        return None


class RedisProc:
    def __init__(self, port: Optional[int] = None, args: tuple[str, ...] = ()) -> None:
        self.binary = need_binary("redis-server")
        self.port = port or free_port()
        self.args = args
        self.proc: Optional[subprocess.Popen] = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning", *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: ping(self.port) or self.proc.poll() is not None,
                   message=f"redis-server on port {self.port}")
        if self.proc.poll() is not None:
            raise RuntimeError(f"redis-server did not start on port {self.port}")

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        self.kill()


class SentinelProc:
    """`redis-server --sentinel` watching `master` (a RedisProc) under `name`."""

    def __init__(self, tmp: Path, master: RedisProc, name: str = "mymaster") -> None:
        self.port = free_port()
        conf = tmp / f"sentinel-{self.port}.conf"
        conf.write_text(f"port {self.port}\nbind 127.0.0.1\n"
                        f"sentinel monitor {name} 127.0.0.1 {master.port} 1\n"
                        f"sentinel down-after-milliseconds {name} 60000\n")
        self.proc = subprocess.Popen([master.binary, str(conf), "--sentinel"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: ping(self.port) or self.proc.poll() is not None,
                   message=f"redis sentinel on port {self.port}")
        if self.proc.poll() is not None:
            raise RuntimeError("redis-server --sentinel did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

