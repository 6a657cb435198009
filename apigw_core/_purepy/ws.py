"""Pure-Python twin of native/src/ws.c: WebSocket masking and incremental UTF-8 checking.

Same results as the C functions (``apigw_core.native`` exports whichever is in use), states
included: between code points the UTF-8 state is 0, inside one it is
``need | lo << 8 | hi << 16`` (``need`` continuation bytes still to come, the next one in
``lo..hi``); INVALID (-1) once the bytes cannot be UTF-8 (RFC 3629: no overlong forms, no
surrogates, nothing above U+10FFFF).  See native/include/apigw/ws.h.

Masking here is four strided ``bytes.translate`` calls (one per key byte), or one big-int
XOR for short payloads; the crossover was measured at about 2 KiB.  UTF-8 is checked with
CPython's strict decoder, which rejects a bad prefix of an unfinished code point as the C
code does; only the bytes of a code point cut between pieces go through the byte machine.
"""

from __future__ import annotations

from codecs import utf_8_decode
from typing import Optional, Union

__all__ = ["INVALID", "mask", "mask_into", "utf8", "mask_utf8_into"]

Buffer = Union[bytes, bytearray, memoryview]

INVALID = -1
_CONT = 0x80 << 8 | 0xBF << 16
_XOR = [bytes(a ^ b for a in range(256)) for b in range(256)]


def _rotate(key: bytes, phase: int) -> bytes:
    if len(key) != 4:
        raise ValueError("a masking key is 4 bytes")
    phase &= 3
    return key[phase:] + key[:phase] if phase else key


def mask(data: Buffer, key: bytes, phase: int = 0) -> bytes:
    """`data` XOR `key` repeated, starting at key byte `phase` (RFC 6455 §5.3)."""
    key = _rotate(bytes(key), phase)
    n = len(data)
    if n <= 2048:  # one big-int XOR beats four translates on short payloads
        k = key * ((n >> 2) + 1)
        return (int.from_bytes(data, "little")
                ^ int.from_bytes(k[:n], "little")).to_bytes(n, "little")
    data = bytes(data)
    out = bytearray(n)
    out[0::4] = data[0::4].translate(_XOR[key[0]])
    out[1::4] = data[1::4].translate(_XOR[key[1]])
    out[2::4] = data[2::4].translate(_XOR[key[2]])
    out[3::4] = data[3::4].translate(_XOR[key[3]])
    return bytes(out)


def mask_into(buf: bytearray, off: int, data: Buffer, key: bytes, phase: int = 0) -> None:
    """Writes mask(data, key, phase) into buf[off:off + len(data)]."""
    n = len(data)
    if off < 0 or off + n > len(buf):
        raise ValueError("mask_into: destination too small")
    buf[off:off + n] = mask(data, key, phase)


def _lead(b: int) -> int:
    if 0xC2 <= b <= 0xDF:
        return 1 | _CONT
    if b == 0xE0:
        return 2 | 0xA0 << 8 | 0xBF << 16
    if b == 0xED:
        return 2 | 0x80 << 8 | 0x9F << 16
    if 0xE1 <= b <= 0xEF:
        return 2 | _CONT
    if b == 0xF0:
        return 3 | 0x90 << 8 | 0xBF << 16
    if b == 0xF4:
        return 3 | 0x80 << 8 | 0x8F << 16
    if 0xF1 <= b <= 0xF3:
        return 3 | _CONT
    return 0


def _state_ok(st: int) -> bool:
    need, lo, hi = st & 0xFF, (st >> 8) & 0xFF, (st >> 16) & 0xFF
    return st == 0 or (1 <= need <= 3 and lo >= 0x80 and hi <= 0xBF and lo <= hi
                       and not st >> 24)


def _step(st: int, data: bytes) -> int:
    """The byte machine over all of `data` (short: the ends of a cut code point)."""
    for b in data:
        if st:
            if b < (st >> 8) & 0xFF or b > st >> 16:
                return INVALID
            need = (st & 0xFF) - 1
            st = need | _CONT if need else 0
        elif b >= 0x80:
            st = _lead(b)
            if not st:
                return INVALID
    return st


def utf8(state: int, data: Buffer, key: Optional[bytes] = None, phase: int = 0,
         final: bool = False) -> int:
    """Checks `data` (unmasked with `key` from `phase` first, when given) as the next piece
    of a text message in `state`; `final`: the message ends here.  The new state, or
    INVALID."""
    if key is not None and len(key) != 4:
        raise ValueError("a masking key is 4 bytes")
    if state < 0 or not _state_ok(state):
        return INVALID
    if key is not None:
        data = mask(data, key, phase)
    elif data.__class__ is not bytes:
        data = bytes(data)
    st = state
    i = 0
    n = len(data)
    while st and i < n:  # finish the code point the last piece cut
        st = _step(st, data[i:i + 1])
        if st < 0:
            return INVALID
        i += 1
    if i < n:
        rest = data[i:] if i else data
        if not rest.isascii():
            try:
                _, used = utf_8_decode(rest, "strict", False)
            except UnicodeDecodeError:
                return INVALID
            st = _step(0, rest[used:])  # at most 3 bytes of a code point still coming
            if st < 0:
                return INVALID
    if final and st:
        return INVALID
    return st


def mask_utf8_into(state: int, buf: bytearray, off: int, data: Buffer,
                   vkey: Optional[bytes], okey: bytes, phase: int = 0,
                   final: bool = False) -> int:
    """utf8(state, data, vkey, phase, final) and, when that is not INVALID,
    mask_into(buf, off, data, okey, phase): one pass in C."""
    n = len(data)
    if off < 0 or off + n > len(buf):
        raise ValueError("mask_utf8_into: destination too small")
    if len(okey) != 4:
        raise ValueError("a masking key is 4 bytes")
    st = utf8(state, data, vkey, phase, final)
    if st >= 0:
        mask_into(buf, off, data, okey, phase)
    return st
