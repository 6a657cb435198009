"""The policy pipeline's backend request heads made in C (runtime/executor.py `_forward`
and runtime/lean.py, its usual case:
gateway/forwarding.py `forward_request_head`, sent as a ForwardedHead) are byte for byte
the general path's (`forward_request_headers`, `without_key`, `Request`, then
`ClientConnection`'s own writer).

- in process: a `Gateway` whose pool connects over socket pairs to a backend that records
  every request's raw bytes; the same requests with the extension's writer and with
  `forwarding._c_forward = None` (the general path) give the same bytes, and the C head
  was taken exactly where it should be (a spy on the executor's `forward_request_head`);
  a GET on a keep-alive connection the backend drops is retried with the same head;
- end to end: two gateway processes on 127.0.0.1, one with the extension and one with
  `APIGW_CORE_PUREPYTHON=1`, in front of one recording backend socket: the backend
  receives the same bytes from both.

The requests: policies (set-header of every action, set-query-parameter), a subscription
key with `forward: false` in the header and in the query, a key whose header is one the
forwarding rules treat themselves (X-Forwarded-For: the general path), a key forwarded as
it is, a Content-Length body, a chunked body with trailers, a body a policy set,
X-Forwarded-For / Forwarded / Via chains, Connection naming a field, HTTP/1.0, upper-case
names, a request without an X-Request-Id (the gateway's own id), the direct relay.
"""

from __future__ import annotations

import re

import pytest
import trio

from backends import Backend, ResponseReader, connect
from inproc import Pairs, client_pair, read_until, run
from procs import start_gateway
from apigw_core import native
from apigw_core.gateway import forwarding
from apigw_core.gateway.config import parse_config
from apigw_core.gateway.forwarding import RequestIds
from apigw_core.runtime import executor, lean
from apigw_core.runtime.gateway import Gateway
from apigw_core.runtime.h1server import H1Driver

needs_c = pytest.mark.skipif(not native.enabled, reason="C extension not built")
KEY, XKEY, KKEY = "k-1", "k-2", "k-3"


def _sh(name: str, *values: str, action: str = "override") -> dict:
    body: dict = {"name": name, "exists-action": action}
    if values:
        body["value"] = list(values)
    return {"set-header": body}


def _config(backend_url: str) -> dict:
    def api(name: str, inbound=(), **extra) -> dict:
        return {"name": name, "path": f"/{name}", "backend": "b",
                "policies": {"inbound": list(inbound)} if inbound else {}, **extra}

    key_off = {"header": "X-Key", "query": "key", "forward": False}
    return {
        "listeners": [{"bind": "127.0.0.1:0"}],
        "backends": {"b": {"url": backend_url, "timeout": "5s"}},
        # one key for each API (an all-apis subscription would give /plain a pipeline)
        "subscriptions": [{"id": f"s-{a}", "scope": "api", "api": a, "primary-key": key}
                          for a, key in (("pol", KEY), ("xff", XKEY), ("keep", KKEY))],
        "apis": [
            api("pol", [_sh("x-forwarded-by", "apigw"), _sh("x-over", "new"),
                        _sh("x-app", "two", action="append"), _sh("x-del", action="delete"),
                        _sh("x-method", "{request.method} {request.path}"),
                        {"set-query-parameter": {"name": "q", "value": ["2"]}}],
                subscription_required=True, subscription_key=key_off),
            # the key's field is one forward_request_headers treats itself: general path
            api("xff", [_sh("x-a", "1")], subscription_required=True,
                subscription_key={"header": "X-Forwarded-For", "query": "k",
                                  "forward": False}),
            api("keep", [_sh("x-a", "1")], subscription_required=True),   # key forwarded
            api("body", [{"set-body": "hello {request.headers.x-who}"}]),  # general path
            {"name": "plain", "path": "/plain", "backend": "b"},            # direct relay
        ],
    }


def _fix(cfg: dict) -> dict:
    """The config's keys as the config file spells them (subscription_required: ...)."""
    for a in cfg["apis"]:
        for k in list(a):
            if "_" in k:
                a[k.replace("_", "-")] = a.pop(k)
    return cfg


def _req(method: str, target: str, *fields: str, body: bytes = b"",
         version: str = "1.1") -> bytes:
    head = f"{method} {target} HTTP/{version}\r\nHost: gw.example\r\n"
    head += "".join(f"{f}\r\n" for f in fields)
    return head.encode("latin-1") + b"\r\n" + body


RID = "X-Request-Id: rid-{n}"
K = f"X-Key: {KEY}"
CHUNKED = b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n"
# (name, raw request, whether the pipeline's head is C's: None for the direct relay)
REQUESTS = [
    ("policies and a header key", _req("GET", "/pol/a/b?x=1&q=1", K, RID, "X-Over: old",
                                       "X-App: one", "X-Del: gone", "Accept: */*"), True),
    ("query key", _req("GET", f"/pol/q?a=1&key={KEY}&b=2", RID), True),
    ("query key alone", _req("GET", f"/pol/q?key={KEY}", RID), True),
    ("xff chains", _req("GET", "/pol/x", K, RID, "X-Forwarded-For: 1.1.1.1",
                        "x-forwarded-for: 2.2.2.2, 3.3.3.3", "Forwarded: for=1.1.1.1",
                        "Via: 1.0 edge", "X-Forwarded-Proto: ftp",
                        "X-Forwarded-Host: evil"), True),
    ("connection names a field", _req("GET", "/pol/c", K, RID, "Connection: keep-alive, X-Hop",
                                      "X-Hop: 1", "Keep-Alive: 5", "TE: trailers",
                                      "Proxy-Authorization: x"), True),
    ("content-length body", _req("POST", "/pol/p", K, RID, "Content-Type: text/plain",
                                 "Content-Length: 11", body=b"hello world"), True),
    ("chunked body with trailers", _req("PUT", "/pol/p", K, RID,
                                        "Transfer-Encoding: chunked", body=CHUNKED), True),
    ("http/1.0", _req("GET", "/pol/v", K, RID, "Connection: keep-alive", version="1.0"),
     True),
    ("upper-case and odd names", _req("DELETE", "/pol/u", K, RID, "X-UPPER: V",
                                      "x-empty:", "x-sp:  a  b "), True),
    ("no request id", _req("GET", "/pol/n", K), True),
    ("key in x-forwarded-for", _req("GET", "/xff/z", f"X-Forwarded-For: {XKEY}", RID,
                                    "Via: 1.1 a"), False),
    ("key in x-forwarded-for, query", _req("GET", f"/xff/z?k={XKEY}&j=1", RID, "Via: 1.1 a"),
     False),
    ("key forwarded", _req("POST", "/keep/k", f"Ocp-Apim-Subscription-Key: {KKEY}", RID,
                           "Content-Length: 2", body=b"ab"), True),
    ("policy-set body", _req("POST", "/body/s", RID, "X-Who: me", "Content-Length: 3",
                             body=b"old"), False),
    ("direct relay", _req("GET", "/plain/d?e=f", RID, "X-Forwarded-For: 4.4.4.4"), None),
]


_GENERATED = re.compile(rb"x-request-id: [0-9a-f]{32}\r\n")
_TRACE = re.compile(rb"traceparent: 00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]\r\n")


def _same(c: bytes, py: bytes, raw: bytes) -> tuple[bytes, bytes]:
    """Both, with what is random per request made equal: the traceparent (a new trace id
    each time) and, without the client's X-Request-Id, the gateway's own id (its random
    per-process prefix; the in-process runs use one RequestIds prefix, so equal anyway)."""
    out = []
    for x in (c, py):
        x, n = _TRACE.subn(b"traceparent: T\r\n", x)
        assert n == 1, x
        if b"x-request-id" not in raw.lower():
            x, n = _GENERATED.subn(b"x-request-id: ID\r\n", x)
            assert n == 1, x
        out.append(x)
    return out[0], out[1]


def _status(responses: list) -> list[bytes]:
    return [r.split(b"\r\n", 1)[0] for r in responses]   # (their Date may differ)


# -- the recording backend (in process: one trio task per socket-pair connection) -----------

async def _read_request(stream: trio.SocketStream, buf: bytearray) -> bytes | None:
    """One whole request's raw bytes from buf/stream (Content-Length or chunked)."""
    if not await read_until(stream, buf, b"\r\n\r\n"):
        return None
    end = buf.index(b"\r\n\r\n") + 4
    head = bytes(buf[:end]).lower()
    m = re.search(rb"\r\ncontent-length: *(\d+)", head)
    if m:
        end += int(m.group(1))
        while len(buf) < end:
            data = await stream.receive_some(65536)
            if not data:
                return None
            buf += data
    elif b"\r\ntransfer-encoding: chunked" in head:
        pos = end
        while True:   # chunk by chunk, then the trailer section up to its empty line
            while b"\r\n" not in buf[pos:]:
                buf += await stream.receive_some(65536)
            j = buf.index(b"\r\n", pos)
            size = int(bytes(buf[pos:j]), 16)
            if size == 0:
                while b"\r\n\r\n" not in buf[j:]:
                    buf += await stream.receive_some(65536)
                end = buf.index(b"\r\n\r\n", j) + 4
                break
            pos = j + 2 + size + 2
            while len(buf) < pos:
                buf += await stream.receive_some(65536)
    raw = bytes(buf[:end])
    del buf[:end]
    return raw


async def _record(stream: trio.SocketStream, seen: list, drop_second: bool) -> None:
    buf = bytearray()
    nth = 0
    try:
        while True:
            raw = await _read_request(stream, buf)
            if raw is None:
                return
            seen.append(raw)
            nth += 1
            if drop_second and nth == 2:   # a keep-alive connection dying as it is reused
                return
            await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def _read_response(client: trio.SocketStream, buf: bytearray) -> bytes:
    """One response (Content-Length framed: the backend's, or the gateway's own)."""
    assert await read_until(client, buf, b"\r\n\r\n"), bytes(buf)
    end = buf.index(b"\r\n\r\n") + 4
    m = re.search(rb"\r\ncontent-length: *(\d+)", bytes(buf[:end]).lower())
    end += int(m.group(1)) if m else 0
    while len(buf) < end:
        buf += await client.receive_some(65536)
    out = bytes(buf[:end])
    del buf[:end]
    return out


def _inproc(requests: list, drop_second: bool = False) -> tuple[list, list, list]:
    """(raw bytes the backend received per request, the responses, what each executor
    forward_request_head call answered: True for a head, False for None)."""
    cfg = parse_config(_fix(_config("http://127.0.0.1:9")))
    seen: list[bytes] = []
    responses: list[bytes] = []
    fast: list[bool] = []

    async def main() -> None:
        gw = Gateway(cfg)
        gw.request_ids = RequestIds(b"0123456789abcdef")   # the same ids in both runs
        pairs = Pairs()
        gw.pools["b"]._connect = pairs.connect   # only the connect step is replaced
        async with trio.open_nursery() as n:
            async def serve_all() -> None:
                async for stream in pairs.accepted:
                    n.start_soon(_record, stream, seen, drop_second)

            n.start_soon(serve_all)
            server, client = client_pair()
            n.start_soon(H1Driver(server, gw._handler, gw.config.server).run)
            buf = bytearray()
            for _, raw, _ in requests:   # one keep-alive client connection
                await client.send_all(raw.replace(b"{n}", b"%d" % len(responses)))
                responses.append(await _read_response(client, buf))
            await client.aclose()
            n.cancel_scope.cancel()

    real = executor.forward_request_head
    assert lean.forward_request_head is real

    def spy(*args):
        got = real(*args)
        fast.append(got is not None)
        return got

    # both callers: the executor's forward and its usual case in one coroutine (lean.py)
    executor.forward_request_head = lean.forward_request_head = spy
    try:
        run(main)
    finally:
        executor.forward_request_head = lean.forward_request_head = real
    return seen, responses, fast


@needs_c
def test_pipeline_heads_from_c_are_the_general_paths(monkeypatch):
    seen_c, resp_c, fast_c = _inproc(REQUESTS)
    # the C head was taken for every pipeline request that allows it, and only there
    # (the direct relay's call is proxy.py's: not counted)
    # (the xff key and the policy-set body never call it)
    assert fast_c == [True] * sum(want is True for _, _, want in REQUESTS), fast_c
    monkeypatch.setattr(forwarding, "_c_forward", None)   # every head the general way
    seen_py, resp_py, fast_py = _inproc(REQUESTS)
    assert not any(fast_py)
    assert len(seen_c) == len(seen_py) == len(REQUESTS)
    for (name, raw, _), c, py in zip(REQUESTS, seen_c, seen_py):
        c, py = _same(c, py, raw)
        assert c == py, name
    assert _status(resp_c) == _status(resp_py) == [b"HTTP/1.1 200 OK"] * len(REQUESTS)


@needs_c
def test_the_key_is_not_forwarded_and_policies_applied():
    """What the backend got, spelled out for two requests (the comparison above would
    pass if both paths were wrong the same way)."""
    seen, _, fast = _inproc([REQUESTS[0], REQUESTS[1], REQUESTS[10]])
    assert fast == [True, True]
    head = seen[0].split(b"\r\n\r\n")[0].split(b"\r\n")
    assert head[0] == b"GET /a/b?x=1&q=2 HTTP/1.1"
    assert b"x-key: " + KEY.encode() not in seen[0].lower()
    assert b"x-over: new" in head and b"x-method: GET /pol/a/b" in head
    assert b"x-del: gone" not in seen[0].lower()
    assert b"x-app: one,two" in head   # append: one field, the values joined
    assert seen[1].startswith(b"GET /q?a=1&b=2&q=2 HTTP/1.1\r\n")   # key gone, q set
    assert seen[2].startswith(b"GET /z HTTP/1.1\r\n")
    assert b"x-forwarded-for" not in seen[2].lower()   # the key's field removed whole


@needs_c
def test_a_retried_get_sends_the_same_c_head_again(monkeypatch):
    """The first request's connection dies at the second request: the GET goes again on
    a new connection (_exchange called twice with one ForwardedHead)."""
    reqs = [REQUESTS[0], REQUESTS[1]]
    seen_c, resp_c, fast_c = _inproc(reqs, drop_second=True)
    assert fast_c == [True, True]
    assert len(seen_c) == 3 and seen_c[1] == seen_c[2]
    monkeypatch.setattr(forwarding, "_c_forward", None)
    seen_py, resp_py, _ = _inproc(reqs, drop_second=True)
    assert len(seen_py) == 3
    for raw, c, py in zip((reqs[0][1], reqs[1][1], reqs[1][1]), seen_c, seen_py):
        assert _same(c, py, raw)[0] == _same(c, py, raw)[1]
    assert _status(resp_c) == _status(resp_py) == [b"HTTP/1.1 200 OK"] * 2


# -- end to end: two gateway processes, one recording backend socket ------------------------

def _through(gw, backend: Backend, requests: list) -> list[bytes]:
    got = []
    s = connect(gw.port, timeout=10)
    reader = ResponseReader(s)
    try:
        for i, (_, raw, _) in enumerate(requests):
            backend.reset()
            s.sendall(raw.replace(b"{n}", b"%d" % i))
            r = reader.read()
            assert r.status == 200, (r.status, r.body)
            got.append(backend.received)
    finally:
        s.close()
    return got




@needs_c
def test_backend_gets_the_same_bytes_from_c_and_pure_python_gateways(tmp_path, monkeypatch):
    with Backend("ok", body=b"ok") as backend:
        cfg = _fix(_config(backend.url))
        (tmp_path / "c").mkdir()
        gw_c = start_gateway(tmp_path / "c", cfg)
        try:
            with_c = _through(gw_c, backend, REQUESTS)
        finally:
            gw_c.stop()
        monkeypatch.setenv("APIGW_CORE_PUREPYTHON", "1")
        (tmp_path / "py").mkdir()
        gw_py = start_gateway(tmp_path / "py", cfg)
        try:
            pure = _through(gw_py, backend, REQUESTS)
        finally:
            gw_py.stop()
    assert len(with_c) == len(pure) == len(REQUESTS)
    for (name, raw, _), c, py in zip(REQUESTS, with_c, pure):
        c, py = _same(c, py, raw)
        assert c == py, name
        assert c.startswith(raw.split(b" ")[0] + b" "), name   # one whole request each
