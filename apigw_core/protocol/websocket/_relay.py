"""WebSocket frame relay between a client and a backend, sans-IO (RFC 6455 §5-§7, RFC 7692).

Strategy.  The gateway is a WebSocket server towards the client and a WebSocket client
towards the backend, but it does not terminate messages: it relays frames, checking each
one as strictly as an endpoint would, and re-frames only what it must (masking).  Each side
(`WebSocketRelay.client`, `.backend`) parses what its peer sends and queues the frames for
the *other* side; `receive_data` returns only the events the caller cares about (`Close`,
`ConnectionClosed`), and a peer that breaks the protocol raises `ProtocolError` whose
`error_code` is the close code (1002, 1007, 1009) after the relay has queued the Close
frames for both peers.

Frames, not messages.  A data frame is relayed as soon as it is complete; a frame still
arriving is relayed in pieces once `WSLimits.fragment_size` payload bytes are held, so
memory per direction stays bounded whatever the frame or message size (RFC 6455 §5.4 lets
an intermediary that understands every negotiated extension re-fragment).  Each piece is
checked as it arrives, so invalid UTF-8 fails fast (Autobahn 6.4), and size limits are
checked on the frame header before any payload arrives.

What is enforced, per frame from either peer (close code in brackets):
- masking by direction: client frames masked, backend frames not [1002] (§5.1, §5.3);
- opcodes: no reserved ones, control frames final and at most 125 bytes [1002] (§5.5);
- fragmentation: continuation only inside a message, no new message inside one [1002];
- reserved bits: RSV1 only on the first frame of a message when permessage-deflate was
  negotiated, RSV2/RSV3 never [1002] (§5.2, RFC 7692 §6);
- minimal length encoding, 64-bit length with the top bit clear [1002] (§5.2);
- text messages are UTF-8 across frame boundaries [1007] (§8.1); close reasons too;
- close codes on the wire: 1000-1003, 1007-1014, 3000-4999 [1002] (§7.4);
- `max_frame_size`, `max_message_size` [1009]; wsproto checks neither.

permessage-deflate is passed through: the compressed frames go on unchanged (re-masked
only), so the gateway never compresses.  It still inflates every compressed message, to
check its UTF-8 and its *decompressed* size, with a `max_length` on each inflate step:
a decompression bomb stops at `max_message_size` [1009] with at most one step (64 KiB) of
output in memory; corrupt deflate data is [1007].  One inflater per direction with a
32 KiB window decodes every window size and both context-takeover modes (a sender that
resets its compressor never refers to the older history).

Control frames.  Pings and pongs are forwarded, in order with the data, so liveness checks
stay end to end; a ping that can no longer be forwarded (the other side was sent a Close)
is answered here.  `RelaySide.ping()` sends the gateway's own ping (for idle timeouts); the
matching pong is consumed, not forwarded.  A Close is forwarded with its code and reason
unchanged, so the closing handshake runs end to end (§7.1.2): the side that sent it stops
being read, and when both directions carried a Close each side reports `should_close`.
Closes the relay makes itself go through `wire_close_code`: the codes that must never be
sent (1005, 1006, 1015, out of range) are replaced.  When one peer breaks the protocol it
gets the matching close code and the other peer gets 1001 (client gone) or 1011 (backend
failed); when one peer's TCP closes without a Close (1006) the other gets 1001.

Why our own frame reader and not wsproto's `FrameProtocol` (wsproto still gives the
handshake's accept token, and is the reference peer in the tests and the benchmark): a
relay needs what wsproto does not offer: both limits, a bounded inflate, the compressed
payload to pass on (wsproto hands out only inflated data, so it would have to be
compressed again), frames instead of re-assembled text (wsproto decodes text to str), and
speed (benchmarks/test_bench_websocket.py): masked payloads are never unmasked here; text
is checked through the key and `_emit` re-keys in one XOR pass (both in C, native/src/ws.c).
"""

from __future__ import annotations

import os
import zlib
from typing import Callable, Optional

from .._errors import ProtocolError
from ._frames import (
    ABNORMAL,
    GOING_AWAY,
    INTERNAL_ERROR,
    INVALID_DATA,
    NO_STATUS,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    PROTOCOL_ERROR,
    TOO_BIG,
    WSLimits,
    close_payload,
    frame_head,
    masked_frame,
    valid_close_code,
    wire_close_code,
)
from ...native import ws_mask as mask, ws_utf8
from ..events import Close, ConnectionClosed, Event

__all__ = ["WSLimits", "WebSocketRelay", "RelaySide", "wire_close_code", "valid_close_code"]

_OPEN, _CLOSED, _FAILED, _EOF = range(4)  # receive states of one side

_INFLATE_STEP = 64 << 10
_DEFLATE_TAIL = b"\x00\x00\xff\xff"  # RFC 7692 §7.2.2
_MAX_PINGS = 8  # the gateway's own pings awaiting a pong, per side
_KEY_POOL = 1024  # random bytes drawn at a time for masking keys (256 frames)


class _Fail(Exception):
    """Internal: the peer broke the protocol; converted to ProtocolError in receive_data."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class RelaySide:
    """One peer of a `WebSocketRelay`: feed it that peer's bytes, take the bytes to write
    to that peer.  Built by `WebSocketRelay`, not directly."""

    __slots__ = (
        "stream_id", "other", "_relay", "_name", "_masked_in", "_mask_out", "_deflate",
        "_max_frame", "_max_msg", "_frag", "_buf", "_out", "_rx", "_tx_closed", "_error",
        "_left", "_fin", "_key", "_koff", "_msg_op", "_msg_z", "_msg_wire", "_msg_size",
        "_sent_first", "_utf8", "_pending", "_pending_len", "_pending_key", "_inflater",
        "_pings", "close_code", "close_reason", "messages_received", "bytes_received",
    )

    def __init__(self, relay: "WebSocketRelay", *, facing_client: bool, stream_id: int,
                 deflate: bool, limits: WSLimits) -> None:
        self._relay = relay
        self.other: "RelaySide" = self
        self.stream_id = stream_id
        self._name = "client" if facing_client else "backend"
        self._masked_in = facing_client      # clients mask, servers do not (§5.1)
        self._mask_out = not facing_client   # towards the backend we are the client
        self._deflate = deflate
        self._max_frame = limits.max_frame_size
        self._max_msg = limits.max_message_size
        self._frag = limits.fragment_size
        self._buf = b""
        self._out: list[bytes] = []
        self._rx = _OPEN
        self._tx_closed = False
        self._error: Optional[ProtocolError] = None
        # the frame being received: payload bytes left (-1: expecting a header), FIN,
        # masking key and its offset
        self._left = -1
        self._fin = False
        self._key: Optional[bytes] = None
        self._koff = 0
        # the message being received: opcode (0: none), compressed, sizes so far, whether
        # its first frame went out, UTF-8 state (ws.h: 0 between code points; None: binary)
        self._msg_op = 0
        self._msg_z = False
        self._msg_wire = 0
        self._msg_size = 0  # inflated size of a compressed message
        self._sent_first = False
        self._utf8: Optional[int] = None
        self._pending: list[bytes] = []  # payload of the current frame not yet relayed
        self._pending_len = 0
        self._pending_key: Optional[bytes] = None  # its masking key, when kept masked
        self._inflater: Optional["zlib._Decompress"] = None
        self._pings: list[bytes] = []
        #: how this side's WebSocket ended: the peer's close code (1005: none given), 1006
        #: when its TCP closed without a Close frame, or the code we failed it with
        self.close_code: Optional[int] = None
        self.close_reason = ""
        self.messages_received = 0
        self.bytes_received = 0

    # -- receiving ------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from this side's peer (b"" = it closed the connection).  What they
        carry is queued for the other side; returns `Close` (the peer's Close frame) and
        `ConnectionClosed` events.

        Raises ProtocolError (and nothing else) when the peer broke the protocol; its
        `error_code` is the close code sent to it.  The Close frames for both peers are
        queued by then, and the same error is raised again by any later call."""
        if self._error is not None:
            raise self._error
        if self._rx != _OPEN:  # its Close came (or it is gone): nothing more is read
            if not data and self._rx == _CLOSED:
                self._rx = _EOF
                self._tx_closed = True
                return [ConnectionClosed()]
            return []
        if not data:
            return self._eof()
        if data.__class__ is not bytes:
            data = bytes(data)
        buf = self._buf + data if self._buf else data
        events: list[Event] = []
        try:
            pos = self._parse(buf, events)
        except _Fail as f:
            self._buf = b""
            exc = self._fail(f.code, f.reason)
            if events:
                return events  # raised by the next call
            raise exc from None
        self._buf = buf[pos:] if pos < len(buf) else b""
        return events

    def _parse(self, buf: bytes, events: list[Event]) -> int:
        """Relay the frames in `buf`; return how many bytes were used."""
        pos = 0
        n = len(buf)
        while pos < n:
            left = self._left
            if left < 0:  # a frame header
                if n - pos < 2:
                    break
                b0 = buf[pos]
                b1 = buf[pos + 1]
                op = b0 & 0x0F
                ln = b1 & 0x7F
                hl = 2
                if ln > 125:
                    if op >= 8:
                        raise _Fail(PROTOCOL_ERROR, "control frame longer than 125 bytes")
                    if ln == 126:
                        hl = 4
                        if n - pos < 4:
                            break
                        ln = (buf[pos + 2] << 8) | buf[pos + 3]
                        if ln < 126:
                            raise _Fail(PROTOCOL_ERROR, "length not minimally encoded")
                    else:
                        hl = 10
                        if n - pos < 10:
                            break
                        ln = int.from_bytes(buf[pos + 2:pos + 10], "big")
                        if ln < 0x10000 or ln >> 63:
                            raise _Fail(PROTOCOL_ERROR, "bad 64-bit payload length")
                if b1 & 0x80:
                    if not self._masked_in:
                        raise _Fail(PROTOCOL_ERROR, "masked frame from the server")
                    hl += 4
                    if n - pos < hl:
                        break
                    key: Optional[bytes] = buf[pos + hl - 4:pos + hl]
                elif self._masked_in:
                    raise _Fail(PROTOCOL_ERROR, "unmasked frame from the client")
                else:
                    key = None
                if op >= 8:
                    if op > OP_PONG:
                        raise _Fail(PROTOCOL_ERROR, f"reserved opcode {op}")
                    if not b0 & 0x80:
                        raise _Fail(PROTOCOL_ERROR, "fragmented control frame")
                    if b0 & 0x70:
                        raise _Fail(PROTOCOL_ERROR, "reserved bit set on a control frame")
                    if n - pos < hl + ln:
                        break  # control frames are relayed whole
                    payload = buf[pos + hl:pos + hl + ln]
                    if key is not None and ln:
                        payload = mask(payload, key)
                    pos += hl + ln
                    if self._control(op, payload, events):
                        return n  # its Close: whatever follows is not read
                    continue
                self._start_frame(b0, op, ln, key)
                pos += hl
                left = ln
            # payload of a data frame
            avail = n - pos
            if avail >= left:
                chunk = buf[pos:pos + left]
                pos += left
                self._left = -1
                self._data(chunk, True)
            else:
                chunk = buf[pos:]
                pos = n
                self._left = left - avail
                self._data(chunk, False)
        return pos

    def _start_frame(self, b0: int, op: int, ln: int, key: Optional[bytes]) -> None:
        if op > OP_BINARY:
            raise _Fail(PROTOCOL_ERROR, f"reserved opcode {op}")
        rsv1 = b0 & 0x40
        if b0 & 0x30:
            raise _Fail(PROTOCOL_ERROR, "reserved bit RSV2/RSV3 set")
        if op == OP_CONT:
            if not self._msg_op:
                raise _Fail(PROTOCOL_ERROR, "continuation frame outside a message")
            if rsv1:
                raise _Fail(PROTOCOL_ERROR, "RSV1 on a continuation frame")
        else:
            if self._msg_op:
                raise _Fail(PROTOCOL_ERROR, "new message inside a fragmented message")
            if rsv1 and not self._deflate:
                raise _Fail(PROTOCOL_ERROR, "RSV1 set without permessage-deflate")
            self._msg_op = op
            self._msg_z = bool(rsv1)
            self._msg_wire = 0
            self._msg_size = 0
            self._sent_first = False
            self._utf8 = 0 if op == OP_TEXT else None
        if ln > self._max_frame:
            raise _Fail(TOO_BIG, "frame too big")
        # on the wire; a compressed message is also held to the limit once inflated (a
        # stream of empty deflate blocks inflates to nothing but must end too)
        size = self._msg_wire + ln
        if size > self._max_msg:
            raise _Fail(TOO_BIG, "message too big")
        self._msg_wire = size
        self._fin = bool(b0 & 0x80)
        self._key = key
        self._koff = 0

    def _data(self, chunk: bytes, frame_done: bool) -> None:
        """A piece of the current data frame's payload (`frame_done`: its last).

        A masked piece that is not compressed stays masked: text is checked through its
        key (`ws_utf8` unmasks as it checks, nothing is written), and re-masking it for
        the backend is then one XOR with (its key ^ the new key) instead of two passes
        (`_emit`'s `inkey`)."""
        n = len(chunk)
        key = self._key
        inkey: Optional[bytes] = None
        if key is not None:
            k = self._koff
            if k:
                key = key[k:] + key[:k]
            self._koff = (k + n) & 3
            if not self._msg_z:
                inkey = key
            elif n:
                chunk = mask(chunk, key)
        self.bytes_received += n
        last = frame_done and self._fin  # the message's last byte
        if self._msg_z:
            self._inflate(chunk, last)
        elif self._utf8 is not None:
            self._check_utf8(chunk, last, inkey)
        other = self.other
        pending = self._pending
        if frame_done:
            if pending:
                pending.append(chunk)
                chunk = b"".join(pending)
                inkey = self._pending_key
                self._pending = []
                self._pending_len = 0
            if not other._tx_closed:
                other._emit(self._first_byte(self._fin), chunk, inkey)
            if self._fin:
                self._msg_op = 0
                self.messages_received += 1
        else:
            if not pending:
                self._pending_key = inkey
            pending.append(chunk)
            self._pending_len += n
            if self._pending_len >= self._frag:
                chunk = b"".join(pending)
                self._pending = []
                self._pending_len = 0
                if not other._tx_closed:
                    other._emit(self._first_byte(False), chunk, self._pending_key)

    def _first_byte(self, fin: bool) -> int:
        """FIN/RSV1/opcode of the next frame relayed for the current message."""
        if self._sent_first:
            return 0x80 if fin else 0
        self._sent_first = True
        b = self._msg_op | (0x40 if self._msg_z else 0)
        return b | 0x80 if fin else b

    def _check_utf8(self, chunk: bytes, last: bool, key: Optional[bytes] = None) -> None:
        """Check a piece of a text message (still masked with `key`, when given)."""
        st = ws_utf8(self._utf8, chunk, key, 0, last)  # type: ignore[arg-type]
        if st < 0:
            raise _Fail(INVALID_DATA, "invalid UTF-8 in a text message")
        self._utf8 = st

    def _inflate(self, chunk: bytes, last: bool) -> None:
        """Inflate a piece of a compressed message, only to check it (RFC 7692 §7.2.2)."""
        d = self._inflater
        if d is None:
            d = self._inflater = zlib.decompressobj(-15)
        try:
            if chunk:
                self._inflate_steps(d, chunk)
            if last:
                if d.eof:  # the sender ended its deflate stream (BFINAL): nothing may follow
                    if d.unused_data:
                        raise _Fail(INVALID_DATA, "data after the end of a deflate stream")
                    self._inflater = None
                else:
                    self._inflate_steps(d, _DEFLATE_TAIL)
        except zlib.error:
            raise _Fail(INVALID_DATA, "bad permessage-deflate data") from None
        if last and self._utf8:
            raise _Fail(INVALID_DATA, "invalid UTF-8 in a text message")

    def _inflate_steps(self, d: "zlib._Decompress", data: bytes) -> None:
        text = self._utf8 is not None
        while True:
            budget = self._max_msg - self._msg_size
            step = budget + 1 if budget < _INFLATE_STEP else _INFLATE_STEP
            out = d.decompress(data, step)
            got = len(out)
            if got > budget:
                raise _Fail(TOO_BIG, "message too big once inflated")
            self._msg_size += got
            if text and got:
                self._check_utf8(out, False)
            data = d.unconsumed_tail
            if not data and got < step:
                return

    def _control(self, op: int, payload: bytes, events: list[Event]) -> bool:
        """Handle a control frame; True when it was a Close."""
        other = self.other
        if op == OP_PING:
            if not other._tx_closed:
                other._emit(0x80 | OP_PING, payload)
            elif not self._tx_closed:
                self._emit(0x80 | OP_PONG, payload)  # §5.5.2: answered here
            return False
        if op == OP_PONG:
            if payload in self._pings:
                self._pings.remove(payload)  # the answer to the gateway's own ping
            elif not other._tx_closed:
                other._emit(0x80 | OP_PONG, payload)
            return False
        # Close (§5.5.1)
        if not payload:
            code, reason = NO_STATUS, ""
        elif len(payload) == 1:
            raise _Fail(PROTOCOL_ERROR, "close frame with a 1-byte payload")
        else:
            code = (payload[0] << 8) | payload[1]
            if not valid_close_code(code):
                raise _Fail(PROTOCOL_ERROR, f"close code {code} not allowed on the wire")
            try:
                reason = payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                raise _Fail(INVALID_DATA, "close reason is not UTF-8") from None
        self._rx = _CLOSED
        self._buf = b""
        self._pending = []
        self.close_code = code
        self.close_reason = reason
        events.append(Close(self.stream_id, code, reason))
        if not other._tx_closed:
            other._emit(0x80 | OP_CLOSE, payload)  # forwarded as it came
            other._tx_closed = True
        return True

    def _eof(self) -> list[Event]:
        self._rx = _EOF
        self._tx_closed = True  # nobody is left to write to
        self._buf = b""
        self.close_code = ABNORMAL
        other = self.other
        if not other._tx_closed:
            other._send_close(GOING_AWAY, f"{self._name} went away")
        return [ConnectionClosed()]

    def _fail(self, code: int, reason: str) -> ProtocolError:
        exc = ProtocolError(f"websocket {self._name}: {reason}",
                            status_hint=400 if self._masked_in else 502,
                            error_code=code, stream_id=self.stream_id)
        self._error = exc
        self._rx = _FAILED
        self._pending = []
        self.close_code = code
        self.close_reason = reason
        if not self._tx_closed:
            self._send_close(code, reason)
        other = self.other
        if not other._tx_closed:
            other._send_close(GOING_AWAY if self._masked_in else INTERNAL_ERROR,
                              f"{self._name} failed: {code}")
        return exc

    # -- sending --------------------------------------------------------------------------

    def _emit(self, b0: int, payload: bytes, inkey: Optional[bytes] = None) -> None:
        """Queue one frame for this side's peer.  `inkey`: `payload` is still masked with
        that key (from the client), to be re-masked in one pass."""
        n = len(payload)
        head = frame_head(b0, n, self._mask_out)
        if self._mask_out:
            key = self._relay._masking_key()
            if not n:
                self._out.append(head + key)
                return
            k = key if inkey is None else (int.from_bytes(key, "little") ^ int.from_bytes(
                inkey, "little")).to_bytes(4, "little")
            self._out.append(masked_frame(head + key, payload, k))
        elif n < 126:
            self._out.append(head + payload)
        else:
            self._out.append(head)
            self._out.append(payload)

    def _send_close(self, code: Optional[int], reason: str) -> None:
        self._emit(0x80 | OP_CLOSE, close_payload(code, reason))
        self._tx_closed = True

    def ping(self, payload: bytes = b"") -> None:
        """Send the gateway's own Ping (at most 125 bytes) to this side's peer; its Pong
        is consumed here.  Nothing happens once a Close was sent to the peer."""
        if len(payload) > 125:
            raise ValueError("a ping payload is at most 125 bytes")
        if self._tx_closed:
            return
        self._emit(0x80 | OP_PING, payload)
        self._pings.append(payload)
        if len(self._pings) > _MAX_PINGS:
            del self._pings[0]

    def close(self, code: Optional[int] = GOING_AWAY, reason: str = "") -> None:
        """Send a Close to this side's peer (unless one was sent); `code` goes through
        `wire_close_code`."""
        if not self._tx_closed:
            self._send_close(code, reason)

    def data_to_send(self) -> bytes:
        """Bytes to write to this side's peer, in order; empty when there is nothing."""
        out = self._out
        if not out:
            return b""
        self._out = []
        if len(out) == 1 and out[0].__class__ is bytes:
            return out[0]
        return b"".join(out)

    # -- state for the driver -------------------------------------------------------------

    @property
    def should_close(self) -> bool:
        """True when the driver should close this side's connection once data_to_send()
        is written: a Close went both ways, or the peer failed or went away.  (Towards the
        backend RFC 6455 §7.1.1 prefers that the server closes first: a driver may wait a
        little for its EOF.)"""
        rx = self._rx
        return rx == _FAILED or rx == _EOF or (rx == _CLOSED and self._tx_closed)

    @property
    def close_sent(self) -> bool:
        """True once a Close frame was queued for this side's peer."""
        return self._tx_closed

    @property
    def close_received(self) -> bool:
        """True once this side's peer sent its Close frame."""
        return self._rx == _CLOSED or (self._rx == _EOF and self.close_code != ABNORMAL)

    @property
    def pending_error(self) -> Optional[ProtocolError]:
        """The ProtocolError met so far (raised by receive_data now or at its next call)."""
        return self._error


class WebSocketRelay:
    """Relays one WebSocket connection between a client and a backend.  See the module
    docstring.

    `deflate`: permessage-deflate was negotiated (`WebSocketAccepted.deflate`).  `random`
    gives the masking keys of the frames sent to the backend (os.urandom by default).
    `client_stream_id` / `backend_stream_id` go into the events of each side."""

    def __init__(self, *, deflate: bool = False, limits: Optional[WSLimits] = None,
                 random: Callable[[int], bytes] = os.urandom, client_stream_id: int = 1,
                 backend_stream_id: int = 1) -> None:
        limits = limits or WSLimits()
        if limits.fragment_size < 1 or limits.max_frame_size < 0 or (
                limits.max_message_size < 0):
            raise ValueError("bad WSLimits")
        self._random = random
        self._keys = b""
        self._kpos = 0
        self.client = RelaySide(self, facing_client=True, stream_id=client_stream_id,
                                deflate=deflate, limits=limits)
        self.backend = RelaySide(self, facing_client=False, stream_id=backend_stream_id,
                                 deflate=deflate, limits=limits)
        self.client.other = self.backend
        self.backend.other = self.client

    def _masking_key(self) -> bytes:
        i = self._kpos
        if i + 4 > len(self._keys):
            self._keys = self._random(_KEY_POOL)
            i = 0
        self._kpos = i + 4
        return self._keys[i:i + 4]

    def close(self, code: Optional[int] = GOING_AWAY, reason: str = "") -> None:
        """The gateway closes the connection (idle timeout, shutdown): a Close to each peer
        that has not been sent one.  The drivers then wait (briefly) for `should_close`."""
        self.client.close(code, reason)
        self.backend.close(code, reason)

    @property
    def finished(self) -> bool:
        """True when both sides should close."""
        return self.client.should_close and self.backend.should_close
