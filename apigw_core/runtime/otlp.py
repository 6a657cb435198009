"""OTLP protobuf encoding of our spans, by hand: the few fields we send, as wire bytes.

Strategy.  The SDK's OTLP encoder builds message objects attribute by attribute in
Python: ~160 µs for a request's two spans on the 2-core VM, more than the whole proxy hop.
Our spans have one fixed shape (trace.proto's Span: ids, name, kind, times, string / int
attributes, events, status), so the exporter (runtime/otel.py) joins each span from
constant field prefixes, the ids, the times and attribute blocks it caches, and an
export is those spans joined under one ResourceSpans / ScopeSpans.  Field numbers
are opentelemetry-proto's (trace/v1/trace.proto, common/v1/common.proto); the tests decode
what we send with opentelemetry-proto's own classes.

`span_entry` is the pure-Python twin of native/src/otlp.c's `apigw_otlp_span` (through
`native.otlp_span`): one span from its hex ids, name field, kind, times and the encoded
attribute and tail blocks, and `span_into` the twin with its signature, writing into a bytearray.
"""

from __future__ import annotations

import struct
from binascii import unhexlify
from typing import Any, Optional

__all__ = ["span", "request", "resource", "field", "attributes", "event", "status_error",
           "span_field", "span_entry", "span_into"]

_pack_q = struct.Struct("<Q").pack
_times = struct.Struct("<BQBQ").pack     # start (field 7), end (field 8): fixed64
_U64 = 1 << 64
SERVER, CLIENT = 2, 3          # Span.SpanKind
STATUS_ERROR = 2               # Status.StatusCode


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _len(field: int, data: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _value(v: Any) -> bytes:          # AnyValue
    if isinstance(v, bool):
        return b"\x10" + (b"\x01" if v else b"\x00")
    if isinstance(v, int):
        return b"\x18" + _varint(v & 0xFFFFFFFFFFFFFFFF)
    if isinstance(v, float):
        return b"\x21" + struct.pack("<d", v)
    return _len(1, str(v).encode("utf-8", "replace"))


_KV: dict = {}          # (field, key, value) -> encoded KeyValue: most repeat every request
_KV_MAX = 4096


def _attrs(field: int, attrs: dict) -> bytes:
    out = []
    kv = _KV
    for k, v in attrs.items():
        key = (field, k, v)
        b = kv.get(key)
        if b is None:
            b = _len(field, _len(1, k.encode()) + _len(2, _value(v)))
            if len(kv) >= _KV_MAX:   # bounded: unique values (paths) must not grow it
                kv.clear()
            kv[key] = b
        out.append(b)
    return b"".join(out)


def field(number: int, data: bytes) -> bytes:
    """A length-delimited field (bytes, string, embedded message)."""
    return _len(number, data)


def attributes(number: int, attrs: dict) -> bytes:
    """`attrs` as repeated KeyValue fields `number` (Span 9, Event 3, Resource 1)."""
    return _attrs(number, attrs)


def event(time_ns: int, name: str, attrs: dict) -> bytes:
    """A Span.events field (11)."""
    return _len(11, b"\x09" + _pack_q(time_ns) + _len(2, name.encode()) + _attrs(3, attrs))


def status_error(message: str) -> bytes:
    """A Span.status field (15): STATUS_CODE_ERROR with `message`."""
    return _len(15, _len(2, message.encode("utf-8", "replace")) + b"\x18\x02")


_SPAN_HEAD: dict = {}    # body length -> tag and length varint (spans are a few sizes)


def span_field(body: bytes) -> bytes:
    """A Span message's encoded fields as a ScopeSpans.spans field (2), ready to join."""
    n = len(body)
    head = _SPAN_HEAD.get(n)
    if head is None:
        head = _SPAN_HEAD[n] = b"\x12" + _varint(n)   # bounded by the largest span
    return head + body


def _ns(t: float, off_ns: float) -> int:
    v = t * 1e9 + off_ns
    if not 0 <= v < _U64:      # NaN fails too
        raise ValueError(f"time out of range: {t!r}")
    return int(v)


def _id(hex_id: bytes, n: int) -> bytes:
    if len(hex_id) != n:
        raise ValueError(f"an id of {n} hex digits expected: {hex_id!r}")
    return unhexlify(hex_id)    # binascii.Error (a ValueError) when not hex


def span_entry(trace_hex: bytes, span_hex: bytes, parent_hex: Optional[bytes], name: bytes,
               kind: int, start: float, end: float, off: float, attrs: bytes,
               tail: bytes) -> bytes:
    """One span as a ScopeSpans.spans field: the twin of `native.otlp_span`.

    Ids in hex (32, 16, 16 digits; `parent_hex` None or empty: no parent); `name` the
    Span.name field already encoded (`field(5, ...)`); `kind` Span.kind (< 128); times in
    seconds plus `off`, the offset to Unix time (nanoseconds: int(t * 1e9 + off * 1e9));
    `attrs` (Span.attributes fields) and `tail` (events, status) are copied.  ValueError
    for a bad id or kind, or a time whose nanoseconds are not a uint64.
    """
    if not 0 <= kind < 128:
        raise ValueError(f"span kind out of range: {kind!r}")
    off_ns = off * 1e9
    parts = [b"\x0a\x10", _id(trace_hex, 32), b"\x12\x08", _id(span_hex, 16)]
    if parent_hex:
        parts += (b"\x22\x08", _id(parent_hex, 16))
    parts += (name, bytes((0x30, kind)),
              _times(0x39, _ns(start, off_ns), 0x41, _ns(end, off_ns)), attrs, tail)
    return span_field(b"".join(parts))


E_SPACE, E_INPUT = -1, -2       # native.OTLP_E_SPACE, native.OTLP_E_INPUT


def span_into(buf: bytearray, off: int, cap: int, trace_hex: bytes, trace_n: int,
              span_hex: bytes, span_n: int, parent_hex: bytes, parent_n: int, name: bytes,
              name_n: int, kind: int, start: float, end: float, off_s: float, attrs: bytes,
              attrs_n: int, tail: bytes, tail_n: int) -> int:
    """`native.otlp_span`'s twin, its signature and results: `span_entry` written at
    buf[off:], the bytes written, E_SPACE (nothing written) or E_INPUT."""
    try:
        b = span_entry(trace_hex[:trace_n], span_hex[:span_n], parent_hex[:parent_n],
                       name[:name_n], kind, start, end, off_s, attrs[:attrs_n],
                       tail[:tail_n])
    except ValueError:
        return E_INPUT
    n = len(b)
    if off + n > cap:
        return E_SPACE
    buf[off:off + n] = b
    return n


def pair_parts(name: bytes, attrs: bytes, tail: bytes, cname: bytes, cattrs: bytes,
               ctail: bytes) -> bytes:
    """`pair_into`'s parts: the six fields, each as a 4-byte little-endian length and its
    bytes."""
    return b"".join(len(f).to_bytes(4, "little") + f
                    for f in (name, attrs, tail, cname, cattrs, ctail))


def _split_parts(parts: bytes) -> Optional[list]:
    out, i = [], 0
    for _ in range(6):
        if len(parts) - i < 4:
            return None
        n = int.from_bytes(parts[i:i + 4], "little")
        i += 4
        if n > len(parts) - i:
            return None
        out.append(parts[i:i + n])
        i += n
    return out if i == len(parts) else None


def pair_into(buf: bytearray, off: int, cap: int, parts: bytes, parts_n: int, trace: bytes,
              span_hex: bytes, parent: bytes, cspan: bytes, start: float, end: float,
              t0: float, t1: float, off_s: float) -> int:
    """`native.otlp_pair`'s twin: a SERVER span and its one CLIENT span at buf[off:] as two
    span_into calls (ids as C sees them: up to a NUL), the bytes of both, E_SPACE or
    E_INPUT."""
    f = _split_parts(parts[:parts_n])
    if f is None:
        return E_INPUT
    trace, span_hex, parent, cspan = (x.split(b"\0", 1)[0]
                                      for x in (trace, span_hex, parent, cspan))
    tn, sn, pn, cn = len(trace), len(span_hex), len(parent), len(cspan)
    client = (trace, tn, cspan, cn, span_hex, sn, f[3], len(f[3]), CLIENT, t0, t1, off_s,
              f[4], len(f[4]), f[5], len(f[5]))
    if span_into(buf, 0, 0, *client) == E_INPUT:
        return E_INPUT
    s = span_into(buf, off, cap, trace, tn, span_hex, sn, parent, pn, f[0], len(f[0]), SERVER,
                  start, end, off_s, f[1], len(f[1]), f[2], len(f[2]))
    if s < 0:
        return s
    c = span_into(buf, off + s, cap, *client)
    return c if c < 0 else s + c


def span(trace_id: bytes, span_id: bytes, parent_id: Optional[bytes], name: str, kind: int,
         start_ns: int, end_ns: int, attrs: dict, events: tuple = (),
         error: Optional[str] = None) -> bytes:
    """One Span message (ids as raw bytes: 16 and 8; events: (time_ns, name, attrs))."""
    out = [_len(1, trace_id), _len(2, span_id)]
    if parent_id is not None:
        out.append(_len(4, parent_id))
    out.append(_len(5, name.encode("utf-8", "replace")))
    out.append(b"\x30" + _varint(kind))
    out.append(b"\x39" + _pack_q(start_ns))
    out.append(b"\x41" + _pack_q(end_ns))
    out.append(_attrs(9, attrs))
    for t, ename, eattrs in events:
        out.append(_len(11, b"\x09" + _pack_q(t) + _len(2, ename.encode()) + _attrs(3, eattrs)))
    if error is not None:
        out.append(_len(15, _len(2, error.encode("utf-8", "replace")) + b"\x18\x02"))
    return _len(2, b"".join(out))     # ScopeSpans.spans (field 2), ready to join


def resource(service_name: str, scope: str = "apigw_core") -> tuple[bytes, bytes]:
    """(Resource, InstrumentationScope) fields of every export, encoded once."""
    res = _len(1, _attrs(1, {"service.name": service_name,
                              "telemetry.sdk.language": "python"}))
    return res, _len(1, _len(1, scope.encode()))


def request(res_scope: tuple[bytes, bytes], spans: list[bytes]) -> bytes:
    """An ExportTraceServiceRequest of `spans` (each from `span`)."""
    res, scope = res_scope
    n = len(scope) + sum(map(len, spans))       # one copy of the spans: lengths first
    ss_head = b"\x12" + _varint(n)               # ResourceSpans.scope_spans
    rs = len(res) + len(ss_head) + n            # ExportTraceServiceRequest.resource_spans
    return b"".join([b"\x0a", _varint(rs), res, ss_head, scope, *spans])
