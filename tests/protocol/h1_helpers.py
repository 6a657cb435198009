"""Shared helpers for the protocol tests: feeding, Data coalescing, in-memory pairs."""

from __future__ import annotations

from apigw_core.protocol import Data, ProtocolError
from apigw_core.protocol.events import Event


def merge_data(events: list[Event]) -> list[Event]:
    """Coalesce consecutive Data events of one stream: only their concatenation is
    meaningful, how bytes arrive decides the split."""
    out: list[Event] = []
    for ev in events:
        if (isinstance(ev, Data) and out and isinstance(out[-1], Data)
                and out[-1].stream_id == ev.stream_id):
            out[-1] = Data(ev.stream_id, out[-1].data + ev.data)
        elif isinstance(ev, Data) and not ev.data:
            continue
        else:
            out.append(ev)
    return out


def feed(conn, chunks, eof: bool = False):
    """Feed chunks; return (merged events, ProtocolError or None).  Stops at the first
    error, keeping the events returned before it (also those returned with a pending
    error, which the next call raises)."""
    events: list[Event] = []
    try:
        for chunk in chunks:
            if chunk:
                events += conn.receive_data(chunk)
        if eof:
            events += conn.receive_data(b"")
        if getattr(conn, "pending_error", None) is not None:
            conn.receive_data(b"x")
    except ProtocolError as exc:
        return merge_data(events), exc
    return merge_data(events), None


def bytewise(data: bytes) -> list[bytes]:
    return [data[i:i + 1] for i in range(len(data))]
