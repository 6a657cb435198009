"""Policies on gRPC and WebSocket APIs, and big bodies through policies that only touch
headers (issue 9): a grpcio client refused by check-header gets UNAUTHENTICATED (401 -> 16)
and by ip-filter PERMISSION_DENIED (403 -> 7), inbound policies edit its metadata; a
websockets client refused by check-header gets HTTP 401 and, once accepted, its frames
are relayed; 5 MiB up and down stream through such policies (the backend sees the upload
before the client has finished it, the client gets the download before the backend has
finished it) with the gateway's peak RSS flat."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc
import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from pipeline_kit import MiB, block, gateway, scripted, sha_of_blocks, wait_for  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "protocol"))
from grpc_test_pb import pb2, pb2_grpc  # noqa: E402

ECHO_INITIAL = "x-grpc-test-echo-initial"


class Service(pb2_grpc.TestServiceServicer):
    """EmptyCall echoes the x-grpc-test-echo-initial metadata back as initial metadata."""

    def EmptyCall(self, request, context):
        md = dict(context.invocation_metadata())
        if ECHO_INITIAL in md:
            context.send_initial_metadata(((ECHO_INITIAL, md[ECHO_INITIAL]),))
        return pb2.Empty()

    def UnaryCall(self, request, context):
        return pb2.SimpleResponse(payload=pb2.Payload(body=b"\0" * request.response_size),
                                  request_size=len(request.payload.body))


class WSEcho:
    """A websockets echo server in its own thread; `paths` it was asked for."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.headers: list = []
        ready = threading.Event()
        loop = asyncio.new_event_loop()

        async def handler(conn) -> None:
            import websockets
            self.paths.append(conn.request.path)
            self.headers.append(conn.request.headers)
            try:
                async for msg in conn:
                    await conn.send(msg)
            except websockets.ConnectionClosed:
                pass

        async def main() -> None:
            import websockets
            async with websockets.serve(handler, "127.0.0.1", 0, compression=None) as srv:
                self.port = srv.sockets[0].getsockname()[1]
                ready.set()
                await asyncio.Future()

        threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True).start()
        assert ready.wait(5)


@pytest.fixture(scope="module")
def env(tmp_path_factory, scripted):  # noqa: F811
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb2_grpc.add_TestServiceServicer_to_server(Service(), server)
    gport = server.add_insecure_port("127.0.0.1:0")
    server.start()
    ws = WSEcho()
    svc = "/apigw.test.TestService"
    token = {"check-header": {"name": "x-token", "value": ["let-me-in"]}}
    header_only = {"inbound": [{"check-header": {"name": "x-token"}},
                               {"set-header": {"name": "x-via-policy", "value": ["in"]}}],
                   "outbound": [{"set-header": {"name": "x-policy-out", "value": ["out"]}}]}
    cfg = {
        "listeners": [{"bind": "127.0.0.1:0", "protocols": ["http1", "h2c"]}],
        "backends": {
            "grpc": {"url": f"http://127.0.0.1:{gport}{svc}", "http-version": "2",
                     "timeout": 10},
            "ws": {"url": f"http://127.0.0.1:{ws.port}"},
            "big": {"url": scripted.url, "timeout": 30},
        },
        "products": {"p": {"apis": ["keyed"]}},
        "subscriptions": [{"id": "s", "product": "p", "primary-key": "grpc-key"}],
        "apis": [
            {"name": "grpc", "path": svc, "backend": "grpc", "protocols": ["grpc"],
             "host": "checked.test",
             "policies": {"inbound": [token, {"set-header": {
                 "name": ECHO_INITIAL, "value": ["from-policy:{request.headers.x-token}"]}}],
                 "on-error": [
                     {"set-header": {"name": "x-reason", "value": ["{last-error.reason}"]}},
                     {"choose": {"when": [{"condition": 'request.headers.x-mode == "forbid"',
                                           "policies": [{"set-status": 403}]}]}}]}},
            {"name": "grpc-ip", "path": svc, "backend": "grpc", "protocols": ["grpc"],
             "host": "ipf.test",
             "policies": {"inbound": [{"ip-filter": {"action": "forbid",
                                                     "address": ["127.0.0.1"]}}]}},
            {"name": "keyed", "path": svc, "backend": "grpc", "protocols": ["grpc"],
             "host": "keyed.test"},
            {"name": "ws", "path": "/ws", "backend": "ws", "protocols": ["http", "websocket"],
             "policies": {"inbound": [token, {"set-header": {"name": "x-added",
                                                             "value": ["yes"]}}]}},
            {"name": "big", "path": "/big", "backend": "big", "policies": header_only},
        ],
    }
    gw = gateway(tmp_path_factory, cfg)
    gw.ws = ws
    yield gw
    gw.stop()
    server.stop(0)


def _stub(env, host: str):
    channel = grpc.insecure_channel(f"127.0.0.1:{env.port}",
                                    options=[("grpc.default_authority", host)])
    return channel, pb2_grpc.TestServiceStub(channel)


# -- gRPC -----------------------------------------------------------------------------------

def test_grpc_check_header_refusal_is_unauthenticated(env):
    channel, stub = _stub(env, "checked.test")
    with channel:
        with pytest.raises(grpc.RpcError) as info:
            stub.EmptyCall(pb2.Empty(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert info.value.details() == ("Header x-token was not found in the request. "
                                        "Access denied.")
        with pytest.raises(grpc.RpcError) as info:
            stub.EmptyCall(pb2.Empty(), timeout=5, metadata=[("x-token", "wrong")])
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "value of wrong is not allowed" in info.value.details()


def test_grpc_refusal_carries_what_on_error_did(env):
    """on-error's set-header reaches the gRPC caller as metadata, and its set-status
    decides the gRPC status (403 -> PERMISSION_DENIED), as it decides an HTTP caller's."""
    channel, stub = _stub(env, "checked.test")
    with channel:
        with pytest.raises(grpc.RpcError) as info:
            stub.EmptyCall(pb2.Empty(), timeout=5)
        md = dict(info.value.initial_metadata()) | dict(info.value.trailing_metadata())
        assert md["x-reason"] == "HeaderNotFound"
        with pytest.raises(grpc.RpcError) as info:
            stub.EmptyCall(pb2.Empty(), timeout=5, metadata=[("x-mode", "forbid")])
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert info.value.details() == ("Header x-token was not found in the request. "
                                        "Access denied.")


def test_grpc_accepted_call_carries_the_policy_metadata(env):
    channel, stub = _stub(env, "checked.test")
    with channel:
        _, call = stub.EmptyCall.with_call(pb2.Empty(), timeout=5,
                                           metadata=[("x-token", "let-me-in")])
        assert call.code() == grpc.StatusCode.OK
        assert dict(call.initial_metadata())[ECHO_INITIAL] == "from-policy:let-me-in"
        r = stub.UnaryCall(pb2.SimpleRequest(response_size=100_000,
                                             payload=pb2.Payload(body=b"\1" * 70_000)),
                           timeout=10, metadata=[("x-token", "let-me-in")])
        assert (len(r.payload.body), r.request_size) == (100_000, 70_000)


def test_grpc_ip_filter_refusal_is_permission_denied(env):
    channel, stub = _stub(env, "ipf.test")
    with channel:
        with pytest.raises(grpc.RpcError) as info:
            stub.EmptyCall(pb2.Empty(), timeout=5)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert info.value.details() == "Caller IP address is blocked. Access denied."


def test_grpc_subscription_key_in_metadata(env):
    channel, stub = _stub(env, "keyed.test")
    with channel:
        with pytest.raises(grpc.RpcError) as info:
            stub.EmptyCall(pb2.Empty(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "missing subscription key" in info.value.details()
        with pytest.raises(grpc.RpcError) as info:
            stub.EmptyCall(pb2.Empty(), timeout=5,
                           metadata=[("ocp-apim-subscription-key", "nope")])
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "invalid subscription key" in info.value.details()
        assert stub.EmptyCall(pb2.Empty(), timeout=5,
                              metadata=[("ocp-apim-subscription-key", "grpc-key")]) == \
            pb2.Empty()


# -- WebSocket --------------------------------------------------------------------------------

def test_websocket_refused_by_check_header_is_http_401(env):
    with pytest.raises(InvalidStatus) as info:
        ws_connect(f"ws://127.0.0.1:{env.port}/ws/chat")
    resp = info.value.response
    assert resp.status_code == 401
    assert b"Header x-token was not found in the request. Access denied." in resp.body
    with pytest.raises(InvalidStatus) as info:
        ws_connect(f"ws://127.0.0.1:{env.port}/ws/chat",
                   additional_headers={"x-token": "nope"})
    assert info.value.response.status_code == 401


def test_websocket_accepted_relays_frames_with_policy_headers(env):
    with ws_connect(f"ws://127.0.0.1:{env.port}/ws/chat",
                    additional_headers={"x-token": "let-me-in"}) as c:
        c.send("hello")
        assert c.recv(timeout=5) == "hello"
        c.send(b"\x00\xff" * 1000)
        assert c.recv(timeout=5) == b"\x00\xff" * 1000
    assert env.ws.paths[-1] == "/chat"
    assert env.ws.headers[-1]["x-added"] == "yes"


# -- big bodies through header-only policies --------------------------------------------------

SIZE = 5 * MiB
RSS_BOUND_KIB = 4 * 1024      # buffering 5 MiB would cost at least that much


def _hwm(p) -> int:
    return p.hwm_kib()


def _upload(env, scripted, first: int) -> bytes:  # noqa: F811
    """POST SIZE bytes; after `first` bytes, wait until the backend has read them."""
    b = block()
    with socket.create_connection(("127.0.0.1", env.port), timeout=30) as s:
        s.sendall(b"POST /big/sink HTTP/1.1\r\nHost: t\r\nx-token: t\r\n"
                  b"Content-Length: %d\r\n\r\n" % SIZE)
        sent = 0
        start = scripted.sunk
        while sent < SIZE:
            piece = b[:min(SIZE - sent, MiB)]
            s.sendall(piece)
            sent += len(piece)
            if sent == first:
                wait_for(lambda: scripted.sunk - start >= first, 10,
                         "the backend to read the start of an unfinished upload")
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk


def test_5mib_upload_streams_through_header_policies(env, scripted):  # noqa: F811
    _upload(env, scripted, MiB)                 # warm-up: code paths, buffers
    before = _hwm(env)
    data = _upload(env, scripted, 2 * MiB)
    growth = _hwm(env) - before
    print(f"\n[5 MiB upload through header policies] peak RSS growth {growth} KiB")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nx-policy-out: out" in head
    assert body.endswith(b'{"length": %d, "sha256": "%s"}' % (SIZE, sha_of_blocks(SIZE).encode()))
    assert scripted.heads[-1]["x-via-policy"] == "in"
    assert scripted.heads[-1]["content-length"] == str(SIZE)
    assert growth < RSS_BOUND_KIB


@pytest.mark.parametrize("http2", [False, True])
def test_5mib_download_streams_through_header_policies(env, scripted, http2):  # noqa: F811
    before = _hwm(env)
    scripted.gate.clear()
    import hashlib
    h = hashlib.sha256()
    n = 0
    with httpx.Client(base_url=env.url, http1=not http2, http2=http2, timeout=30) as c:
        with c.stream("GET", f"/big/bytes/{SIZE}?gate", headers={"x-token": "t"}) as r:
            assert r.status_code == 200
            assert r.headers["x-policy-out"] == "out"
            assert r.headers["content-length"] == str(SIZE) or http2
            for piece in r.iter_raw():
                h.update(piece)
                n += len(piece)
                if n >= MiB and not scripted.gate.is_set():
                    scripted.gate.set()   # the first MiB came before the backend went on
    growth = _hwm(env) - before
    print(f"\n[5 MiB download through header policies, h2={http2}] peak RSS growth "
          f"{growth} KiB")
    assert scripted.gate.is_set()
    assert n == SIZE and h.hexdigest() == sha_of_blocks(SIZE)
    assert growth < RSS_BOUND_KIB
