"""End-to-end gRPC unary calls per proxy CPU-second: nginx `grpc_pass` vs the gateway,
in one run, in front of the same grpcio backend.

    python benchmarks/e2e/grpc_run.py [--duration 10] [--connections 10] [--streams 10]

The backend is a grpcio server (grpc-core in C) with one unary method, `/bench.Echo/Unary`,
that returns the request bytes.  h2load sends prepared gRPC requests (a 5-byte gRPC frame
header + a 64-byte message, `content-type: application/grpc`, `te: trailers`) over h2c
with -c connections x -m streams.  Each row counts the CPU of the proxy under test only
(from /proc, the process tree), like run.py; nginx's row is the native ceiling.  h2load
counts an HTTP 200 as a success; the script also checks one call's `grpc-status: 0`
through each proxy with curl before measuring.

    python benchmarks/e2e/grpc_run.py --cost 2000

counts instead the gateway's user-space instructions per call under callgrind
(`--instr-atstart=no`, counted over a fixed number of calls after a warm-up), the
measure that a busy machine does not move: run it from each tree compared (the gateway
imports the tree the script is in).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as e2e  # noqa: E402  (the shared helpers: processes, /proc CPU, h2load parsing)

BACKEND = '''
import sys, time
from concurrent import futures
import grpc
def unary(request, context):
    return request
handler = grpc.method_handlers_generic_handler("bench.Echo", {
    "Unary": grpc.unary_unary_rpc_method_handler(unary)})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
server.add_generic_rpc_handlers((handler,))
server.add_insecure_port("127.0.0.1:%s" % sys.argv[1])
server.start()
server.wait_for_termination()
'''

NGINX_GRPC = """\
    upstream grpcbackend {{
        server 127.0.0.1:{backend_port};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port} http2;
        location / {{ grpc_pass grpc://grpcbackend; }}
    }}"""

GATEWAY = """\
listeners: [{{bind: "127.0.0.1:{port}", protocols: [http1, h2c]}}]
backends: {{grpc: {{url: "http://127.0.0.1:{backend_port}/bench.Echo", http-version: "2"}}}}
apis: [{{name: echo, path: /bench.Echo, backend: grpc, protocols: [grpc]}}]
"""

MESSAGE = b"\x00" + (64).to_bytes(4, "big") + b"x" * 64


def start_nginx(workdir: str, body: str, port: int):
    """nginx with run.py's common settings; ready when its port accepts (run.py's
    readiness probe is a plain GET, which a grpc_pass location answers with an error)."""
    d = os.path.join(workdir, "nginx-grpc")
    os.makedirs(d)
    os.chmod(d, 0o755)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(e2e.NGINX_COMMON.format(d=d, body=body))
    p = e2e.start([e2e.nginx_bin(), "-e", os.path.join(d, "error.log"), "-p", d, "-c", conf,
                   "-g", "daemon off;"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return p
        except OSError:
            time.sleep(0.05)
    e2e.stop(p)
    raise RuntimeError(f"nginx did not listen on {port}")


def wait_listening(port: int, timeout: float) -> None:
    """Until `port` accepts (a fixed sleep measured a gateway still importing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port} after {timeout:.0f} s")


def check_call(port: int, body_file: str) -> str:
    """One call through the proxy with curl; the grpc-status it answered."""
    out = subprocess.run(
        ["curl", "-sS", "-D", "-", "-o", "/dev/null", "--http2-prior-knowledge",
         "-H", "content-type: application/grpc", "-H", "te: trailers",
         "--data-binary", f"@{body_file}", f"http://127.0.0.1:{port}/bench.Echo/Unary"],
        capture_output=True, timeout=10)
    for line in out.stdout.decode(errors="replace").splitlines():
        if line.lower().startswith("grpc-status:"):
            return line.split(":", 1)[1].strip()
    return f"none ({out.stderr.decode(errors='replace').strip()})"


def measure(name: str, port: int, root_pid: int, body_file: str, args) -> dict:
    url = f"http://127.0.0.1:{port}/bench.Echo/Unary"
    base = ["h2load", "-c", str(args.connections), "-m", str(args.streams), "-d", body_file,
            "-H", "content-type: application/grpc", "-H", "te: trailers"]
    subprocess.run(base + ["-D", "2", url], capture_output=True, timeout=60)  # warm-up
    before = e2e.sample_cpu(root_pid)
    out = subprocess.run(base + ["-D", f"{args.duration:g}", url], capture_output=True,
                         text=True, timeout=args.duration + 60).stdout
    after = e2e.sample_cpu(root_pid)
    r = e2e.parse_h2load(out)
    cpu = e2e.cpu_delta_s(before, after)
    r.update(name=name, cpu_s=cpu, per_cpu_s=r["requests"] / cpu if cpu else None,
             status=check_call(port, body_file))
    return r


def cost(conf: str, port: int, env: dict, body_file: str, workdir: str, args) -> int:
    """Instructions per call of the gateway under callgrind (see the module docstring)."""
    from cost import _totals   # (the same callgrind file reading as cost.py's)
    out = os.path.join(workdir, "callgrind.out")
    gw = e2e.start(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                    f"--callgrind-out-file={out}", sys.executable, "-m", "apigw_core",
                    "serve", conf], env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, 300)
        url = f"http://127.0.0.1:{port}/bench.Echo/Unary"
        base = ["h2load", "-c", str(args.connections), "-m", str(args.streams), "-d",
                body_file, "-H", "content-type: application/grpc", "-H", "te: trailers"]
        subprocess.run(base + ["-n", "300", url], capture_output=True, timeout=600)
        subprocess.run(["callgrind_control", "-i", "on", str(gw.pid)], check=True,
                       capture_output=True)
        r = e2e.parse_h2load(subprocess.run(base + ["-n", str(args.cost), url],
                                            capture_output=True, text=True,
                                            timeout=args.cost + 600).stdout)
        subprocess.run(["callgrind_control", "-i", "off", str(gw.pid)], check=True,
                       capture_output=True)
        status = check_call(port, body_file)
    finally:
        e2e.stop(gw, grace=300)
    deadline = time.monotonic() + 120
    while True:
        try:
            ir = _totals(out)
            break
        except (RuntimeError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    print(f"apigw 1 worker: {ir / r['requests']:,.0f} instructions per call "
          f"({r['requests']} calls, {r['errors']} errors, grpc-status {status})")
    return 0 if r["errors"] == 0 and status == "0" else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--connections", type=int, default=10)
    ap.add_argument("--streams", type=int, default=10)
    ap.add_argument("--cost", type=int, metavar="N", default=0,
                    help="count the gateway's instructions per call over N calls instead")
    args = ap.parse_args(argv)
    e2e.ensure_tools(("nginx", "h2load"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="apigw-grpc-bench-") as d:
        os.chmod(d, 0o755)
        body_file = os.path.join(d, "call.bin")
        with open(body_file, "wb") as f:
            f.write(MESSAGE)
        bport, nport, gport = e2e.free_port(), e2e.free_port(), e2e.free_port()
        script = os.path.join(d, "backend.py")
        with open(script, "w") as f:
            f.write(BACKEND)
        procs = []
        try:
            procs.append(e2e.start([sys.executable, script, str(bport)]))
            time.sleep(1.0)
            env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(
                os.path.dirname(os.path.abspath(__file__)))))
            conf = os.path.join(d, "gw.yaml")
            with open(conf, "w") as f:
                f.write(GATEWAY.format(port=gport, backend_port=bport))
            if args.cost:
                return cost(conf, gport, env, body_file, d, args)
            ngx = start_nginx(d, NGINX_GRPC.format(backend_port=bport, port=nport), nport)
            procs.append(ngx)
            rows.append(measure("nginx grpc_pass", nport, ngx.pid, body_file, args))
            gw = e2e.start([sys.executable, "-m", "apigw_core", "serve", conf], env=env)
            procs.append(gw)
            wait_listening(gport, 120)  # a loaded machine may take tens of seconds
            rows.append(measure("apigw 1 worker", gport, gw.pid, body_file, args))
        finally:
            for p in procs:
                e2e.stop(p)
    print(f"h2load -c {args.connections} -m {args.streams}, {args.duration:g} s, "
          f"unary calls of {len(MESSAGE)} bytes\n")
    print("| proxy | calls/s | errors | grpc-status | proxy CPU-s | calls per CPU-s |")
    print("|---|---:|---:|---|---:|---:|")
    for r in rows:
        print(f"| {r['name']} | {r['rps']:,.0f} | {r['errors']} | {r['status']} | "
              f"{r['cpu_s']:.2f} | {r['per_cpu_s']:,.0f} |")
    if len(rows) == 2 and rows[0]["per_cpu_s"]:
        print(f"\napigw / nginx calls per CPU-s: {rows[1]['per_cpu_s'] / rows[0]['per_cpu_s']:.2f}")
    return 0 if all(r["errors"] == 0 and r["status"] == "0" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
