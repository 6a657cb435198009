"""WebSocket at the gateway: opening handshakes and the frame relay, sans-IO (RFC 6455,
RFC 7692 permessage-deflate, RFC 8441 WebSocket over HTTP/2).

The gateway carries a WebSocket from a client (HTTP/1.1 Upgrade or HTTP/2 extended CONNECT)
to an HTTP/1.1 WebSocket backend without terminating it: the backend negotiates, the gateway
checks, then relays frames.  How a driver uses this module:

    offer = server_handshake(request)           # the client's Request event
    if isinstance(offer, HandshakeRefusal):      # 400, or 426 + Sec-WebSocket-Version: 13
        answer it; the client connection stays HTTP
    hs = BackendHandshake(offer)                 # fresh Sec-WebSocket-Key
    backend_conn.send(hs.request(target, headers)); backend_conn.send(EndOfMessage(1))
    accepted = hs.check_response(head)           # the backend's 1xx / Response event
        None: not a 101 -> relay the response as plain HTTP
        ProtocolError(502): a 101 that is not a valid answer -> 502, close the backend
    client_conn.send(accepted.client_response())  # 101 (HTTP/1.1) or 200 (HTTP/2)
    relay = accepted.relay(limits=WSLimits(...))
    relay.client.receive_data(client_conn.trailing_data)   # HTTP/1.1; HTTP/2: Data events
    relay.backend.receive_data(backend_conn.trailing_data) # (each only if not b"": EOF)
    loop: relay.<side>.receive_data(bytes) -> [Close | ConnectionClosed], or ProtocolError
          (its error_code is the close code already queued); write
          relay.client.data_to_send() / relay.backend.data_to_send(); close a side's
          connection when relay.<side>.should_close.

The handshakes are in `_handshake`, the relay in `_relay`; each opens with its strategy.
"""

from ._handshake import (
    BackendHandshake,
    HandshakeRefusal,
    WebSocketAccepted,
    WebSocketOffer,
    accept_value,
    is_websocket_request,
    parse_extensions,
    server_handshake,
)
from ._relay import RelaySide, WebSocketRelay, WSLimits, valid_close_code, wire_close_code

__all__ = [
    "server_handshake",
    "is_websocket_request",
    "WebSocketOffer",
    "HandshakeRefusal",
    "BackendHandshake",
    "WebSocketAccepted",
    "accept_value",
    "parse_extensions",
    "WebSocketRelay",
    "RelaySide",
    "WSLimits",
    "wire_close_code",
    "valid_close_code",
]
