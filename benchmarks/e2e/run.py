#!/usr/bin/env python3
"""End-to-end load benchmark: wrk (HTTP/1.1) and h2load (h2c) against nginx, an nginx
reverse proxy and the gateway.

Strategy.  Everything runs on loopback, on free ports, from private temp directories:
one nginx is the backend (a fixed 12-byte body over HTTP/1.1 keep-alive); a second nginx
with an upstream keep-alive pool proxies to it (the "native ceiling" for a proxy); our
gateway (`python -m apigw_core serve CONFIG --workers N`, N = 1 and 2) proxies to the same
backend.  Each target gets a short wrk warm-up, then a measured wrk run with `--latency`.
Around the measured run we read the CPU ticks (utime + stime) of every process in the
tree of the proxy under test from /proc, so that besides requests per second (which on a
small machine depends on how the cores are shared with wrk and the backend) we report
requests per CPU-second of the proxy, which does not.  Every process we start gets its
own session (process group) and is killed in a `finally`, on Ctrl-C and on SIGTERM too.

The h2 rows do the same with h2load over cleartext HTTP/2 (prior knowledge) with a few
connections and several streams on each: an nginx reverse proxy with `listen PORT http2`
and the gateway with an h2c listener, both proxying to the same HTTP/1.1 backend.  h2load
prints no percentiles, so p50/p99 come from its per-request log (`--log-file`).

The gw1pol row is gw1 with five policies (issue 9's target), the gw1rl row gw1 with a
rate-limit-by-key on every request (issue 10); the gw1pool row is gw1 through a 3-member
weighted pool whose members have a circuit breaker and an active health check (issue 12's
target; members with their own base paths, so the per-member request rewrite is paid
too); `--repeat N` runs the chosen rows N times, interleaved, and reports each row's
spread, since one run on a shared machine says little.  The telemetry rows (issue 13):
gw1notel has metrics turned off and no access log (only the W3C traceparent, which is
always on), gw1tel has the metrics and a JSON access log of every request to a file; the
report gives gw1tel / gw1notel round by round.  (gw1 itself runs the defaults: metrics on,
no access log.)  gw1otel adds OpenTelemetry at ratio 1.0 (every request a SERVER and a
CLIENT span) exported over OTLP/HTTP to a receiver in this process (its CPU is not the
gateway's; the gateway's exporter task is); gw1otel / gw1notel is reported too.  The
gw1jwtrs /
gw1jwtes rows are gw1 with one validate-jwt (issue 11): an RS256 / ES256 key made for the
run, the same token on every request (the key and the verified token cached, exp checked
every time); gw1tok is gw1 sent the same Authorization header (the request without its
validation).  The floor row (issue 14) is floor.py: the cheapest trio proxy (no parsing,
non-blocking calls first, trio's waits only on EAGAIN), one process, to the same backend;
the report gives gw1 / floor.

Usage:
    python benchmarks/e2e/run.py [--duration 10] [--connections 50] [--threads 1]
                                 [--h2-connections 10] [--h2-streams 10]
                                 [--only nginx,proxy,floor,gw1,gw1pol,gw1rl,gw1rlredis,gw1pool,gw1notel,
                                         gw1tel,gw1otel,gw1tok,gw1jwtrs,gw1jwtes,gw2,h2nginx,
                                         h2gw1,h2gw2]
                                 [--repeat 1] [--json results.json]
"""

from __future__ import annotations

import argparse
import glob
import http.client
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, asdict
from typing import Dict, List, Optional, Tuple

TARGETS = ("nginx", "proxy", "floor", "gw1", "gw1pol", "gw1rl", "gw1rlredis", "gw1pool", "gw1notel",
           "gw1tel", "gw1otel", "gw1tok", "gw1jwtrs", "gw1jwtes", "gw2", "h2nginx", "h2gw1",
           "h2gw2")
TARGET_LABELS = {
    "nginx": "nginx direct (backend)",
    "proxy": "nginx reverse proxy",
    "floor": "trio floor (floor.py)",
    "gw1": "apigw 1 worker",
    "gw1pol": "apigw 1 worker, 5 policies",
    "gw1rl": "apigw 1 worker, rate-limit-by-key",
    "gw1rlredis": "apigw 1 worker, rate-limit-by-key, store: redis",
    "gw1pool": "apigw 1 worker, 3-member pool, breakers, health checks",
    "gw1notel": "apigw 1 worker, no telemetry",
    "gw1tel": "apigw 1 worker, metrics + access log",
    "gw1otel": "apigw 1 worker, metrics + access log + OTel ratio 1.0",
    "gw1tok": "apigw 1 worker, no policy, with the token",
    "gw1jwtrs": "apigw 1 worker, validate-jwt RS256",
    "gw1jwtes": "apigw 1 worker, validate-jwt ES256",
    "gw2": "apigw 2 workers",
    "h2nginx": "nginx reverse proxy, h2c",
    "h2gw1": "apigw 1 worker, h2c",
    "h2gw2": "apigw 2 workers, h2c",
}
H2_TARGETS = ("h2nginx", "h2gw1", "h2gw2")
BODY = "hello world\n"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- wrk output

_TIME_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _to_ms(value: str, unit: str) -> float:
    return float(value) * _TIME_UNITS_MS[unit]


def parse_wrk(text: str) -> dict:
    """Parse the text output of `wrk --latency` into numbers.

    Returns a dict with: requests (int), duration_s, rps (Requests/sec line), latency
    percentiles in ms (p50, p75, p90, p99; those wrk printed), latency_avg_ms, socket
    errors (connect, read, write, timeout), non_2xx_3xx, and errors (sum of all those).
    Raises ValueError if the output has no "requests in" or "Requests/sec" line.
    """
    out: dict = {}
    m = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", text, re.M)
    if not m:
        raise ValueError("no 'N requests in T' line in wrk output")
    out["requests"] = int(m.group(1))
    out["duration_s"] = _to_ms(m.group(2), m.group(3)) / 1e3
    m = re.search(r"^Requests/sec:\s*([\d.]+)", text, re.M)
    if not m:
        raise ValueError("no 'Requests/sec:' line in wrk output")
    out["rps"] = float(m.group(1))
    m = re.search(r"^\s*Latency\s+([\d.]+)(us|ms|s|m|h)\s", text, re.M)
    out["latency_avg_ms"] = _to_ms(m.group(1), m.group(2)) if m else None
    dist = text.split("Latency Distribution", 1)
    pcts: Dict[str, float] = {}
    if len(dist) == 2:
        for pm in re.finditer(r"^\s*(\d+(?:\.\d+)?)%\s+([\d.]+)(us|ms|s|m|h)\s*$", dist[1], re.M):
            pcts[pm.group(1)] = _to_ms(pm.group(2), pm.group(3))
    for p in ("50", "75", "90", "99"):
        out["p" + p + "_ms"] = pcts.get(p)
    sock = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        sock = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups())))
    out["socket_errors"] = sock
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non_2xx_3xx"] = int(m.group(1)) if m else 0
    out["errors"] = out["non_2xx_3xx"] + sum(sock.values())
    return out


# --------------------------------------------------------------------------- h2load output


def parse_h2load(text: str, log_path: Optional[str] = None) -> dict:
    """Parse h2load's output into the same keys as parse_wrk.

    requests = requests done; rps from the "finished in" line; errors = failed + errored
    + timeout + non-2xx/3xx responses; latency percentiles (ms) from the per-request log
    (`--log-file`: start us, status, us until the end of the response), when given.
    Raises ValueError if the output has no "finished in" or "requests:" line."""
    out: dict = {}
    m = re.search(r"^finished in ([\d.]+)(us|ms|s|m|h), ([\d.]+) req/s", text, re.M)
    if not m:
        raise ValueError("no 'finished in' line in h2load output")
    out["duration_s"] = _to_ms(m.group(1), m.group(2)) / 1e3
    out["rps"] = float(m.group(3))
    m = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", text, re.M)
    if not m:
        raise ValueError("no 'requests:' line in h2load output")
    total, started, done, ok, failed, errored, timeout = map(int, m.groups())
    out["requests"] = done
    m = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M)
    codes = tuple(map(int, m.groups())) if m else (0, 0, 0, 0)
    out["non_2xx_3xx"] = codes[2] + codes[3]
    out["socket_errors"] = {"failed": failed, "errored": errored, "timeout": timeout}
    out["errors"] = out["non_2xx_3xx"] + failed + errored + timeout
    m = re.search(r"^time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\s", text, re.M)
    out["latency_avg_ms"] = _to_ms(m.group(1), m.group(2)) if m else None
    lat: List[float] = []
    if log_path is not None:
        try:
            with open(log_path) as f:
                for line in f:
                    cols = line.split("\t")
                    if len(cols) >= 3:
                        lat.append(int(cols[2]) / 1e3)
        except OSError:
            pass
    lat.sort()
    for p in ("50", "75", "90", "99"):
        out["p" + p + "_ms"] = lat[min(len(lat) - 1, len(lat) * int(p) // 100)] if lat else None
    return out


# --------------------------------------------------------------------------- /proc CPU


def _proc_stat(pid: int, sys_only: bool = False) -> Optional[Tuple[int, int]]:
    """(utime + stime ticks, or stime alone, starttime) of one process, or None if it
    is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    fields = data[data.rindex(b")") + 2:].split()
    # fields[0] is field 3 (state); utime is field 14, stime 15, starttime 22.
    return int(fields[12]) + (0 if sys_only else int(fields[11])), int(fields[19])


def _children(pid: int) -> List[int]:
    kids: List[int] = []
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            with open(path) as f:
                kids.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return kids


def process_tree(root: int) -> List[int]:
    """root and all its descendants (through /proc/PID/task/*/children)."""
    seen: List[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.append(pid)
        todo.extend(_children(pid))
    return seen


def sample_cpu(root: int, sys_only: bool = False) -> Dict[Tuple[int, int], int]:
    """{(pid, starttime): utime+stime ticks (or stime)} for every live process in root's
    tree."""
    snap = {}
    for pid in process_tree(root):
        st = _proc_stat(pid, sys_only)
        if st is not None:
            snap[(pid, st[1])] = st[0]
    return snap


def cpu_delta_s(before: Dict[Tuple[int, int], int], after: Dict[Tuple[int, int], int]) -> float:
    """CPU seconds used between two samples, over processes present in either.

    A process that appeared after `before` counts from 0; one that was gone at `after`
    counts only to its `before` value (its last ticks are lost: workers are not expected
    to exit during a run, and we report how many did)."""
    ticks = 0
    for key in set(before) | set(after):
        ticks += after.get(key, before.get(key, 0)) - before.get(key, 0)
    return ticks / CLK_TCK


def machine_cpu_ticks() -> Tuple[int, int]:
    """(busy, total) ticks over all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    total = sum(vals[:8])  # guest time is already inside user/nice
    return total - idle, total


# --------------------------------------------------------------------------- processes

_STARTED: List[subprocess.Popen] = []


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv: List[str], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw) -> subprocess.Popen:
    """Start a process in its own session so that its whole group can be signalled."""
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                         start_new_session=True, **kw)
    _STARTED.append(p)
    return p


def _gone(pid: int) -> bool:
    """True if pid no longer runs (absent, or a zombie waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return True
    return data[data.rindex(b")") + 2:][:1] == b"Z"


def stop(p: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM the process, its group and its descendants; SIGKILL what is left after grace."""
    tree = process_tree(p.pid) if p.poll() is None else []

    def alive() -> bool:
        return p.poll() is None or not all(_gone(pid) for pid in tree[1:])

    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not alive():
            break
        try:
            os.killpg(p.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        for pid in tree:  # descendants that left our process group, if any
            if not _gone(pid):
                try:
                    os.kill(pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
        deadline = time.monotonic() + grace
        while alive() and time.monotonic() < deadline:
            time.sleep(0.05)
    if p in _STARTED:
        _STARTED.remove(p)


def stop_all() -> None:
    for p in list(reversed(_STARTED)):
        stop(p)


def wait_h2_200(port: int, proc: subprocess.Popen, timeout: float) -> Optional[str]:
    """As wait_http_200, over h2c by prior knowledge (one h2load request): an nginx
    `listen ... http2` port speaks nothing else."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"process exited with status {proc.returncode}"
        try:
            r = subprocess.run(["h2load", "-n", "1", "-c", "1", f"http://127.0.0.1:{port}/"],
                               capture_output=True, text=True, timeout=10)
            if re.search(r"^status codes: 1 2xx", r.stdout, re.M):
                return None
            last = (r.stdout + r.stderr).strip().splitlines()[-1:] or ["?"]
            last = last[0]
        except (OSError, subprocess.SubprocessError) as e:
            last = f"{type(e).__name__}: {e}"
        time.sleep(0.1)
    return f"not ready after {timeout:.0f} s ({last})"


def wait_http_200(port: int, proc: subprocess.Popen, timeout: float,
                  headers: Optional[Dict[str, str]] = None) -> Optional[str]:
    """Poll GET / (with `headers`) until it answers 200; None when ready, else the reason
    it is not."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"process exited with status {proc.returncode}"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/", headers=headers or {})
            resp = conn.getresponse()
            body = resp.read()
            if resp.status == 200:
                return None
            last = f"HTTP {resp.status}: {body[:200]!r}"
        except (OSError, http.client.HTTPException) as e:
            last = f"{type(e).__name__}: {e}"
        finally:
            conn.close()
        time.sleep(0.1)
    return f"not ready after {timeout:.0f} s ({last})"


# --------------------------------------------------------------------------- tools


PACKAGES = {"nginx": "nginx", "wrk": "wrk", "h2load": "nghttp2-client"}


def ensure_tools(tools=("nginx", "wrk", "h2load")) -> None:
    missing = [t for t in tools if shutil.which(t) is None
               and not os.path.exists("/usr/sbin/" + t)]
    if not missing:
        return
    pkgs = [PACKAGES[t] for t in missing]
    print(f"# installing {' '.join(pkgs)} from Debian (apt-get) ...", flush=True)
    if os.geteuid() != 0:
        sys.exit(f"{'/'.join(missing)} missing and not root: "
                 f"apt-get install -y --no-install-recommends {' '.join(pkgs)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *pkgs]
    if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL, check=True)
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)


def nginx_bin() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def tool_version(argv: List[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"


def machine_info() -> dict:
    try:
        r = subprocess.run([sys.executable, "-c",
                            "import apigw_core.native as n; print(n.enabled)"],
                           capture_output=True, text=True, timeout=60)
        native = r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() \
            else f"import failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}"
    except (OSError, subprocess.SubprocessError) as e:
        native = f"?: {e}"
    cpu_model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "apigw_core_native_enabled": native,
        "kernel": platform.release(),
        "nginx": tool_version([nginx_bin(), "-v"]),
        "wrk": tool_version(["wrk", "-v"]),
        "h2load": tool_version(["h2load", "--version"]),
    }


# --------------------------------------------------------------------------- nginx

NGINX_COMMON = """\
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_timeout 65;
    keepalive_requests 1000000;
{body}
}}
"""

NGINX_BACKEND = """\
    server {{
        listen 127.0.0.1:{port};
        default_type text/plain;
        location / {{ return 200 "hello world\\n"; }}
    }}"""

NGINX_PROXY = """\
    upstream backend {{
        server 127.0.0.1:{backend_port};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port}{listen_extra};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}"""


def start_nginx(workdir: str, name: str, body: str, port: int,
                h2: bool = False) -> subprocess.Popen:
    d = tempfile.mkdtemp(prefix=name + "-", dir=workdir)   # unique: rows may repeat
    os.chmod(d, 0o755)  # nginx workers run as nobody when we are root
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_COMMON.format(d=d, body=body))
    p = start([nginx_bin(), "-e", os.path.join(d, "error.log"), "-p", d, "-c", conf,
               "-g", "daemon off;"])
    err = (wait_h2_200 if h2 else wait_http_200)(port, p, 10)
    if err:
        try:
            with open(os.path.join(d, "error.log")) as f:
                log = f.read()[-2000:]
        except OSError:
            log = ""
        stop(p)
        raise RuntimeError(f"nginx {name} on port {port}: {err}\n{log}")
    return p


# --------------------------------------------------------------------------- gateway

GATEWAY_CONFIG = """\
listeners: [{{bind: "127.0.0.1:{port}", protocols: [{protocols}]}}]
backends: {{nginx: {{url: "http://127.0.0.1:{backend_port}"}}}}
apis: [{{name: bench, path: "", backend: nginx}}]
"""
DEFAULT_GW_CMD = "{python} -m apigw_core serve {config} --workers {workers}"
# the telemetry rows (issue 13): appended to GATEWAY_CONFIG ({dir}: the row's temp dir)
TELEMETRY_CONFIG = {
    "notel": "telemetry: {{metrics: {{enabled: false}}}}\n",
    "tel": 'telemetry: {{access-log: {{path: "{dir}/access.log"}}}}\n',
    "otel": 'telemetry: {{access-log: {{path: "{dir}/access.log"}}, otel: {{endpoint: "{otlp}", '
            'sampler: parentbased_traceidratio, ratio: 1.0}}}}\n',
}


class OtlpReceiver:
    """An OTLP/HTTP endpoint on loopback for the gw1otel row: takes every export (counts
    requests and bytes, decodes nothing) and answers an empty ExportTraceServiceResponse."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        owner = self
        self.posts = 0
        self.bytes = 0

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(n)
                owner.posts += 1
                owner.bytes += n
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

# The gw1pol row (issue 9): the same proxy with the five policies of the target at
# global scope.  The API requires a subscription key and the all-apis subscription below
# owns it, so every request is resolved to a subscription; the load generator sends the key
# and the header check-header wants.  No Origin: cors sees an ordinary (non-CORS) request.
POLICY_KEY = "0123456789abcdef0123456789abcdef"
POLICY_HEADERS = {"Ocp-Apim-Subscription-Key": POLICY_KEY, "X-Api-Client": "wrk"}
POLICY_CONFIG = """\
listeners: [{{bind: "127.0.0.1:{port}", protocols: [{protocols}]}}]
backends: {{nginx: {{url: "http://127.0.0.1:{backend_port}"}}}}
subscriptions:
  - {{id: bench, scope: all-apis, primary-key: "%s"}}
policies:
  inbound:
    - check-header: {{name: X-Api-Client, failed-check-httpcode: 401,
                     failed-check-error-message: "X-Api-Client is required", ignore-case: true}}
    - ip-filter: {{action: allow, address: [127.0.0.1]}}
    - set-header: {{name: X-Forwarded-By, value: [apigw]}}
    - cors: {{allowed-origins: ["https://app.example.com"], allowed-methods: [GET, POST],
             allowed-headers: [X-Api-Client]}}
  outbound:
    - set-header: {{name: X-Served-By, value: [apigw]}}
apis: [{{name: bench, path: "", backend: nginx, subscription-required: true}}]
""" % POLICY_KEY


# The gw1rl row (issue 10): gw1 with a rate-limit-by-key on every request, counted per client
# IP in the gateway's shared-memory table (a limit never reached: the cost of the decision).
RATE_LIMIT_CONFIG = """\
listeners: [{{bind: "127.0.0.1:{port}", protocols: [{protocols}]}}]
backends: {{nginx: {{url: "http://127.0.0.1:{backend_port}"}}}}
apis:
  - name: bench
    path: ""
    backend: nginx
    policies:
      inbound:
        - rate-limit-by-key: {{calls: 10000000, renewal-period: 300,
                              counter-key: "{{request.ip}}"}}
"""


# The gw1pool row (issue 12): the plain API's backend is a weighted pool of three members
# (the same nginx under three base paths), each with a circuit breaker and a health check.
POOL_MEMBER = ('{{url: "http://127.0.0.1:{backend_port}/%s", circuit-breaker: {{failure-condition: '
               '{{count: 5, interval: 10s}}, trip-duration: 30s}}, health-check: {{path: /healthz, '
               'interval: 5s}}}}')
POOL_CONFIG = """\
listeners: [{{bind: "127.0.0.1:{port}", protocols: [{protocols}]}}]
backends:
  m1: %s
  m2: %s
  m3: %s
  pool: {{pool: [{{backend: m1, weight: 3}}, {{backend: m2, weight: 2}}, {{backend: m3, weight: 1}}]}}
apis: [{{name: bench, path: "", backend: pool}}]
""" % (POOL_MEMBER % "m1", POOL_MEMBER % "m2", POOL_MEMBER % "m3")


# The gw1rlredis row (issue 10): the gw1rl config with its counters in Redis (one EVALSHA
# round trip per request to a redis-server on loopback, started by start_redis).
REDIS_RATE_LIMIT_CONFIG = RATE_LIMIT_CONFIG.replace(
    'counter-key: "{{request.ip}}"', 'counter-key: "{{request.ip}}", store: redis') + """\
redis: {{url: "redis://127.0.0.1:{redis_port}/0"}}
"""


def start_redis(workdir: str) -> Tuple[subprocess.Popen, int]:
    """A redis-server on a free loopback port, no persistence (for the gw1rlredis row)."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    p = start([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", workdir])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
                c.sendall(b"PING\r\n")
                if c.recv(16) == b"+PONG\r\n":
                    return p, port
        except OSError:
            time.sleep(0.05)
    stop(p)
    raise RuntimeError(f"redis-server on port {port} did not answer PING")
# The gw1jwt rows (issue 11): one validate-jwt at global scope with a static key of the
# algorithm's type (an OpenID provider's cached JWKS key takes the same path per request),
# audience and issuer checked; every request carries the same token.
_JWT: Dict[str, Tuple[str, str]] = {}


def _bench_key(alg: str):
    """The benchmark's private key, kept in the temp dir so that every process (a run's
    rows, the in-memory request path under callgrind) uses the same one: RSA key
    generation costs a random number of instructions."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    path = os.path.join(tempfile.gettempdir(), f"apigw-bench-jwt-{alg}.pem")
    try:
        with open(path, "rb") as f:
            return serialization.load_pem_private_key(f.read(), None)
    except (OSError, ValueError):
        pass
    key = (rsa.generate_private_key(public_exponent=65537, key_size=2048)
           if alg == "RS256" else ec.generate_private_key(ec.SECP256R1()))
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    os.replace(tmp, path)
    return key


def jwt_material(alg: str) -> Tuple[str, str]:
    """(public key PEM, token) for "RS256" or "ES256", made once per process."""
    if alg not in _JWT:
        import jwt as pyjwt
        from cryptography.hazmat.primitives import serialization
        key = _bench_key(alg)
        pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        token = pyjwt.encode({"sub": "bench", "aud": "api://bench", "iss": "https://idp.bench",
                              "exp": 4102444800}, key, algorithm=alg,
                             headers={"kid": "bench"})
        _JWT[alg] = (pem, token)
    return _JWT[alg]


def jwt_config(alg: str, port: int, backend_port: int, protocols: str) -> str:
    pem, _ = jwt_material(alg)
    return json.dumps({
        "listeners": [{"bind": f"127.0.0.1:{port}",
                       "protocols": [p.strip() for p in protocols.split(",")]}],
        "backends": {"nginx": {"url": f"http://127.0.0.1:{backend_port}"}},
        "policies": {"inbound": [{"validate-jwt": {
            "issuer-signing-keys": [{"id": "bench", "public-key": pem}],
            "audiences": ["api://bench"], "issuers": ["https://idp.bench"]}}]},
        "apis": [{"name": "bench", "path": "", "backend": "nginx"}]})


def jwt_headers(alg: str) -> Dict[str, str]:
    return {"Authorization": f"Bearer {jwt_material(alg)[1]}"}


def start_gateway(workdir: str, workers: int, port: int, backend_port: int, timeout: float,
                  cmd: str = "", h2c: bool = False, policies: bool = False,
                  telemetry: str = "", rate_limit: bool = False, redis_port: int = 0,
                  pool: bool = False, jwt_alg: Optional[str] = None, otlp: str = ""
                  ) -> Tuple[Optional[subprocess.Popen], Optional[str]]:
    kind = ("pol" if policies else "rl" if rate_limit else "pool" if pool
            else f"jwt{jwt_alg}" if jwt_alg else "")
    d = tempfile.mkdtemp(prefix=f"{'h2' if h2c else ''}gw{workers}{kind}{telemetry}-",
                         dir=workdir)
    conf = os.path.join(d, "gateway.yaml")
    with open(conf, "w") as f:
        if jwt_alg:
            f.write(jwt_config(jwt_alg, port, backend_port,
                               "http1, h2c" if h2c else "http1"))
        else:
            f.write(((POLICY_CONFIG if policies else REDIS_RATE_LIMIT_CONFIG if redis_port
                      else RATE_LIMIT_CONFIG if rate_limit else POOL_CONFIG if pool
                      else GATEWAY_CONFIG)
                     + TELEMETRY_CONFIG.get(telemetry, "")).format(
                port=port, backend_port=backend_port,
                protocols="http1, h2c" if h2c else "http1", dir=d, redis_port=redis_port,
                otlp=otlp))
    errpath = os.path.join(d, "stderr.log")
    outpath = os.path.join(d, "stdout.log")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(errpath, "wb") as ferr, open(outpath, "wb") as fout:
        argv = [a.format(python=sys.executable, config=conf, workers=workers)
                for a in shlex.split(cmd or DEFAULT_GW_CMD)]
        p = start(argv, stdout=fout, stderr=ferr, cwd=d, env=env)
    err = wait_http_200(port, p, timeout, POLICY_HEADERS if policies else
                        jwt_headers(jwt_alg) if jwt_alg else None)
    if err is None:
        return p, None
    stop(p)
    with open(errpath, errors="replace") as f:
        stderr = f.read()
    with open(outpath, errors="replace") as f:
        stdout = f.read()
    return None, f"{err}\n--- gateway stderr ---\n{stderr[-4000:]}" + (
        f"\n--- gateway stdout ---\n{stdout[-2000:]}" if stdout.strip() else "")


# --------------------------------------------------------------------------- running


@dataclass
class Result:
    target: str
    label: str
    round: int = 1                   # 1..--repeat
    ok: bool = False
    error: Optional[str] = None
    client: str = ""                 # "wrk" or "h2load"
    wrk_threads: int = 0             # the load generator's threads (wrk -t or h2load -t)
    connections: int = 0
    streams: int = 1                 # h2load -m: concurrent streams per connection
    duration_s: float = 0.0
    requests: int = 0
    rps: Optional[float] = None
    p50_ms: Optional[float] = None
    p99_ms: Optional[float] = None
    latency_avg_ms: Optional[float] = None
    errors: Optional[int] = None
    non_2xx_3xx: Optional[int] = None
    socket_errors: dict = field(default_factory=dict)
    proxy_cpu_s: Optional[float] = None
    proxy_sys_s: Optional[float] = None
    req_per_cpu_s: Optional[float] = None
    proxy_processes: int = 0
    proxy_processes_exited: int = 0
    wrk_cpu_s: Optional[float] = None          # the load generator's CPU (wrk or h2load)
    machine_busy_pct: Optional[float] = None
    wrk_output: str = ""                       # the load generator's raw output


def run_wrk(url: str, threads: int, conns: int, duration: float,
            headers: Optional[Dict[str, str]] = None) -> Tuple[str, float]:
    """Run wrk (each of `headers` as `-H`), return (stdout, CPU seconds wrk used)."""
    argv = ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{duration:g}s", "--latency"]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(url)
    before = os.times()
    p = start(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = p.communicate(timeout=duration + 60)
    finally:
        stop(p)
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    if p.returncode != 0:
        raise RuntimeError(f"wrk exited with {p.returncode}:\n{out.decode(errors='replace')}")
    return out.decode(errors="replace"), cpu


def run_h2load(url: str, threads: int, conns: int, streams: int, duration: float,
               log_path: Optional[str] = None) -> Tuple[str, float]:
    """Run h2load for `duration` seconds (h2c by prior knowledge for an http:// URL), return
    (stdout, CPU seconds h2load used)."""
    argv = ["h2load", "-t", str(threads), "-c", str(conns), "-m", str(streams),
            "-D", f"{duration:g}", url]
    if log_path:
        argv[1:1] = ["--log-file", log_path]
    before = os.times()
    p = start(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = p.communicate(timeout=duration + 60)
    finally:
        stop(p)
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    if p.returncode != 0:
        raise RuntimeError(f"h2load exited with {p.returncode}:\n{out.decode(errors='replace')}")
    return out.decode(errors="replace"), cpu


def bench(res: Result, port: int, cpu_root: int, args, threads: int, h2: bool = False,
          workdir: str = "", headers: Optional[Dict[str, str]] = None) -> None:
    url = f"http://127.0.0.1:{port}/"
    if h2:
        conns = max(args.h2_connections, threads)
        res.client, res.streams = "h2load", args.h2_streams
        log_path = os.path.join(workdir, f"{res.target}.{res.round}.h2load.tsv")

        def load(duration: float, log: Optional[str] = None) -> Tuple[str, float]:
            return run_h2load(url, threads, conns, args.h2_streams, duration, log)
    else:
        conns = max(args.connections, threads)
        res.client, log_path = "wrk", None

        def load(duration: float, log: Optional[str] = None) -> Tuple[str, float]:
            return run_wrk(url, threads, conns, duration, headers)
    res.wrk_threads, res.connections = threads, conns
    if args.warmup > 0:
        load(args.warmup)
    before, sys_before = sample_cpu(cpu_root), sample_cpu(cpu_root, True)
    m_before = machine_cpu_ticks()
    out, wrk_cpu = load(args.duration, log_path)
    after, sys_after = sample_cpu(cpu_root), sample_cpu(cpu_root, True)
    m_after = machine_cpu_ticks()
    res.wrk_output = out
    parsed = parse_h2load(out, log_path) if h2 else parse_wrk(out)
    if log_path:
        try:
            os.remove(log_path)  # can be large; the percentiles are taken
        except OSError:
            pass
    res.requests = parsed["requests"]
    res.duration_s = parsed["duration_s"]
    res.rps = parsed["rps"]
    res.p50_ms = parsed["p50_ms"]
    res.p99_ms = parsed["p99_ms"]
    res.latency_avg_ms = parsed["latency_avg_ms"]
    res.errors = parsed["errors"]
    res.non_2xx_3xx = parsed["non_2xx_3xx"]
    res.socket_errors = parsed["socket_errors"]
    res.proxy_cpu_s = cpu_delta_s(before, after)
    res.proxy_sys_s = cpu_delta_s(sys_before, sys_after)   # the kernel's part of it
    res.proxy_processes = len(set(before) | set(after))
    res.proxy_processes_exited = len(set(before) - set(after))
    res.req_per_cpu_s = res.requests / res.proxy_cpu_s if res.proxy_cpu_s > 0 else None
    res.wrk_cpu_s = wrk_cpu
    busy, total = m_after[0] - m_before[0], m_after[1] - m_before[1]
    res.machine_busy_pct = 100.0 * busy / total if total else None
    res.ok = True


def run_target(target: str, res: Result, ctx: dict, args) -> None:
    workdir, backend_port = ctx["workdir"], ctx["backend_port"]
    if target == "nginx":
        bench(res, backend_port, ctx["backend"].pid, args, args.threads)
        return
    if target == "floor":
        port = free_port()
        p = start([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                "floor.py"),
                   "--port", str(port), "--backend-port", str(backend_port)])
        try:
            err = wait_http_200(port, p, args.ready_timeout)
            if err:
                raise RuntimeError(f"floor.py: {err}")
            bench(res, port, p.pid, args, args.threads)
        finally:
            stop(p)
        return
    h2 = target in H2_TARGETS
    threads = args.h2_threads if h2 else args.threads
    if target in ("proxy", "h2nginx"):
        port = free_port()
        conf = NGINX_PROXY.format(port=port, backend_port=backend_port,
                                  listen_extra=" http2" if h2 else "")
        p = start_nginx(workdir, target, conf, port, h2=h2)
        try:
            bench(res, port, p.pid, args, threads, h2, workdir)
        finally:
            stop(p)
        return
    policies = target.endswith("pol")
    redis_row = target.endswith("rlredis")
    rate_limit = target.endswith("rl") or redis_row
    pool = target.endswith("pool")
    telemetry = next((t for t in ("notel", "otel", "tel") if target.endswith(t)), "")
    otlp = ""
    if telemetry == "otel":
        if "otlp" not in ctx:
            ctx["otlp"] = OtlpReceiver()
        otlp = ctx["otlp"].url
    jwt_alg = {"jwtrs": "RS256", "jwtes": "ES256"}.get(target[-5:])
    token = jwt_headers("RS256") if target == "gw1tok" else None
    workers = int(target.removeprefix("h2").removesuffix("redis").removesuffix("pool")
                  .removesuffix("pol").removesuffix("rl").removesuffix(telemetry)
                  .removesuffix("tok").removesuffix("jwtrs").removesuffix("jwtes")[2:])
    if redis_row and "redis" not in ctx:
        ctx["redis"] = start_redis(workdir)   # one for the whole run (stop_all ends it)
    port = free_port()
    p, err = start_gateway(workdir, workers, port, backend_port, args.ready_timeout, args.gw_cmd,
                           h2c=h2, policies=policies, telemetry=telemetry,
                           rate_limit=rate_limit, redis_port=ctx["redis"][1] if redis_row else 0,
                           pool=pool, jwt_alg=jwt_alg, otlp=otlp)
    if p is None:
        res.error = err
        print(f"# {target}: gateway did not come up: {err}", file=sys.stderr, flush=True)
        return
    try:
        bench(res, port, p.pid, args, threads, h2, workdir,
              POLICY_HEADERS if policies else jwt_headers(jwt_alg) if jwt_alg else token)
        if p.poll() is not None:
            res.error = f"gateway exited during the run with status {p.returncode}"
    finally:
        stop(p)


# --------------------------------------------------------------------------- report


def _fmt(v, spec: str, dash: str = "-") -> str:
    return dash if v is None else format(v, spec)


def _fmt_ms(v: Optional[float]) -> str:
    if v is None:
        return "-"
    return f"{v * 1000:.0f} µs" if v < 1 else f"{v:.2f} ms"


def spread_lines(results: List[Result]) -> List[str]:
    """With --repeat: each target's req per CPU-s over the rounds (min / median / max), and
    gw1pol over gw1 round by round (the two rows of a round ran back to back)."""
    out = []
    by_target: Dict[str, List[Result]] = {}
    for r in results:
        if r.ok and r.req_per_cpu_s:
            by_target.setdefault(r.target, []).append(r)
    for t, rs in by_target.items():
        v = sorted(r.req_per_cpu_s for r in rs)
        sys_share = sorted(r.proxy_sys_s / r.proxy_cpu_s for r in rs
                           if r.proxy_sys_s is not None and r.proxy_cpu_s)
        out.append(f"{TARGET_LABELS[t]}: req per CPU-s over {len(v)} rounds: min {v[0]:,.0f}, "
                   f"median {v[len(v) // 2]:,.0f}, max {v[-1]:,.0f}"
                   + (f"; kernel share of its CPU, median {sys_share[len(sys_share) // 2]:.0%}"
                      if sys_share else ""))
    for num, den in (("gw1", "floor"), ("gw1pol", "gw1"), ("gw1rl", "gw1"), ("gw1rlredis", "gw1rl"),
                     ("gw1pool", "gw1"), ("gw1tel", "gw1notel"), ("gw1otel", "gw1notel"), ("gw1tok", "gw1"), ("gw1jwtrs", "gw1"), ("gw1jwtes", "gw1"),
                     ("gw1jwtrs", "gw1tok"), ("gw1jwtes", "gw1tok")):
        g1 = {r.round: r for r in by_target.get(den, [])}
        gp = {r.round: r for r in by_target.get(num, [])}
        ratios = [gp[k].req_per_cpu_s / g1[k].req_per_cpu_s for k in sorted(g1) if k in gp]
        if ratios:
            srt = sorted(ratios)
            out.append(f"{num} / {den} req per CPU-s, round by round: "
                       + ", ".join(f"{x:.3f}" for x in ratios)
                       + f" (min {srt[0]:.3f}, median {srt[len(srt) // 2]:.3f}, "
                       f"max {srt[-1]:.3f})")
    return out


def report(results: List[Result], info: dict, args) -> str:
    lines = [
        f"{args.duration:g} s per target (after a {args.warmup:g} s warm-up); wrk: "
        f"{args.threads} thread(s), {args.connections} connections; h2load (h2c): "
        f"{args.h2_threads} thread(s), {args.h2_connections} connections x {args.h2_streams} "
        f"streams",
        "",
        "| target | client | req/s | p50 | p99 | errors | proxy CPU-s | req per CPU-s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    rounds = max((r.round for r in results), default=1)
    for r in results:
        label = f"{r.label} #{r.round}" if rounds > 1 else r.label
        if not r.ok:
            why = "interrupted" if r.error == "interrupted" else "FAILED"
            lines.append(f"| {label} | - | {why} | - | - | - | - | - |")
            continue
        client = (f"h2load -t {r.wrk_threads} -c {r.connections} -m {r.streams}"
                  if r.client == "h2load" else f"wrk -t {r.wrk_threads} -c {r.connections}")
        lines.append(
            f"| {label} | {client} | {r.rps:,.0f} | {_fmt_ms(r.p50_ms)} | {_fmt_ms(r.p99_ms)} | "
            f"{r.errors} | {r.proxy_cpu_s:.2f} | {_fmt(r.req_per_cpu_s, ',.0f')} |")
    lines.append("")
    if rounds > 1:
        lines.extend(spread_lines(results))
        lines.append(f"(the lines below: round {rounds})")
    by = {r.target: r for r in results if r.round == rounds}
    g1, g2 = by.get("gw1"), by.get("gw2")
    if g1 and g2 and g1.ok and g2.ok and g1.rps:
        lines.append(f"gw2/gw1 req/s: {g2.rps / g1.rps:.2f}"
                     + (f"; gw2/gw1 req per CPU-s: {g2.req_per_cpu_s / g1.req_per_cpu_s:.2f}"
                        if g1.req_per_cpu_s and g2.req_per_cpu_s else ""))
    else:
        lines.append("gw2/gw1 req/s: n/a")
    px = by.get("proxy")
    for g in (g1, g2):
        if g and g.ok and px and px.ok and px.req_per_cpu_s and g.req_per_cpu_s:
            lines.append(f"{g.label}: {g.req_per_cpu_s / px.req_per_cpu_s:.1%} of nginx proxy's "
                         f"req per CPU-s, {g.rps / px.rps:.1%} of its req/s")
    fl = by.get("floor")
    for g in (g1, g2):
        if g and g.ok and fl and fl.ok and fl.req_per_cpu_s and g.req_per_cpu_s:
            lines.append(f"{g.label} / trio floor, req per CPU-s: "
                         f"{g.req_per_cpu_s / fl.req_per_cpu_s:.3f}")
    h2px = by.get("h2nginx")
    for g in (by.get("h2gw1"), by.get("h2gw2")):
        if g and g.ok and h2px and h2px.ok and h2px.req_per_cpu_s and g.req_per_cpu_s:
            lines.append(f"{g.label}: {g.req_per_cpu_s / h2px.req_per_cpu_s:.1%} of nginx h2c "
                         f"proxy's req per CPU-s, {g.rps / h2px.rps:.1%} of its req/s")
    for num, den in (("gw1pol", "gw1"), ("gw1rl", "gw1"), ("gw1pool", "gw1"),
                     ("gw1tel", "gw1notel"), ("gw1otel", "gw1notel"), ("gw1tok", "gw1"), ("gw1jwtrs", "gw1"), ("gw1jwtes", "gw1"),
                     ("gw1jwtrs", "gw1tok"), ("gw1jwtes", "gw1tok")):
        a, b = by.get(num), by.get(den)
        if a and b and a.ok and b.ok and a.req_per_cpu_s and b.req_per_cpu_s:
            lines.append(f"{a.label} / {b.label}, req per CPU-s: "
                         f"{a.req_per_cpu_s / b.req_per_cpu_s:.3f}")
    grr = by.get("gw1rlredis")
    for base in (by.get("gw1"), by.get("gw1rl")):   # the gateway's CPU only, not redis-server's
        if base and grr and base.ok and grr.ok and base.req_per_cpu_s and grr.req_per_cpu_s:
            lines.append(f"{grr.label} / {base.label}, req per CPU-s: "
                         f"{grr.req_per_cpu_s / base.req_per_cpu_s:.3f}; p50 "
                         f"{_fmt_ms(base.p50_ms)} -> {_fmt_ms(grr.p50_ms)}")
    for h1, h2 in (("gw1", "h2gw1"), ("gw2", "h2gw2"), ("proxy", "h2nginx")):
        a, b = by.get(h1), by.get(h2)
        if a and b and a.ok and b.ok and a.req_per_cpu_s and b.req_per_cpu_s:
            lines.append(f"{b.label} / {a.label}, req per CPU-s: "
                         f"{b.req_per_cpu_s / a.req_per_cpu_s:.2f}")
    extra = ", ".join(f"{r.target}: {r.client} {r.wrk_cpu_s:.2f} CPU-s, machine "
                      f"{r.machine_busy_pct:.0f}% busy"
                      for r in results if r.ok and r.machine_busy_pct is not None)
    if extra:
        lines.append(f"load generator and machine during the runs: {extra}")
    lines.append("")
    lines.append(f"machine: nproc {info['nproc']} ({info['cpu_model']}), Python {info['python']}, "
                 f"apigw_core.native.enabled = {info['apigw_core_native_enabled']}, "
                 f"{info['nginx']}, {info['wrk']}, {info['h2load']}, Linux {info['kernel']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def _sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10, help="measured seconds per target (10)")
    ap.add_argument("--warmup", type=float, default=2, help="warm-up seconds per target (2)")
    ap.add_argument("--connections", type=int, default=50, help="wrk connections (50)")
    ap.add_argument("--threads", type=int, default=1,
                    help="wrk threads, the same for every row (1: see README on 2-core machines)")
    ap.add_argument("--h2-connections", type=int, default=10,
                    help="h2load connections for the h2 rows (10)")
    ap.add_argument("--h2-streams", type=int, default=10,
                    help="h2load concurrent streams per connection (-m) for the h2 rows (10)")
    ap.add_argument("--h2-threads", type=int, default=1, help="h2load threads (1)")
    ap.add_argument("--only", default=",".join(TARGETS),
                    help="comma-separated subset of " + ",".join(TARGETS))
    ap.add_argument("--ready-timeout", type=float, default=20,
                    help="seconds to wait for the gateway to answer 200 (20)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run the chosen rows this many times, interleaved (1); the report "
                         "adds each row's spread and gw1pol/gw1 round by round")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    ap.add_argument("--gw-cmd", default=DEFAULT_GW_CMD,
                    help="gateway command template; {python}, {config} and {workers} are "
                         "substituted (default: %(default)r)")
    args = ap.parse_args(argv)
    only = [t.strip() for t in args.only.split(",") if t.strip()]
    bad = [t for t in only if t not in TARGETS]
    if bad:
        ap.error(f"unknown target(s) {bad}; choose from {','.join(TARGETS)}")
    targets = [t for t in TARGETS if t in only]

    signal.signal(signal.SIGTERM, _sigterm)
    ensure_tools(["nginx"] + (["wrk"] if set(targets) - set(H2_TARGETS) else [])
                 + (["h2load"] if set(targets) & set(H2_TARGETS) else []))
    info = machine_info()
    workdir = tempfile.mkdtemp(prefix="apigw-e2e-")
    os.chmod(workdir, 0o755)
    results: List[Result] = []
    try:
        backend_port = free_port()
        backend = start_nginx(workdir, "backend", NGINX_BACKEND.format(port=backend_port), backend_port)
        ctx = {"workdir": workdir, "backend_port": backend_port, "backend": backend}
        for t, rnd in [(t, k) for k in range(1, max(1, args.repeat) + 1) for t in targets]:
            res = Result(target=t, label=TARGET_LABELS[t], round=rnd)
            results.append(res)
            print(f"# {t} (round {rnd}): running ...", file=sys.stderr, flush=True)
            try:
                run_target(t, res, ctx, args)
            except (RuntimeError, ValueError, OSError, subprocess.SubprocessError) as e:
                res.ok = False
                res.error = f"{type(e).__name__}: {e}"
                print(f"# {t}: failed: {res.error}", file=sys.stderr, flush=True)
            if backend.poll() is not None:
                raise RuntimeError("the nginx backend died")
    except KeyboardInterrupt:
        print("\n# interrupted; cleaning up", file=sys.stderr)
        for r in results:
            if not r.ok and r.error is None:
                r.error = "interrupted"
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut cleanup short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_all()
        if args.keep:
            print(f"# temp dir kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        if results:
            print(report(results, info, args))
        if args.json and results:
            doc = {
                "machine": info,
                "params": {"duration": args.duration, "warmup": args.warmup,
                           "connections": args.connections, "threads": args.threads,
                           "h2_connections": args.h2_connections,
                           "h2_streams": args.h2_streams, "h2_threads": args.h2_threads,
                           "gw_cmd": args.gw_cmd, "targets": targets,
                           "repeat": args.repeat},
                "results": [asdict(r) for r in results],
            }
            by = {r.target: r for r in results if r.round == 1}
            if by.get("gw1") and by.get("gw2") and by["gw1"].ok and by["gw2"].ok:
                doc["gw2_over_gw1_rps"] = by["gw2"].rps / by["gw1"].rps
            with open(args.json, "w") as f:
                json.dump(doc, f, indent=2)
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
