"""The backend side of the HTTP/1.1 hop: a keep-alive ClientConnection sending a request and
reading nginx's response, per exchange (issue 14: response heads parsed in C).

Two responses: nginx's 12-byte `hello world` (the e2e backend, 6 fields) and a 14-field
API response.  The C parser and its pure-Python twin are compared under pytest-benchmark;
`--count N` runs N exchanges for callgrind (two counts' difference / their difference in N
is the instructions per exchange; run it from another checkout's root to get its figure).

    pytest benchmarks/test_bench_h1client.py --benchmark-only
    valgrind --tool=callgrind python benchmarks/test_bench_h1client.py --count 20000
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.getcwd())  # the checkout we are run from, not an installed one

from apigw_core import native  # noqa: E402
from apigw_core.protocol.events import Request, _new_eom  # noqa: E402
from apigw_core.protocol.http1 import _client  # noqa: E402

NGINX = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 02 Dec 2026 06:00:00 GMT\r\n"
         b"Content-Type: text/plain\r\nContent-Length: 12\r\nConnection: keep-alive\r\n"
         b"Keep-Alive: timeout=60\r\n\r\nhello world\n")
API = (b"HTTP/1.1 200 OK\r\nServer: envoy\r\nDate: Wed, 02 Dec 2026 06:00:00 GMT\r\n"
       b"Content-Type: application/json; charset=utf-8\r\nContent-Length: 12\r\n"
       b"Cache-Control: no-store\r\nVary: Accept-Encoding, Origin\r\nX-Request-Id: "
       b"4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e\r\nStrict-Transport-Security: max-age=31536000\r\n"
       b"X-Content-Type-Options: nosniff\r\nETag: \"abc123\"\r\nx-envoy-upstream-service-time:"
       b" 3\r\nAccess-Control-Allow-Origin: *\r\nX-Frame-Options: DENY\r\nVia: 1.1 edge\r\n"
       b"\r\n{\"ok\":true}\n")
REQ = Request(1, b"GET", b"/", [(b"host", b"backend"), (b"user-agent", b"wrk")])
EOM = _new_eom(1)


def exchanges(conn: _client.ClientConnection, response: bytes, n: int) -> None:
    for _ in range(n):
        conn.send(REQ)
        conn.send(EOM)
        conn.data_to_send()
        conn.receive_data(response)
        assert conn.is_reusable


def _conn(parser):
    conn = _client.ClientConnection()
    if parser is not None:
        conn._parser = parser  # type: ignore[attr-defined]
    return conn


if __name__ == "__main__":
    count = int(sys.argv[sys.argv.index("--count") + 1]) if "--count" in sys.argv else 10000
    exchanges(_conn(None), NGINX, count)
else:
    import pytest

    @pytest.mark.parametrize("name, response", [("nginx", NGINX), ("api14", API)])
    @pytest.mark.parametrize("impl", ["c", "twin"])
    def test_exchange(benchmark, impl, name, response):
        if impl == "c" and native.CResponseParser is None:
            pytest.skip("C extension not built")
        parser = native.CResponseParser() if impl == "c" else native.PyResponseParser()
        conn = _conn(parser)
        benchmark.group = f"h1client-{name}"
        benchmark(exchanges, conn, response, 100)
