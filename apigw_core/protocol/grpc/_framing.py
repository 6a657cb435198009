"""gRPC length-prefixed messages: an incremental decoder, the encoder, and message hooks.

Wire format (doc/PROTOCOL-HTTP2.md, Length-Prefixed-Message): a 1-byte Compressed-Flag
(0 or 1), a 4-byte big-endian Message-Length, then the message.  The body of a gRPC request
or response is a sequence of them, cut into `Data` events anywhere, headers included.

Strategy.  `MessageDecoder.feed(chunk)` first finishes what the previous chunk left open
(up to 4 header bytes, or the payload bytes still due), then runs a tight loop over the
messages that lie whole inside the chunk (one `struct.unpack_from` each), then opens the
message the chunk ends inside, if any.  Nothing is copied unless someone wants the bytes:
with `collect=False` and an observer that does not ask for data (the gateway relaying a
stream it only counts), a chunk costs one header parse per message and no allocation.  When
bytes are wanted, a payload that lies inside one chunk is one slice (the chunk itself when
the chunk is exactly that payload, as when each DATA frame carries one message after its
header came alone); a payload spread over chunks is kept as memoryviews of them and joined
once at its end: one copy, however it was split.

Errors raise `GrpcError` with the status grpc-go uses, before anything is buffered:
a flag other than 0/1 -> INTERNAL; a compressed message (flag 1) when the stream has no
`grpc-encoding` (or `identity`) -> INTERNAL; a message longer than `max_message_size`
(default 4 MiB, gRPC's default receive limit; counted on the wire, i.e. compressed) ->
RESOURCE_EXHAUSTED, known from the header alone; `end()` inside a message -> INTERNAL.
After an error the decoder is dead: every later call raises the same error.

`MessageObserver` is the hook for policies: per direction it counts messages and payload
bytes and remembers the largest; `on_message(size, compressed, data)` is called for each
message, with `data` None unless the observer was made with `want_data=True` (only then
are payload bytes assembled).  A callback may raise `GrpcError` to reject the call.
"""

from __future__ import annotations

from dataclasses import dataclass
from struct import Struct
from typing import Callable, Optional

from .._errors import UsageError
from ._status import GrpcError, StatusCode

__all__ = [
    "GrpcMessage",
    "MessageDecoder",
    "MessageObserver",
    "encode_message",
    "message_header",
    "DEFAULT_MAX_MESSAGE_SIZE",
]

DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024
_HEAD = Struct(">BI")
_unpack_from = _HEAD.unpack_from
_MAX_LEN = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class GrpcMessage:
    """One decoded message: its bytes as sent (still compressed when `compressed`)."""

    data: bytes
    compressed: bool = False


_M_DATA = GrpcMessage.__dict__["data"].__set__
_M_COMP = GrpcMessage.__dict__["compressed"].__set__


def _new_message(data: bytes, compressed: bool) -> GrpcMessage:
    # as events._new_*: object.__new__ + slot descriptors, ~40% cheaper than __init__
    m = object.__new__(GrpcMessage)
    _M_DATA(m, data)
    _M_COMP(m, compressed)
    return m


OnMessage = Callable[[int, bool, Optional[bytes]], None]


class MessageObserver:
    """Counts the messages of one direction of one call (see the module docstring)."""

    __slots__ = ("count", "total_bytes", "largest", "on_message", "want_data")

    def __init__(self, on_message: Optional[OnMessage] = None, *,
                 want_data: bool = False) -> None:
        self.count = 0
        self.total_bytes = 0
        self.largest = 0
        self.on_message = on_message
        self.want_data = want_data

    def __repr__(self) -> str:
        return (f"MessageObserver(count={self.count}, total_bytes={self.total_bytes}, "
                f"largest={self.largest})")


def message_header(size: int, compressed: bool = False) -> bytes:
    """The 5-byte prefix of a message of `size` bytes (to send before the payload without
    copying it)."""
    if not 0 <= size <= _MAX_LEN:
        raise UsageError(f"gRPC message length {size} out of range")
    return _HEAD.pack(1 if compressed else 0, size)


def encode_message(data: bytes, compressed: bool = False) -> bytes:
    """One length-prefixed message."""
    return message_header(len(data), compressed) + data


class MessageDecoder:
    """Incremental decoder of one direction of one call.  `feed(chunk)` returns the messages
    completed by `chunk` (always [] when `collect=False`); `end()` at end of stream."""

    __slots__ = ("max_message_size", "compression", "observer", "collect", "stream_id",
                 "_hdr", "_need", "_flag", "_size", "_parts", "_assemble", "_error")

    def __init__(self, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
                 encoding: Optional[bytes] = None,
                 observer: Optional[MessageObserver] = None, collect: bool = True,
                 stream_id: Optional[int] = None) -> None:
        self.max_message_size = max_message_size
        enc = (encoding or b"").strip().lower()
        self.compression = bool(enc) and enc != b"identity"
        self.observer = observer
        self.collect = collect
        self.stream_id = stream_id
        self._hdr = b""           # a header cut by a chunk boundary (< 5 bytes)
        self._need = 0            # payload bytes still due for the current message
        self._flag = 0
        self._size = 0
        self._parts: Optional[list] = None  # pieces of the current payload, if assembled
        self._assemble = collect or (observer is not None and observer.want_data)
        self._error: Optional[GrpcError] = None

    @property
    def in_message(self) -> bool:
        """True between a message's first byte and its last."""
        return bool(self._hdr) or self._need > 0

    def _fail(self, code: StatusCode, message: str) -> GrpcError:
        self._error = GrpcError(code, message, stream_id=self.stream_id)
        return self._error

    def _check(self, flag: int, size: int) -> None:
        if flag > 1:
            raise self._fail(StatusCode.INTERNAL, f"invalid gRPC message flag 0x{flag:02x}")
        if flag and not self.compression:
            raise self._fail(StatusCode.INTERNAL,
                             "compressed gRPC message without grpc-encoding")
        if size > self.max_message_size:
            raise self._fail(StatusCode.RESOURCE_EXHAUSTED,
                             f"gRPC message of {size} bytes is larger than the limit "
                             f"({self.max_message_size})")

    def _done(self, flag: int, size: int, payload: Optional[bytes],
              out: list[GrpcMessage]) -> None:
        obs = self.observer
        if obs is not None:
            obs.count += 1
            obs.total_bytes += size
            if size > obs.largest:
                obs.largest = size
            if obs.on_message is not None:
                obs.on_message(size, flag == 1, payload if obs.want_data else None)
        if self.collect:
            out.append(_new_message(payload, flag == 1))  # type: ignore[arg-type]

    def feed(self, data: bytes) -> list[GrpcMessage]:
        """Take the next body chunk (bytes, not to be mutated while a message is open)."""
        if self._error is not None:
            raise self._error
        out: list[GrpcMessage] = []
        n = len(data)
        i = 0
        if self._need or self._hdr:
            i = self._resume(data, out)
            if i < 0:
                return out
        # Whole messages inside this chunk: the hot loop, one header parse per message.
        obs = self.observer
        limit = self.max_message_size
        if obs is None or (obs.on_message is None and not self.collect):
            count = total = largest = 0
            collect = self.collect
            append = out.append
            new, set_data, set_comp = object.__new__, _M_DATA, _M_COMP
            while n - i >= 5:
                flag, size = _unpack_from(data, i)
                if flag or size > limit:
                    self._check(flag, size)
                j = i + 5 + size
                if j > n:
                    break
                if collect:  # _new_message, inlined
                    m = new(GrpcMessage)
                    set_data(m, data[i + 5:j])
                    set_comp(m, flag == 1)
                    append(m)
                else:
                    count += 1
                    total += size
                    if size > largest:
                        largest = size
                i = j
            if count and obs is not None:
                obs.count += count  # type: ignore[union-attr]
                obs.total_bytes += total  # type: ignore[union-attr]
                if largest > obs.largest:  # type: ignore[union-attr]
                    obs.largest = largest  # type: ignore[union-attr]
        else:
            assemble = self._assemble
            while n - i >= 5:
                flag, size = _unpack_from(data, i)
                if flag or size > limit:
                    self._check(flag, size)
                j = i + 5 + size
                if j > n:
                    break
                self._done(flag, size, data[i + 5:j] if assemble else None, out)
                i = j
        # What is left begins a message: a cut header, or a header and part of a payload.
        if n - i < 5:
            if i < n:
                self._hdr = data[i:]
            return out
        flag, size = _unpack_from(data, i)  # (checked in the loop above)
        self._open(flag, size)
        self._take(data, i + 5, out)
        return out

    def _open(self, flag: int, size: int) -> None:
        self._flag = flag
        self._size = size
        self._need = size
        self._parts = [] if self._assemble else None

    def _take(self, data: bytes, i: int, out: list[GrpcMessage]) -> int:
        """Payload bytes of the open message from data[i:]; the index after them."""
        n = len(data)
        need = self._need
        take = n - i if n - i < need else need
        if self._assemble:
            if take == need == self._size:
                payload = data[i:i + take]  # its header came alone: one slice (or none)
            else:
                self._parts.append(memoryview(data)[i:i + take])  # type: ignore[union-attr]
                payload = None
        self._need = need = need - take
        if need:
            return n
        if self._assemble and payload is None:
            payload = b"".join(self._parts)  # type: ignore[arg-type]
        self._parts = None
        self._done(self._flag, self._size, payload if self._assemble else None, out)
        return i + take

    def _resume(self, data: bytes, out: list[GrpcMessage]) -> int:
        """Finish what an earlier chunk left open; the index to go on from, or -1 when
        this chunk is used up."""
        n = len(data)
        i = 0
        if self._hdr:
            got = self._hdr + data[:5 - len(self._hdr)]
            i = len(got) - len(self._hdr)
            if len(got) < 5:
                self._hdr = got
                return -1
            self._hdr = b""
            flag, size = _unpack_from(got)
            if flag or size > self.max_message_size:
                self._check(flag, size)
            self._open(flag, size)
            if not size:
                self._need = 0
                self._parts = None
                self._done(flag, 0, b"" if self._assemble else None, out)
                return i if i < n else -1
            if i == n:
                return -1
        i = self._take(data, i, out)
        return i if i < n and not self._need else -1

    def end(self) -> None:
        """The body ended: GrpcError(INTERNAL) if it stopped inside a message."""
        if self._error is not None:
            raise self._error
        if self._hdr:
            raise self._fail(StatusCode.INTERNAL,
                             f"gRPC stream ended inside a message header "
                             f"({len(self._hdr)} of 5 bytes)")
        if self._need:
            raise self._fail(StatusCode.INTERNAL,
                             f"gRPC stream ended inside a message "
                             f"({self._size - self._need} of {self._size} bytes)")
