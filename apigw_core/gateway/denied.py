"""`Denied`: a gateway decision to answer now instead of forwarding, as data.

The sans-IO deciders (operation matching, subscription access, later the policies) return
one of these; the runtime turns it into a local reply (APIM's JSON body, or a trailers-only
gRPC status) through the one local-reply path.  `reason` is APIM's error reason, which the
pipeline exposes as `last-error.reason` (`OperationNotFound`, `SubscriptionKeyNotFound`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Denied"]


@dataclass(frozen=True, slots=True)
class Denied:
    """An answer the gateway makes itself: status, APIM reason and message, extra headers."""

    status: int
    reason: str
    message: str
    headers: tuple[tuple[bytes, bytes], ...] = ()
