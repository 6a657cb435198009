"""gRPC and gRPC-Web at the protocol layer: pure functions and small state objects, no I/O.

gRPC rides on the neutral events of an HTTP/2 connection (`protocol.http2`): a `Request` head,
`Data` chunks carrying length-prefixed messages, and an `EndOfMessage` whose trailers hold
`grpc-status`.  Nothing here owns a connection; the runtime calls these pieces around the
events it already relays:

  * request heads: `check_request(request) -> GrpcCall` (wire, subtype, timeout, encoding)
    or `GrpcError` carrying the answer; `parse_timeout` / `format_timeout` /
    `with_timeout` for `grpc-timeout`; `split_path` for `/pkg.Service/Method`
    (`_headers`);
  * bodies: `MessageDecoder` (incremental, limits, one copy at most), `encode_message`,
    `message_header`, and `MessageObserver`, the per-direction hook for policies
    (`_framing`);
  * status: `StatusCode`, `GrpcError`, `status_trailers` / `parse_status`
    (`grpc-status`, percent-encoded `grpc-message`), `grpc_error_response` (the fields of
    a trailers-only answer), `status_from_backend_http` (the spec's table, for a backend's
    non-200) and `status_for_http` (the gateway's own error replies) (`_status`);
  * gRPC-Web: `GrpcWebTranslator` rewrites one call's events both ways (base64 for
    `-text`, the 0x80 trailer frame), plus `web_request_body` / `parse_web_response` for
    clients and tests (`_web`).

A typical relay of one call, in the runtime's words::

    call = grpc.check_request(req)              # GrpcError -> err.events(sid, ctype)
    web = grpc.GrpcWebTranslator(call, req) if call.web else None
    up = grpc.MessageObserver()
    dec = grpc.MessageDecoder(encoding=call.encoding, observer=up, collect=False)
    ... for each client Data: for ev in web.to_backend(d) (or [d]): dec.feed(ev.data); relay
    ... at the client's EndOfMessage: dec.end()
    ... deadline = call.deadline(now); forward with_timeout(headers, deadline - now)
    ... backend events -> web.to_client(ev) (or as they are) -> client
    ... gateway error before the answer: Response(sid, 200, grpc_error_response(
            status_for_http(502), "backend unreachable")) + EndOfMessage(sid)

`GrpcError` is a `ProtocolError`: the peer broke the gRPC protocol or a limit, and the
error says what to answer (`code`, `message`, `status_hint` = the HTTP status of the
trailers-only answer).
"""

from __future__ import annotations

from ._framing import (
    DEFAULT_MAX_MESSAGE_SIZE,
    GrpcMessage,
    MessageDecoder,
    MessageObserver,
    encode_message,
    message_header,
)
from ._headers import (
    MAX_TIMEOUT_VALUE,
    GrpcCall,
    Wire,
    check_request,
    format_timeout,
    parse_timeout,
    split_path,
    wire_of,
    with_timeout,
)
from ._status import (
    CONTENT_TYPE,
    GrpcError,
    StatusCode,
    decode_grpc_message,
    encode_grpc_message,
    grpc_error_response,
    parse_status,
    status_for_http,
    status_from_backend_http,
    status_trailers,
)
from ._web import (
    TRAILER_FLAG,
    Base64Decoder,
    GrpcWebTranslator,
    encode_trailer_frame,
    parse_web_response,
    web_request_body,
)

__all__ = [
    # status
    "StatusCode", "GrpcError", "CONTENT_TYPE", "encode_grpc_message", "decode_grpc_message",
    "status_trailers", "parse_status", "grpc_error_response", "status_from_backend_http",
    "status_for_http",
    # request heads
    "Wire", "GrpcCall", "wire_of", "check_request", "parse_timeout", "format_timeout",
    "with_timeout", "split_path", "MAX_TIMEOUT_VALUE",
    # messages
    "GrpcMessage", "MessageDecoder", "MessageObserver", "encode_message", "message_header",
    "DEFAULT_MAX_MESSAGE_SIZE",
    # gRPC-Web
    "GrpcWebTranslator", "Base64Decoder", "encode_trailer_frame", "web_request_body",
    "parse_web_response", "TRAILER_FLAG",
]
