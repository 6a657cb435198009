"""Local replies: the answers the gateway makes itself (no route, backend down, ...).

A small JSON body in APIM's shape (`{"statusCode": 404, "message": "..."}`), so a client
of APIM parses ours the same way.  The status codes follow APIM and Envoy:
404 no API matches, 502 backend refused/unreachable or sent a bad response, 503 over
capacity, 504 backend timeout, 408 client too slow, 4xx for a bad request.

A gRPC caller gets what gRPC clients expect instead (Envoy's local replies do the same): a
trailers-only response, HTTP 200 with `grpc-status` and a percent-encoded `grpc-message`,
the status mapped from the HTTP one (no route UNIMPLEMENTED, backend down UNAVAILABLE,
timeout DEADLINE_EXCEEDED, ...).
"""

from __future__ import annotations

import json
from typing import Optional, Sequence

__all__ = ["json_error", "local_reply", "is_grpc", "grpc_status_for", "percent_encode"]

# Gateway-made errors as gRPC statuses (issue 5; gRPC's codes.md): what each HTTP answer
# means to a gRPC caller.
_GRPC_FOR_HTTP = {
    400: 13, 408: 4, 413: 8, 414: 13, 431: 8,
    401: 16, 403: 7, 404: 12, 429: 8,
    500: 13, 501: 12, 502: 14, 503: 14, 504: 4, 505: 13,
}


def grpc_status_for(http_status: int) -> int:
    """The gRPC status a gateway-made HTTP error means (UNKNOWN when unmapped)."""
    return _GRPC_FOR_HTTP.get(http_status, 2)


def percent_encode(message: str) -> bytes:
    """grpc-message encoding: UTF-8, then every byte outside 0x20-0x7E and '%' as %XX."""
    return b"".join(bytes([c]) if 0x20 <= c <= 0x7E and c != 0x25 else b"%%%02X" % c
                    for c in message.encode("utf-8"))


def is_grpc(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """A gRPC request (not gRPC-Web: that one gets its trailers in the body)."""
    for name, value in headers:
        if name == b"content-type":
            return value.startswith(b"application/grpc") and not value.startswith(
                b"application/grpc-web")
    return False


def local_reply(status: int, message: str, request_id: Optional[bytes],
                request_headers: Sequence[tuple[bytes, bytes]],
                ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body of a local error reply, shaped for the caller."""
    if is_grpc(request_headers):
        headers = [(b"content-type", b"application/grpc"),
                   (b"grpc-status", b"%d" % grpc_status_for(status)),
                   (b"grpc-message", percent_encode(message))]
        if request_id:
            headers.append((b"x-request-id", request_id))
        return 200, headers, b""
    headers, body = json_error(status, message, request_id)
    return status, headers, body


def json_error(status: int, message: str, request_id: Optional[bytes] = None,
               ) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers and body of a local error reply."""
    doc: dict = {"statusCode": status, "message": message}
    if request_id:
        doc["requestId"] = request_id.decode("latin-1")
    body = json.dumps(doc, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", b"%d" % len(body))]
    if request_id:
        headers.append((b"x-request-id", request_id))
    return headers, body
