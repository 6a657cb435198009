"""gateway.replies.local_reply: the one shape decision for gateway-made answers."""

import json

from apigw_core.gateway.replies import local_reply

GRPC_WEB = [(b"content-type", b"application/grpc-web-text+proto")]


def test_http_caller_gets_apim_json_with_extra_headers_after():
    status, headers, body = local_reply(426, "upgrade required", None, [],
                                        [(b"sec-websocket-version", b"13")])
    assert status == 426
    assert json.loads(body) == {"statusCode": 426, "message": "upgrade required"}
    assert headers[0] == (b"content-type", b"application/json")
    assert headers[-1] == (b"sec-websocket-version", b"13")


def test_grpc_web_caller_gets_trailers_only_in_its_content_type():
    status, headers, body = local_reply(401, "no key", b"r1", GRPC_WEB,
                                        [(b"www-authenticate", b"x")])
    assert (status, body) == (200, b"")
    assert headers[0] == (b"content-type", b"application/grpc-web-text+proto")
    assert (b"grpc-status", b"16") in headers          # 401 -> UNAUTHENTICATED
    assert (b"x-request-id", b"r1") in headers
    assert headers[-1] == (b"www-authenticate", b"x")


def test_grpc_code_forces_the_grpc_shape_and_status():
    # a caller the proxy already knows speaks gRPC, whatever its content-type parses as
    status, headers, body = local_reply(200, "not enabled", None,
                                        [(b"content-type", b"application/grpcx")],
                                        grpc_code=12)
    assert (status, body) == (200, b"")
    assert headers[:2] == [(b"content-type", b"application/grpc"), (b"grpc-status", b"12")]


def test_no_request_headers_is_json():
    status, headers, body = local_reply(408, "too slow", None, ())
    assert status == 408 and json.loads(body)["statusCode"] == 408
