"""W3C Trace Context (https://www.w3.org/TR/trace-context/): `traceparent`, `tracestate`.

Strategy.  Pure functions over a request's header list (lower-case names), no I/O and no
randomness of their own: the caller passes the new span id (and a trace id for a trace
it starts), so the rules are checked in unit tests.  A valid client `traceparent` is
kept (its trace id and flags; the gateway's hop gets a new parent id), a malformed or
all-zero one is replaced by a new trace, and its `tracestate` dropped with it (§3.3: a
vendor's state means nothing without its parent).  Version 00 is parsed strictly
(exactly 55 characters, lower-case hex); a higher version is read by its first four
fields, as §4.3 asks of a future version.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["parse_traceparent", "forward_trace", "TraceContext"]

_HEX = frozenset(b"0123456789abcdef")
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16


def _hex(b: bytes) -> bool:
    return _HEX.issuperset(b)


def parse_traceparent(value: bytes) -> Optional[tuple[bytes, bytes, bytes]]:
    """(trace id, parent id, flags) of a valid `traceparent`, else None."""
    value = value.strip(b" \t")
    if len(value) < 55 or value[2:3] != b"-" or value[35:36] != b"-" or value[52:53] != b"-":
        return None
    version, trace, parent, flags = value[:2], value[3:35], value[36:52], value[53:55]
    if not (_hex(version) and _hex(trace) and _hex(parent) and _hex(flags)):
        return None
    if version == b"ff" or trace == _ZERO_TRACE or parent == _ZERO_SPAN:
        return None
    if version == b"00" and len(value) != 55:
        return None
    if len(value) > 55 and value[55:56] != b"-":   # a future version's extra fields
        return None
    return trace, parent, flags


class TraceContext:
    """One request's place in its trace: `trace_id` (32 hex), the client's `parent_id`
    (None when the gateway started the trace), the gateway's own `span_id`, `flags`."""

    __slots__ = ("trace_id", "parent_id", "span_id", "flags")

    def __init__(self, trace_id: bytes, parent_id: Optional[bytes], span_id: bytes,
                 flags: bytes) -> None:
        self.trace_id, self.parent_id, self.span_id, self.flags = \
            trace_id, parent_id, span_id, flags

    def traceparent(self) -> bytes:
        """The header the gateway sends (to the backend, and on its own answers)."""
        return b"00-%s-%s-%s" % (self.trace_id, self.span_id, self.flags)


def forward_trace(headers: list[tuple[bytes, bytes]], span_id: bytes,
                  new_trace_id: bytes, new_flags: bytes = b"00") -> TraceContext:
    """Read the client's trace context from `headers` and rewrite them in place for the
    next hop: `traceparent` with the gateway's `span_id` as parent (the client's trace
    id kept when it was valid, else `new_trace_id` and `new_flags`: 00, or 01 when the
    caller's sampler records the trace it starts), `tracestate` kept only with a valid
    parent.  Duplicate `traceparent` fields are invalid (§3.2.1): replaced."""
    tp_at = -1
    dup = False
    states: list[int] = []
    for i, (name, _) in enumerate(headers):
        if name[:5] == b"trace":       # cheap first test: most requests carry neither
            if name == b"traceparent":
                if tp_at >= 0:
                    dup = True
                else:
                    tp_at = i
            elif name == b"tracestate":
                states.append(i)
    parsed = parse_traceparent(headers[tp_at][1]) if tp_at >= 0 and not dup else None
    if parsed is not None:
        trace, parent, flags = parsed
        ctx = TraceContext(trace, parent, span_id, flags)
        headers[tp_at] = (b"traceparent", ctx.traceparent())
        return ctx
    ctx = TraceContext(new_trace_id, None, span_id, new_flags)
    if tp_at >= 0 or states:
        headers[:] = [h for h in headers if h[0] != b"traceparent" and h[0] != b"tracestate"]
    headers.append((b"traceparent", ctx.traceparent()))
    return ctx
