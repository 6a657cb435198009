"""`apigw_connections_open_by_protocol` against a real gateway: raw sockets on 127.0.0.1
held open as HTTP/1.1 keep-alive, HTTP/2 (h2c prior knowledge) and not-yet-sniffed
connections are each counted under their protocol, and the counts fall back as the
sockets close."""

from __future__ import annotations

import socket

from support import wait_until
from test_metrics_e2e import scrape

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def _open(gw) -> dict:
    s = scrape(gw)
    out = {lab_v: v for (n, lab), v in s.items()
           if n == "apigw_connections_open_by_protocol" for _, lab_v in lab}
    out["total"] = s[("apigw_connections_open", frozenset())]
    return out


def test_open_connections_by_protocol(gateway, echo):
    gw = gateway({"listeners": [{"bind": "127.0.0.1:0", "protocols": ["http1", "h2c"]}],
                  "backends": {"echo": {"url": echo.url}},
                  "apis": [{"name": "a", "path": "", "backend": "echo"}],
                  "admin": {"bind": "127.0.0.1:0"}})
    socks = []
    try:
        for _ in range(2):   # HTTP/1.1, kept alive after one answered request
            c = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
            c.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
            assert c.recv(65536).startswith(b"HTTP/1.1 200")
            socks.append(c)
        h2 = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        h2.sendall(PREFACE)
        assert h2.recv(65536)[3:4] == b"\x04"   # the gateway's SETTINGS: HTTP/2 it is
        socks.append(h2)
        socks.append(socket.create_connection(("127.0.0.1", gw.port), timeout=10))  # silent
        want = {"http1": 2, "h2": 1, "handshake": 1, "total": 4}
        got = wait_until(lambda: (o := _open(gw)) == want and o, timeout=30,
                         message=f"open connections {want}")
        assert got == want
        for c in socks:
            c.close()
        want = {"http1": 0, "h2": 0, "handshake": 0, "total": 0}
        wait_until(lambda: _open(gw) == want, timeout=30, message="all closed")
    finally:
        for c in socks:
            c.close()
