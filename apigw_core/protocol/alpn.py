"""Choosing the protocol of a new connection: ALPN over TLS, and over cleartext either the
HTTP/2 client preface (prior knowledge, RFC 9113 §3.3) or an HTTP/1.1 `Upgrade: h2c`
request (RFC 7540 §3.2; RFC 9113 §3.1 deprecates it, curl and some gRPC stacks still send
it).  Pure functions: the runtime's listener asks, then builds the connection object.

- TLS: offer `alpn_protocols(...)` in the SSLContext, then `protocol_from_alpn(selected)`.
- cleartext: feed the first bytes to `sniff` until it answers; "h2" means build an
  `http2.ServerConnection` and feed it the same bytes, "http/1.1" an `http1` one.
- `Upgrade: h2c` arrives as an HTTP/1.1 Request with `upgrade == b"h2c"`; when
  `h2c_settings(request)` is not None, answer 101 (`Connection: Upgrade`, `Upgrade: h2c`)
  through the HTTP/1.1 connection and call `http2.ServerConnection.from_h1_upgrade`.
  Never over TLS (RFC 7540 §3.2: h2c is cleartext only).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Iterable, Optional

from .events import Request

__all__ = ["PREFACE", "H2", "HTTP11", "sniff", "protocol_from_alpn", "alpn_protocols",
           "h2c_settings"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2 = "h2"
HTTP11 = "http/1.1"
_TOKEN68 = re.compile(rb"[A-Za-z0-9\-_]*=*").fullmatch


def sniff(data: bytes) -> Optional[str]:
    """"h2" when `data` starts with the client preface, "http/1.1" when it cannot, None when
    it is a proper prefix of the preface (read more)."""
    n = min(len(data), len(PREFACE))
    if data[:n] != PREFACE[:n]:
        return HTTP11
    return H2 if n == len(PREFACE) else None


def alpn_protocols(h2: bool = True, http1: bool = True) -> list[str]:
    """What to pass to `SSLContext.set_alpn_protocols`, in our order of preference."""
    return ([H2] if h2 else []) + ([HTTP11] if http1 else [])


def protocol_from_alpn(selected: Optional[str], offered: Iterable[str] = (H2, HTTP11)
                       ) -> str:
    """The protocol to speak after a TLS handshake that selected `selected` (None: the
    client did not use ALPN, which means HTTP/1.1, RFC 7301 §3.2)."""
    if selected == H2 and H2 in offered:
        return H2
    return HTTP11


def h2c_settings(request: Request) -> Optional[bytes]:
    """The HTTP2-Settings value (base64url, padded) when `request` is a valid h2c upgrade,
    to hand to `ServerConnection.from_h1_upgrade`; else None
    (then simply go on with HTTP/1.1, RFC 7540 §3.2.1).  Valid: HTTP/1.1, `Upgrade: h2c`,
    `Connection` naming both `upgrade` and `http2-settings`, and exactly one
    `HTTP2-Settings` field holding base64url (token68) of a whole number of settings."""
    if request.upgrade != b"h2c" or request.http_version != b"1.1":
        return None
    values = [v for n, v in request.headers if n == b"http2-settings"]
    if len(values) != 1:
        return None
    tokens: set[bytes] = set()
    for n, v in request.headers:
        if n == b"connection":
            tokens.update(t.strip(b" \t").lower() for t in v.split(b","))
    if b"http2-settings" not in tokens or b"upgrade" not in tokens:
        return None
    value = values[0].strip(b" \t")
    if _TOKEN68(value) is None:
        return None
    try:
        payload = base64.urlsafe_b64decode(value + b"=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(payload) % 6:
        return None
    return value + b"=" * (-len(value) % 4)
