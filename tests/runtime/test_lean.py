"""runtime/lean.py, the executor's usual case in one coroutine, answers every request as
the general executor (`_Call.run`) does, and hands over to a `_Call` where it should.

Each scenario sends one request through a policy API (inbound and outbound set-header,
on-error set-header) to an in-process backend over socket pairs that answers as the
scenario says: the whole answer at once, a 103 before the head, a body in two writes, a
keep-alive connection dropped as it is reused (the GET goes again on a fresh one), no
answer (504), a refused connection (502, as the pool's connect reports it), an outbound policy that reads the body, an
inbound return-response, a body a policy set.  Every scenario runs twice, with lean.py
and with `run_lean` replaced by `_Call.run`; the client gets the same bytes (Date and
the gateway's own ids aside), and lean.py built a `_Call` only in the scenarios that
need one.
"""

from __future__ import annotations

import re
from typing import Optional

import pytest
import trio

from inproc import Pairs, client_pair, read_until, run
from apigw_core.gateway.config import parse_config
from apigw_core.gateway.forwarding import RequestIds
from apigw_core.runtime import admission, lean
from apigw_core.runtime.executor import _Call
from apigw_core.runtime.gateway import Gateway
from apigw_core.runtime.h1server import H1Driver
from apigw_core.runtime.upstream import UpstreamConnectError

OK = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nhello"


def _config(policies: Optional[dict] = None) -> dict:
    base = {"inbound": [{"set-header": {"name": "x-in", "value": ["1"]}}],
            "outbound": [{"set-header": {"name": "x-out", "value": ["1"]}}],
            "on-error": [{"set-header": {"name": "x-err", "value": ["{last-error.reason}"]}}]}
    for section, steps in (policies or {}).items():
        base[section] = base.get(section, []) + steps
    return {"listeners": [{"bind": "127.0.0.1:0"}],
            "backends": {"b": {"url": "http://backend.test", "timeout": "2s"}},
            "apis": [{"name": "api", "path": "/api", "backend": "b", "policies": base}]}


async def _head_of(stream: trio.SocketStream, buf: bytearray) -> Optional[bytes]:
    if not await read_until(stream, buf, b"\r\n\r\n"):
        return None
    end = buf.index(b"\r\n\r\n") + 4
    head = bytes(buf[:end])
    m = re.search(rb"\r\ncontent-length: *(\d+)", head.lower())
    end += int(m.group(1)) if m else 0
    while len(buf) < end:
        buf += await stream.receive_some(65536)
    del buf[:end]
    return head


async def _backend(stream: trio.SocketStream, conn_no: int, mode: str) -> None:
    buf = bytearray()
    nth = 0
    try:
        while await _head_of(stream, buf) is not None:
            nth += 1
            if mode == "drop-reused" and conn_no == 1 and nth == 2:
                return          # the keep-alive connection dies as it is reused
            if mode == "silent":
                await trio.sleep_forever()
            if mode == "early-hints":
                await stream.send_all(b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n")
            if mode == "split":   # the head and a first piece, then the rest
                await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello")
                await trio.sleep(0.05)
                await stream.send_all(b"world")
                continue
            await stream.send_all(OK)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def _response(client: trio.SocketStream, buf: bytearray) -> bytes:
    out = b""
    while True:   # 1xx heads first, then the final one with its body
        assert await read_until(client, buf, b"\r\n\r\n"), bytes(buf)
        end = buf.index(b"\r\n\r\n") + 4
        head = bytes(buf[:end])
        if not head.startswith(b"HTTP/1.1 1"):
            break
        out += head
        del buf[:end]
    m = re.search(rb"\r\ncontent-length: *(\d+)", head.lower())
    end += int(m.group(1)) if m else 0
    while len(buf) < end:
        buf += await client.receive_some(65536)
    out += bytes(buf[:end])
    del buf[:end]
    return out


def _serve(cfg: dict, mode: str, requests: list[bytes], refused: bool = False) -> list[bytes]:
    """The client's responses to `requests` on one keep-alive connection."""
    gw = Gateway(parse_config(cfg))
    gw.request_ids = RequestIds(b"0123456789abcdef")
    pairs = Pairs()
    if refused:
        async def connect(*_ignored):
            raise UpstreamConnectError("connect to backend.test:80: refused")
        gw.pools["b"]._connect = connect
    else:
        gw.pools["b"]._connect = pairs.connect
    out: list[bytes] = []

    async def main() -> None:
        async with trio.open_nursery() as n:
            async def serve_all() -> None:
                async for stream in pairs.accepted:
                    n.start_soon(_backend, stream, pairs.count, mode)

            n.start_soon(serve_all)
            server, client = client_pair()
            n.start_soon(H1Driver(server, gw._handler, gw.config.server).run)
            buf = bytearray()
            for raw in requests:
                await client.send_all(raw)
                out.append(await _response(client, buf))
            await client.aclose()
            n.cancel_scope.cancel()

    run(main)
    return out


_DATE = re.compile(rb"date: [^\r]*\r\n", re.I)


def _norm(responses: list[bytes]) -> list[bytes]:
    return [_DATE.sub(b"date: D\r\n", r) for r in responses]


GET = b"GET /api/x HTTP/1.1\r\nHost: gw\r\nX-Request-Id: r1\r\n\r\n"
POST = b"POST /api/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\n\r\nabc"

# (name, policies added, backend mode, requests, refused, a _Call expected, want)
SCENARIOS = [
    ("whole answer", None, "ok", [GET, POST], False, False, b"HTTP/1.1 200"),
    ("early hints", None, "early-hints", [GET], False, True, b"HTTP/1.1 103"),
    ("body in two writes", None, "split", [GET], False, True, b"helloworld"),
    # (the EOF comes as an event: a _Call reads it, then the second attempt goes lean)
    ("reused connection dropped", None, "drop-reused", [GET, GET], False, True, b"hello"),
    ("no answer", None, "silent", [GET], False, True, b"HTTP/1.1 504"),
    ("refused", None, "ok", [GET], True, True, b"HTTP/1.1 502"),
    ("outbound reads the body",
     {"outbound": [{"set-body": "<{response.body}>"}]},
     "ok", [GET], False, True, b"<hello>"),
    ("inbound return-response",
     {"inbound": [{"return-response": {"set-status": {"code": 418, "reason": "Teapot"}}}]},
     "ok", [GET], False, True, b"HTTP/1.1 418"),
    ("a body a policy set", {"inbound": [{"set-body": "new"}]}, "ok", [POST], False, True,
     b"HTTP/1.1 200"),
]


@pytest.mark.parametrize("name,policies,mode,requests,refused,needs_call,want", SCENARIOS,
                         ids=[s[0] for s in SCENARIOS])
def test_lean_answers_as_the_general_executor(monkeypatch, name, policies, mode, requests,
                                              refused, needs_call, want):
    cfg = _config(policies)
    built: list[int] = []

    class Counted(_Call):
        def __init__(self, *a, **kw) -> None:
            built.append(1)
            super().__init__(*a, **kw)

    monkeypatch.setattr(lean, "_Call", Counted)
    via_lean = _norm(_serve(cfg, mode, requests, refused))
    assert bool(built) == needs_call, built
    monkeypatch.undo()

    async def general(gw, state, stream, route, ctx, program, rid, error) -> None:
        await _Call(gw, state, stream, route, ctx, program, None, rid).run(error)

    monkeypatch.setattr(admission, "run_lean", general)
    via_call = _norm(_serve(cfg, mode, requests, refused))
    assert via_lean == via_call
    assert want in via_lean[-1], via_lean[-1]
    if mode == "ok" and not refused and policies is None:
        assert b"x-out: 1" in via_lean[-1]   # outbound ran on the lean path
    if refused or mode == "silent":
        assert b"x-err: " in via_lean[-1]    # and on-error on the handed-over one
