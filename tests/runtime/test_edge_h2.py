"""HTTP/2 edge cases of issue 8, end to end with real clients (h2's client connection over
a raw socket, curl --http2-prior-knowledge, httpx over TLS, grpcio) against a gateway
process with `server: {max-body: 1 KiB, max-fields: 30, max-head: 8 KiB}`:

- a request whose HEADERS, whole body and trailers arrive at once, to an HTTP/1.1 backend
  (chunked framing for the hop, never a 500);
- `max-body` on HTTP/2: 413 before forwarding (content-length, or a body that grows past
  it), RESOURCE_EXHAUSTED for gRPC, a reset once the answer has started;
- `max-fields` / `max-head` on HTTP/2 header lists: 431 on the stream, the connection goes
  on; only a flood (over twice max-head) gets GOAWAY;
- graceful shutdown: an idle HTTP/2 connection reads GOAWAY before the close;
- gateway-made errors tell the client a fixed text, never a backend address or errno;
  the detail is in the log, with the request id.
"""

from __future__ import annotations

import json
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import h2.events
import httpx
import pytest
from hyperframe.frame import GoAwayFrame, HeadersFrame, SettingsFrame
from hpack import Encoder

from backends import Backend, refused_url
from h2raw import FrameReader, H2Client, Reply, h2c_socket, read_until_close, req_block
from pki import CA
from procs import start_echo, start_gateway

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "protocol"))
from grpc_test_pb import pb2, pb2_grpc  # noqa: E402

NO_ERROR, ENHANCE_YOUR_CALM = 0, 0xB
LEAKS = re.compile(r"127\.0\.0\.1|Errno|refused|\[|\d{4,5}")  # address, port, errno text


class Service(pb2_grpc.TestServiceServicer):
    def UnaryCall(self, request, context):
        return pb2.SimpleResponse(request_size=len(request.payload.body))

    def FullDuplexCall(self, request_iterator, context):
        for req in request_iterator:
            yield pb2.StreamingOutputCallResponse(
                payload=pb2.Payload(body=b"\0" * len(req.payload.body)))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    echo = start_echo()
    rec = Backend("ok")
    hang = Backend("hang")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb2_grpc.add_TestServiceServicer_to_server(Service(), server)
    gport = server.add_insecure_port("127.0.0.1:0")
    server.start()
    ca = CA(tmp_path_factory.mktemp("pki"))
    cert, key = ca.issue("localhost", "localhost", "127.0.0.1")
    down = refused_url()
    cfg = {
        "listeners": [{"bind": "127.0.0.1:0", "protocols": ["http1", "h2c"]},
                      {"bind": "127.0.0.1:0", "tls": {"cert": cert, "key": key},
                       "protocols": ["http1", "h2"]}],
        "backends": {
            "echo": {"url": f"http://127.0.0.1:{echo.port}"},
            "rec": {"url": rec.url},
            "hang": {"url": hang.url, "timeout": "0.5s"},
            "down": {"url": down},
            "grpc": {"url": f"http://127.0.0.1:{gport}/apigw.test.TestService",
                     "http-version": "2", "timeout": 10},
            "gdown": {"url": down, "http-version": "2"},
        },
        "apis": [
            {"name": "rec", "path": "/rec", "backend": "rec"},
            {"name": "hang", "path": "/hang", "backend": "hang"},
            {"name": "down", "path": "/down", "backend": "down"},
            {"name": "ws", "path": "/ws", "backend": "down",
             "protocols": ["http", "websocket"]},
            {"name": "grpc", "path": "/apigw.test.TestService", "backend": "grpc",
             "protocols": ["grpc"]},
            {"name": "gdown", "path": "/apigw.down.Service", "backend": "gdown",
             "protocols": ["grpc"]},
            {"name": "root", "path": "", "backend": "echo"},
        ],
        "server": {"max-body": "1 KiB", "max-fields": 30, "max-head": "8 KiB"},
    }
    gw = start_gateway(tmp_path_factory.mktemp("gw"), cfg)
    gw.rec = rec
    gw.cafile = str(ca.pem)
    channel = grpc.insecure_channel(f"127.0.0.1:{gw.ports[0]}")
    gw.stub = pb2_grpc.TestServiceStub(channel)
    gw.channel = channel
    yield gw
    channel.close()
    gw.stop()
    server.stop(0)
    for b in (rec, hang):
        b.close()
    echo.stop()


def h2c(env) -> H2Client:
    return H2Client.h2c(env.ports[0])


def wait_for(cond, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def send_at_once(c: H2Client, path: str, body: bytes, trailers: list,
                 headers: list = ()) -> Reply:
    """HEADERS, the whole body and the trailers in one write."""
    sid = c.conn.get_next_available_stream_id()
    c.conn.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"http"),
                              (b":path", path.encode()), (b":authority", b"gw.test"),
                              *headers])
    if body:
        c.conn.send_data(sid, body)
    c.conn.send_headers(sid, trailers, end_stream=True)
    c.replies[sid] = r = Reply()
    c.flush()
    assert c.run_until(lambda: r.ended or r.reset is not None, 10), r
    return r


# -- headers, body and trailers at once, to an HTTP/1.1 backend ----------------------------

@pytest.mark.parametrize("body, headers", [
    (b"hello", []),
    (b"hello", [(b"content-length", b"5")]),
    (b"", []),
], ids=["no-content-length", "content-length", "no-body"])
def test_whole_body_and_trailers_at_once_reach_an_http1_backend(env, body, headers):
    c = h2c(env)
    try:
        r = send_at_once(c, "/t", body, [(b"x-checksum", b"abc")], headers)
    finally:
        c.close()
    assert r.status == 200, bytes(r.body)
    doc = json.loads(bytes(r.body))
    assert doc["body"] == body.decode() and doc["trailers"] == {"x-checksum": "abc"}
    assert doc["headers"]["transfer-encoding"] == "chunked"  # the framing that has trailers
    assert "content-length" not in doc["headers"]


def test_streamed_body_with_content_length_then_trailers_is_not_a_500(env):
    """The head went to the backend with the client's content-length before the trailers
    came (expect: 100-continue makes the client wait for the gateway to start reading):
    HTTP/1.1 cannot carry them after a Content-Length, so they are dropped on that hop."""
    c = h2c(env)
    try:
        sid = c.request("/t", method="POST", end=False,
                        headers=[("content-length", "5"), ("expect", "100-continue")])
        assert c.run_until(lambda: any(
            isinstance(e, h2.events.InformationalResponseReceived) for e in c.events), 5)
        c.conn.send_data(sid, b"hello")
        c.conn.send_headers(sid, [(b"x-checksum", b"abc")], end_stream=True)
        c.flush()
        r = c.replies[sid]
        assert c.run_until(lambda: r.ended or r.reset is not None, 10), r
    finally:
        c.close()
    assert r.status == 200, bytes(r.body)
    doc = json.loads(bytes(r.body))
    assert doc["body"] == "hello" and doc["headers"]["content-length"] == "5"


# -- server.max-body on HTTP/2 ---------------------------------------------------------------

def test_content_length_over_max_body_is_413_before_forwarding(env):
    env.rec.reset()
    c = h2c(env)
    try:
        r = c.get("/rec/big", method="POST", body=b"x" * 2000,
                  headers=[("content-length", "2000")])
        assert r.status == 413 and json.loads(bytes(r.body))["statusCode"] == 413
        assert c.get("/rec/after").status == 200  # the connection goes on
    finally:
        c.close()
    assert wait_for(lambda: b"/after" in env.rec.received)
    assert b"/big" not in env.rec.received


def test_body_without_content_length_over_max_body_is_413(env):
    """No content-length, but the whole body came with the head (one write): it is
    measured before anything is forwarded."""
    env.rec.reset()
    c = h2c(env)
    try:
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"http"),
                                  (b":path", b"/rec/big"), (b":authority", b"gw.test")])
        for _ in range(4):
            c.conn.send_data(sid, b"y" * 600)
        c.conn.end_stream(sid)
        c.replies[sid] = r = Reply()
        c.flush()
        assert c.run_until(lambda: r.ended or r.reset is not None, 10), r
        assert r.status == 413, r
        assert c.get("/rec/after").status == 200
    finally:
        c.close()
    assert wait_for(lambda: b"/after" in env.rec.received)
    assert b"/big" not in env.rec.received


def test_streamed_body_that_grows_past_max_body_is_413(env):
    """The gateway has started forwarding (the client waited for 100 Continue) when the
    body grows past the limit: nothing was answered yet, so 413; the backend saw the head
    and part of the body, never a complete request: its connection is reset."""
    env.rec.reset()
    c = h2c(env)
    try:
        sid = c.request("/rec/grow", method="POST", end=False,
                        headers=[("expect", "100-continue")])
        assert c.run_until(lambda: any(
            isinstance(e, h2.events.InformationalResponseReceived) for e in c.events), 5)
        r = c.replies[sid]
        for _ in range(10):
            c.send_body(sid, b"z" * 600, end=False)
            if r.ended or r.reset is not None:
                break
            c.pump(0.05)
        assert c.run_until(lambda: r.ended or r.reset is not None, 10), r
    finally:
        c.close()
    assert r.status == 413, r
    conns = [b for b in list(env.rec.conns) if b"/grow" in b.received]
    assert conns and wait_for(lambda: conns[0].end is not None)
    assert conns[0].end == "reset" and b"0\r\n\r\n" not in conns[0].received


def test_body_at_max_body_passes(env):
    c = h2c(env)
    try:
        r = c.get("/ok", method="POST", body=b"k" * 1024)
    finally:
        c.close()
    assert r.status == 200 and json.loads(bytes(r.body))["body_length"] == 1024


@pytest.mark.parametrize("client", ["curl-h2c", "httpx-h2-tls"])
def test_real_clients_over_max_body_get_413(env, client):
    body = b"q" * 2000
    if client == "curl-h2c":
        out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-o", "-",
                              "-w", "\n%{http_code} %{http_version}", "--data-binary", "@-",
                              f"http://127.0.0.1:{env.ports[0]}/p"],
                             input=body, capture_output=True, timeout=20)
        text, _, status = out.stdout.decode().rpartition("\n")
        assert status == "413 2", (out.stdout, out.stderr)
        assert json.loads(text)["statusCode"] == 413
    else:
        ctx = ssl.create_default_context(cafile=env.cafile)
        with httpx.Client(http2=True, verify=ctx, timeout=20) as hc:
            r = hc.post(f"https://localhost:{env.ports[1]}/p", content=body)
        assert (r.status_code, r.http_version) == (413, "HTTP/2")
        assert r.json()["statusCode"] == 413


def test_grpc_call_over_max_body_is_resource_exhausted(env):
    with pytest.raises(grpc.RpcError) as info:
        env.stub.UnaryCall(pb2.SimpleRequest(payload=pb2.Payload(body=b"\1" * 2000)),
                           timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # under the limit the same call goes through
    r = env.stub.UnaryCall(pb2.SimpleRequest(payload=pb2.Payload(body=b"\1" * 100)),
                           timeout=10)
    assert r.request_size == 100


def test_grpc_stream_that_grows_past_max_body_after_the_answer_started(env):
    """The first message was answered (the response has begun): the gateway resets the
    stream with ENHANCE_YOUR_CALM, which grpc reads as RESOURCE_EXHAUSTED."""
    answered = threading.Event()

    def gen():
        yield pb2.StreamingOutputCallRequest(payload=pb2.Payload(body=b"\0" * 100))
        answered.wait(10)
        for _ in range(5):
            yield pb2.StreamingOutputCallRequest(payload=pb2.Payload(body=b"\0" * 500))
    call = env.stub.FullDuplexCall(gen(), timeout=10)
    assert len(next(call).payload.body) == 100
    answered.set()
    with pytest.raises(grpc.RpcError) as info:
        for _ in call:
            pass
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# -- max-fields / max-head on HTTP/2 header lists ----------------------------------------------

@pytest.mark.parametrize("extra", [
    [(f"x-h{i}", "v") for i in range(40)],          # more fields than max-fields (30)
    [("x-big", "v" * 9000)],                         # more bytes than max-head (8 KiB)
], ids=["fields", "bytes"])
def test_header_list_over_the_limits_is_431_and_the_connection_goes_on(env, extra):
    c = h2c(env)
    try:
        bad = c.request("/h", headers=extra)
        good = c.request("/g")  # a stream alongside: unaffected
        rb, rg = c.replies[bad], c.replies[good]
        assert c.run_until(lambda: rb.ended and rg.ended, 10), (rb, rg)
        assert rb.status == 431 and json.loads(bytes(rb.body))["statusCode"] == 431
        assert rg.status == 200
        assert c.get("/after").status == 200 and c.goaway is None
    finally:
        c.close()


def test_header_list_flood_is_goaway(env):
    """Over twice max-head is no longer "merely too large": ENHANCE_YOUR_CALM."""
    c = h2c(env)
    try:
        sid = c.request("/h", headers=[(f"x-big-{i}", "v" * 8000) for i in range(3)])
        c.run_until(lambda: c.goaway is not None, 5)
        assert c.goaway is not None and c.goaway.error_code == ENHANCE_YOUR_CALM
        assert c.replies[sid].status is None
    finally:
        c.close()
    c = h2c(env)
    try:
        assert c.get("/after").status == 200
    finally:
        c.close()


def test_curl_with_too_many_headers_gets_431(env):
    args = []
    for i in range(40):
        args += ["-H", f"x-h{i}: v"]
    out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null",
                          "-w", "%{http_code} %{http_version}", *args,
                          f"http://127.0.0.1:{env.ports[0]}/h"],
                         capture_output=True, timeout=20)
    assert out.stdout == b"431 2", (out.stdout, out.stderr)


def test_grpc_call_with_too_much_metadata_is_resource_exhausted(env):
    md = tuple((f"x-md-{i}", "v") for i in range(40))
    with pytest.raises(grpc.RpcError) as info:
        env.stub.UnaryCall(pb2.SimpleRequest(), metadata=md, timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# -- graceful shutdown: GOAWAY on idle connections --------------------------------------------

@pytest.mark.parametrize("served", [0, 1], ids=["never-used", "after-a-request"])
def test_idle_h2c_connection_reads_goaway_before_the_close(tmp_path, served):
    cfg = {"listeners": [{"bind": "127.0.0.1:0", "protocols": ["http1", "h2c"]}],
           "backends": {"b": {"url": refused_url()}},
           "apis": [{"name": "root", "path": "", "backend": "b"}]}
    gw = start_gateway(tmp_path, cfg)
    s = h2c_socket(gw.port)
    reader = FrameReader(s)
    try:
        enc = Encoder()
        for i in range(served):
            s.sendall(HeadersFrame(1 + 2 * i, req_block(enc, "/x"),
                                   flags=["END_STREAM", "END_HEADERS"]).serialize())
        # idle once the answers are in (and the server's SETTINGS)
        answers = 0
        seen_settings = False
        while answers < served or not seen_settings:
            f = reader.next()
            assert f is not None and not isinstance(f, GoAwayFrame)
            seen_settings |= isinstance(f, SettingsFrame) and "ACK" not in f.flags
            answers += isinstance(f, HeadersFrame)
        gw.proc.send_signal(signal.SIGTERM)
        closed = read_until_close(s, 10, reader)
    finally:
        s.close()
        code = gw.stop()
    assert closed.how == "eof", closed
    assert closed.goaway is not None, "closed without a GOAWAY"
    assert closed.goaway.error_code == NO_ERROR
    assert closed.goaway.last_stream_id == (2 * served - 1 if served else 0)
    assert code == 0


def test_idle_h2_client_sees_goaway_and_the_gateway_exits(tmp_path):
    """h2's own client connection, idle: it is told ConnectionTerminated(NO_ERROR)."""
    cfg = {"listeners": [{"bind": "127.0.0.1:0", "protocols": ["http1", "h2c"]}],
           "backends": {"b": {"url": refused_url()}},
           "apis": [{"name": "root", "path": "", "backend": "b"}]}
    gw = start_gateway(tmp_path, cfg)
    c = H2Client.h2c(gw.port)
    try:
        assert c.get("/x").status == 502
        gw.proc.send_signal(signal.SIGTERM)
        assert c.run_until(lambda: c.goaway is not None, 10)
        assert c.goaway.error_code == NO_ERROR and c.goaway.last_stream_id == 1
    finally:
        c.close()  # as a client does on GOAWAY when idle: the gateway stops lingering
    assert gw.stop() == 0


# -- gateway-made errors: a fixed message, the detail in the log --------------------------------

def _logged(env, request_id: str, needle: str) -> bool:
    return any(request_id in line and needle in line for line in env.output)


@pytest.mark.parametrize("version", ["1.1", "2"])
def test_502_says_backend_connection_failed_and_logs_the_detail(env, version):
    if version == "2":
        c = h2c(env)
        try:
            r = c.get("/down/x")
        finally:
            c.close()
        status, doc = r.status, json.loads(bytes(r.body))
    else:
        resp = httpx.get(f"http://127.0.0.1:{env.ports[0]}/down/x", timeout=10)
        status, doc = resp.status_code, resp.json()
    assert status == 502
    assert doc["message"] == "backend connection failed"
    assert not LEAKS.search(json.dumps(doc["message"]))
    assert wait_for(lambda: _logged(env, doc["requestId"], "Connection refused"))


def test_504_says_backend_did_not_answer_in_time(env):
    r = httpx.get(f"http://127.0.0.1:{env.ports[0]}/hang/x", timeout=10)
    assert r.status_code == 504
    assert r.json()["message"] == "backend did not answer in time"
    assert wait_for(lambda: _logged(env, r.json()["requestId"], "no answer within"))


def test_grpc_backend_down_message_has_no_address(env):
    call = env.channel.unary_unary("/apigw.down.Service/Method")
    with pytest.raises(grpc.RpcError) as info:
        call(b"", timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert info.value.details() == "backend connection failed"


def test_websocket_backend_down_message_has_no_address(env):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect as ws_connect
    with pytest.raises(InvalidStatus) as info:
        ws_connect(f"ws://127.0.0.1:{env.ports[0]}/ws/x")
    resp = info.value.response
    assert resp.status_code == 502
    assert json.loads(resp.body)["message"] == "backend connection failed"
