"""Local replies: the answers the gateway makes itself (no route, backend down, ...).

`local_reply` is the one place that decides their shape; the runtime writes every one of
them through `runtime.stream.send_local_reply` (drivers, proxy, WebSocket refusals, the
pipeline's gRPC errors), and the HTTP/1.1 parser errors that have no request use it with no
request headers.

A small JSON body in APIM's shape (`{"statusCode": 404, "message": "..."}`), so a client
of APIM parses ours the same way.  The status codes follow APIM and Envoy:
404 no API matches, 502 backend refused/unreachable or sent a bad response, 503 over
capacity, 504 backend timeout, 408 client too slow, 4xx for a bad request.

A gRPC or gRPC-Web caller gets what its clients expect instead (Envoy's local replies do
the same): a trailers-only response, HTTP 200 with `grpc-status` and a percent-encoded
`grpc-message`, the status mapped from the HTTP one (no route UNIMPLEMENTED, backend down
UNAVAILABLE, timeout DEADLINE_EXCEEDED, ...).  Its content-type is the caller's own wire:
`application/grpc` for gRPC, and for gRPC-Web the request's `application/grpc-web` or
`application/grpc-web-text` with its `+subtype` (grpc-web clients reject any other type;
they read a trailers-only answer's status from its headers), with `content-length: 0`
(an HTTP/1.1 gRPC-Web answer needs framing).
"""

from __future__ import annotations

import json
from typing import Optional, Sequence

__all__ = ["json_error", "local_reply", "is_grpc", "grpc_content_type",
           "grpc_reply_headers", "grpc_status_for", "percent_encode"]

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


_GRPC = b"application/grpc"
_GRPC_WEB = (b"application/grpc-web", b"application/grpc-web-text")


def grpc_content_type(headers: Sequence[tuple[bytes, bytes]]) -> Optional[bytes]:
    """The content-type of a gateway-made answer to a gRPC or gRPC-Web request (see the
    module docstring), or None when the request is neither (it gets JSON)."""
    ctype = None
    for name, value in headers:
        if name == b"content-type":
            ctype = value  # the last one, as the gRPC checks read it
    if ctype is None:
        return None
    full = ctype.split(b";", 1)[0].strip().lower()
    base, plus, sub = full.partition(b"+")
    if base == _GRPC:
        return _GRPC
    if base in _GRPC_WEB:
        return full if plus and sub else base
    return None


def is_grpc(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """A gRPC or gRPC-Web request: gateway-made errors reach it as gRPC statuses."""
    return grpc_content_type(headers) is not None


def grpc_reply_headers(code: int, message: str,
                       request_headers: Sequence[tuple[bytes, bytes]],
                       request_id: Optional[bytes] = None) -> list[tuple[bytes, bytes]]:
    """The fields of a trailers-only answer with gRPC status `code` (sent with HTTP 200 and
    no body), in the caller's content-type."""
    ctype = grpc_content_type(request_headers) or _GRPC
    headers = [(b"content-type", ctype), (b"grpc-status", b"%d" % code)]
    if message:
        headers.append((b"grpc-message", percent_encode(message)))
    if ctype != _GRPC:
        headers.append((b"content-length", b"0"))
    if request_id:
        headers.append((b"x-request-id", request_id))
    return headers


def local_reply(status: int, message: str, request_id: Optional[bytes],
                request_headers: Sequence[tuple[bytes, bytes]],
                extra_headers: Sequence[tuple[bytes, bytes]] = (), *,
                grpc_code: Optional[int] = None,
                ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body of a local reply, shaped for the caller: APIM JSON, or a
    trailers-only answer for a gRPC / gRPC-Web caller (`grpc_code`: its status instead of
    the one `status` maps to, for a caller known to speak gRPC).  `extra_headers` (say
    WWW-Authenticate, Sec-WebSocket-Version) go after the shape's own fields."""
    if grpc_code is not None or is_grpc(request_headers):
        code = grpc_status_for(status) if grpc_code is None else grpc_code
        status, body = 200, b""
        headers = grpc_reply_headers(code, message, request_headers, request_id)
    else:
        headers, body = json_error(status, message, request_id)
    headers.extend(extra_headers)
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
