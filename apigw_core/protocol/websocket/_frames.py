"""WebSocket wire basics for the relay (RFC 6455 §5.2, §5.3, §7.4):
opcodes, close codes and which of them may be sent, masking, and the relay's limits.

Masking is the hot loop of a relay: `mask` is `apigw_core.native.ws_mask`, SSE2 in C
(native/src/ws.c), or its pure-Python twin (big-int XOR for short payloads, four strided
`bytes.translate` calls for longer ones, about 1.2 GB/s here).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional

from ...native import ws_mask, ws_mask_into

__all__ = ["WSLimits", "valid_close_code", "wire_close_code"]

# opcodes (RFC 6455 §5.2)
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

# close codes (§7.4.1)
NORMAL, GOING_AWAY, PROTOCOL_ERROR, INVALID_DATA, TOO_BIG, INTERNAL_ERROR = (
    1000, 1001, 1002, 1007, 1009, 1011)
NO_STATUS, ABNORMAL = 1005, 1006

def valid_close_code(code: int) -> bool:
    """True for a status code a Close frame may carry (RFC 6455 §7.4; 1012-1014 are
    registered with IANA since)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def wire_close_code(code: Optional[int]) -> Optional[int]:
    """The code to put in a Close frame for a close known locally as `code` (None: a Close
    without a status code).  1005 means exactly that; 1006 (the connection dropped) becomes
    1001 going away; 1015 (TLS failure) and anything else not allowed on the wire become
    1011."""
    if code is None or code == NO_STATUS:
        return None
    if valid_close_code(code):
        return code
    if code == ABNORMAL:
        return GOING_AWAY
    return INTERNAL_ERROR


def close_payload(code: Optional[int], reason: str) -> bytes:
    code = wire_close_code(code)
    if code is None:
        return b""
    raw = reason.encode("utf-8")
    if len(raw) > 123:  # a control frame carries 125 bytes at most (§5.5)
        raw = raw[:123].decode("utf-8", "ignore").encode("utf-8")
    return code.to_bytes(2, "big") + raw


_PACK_H = struct.Struct("!BBH").pack
_PACK_Q = struct.Struct("!BBQ").pack


def frame_head(b0: int, n: int, masked: bool) -> bytes:
    """The header of a frame with first byte `b0` and an `n`-byte payload (§5.2), without
    the masking key that follows it when `masked`."""
    m = 0x80 if masked else 0
    if n < 126:
        return bytes((b0, m | n))
    if n < 0x10000:
        return _PACK_H(b0, m | 126, n)
    return _PACK_Q(b0, m | 127, n)


def mask(data: bytes, key: bytes) -> bytes:
    """XOR `data` with the 4-byte `key` repeated (§5.3): its own inverse."""
    return ws_mask(data, key)


_FRAME_INTO = 512  # from this payload size a masked frame is built in place


def masked_frame(head: bytes, payload: bytes, key: bytes) -> bytes:
    """`head` (with its masking key) followed by `payload` masked with `key`.  A large
    payload is masked straight into the frame's buffer (a bytearray then: no copy)."""
    n = len(payload)
    if n < _FRAME_INTO:
        return head + ws_mask(payload, key)
    hl = len(head)
    frame = bytearray(hl + n)
    frame[:hl] = head
    ws_mask_into(frame, hl, payload, key)
    return frame  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class WSLimits:
    """Limits of one relayed WebSocket connection, the same both ways.

    `max_frame_size`: payload bytes of one frame, checked on its header [1009].
    `max_message_size`: payload bytes of one message, after inflating a compressed one
    (the decompression-bomb cap) [1009].
    `fragment_size`: a frame still arriving is relayed in pieces of at least this many
    payload bytes (memory held per direction)."""

    max_frame_size: int = 16 << 20
    max_message_size: int = 16 << 20
    fragment_size: int = 64 << 10
