"""gRPC through the gateway with real peers: a grpcio client and a grpcio server (both
grpc-core, not our code), over h2c on both sides.  Cases after the gRPC interop test
descriptions (doc/interop-test-descriptions.md), plus the gateway's own answers (no route,
backend down) and gRPC-Web from an HTTP/1.1 client translated to gRPC."""

from __future__ import annotations

import sys
import threading
import time
from concurrent import futures
from pathlib import Path

import pytest

# every test here needs a grpcio server and the compiled test service: without grpcio,
# grpcio-tools or protobuf the module skips (and nothing else)
grpc = pytest.importorskip("grpc", reason="optional test dependency 'grpcio' missing")
pytest.importorskip("grpc_tools", reason="optional test dependency 'grpcio-tools' missing")
pytest.importorskip("google.protobuf", reason="optional test dependency 'protobuf' missing")

from backends import Refused  # noqa: E402
from procs import start_gateway  # noqa: E402
from support import lazy_module  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "protocol"))
from grpc_test_pb import pb2, pb2_grpc  # noqa: E402

from apigw_core.protocol.grpc import parse_web_response, web_request_body  # noqa: E402

httpx = lazy_module("httpx")

ECHO_INITIAL = "x-grpc-test-echo-initial"
ECHO_TRAILING = "x-grpc-test-echo-trailing-bin"


class InteropService(pb2_grpc.TestServiceServicer):
    """The interop server's behaviour, enough for the cases below."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self.input_started = threading.Event()   # a StreamingInputCall reached us

    def _echo_metadata(self, context) -> None:
        md = dict(context.invocation_metadata())
        if ECHO_INITIAL in md:
            context.send_initial_metadata(((ECHO_INITIAL, md[ECHO_INITIAL]),))
        if ECHO_TRAILING in md:
            context.set_trailing_metadata(((ECHO_TRAILING, md[ECHO_TRAILING]),))

    def EmptyCall(self, request, context):
        self._echo_metadata(context)
        return pb2.Empty()

    def UnaryCall(self, request, context):
        self._echo_metadata(context)
        if request.sleep_ms:
            time.sleep(request.sleep_ms / 1000)
        if request.response_status.code:
            context.abort(grpc.StatusCode(
                [s for s in grpc.StatusCode if s.value[0] == request.response_status.code][0]),
                request.response_status.message)
        return pb2.SimpleResponse(payload=pb2.Payload(body=b"\0" * request.response_size),
                                  request_size=len(request.payload.body))

    def StreamingOutputCall(self, request, context):
        for p in request.response_parameters:
            if p.interval_us:
                time.sleep(p.interval_us / 1e6)
            yield pb2.StreamingOutputCallResponse(payload=pb2.Payload(body=b"\0" * p.size))

    def StreamingInputCall(self, request_iterator, context):
        context.add_callback(self.cancelled.set)
        self.input_started.set()
        total = sum(len(r.payload.body) for r in request_iterator)
        return pb2.StreamingInputCallResponse(aggregated_payload_size=total)

    def FullDuplexCall(self, request_iterator, context):
        context.add_callback(self.cancelled.set)
        self._echo_metadata(context)
        for req in request_iterator:
            for p in req.response_parameters:
                if p.interval_us:
                    time.sleep(p.interval_us / 1e6)
                yield pb2.StreamingOutputCallResponse(payload=pb2.Payload(body=b"\0" * p.size))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    service = InteropService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    pb2_grpc.add_TestServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    down = Refused()
    cfg = {
        "listeners": [{"bind": "127.0.0.1:0", "protocols": ["http1", "h2c"]}],
        # APIM semantics: the API's path prefix is replaced by the backend URL's path, so
        # a gRPC API keeps its service path by naming it on both sides
        "backends": {
            "grpc": {"url": f"http://127.0.0.1:{port}/apigw.test.TestService",
                     "http-version": "2", "timeout": 10},
            "down": {"url": down.url, "http-version": "2"},
        },
        "apis": [{"name": "test", "path": "/apigw.test.TestService", "backend": "grpc",
                  "protocols": ["grpc"]},
                 {"name": "down", "path": "/apigw.down.Service", "backend": "down",
                  "protocols": ["grpc"]}],
    }
    gw = start_gateway(tmp_path_factory.mktemp("gw"), cfg)
    channel = grpc.insecure_channel(f"127.0.0.1:{gw.port}")
    gw.stub = pb2_grpc.TestServiceStub(channel)
    gw.channel = channel
    gw.service = service
    yield gw
    channel.close()
    gw.stop()
    server.stop(0)
    down.close()


def test_empty_unary(env):
    assert env.stub.EmptyCall(pb2.Empty(), timeout=60) == pb2.Empty()


def test_large_unary(env):
    r = env.stub.UnaryCall(pb2.SimpleRequest(response_size=314159,
                                             payload=pb2.Payload(body=b"\0" * 271828)),
                           timeout=60)
    assert len(r.payload.body) == 314159 and r.request_size == 271828


def test_client_streaming(env):
    sizes = [27182, 8, 1828, 45904]
    r = env.stub.StreamingInputCall(
        iter(pb2.StreamingInputCallRequest(payload=pb2.Payload(body=b"\0" * n)) for n in sizes),
        timeout=60)
    assert r.aggregated_payload_size == 74922


def test_server_streaming(env):
    sizes = [31415, 9, 2653, 58979]
    req = pb2.StreamingOutputCallRequest(
        response_parameters=[pb2.ResponseParameters(size=n) for n in sizes])
    got = [len(r.payload.body) for r in env.stub.StreamingOutputCall(req, timeout=60)]
    assert got == sizes


def test_ping_pong(env):
    sizes = [(31415, 27182), (9, 8), (2653, 1828), (58979, 45904)]
    requests: list = []
    cond = threading.Condition()

    def gen():
        for out_size, in_size in sizes:
            yield pb2.StreamingOutputCallRequest(
                response_parameters=[pb2.ResponseParameters(size=out_size)],
                payload=pb2.Payload(body=b"\0" * in_size))
            with cond:  # one request in flight at a time: a real ping-pong
                cond.wait_for(lambda: len(requests) >= 1, timeout=60)
                requests.pop()
    got = []
    for r in env.stub.FullDuplexCall(gen(), timeout=60):
        got.append(len(r.payload.body))
        with cond:
            requests.append(1)
            cond.notify()
    assert got == [s[0] for s in sizes]


def test_empty_stream(env):
    assert list(env.stub.FullDuplexCall(iter(()), timeout=60)) == []


def test_custom_metadata(env):
    md = ((ECHO_INITIAL, "test_initial_metadata_value"),
          (ECHO_TRAILING, b"\x0a\x0b\x0a\x0b\x0a\x0b"))
    r, call = env.stub.UnaryCall.with_call(
        pb2.SimpleRequest(response_size=314159, payload=pb2.Payload(body=b"\0" * 271828)),
        metadata=md, timeout=60)
    assert len(r.payload.body) == 314159
    assert dict(call.initial_metadata())[ECHO_INITIAL] == "test_initial_metadata_value"
    assert dict(call.trailing_metadata())[ECHO_TRAILING] == b"\x0a\x0b\x0a\x0b\x0a\x0b"


def test_status_code_and_message(env):
    with pytest.raises(grpc.RpcError) as info:
        env.stub.UnaryCall(pb2.SimpleRequest(response_status=pb2.EchoStatus(
            code=2, message="test status message")), timeout=60)
    assert info.value.code() == grpc.StatusCode.UNKNOWN
    assert info.value.details() == "test status message"


def test_unimplemented_method(env):
    with pytest.raises(grpc.RpcError) as info:
        env.stub.UnimplementedCall(pb2.Empty(), timeout=60)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_timeout_on_sleeping_server(env):
    with pytest.raises(grpc.RpcError) as info:
        env.stub.UnaryCall(pb2.SimpleRequest(sleep_ms=2000), timeout=0.3)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_cancel_after_begin(env):
    env.service.cancelled.clear()
    env.service.input_started.clear()
    stop = threading.Event()

    def never_ending():
        yield pb2.StreamingInputCallRequest(payload=pb2.Payload(body=b"x"))
        stop.wait(60)
    fut = env.stub.StreamingInputCall.future(never_ending(), timeout=60)
    try:
        assert env.service.input_started.wait(30), "the call did not reach the backend"
        fut.cancel()
        assert fut.cancelled()
        assert env.service.cancelled.wait(30)  # the backend's call was cancelled too
    finally:
        stop.set()


def test_cancel_after_first_response(env):
    env.service.cancelled.clear()
    stop = threading.Event()

    def gen():
        yield pb2.StreamingOutputCallRequest(
            response_parameters=[pb2.ResponseParameters(size=31415)],
            payload=pb2.Payload(body=b"\0" * 27182))
        stop.wait(60)
    call = env.stub.FullDuplexCall(gen(), timeout=60)
    assert len(next(call).payload.body) == 31415
    call.cancel()
    with pytest.raises(grpc.RpcError) as info:
        next(call)
    assert info.value.code() == grpc.StatusCode.CANCELLED
    stop.set()
    assert env.service.cancelled.wait(30)


def test_no_route_is_unimplemented_from_the_gateway(env):
    call = env.channel.unary_unary("/apigw.other.Service/Method")
    with pytest.raises(grpc.RpcError) as info:
        call(b"", timeout=60)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "no API" in info.value.details()


def test_backend_down_is_unavailable(env):
    call = env.channel.unary_unary("/apigw.down.Service/Method")
    with pytest.raises(grpc.RpcError) as info:
        call(b"", timeout=60)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("text", [False, True], ids=["grpc-web", "grpc-web-text"])
def test_grpc_web_from_an_http1_client(env, text):
    req = pb2.SimpleRequest(response_size=1000, payload=pb2.Payload(body=b"\1" * 500))
    ctype = "application/grpc-web-text" if text else "application/grpc-web+proto"
    r = httpx.post(env.url + "/apigw.test.TestService/UnaryCall",
                   content=web_request_body([req.SerializeToString()], text=text),
                   headers={"content-type": ctype, "x-grpc-web": "1"}, timeout=60)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(ctype.split("+")[0])
    messages, trailers = parse_web_response(r.content, text=text)
    resp = pb2.SimpleResponse.FromString(messages[0].data)
    assert len(resp.payload.body) == 1000 and resp.request_size == 500
    assert dict(trailers)[b"grpc-status"] == b"0"
