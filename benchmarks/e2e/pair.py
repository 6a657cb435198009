#!/usr/bin/env python3
"""Two of run.py's rows measured in alternation, for a ratio that the machine's drift
does not decide.

Strategy.  On this shared 2-core VM the gateway's req per CPU-second moves by ±25 % from
one few-second window to the next (run.py's rounds, and the in-memory bench run twice,
show it), so a ratio of two rows measured a minute apart says little.  Here both proxies
are up the whole time, warmed up once, then measured in short windows in the order
A B B A A B B A ...: each window is one wrk run against one of them (run.py's `bench`:
the same wrk invocation and the same CPU accounting from /proc), and each A B or B A
pair gives one ratio B / A from two adjacent windows.  The report gives every pair's
ratio, their median and quartiles, and the pooled ratio (all of B's requests per
CPU-second over all of A's).  Nothing runs concurrently, so neither proxy's load changes
how the other batches its work.

    python benchmarks/e2e/pair.py gw1notel gw1tel --pairs 20 --duration 2
    python benchmarks/e2e/pair.py gw1notel gw1otel
    python benchmarks/e2e/pair.py gw1 gw1pol
    python benchmarks/e2e/pair.py floor gw1

Rows: floor, gw1, gw1pol, gw1notel, gw1tel, gw1otel (run.py's configs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
from types import SimpleNamespace
from typing import Any, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as e2e  # noqa: E402  (the backend, configs, wrk and CPU accounting)

ROWS = ("floor", "gw1", "gw1pol", "gw1notel", "gw1tel", "gw1otel")


def _launch(row: str, workdir: str, backend_port: int, ctx: dict, timeout: float
            ) -> Tuple[Any, int, Any]:
    """Start `row`'s proxy: (process, port, the headers its requests need)."""
    port = e2e.free_port()
    if row == "floor":
        p = e2e.start([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                    "floor.py"),
                       "--port", str(port), "--backend-port", str(backend_port)])
        err = e2e.wait_http_200(port, p, timeout)
        if err:
            raise RuntimeError(f"floor.py: {err}")
        return p, port, None
    telemetry = next((t for t in ("notel", "otel", "tel") if row.endswith(t)), "")
    otlp = ""
    if telemetry == "otel":
        ctx.setdefault("otlp", e2e.OtlpReceiver())
        otlp = ctx["otlp"].url
    policies = row == "gw1pol"
    p, err = e2e.start_gateway(workdir, 1, port, backend_port, timeout, "",
                               policies=policies, telemetry=telemetry, otlp=otlp)
    if p is None:
        raise RuntimeError(f"{row}: gateway did not come up: {err}")
    return p, port, e2e.POLICY_HEADERS if policies else None


def _quartiles(xs: List[float]) -> Tuple[float, float, float]:
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[1], q[2]


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", choices=ROWS, help="the reference row (the ratio's denominator)")
    ap.add_argument("b", choices=ROWS, help="the row compared with it")
    ap.add_argument("--pairs", type=int, default=20, help="A/B pairs measured (20)")
    ap.add_argument("--duration", type=int, default=2,
                    help="seconds per window (2; wrk takes whole seconds)")
    ap.add_argument("--warmup", type=float, default=2, help="warm-up seconds, each, once (2)")
    ap.add_argument("--connections", type=int, default=50, help="wrk connections (50)")
    ap.add_argument("--ready-timeout", type=float, default=20)
    args = ap.parse_args(argv)
    e2e.ensure_tools(["nginx", "wrk"])
    signal.signal(signal.SIGTERM, e2e._sigterm)
    workdir = tempfile.mkdtemp(prefix="apigw-pair-")
    os.chmod(workdir, 0o755)
    ctx: dict = {}
    # run.py's bench() reads these of its argparse namespace
    opts = SimpleNamespace(connections=args.connections, duration=args.duration, warmup=0,
                           h2_connections=10, h2_streams=10)
    rates: dict = {args.a: [], args.b: []}
    kernel: dict = {args.a: [0.0, 0.0], args.b: [0.0, 0.0]}
    try:
        backend_port = e2e.free_port()
        e2e.start_nginx(workdir, "backend", e2e.NGINX_BACKEND.format(port=backend_port),
                        backend_port)
        procs = {r: _launch(r, workdir, backend_port, ctx, args.ready_timeout)
                 for r in (args.a, args.b)}
        for r, (p, port, headers) in procs.items():
            e2e.run_wrk(f"http://127.0.0.1:{port}/", 1, args.connections, args.warmup, headers)
        order = [args.a, args.b, args.b, args.a] * ((args.pairs + 1) // 2)
        for i, r in enumerate(order[:2 * args.pairs]):
            p, port, headers = procs[r]
            res = e2e.Result(target=r, label=r, round=i // 2 + 1)
            e2e.bench(res, port, p.pid, opts, 1, headers=headers)
            if not res.ok or res.errors or res.non_2xx_3xx or not res.req_per_cpu_s:
                raise RuntimeError(f"{r}: window {i + 1} failed: {res.error or res.wrk_output}")
            if p.poll() is not None:
                raise RuntimeError(f"{r}: exited during the run ({p.returncode})")
            rates[r].append((res.requests, res.proxy_cpu_s))
            kernel[r][0] += res.proxy_sys_s or 0.0
            kernel[r][1] += res.proxy_cpu_s
            print(f"# window {i + 1}: {r} {res.req_per_cpu_s:,.0f} req per CPU-s",
                  file=sys.stderr, flush=True)
    finally:
        e2e.stop_all()
        if "otlp" in ctx:
            ctx["otlp"].server.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)
    a, b = rates[args.a], rates[args.b]
    ratios = [(b[k][0] / b[k][1]) / (a[k][0] / a[k][1]) for k in range(min(len(a), len(b)))]
    q1, med, q3 = _quartiles(ratios)
    pooled = (sum(n for n, _ in b) / sum(c for _, c in b)) / (sum(n for n, _ in a)
                                                              / sum(c for _, c in a))
    for r in (args.a, args.b):
        n, c = sum(x for x, _ in rates[r]), sum(y for _, y in rates[r])
        print(f"{r}: {n:,} requests in {c:.2f} CPU-s, {n / c:,.0f} req per CPU-s pooled, "
              f"kernel share {100 * kernel[r][0] / kernel[r][1]:.0f} %")
    print(f"{args.b} / {args.a} req per CPU-s, pair by pair: "
          + ", ".join(f"{x:.3f}" for x in ratios))
    print(f"{args.b} / {args.a}: median {med:.3f} (quartiles {q1:.3f}-{q3:.3f}, "
          f"{len(ratios)} pairs of {args.duration:g} s windows); pooled {pooled:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
