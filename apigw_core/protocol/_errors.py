"""The two exceptions of the protocol layer (h11's split).

`ProtocolError`: the *peer* broke the protocol.  It carries the answer to put on the wire:
`status_hint` (an HTTP status: 400, 413, 414, 431, 501, 505 for a bad request; 502 for a bad
backend response), optionally an HTTP/2 `error_code`, and the `stream_id` it concerns when
known.  Connections raise it only from `receive_data`, and nothing else ever escapes
`receive_data`.

`UsageError`: *our own* code misused a connection (sending a Response twice, more body bytes
than the Content-Length it declared, ...).  It is a bug, never the peer's fault, and is raised
only from `send` and friends.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["ProtocolError", "UsageError"]


class ProtocolError(Exception):
    """The peer sent something the protocol forbids; answer with `status_hint`."""

    def __init__(self, message: str, *, status_hint: int = 400,
                 error_code: Optional[int] = None, stream_id: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_hint = status_hint
        self.error_code = error_code
        self.stream_id = stream_id

    def __repr__(self) -> str:
        return (f"ProtocolError({self.message!r}, status_hint={self.status_hint}, "
                f"error_code={self.error_code}, stream_id={self.stream_id})")


class UsageError(Exception):
    """Our own code used a connection object in a way its state does not allow."""
