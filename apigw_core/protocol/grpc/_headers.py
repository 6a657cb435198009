"""gRPC request heads: content types, `grpc-timeout`, and the checks a request must pass.

Strategy.  `check_request` reads a neutral `Request` once and either returns a `GrpcCall`
(which wire it came on, its content-subtype, its timeout) or raises `GrpcError` carrying the
answer, in the order and with the statuses grpc-go's server uses (doc/PROTOCOL-HTTP2.md
says what a request is; grpc-go says what to answer when it is not):

  1. `content-type` not `application/grpc[+subtype]` (nor a gRPC-Web one): HTTP 415,
     INVALID_ARGUMENT (so that a non-gRPC client never mistakes a 200 for success);
  2. native gRPC over anything but HTTP/2: HTTP 505, INTERNAL (gRPC-Web is the way for
     HTTP/1.1 clients);
  3. `:method` not POST: HTTP 405, INTERNAL;
  4. native gRPC without `te: trailers` (the spec's detector of proxies that drop
     trailers): HTTP 400, INTERNAL.  Browsers cannot send `te`, so gRPC-Web is exempt;
  5. a malformed `grpc-timeout`: HTTP 400, INTERNAL.

`grpc-timeout` is 1-8 ASCII digits and a unit (H M S m u n).  Values are held as integer
nanoseconds so that parse -> format -> parse is exact; `parse_timeout` returns seconds.
`format_timeout` rounds up to the finest unit whose value fits in 8 digits (grpc-go's
choice), so a forwarded deadline is never shorter than the real one.  Time itself is never
read here: `GrpcCall.deadline(now)` takes `now` from the caller.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Optional, Sequence

from ._status import GrpcError, StatusCode
from ..events import Request

__all__ = [
    "Wire",
    "GrpcCall",
    "wire_of",
    "check_request",
    "parse_timeout",
    "format_timeout",
    "with_timeout",
    "split_path",
    "MAX_TIMEOUT_VALUE",
]

MAX_TIMEOUT_VALUE = 99_999_999  # 8 digits
_UNIT_NS = {0x48: 3600 * 10**9, 0x4D: 60 * 10**9, 0x53: 10**9,   # H M S
            0x6D: 10**6, 0x75: 10**3, 0x6E: 1}                   # m u n
_FORMAT_UNITS = ((1, b"n"), (10**3, b"u"), (10**6, b"m"), (10**9, b"S"),
                 (60 * 10**9, b"M"), (3600 * 10**9, b"H"))


class Wire(enum.Enum):
    """How a gRPC call travels: native gRPC, or gRPC-Web (binary or base64 text)."""

    GRPC = "grpc"
    GRPC_WEB = "grpc-web"
    GRPC_WEB_TEXT = "grpc-web-text"


_BASES = {b"application/grpc": Wire.GRPC, b"application/grpc-web": Wire.GRPC_WEB,
          b"application/grpc-web-text": Wire.GRPC_WEB_TEXT}


def wire_of(content_type: Optional[bytes]) -> Optional[tuple[Wire, bytes]]:
    """(wire, content-subtype) for a gRPC or gRPC-Web content-type, else None.

    `application/grpc` -> (GRPC, b""), `application/grpc+proto` -> (GRPC, b"proto"),
    `application/grpc-web-text+proto` -> (GRPC_WEB_TEXT, b"proto"); parameters after `;`
    are ignored, case too."""
    if not content_type:
        return None
    base = content_type.split(b";", 1)[0].strip().lower()
    wire = _BASES.get(base)
    if wire is not None:
        return wire, b""
    head, plus, sub = base.partition(b"+")
    wire = _BASES.get(head) if plus else None
    return None if wire is None else (wire, sub)


# -- grpc-timeout --------------------------------------------------------------------------

def _parse_timeout_ns(value: bytes) -> int:
    v = value.strip()
    unit = _UNIT_NS.get(v[-1]) if v else None
    digits = v[:-1]
    if unit is None or not 1 <= len(digits) <= 8 or not digits.isdigit():
        raise GrpcError(StatusCode.INTERNAL, f"malformed grpc-timeout: {value!r}",
                        status_hint=400)
    return int(digits) * unit


def _format_timeout_ns(ns: int) -> bytes:
    if ns <= 0:
        return b"0n"
    for size, unit in _FORMAT_UNITS:
        n = -(-ns // size)
        if n <= MAX_TIMEOUT_VALUE:
            return b"%d%s" % (n, unit)
    return b"%dH" % MAX_TIMEOUT_VALUE  # > 11,000 years: clamp


def parse_timeout(value: bytes) -> float:
    """Seconds from a `grpc-timeout` value (`b"100m"` -> 0.1).  GrpcError(INTERNAL, 400)
    when malformed: more than 8 digits, no digits, a sign, or an unknown unit."""
    return _parse_timeout_ns(value) / 1e9


def format_timeout(seconds: float) -> bytes:
    """A `grpc-timeout` value for `seconds` (rounded up to the finest unit that fits in 8
    digits; zero or less gives `0n`)."""
    if not seconds > 0:
        return b"0n"
    if seconds == float("inf"):
        return b"%dH" % MAX_TIMEOUT_VALUE
    # via the float's shortest decimal form, so that 1.1 s is 1100000000 ns, not ...001
    ns = (Decimal(repr(float(seconds))) * 1_000_000_000).to_integral_value(ROUND_CEILING)
    return _format_timeout_ns(int(ns))


def with_timeout(headers: Sequence[tuple[bytes, bytes]], seconds: Optional[float]
                 ) -> list[tuple[bytes, bytes]]:
    """`headers` with `grpc-timeout` replaced by `seconds` (or removed when None): what the
    gateway forwards once it has taken its own time out of the client's deadline."""
    out = [h for h in headers if h[0] != b"grpc-timeout"]
    if seconds is not None:
        out.append((b"grpc-timeout", format_timeout(seconds)))
    return out


def split_path(target: bytes) -> Optional[tuple[bytes, bytes]]:
    """(service, method) from a gRPC `:path` (`/pkg.Service/Method`), else None."""
    if target[:1] != b"/":
        return None
    service, slash, method = target[1:].partition(b"/")
    if not slash or not service or not method or b"/" in method or b"?" in method:
        return None
    return service, method


# -- request checks ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class GrpcCall:
    """What `check_request` learnt from a request head.

    `timeout` is in seconds (None: no `grpc-timeout`); `encoding` is `grpc-encoding`
    (None when absent), which decides whether compressed messages are allowed."""

    wire: Wire
    subtype: bytes = b""
    timeout: Optional[float] = None
    encoding: Optional[bytes] = None

    @property
    def web(self) -> bool:
        return self.wire is not Wire.GRPC

    def deadline(self, now: float) -> Optional[float]:
        """The call's deadline on the caller's clock, or None."""
        return None if self.timeout is None else now + self.timeout

    def content_type(self) -> bytes:
        """The content-type to answer this caller with (for errors and responses)."""
        base = b"application/" + self.wire.value.encode()
        return base + b"+" + self.subtype if self.subtype else base


def check_request(request: Request) -> GrpcCall:
    """Check a request head against the gRPC (or gRPC-Web) rules; see the module docstring.
    Raises GrpcError whose `status_hint` and `code` are the answer."""
    ctype = te = timeout = encoding = None
    for name, value in request.headers:
        if name == b"content-type":
            ctype = value
        elif name == b"te":
            te = value
        elif name == b"grpc-timeout":
            timeout = value
        elif name == b"grpc-encoding":
            encoding = value
    found = wire_of(ctype)
    if found is None:
        raise GrpcError(StatusCode.INVALID_ARGUMENT,
                        f"invalid gRPC request content-type {ctype!r}", status_hint=415)
    wire, subtype = found
    if wire is Wire.GRPC and request.http_version != b"2":
        raise GrpcError(StatusCode.INTERNAL, "gRPC requires HTTP/2 (or use gRPC-Web)",
                        status_hint=505)
    if request.method != b"POST":
        raise GrpcError(StatusCode.INTERNAL,
                        f"gRPC method must be POST, not {request.method!r}", status_hint=405)
    if wire is Wire.GRPC and (te is None or te.strip().lower() != b"trailers"):
        raise GrpcError(StatusCode.INTERNAL, "missing te: trailers", status_hint=400)
    seconds = None if timeout is None else parse_timeout(timeout)
    return GrpcCall(wire, subtype, seconds, encoding)
