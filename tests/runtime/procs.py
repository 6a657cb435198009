"""Real processes for the runtime tests: a gateway (`python -m apigw_core serve CONFIG`) and
the echo backend (`python -m apigw_core echo`), on ephemeral loopback ports.

The gateway prints `apigw: listening on http://HOST:PORT/` once it is ready; we read the
ports from those lines, so every test binds port 0 and tests never collide.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

_LISTEN = re.compile(r"apigw: listening on (https?)://([^/]+)/")
_ADMIN = re.compile(r"apigw: admin on http://([^/]+)/healthz")
_ECHO = re.compile(r"apigw echo backend on http://([^/]+)/")


def _port(hostport: str) -> int:
    return int(hostport.rpartition(":")[2])


@dataclass
class Proc:
    proc: subprocess.Popen
    ports: list[int] = field(default_factory=list)
    admin_port: Optional[int] = None
    output: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.ports[0]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_kib(self) -> int:
        """Resident set size of the process now, in KiB (from /proc)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def hwm_kib(self) -> int:
        """Peak resident set size so far, in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise RuntimeError("no VmHWM")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


# How long a process may take to say it is listening.  The wait ends at the line (or at an
# early exit), so this only bounds a hang: generous, for a machine busy enough that one
# start takes 20 s of wall clock (~1.5 s of CPU on a quiet one).
START_TIMEOUT = 90.0


def _start(args: list[str], pattern_count: int, admin: bool,
           timeout: float = START_TIMEOUT) -> Proc:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "apigw_core", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    p = Proc(proc)
    ready = threading.Event()

    def pump() -> None:  # keeps the pipe drained for the process's whole life
        for line in proc.stdout:  # type: ignore[union-attr]
            p.output.append(line)
            if not ready.is_set():
                text = "".join(p.output)
                ports = [_port(m.group(2)) for m in _LISTEN.finditer(text)]
                ports += [_port(m.group(1)) for m in _ECHO.finditer(text)]
                m = _ADMIN.search(text)
                if len(ports) >= pattern_count and (m or not admin):
                    p.ports = ports
                    p.admin_port = _port(m.group(1)) if m else None
                    ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(timeout) or not p.ports:
        proc.kill()
        raise RuntimeError(f"process did not start: {args}\n{''.join(p.output)}")
    return p


def start_echo() -> Proc:
    """The built-in echo backend on an ephemeral port (bound by the process itself)."""
    return _start(["echo", "--bind", "127.0.0.1:0"], 1, admin=False)


def write_config(tmp_path: Path, config: dict, name: str = "gw.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(config))
    return path


def start_gateway(tmp_path: Path, config: dict, workers: int = 1) -> Proc:
    """A gateway on `config` (a dict, written as JSON); listeners should bind port 0."""
    path = write_config(tmp_path, config)
    args = ["serve", str(path)] + (["--workers", str(workers)] if workers > 1 else [])
    return _start(args, len(config["listeners"]), admin="admin" in config)


def simple_config(backend_url: str, **server) -> dict:
    """One listener on port 0, one backend, one API at the root, admin on port 0."""
    cfg: dict = {
        "listeners": [{"bind": "127.0.0.1:0"}],
        "backends": {"b": {"url": backend_url, "timeout": "5s"}},
        "apis": [{"name": "root", "path": "", "backend": "b"}],
        "admin": {"bind": "127.0.0.1:0"},
    }
    if server:
        cfg["server"] = {k.replace("_", "-"): v for k, v in server.items()}
    return cfg
