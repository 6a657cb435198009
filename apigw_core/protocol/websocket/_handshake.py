"""WebSocket opening handshakes at the gateway (RFC 6455 §4, RFC 8441 §4-§5, RFC 7692 §5-§7).

Strategy.  The gateway does not answer a WebSocket request by itself: it checks the
client's request, forwards the offer to the backend in a fresh HTTP/1.1 Upgrade request,
and lets the backend's answer decide; then it checks that answer before anything is
relayed.  Three steps, each a plain function of events (no connection state):

1. `server_handshake(request)` checks the client's request, on either carrier:
   HTTP/1.1 `GET` with `Connection: upgrade`, `Upgrade: websocket` and a
   `Sec-WebSocket-Key` of 16 base64 bytes; or HTTP/2 extended CONNECT (`:protocol:
   websocket`, RFC 8441 §4), which carries no key.  `Sec-WebSocket-Version` must be 13
   (else 426 with `Sec-WebSocket-Version: 13`, §4.2.2); any other fault is 400.  It
   returns a `WebSocketOffer` (forward to the backend) or a `HandshakeRefusal` (answer it).
2. `BackendHandshake(offer).request(target, headers)` builds the Upgrade request to the
   backend with a fresh key; `check_response(head)` returns `WebSocketAccepted` only for a
   `101` whose `Sec-WebSocket-Accept` is right and whose subprotocol and extensions were
   offered (else ProtocolError 502: nothing is relayed), and None for any other answer,
   which is relayed as a plain HTTP response (the client connection stays HTTP: no
   upgrade smuggling).
3. `WebSocketAccepted.client_response()` is the answer to send to the client: 101 with the
   client's own accept value on HTTP/1.1, 200 on HTTP/2; `relay()` builds the frame relay.

Negotiation is the backend's.  Subprotocols are passed through as offered.  Extensions:
only permessage-deflate offers with valid parameters (RFC 7692 §7.1) are forwarded, because
the relay must understand every extension in use to check frames (an unknown one could give
meaning to reserved bits and opcodes); dropping an offer is how a server declines it.  The
backend's answer must be a single permessage-deflate consistent with an offer (§7.1.1-2).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Union

from wsproto.utilities import generate_accept_token

from .._errors import ProtocolError
from ..http1._body import TOKEN_RE
from ._relay import WebSocketRelay, WSLimits
from ..events import InformationalResponse, Request, Response

__all__ = [
    "WebSocketOffer",
    "HandshakeRefusal",
    "BackendHandshake",
    "WebSocketAccepted",
    "server_handshake",
    "is_websocket_request",
    "accept_value",
    "parse_extensions",
]

Headers = list[tuple[bytes, bytes]]

_PMD = b"permessage-deflate"
_VERSION = b"13"
# fields that belong to one connection or to the handshake itself: never forwarded as is
_HOP = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                  b"te", b"upgrade", b"http2-settings", b"content-length", b"trailer"))
_HANDSHAKE = frozenset((b"sec-websocket-key", b"sec-websocket-accept",
                        b"sec-websocket-version", b"sec-websocket-protocol",
                        b"sec-websocket-extensions"))
_WINDOW_BITS = re.compile(rb"(?:[89]|1[0-5])")
_LEX = re.compile(rb'[ \t]*(?:([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)|"((?:[^"\\]|\\.)*)"|([;,=]))')


def accept_value(key: bytes) -> bytes:
    """`Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2 item 5.4)."""
    return generate_accept_token(key)


def _values(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """Every element of a comma-separated field, over all its lines, stripped."""
    out: list[bytes] = []
    for n, v in headers:
        if n.lower() == name:
            out += [e.strip(b" \t") for e in v.split(b",")]
    return [e for e in out if e]


def _lines(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [v for n, v in headers if n.lower() == name]


# -- Sec-WebSocket-Extensions (RFC 6455 §9.1) -----------------------------------------------

Extension = tuple[bytes, list[tuple[bytes, Optional[bytes]]]]


def parse_extensions(values: Sequence[bytes]) -> list[Extension]:
    """Parse `Sec-WebSocket-Extensions` field values into (name, [(param, value)]) in
    order; a quoted value is unquoted.  ValueError when the syntax is wrong."""
    text = b", ".join(values)
    pos = 0
    n = len(text)
    out: list[Extension] = []
    cur: Optional[Extension] = None
    expect = "name"  # name | sep | param | eq_or_sep | value
    while pos < n:
        m = _LEX.match(text, pos)
        if m is None:
            if not text[pos:].strip(b" \t"):
                break
            raise ValueError("bad Sec-WebSocket-Extensions syntax")
        pos = m.end()
        tok, quoted, punct = m.groups()
        if expect == "name":
            if punct == b",":
                continue  # empty list element (RFC 9110 §5.6.1)
            if tok is None:
                raise ValueError("extension name expected")
            cur = (tok.lower(), [])
            out.append(cur)
            expect = "sep"
        elif expect in ("sep", "eq_or_sep"):
            if punct == b",":
                expect = "name"
            elif punct == b";":
                expect = "param"
            elif punct == b"=" and expect == "eq_or_sep":
                expect = "value"
            else:
                raise ValueError("';' or ',' expected")
        elif expect == "param":
            if tok is None:
                raise ValueError("parameter name expected")
            cur[1].append((tok.lower(), None))  # type: ignore[index]
            expect = "eq_or_sep"
        else:  # value
            if tok is not None:
                value = tok
            elif quoted is not None:
                value = re.sub(rb"\\(.)", rb"\1", quoted)
            else:
                raise ValueError("parameter value expected")
            name, _ = cur[1][-1]  # type: ignore[index]
            cur[1][-1] = (name, value)  # type: ignore[index]
            expect = "sep"
    if expect in ("param", "value"):
        raise ValueError("incomplete extension")
    return out


def _pmd_params(params: list[tuple[bytes, Optional[bytes]]], response: bool
                ) -> Optional[dict[bytes, Optional[bytes]]]:
    """permessage-deflate parameters as a dict, or None when invalid (RFC 7692 §7.1)."""
    seen: dict[bytes, Optional[bytes]] = {}
    for name, value in params:
        if name in seen:
            return None
        if name in (b"server_no_context_takeover", b"client_no_context_takeover"):
            if value is not None:
                return None
        elif name == b"server_max_window_bits":
            if value is None or not _WINDOW_BITS.fullmatch(value):
                return None
        elif name == b"client_max_window_bits":
            if value is None:
                if response:
                    return None
            elif not _WINDOW_BITS.fullmatch(value):
                return None
        else:
            return None
        seen[name] = value
    return seen


def _format_extension(name: bytes, params: dict[bytes, Optional[bytes]]) -> bytes:
    parts = [name] + [k if v is None else k + b"=" + v for k, v in params.items()]
    return b"; ".join(parts)


def _answer_fits(answer: dict[bytes, Optional[bytes]],
                 offer: dict[bytes, Optional[bytes]]) -> bool:
    """RFC 7692 §7.1.1-§7.1.2: may a server answer `offer` with `answer`?"""
    if b"server_no_context_takeover" in offer and b"server_no_context_takeover" not in answer:
        return False
    if b"server_max_window_bits" in offer:
        got = answer.get(b"server_max_window_bits")
        if got is None or int(got) > int(offer[b"server_max_window_bits"]):  # type: ignore
            return False
    if b"client_max_window_bits" in answer:
        if b"client_max_window_bits" not in offer:
            return False
        limit = offer[b"client_max_window_bits"]
        got = answer[b"client_max_window_bits"]
        if limit is not None and int(got) > int(limit):  # type: ignore[arg-type]
            return False
    return True


# -- the client's request -----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class HandshakeRefusal:
    """A WebSocket request the gateway refuses: answer `status_code` (400, 426) with
    `headers` on `stream_id`; `message` says why, for the error body and the log."""

    stream_id: int
    status_code: int
    message: str
    headers: Headers = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class WebSocketOffer:
    """A valid WebSocket request, to forward to a backend.

    `http_version` is its carrier: b"1.1" (Upgrade) or b"2" (extended CONNECT).  `key` is
    the client's Sec-WebSocket-Key (None on HTTP/2).  `subprotocols` are the offered
    tokens in order; `extensions` the permessage-deflate offers forwarded, as field values.
    """

    stream_id: int
    http_version: bytes
    key: Optional[bytes]
    subprotocols: tuple[bytes, ...] = ()
    extensions: tuple[bytes, ...] = ()

    def extension_offers(self) -> list[dict[bytes, Optional[bytes]]]:
        """The forwarded permessage-deflate offers as {parameter: value or None}."""
        return [p for _, raw in parse_extensions(list(self.extensions))
                for p in [_pmd_params(raw, False)] if p is not None]


def is_websocket_request(request: Request) -> bool:
    """True when `request` asks for a WebSocket: HTTP/1.1 Upgrade or HTTP/2 extended
    CONNECT with the `websocket` protocol."""
    if request.protocol is not None:
        return request.protocol.lower() == b"websocket"
    return request.upgrade is not None and any(
        v.lower() == b"websocket" for v in _values(request.headers, b"upgrade"))


def server_handshake(request: Request) -> Union[WebSocketOffer, HandshakeRefusal]:
    """Check a client's WebSocket request (see the module docstring): the offer to forward
    to a backend, or the refusal to answer."""
    sid = request.stream_id
    headers = request.headers

    def refuse(message: str, status: int = 400, extra: Optional[Headers] = None
               ) -> HandshakeRefusal:
        return HandshakeRefusal(sid, status, message, extra or [])

    if request.http_version == b"2":
        if request.protocol is None or request.protocol.lower() != b"websocket":
            return refuse("not an extended CONNECT for the websocket protocol")
        if request.method != b"CONNECT":
            return refuse("a WebSocket over HTTP/2 needs the CONNECT method")
    else:
        if request.http_version != b"1.1":
            return refuse("a WebSocket upgrade needs HTTP/1.1")
        if not is_websocket_request(request):
            return refuse("not an Upgrade: websocket request with Connection: upgrade")
        if request.method != b"GET":
            return refuse("a WebSocket upgrade needs the GET method")
    versions = _values(headers, b"sec-websocket-version")
    if versions != [_VERSION]:
        return refuse("unsupported Sec-WebSocket-Version", 426,
                      [(b"sec-websocket-version", _VERSION)])
    keys = _lines(headers, b"sec-websocket-key")
    key: Optional[bytes] = None
    if request.http_version == b"2":
        if keys:
            return refuse("Sec-WebSocket-Key is not used over HTTP/2 (RFC 8441 §5)")
    else:
        if len(keys) != 1:
            return refuse("missing or repeated Sec-WebSocket-Key")
        key = keys[0].strip(b" \t")
        try:
            raw = base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 16:
            return refuse("Sec-WebSocket-Key is not 16 bytes in base64")
    protocols = _values(headers, b"sec-websocket-protocol")
    if any(TOKEN_RE.fullmatch(p) is None for p in protocols):
        return refuse("bad Sec-WebSocket-Protocol")
    try:
        offers = parse_extensions(_lines(headers, b"sec-websocket-extensions"))
    except ValueError:
        return refuse("bad Sec-WebSocket-Extensions")
    forwarded = []
    for name, params in offers:
        if name == _PMD:
            p = _pmd_params(params, False)
            if p is not None:
                forwarded.append(_format_extension(name, p))
    return WebSocketOffer(sid, request.http_version, key, tuple(protocols), tuple(forwarded))


# -- towards the backend ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class WebSocketAccepted:
    """The backend accepted the WebSocket: what it chose, and its other response fields
    (`headers`: end-to-end ones such as set-cookie, to pass to the client)."""

    offer: WebSocketOffer
    subprotocol: Optional[bytes]
    extensions: Optional[bytes]
    deflate: bool
    headers: Headers

    def client_response(self) -> Union[InformationalResponse, Response]:
        """The answer to the client: HTTP/1.1 101 with the accept value of the client's own
        key, or HTTP/2 200 for extended CONNECT (RFC 8441 §5)."""
        fields: Headers = []
        if self.subprotocol is not None:
            fields.append((b"sec-websocket-protocol", self.subprotocol))
        if self.extensions is not None:
            fields.append((b"sec-websocket-extensions", self.extensions))
        fields += self.headers
        offer = self.offer
        if offer.key is None:
            return Response(offer.stream_id, 200, fields, b"2")
        return InformationalResponse(offer.stream_id, 101, [
            (b"upgrade", b"websocket"), (b"connection", b"Upgrade"),
            (b"sec-websocket-accept", accept_value(offer.key))] + fields)

    def relay(self, *, limits: Optional[WSLimits] = None,
              random: Callable[[int], bytes] = os.urandom,
              backend_stream_id: int = 1) -> WebSocketRelay:
        """The frame relay for this connection (permessage-deflate as negotiated)."""
        return WebSocketRelay(deflate=self.deflate, limits=limits, random=random,
                              client_stream_id=self.offer.stream_id,
                              backend_stream_id=backend_stream_id)


class BackendHandshake:
    """The gateway's opening handshake towards a backend, over HTTP/1.1 (RFC 6455 §4.1).

    `random` (os.urandom by default) gives the 16 bytes of the fresh Sec-WebSocket-Key."""

    def __init__(self, offer: WebSocketOffer, *,
                 random: Callable[[int], bytes] = os.urandom) -> None:
        self.offer = offer
        self.key = base64.b64encode(random(16))

    def request(self, target: bytes, headers: Sequence[tuple[bytes, bytes]], *,
                stream_id: int = 1) -> Request:
        """The Upgrade request for the backend's HTTP/1.1 connection: `headers` are the
        fields to forward (with `host`), minus hop-by-hop and handshake fields (and those
        the request's own `Connection` names), plus ours and the client's offers."""
        named = {t.lower() for t in _values(headers, b"connection")}
        fields: Headers = [(n, v) for n, v in headers
                           if (low := n.lower()) not in _HOP and low not in _HANDSHAKE
                           and low not in named and not low.startswith(b":")]
        fields += [(b"connection", b"Upgrade"), (b"upgrade", b"websocket"),
                   (b"sec-websocket-key", self.key), (b"sec-websocket-version", _VERSION)]
        offer = self.offer
        if offer.subprotocols:
            fields.append((b"sec-websocket-protocol", b", ".join(offer.subprotocols)))
        if offer.extensions:
            fields.append((b"sec-websocket-extensions", b", ".join(offer.extensions)))
        return Request(stream_id, b"GET", target, fields, b"1.1", upgrade=b"websocket")

    def check_response(self, head: Union[InformationalResponse, Response]
                       ) -> Optional[WebSocketAccepted]:
        """The backend's answer to `request()`: WebSocketAccepted for a valid 101; None
        for any other answer, to relay as HTTP.  ProtocolError(502) for a 101 that is not
        a valid acceptance of this offer: the backend connection must then be closed."""
        if not (isinstance(head, InformationalResponse) and head.status_code == 101):
            return None
        headers = head.headers

        def bad(msg: str) -> ProtocolError:
            return ProtocolError(f"bad WebSocket answer from the backend: {msg}",
                                 status_hint=502, stream_id=head.stream_id)

        if not any(v.lower() == b"websocket" for v in _values(headers, b"upgrade")):
            raise bad("101 without Upgrade: websocket")
        if not any(v.lower() == b"upgrade" for v in _values(headers, b"connection")):
            raise bad("101 without Connection: upgrade")
        accepts = _lines(headers, b"sec-websocket-accept")
        if len(accepts) != 1 or accepts[0].strip(b" \t") != accept_value(self.key):
            raise bad("wrong Sec-WebSocket-Accept")
        protocols = _lines(headers, b"sec-websocket-protocol")
        subprotocol: Optional[bytes] = None
        if protocols:
            subprotocol = protocols[0].strip(b" \t")
            if len(protocols) != 1 or subprotocol not in self.offer.subprotocols:
                raise bad("a subprotocol that was not offered")
        ext_lines = _lines(headers, b"sec-websocket-extensions")
        try:
            answer = parse_extensions(ext_lines)
        except ValueError:
            raise bad("bad Sec-WebSocket-Extensions") from None
        deflate = False
        if answer:
            if len(answer) != 1 or answer[0][0] != _PMD:
                raise bad("an extension that was not offered")
            params = _pmd_params(answer[0][1], True)
            if params is None or not any(_answer_fits(params, o)
                                         for o in self.offer.extension_offers()):
                raise bad("permessage-deflate parameters that do not fit the offer")
            deflate = True
        named = {t.lower() for t in _values(headers, b"connection")}
        rest = [(n, v) for n, v in headers
                if (low := n.lower()) not in _HOP and low not in _HANDSHAKE
                and low not in named]
        return WebSocketAccepted(self.offer, subprotocol,
                                 b", ".join(ext_lines) if answer else None, deflate, rest)
