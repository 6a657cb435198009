#!/usr/bin/env python3
"""What client certificates cost the gateway: req per CPU-second of the gateway process
(user + system time from /proc, so the client's own CPU does not count) for

- `tls`:   a TLS listener, no client certificate, an API without policies (direct path);
- `mtls`:  a `request` listener, the client presents a certificate, the API runs
           `validate-client-certificate` (trust, validity, one identity) and the
           listener sets x-forwarded-client-cert;
- `mtls-require`: a `require` listener (OpenSSL verifies), same API as `tls`;

each once over one keep-alive connection (the per-request cost: the certificate is parsed
once per connection) and once with a new connection per request (the handshake and the
parse included).  Certificates are made on the fly (cryptography); the backend is the
built-in echo.

    python benchmarks/e2e/mtls_cost.py [--requests 3000] [--connections 300]
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path[:0] = [str(HERE.parents[2] / "tests"), str(HERE.parents[2] / "tests" / "runtime")]

from mtls_pki import ClientCA  # noqa: E402
from procs import start_echo, start_gateway  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(port: int, ctx: ssl.SSLContext, n: int, reuse: bool, pid: int) -> float:
    import http.client
    conn = None
    before = cpu_seconds(pid)
    for _ in range(n):
        if conn is None:
            conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=30)
        conn.request("GET", "/x/bench")
        r = conn.getresponse()
        r.read()
        assert r.status == 200, r.status
        if not reuse:
            conn.close()
            conn = None
    if conn is not None:
        conn.close()
    time.sleep(0.2)
    return n / (cpu_seconds(pid) - before)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--connections", type=int, default=300)
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="mtls-bench-"))
    ca = ClientCA(d, "bench CA")
    server = ca.issue("localhost", "localhost", "127.0.0.1")
    alice = ca.client("alice", org="Bench")
    echo = start_echo()
    tls = {"cert": server[0], "key": server[1]}
    backend = {"echo": {"url": f"http://127.0.0.1:{echo.port}/e"}}
    validate = {"inbound": [{"validate-client-certificate": {
        "validate-revocation": False, "identities": [{"common-name": "alice"}]}}]}
    configs = {
        "tls": {"listeners": [{"bind": "127.0.0.1:0", "tls": tls}],
                "backends": backend, "apis": [{"name": "x", "path": "/x", "backend": "echo"}]},
        "mtls": {"listeners": [{"bind": "127.0.0.1:0", "forward-client-cert": "sanitize-set",
                                "tls": {**tls, "client-certificate": {
                                    "mode": "request", "ca": str(ca.pem)}}}],
                 "backends": backend,
                 "apis": [{"name": "x", "path": "/x", "backend": "echo", "policies": validate}]},
        "mtls-require": {"listeners": [{"bind": "127.0.0.1:0", "tls": {
            **tls, "client-certificate": {"mode": "require", "ca": str(ca.pem)}}}],
            "backends": backend, "apis": [{"name": "x", "path": "/x", "backend": "echo"}]},
    }
    print(f"{'config':14} {'keep-alive req/CPU-s':>22} {'new conn req/CPU-s':>20}")
    try:
        for name, cfg in configs.items():
            sub = d / name
            sub.mkdir()
            gw = start_gateway(sub, cfg)
            try:
                ctx = ssl.create_default_context(cafile=str(ca.pem))
                if name != "tls":
                    ctx.load_cert_chain(*alice)
                run(gw.port, ctx, 200, True, gw.pid)                        # warm up
                keep = run(gw.port, ctx, args.requests, True, gw.pid)
                new = run(gw.port, ctx, args.connections, False, gw.pid)
                print(f"{name:14} {keep:22.0f} {new:20.0f}")
            finally:
                gw.stop()
    finally:
        echo.stop()


if __name__ == "__main__":
    main()
