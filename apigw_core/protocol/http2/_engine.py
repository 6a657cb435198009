"""The HTTP/2 engine: h2's H2Connection with our frame reader, limits and flood guards.

Strategy.  h2 keeps the RFC 9113 state machines (streams, settings, flow-control windows,
HPACK); this subclass changes only what h2 gets wrong for a gateway, each in one place:

- Frame reading (`receive`) is ours, not h2's FrameBuffer: a frame whose header declares
  more than SETTINGS_MAX_FRAME_SIZE is refused as soon as its 9-byte header is in (h2
  buffers the whole body first: up to 16 MiB per connection); the first frame must be
  SETTINGS (§3.4); a header block may span at most `max_continuation_frames` CONTINUATION
  frames and `max_header_list_size` bytes (CVE-2024-27316); every frame passes the flood
  counters below before h2 sees it; and the events of the frames before a connection error
  are returned with the error instead of being lost.
- Header sizes (RFC 9113 §10.5.1): over `max_header_list_size` is a flood (below); the
  soft limits (`H2Limits.max_header_section`) are the wrapper's, which reads each block's
  decoded §6.5.2 size from its h2 event (`header_size`, set here) instead of recounting.
- Stream-level errors stay stream-level (RFC 9113 §5.4.2, §8.1.1): h2 turns a wrong
  content-length or trailers without END_STREAM into a connection error; here the
  content-length is checked by the connection wrapper and such trailers reset one stream.
  A HEADERS frame beyond SETTINGS_MAX_CONCURRENT_STREAMS (or after our GOAWAY) is refused
  with RST_STREAM(REFUSED_STREAM) after its block is decoded (HPACK state must advance);
  h2 would tear the whole connection down.  HPACK decoding errors are COMPRESSION_ERROR
  (§4.3), not h2's PROTOCOL_ERROR.
- A GOAWAY with NO_ERROR, sent or received, is graceful (§6.8): streams up to its last
  stream id go on.  h2 moves to CLOSED and refuses every later frame.
- Closed streams leave `streams` as soon as they close, so counting open streams is
  `len(streams)` instead of h2's walk over every stream on every new stream.
- `_receive_frame` without h2's `repr(frame)` per frame (computed even when not logged);
  HPACK coding (`_hpack`), streams, state machines and the HEADERS paths (`_fast`)
  are swapped for equivalents without h2's per-call overheads.  An HPACK bomb (a block
  decoding to more than `max_header_list_size`) stays h2's ENHANCE_YOUR_CALM.

Flood guards (each raises ENHANCE_YOUR_CALM: GOAWAY, then ProtocolError), defaults from
Envoy's http2_protocol_options and nghttp2:
- CONTINUATION: > `max_continuation_frames` (8, nghttp2 1.61) per header block, or more
  block bytes than `max_header_list_size`;
- empty frames: more than `max_consecutive_empty_frames` (1, Envoy) DATA/HEADERS/
  CONTINUATION frames in a row with no payload and no END_STREAM;
- PRIORITY: more than `max_priority_frames_per_stream` (100, Envoy) x (1 + streams opened);
- WINDOW_UPDATE: more than 5 + 2 x (streams opened + `max_window_updates_per_data_frame`
  (10, Envoy) x DATA frames we sent);
- outbound queue: more than `max_outbound_frames` (10000, Envoy) frames, or more than
  `max_outbound_control_frames` (1000, Envoy) PING/SETTINGS ACKs and RST_STREAMs, waiting
  for the driver to take them with `data_to_send()` -- a peer that provokes replies and
  never reads them (PING and SETTINGS floods) stops here;
- rapid reset is counted by the connection wrapper (it knows which streams did work).
"""

from __future__ import annotations

from typing import Optional

from h2 import events as h2e
from h2.connection import (
    AllowedStreamIDs,
    ConnectionInputs,
    ConnectionState,
    H2Connection,
    H2ConnectionStateMachine,
    _decode_headers,
)
from h2.errors import ErrorCodes
from h2.exceptions import DenialOfServiceError, FlowControlError, FrameTooLargeError
from h2.exceptions import ProtocolError as H2ProtocolError
from h2.exceptions import StreamClosedError, StreamIDTooLowError, TooManyStreamsError
from h2.settings import SettingCodes, Settings
from h2.stream import H2Stream, StreamClosedBy, StreamState
from hpack import HPACKError
from hyperframe.exceptions import InvalidDataError, InvalidFrameError, InvalidPaddingError
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from ._fast import (FastConfig, FastConnectionStateMachine, FastStream, FastStreamStateMachine,
                    RawData, RawFrame, quick_frame)
from ._hpack import FastDecoder, FastEncoder
from ._limits import H2Limits

__all__ = ["H2Limits", "Engine", "PREFACE", "Calm"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

_RESET_MEMORY = 1000  # recently reset stream ids remembered, to never reset twice


class Calm(H2ProtocolError):
    """A flood guard tripped: GOAWAY(ENHANCE_YOUR_CALM)."""

    error_code = ErrorCodes.ENHANCE_YOUR_CALM


class _CompressionError(H2ProtocolError):
    error_code = ErrorCodes.COMPRESSION_ERROR


class _FrameSizeError(H2ProtocolError):
    error_code = ErrorCodes.FRAME_SIZE_ERROR


_CONTROL_REPLIES = (PingFrame, SettingsFrame, RstStreamFrame)
_SEND_HEADERS = ConnectionInputs.SEND_HEADERS
_SEND_DATA = ConnectionInputs.SEND_DATA
_RECV_HEADERS = ConnectionInputs.RECV_HEADERS
_REMOTE_OPEN = (StreamState.OPEN, StreamState.HALF_CLOSED_LOCAL)
_IWS = SettingCodes.INITIAL_WINDOW_SIZE
_MCS = SettingCodes.MAX_CONCURRENT_STREAMS


def max_streams(settings: Settings) -> int:
    """settings.max_concurrent_streams (2**32 + 1 while unset, as h2's) without its
    MutableMapping.get, a few Python frames per call: read on every stream opened."""
    values = settings._settings.get(_MCS)
    value = values[0] if values else None
    return 2**32 + 1 if value is None else value
# An open connection stays as it is on HEADERS and DATA (h2's table: no side effect), so
# the per-message state-machine call is skipped in these states (checked here, at import).
_SERVER_OPEN, _CLIENT_OPEN = ConnectionState.SERVER_OPEN, ConnectionState.CLIENT_OPEN
assert all(H2ConnectionStateMachine._transitions[(s, i)] == (None, s)
           for s in (_SERVER_OPEN, _CLIENT_OPEN)
           for i in (_SEND_HEADERS, _SEND_DATA, _RECV_HEADERS))


class Engine(H2Connection):
    """See the module docstring.  The connection wrapper reads `refused`, `opened`,
    `goaway_sent` and `goaway_received`; the rest is h2's."""

    def __init__(self, client_side: bool, limits: H2Limits) -> None:
        super().__init__(FastConfig(client_side))
        self.state_machine.__class__ = FastConnectionStateMachine
        self._our_parity = int(client_side)
        self._our_ids = AllowedStreamIDs(client_side)
        self._peer_ids = AllowedStreamIDs(not client_side)
        self.limits = limits
        self.encoder = FastEncoder()
        self.decoder = FastDecoder()
        initial = {
            SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
            SettingCodes.MAX_HEADER_LIST_SIZE: (limits.max_header_list_size
                                                if limits.max_header_section is None
                                                else limits.max_header_section),
            SettingCodes.INITIAL_WINDOW_SIZE: limits.initial_stream_window,
            SettingCodes.MAX_FRAME_SIZE: limits.max_frame_size,
            SettingCodes.HEADER_TABLE_SIZE: limits.header_table_size,
        }
        if client_side:
            initial[SettingCodes.ENABLE_PUSH] = 0
        elif limits.enable_connect_protocol:
            initial[SettingCodes.ENABLE_CONNECT_PROTOCOL] = 1
        self.local_settings = Settings(client=client_side, initial_values=initial)
        self.max_inbound_frame_size = limits.max_frame_size
        self.decoder.max_header_list_size = limits.max_header_list_size
        self.decoder.max_allowed_table_size = limits.header_table_size
        self._rbuf = b""
        self._preface = b"" if client_side else PREFACE
        self._first = True          # the peer's first frame must be SETTINGS
        self._block: Optional[Frame] = None   # a header block waiting for CONTINUATION
        self._block_parts: list[bytes] = []
        self._block_len = 0
        self._empty = 0             # consecutive frames with no payload, no END_STREAM
        self._priority = 0
        self._window_updates = 0
        self.opened = 0             # streams the peer opened (server) / we opened (client)
        self.data_frames_sent = 0
        self.out_frames = 0         # frames queued since the last data_to_send()
        self._reset_sent: dict[int, None] = {}  # streams we reset (oldest first, bounded)
        self.out_control = 0
        self.refused = 0            # streams refused for concurrency
        self.goaway_sent: Optional[int] = None      # graceful GOAWAY: its last stream id
        self.goaway_received: Optional[int] = None
        self.failed = False         # we sent GOAWAY with an error: nothing more goes out

    def start(self, settings_header: Optional[bytes] = None, upgrade: bool = False) -> None:
        """Queue our preface (and open the connection window to its configured size)."""
        if upgrade:
            self.initiate_upgrade_connection(settings_header)
            if 1 in self.streams:
                self.streams[1].__class__ = FastStream
                self.streams[1].state_machine.__class__ = FastStreamStateMachine
                self.opened = 1
        else:
            self.initiate_connection()
        extra = self.limits.initial_connection_window - 65535
        if extra > 0:
            self.increment_flow_control_window(extra)

    # -- bookkeeping overrides -----------------------------------------------------------

    # h2's stream creation and HEADERS paths, in h2's order, without per-call enum
    # constructions and logging; streams are FastStreams (see _fast).

    def _begin_new_stream(self, stream_id: int, allowed_ids: AllowedStreamIDs) -> H2Stream:
        outbound = stream_id % 2 == self._our_parity
        highest = (self.highest_outbound_stream_id if outbound
                   else self.highest_inbound_stream_id)
        if stream_id <= highest:
            raise StreamIDTooLowError(stream_id, highest)
        if stream_id % 2 != int(allowed_ids):
            raise H2ProtocolError("Invalid stream ID for peer.")
        s = FastStream(stream_id, config=self.config,  # (settings read without 2 calls)
                       inbound_window_size=self.local_settings._settings[_IWS][0],
                       outbound_window_size=self.remote_settings._settings[_IWS][0])
        s.state_machine.__class__ = FastStreamStateMachine
        s.max_outbound_frame_size = self.max_outbound_frame_size
        self.streams[stream_id] = s
        if outbound:
            self.highest_outbound_stream_id = stream_id
        else:
            self.highest_inbound_stream_id = stream_id
        self.opened += 1
        return s

    def send_headers(self, stream_id: int, headers: list, end_stream: bool = False,
                     priority_weight: Optional[int] = None,
                     priority_depends_on: Optional[int] = None,
                     priority_exclusive: Optional[bool] = None) -> None:
        if not (priority_weight is None and priority_depends_on is None
                and priority_exclusive is None):
            # our frames are built as bytes (_fast.RawFrame); we never prioritise
            raise NotImplementedError("sending PRIORITY information (RFC 9113 §5.3.2)")
        stream = self.streams.get(stream_id)
        if stream is None:
            max_open = max_streams(self.remote_settings)
            if self.open_outbound_streams + 1 > max_open:
                raise TooManyStreamsError(f"Max outbound streams is {max_open}")
            self.state_machine.process_input(_SEND_HEADERS)
            stream = self._begin_new_stream(stream_id, self._our_ids)
        else:
            sm = self.state_machine
            if sm.state is not _SERVER_OPEN and sm.state is not _CLIENT_OPEN:
                sm.process_input(_SEND_HEADERS)
        self._prepare_for_sending(stream.send_headers(headers, self.encoder, end_stream))

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False,
                  pad_length: Optional[int] = None) -> None:
        """h2's send_data (same checks, same order) without its logging; no padding."""
        if pad_length is not None:
            raise NotImplementedError("padding what we send")
        n = len(data)
        stream = self.streams.get(stream_id)
        if stream is None:
            stream = self._get_stream_by_id(stream_id)  # raises as h2 does
        window = min(self.outbound_flow_control_window, stream.outbound_flow_control_window)
        if n > window and n > 0:
            raise FlowControlError(f"Cannot send {n} bytes, flow control window is {window}")
        if n > self.max_outbound_frame_size:
            raise FrameTooLargeError(f"Cannot send frame size {n}, max frame size is "
                                     f"{self.max_outbound_frame_size}")
        sm = self.state_machine
        if sm.state is not _SERVER_OPEN and sm.state is not _CLIENT_OPEN:
            sm.process_input(_SEND_DATA)
        self._prepare_for_sending(stream.send_data(data, end_stream))
        self.outbound_flow_control_window -= n

    def _receive_headers_frame(self, frame: HeadersFrame) -> tuple[list, list]:
        sid = frame.stream_id
        stream = self.streams.get(sid)
        if stream is None:
            max_open = self.local_settings._settings[_MCS][0]  # always set (__init__)
            # h2's open_inbound_streams, as _open_streams counts them (no property calls)
            if (0 if self._our_parity else len(self.streams)) + 1 > max_open:
                raise TooManyStreamsError(f"Max inbound streams is {max_open}")
        headers = _decode_headers(self.decoder, frame.data)
        size = self.decoder.last_size
        sm = self.state_machine
        events = ([] if sm.state is _SERVER_OPEN or sm.state is _CLIENT_OPEN
                  else sm.process_input(_RECV_HEADERS))
        if stream is None:
            stream = self._begin_new_stream(sid, self._peer_ids)
        flags = frame.flags._flags  # hyperframe's Flags: its set, without __contains__
        frames, stream_events = stream.receive_headers(headers, "END_STREAM" in flags, None)
        if stream_events:
            stream_events[0].header_size = size  # the wrapper's soft limits read it
        if "PRIORITY" in flags:
            _, p_events = self._receive_priority_frame(frame)
            stream_events[0].priority_updated = p_events[0]
            stream_events.extend(p_events)
        return frames, events + stream_events

    def _open_streams(self, remainder: int) -> int:
        # Closed streams are reaped as they close (`reap`), and we never push (server) nor
        # accept pushes (client): every stream left is open and of the peer's parity on a
        # server, of ours on a client.
        return len(self.streams) if remainder == 1 else 0

    def reap(self, stream_id: int) -> None:
        """Forget `stream_id` if it is closed (h2 keeps how it closed, for late frames)."""
        s = self.streams.get(stream_id)
        if s is not None and s.state_machine.state is StreamState.CLOSED:
            del self.streams[stream_id]
            self._closed_streams[stream_id] = s.state_machine.stream_closed_by

    def _prepare_for_sending(self, frames: list) -> None:
        if not frames or self.failed:
            return  # nothing follows our GOAWAY for an error
        if len(frames) == 1:
            f = frames[0]
            c = f.__class__
            if c is RawFrame or c is RawData:  # our HEADERS / DATA (bytes already)
                if c is RawData:
                    self.data_frames_sent += 1
                self.out_frames += 1
                self._data_to_send += f.raw
                return
        for f in frames:
            c = f.__class__
            if c is DataFrame or c is RawData:
                self.data_frames_sent += 1
            elif c is RstStreamFrame:
                sid = f.stream_id
                if sid in self._reset_sent:
                    # h2 answers a late frame on a stream we reset with another
                    # RST_STREAM; RFC 9113 §5.1: such frames are ignored (and a second
                    # reset of a closed stream upsets some clients, curl among them)
                    frames = [x for x in frames if x is not f]
                    continue
                self._reset_sent[sid] = None
                if len(self._reset_sent) > _RESET_MEMORY:
                    del self._reset_sent[next(iter(self._reset_sent))]
            elif c in _CONTROL_REPLIES:
                self.out_control += 1
        if not frames:
            return
        self.out_frames += len(frames)
        self._data_to_send += b"".join([f.serialize() for f in frames])

    def data_to_send(self, amount: Optional[int] = None) -> bytes:
        self.out_frames = self.out_control = 0
        data = self._data_to_send
        if not data:
            return b""
        self._data_to_send = bytearray()
        return bytes(data)

    # -- graceful GOAWAY -------------------------------------------------------------------

    def goaway(self, error_code: int, last_stream_id: Optional[int], debug: bytes) -> None:
        last = self.highest_inbound_stream_id if last_stream_id is None else last_stream_id
        if error_code:
            self.close_connection(error_code, debug or None, last)
            self.failed = True
            return
        if self.goaway_sent is not None:
            last = min(last, self.goaway_sent)  # never raise it again (§6.8)
        self.goaway_sent = last
        self._prepare_for_sending([GoAwayFrame(0, last_stream_id=last, error_code=0,
                                               additional_data=debug)])

    def _receive_goaway_frame(self, frame: GoAwayFrame) -> tuple[list, list]:
        if frame.error_code:
            return super()._receive_goaway_frame(frame)
        ev = h2e.ConnectionTerminated()
        ev.error_code = ErrorCodes.NO_ERROR
        ev.last_stream_id = frame.last_stream_id
        ev.additional_data = frame.additional_data or None
        prev = self.goaway_received
        self.goaway_received = (frame.last_stream_id if prev is None
                                else min(prev, frame.last_stream_id))
        return [], [ev]

    # -- receiving ---------------------------------------------------------------------------

    def receive(self, data: bytes) -> tuple[list, Optional[H2ProtocolError]]:
        """Feed bytes; return (h2 events, the connection error met or None).  On an error
        the GOAWAY is queued and the events of the frames before it are returned."""
        events: list = []
        try:
            if self._preface:
                k = min(len(self._preface), len(data))
                if data[:k] != self._preface[:k]:
                    raise H2ProtocolError("invalid connection preface")
                self._preface = self._preface[k:]
                data = data[k:]
            buf = self._rbuf + data if self._rbuf else data
            n = len(buf)
            pos = 0
            mv = memoryview(buf)
            try:
                while n - pos >= 9:
                    length = (buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2]
                    if length > self.max_inbound_frame_size:
                        raise FrameTooLargeError(
                            f"frame of {length} bytes > SETTINGS_MAX_FRAME_SIZE")
                    end = pos + 9 + length
                    if end > n:
                        break
                    frame = quick_frame(buf, pos, end)  # DATA, HEADERS: no pad, no priority
                    if frame is None:
                        try:
                            frame, _ = Frame.parse_frame_header(mv[pos:pos + 9])
                        except InvalidDataError as exc:  # stream id wrong for the type
                            raise H2ProtocolError(f"invalid frame: {exc}") from exc
                        try:
                            frame.parse_body(mv[pos + 9:end])
                        except InvalidFrameError as exc:
                            if buf[pos + 3] == 2 and self._stream_known(frame.stream_id):
                                # PRIORITY of the wrong size: a stream error (§6.3)
                                self.reset_if_open(frame.stream_id, ErrorCodes.FRAME_SIZE_ERROR)
                                pos = end
                                continue
                            raise _FrameSizeError(f"bad frame size: {exc}") from exc
                        except (InvalidDataError, InvalidPaddingError) as exc:
                            if frame.__class__ is SettingsFrame:  # an ACK with a payload
                                raise _FrameSizeError(f"invalid frame: {exc}") from exc
                            raise H2ProtocolError(f"invalid frame: {exc}") from exc
                    pos = end
                    frame = self._guard(frame, length)
                    if frame is not None:
                        events += self._receive_one(frame)
                        if (self.out_control > self.limits.max_outbound_control_frames
                                or self.out_frames > self.limits.max_outbound_frames):
                            raise Calm("outbound frame queue over its cap (peer not reading)")
            finally:
                mv.release()
            self._rbuf = buf[pos:] if pos < n else b""
        except H2ProtocolError as exc:
            self._rbuf = b""
            self._terminate_connection(exc.error_code)
            return events, exc
        return events, None

    def _stream_known(self, sid: int) -> bool:
        return bool(sid) and (sid in self.streams or sid <= max(
            self.highest_inbound_stream_id, self.highest_outbound_stream_id))

    def _terminate_connection(self, error_code: ErrorCodes) -> None:
        super()._terminate_connection(error_code)
        self.failed = True

    def reset_if_open(self, sid: int, code: int) -> None:
        """RST_STREAM `sid` unless it (or the connection) is closed already."""
        s = self.streams.get(sid)
        if (s is not None and s.state_machine.state is not StreamState.CLOSED
                and self.state_machine.state is not ConnectionState.CLOSED):
            self.reset_stream(sid, code)
        self.reap(sid)

    def _guard(self, frame: Frame, length: int) -> Optional[Frame]:
        """Flood counters and header-block assembly for one raw frame; returns the frame
        for h2 (a whole header block as one HEADERS frame), or None to wait for more."""
        c = frame.__class__
        limits = self.limits
        if self._first:
            if c is not SettingsFrame or "ACK" in frame.flags:
                raise H2ProtocolError("the connection preface must start with SETTINGS")
            self._first = False
        block = self._block
        if block is not None:
            if c is not ContinuationFrame or frame.stream_id != block.stream_id:
                raise H2ProtocolError("frame other than CONTINUATION inside a header block")
            self._block_parts.append(frame.data)
            self._block_len += len(frame.data)
            if len(self._block_parts) > limits.max_continuation_frames + 1:
                raise Calm("CONTINUATION flood: too many frames in one header block")
            if self._block_len > limits.max_header_list_size:
                raise Calm("CONTINUATION flood: header block too large")
            if "END_HEADERS" not in frame.flags:
                self._count_empty(length == 0)
                return None
            block.data = b"".join(self._block_parts)
            block.flags.add("END_HEADERS")
            self._block = None
            self._block_parts = []
            return block
        if c is DataFrame:
            self._count_empty(not frame.data and "END_STREAM" not in frame.flags)
        elif c is HeadersFrame or c is PushPromiseFrame:
            flags = frame.flags._flags  # its set, without Flags.__contains__
            if "END_HEADERS" not in flags:
                if len(frame.data) > limits.max_header_list_size:
                    raise Calm("header block too large")
                self._block = frame
                self._block_parts = [frame.data]
                self._block_len = len(frame.data)
                self._count_empty(not frame.data)
                return None
            self._count_empty(not frame.data and "END_STREAM" not in flags)
        elif c is WindowUpdateFrame:
            self._window_updates += 1
            if self._window_updates > 5 + 2 * (
                    self.opened + limits.max_window_updates_per_data_frame
                    * self.data_frames_sent):
                raise Calm("WINDOW_UPDATE flood")
        elif c is PriorityFrame:
            self._priority += 1
            if self._priority > limits.max_priority_frames_per_stream * (1 + self.opened):
                raise Calm("PRIORITY flood")
        return frame

    def _count_empty(self, empty: bool) -> None:
        if not empty:
            self._empty = 0
            return
        self._empty += 1
        if self._empty > self.limits.max_consecutive_empty_frames:
            raise Calm("flood of frames without payload")

    def _receive_one(self, frame: Frame) -> list:
        """h2's _receive_frame (minus its repr per frame), with HEADERS special cases."""
        c = frame.__class__
        sid = frame.stream_id
        if c is HeadersFrame:
            early = self._headers_special(frame)
            if early is not None:
                return early
        try:
            frames, events = self._frame_dispatch_table[c](frame)
        except StreamClosedError as e:
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = e.error_code
                self._prepare_for_sending([f])
                events = e._events
            else:
                raise
        except StreamIDTooLowError as e:
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = ErrorCodes.STREAM_CLOSED
                self._prepare_for_sending([f])
                events = []
            elif self._stream_is_closed_by_end(e.stream_id):
                raise StreamClosedError(e.stream_id) from e
            else:
                raise
        except DenialOfServiceError:
            raise
        except H2ProtocolError as e:
            if c is HeadersFrame and isinstance(e.__cause__, (HPACKError, IndexError,
                                                              TypeError, UnicodeDecodeError)):
                raise _CompressionError(str(e)) from e
            raise
        else:
            self._prepare_for_sending(frames)
        if sid:
            s = self.streams.get(sid)
            if s is not None and s.state_machine.state is StreamState.CLOSED:
                self.reap(sid)
        return events

    def _decode_block(self, frame: Frame) -> list:
        try:
            return list(_decode_headers(self.decoder, frame.data))
        except DenialOfServiceError:
            raise
        except H2ProtocolError as e:
            raise _CompressionError(str(e)) from e

    def _headers_special(self, frame: HeadersFrame) -> Optional[list]:
        """Refuse a new stream over the limits; reset a stream whose trailers lack
        END_STREAM.  None: let h2 handle the frame."""
        sid = frame.stream_id
        s = self.streams.get(sid)
        if s is None:
            if (self.config.client_side or sid % 2 == 0
                    or sid <= self.highest_inbound_stream_id):
                return None  # h2 raises the right connection/stream error
            refuse = (len(self.streams) >= self.local_settings._settings[_MCS][0]
                      or (self.goaway_sent is not None and sid > self.goaway_sent))
            if not refuse:
                return None
            if "PRIORITY" in frame.flags and frame.depends_on == sid:
                return None  # h2: depends on itself
            self._decode_block(frame)
            self.highest_inbound_stream_id = sid
            self._closed_streams[sid] = StreamClosedBy.SEND_RST_STREAM
            f = RstStreamFrame(sid)
            f.error_code = ErrorCodes.REFUSED_STREAM
            self._prepare_for_sending([f])
            if self.goaway_sent is None or sid <= self.goaway_sent:
                self.refused += 1
            return []
        sm = s.state_machine
        if (sm.headers_received and sm.state in _REMOTE_OPEN
                and "END_STREAM" not in frame.flags):
            # trailers without END_STREAM: malformed (§8.1), one stream's problem
            self._decode_block(frame)
            self.reset_stream(sid, ErrorCodes.PROTOCOL_ERROR)
            self.reap(sid)
            return [h2e.StreamReset(stream_id=sid, error_code=ErrorCodes.PROTOCOL_ERROR,
                                    remote_reset=False)]
        return None
