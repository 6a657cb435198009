"""gRPC status: the codes, the error that carries one, `grpc-status`/`grpc-message`
fields, trailers-only answers, and the two HTTP -> gRPC status mappings.

Strategy.  A gRPC call ends with `grpc-status` (and optionally `grpc-message`) either in
the trailers or, for a call that fails before any message, in the only HEADERS block of the
response ("Trailers-Only", doc/PROTOCOL-HTTP2.md): `:status 200`, `content-type`,
`grpc-status`, `grpc-message`, END_STREAM.  So an error the gateway answers by itself is
always `Response(sid, 200, grpc_error_response(code, msg))` followed at once by
`EndOfMessage(sid)`; sent together, `http2.ServerConnection` puts both in one HEADERS frame
with END_STREAM, which is what gRPC clients require (a `grpc-status` in a HEADERS frame
without END_STREAM is ignored by them).

`GrpcError` is the protocol layer's `ProtocolError` for gRPC: it carries the gRPC status
`code` and `message`, and `status_hint` is the HTTP status to put on the trailers-only
answer: 200 except where the spec or grpc-go answer otherwise (415 for a non-gRPC
content-type, 405 for a method other than POST, 400 for malformed gRPC headers).

`grpc-message` is percent-encoded UTF-8 (every byte outside 0x20-0x7E, and `%`, as `%XX`).
Decoding never fails, as the spec demands: broken `%` sequences stay as they are and
invalid UTF-8 becomes U+FFFD.

Two HTTP -> gRPC tables, not to be confused:
  * `status_from_backend_http`: doc/http-grpc-status-mapping.md, for a backend (or an
    intermediary) answering a non-200 without `grpc-status`: what a gRPC client would
    synthesize itself (400/431 INTERNAL, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED,
    404 UNIMPLEMENTED, 429/502/503/504 UNAVAILABLE, anything else UNKNOWN).
  * `status_for_http`: the gateway's own local replies, which are decided as HTTP statuses
    (401 auth failed, 403 forbidden, 404 no route, 413 too large, 429 rate limited,
    502/503 backend down, 504 backend timeout, ...), turned into the gRPC status that says
    the same thing precisely (429 RESOURCE_EXHAUSTED, 504 DEADLINE_EXCEEDED, ...), as
    Envoy's local replies do for gRPC callers.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Optional, Sequence

from .._errors import ProtocolError
from ..events import EndOfMessage, Event, Response

__all__ = [
    "StatusCode",
    "GrpcError",
    "encode_grpc_message",
    "decode_grpc_message",
    "status_trailers",
    "parse_status",
    "grpc_error_response",
    "status_from_backend_http",
    "status_for_http",
    "CONTENT_TYPE",
]

CONTENT_TYPE = b"application/grpc"


class StatusCode(IntEnum):
    """The gRPC status codes (doc/statuscodes.md)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class GrpcError(ProtocolError):
    """A gRPC peer broke the protocol (or a limit): answer with gRPC status `code`.

    `status_hint` is the HTTP status of the trailers-only answer (200 unless stated);
    `headers()` / `events(stream_id)` build that answer.  Once a response has started, only
    `code` and `message` matter: they go into the trailers (`status_trailers`)."""

    def __init__(self, code: int, message: str, *, status_hint: int = 200,
                 stream_id: Optional[int] = None) -> None:
        super().__init__(message, status_hint=status_hint, stream_id=stream_id)
        self.code = StatusCode(code) if 0 <= code <= 16 else code

    def headers(self, content_type: bytes = CONTENT_TYPE) -> list[tuple[bytes, bytes]]:
        """The header fields of the trailers-only answer (without `:status`)."""
        return grpc_error_response(self.code, self.message, content_type=content_type)

    def events(self, stream_id: int, content_type: bytes = CONTENT_TYPE) -> list[Event]:
        """`Response(stream_id, status_hint, headers())` + `EndOfMessage(stream_id)`:
        send both before the next `data_to_send()` so they leave as one HEADERS frame."""
        return [Response(stream_id, self.status_hint, self.headers(content_type)),
                EndOfMessage(stream_id)]

    def __repr__(self) -> str:
        return (f"GrpcError({self.code!r}, {self.message!r}, "
                f"status_hint={self.status_hint}, stream_id={self.stream_id})")


# -- grpc-message: percent-encoded UTF-8 -------------------------------------------------

_PLAIN = bytes(range(0x20, 0x7F)).replace(b"%", b"")
_ENC_TABLE = [chr(b).encode() if b in _PLAIN else b"%%%02X" % b for b in range(256)]
_HEX = {(a + b).encode(): int(a + b, 16)
        for a in "0123456789abcdefABCDEF" for b in "0123456789abcdefABCDEF"}


def encode_grpc_message(message: str) -> bytes:
    """Percent-encode a status message for `grpc-message` (spec: Percent-Encoded)."""
    raw = message.encode("utf-8", "replace")
    if not raw.translate(None, _PLAIN):
        return raw
    t = _ENC_TABLE
    return b"".join([t[b] for b in raw])


def decode_grpc_message(value: bytes) -> str:
    """Decode a `grpc-message` value.  Never raises: broken `%` sequences stay as they are,
    invalid UTF-8 becomes U+FFFD (the spec forbids failing on a bad message)."""
    if b"%" not in value:
        return value.decode("utf-8", "replace")
    parts = value.split(b"%")
    out = bytearray(parts[0])
    for p in parts[1:]:
        b = _HEX.get(p[:2])
        if b is None:
            out += b"%"
            out += p
        else:
            out.append(b)
            out += p[2:]
    return out.decode("utf-8", "replace")


def status_trailers(code: int, message: str = "",
                    extra: Sequence[tuple[bytes, bytes]] = ()) -> list[tuple[bytes, bytes]]:
    """`grpc-status` (+ `grpc-message` when there is one) + `extra` fields, for trailers."""
    out = [(b"grpc-status", b"%d" % code)]
    if message:
        out.append((b"grpc-message", encode_grpc_message(message)))
    out.extend(extra)
    return out


def parse_status(fields: Sequence[tuple[bytes, bytes]]) -> Optional[tuple[int, str]]:
    """(code, message) from trailers or trailers-only headers; None without `grpc-status`.
    A `grpc-status` that is not a decimal number reads as UNKNOWN, as gRPC clients do."""
    code: Optional[int] = None
    message = ""
    for name, value in fields:
        if name == b"grpc-status":
            v = value.strip()
            code = int(v) if v.isdigit() and len(v) <= 9 else StatusCode.UNKNOWN
            if 0 <= code <= 16:
                code = StatusCode(code)
        elif name == b"grpc-message":
            message = decode_grpc_message(value)
    return None if code is None else (code, message)


def grpc_error_response(code: int, message: str = "", *,
                        content_type: bytes = CONTENT_TYPE) -> list[tuple[bytes, bytes]]:
    """The header fields of a trailers-only error answer, to send as
    `Response(sid, 200, fields)` + `EndOfMessage(sid)` (`:status` is the Response's)."""
    return [(b"content-type", content_type)] + status_trailers(code, message)


# -- HTTP status -> gRPC status ------------------------------------------------------------

S = StatusCode
_FROM_BACKEND = {400: S.INTERNAL, 401: S.UNAUTHENTICATED, 403: S.PERMISSION_DENIED,
                 404: S.UNIMPLEMENTED, 429: S.UNAVAILABLE, 431: S.INTERNAL,
                 502: S.UNAVAILABLE, 503: S.UNAVAILABLE, 504: S.UNAVAILABLE}

_FOR_GATEWAY = {
    # the same as gateway/replies.py's table (which may not import this layer), plus
    # 405/415/499; 405, 415 and 505 agree with what check_request answers
    400: S.INTERNAL,            # malformed request (the spec's reading of 400)
    401: S.UNAUTHENTICATED,     # missing/invalid credentials, validate-jwt
    403: S.PERMISSION_DENIED,   # forbidden, ip-filter, quota (APIM answers 403)
    404: S.UNIMPLEMENTED,       # no API / operation matches: no such method here
    405: S.INTERNAL,            # not POST (grpc-go: 405 + INTERNAL)
    408: S.DEADLINE_EXCEEDED,   # the client was too slow sending its request
    413: S.RESOURCE_EXHAUSTED,  # request (message) too large
    414: S.INTERNAL,
    415: S.INVALID_ARGUMENT,    # not a gRPC content-type (grpc-go: 415 + INVALID_ARGUMENT)
    429: S.RESOURCE_EXHAUSTED,  # rate limited
    431: S.RESOURCE_EXHAUSTED,  # metadata too large (gRPC's own answer to that)
    499: S.CANCELLED,
    500: S.INTERNAL,
    501: S.UNIMPLEMENTED,
    502: S.UNAVAILABLE,         # backend refused / unreachable / bad answer
    503: S.UNAVAILABLE,         # backend pool full, circuit open
    504: S.DEADLINE_EXCEEDED,   # backend timeout
    505: S.INTERNAL,            # native gRPC over HTTP/1.x
}
del S


def status_from_backend_http(http_status: int) -> StatusCode:
    """gRPC status for a backend's non-200 answer without `grpc-status`
    (doc/http-grpc-status-mapping.md; 200 itself is UNKNOWN there)."""
    return _FROM_BACKEND.get(http_status, StatusCode.UNKNOWN)


def status_for_http(http_status: int) -> StatusCode:
    """gRPC status for one of the gateway's own error replies, given as the HTTP status the
    gateway would answer a plain HTTP client with (auth 401 -> UNAUTHENTICATED, 403 ->
    PERMISSION_DENIED, 429 -> RESOURCE_EXHAUSTED, 404 -> UNIMPLEMENTED, 502/503 ->
    UNAVAILABLE, 504 -> DEADLINE_EXCEEDED, 413 -> RESOURCE_EXHAUSTED; other 4xx/5xx follow
    the spec's table, else UNKNOWN)."""
    code = _FOR_GATEWAY.get(http_status)
    return code if code is not None else status_from_backend_http(http_status)
