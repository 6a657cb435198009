"""The gateway's whole request path in memory: run.py's gw1 and gw1pol configs (issue 9),
and its gw1jwtrs / gw1jwtes rows (one validate-jwt, issue 11).

Strategy.  The real `H1Driver`, proxy handler, executor, `GatewayState`, policies and
upstream pool serve keep-alive requests inside `trio.run`, with the two sockets replaced
by in-memory transports: the client transport hands out the same wrk-like request head
each time it is read (then EOF), the backend transport answers each request with nginx's
12-byte `hello world` response.  What is left out is only the kernel's share (the socket
calls, the same in both configs: this file counts them, as `send` and backend `receive`
calls per request) and the epoll waits.  So the ratio of the two configs here is the
pipeline's Python cost against the whole Python cost of a proxied request, without the
machine's noise; `benchmarks/e2e/run.py --only gw1,gw1pol` is the end-to-end check.

    pytest benchmarks/test_bench_request_path.py --benchmark-only
    python benchmarks/test_bench_request_path.py              # table: µs/request, sends
    python benchmarks/test_bench_request_path.py --count N    # serve N requests of each
        # (under `valgrind --tool=callgrind`, two counts' difference / N = instructions)
"""

from __future__ import annotations

import os
import sys
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
                 "script")

    def __init__(self, script) -> None:
        self.peer, self.local, self.closed = ("127.0.0.1", 40000), ("127.0.0.1", PORT), False
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


def make_gateway(config_text) -> SimpleNamespace:
    fill = dict(port=PORT, backend_port=BACKEND_PORT, protocols="http1")
    text = config_text(**fill) if callable(config_text) else config_text.format(**fill)
    config = parse_config(load_yaml(text))
    state = GatewayState(config, None, make_pool=lambda _name, b: MemoryPool(b))
    gw = SimpleNamespace(state=state, config=config, request_ids=RequestIds())
    gw.handler = proxy_handler(gw)
    return gw


CONFIGS = {"gw1": (e2e.GATEWAY_CONFIG, None), "gw1pol": (e2e.POLICY_CONFIG, e2e.POLICY_HEADERS)}
# issue 11: one validate-jwt, the same token each time (cached key and verified token);
# the key and token are made when the row runs
_JWT_ROWS = {"gw1jwtrs": "RS256", "gw1jwtes": "ES256"}
for _name, _alg in _JWT_ROWS.items():
    CONFIGS[_name] = ((lambda alg: lambda **kw: e2e.jwt_config(alg, **kw))(_alg), None)


CONFIGS["gw1tok"] = (e2e.GATEWAY_CONFIG, None)   # gw1 sent gw1jwtrs's token


def headers_of(name: str) -> Optional[dict]:
    alg = _JWT_ROWS.get(name) or ("RS256" if name == "gw1tok" else None)
    return e2e.jwt_headers(alg) if alg else CONFIGS[name][1]


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

    async def main() -> None:
        await H1Driver(t, gw.handler, gw.config.server).run()

    trio.run(main)
    return t


def check(name: str, n: int = 3) -> MemoryTransport:
    """Serve n requests and check they all got the backend's 200 (not a policy's 401)."""
    gw = make_gateway(CONFIGS[name][0])
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
        await H1Driver(t, gw.handler, gw.config.server).run()

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
    gw = make_gateway(CONFIGS[name][0])
    head = request_head(headers_of(name))
    benchmark.group = "request path, 100 keep-alive requests"
    benchmark(serve, gw, head, 100)


def measure(name: str, n: int = 2000, repeat: int = 7) -> tuple[float, float]:
    """(best CPU µs per request, client sends per request)."""
    gw = make_gateway(CONFIGS[name][0])
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
        only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else "gw1,gw1pol"
        for name in only.split(","):
            gw = make_gateway(CONFIGS[name][0])
            serve(gw, request_head(headers_of(name)), n)
        return
    for name in CONFIGS:
        check(name)
    rows = {name: measure(name) for name in CONFIGS}
    print("| config | CPU µs/request | client sends/request |")
    print("|---|---:|---:|")
    for name, (us, sends) in rows.items():
        print(f"| {name} | {us:.1f} | {sends:.2f} |")
    for name in CONFIGS:
        if name != "gw1":
            print(f"{name} / gw1 (as req per CPU-s): {rows['gw1'][0] / rows[name][0]:.3f}")


if __name__ == "__main__":
    main()
