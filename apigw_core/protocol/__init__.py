"""Sans-IO wire codecs: bytes in, neutral events out, and back (see events.py).

No sockets, no trio, no clocks: only the stdlib, h11/h2/wsproto and apigw_core.native may be
imported here.  Every connection object has the same three verbs: `receive_data(bytes)`
(b"" = the peer closed) returning a list of events, `send(event)`, and `data_to_send()`.

Layout: events.py, _errors.py and alpn.py here, and one sub-package per protocol
(`http1`, `http2`, `websocket`, `grpc`) whose `__init__` is its public API; the `_`
modules inside a sub-package are its implementation.
"""

from ._errors import ProtocolError, UsageError
from .events import (
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    InformationalResponse,
    Request,
    Response,
    StreamReset,
)

__all__ = [
    "ProtocolError",
    "UsageError",
    "Event",
    "Request",
    "InformationalResponse",
    "Response",
    "Data",
    "EndOfMessage",
    "StreamReset",
    "ConnectionClosed",
]
