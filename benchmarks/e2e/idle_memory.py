#!/usr/bin/env python3
"""The gateway's memory per idle keep-alive connection: RSS before and after opening many.

Strategy.  One gateway (`--workers 1`: the process that serves is the one we read) proxies
to run.py's nginx backend.  After a warm-up (a few hundred requests on short connections,
so that imports, caches and the backend pool are in place) we read VmRSS from
/proc/PID/status, then open N client connections from this process (raw sockets) and send
one request on each, one connection at a time (so the gateway's backend pool stays at one
connection and does not count), and leave every connection open and idle.  When all N
answered we read VmRSS again: (after - before) / N is the memory an idle keep-alive
connection holds, its kernel socket buffers excluded (they are not in RSS).  HTTP/1.1:
`GET /` with keep-alive.  HTTP/2 (an h2c listener, prior knowledge): the preface, SETTINGS,
the ACK of the server's SETTINGS, and one GET on stream 1 (HPACK from the static table),
read until its END_STREAM.  RLIMIT_NOFILE is raised to its hard limit here, and the gateway
inherits it.  Issue 14's targets: <= 16 KiB per HTTP/1.1 connection, <= 64 KiB per h2c.

    python benchmarks/e2e/idle_memory.py [--h1 10000] [--h2 1000] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import struct
import sys
import tempfile
import time
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as e2e  # noqa: E402  (the nginx backend, the gateway config, process handling)

H1_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _frame(ftype: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes((ftype, flags)) + \
        struct.pack(">I", stream) + payload


# HEADERS on stream 1, END_STREAM | END_HEADERS: :method GET, :scheme http, :path / (static
# table indexes 2, 6, 4) and :authority as a literal without indexing (name index 1)
_AUTH = b"127.0.0.1"
H2_GET = _frame(1, 0x5, 1, b"\x82\x86\x84\x01" + bytes((len(_AUTH),)) + _AUTH)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def _recv_until(s: socket.socket, done) -> bytes:
    buf = b""
    while not done(buf):
        data = s.recv(65536)
        if not data:
            raise RuntimeError(f"closed by the gateway after {buf[:200]!r}")
        buf += data
    return buf


def _h1_done(buf: bytes) -> bool:
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    low = buf[:end].lower()
    i = low.find(b"content-length:")
    n = int(low[i + 15:low.find(b"\r\n", i)]) if i >= 0 else 0
    return len(buf) >= end + 4 + n


def _h2_done(buf: bytes) -> bool:
    """True once a frame on stream 1 with END_STREAM arrived."""
    i = 0
    while i + 9 <= len(buf):
        n = int.from_bytes(buf[i:i + 3], "big")
        ftype, flags = buf[i + 3], buf[i + 4]
        sid = int.from_bytes(buf[i + 5:i + 9], "big") & 0x7FFFFFFF
        if i + 9 + n > len(buf):
            return False
        if sid == 1 and ftype in (0, 1) and flags & 0x1:
            return True
        i += 9 + n
    return False


def open_idle(port: int, n: int, h2: bool) -> List[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        if h2:
            s.sendall(H2_PREFACE + _frame(4, 0, 0) + H2_GET)
            _recv_until(s, _h2_done)
            s.sendall(_frame(4, 0x1, 0))   # ACK of the server's SETTINGS
        else:
            s.sendall(H1_REQUEST)
            _recv_until(s, _h1_done)
        socks.append(s)
    return socks


def measure(workdir: str, backend_port: int, n: int, h2: bool, settle: float) -> dict:
    port = e2e.free_port()
    p, err = e2e.start_gateway(workdir, 1, port, backend_port, 60, h2c=h2)
    if p is None:
        raise RuntimeError(err)
    socks: List[socket.socket] = []
    try:
        pids = e2e.process_tree(p.pid)
        pid = pids[-1]
        for s in open_idle(port, 200, h2):   # warm-up
            s.close()
        time.sleep(settle)
        before = rss_kib(pid)
        t0 = time.monotonic()
        socks = open_idle(port, n, h2)
        took = time.monotonic() - t0
        time.sleep(settle)
        after = rss_kib(pid)
        if p.poll() is not None:
            raise RuntimeError("the gateway exited")
        return {"protocol": "h2c" if h2 else "http1", "connections": n,
                "rss_before_kib": before, "rss_after_kib": after,
                "per_connection_kib": (after - before) / n, "open_s": took}
    finally:
        for s in socks:
            s.close()
        e2e.stop(p)


def main(argv: Optional[list] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--h1", type=int, default=10000, help="idle HTTP/1.1 connections (10000)")
    ap.add_argument("--h2", type=int, default=1000, help="idle h2c connections (1000)")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds before each reading")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = max(args.h1, args.h2) + 1000
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < need:
        sys.exit(f"RLIMIT_NOFILE {soft} < {need} (hard limit {hard})")
    e2e.ensure_tools(["nginx"])
    workdir = tempfile.mkdtemp(prefix="apigw-idle-")
    os.chmod(workdir, 0o755)
    rows = []
    try:
        backend_port = e2e.free_port()
        e2e.start_nginx(workdir, "backend", e2e.NGINX_BACKEND.format(port=backend_port),
                        backend_port)
        for n, h2 in ((args.h1, False), (args.h2, True)):
            if n > 0:
                rows.append(measure(workdir, backend_port, n, h2, args.settle))
    finally:
        e2e.stop_all()
    print("| protocol | idle connections | RSS before | RSS after | per connection | target |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        target = 64 if r["protocol"] == "h2c" else 16
        print(f"| {r['protocol']} | {r['connections']:,} | {r['rss_before_kib']:,} KiB | "
              f"{r['rss_after_kib']:,} KiB | {r['per_connection_kib']:.1f} KiB | "
              f"<= {target} KiB |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
