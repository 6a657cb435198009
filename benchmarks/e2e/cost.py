#!/usr/bin/env python3
"""The gateway's CPU cost per request, counted in instructions (callgrind) or sampled
(cProfile), under the same wrk load as run.py's gw1 / gw1pol rows (h2gw1: h2load -c10 -m10
over h2c, as run.py's h2gw1 row).

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
    python benchmarks/e2e/cost.py --only gw1notel,gw1tel,gw1otel --threads   # issue 13

`--idle` counts the timers alone (no load, instructions per second); `--net` runs each
config both ways and subtracts the timers' share at valgrind's request rate, which a
native rate (thousands of requests a second) makes negligible: the per-request figure
for the telemetry rows, whose flushes and exports are per interval.

The telemetry rows are run.py's: gw1otel exports to run.py's OTLP receiver, run in this
process (not counted).  `--threads` splits the count by thread (the access-log writer;
with an exporter thread, its share).  On a loaded VM valgrind serves a few requests a
second, and work done per interval (flushes, exports) is then spread over few requests.
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
           "gw1pool": (e2e.POOL_CONFIG, None),   # issue 12: pool, breakers, health checks
           # issue 13: no telemetry; metrics + access log; + OTel ratio 1.0 (run.py's rows)
           "gw1notel": (e2e.GATEWAY_CONFIG + e2e.TELEMETRY_CONFIG["notel"], None),
           "gw1tel": (e2e.GATEWAY_CONFIG + e2e.TELEMETRY_CONFIG["tel"], None),
           "gw1otel": (e2e.GATEWAY_CONFIG + e2e.TELEMETRY_CONFIG["otel"], None),
           "h2gw1": (e2e.GATEWAY_CONFIG, None)}  # issue 14: h2c, driven by h2load -c10 -m10
RATIOS = (("gw1pol", "gw1"), ("gw1pool", "gw1"), ("gw1tel", "gw1notel"),
          ("gw1otel", "gw1notel"), ("h2gw1", "gw1"))
H2 = {"h2gw1"}
_OTLP: list = []      # the gw1otel row's receiver (run.py's, in this process: not counted)


def _write_config(name: str, d: str, port: int, backend_port: int) -> str:
    template, _ = CONFIGS[name]
    otlp = ""
    if name.endswith("otel"):
        if not _OTLP:
            _OTLP.append(e2e.OtlpReceiver())
        otlp = _OTLP[0].url
    conf = os.path.join(d, "gateway.yaml")
    with open(conf, "w") as f:
        f.write(template.format(port=port, backend_port=backend_port, protocols="http1, h2c" if name in H2 else "http1",
                                dir=d, otlp=otlp))
    return conf


def _load(name: str, url: str, args, seconds: float, headers) -> dict:
    """One load run (wrk, or h2load for the h2 configs); its parsed figures."""
    if name in H2:
        # a fixed count (-n): under valgrind a timed h2load run may see none finish
        n = max(100, int(seconds * 50))
        r = subprocess.run(["h2load", "-t", "1", "-c", str(args.h2_connections), "-m",
                            str(args.h2_streams), "-n", str(n), url], capture_output=True,
                           text=True, timeout=seconds * 40 + 120)
        parsed = e2e.parse_h2load(r.stdout)
        if parsed["requests"] != n:
            raise RuntimeError(f"{name}: {parsed['requests']} of {n} done:\n{r.stdout}")
        return parsed
    text, _ = e2e.run_wrk(url, 1, args.connections, seconds, headers)
    return e2e.parse_wrk(text)


def _ready(name: str, port: int, p, timeout: float, headers) -> Optional[str]:
    if name in H2:
        return e2e.wait_h2_200(port, p, timeout)
    return e2e.wait_http_200(port, p, timeout, headers)


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
    _, headers = CONFIGS[name]
    d = tempfile.mkdtemp(prefix=name + "-", dir=workdir)
    port = e2e.free_port()
    conf = _write_config(name, d, port, backend_port)
    out = os.path.join(d, "callgrind.out")
    threads = ["--separate-threads=yes"] if args.threads else []
    p = _start(["valgrind", "--tool=callgrind", "--instr-atstart=no", *threads,
                f"--callgrind-out-file={out}", sys.executable, "-m", "apigw_core", "serve",
                conf], d)
    try:
        err = _ready(name, port, p, 180, headers)
        if err:
            raise RuntimeError(f"{name}: {err}")
        url = f"http://127.0.0.1:{port}/"
        _load(name, url, args, args.warmup, headers)
        subprocess.run(["callgrind_control", "-i", "on", str(p.pid)], check=True,
                       capture_output=True)
        if args.idle:   # the timers' own cost: flushes, writer wake-ups, exports
            time.sleep(args.duration)
            parsed = {"requests": 0, "errors": 0}
        else:
            parsed = _load(name, url, args, args.duration, headers)
        subprocess.run(["callgrind_control", "-i", "off", str(p.pid)], check=True,
                       capture_output=True)
        if parsed["errors"] > parsed["requests"] // 20:   # a few timeouts on a busy box
            raise RuntimeError(f"{name}: {parsed['errors']} errors under load: {parsed}")
        if parsed["errors"]:
            print(f"# {name}: {parsed['errors']} wrk errors of {parsed['requests']} "
                  f"requests (timeouts under valgrind?): {parsed}", file=sys.stderr, flush=True)
    finally:
        e2e.stop(p, grace=300)   # valgrind writes its files on the way out (slow when busy)
    deadline = time.monotonic() + 120

    def totals() -> Optional[list]:
        names = sorted(f for f in os.listdir(d) if f.startswith("callgrind.out")
                       and os.path.getsize(os.path.join(d, f)))   # threads: an empty base
        try:
            got = [_totals(os.path.join(d, f)) for f in names]
        except RuntimeError:
            return None          # a file still being written
        return got or None
    per_thread = totals()
    while per_thread is None and time.monotonic() < deadline:
        time.sleep(0.5)
        per_thread = totals()
    if per_thread is None:
        raise RuntimeError(f"{name}: no complete callgrind output in {d}")
    ir = sum(per_thread)
    n = parsed["requests"]
    if args.idle:
        print(f"{name}: idle {ir / args.duration:,.0f} instructions/s", flush=True)
        return {"requests": 0, "errors": 0, "instructions": ir, "per_request": 0.0}
    if args.threads:
        print(f"{name}: per thread " + ", ".join(f"{t / n:,.0f}" for t in per_thread)
              + " instructions/request", flush=True)
    return {"requests": n, "errors": parsed["errors"], "instructions": ir,
            "per_request": ir / n}


def profile(name: str, workdir: str, backend_port: int, args) -> None:
    """cProfile over one config's worker during a wrk run; the top functions by tottime."""
    _, headers = CONFIGS[name]
    d = tempfile.mkdtemp(prefix=name + "-prof-", dir=workdir)
    port = e2e.free_port()
    conf = _write_config(name, d, port, backend_port)
    stats = os.path.join(d, "prof.out")
    p = _start([sys.executable, "-m", "cProfile", "-o", stats, "-m", "apigw_core", "serve",
                conf], d)
    try:
        err = _ready(name, port, p, 60, headers)
        if err:
            raise RuntimeError(f"{name}: {err}")
        n = _load(name, f"http://127.0.0.1:{port}/", args, args.duration, headers)["requests"]
    finally:
        e2e.stop(p, grace=30)
    print(f"## {name}: cProfile over {n} requests (startup included)")
    pstats.Stats(stats).sort_stats("tottime").print_stats(args.profile)


def main(argv: Optional[list] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="gw1,gw1pol",
                    help=f"{', '.join(CONFIGS)} (default: gw1,gw1pol)")
    ap.add_argument("--duration", type=float, default=20, help="counted wrk seconds (20)")
    ap.add_argument("--warmup", type=float, default=5, help="uncounted wrk seconds (5)")
    ap.add_argument("--connections", type=int, default=10, help="wrk connections (10)")
    ap.add_argument("--h2-connections", type=int, default=10, help="h2load -c (10)")
    ap.add_argument("--h2-streams", type=int, default=10, help="h2load -m (10)")
    ap.add_argument("--profile", type=int, metavar="N", default=0,
                    help="cProfile instead of callgrind: print the top N functions")
    ap.add_argument("--idle", action="store_true",
                    help="count --duration seconds with no load: instructions/s of the timers")
    ap.add_argument("--net", action="store_true",
                    help="also count each config idle and subtract its timers' share")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work directory (callgrind files, for callgrind_annotate)")
    ap.add_argument("--threads", action="store_true",
                    help="callgrind --separate-threads=yes: print each thread's share too")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    if any(n not in CONFIGS for n in names):
        ap.error(f"--only: choose from {', '.join(CONFIGS)}")
    e2e.ensure_tools(["nginx", "wrk"] + (["h2load"] if H2 & set(names) else []))
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
                if args.net and not args.idle:   # minus the timers at valgrind's rate
                    idle = count(n, workdir, backend_port,
                                 argparse.Namespace(**{**vars(args), "idle": True}))
                    rate = r["requests"] / args.duration
                    r["raw"] = r["per_request"]
                    r["per_request"] -= idle["instructions"] / args.duration / rate
                    print(f"{n}: {r['raw']:,.0f} raw, {r['per_request']:,.0f} net of the "
                          f"timers ({rate:,.0f} requests/s under valgrind)", flush=True)
                if not args.idle:
                    print(f"{n}: {r['per_request']:,.0f} instructions/request "
                          f"({r['requests']} requests, {r['errors']} errors)", flush=True)
    finally:
        e2e.stop_all()
        if args.keep:
            print(f"# callgrind files kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    for row, base in () if args.idle else RATIOS:
        if base in results and row in results:
            a, b = results[base]["per_request"], results[row]["per_request"]
            print(f"{row} / {base} instructions: {b / a:.3f}; as req per CPU-s "
                  f"({base} / {row}): {a / b:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
