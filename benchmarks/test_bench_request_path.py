"""The gateway's whole request path in memory: run.py's gw1 and gw1pol configs (issue 9),
gw1pool (issue 12), its telemetry rows gw1notel, gw1tel and gw1otel (issue 13; gw1otel
exports to run.py's OTLP receiver in a process of its own), gw1jwtrs / gw1jwtes (one
validate-jwt) and gw1tok (issue 11).

Strategy.  The real `H1Driver`, proxy handler, executor, `GatewayState`, policies and
upstream pool serve keep-alive requests inside `trio.run`, with the two sockets replaced
by in-memory transports: the client transport hands out the same wrk-like request head
each time it is read (then EOF), the backend transport answers each request with nginx's
12-byte `hello world` response.  What is left out is only the kernel's share (the socket
calls, the same in both configs: this file counts them, as `send` and backend `receive`
calls per request) and the epoll waits.  So the ratio of the two configs here is the
pipeline's Python cost against the whole Python cost of a proxied request, without the
machine's noise; `benchmarks/e2e/run.py --only gw1,gw1pol` is the end-to-end check.
Telemetry runs as in the gateway: the handler is wrapped by runtime/telemetry.py, and its
trio task (metric flushes, the access-log writer thread, which writes to a temp file) runs
beside the driver, so `time.process_time` (all threads) counts the log's encoding and
writing too.  gw1bare is gw1 without the wrapper (no traceparent, no metrics): the cost of
the always-on part.

    pytest benchmarks/test_bench_request_path.py --benchmark-only
    python benchmarks/test_bench_request_path.py              # table: µs/request, sends
    python benchmarks/test_bench_request_path.py --count N    # serve N requests of each
        # (under `valgrind --tool=callgrind`, two counts' difference / N = instructions)
    python benchmarks/test_bench_request_path.py --count N --scale-timers 50
        # the same with the telemetry timers (metric flush, access-log writes, the OTel
        # export delay) 50x slower and the heap frozen first: valgrind runs ~50x slower
        # than native, so at their own periods the timers would fire ~50x as often per
        # request as they do at full speed (OTel exports go by count at native rates);
        # and a full collection of the start-up heap falling between the two counts
        # would be counted as requests' work
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import time
from types import SimpleNamespace
from typing import Optional

import pytest
import trio

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_HERE, "e2e"))
sys.path.insert(0, os.path.dirname(_HERE))   # this checkout's apigw_core, not an installed one
import run as e2e  # noqa: E402  (the same configs and headers as the end-to-end rows)

from apigw_core.gateway.config import parse_config  # noqa: E402
from apigw_core.gateway.config._loader import load_yaml  # noqa: E402
from apigw_core.gateway.forwarding import RequestIds  # noqa: E402
from apigw_core.runtime.h1server import H1Driver  # noqa: E402
from apigw_core.runtime.proxy import proxy_handler  # noqa: E402
from apigw_core.runtime.state import GatewayState  # noqa: E402
from apigw_core.runtime.telemetry import Telemetry  # noqa: E402
from apigw_core.runtime.transport import Transport  # noqa: E402
from apigw_core.runtime.upstream import UpstreamPool  # noqa: E402

PORT, BACKEND_PORT = 8080, 8081
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 01 Dec 2026 00:00:00 GMT\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 12\r\nConnection: keep-alive\r\n"
            b"\r\nhello world\n")


def request_head(headers: Optional[dict]) -> bytes:
    """What wrk sends: the request line, Host, then each -H header."""
    lines = [b"GET / HTTP/1.1", b"Host: 127.0.0.1:%d" % PORT]
    lines += [f"{k}: {v}".encode() for k, v in (headers or {}).items()]
    return b"\r\n".join(lines) + b"\r\n\r\n"


class MemoryTransport(Transport):
    """A socket stand-in: `replies(sent)` gives what the peer says after each send."""

    __slots__ = ("raw", "peer", "local", "closed", "inbox", "sends", "sent_bytes", "reads",
                 "script", "tls")

    def __init__(self, script) -> None:
        self.peer, self.local, self.closed = ("127.0.0.1", 40000), ("127.0.0.1", PORT), False
        self.tls = None   # a plain-TCP connection (the drivers read it since issue 11)
        self.inbox: list[bytes] = []
        self.sends = self.sent_bytes = self.reads = 0
        self.script = script

    async def receive(self, timeout: float) -> bytes:
        self.reads += 1
        if not self.inbox:
            more = self.script(None)
            if more is None:
                return b""
            self.inbox.append(more)
        return self.inbox.pop(0)

    async def send(self, data: bytes, timeout: float) -> None:
        self.sends += 1
        self.sent_bytes += len(data)
        more = self.script(data)
        if more is not None:
            self.inbox.append(more)

    async def close(self) -> None:
        self.closed = True

    def close_now(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def alive(self) -> bool:
        return not self.closed


class MemoryPool(UpstreamPool):
    """The backend's pool, its connections in memory (each answers RESPONSE per request)."""

    def __init__(self, backend, watchdog=None) -> None:
        super().__init__(backend, watchdog)
        self.transports: list[MemoryTransport] = []

    async def _connect(self) -> Transport:
        t = MemoryTransport(lambda sent: RESPONSE if sent else None)
        self.transports.append(t)
        return t


_LOGDIR = tempfile.mkdtemp(prefix="apigw-bench-log-")
_OTLP: list = []
_RECEIVER = ("import sys, time; sys.path.insert(0, sys.argv[1]); import run; "
             "r = run.OtlpReceiver(); print(r.url, flush=True); time.sleep(1e9)")


def otlp_url() -> str:
    """gw1otel's OTLP receiver (run.py's), in a process of its own: not counted here."""
    if not _OTLP:
        import atexit
        import subprocess
        p = subprocess.Popen([sys.executable, "-c", _RECEIVER, os.path.join(_HERE, "e2e")],
                             stdout=subprocess.PIPE, text=True)
        atexit.register(p.kill)
        _OTLP.append(p.stdout.readline().strip())
    return _OTLP[0]


def make_gateway(config_text, wrap: bool = True) -> SimpleNamespace:
    fill = dict(port=PORT, backend_port=BACKEND_PORT, protocols="http1")
    text = config_text(**fill) if callable(config_text) else \
        config_text.format(dir=_LOGDIR, otlp=otlp_url() if "{otlp}" in config_text else "",
                           **fill)
    config = parse_config(load_yaml(text))
    state = GatewayState(config, None, make_pool=lambda _name, b: MemoryPool(b))
    gw = SimpleNamespace(state=state, config=config, request_ids=RequestIds())
    gw.telemetry = Telemetry(config) if wrap else None
    gw.handler = proxy_handler(gw)
    if gw.telemetry is not None:
        gw.telemetry.open()
        gw.handler = gw.telemetry.wrap(gw.handler)
    return gw


# name: (config, request headers, wrapped by telemetry)
CONFIGS = {"gw1": (e2e.GATEWAY_CONFIG, None, True),
           "gw1pol": (e2e.POLICY_CONFIG, e2e.POLICY_HEADERS, True),
           "gw1bare": (e2e.GATEWAY_CONFIG, None, False),
           "gw1notel": (e2e.GATEWAY_CONFIG + e2e.TELEMETRY_CONFIG["notel"], None, True),
           "gw1tel": (e2e.GATEWAY_CONFIG + e2e.TELEMETRY_CONFIG["tel"], None, True),
           # + OTel ratio 1.0 to a receiver process over loopback (the export is counted)
           "gw1otel": (e2e.GATEWAY_CONFIG + e2e.TELEMETRY_CONFIG["otel"], None, True),
           # issue 12: a 3-member weighted pool with breakers (health checks are tasks of
           # their own, not started here: one request per member every 5 s)
           "gw1pool": (e2e.POOL_CONFIG, None, True),
           # issue 13 metrics: gw1rl's rate-limit-by-key, its decision counted
           "gw1rl": (e2e.RATE_LIMIT_CONFIG, None, True)}
# issue 11: one validate-jwt, the same token each time (cached key and verified token);
# gw1tok is gw1 sent gw1jwtrs's token.  Keys and tokens are made when a row runs.
_JWT_ROWS = {"gw1jwtrs": "RS256", "gw1jwtes": "ES256"}
for _name, _alg in _JWT_ROWS.items():
    CONFIGS[_name] = ((lambda alg: lambda **kw: e2e.jwt_config(alg, **kw))(_alg), None, True)
CONFIGS["gw1tok"] = (e2e.GATEWAY_CONFIG, None, True)


def headers_of(name: str) -> Optional[dict]:
    alg = _JWT_ROWS.get(name) or ("RS256" if name == "gw1tok" else None)
    return e2e.jwt_headers(alg) if alg else CONFIGS[name][1]


def _gateway(name: str) -> SimpleNamespace:
    text, _, wrap = CONFIGS[name]
    return make_gateway(text, wrap)


async def _drive(gw: SimpleNamespace, t: "MemoryTransport") -> None:
    """The driver, with the telemetry task beside it (as Gateway.run starts it)."""
    async with trio.open_nursery() as nursery:
        if gw.telemetry is not None:
            nursery.start_soon(gw.telemetry.run)
        await H1Driver(t, gw.handler, gw.config.server).run()
        nursery.cancel_scope.cancel()
    if gw.telemetry is not None and gw.telemetry.access is not None:
        gw.telemetry.access.open()   # run() closed it: the next serve() writes again


def serve(gw: SimpleNamespace, head: bytes, n: int) -> MemoryTransport:
    """n keep-alive requests on one client connection, through the real driver."""
    left = [n]

    def client(sent: Optional[bytes]) -> Optional[bytes]:
        if sent is not None:
            return None
        if left[0] == 0:
            return None
        left[0] -= 1
        return head

    t = MemoryTransport(client)
    trio.run(_drive, gw, t)
    return t


def check(name: str, n: int = 3) -> MemoryTransport:
    """Serve n requests and check they all got the backend's 200 (not a policy's 401)."""
    gw = _gateway(name)
    got: list[bytes] = []
    t = MemoryTransport(None)

    async def main() -> None:
        left = [n]

        def client(sent):
            if sent is not None:
                got.append(sent)
                return None
            if left[0] == 0:
                return None
            left[0] -= 1
            return request_head(headers_of(name))
        t.script = client
        await _drive(gw, t)

    trio.run(main)
    assert len(got) == n, got
    for r in got:
        assert r.startswith(b"HTTP/1.1 200 "), r[:200]
        assert r.endswith(b"hello world\n"), r[-200:]
        assert (b"x-served-by: apigw" in r.lower()) == (name == "gw1pol"), r
    return t


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_request_path(benchmark, name):
    check(name)
    gw = _gateway(name)
    head = request_head(headers_of(name))
    benchmark.group = "request path, 100 keep-alive requests"
    benchmark(serve, gw, head, 100)


def measure(name: str, n: int = 2000, repeat: int = 7) -> tuple[float, float]:
    """(best CPU µs per request, client sends per request)."""
    gw = _gateway(name)
    head = request_head(headers_of(name))
    serve(gw, head, 200)   # warm: the pool's connection, caches
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        t = serve(gw, head, n)
        best = min(best, time.process_time() - t0)   # CPU: the neighbours do not count
    return best / n * 1e6, t.sends / n


def main() -> None:
    if "--count" in sys.argv:
        n = int(sys.argv[sys.argv.index("--count") + 1])
        if "--scale-timers" in sys.argv:
            from apigw_core.runtime import accesslog, otel, telemetry
            f = float(sys.argv[sys.argv.index("--scale-timers") + 1])
            accesslog._INTERVAL *= f
            telemetry._FLUSH *= f
            otel._DELAY *= f     # (exports then go by count, as at a native rate)
        only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else "gw1,gw1pol"
        for name in only.split(","):
            gw = _gateway(name)
            if "--scale-timers" in sys.argv:
                gc.collect()
                gc.freeze()
            serve(gw, request_head(headers_of(name)), n)
        return
    names = (sys.argv[sys.argv.index("--only") + 1].split(",") if "--only" in sys.argv
             else list(CONFIGS))
    for name in names:
        check(name)
    rows = {name: measure(name) for name in names}
    print("| config | CPU µs/request | client sends/request |")
    print("|---|---:|---:|")
    for name, (us, sends) in rows.items():
        print(f"| {name} | {us:.1f} | {sends:.2f} |")
    for a, b in (("gw1", "gw1pol"), ("gw1", "gw1pool"), ("gw1notel", "gw1tel"),
                 ("gw1notel", "gw1otel"), ("gw1bare", "gw1notel"), ("gw1notel", "gw1")):
        if a in rows and b in rows:
            print(f"{b} / {a} (as req per CPU-s): {rows[a][0] / rows[b][0]:.3f}")


if __name__ == "__main__":
    main()
