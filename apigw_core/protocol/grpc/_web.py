"""gRPC-Web <-> gRPC translation (doc/PROTOCOL-WEB.md), sans-IO.

Strategy.  A `GrpcWebTranslator` stands between a gRPC-Web client (any HTTP version) and a
gRPC backend for one call, and rewrites events: `to_backend(event)` and `to_client(event)`
each take one neutral event and return the events to pass on, in order.

Towards the backend: `content-type: application/grpc-web[-text][+sub]` becomes
`application/grpc[+sub]`, `te: trailers` is added; the body of `-text` requests is base64
that may be cut anywhere (not on 4-character boundaries) and may carry padding between
messages (each client flush pads), so `Base64Decoder` keeps the 0-3 characters of an open
quantum between chunks and decodes padded segments one by one; `content-length` is dropped
for `-text` (the decoded body is shorter).  Characters outside the base64 alphabet or
misplaced padding raise `GrpcError(INTERNAL, 400)`.

Towards the client, once the backend answered 200 with a gRPC content-type: the
content-type becomes the gRPC-Web one (`-text` when the request was `-text` or its `accept`
asks for it), `content-length` goes (the body grows), and the backend's trailers become the
gRPC-Web trailer frame appended to the body: flag 0x80, 4-byte length, then
`name: value\\r\\n` lines, lower-case names.  For `-text` every body chunk is base64-encoded
on its own, with padding: the spec allows padding at any flush, and this never holds back
the last bytes of a streamed message waiting for the next one (at most 3 characters of
overhead per chunk).  A trailers-only answer passes as it is (the status stays in the
headers, which the spec allows).  Any other answer (non-200, non-gRPC content-type) passes
untouched: the gRPC-Web client maps the HTTP status itself.  Message framing is not
checked here; run the translated body through `MessageDecoder` for that.

`web_request_body` and `parse_web_response` are the client side, for tests and tools.
"""

from __future__ import annotations

import binascii
from dataclasses import replace
from typing import Iterable, Optional, Sequence

from ._framing import GrpcMessage, encode_message
from ._headers import GrpcCall, Wire, wire_of
from ._status import GrpcError, StatusCode
from ..events import Data, EndOfMessage, Event, Request, Response

__all__ = [
    "GrpcWebTranslator",
    "Base64Decoder",
    "encode_trailer_frame",
    "web_request_body",
    "parse_web_response",
    "TRAILER_FLAG",
]

TRAILER_FLAG = 0x80
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_a2b = binascii.a2b_base64


def _b2a(data: bytes) -> bytes:
    return binascii.b2a_base64(data, newline=False)


def _bad(message: str) -> GrpcError:
    return GrpcError(StatusCode.INTERNAL, message, status_hint=400)


class Base64Decoder:
    """Incremental decoder of a grpc-web-text body: chunks cut anywhere, padding allowed at
    the end of any 4-character quantum (a flush), nothing else but the base64 alphabet."""

    __slots__ = ("_rest",)

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, data: bytes) -> bytes:
        buf = self._rest + data if self._rest else data
        cut = len(buf) & ~3
        self._rest = buf[cut:]
        return self._decode(buf[:cut]) if cut else b""

    def end(self) -> bytes:
        """The body ended: decode what is left (an unpadded last quantum of 2-3
        characters is accepted; 1 is not base64)."""
        rest, self._rest = self._rest, b""
        if not rest:
            return b""
        if len(rest) == 1 or b"=" in rest:
            raise _bad("grpc-web-text body ends inside a base64 quantum")
        return self._decode(rest + b"=" * (4 - len(rest)))

    @staticmethod
    def _decode(body: bytes) -> bytes:
        if body.translate(None, _ALPHABET):
            if body.translate(None, _ALPHABET + b"="):
                raise _bad("grpc-web-text body is not base64")
            return Base64Decoder._padded(body)
        return _a2b(body)

    @staticmethod
    def _padded(body: bytes) -> bytes:
        out = []
        start = 0
        pos = body.find(b"=")
        while pos != -1:
            end = (pos | 3) + 1  # end of the quantum holding the first '='
            k = pos & 3  # its data characters: 2 or 3, then only '='
            if k < 2 or body[pos:end] != b"=="[:4 - k]:
                raise _bad("misplaced base64 padding in grpc-web-text body")
            out.append(_a2b(body[start:end]))
            start = end
            pos = body.find(b"=", start)
        if start < len(body):
            out.append(_a2b(body[start:]))
        return b"".join(out)


def encode_trailer_frame(trailers: Sequence[tuple[bytes, bytes]]) -> bytes:
    """The gRPC-Web trailer frame: 0x80, length, `name: value\\r\\n` lines."""
    payload = b"".join([n.lower() + b": " + v + b"\r\n" for n, v in trailers])
    return bytes((TRAILER_FLAG,)) + len(payload).to_bytes(4, "big") + payload


def _with_type(headers: Sequence[tuple[bytes, bytes]], ctype: bytes,
               drop: frozenset) -> list[tuple[bytes, bytes]]:
    out = [h for h in headers if h[0] not in drop]
    out.append((b"content-type", ctype))
    return out


_DROP_REQ_BIN = frozenset((b"content-type", b"te"))
_DROP_REQ_TEXT = frozenset((b"content-type", b"te", b"content-length"))
_DROP_RESP = frozenset((b"content-type", b"content-length"))


class GrpcWebTranslator:
    """One gRPC-Web call in both directions (see the module docstring).

    Make it from the `GrpcCall` that `check_request` returned for a gRPC-Web request, and
    the request head itself (for its `accept`)."""

    __slots__ = ("call", "text_request", "text_response", "_b64", "_translating")

    def __init__(self, call: GrpcCall, request: Optional[Request] = None) -> None:
        if call.wire is Wire.GRPC:
            raise ValueError("GrpcWebTranslator is for gRPC-Web calls")
        self.call = call
        self.text_request = call.wire is Wire.GRPC_WEB_TEXT
        accept = b""
        if request is not None:
            accept = b",".join(v for n, v in request.headers if n == b"accept").lower()
        self.text_response = self.text_request or b"application/grpc-web-text" in accept
        self._b64 = Base64Decoder() if self.text_request else None
        self._translating = False

    # -- client -> backend -----------------------------------------------------------------

    def request_head(self, request: Request) -> Request:
        """The native gRPC request head for the backend (HTTP/2, `te: trailers`)."""
        sub = self.call.subtype
        ctype = b"application/grpc+" + sub if sub else b"application/grpc"
        headers = _with_type(request.headers, ctype,
                             _DROP_REQ_TEXT if self.text_request else _DROP_REQ_BIN)
        headers.append((b"te", b"trailers"))
        return replace(request, headers=headers, http_version=b"2")

    def to_backend(self, event: Event) -> list[Event]:
        """Translate one client event (Request, Data, EndOfMessage; others pass)."""
        t = type(event)
        if t is Request:
            return [self.request_head(event)]  # type: ignore[arg-type]
        b64 = self._b64
        if b64 is None:
            return [event]
        if t is Data:
            data = b64.feed(event.data)  # type: ignore[attr-defined]
            return [Data(event.stream_id, data)] if data else []  # type: ignore[attr-defined]
        if t is EndOfMessage:
            data = b64.end()
            if data:
                return [Data(event.stream_id, data), event]  # type: ignore[attr-defined]
        return [event]

    # -- backend -> client -----------------------------------------------------------------

    def response_content_type(self, backend_ctype: Optional[bytes] = None) -> bytes:
        """The gRPC-Web content-type to answer with (subtype from the backend's answer,
        else from the request)."""
        found = wire_of(backend_ctype)
        sub = found[1] if found is not None and found[0] is Wire.GRPC else self.call.subtype
        base = b"application/grpc-web-text" if self.text_response else b"application/grpc-web"
        return base + b"+" + sub if sub else base

    def to_client(self, event: Event) -> list[Event]:
        """Translate one backend event (Response, Data, EndOfMessage; others pass)."""
        t = type(event)
        if t is Response:
            ctype = None
            for n, v in event.headers:  # type: ignore[attr-defined]
                if n == b"content-type":
                    ctype = v
            found = wire_of(ctype)
            if event.status_code != 200 or found is None or found[0] is not Wire.GRPC:  # type: ignore[attr-defined]
                self._translating = False
                return [event]
            self._translating = True
            headers = _with_type(event.headers, self.response_content_type(ctype),  # type: ignore[attr-defined]
                                 _DROP_RESP)
            return [replace(event, headers=headers)]  # type: ignore[type-var]
        if not self._translating:
            return [event]
        if t is Data:
            if not self.text_response:
                return [event]
            data = event.data  # type: ignore[attr-defined]
            return [Data(event.stream_id, _b2a(data))] if data else []  # type: ignore[attr-defined]
        if t is EndOfMessage:
            trailers = event.trailers  # type: ignore[attr-defined]
            if not trailers:
                return [event]
            frame = encode_trailer_frame(trailers)
            if self.text_response:
                frame = _b2a(frame)
            sid = event.stream_id  # type: ignore[attr-defined]
            return [Data(sid, frame), EndOfMessage(sid)]
        return [event]


# -- the client side, for tests and tools ----------------------------------------------------

def web_request_body(messages: Iterable[bytes], text: bool = False) -> bytes:
    """A gRPC-Web request body carrying `messages` (base64 for grpc-web-text)."""
    body = b"".join(encode_message(m) for m in messages)
    return _b2a(body) if text else body


def parse_web_response(body: bytes, text: bool = False
                       ) -> tuple[list[GrpcMessage], list[tuple[bytes, bytes]]]:
    """(messages, trailers) of a whole gRPC-Web response body.  GrpcError(INTERNAL) when
    it is malformed (bad base64, cut frame, data after the trailer frame)."""
    if text:
        dec = Base64Decoder()
        body = dec.feed(body) + dec.end()
    messages: list[GrpcMessage] = []
    trailers: Optional[list[tuple[bytes, bytes]]] = None
    i, n = 0, len(body)
    while i < n:
        if trailers is not None:
            raise _bad("gRPC-Web data after the trailer frame")
        if n - i < 5:
            raise _bad("gRPC-Web body ends inside a frame header")
        flag, size = body[i], int.from_bytes(body[i + 1:i + 5], "big")
        i += 5
        if n - i < size:
            raise _bad("gRPC-Web body ends inside a frame")
        payload = body[i:i + size]
        i += size
        if flag & TRAILER_FLAG:
            trailers = []
            for line in payload.split(b"\r\n"):
                if line:
                    name, colon, value = line.partition(b":")
                    if not colon:
                        raise _bad("malformed gRPC-Web trailer line")
                    trailers.append((name.strip().lower(), value.strip()))
        elif flag > 1:
            raise _bad(f"invalid gRPC-Web frame flag 0x{flag:02x}")
        else:
            messages.append(GrpcMessage(payload, flag == 1))
    return messages, trailers or []
