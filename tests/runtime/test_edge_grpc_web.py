"""The gateway's own answers to gRPC-Web callers (issue 8, defect 4), end to end: httpx over
HTTP/1.1 and over h2c (prior knowledge), and curl over h2c, against a gateway in front of a
grpcio server.

A gRPC-Web client accepts only a gRPC-Web content-type, so every gateway-made answer (no
API, an API without gRPC, backend down, request too large, a malformed call) is a
trailers-only response in the caller's own content-type (`application/grpc-web[-text]`,
its `+proto` kept) with `grpc-status` / `grpc-message` in the headers, exactly the gRPC
statuses a native gRPC caller gets (12 UNIMPLEMENTED, 14 UNAVAILABLE, 8
RESOURCE_EXHAUSTED), and `content-length: 0`.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent import futures
from pathlib import Path
from urllib.parse import unquote

import grpc
import httpx
import pytest

from backends import refused_url
from procs import start_echo, start_gateway

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "protocol"))
from grpc_test_pb import pb2, pb2_grpc  # noqa: E402

from apigw_core.protocol.grpc import parse_web_response, web_request_body  # noqa: E402

WEB_TYPES = ["application/grpc-web", "application/grpc-web+proto",
             "application/grpc-web-text", "application/grpc-web-text+proto"]


class Service(pb2_grpc.TestServiceServicer):
    def UnaryCall(self, request, context):
        return pb2.SimpleResponse(request_size=len(request.payload.body))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    echo = start_echo()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb2_grpc.add_TestServiceServicer_to_server(Service(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    cfg = {
        "listeners": [{"bind": "127.0.0.1:0", "protocols": ["http1", "h2c"]}],
        "backends": {
            "grpc": {"url": f"http://127.0.0.1:{port}/apigw.test.TestService",
                     "http-version": "2", "timeout": 10},
            "down": {"url": refused_url(), "http-version": "2"},
            "echo": {"url": f"http://127.0.0.1:{echo.port}"},
        },
        "apis": [
            {"name": "test", "path": "/apigw.test.TestService", "backend": "grpc",
             "protocols": ["grpc"]},
            {"name": "down", "path": "/apigw.down.Service", "backend": "down",
             "protocols": ["grpc"]},
            {"name": "plain", "path": "/plain", "backend": "echo"},  # no gRPC on it
        ],
        "server": {"max-body": "1 KiB"},
    }
    gw = start_gateway(tmp_path_factory.mktemp("gw"), cfg)
    yield gw
    gw.stop()
    server.stop(0)
    echo.stop()


def call(env, path: str, ctype: str, http2: bool, body: bytes = b"",
         method: str = "POST") -> httpx.Response:
    text = "-text" in ctype
    if not body:
        body = web_request_body([pb2.SimpleRequest().SerializeToString()], text=text)
    with httpx.Client(http1=not http2, http2=http2, timeout=10) as c:
        r = c.request(method, f"http://127.0.0.1:{env.port}{path}", content=body,
                      headers={"content-type": ctype, "x-grpc-web": "1"})
    assert r.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    return r


def assert_trailers_only(r: httpx.Response, ctype: str, status: int) -> str:
    """A gRPC-Web trailers-only answer: 200, the caller's type, the status in the head."""
    assert r.status_code == 200, (r.status_code, r.headers, r.content)
    assert r.headers["content-type"] == ctype
    assert r.headers["grpc-status"] == str(status)
    assert r.content == b"" and r.headers["content-length"] == "0"
    return unquote(r.headers["grpc-message"])


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "h2c"])
@pytest.mark.parametrize("ctype", WEB_TYPES)
def test_no_api_is_unimplemented_in_the_callers_content_type(env, ctype, http2):
    r = call(env, "/apigw.other.Service/Method", ctype, http2)
    assert "no API" in assert_trailers_only(r, ctype, 12)


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "h2c"])
@pytest.mark.parametrize("ctype", WEB_TYPES)
def test_backend_down_is_unavailable_in_the_callers_content_type(env, ctype, http2):
    r = call(env, "/apigw.down.Service/Method", ctype, http2)
    assert assert_trailers_only(r, ctype, 14) == "backend connection failed"


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "h2c"])
def test_api_without_grpc_is_unimplemented(env, http2):
    r = call(env, "/plain/Svc/Method", "application/grpc-web+proto", http2)
    assert_trailers_only(r, "application/grpc-web+proto", 12)


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "h2c"])
def test_malformed_call_is_answered_in_grpc_web(env, http2):
    """A gRPC-Web call must be a POST (check_request): the answer is still gRPC-Web."""
    r = call(env, "/apigw.test.TestService/UnaryCall", "application/grpc-web-text", http2,
             method="PUT")
    assert_trailers_only(r, "application/grpc-web-text", 13)


def test_request_over_max_body_on_h2_is_resource_exhausted(env):
    body = web_request_body([pb2.SimpleRequest(
        payload=pb2.Payload(body=b"\1" * 2000)).SerializeToString()])
    r = call(env, "/apigw.test.TestService/UnaryCall", "application/grpc-web+proto", True,
             body=body)
    assert_trailers_only(r, "application/grpc-web+proto", 8)


def test_content_type_parameters_are_dropped_and_case_folded(env):
    r = call(env, "/apigw.other.Service/Method", "Application/GRPC-Web+Proto; charset=x",
             False)
    assert_trailers_only(r, "application/grpc-web+proto", 12)


def test_a_translated_call_still_works(env):
    """The backend's own answer is translated as before (body, trailer frame)."""
    req = pb2.SimpleRequest(payload=pb2.Payload(body=b"\1" * 300))
    r = call(env, "/apigw.test.TestService/UnaryCall", "application/grpc-web+proto", True,
             body=web_request_body([req.SerializeToString()]))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/grpc-web")  # the backend's +sub
    messages, trailers = parse_web_response(r.content)
    assert pb2.SimpleResponse.FromString(messages[0].data).request_size == 300
    assert dict(trailers)[b"grpc-status"] == b"0"


def test_curl_h2c_grpc_web_no_route(env):
    out = subprocess.run(
        ["curl", "-sS", "-D", "-", "-o", "/dev/null", "--http2-prior-knowledge",
         "-H", "content-type: application/grpc-web-text", "--data-binary", "AAAAAAA=",
         f"http://127.0.0.1:{env.port}/apigw.nope.Svc/M"],
        capture_output=True, timeout=20)
    head = out.stdout.lower()
    assert head.startswith(b"http/2 200"), (out.stdout, out.stderr)
    assert b"content-type: application/grpc-web-text\r\n" in head
    assert b"grpc-status: 12\r\n" in head


def test_native_grpc_answers_keep_application_grpc(env):
    """Native gRPC callers are answered as before: application/grpc, no content-length."""
    out = subprocess.run(
        ["curl", "-sS", "-D", "-", "-o", "/dev/null", "--http2-prior-knowledge",
         "-H", "content-type: application/grpc+proto", "-H", "te: trailers",
         "--data-binary", "@-", f"http://127.0.0.1:{env.port}/apigw.down.Service/M"],
        input=b"\0\0\0\0\0", capture_output=True, timeout=20)
    head = out.stdout.lower()
    assert b"content-type: application/grpc\r\n" in head and b"grpc-status: 14\r\n" in head
    assert b"content-length" not in head


# -- the decision itself, in memory (gateway.replies) -------------------------------------------

@pytest.mark.parametrize("ctype, answer", [
    (b"application/grpc", b"application/grpc"),
    (b"application/grpc+proto", b"application/grpc"),
    (b"application/grpc-web", b"application/grpc-web"),
    (b"application/grpc-web-text+thrift", b"application/grpc-web-text+thrift"),
    (b"application/grpc-web+", b"application/grpc-web"),
    (b"APPLICATION/GRPC-WEB; charset=utf-8", b"application/grpc-web"),
    (b"application/grpcx", None),
    (b"application/json", None),
])
def test_grpc_content_type_of_a_local_reply(ctype, answer):
    from apigw_core.gateway.replies import grpc_content_type, local_reply
    headers = [(b"host", b"h"), (b"content-type", ctype)]
    assert grpc_content_type(headers) == answer
    status, out, body = local_reply(502, "backend connection failed", b"rid", headers)
    if answer is None:
        assert status == 502 and body.startswith(b'{"statusCode":502')
    else:
        assert (status, body) == (200, b"")
        assert out[:3] == [(b"content-type", answer), (b"grpc-status", b"14"),
                           (b"grpc-message", b"backend connection failed")]
        assert ((b"content-length", b"0") in out) == (answer != b"application/grpc")
