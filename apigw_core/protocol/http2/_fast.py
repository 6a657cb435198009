"""h2 internals without their per-call overheads (same transitions, same frames).

Strategy.  Our wrapper checks and builds every field block itself, with h2's header
validation and normalisation switched off; what is left of h2's work per message is its
state machines and frame building, and these carry costs that do not depend on the
message: a Python-level `Enum.__hash__` for every (state, input) lookup (the tables are
keyed by Enum pairs), a descriptor call for every read of a configuration flag, and, per
header block, a str->bytes pass and a "validation flags" object that only fed the
validation we switched off.  The classes here keep h2's tables and semantics (the same
transitions, errors and side effects) and only remove those costs:
- `FastConfig`: H2Configuration with the options as plain class attributes;
- `FastConnectionStateMachine` / `FastStreamStateMachine`: h2's transition tables re-keyed
  by `id()` of the Enum members;
- `FastStream`: H2Stream without the content-length checks (the wrapper makes a mismatch
  a stream error, RFC 9113 §8.1.1, where h2 raises a connection error) and with
  `send_headers` / `receive_headers` minus the passes named above.
Engine swaps them in (`__class__` assignment) as streams are created.

Outbound HEADERS / CONTINUATION / DATA frames are built as bytes (`RawFrame`: the 9-byte
header and the payload) instead of hyperframe objects (each with its Flags set, Padding and
Priority mixins and a serialize pass): we never pad nor prioritise what we send, so the
bytes are the same.
"""

from __future__ import annotations

import struct

from h2 import events as h2e
from h2 import stream as h2stream
from h2.config import DummyLogger, H2Configuration
from h2.connection import ConnectionInputs, ConnectionState, H2ConnectionStateMachine
from h2.exceptions import ProtocolError as H2ProtocolError
from h2.stream import H2Stream, H2StreamStateMachine, StreamInputs, StreamState
from hyperframe.flags import Flags
from hyperframe.frame import DataFrame, HeadersFrame

__all__ = ["FastConfig", "FastConnectionStateMachine", "FastStreamStateMachine",
           "FastStream", "RawFrame", "RawData", "quick_frame"]

_HEAD = struct.Struct(">HBBBL").pack   # length (24 bits, as 16 + 8), type, flags, stream
_DATA, _HEADERS, _CONTINUATION = 0x0, 0x1, 0x9
_END_STREAM, _END_HEADERS = 0x1, 0x4


def _flag_table(cls: type) -> tuple[set, list]:
    valid = {f.name for f in cls.defined_flags}
    names = [frozenset(f.name for f in cls.defined_flags if byte & f.bit)
             for byte in range(256)]
    return valid, names


_DATA_FLAGS = _flag_table(DataFrame)
_HEADERS_FLAGS = _flag_table(HeadersFrame)


def quick_frame(buf: bytes, pos: int, end: int) -> object:
    """The DATA or HEADERS frame at buf[pos:end] (9-byte header included), as hyperframe
    would parse it, for the common case only: no PADDED, no PRIORITY flag, a stream id
    other than 0 (anything else: None, and hyperframe parses it with its checks).  The
    same attributes, without hyperframe's constructor chain (Padding, Priority, Flags
    built flag by flag)."""
    ftype = buf[pos + 3]
    fbyte = buf[pos + 4]
    if ftype > 1 or fbyte & 0x28:
        return None
    sid = int.from_bytes(buf[pos + 5:pos + 9], "big") & 0x7FFFFFFF
    if not sid:
        return None
    if ftype:
        fr = HeadersFrame.__new__(HeadersFrame)
        fr.depends_on = 0
        fr.stream_weight = 0
        fr.exclusive = False
        valid, names = _HEADERS_FLAGS
    else:
        fr = DataFrame.__new__(DataFrame)
        valid, names = _DATA_FLAGS
    fr.stream_id = sid
    fl = Flags.__new__(Flags)
    fl._valid_flags = valid   # only read (add() checks against it)
    fl._flags = set(names[fbyte])
    fr.flags = fl
    fr.pad_length = 0
    fr.body_len = end - pos - 9
    fr.data = buf[pos + 9:end]
    return fr


class RawFrame:
    """A frame we send, already serialized."""

    __slots__ = ("stream_id", "raw")

    def __init__(self, stream_id: int, raw: bytes) -> None:
        self.stream_id = stream_id
        self.raw = raw

    def serialize(self) -> bytes:
        return self.raw


class RawData(RawFrame):
    """A DATA frame we send (the engine counts them for the WINDOW_UPDATE flood guard)."""

    __slots__ = ()


def _frame(ftype: int, flags: int, sid: int, payload: bytes) -> bytes:
    n = len(payload)
    return _HEAD(n >> 8, n & 0xFF, ftype, flags, sid) + payload


class FastConfig(H2Configuration):
    """Our fixed h2 configuration, read without descriptors."""

    client_side = False
    header_encoding = None  # type: ignore[assignment]
    validate_outbound_headers = False
    normalize_outbound_headers = False
    split_outbound_cookies = False
    validate_inbound_headers = False
    normalize_inbound_headers = False

    def __init__(self, client_side: bool) -> None:  # noqa: D107 (no super: no setters)
        self.client_side = client_side
        self.logger = DummyLogger(__name__)


_CONN_T = {(id(s), id(i)): v for (s, i), v in H2ConnectionStateMachine._transitions.items()}
_STREAM_T = {(s, id(i)): v for (s, i), v in h2stream._transitions.items()}


class FastConnectionStateMachine(H2ConnectionStateMachine):
    def process_input(self, input_):  # type: ignore[no-untyped-def]
        try:
            func, target_state = _CONN_T[(id(self.state), id(input_))]
        except KeyError as e:
            if not isinstance(input_, ConnectionInputs):  # as h2: a wrong type is a bug
                raise ValueError("Input must be an instance of ConnectionInputs") from e
            old_state = self.state
            self.state = ConnectionState.CLOSED
            raise H2ProtocolError(f"Invalid input {input_} in state {old_state}") from e
        self.state = target_state
        if func is not None:  # pragma: no cover (h2 has none)
            return func()
        return []


class FastStreamStateMachine(H2StreamStateMachine):
    def process_input(self, input_):  # type: ignore[no-untyped-def]
        try:
            func, target_state = _STREAM_T[(self.state, id(input_))]
        except KeyError as err:
            if not isinstance(input_, StreamInputs):
                raise ValueError("Input must be an instance of StreamInputs") from err
            old_state = self.state
            self.state = StreamState.CLOSED
            raise H2ProtocolError(f"Invalid input {input_} in state {old_state}") from err
        previous_state = self.state
        self.state = target_state
        if func is not None:
            try:
                return func(self, previous_state)
            except H2ProtocolError:
                self.state = StreamState.CLOSED
                raise
            except AssertionError as err:  # pragma: no cover
                self.state = StreamState.CLOSED
                raise H2ProtocolError(err) from err
        return []


_SEND_HEADERS = StreamInputs.SEND_HEADERS
_SEND_INFORMATIONAL = StreamInputs.SEND_INFORMATIONAL_HEADERS
_SEND_END_STREAM = StreamInputs.SEND_END_STREAM
_RECV_HEADERS = StreamInputs.RECV_HEADERS
_RECV_INFORMATIONAL = StreamInputs.RECV_INFORMATIONAL_HEADERS
_RECV_END_STREAM = StreamInputs.RECV_END_STREAM
_SEND_DATA = StreamInputs.SEND_DATA
# DATA on a stream we may send on changes nothing (h2's table: no function, same state):
# the state-machine call is skipped there (checked here, at import)
_OPEN, _HALF_CLOSED_REMOTE = StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE
assert all(h2stream._transitions[(s, _SEND_DATA)] == (None, s)
           for s in (_OPEN, _HALF_CLOSED_REMOTE))


def _informational(headers: list) -> bool:
    """h2.utilities.is_informational_response, without a method call per field."""
    for h in headers:
        n = h[0]
        if n[:1] != b":":
            return False
        if n == b":status":
            return h[1][:1] == b"1"
    return False


class FastStream(H2Stream):
    """h2's stream without the work our wrapper does itself: content-length checks (the
    wrapper makes a mismatch a stream error, RFC 9113 §8.1.1, not h2's connection error),
    and, with h2's header validation off, the per-block passes that only fed it (str->bytes
    conversion of blocks we built from bytes, validation flags).  State transitions,
    frame building and the trailers rules are h2's, in h2's order."""

    def _initialize_content_length(self, headers: object) -> None:
        pass

    def _track_content_length(self, length: int, end_stream: bool) -> None:
        pass

    def send_headers(self, headers: list, encoder: object, end_stream: bool = False
                     ) -> list:
        # `headers`: a block from _headers (bytes, pseudo-header fields first)
        sm = self.state_machine
        input_ = _SEND_HEADERS
        if not sm.client and headers[0][0] == b":status" and headers[0][1][:1] == b"1":
            if end_stream:
                raise H2ProtocolError("Cannot set END_STREAM on informational responses.")
            input_ = _SEND_INFORMATIONAL
        sm.process_input(input_)
        block = encoder.encode(headers)  # type: ignore[attr-defined]
        mfs = self.max_outbound_frame_size
        sid = self.stream_id
        if end_stream:
            sm.process_input(_SEND_END_STREAM)
        first = _END_STREAM if end_stream else 0
        if len(block) <= mfs:
            frames: list = [RawFrame(sid, _frame(_HEADERS, first | _END_HEADERS, sid, block))]
        else:
            parts = [block[i:i + mfs] for i in range(0, len(block), mfs)]
            raw = [_frame(_HEADERS, first, sid, parts[0])]
            raw += [_frame(_CONTINUATION, 0, sid, p) for p in parts[1:-1]]
            raw.append(_frame(_CONTINUATION, _END_HEADERS, sid, parts[-1]))
            frames = [RawFrame(sid, b"".join(raw))]
        if sm.trailers_sent and not end_stream:
            raise H2ProtocolError("Trailers must have END_STREAM set.")
        if sm.client and headers[0][0] == b":method":
            self.request_method = headers[0][1]
        return frames

    def send_data(self, data: bytes, end_stream: bool = False,
                  pad_length: object = None) -> list:
        # h2's, as bytes (we never pad); flow control is checked by the engine
        sm = self.state_machine
        if sm.state is not _OPEN and sm.state is not _HALF_CLOSED_REMOTE:
            sm.process_input(_SEND_DATA)
        if data.__class__ is memoryview:
            data = data.tobytes()  # type: ignore[union-attr]
        if end_stream:
            sm.process_input(_SEND_END_STREAM)
        self.outbound_flow_control_window -= len(data)
        sid = self.stream_id
        return [RawData(sid, _frame(_DATA, _END_STREAM if end_stream else 0, sid, data))]

    def end_stream(self) -> list:
        self.state_machine.process_input(_SEND_END_STREAM)
        sid = self.stream_id
        return [RawData(sid, _HEAD(0, 0, _DATA, _END_STREAM, sid))]

    def receive_headers(self, headers: list, end_stream: bool,
                        header_encoding: object) -> tuple[list, list]:
        if _informational(headers):
            if end_stream:
                raise H2ProtocolError("Cannot set END_STREAM on informational responses")
            input_ = _RECV_INFORMATIONAL
        else:
            input_ = _RECV_HEADERS
        sm = self.state_machine
        events = sm.process_input(input_)
        headers_event = events[0]
        if end_stream:
            es_events = sm.process_input(_RECV_END_STREAM)
            headers_event.stream_ended = es_events[0]
            events += es_events
        if headers_event.__class__ is h2e.TrailersReceived and not end_stream:
            raise H2ProtocolError("Trailers must have END_STREAM set")
        headers_event.headers = headers if headers.__class__ is list else list(headers)
        return [], events
