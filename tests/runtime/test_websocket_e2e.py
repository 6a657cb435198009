"""WebSocket through the gateway with real peers: the `websockets` library as client and as
backend (HTTP/1.1 Upgrade), and a hand-built HTTP/2 extended CONNECT client (h2 library,
RFC 8441) to the same HTTP/1.1 backend."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time

import h2.config
import h2.connection
import h2.events
import pytest

# every test here talks to the websockets backend: without the package, the module skips
pytest.importorskip("websockets", reason="optional test dependency 'websockets' missing")
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402
from websockets.sync.client import connect as ws_connect  # noqa: E402
from wsproto.frame_protocol import FrameProtocol, Opcode  # noqa: E402

from backends import Refused, ResponseReader, connect, read_until_close  # noqa: E402
from procs import start_gateway  # noqa: E402
from support import wait_until  # noqa: E402


class WSBackend:
    """A websockets echo server in its own thread; records the close codes it saw and the
    paths it was asked for.  `/refuse` answers 403 to the upgrade; `/close4001` closes with
    4001 at the first message."""

    def __init__(self) -> None:
        self.closes: list = []
        self.paths: list = []
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self._run, daemon=True).start()
        assert self.ready.wait(60)

    def _run(self) -> None:
        import websockets
        from websockets.http11 import Response
        from websockets.datastructures import Headers

        async def handler(conn) -> None:
            self.paths.append(conn.request.path)
            try:
                async for msg in conn:
                    if conn.request.path == "/close4001":
                        await conn.close(4001, "backend says bye")
                        break
                    await conn.send(msg)
            except websockets.ConnectionClosed:
                pass
            self.closes.append((conn.close_code, conn.close_reason))

        def process_request(conn, request):
            if request.path == "/refuse":
                return Response(403, "Forbidden", Headers([("Content-Length", "7")]),
                                b"no way\n")
            return None

        async def main() -> None:
            async with websockets.serve(handler, "127.0.0.1", 0, max_size=None,
                                        process_request=process_request,
                                        compression=None) as server:
                self.port = server.sockets[0].getsockname()[1]
                self.ready.set()
                await asyncio.Future()
        self.loop.run_until_complete(main())


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    b = WSBackend()
    down = Refused()
    cfg = {
        "listeners": [{"bind": "127.0.0.1:0", "protocols": ["http1", "h2c"]}],
        "backends": {"ws": {"url": f"http://127.0.0.1:{b.port}"},
                     "down": {"url": down.url}},
        "apis": [{"name": "ws", "path": "/ws", "backend": "ws",
                  "protocols": ["http", "websocket"]},
                 {"name": "plain", "path": "/plain", "backend": "ws"},
                 {"name": "down", "path": "/down", "backend": "down",
                  "protocols": ["websocket"]}],
        "server": {"websocket-max-message": "2MiB", "websocket-idle-timeout": "2s"},
    }
    gw = start_gateway(tmp_path_factory.mktemp("gw"), cfg)
    gw.backend = b
    gw.ws_url = f"ws://127.0.0.1:{gw.port}/ws"
    yield gw
    gw.stop()
    down.close()


def test_echo_text_and_binary(env):
    with ws_connect(env.ws_url + "/echo") as c:
        c.send("hello")
        assert c.recv(timeout=30) == "hello"
        c.send(b"\x00\x01\xff")
        assert c.recv(timeout=30) == b"\x00\x01\xff"
    assert "/echo" in env.backend.paths  # the API prefix replaced by the backend's path


def test_fragmented_message(env):
    with ws_connect(env.ws_url + "/frag") as c:
        c.send(iter(["hel", "lo ", "world"]))  # one message in three frames
        assert c.recv(timeout=30) == "hello world"


def test_one_mib_message_then_one_over_the_limit_is_1009(env):
    with ws_connect(env.ws_url + "/big", max_size=None) as c:
        big = os.urandom(1 << 20)
        c.send(big)
        assert c.recv(timeout=30) == big  # 1 MiB, under the 2 MiB limit: relayed
        c.send(os.urandom(3 << 20))        # over it: the gateway closes with 1009
        with pytest.raises(ConnectionClosed) as info:
            c.recv(timeout=30)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009


def test_ping_pong(env):
    with ws_connect(env.ws_url + "/ping") as c:
        pong = c.ping(b"are you there")
        assert pong.wait(30)


def test_close_codes_both_ways(env):
    env.backend.closes.clear()
    with ws_connect(env.ws_url + "/bye") as c:
        c.close(4000, "client says bye")
    # (closes of earlier tests may still trickle in)
    wait_until(lambda: (4000, "client says bye") in env.backend.closes,
               message="the backend saw the client's close code and reason")
    with ws_connect(env.ws_url + "/close4001") as c:
        c.send("x")
        with pytest.raises(ConnectionClosed) as info:
            c.recv(timeout=30)
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4001, "backend says bye")


def test_refused_upgrade_is_relayed_and_http_goes_on(env):
    with pytest.raises(InvalidStatus) as info:
        ws_connect(env.ws_url + "/refuse")
    assert info.value.response.status_code == 403
    # raw: the refusal, then a plain request on the same connection is answered
    s = connect(env.port)
    s.sendall(b"GET /ws/refuse HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\n"
              b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    reader = ResponseReader(s)
    assert reader.read().status == 403     # the refusal, before the next request goes
    s.sendall(b"GET /ws/refuse HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert reader.read().status == 403     # still HTTP: the plain GET answered too
    assert read_until_close(s, 30)[1] == "eof"
    s.close()


@pytest.mark.parametrize("headers,status", [
    ({"Sec-WebSocket-Version": "8"}, 426),
    ({"Sec-WebSocket-Key": "too-short"}, 400),
])
def test_bad_handshakes(env, headers, status):
    base = {"Host": "t", "Connection": "Upgrade", "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    base.update(headers)
    s = connect(env.port)
    s.sendall(b"GET /ws/x HTTP/1.1\r\n" + b"".join(
        f"{k}: {v}\r\n".encode() for k, v in base.items()) + b"Connection: close\r\n\r\n")
    data, _ = read_until_close(s, 30)
    s.close()
    assert data.startswith(b"HTTP/1.1 %d " % status), data[:200]
    if status == 426:
        assert b"sec-websocket-version: 13" in data.lower()


def test_backend_down_is_502(env):
    with pytest.raises(InvalidStatus) as info:
        ws_connect(f"ws://127.0.0.1:{env.port}/down/x")
    assert info.value.response.status_code == 502


def test_api_without_websocket_forwards_plain_http(env):
    # the Upgrade is dropped, so the websockets backend sees a plain GET and refuses it
    with pytest.raises(InvalidStatus) as info:
        ws_connect(f"ws://127.0.0.1:{env.port}/plain/x")
    assert info.value.response.status_code == 426


def test_idle_connection_is_closed(env):
    with ws_connect(env.ws_url + "/idle") as c:
        t0 = time.monotonic()
        with pytest.raises(ConnectionClosed) as info:
            c.recv(timeout=60)            # only websocket-idle-timeout (2 s) ends it
        assert time.monotonic() - t0 >= 1.5
    assert info.value.rcvd is not None and info.value.rcvd.code == 1001


def test_backend_gone_closes_the_client(env):
    with ws_connect(env.ws_url + "/close4001") as c:
        c.send("go")
        with pytest.raises(ConnectionClosed):
            c.recv(timeout=30)
        with pytest.raises(ConnectionClosed):   # (a hang would be TimeoutError instead)
            c.send("after")
            c.recv(timeout=30)


def test_websocket_over_http2_extended_connect(env):
    """RFC 8441: CONNECT with :protocol websocket on an h2c connection, to the same
    HTTP/1.1 backend; frames ride in DATA both ways."""
    s = socket.create_connection(("127.0.0.1", env.port), timeout=30)
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                             header_encoding=None))
    c.initiate_connection()
    s.sendall(c.data_to_send())
    enabled = False
    while not enabled:
        for ev in c.receive_data(s.recv(65536)):
            if isinstance(ev, h2.events.RemoteSettingsChanged):
                enabled = any(int(k) == 8 and v.new_value == 1
                              for k, v in ev.changed_settings.items())
        s.sendall(c.data_to_send())
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, [(b":method", b"CONNECT"), (b":protocol", b"websocket"),
                         (b":scheme", b"http"), (b":path", b"/ws/h2"),
                         (b":authority", b"gw.test"), (b"sec-websocket-version", b"13")])
    client_frames = FrameProtocol(client=True, extensions=[])
    c.send_data(sid, client_frames.send_data("over h2", fin=True))
    s.sendall(c.data_to_send())
    status, echoed = None, None
    reader = FrameProtocol(client=True, extensions=[])
    deadline = time.monotonic() + 30
    while echoed is None and time.monotonic() < deadline:
        for ev in c.receive_data(s.recv(65536)):
            if isinstance(ev, h2.events.ResponseReceived):
                status = dict(ev.headers)[b":status"]
            elif isinstance(ev, h2.events.DataReceived):
                c.acknowledge_received_data(ev.flow_controlled_length, sid)
                reader.receive_bytes(ev.data)
                for frame in reader.received_frames():
                    if frame.opcode is Opcode.TEXT:
                        echoed = frame.payload
        s.sendall(c.data_to_send())
    s.close()
    assert status == b"200" and echoed == "over h2"
