"""H2Limits: the limits of one HTTP/2 connection (both sides), read by the engine and the
connection wrapper."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

__all__ = ["H2Limits"]

_MAX_WINDOW = 2**31 - 1


@dataclass(frozen=True)
class H2Limits:
    """Limits of one HTTP/2 connection (both sides).  Defaults follow Envoy's edge-proxy
    recommendations (streams, windows) and its flood limits; `max_continuation_frames` is
    nghttp2's; `max_header_list_size` is the 64 KiB most servers use (Envoy 60 KiB, nginx
    large_client_header_buffers 4 x 8 KiB, h2 64 KiB).

    Memory bound (inbound): a stream buffers at most `initial_stream_window` bytes the
    application has not acknowledged, the connection at most `initial_connection_window`,
    plus one partial frame (`max_frame_size` + 9) and one header block
    (`max_header_list_size`).

    `max_header_section` and `max_header_fields` (None: no such limit) are the soft limits
    of a server: a request whose header section is larger (§6.5.2 size) or has more regular
    fields (after cookie crumbs are joined, as an HTTP/1.1 head would carry them) is
    answered 431 on its stream (`http2.RequestRejected`) and the connection goes on (a
    client resets the stream of a response over them).
    SETTINGS_MAX_HEADER_LIST_SIZE then announces `max_header_section`; only blocks over
    `max_header_list_size` (keep it well above, e.g. twice) are treated as a flood."""

    max_concurrent_streams: int = 100
    max_header_list_size: int = 65536
    max_header_section: Optional[int] = None
    max_header_fields: Optional[int] = None
    initial_stream_window: int = 65536
    initial_connection_window: int = 1 << 20
    max_frame_size: int = 16384
    header_table_size: int = 4096
    enable_connect_protocol: bool = False
    max_continuation_frames: int = 8
    max_consecutive_empty_frames: int = 1
    max_priority_frames_per_stream: int = 100
    max_window_updates_per_data_frame: int = 10
    max_outbound_frames: int = 10000
    max_outbound_control_frames: int = 1000
    premature_reset_total: int = 500
    premature_reset_min_lifetime: float = 1.0

    def __post_init__(self) -> None:
        if not 16384 <= self.max_frame_size <= 16777215:
            raise ValueError("max_frame_size must be in 16384..16777215 (RFC 9113 §6.5.2)")
        if not 0 <= self.initial_stream_window <= _MAX_WINDOW:
            raise ValueError("initial_stream_window must be in 0..2^31-1")
        if not 65535 <= self.initial_connection_window <= _MAX_WINDOW:
            raise ValueError("initial_connection_window must be in 65535..2^31-1")
        for name in ("max_concurrent_streams", "max_header_list_size", "header_table_size",
                     "max_continuation_frames", "max_consecutive_empty_frames",
                     "max_priority_frames_per_stream", "max_window_updates_per_data_frame",
                     "max_outbound_frames", "max_outbound_control_frames",
                     "premature_reset_total"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        section, nfields = self.max_header_section, self.max_header_fields
        if (section is not None and not 0 <= section <= self.max_header_list_size
                or nfields is not None and nfields < 0):
            raise ValueError("max_header_section must be in 0..max_header_list_size (the "
                             "flood cap), max_header_fields not negative")
