#!/usr/bin/env python3
"""The gateway's CPU cost per request, counted in instructions (callgrind) or sampled
(cProfile), under the same wrk load as run.py's gw1 / gw1pol rows.

Strategy.  On a shared machine req per CPU-second moves with the neighbours' load; the
instructions the gateway executes per request do not.  So each config (`gw1`: no policy,
`gw1pol`: run.py's five policies) is served by one in-process worker under
`valgrind --tool=callgrind --instr-atstart=no`, warmed up, then counted only while a
wrk run is going (`callgrind_control -i on/off` around it); instructions / wrk's requests
is the cost of one request, user space only (the kernel's share, the same socket calls in
both configs, is not counted).  The few requests in flight when counting starts and stops
are noise below 0.5 % at the default 3,000+ requests.  `--profile` runs each config under
cProfile instead (no valgrind) and prints its top functions by own time.

    python benchmarks/e2e/cost.py                    # both configs, instructions/request
    python benchmarks/e2e/cost.py --only gw1pol --profile 25
"""

from __future__ import annotations

import argparse
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as e2e  # noqa: E402  (the same nginx backend, configs and wrk invocation)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = {"gw1": (e2e.GATEWAY_CONFIG, None), "gw1pol": (e2e.POLICY_CONFIG, e2e.POLICY_HEADERS),
           "gw1pool": (e2e.POOL_CONFIG, None)}   # issue 12: pool, breakers, health checks


def _start(argv: list, d: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=REPO + (os.pathsep + os.environ["PYTHONPATH"]
                                             if os.environ.get("PYTHONPATH") else ""))
    with open(os.path.join(d, "stderr.log"), "wb") as err:
        return e2e.start(argv, stdout=subprocess.DEVNULL, stderr=err, cwd=d, env=env)


def _totals(path: str) -> int:
    """The file's `totals:` line (`summary:` counts only what was dumped before)."""
    with open(path) as f:
        for line in f:
            if line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def count(name: str, workdir: str, backend_port: int, args) -> Dict[str, float]:
    """Instructions per request for one config under callgrind."""
    template, headers = CONFIGS[name]
    d = tempfile.mkdtemp(prefix=name + "-", dir=workdir)
    port = e2e.free_port()
    conf = os.path.join(d, "gateway.yaml")
    with open(conf, "w") as f:
        f.write(template.format(port=port, backend_port=backend_port, protocols="http1"))
    out = os.path.join(d, "callgrind.out")
    p = _start(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                f"--callgrind-out-file={out}", sys.executable, "-m", "apigw_core", "serve",
                conf], d)
    try:
        err = e2e.wait_http_200(port, p, 180, headers)
        if err:
            raise RuntimeError(f"{name}: {err}")
        url = f"http://127.0.0.1:{port}/"
        e2e.run_wrk(url, 1, args.connections, args.warmup, headers)
        subprocess.run(["callgrind_control", "-i", "on", str(p.pid)], check=True,
                       capture_output=True)
        text, _ = e2e.run_wrk(url, 1, args.connections, args.duration, headers)
        subprocess.run(["callgrind_control", "-i", "off", str(p.pid)], check=True,
                       capture_output=True)
        parsed = e2e.parse_wrk(text)
        # wrk's timeouts (2 s) are slow answers, not failures: under callgrind on a loaded
        # machine the requests in flight at the end can be; their work is counted, their
        # requests not (at most one per connection)
        slow = parsed["socket_errors"].get("timeout", 0)
        if parsed["errors"] - slow or slow > args.connections:
            raise RuntimeError(f"{name}: {parsed['errors']} errors under load (sockets "
                               f"{parsed['socket_errors']}, non-2xx {parsed['non_2xx_3xx']})")
    finally:
        e2e.stop(p, grace=60)   # valgrind writes its file on the way out
    deadline = time.monotonic() + 60
    while not os.path.exists(out) and time.monotonic() < deadline:
        time.sleep(0.2)
    ir = _totals(out)
    return {"requests": parsed["requests"], "instructions": ir,
            "per_request": ir / parsed["requests"]}


def profile(name: str, workdir: str, backend_port: int, args) -> None:
    """cProfile over one config's worker during a wrk run; the top functions by tottime."""
    template, headers = CONFIGS[name]
    d = tempfile.mkdtemp(prefix=name + "-prof-", dir=workdir)
    port = e2e.free_port()
    conf = os.path.join(d, "gateway.yaml")
    with open(conf, "w") as f:
        f.write(template.format(port=port, backend_port=backend_port, protocols="http1"))
    stats = os.path.join(d, "prof.out")
    p = _start([sys.executable, "-m", "cProfile", "-o", stats, "-m", "apigw_core", "serve",
                conf], d)
    try:
        err = e2e.wait_http_200(port, p, 60, headers)
        if err:
            raise RuntimeError(f"{name}: {err}")
        text, _ = e2e.run_wrk(f"http://127.0.0.1:{port}/", 1, args.connections,
                              args.duration, headers)
        n = e2e.parse_wrk(text)["requests"]
    finally:
        e2e.stop(p, grace=30)
    print(f"## {name}: cProfile over {n} requests (startup included)")
    pstats.Stats(stats).sort_stats("tottime").print_stats(args.profile)


def main(argv: Optional[list] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="gw1,gw1pol", help="gw1, gw1pol, gw1pool (default: gw1,gw1pol)")
    ap.add_argument("--duration", type=float, default=20, help="counted wrk seconds (20)")
    ap.add_argument("--warmup", type=float, default=5, help="uncounted wrk seconds (5)")
    ap.add_argument("--connections", type=int, default=10, help="wrk connections (10)")
    ap.add_argument("--profile", type=int, metavar="N", default=0,
                    help="cProfile instead of callgrind: print the top N functions")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    if any(n not in CONFIGS for n in names):
        ap.error(f"--only: choose from {', '.join(CONFIGS)}")
    e2e.ensure_tools(["nginx", "wrk"])
    if not args.profile and shutil.which("valgrind") is None:
        sys.exit("valgrind is needed (apt-get install valgrind), or use --profile N")
    workdir = tempfile.mkdtemp(prefix="apigw-cost-")
    os.chmod(workdir, 0o755)
    results = {}
    try:
        backend_port = e2e.free_port()
        e2e.start_nginx(workdir, "backend", e2e.NGINX_BACKEND.format(port=backend_port),
                        backend_port)
        for n in names:
            if args.profile:
                profile(n, workdir, backend_port, args)
            else:
                results[n] = count(n, workdir, backend_port, args)
                r = results[n]
                print(f"{n}: {r['per_request']:,.0f} instructions/request "
                      f"({r['requests']} requests)", flush=True)
    finally:
        e2e.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    for row in ("gw1pol", "gw1pool"):
        if "gw1" in results and row in results:
            a, b = results["gw1"]["per_request"], results[row]["per_request"]
            print(f"{row} / gw1 instructions: {b / a:.3f}; as req per CPU-s (gw1 / {row}): "
                  f"{a / b:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
