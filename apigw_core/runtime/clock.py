"""Wall-clock values for the connection drivers (the protocol layer has no clock).

Strategy.  A response gets a `Date` field when it has none (RFC 9110 §6.6.1: an origin
server with a clock sends it, and a proxy adds it to a response it forwards without one), the
gateway's own answers included.  Its IMF-fixdate text is built once per second of wall
time (formatdate costs microseconds) and shared, so a response pays one `time.time()` and a
scan of its header names.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import Sequence

__all__ = ["http_date", "with_date"]

_time = time.time
_lo = _hi = 0.0  # the second [_lo, _hi) that _text spells (a clock set back rebuilds it)
_text = b""


def http_date() -> bytes:
    """Now as an HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`), exact to the second."""
    global _lo, _hi, _text
    now = _time()
    if _lo <= now < _hi:  # no int(): the cached second costs one time() and a compare
        return _text
    _lo = float(int(now))
    _hi = _lo + 1.0
    _text = formatdate(_lo, usegmt=True).encode("ascii")
    return _text


def with_date(headers: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`headers` (lower-case names) as they are when they carry a `date`, else a copy with
    one added."""
    for name, _ in headers:
        if name == b"date":
            return headers  # type: ignore[return-value]
    return [*headers, (b"date", http_date())]
