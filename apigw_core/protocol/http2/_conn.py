"""What the HTTP/2 server and client connections share: h2 events in, neutral events out;
neutral events in, flow-controlled frames out.

Receiving.  `Engine.receive` (our frame reader in front of h2) yields h2 events; a dict
maps each event class to a handler that appends neutral events.  DATA is handed over as
`Data` and its flow-control credit stays taken until the application calls
`acknowledge_received(stream_id, n)`: so a consumer that does not read stops its peer after
one window (the stream window per stream, the connection window in all), and that is the
whole inbound buffer.  Padding carries no data and its credit is returned at once.  A
stream that ends or is reset gives back the credit of whatever the application had not
acknowledged yet (it will not read it).  When the peer resets a stream in the same
`receive_data` call that opened it, neither the Request nor the reset is reported: the
application never starts work for it (a cheap answer to rapid-reset floods).

Sending is lazy.  `send()` checks the event at once (UsageError) but only queues it on its
stream; `data_to_send()` turns the queues into frames, as far as the peer's windows allow,
streams in turn.  So a Response + Data + EndOfMessage sent together become HEADERS + one
DATA with END_STREAM (or one HEADERS with END_STREAM), data larger than the windows waits
for the peer's WINDOW_UPDATEs, and `available(stream_id)` says how much more may be queued
without waiting.  Memory on the way out is what the application queued: a caller that sends
no more than `available()` keeps it within the peer's windows.

Stream ends: a stream is complete when both sides sent END_STREAM, or when either reset
it; a server whose response is complete while the request is still arriving resets the
stream with NO_ERROR (RFC 9113 §8.1) and hears no more of it.  On EOF (or a GOAWAY with an error) every unfinished stream gets a `StreamReset` so the
code serving it can stop, then one `ConnectionClosed`.  A GOAWAY with NO_ERROR is graceful
(RFC 9113 §6.8): `ConnectionClosed(0, last_stream_id)` is reported at once, streams up to
`last_stream_id` finish normally, and `should_close` turns True when none is left.
"""

from __future__ import annotations

from typing import Callable, Optional

from h2 import events as h2e
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError as H2ProtocolError
from h2.exceptions import StreamClosedError, StreamIDTooLowError, TooManyStreamsError

from .._errors import ProtocolError, UsageError
from ._engine import Calm, Engine, H2Limits, max_streams
from ._headers import Malformed, parse_trailers, trailer_block
from ..events import ConnectionClosed, Data, EndOfMessage, Event, StreamReset, _new_data, _new_eom

_PROTOCOL_ERROR = int(ErrorCodes.PROTOCOL_ERROR)
_CANCEL = int(ErrorCodes.CANCEL)
_REFUSED = int(ErrorCodes.REFUSED_STREAM)


class _End:
    """END_STREAM with no trailers, queued after a stream's data."""

    __slots__ = ()


_END = _End()


class _Trailers:
    __slots__ = ("block",)

    def __init__(self, block: list) -> None:
        self.block = block


class _St:
    """One stream, as the wrapper sees it.  tx: 0 nothing sent, 1 head queued, 2 end
    queued, 3 END_STREAM framed."""

    __slots__ = ("sid", "rx", "tx", "out", "queued", "tx_left", "tx_drop", "tx_nobody",
                 "rx_clen", "rx_got", "unacked", "fresh", "born", "head_req", "done",
                 "head_in", "connect")

    def __init__(self, sid: int) -> None:
        self.sid = sid
        self.rx = True          # the peer may still send on it
        self.tx = 0
        self.out: list = []     # queued: head blocks (list), data (bytes), _END, _Trailers
        self.queued = 0         # data bytes in `out`
        self.tx_left = -1       # content-length we promised, still to send (-1: none)
        self.tx_drop = False    # body of a HEAD response: dropped
        self.tx_nobody = False  # 204/304: a body is a UsageError
        self.rx_clen = -1
        self.rx_got = 0
        self.unacked = 0
        self.fresh = False      # opened in the receive_data call being processed
        self.born = 0.0
        self.head_req = False   # the request is HEAD
        self.done = False       # complete (both ends, or reset)
        self.head_in = False    # the final head was received
        self.connect = False    # a CONNECT request (tunnel: no content-length rules)


class H2Base:
    """Shared machinery of ServerConnection and ClientConnection (see http2/__init__.py)."""

    _client = False
    _status_hint = 400

    def __init__(self, limits: Optional[H2Limits], clock: Optional[Callable[[], float]]
                 ) -> None:
        self._limits = limits = limits or H2Limits()
        self._engine = Engine(self._client, limits)
        self._clock = clock
        self._streams: dict[int, _St] = {}
        self._ready: dict[int, _St] = {}
        self._queued_total = 0
        self._open = 0              # streams not complete
        self._error: Optional[ProtocolError] = None
        self._dead = False          # no more frames: error GOAWAY either way, or EOF
        self._eof = False
        self._closed_reported = False
        self._fresh: list[_St] = []
        self._drop: Optional[set] = None
        self._completed = 0         # streams completed or reset (rapid-reset accounting)
        self._premature = 0
        # the soft limits, as plain ints for the per-request test (_over_limits says why)
        big = 1 << 62
        self._field_cap = big if limits.max_header_fields is None else limits.max_header_fields
        self._section_cap = (big if limits.max_header_section is None
                             else limits.max_header_section)
        self._soft_limits = self._field_cap < big or self._section_cap < big
        self._dispatch: dict[type, Callable] = {
            h2e.DataReceived: self._on_data,
            h2e.StreamEnded: self._on_end,
            h2e.TrailersReceived: self._on_trailers,
            h2e.StreamReset: self._on_reset,
            h2e.ConnectionTerminated: self._on_goaway,
        }

    # -- receiving ---------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the peer (b"" = EOF); return the events they complete.

        Raises ProtocolError (and nothing else) on a connection error; its GOAWAY is
        already queued in data_to_send().  Events of the frames before the error are
        returned first and the error is raised by the next call (`pending_error`)."""
        if self._error is not None:
            raise self._error
        if not data:
            return self._receive_eof()
        if self._eof:
            raise UsageError("data after EOF")
        if self._dead:
            return []  # the peer sent GOAWAY with an error: what follows is moot
        if data.__class__ is not bytes:
            data = bytes(data)
        eng = self._engine
        refused = eng.refused
        h2events, exc = eng.receive(data)
        out: list[Event] = []
        dispatch = self._dispatch
        try:
            for ev in h2events:
                handler = dispatch.get(ev.__class__)
                if handler is not None:
                    handler(ev, out)
            if eng.refused != refused and exc is None:
                self._check_premature()
        except Calm as calm:
            self._engine._terminate_connection(calm.error_code)
            exc = calm
        if self._fresh:
            for st in self._fresh:
                st.fresh = False
            self._fresh = []
            if self._drop:
                drop = self._drop
                out = [e for e in out if getattr(e, "stream_id", None) not in drop]
                self._drop = None
        if exc is not None:
            err = ProtocolError(f"HTTP/2: {exc}", status_hint=self._status_hint,
                                error_code=int(exc.error_code))
            self._error = err
            self._dead = True
            self._ready.clear()
            if out:
                return out
            raise err
        return out

    def _receive_eof(self) -> list[Event]:
        if self._eof:
            return []
        self._eof = True
        self._dead = True
        out: list[Event] = []
        self._reset_all(_CANCEL, out)
        if not self._closed_reported:
            self._closed_reported = True
            out.append(ConnectionClosed())
        return out

    def _reset_all(self, code: int, out: list, above: int = 0) -> None:
        for st in list(self._streams.values()):
            if st.sid > above and not st.done:
                self._finish(st, reset=True)
                out.append(StreamReset(st.sid, code))

    def _on_data(self, ev: h2e.DataReceived, out: list) -> None:
        sid = ev.stream_id
        data = ev.data
        n = len(data)
        st = self._streams.get(sid)
        fcl = ev.flow_controlled_length
        if st is None or st.done:
            if fcl:
                self._engine.acknowledge_received_data(fcl, sid)
            return
        if fcl > n:  # padding: nobody will read it
            self._engine.acknowledge_received_data(fcl - n, sid)
        if not n:
            return
        got = st.rx_got + n
        st.rx_got = got
        if 0 <= st.rx_clen < got:
            self._engine.acknowledge_received_data(n, sid)
            self._malformed(st, out)
            return
        st.unacked += n
        out.append(_new_data(sid, data))

    def _on_end(self, ev: h2e.StreamEnded, out: list) -> None:
        st = self._streams.get(ev.stream_id)
        if st is None or st.done or not st.rx:
            return
        if st.rx_clen >= 0 and st.rx_got != st.rx_clen:
            self._malformed(st, out)
            return
        st.rx = False
        out.append(_new_eom(st.sid))
        if st.tx == 3:
            self._finish(st)

    def _on_trailers(self, ev: h2e.TrailersReceived, out: list) -> None:
        st = self._streams.get(ev.stream_id)
        if st is None or st.done or not st.rx:
            return
        try:
            trailers = parse_trailers(ev.headers)
        except Malformed:
            self._malformed(st, out)
            return
        if self._soft_limits and self._over_limits(ev, trailers):
            self._malformed(st, out)  # too late for a 431: the stream goes
            return
        if st.rx_clen >= 0 and st.rx_got != st.rx_clen:
            self._malformed(st, out)
            return
        st.rx = False  # h2 follows with StreamEnded: _on_end ignores it
        out.append(_new_eom(st.sid, trailers))
        if st.tx == 3:
            self._finish(st)

    def _on_reset(self, ev: h2e.StreamReset, out: list) -> None:
        st = self._streams.get(ev.stream_id)
        if st is None or st.done:
            return
        premature = self._finish(st, reset=True, remote=ev.remote_reset)
        if st.fresh and ev.remote_reset:
            if self._drop is None:
                self._drop = set()
            self._drop.add(st.sid)  # its Request is withdrawn from this batch
        else:
            out.append(StreamReset(st.sid, int(ev.error_code)))
        if premature:
            self._check_premature()

    def _on_goaway(self, ev: h2e.ConnectionTerminated, out: list) -> None:
        code = int(ev.error_code)
        last = ev.last_stream_id
        if code:
            self._dead = True
            self._reset_all(code, out)
        elif self._client:
            self._reset_all(_REFUSED, out, above=last)  # never processed: safe to retry
        if not self._closed_reported:
            self._closed_reported = True
            out.append(ConnectionClosed(code, last))

    def _over_limits(self, ev: object, fields: list) -> Optional[str]:
        """Why a decoded header section is over the soft limits (H2Limits), or None.
        `fields` are the regular fields as parsed (cookie crumbs joined); the section's
        size is the one the engine put on the h2 event."""
        if len(fields) > self._field_cap:
            return f"more than {self._field_cap} header fields"
        if getattr(ev, "header_size", 0) > self._section_cap:
            return f"header section larger than {self._section_cap} bytes"
        return None

    def _malformed(self, st: _St, out: list) -> None:
        """The peer broke RFC 9113 §8.1.1 on a stream the application knows: reset it."""
        self._engine.reset_if_open(st.sid, _PROTOCOL_ERROR)
        self._finish(st, reset=True)
        out.append(StreamReset(st.sid, _PROTOCOL_ERROR))
        if not self._client:
            self._premature += 1
            self._check_premature()

    def _finish(self, st: _St, reset: bool = False, remote: bool = False) -> bool:
        """Mark `st` complete; return True when it counts as a premature reset."""
        if st.done:
            return False
        st.done = True
        self._open -= 1
        premature = False
        if reset:
            if st.out:
                self._queued_total -= st.queued
                st.out = []
                st.queued = 0
            self._ready.pop(st.sid, None)
            if st.unacked:
                self._engine.acknowledge_received_data(st.unacked, st.sid)
                st.unacked = 0
            if remote and not self._client:
                clock = self._clock
                premature = (st.tx < 2 if clock is None else
                             clock() - st.born < self._limits.premature_reset_min_lifetime)
        self._completed += 1
        if premature:
            self._premature += 1
        if not st.unacked:
            del self._streams[st.sid]
        return premature

    def _check_premature(self) -> None:
        """Envoy's rule (premature_reset_total_stream_count): with fewer than `total`
        streams completed, trip at total/2 premature resets; after that, when half of them
        were premature.  Streams we refused or reset as malformed count as premature."""
        total = self._limits.premature_reset_total
        refused = self._engine.refused
        premature = self._premature + refused
        completed = self._completed + refused
        if completed < total:
            if premature < total // 2 or total == 0:
                return
        elif premature * 2 < completed:
            return
        raise Calm(f"rapid reset: {premature} of {completed} streams reset early")

    # -- flow control ------------------------------------------------------------------

    def acknowledge_received(self, stream_id: int, n: int) -> None:
        """The application has consumed `n` bytes of `stream_id`'s Data: give the peer
        that much credit back (WINDOW_UPDATEs when half a window is free, as h2 does)."""
        st = self._streams.get(stream_id)
        if st is None or n == 0 or self._dead:
            return  # the stream is gone: its credit was returned when it ended
        if not 0 < n <= st.unacked:
            raise UsageError(f"acknowledging {n} bytes, {st.unacked} unacknowledged")
        st.unacked -= n
        self._engine.acknowledge_received_data(n, stream_id)
        if st.done and not st.unacked:
            del self._streams[stream_id]

    def available(self, stream_id: int) -> int:
        """How many body bytes `stream_id` may queue now and see framed at once by the next
        data_to_send(): the peer's stream and connection windows, less what is queued."""
        st = self._streams.get(stream_id)
        if st is None or st.done or st.tx != 1 or self._dead:
            return 0
        return max(0, min(self._stream_window(stream_id) - st.queued,
                          self._engine.outbound_flow_control_window - self._queued_total))

    def _stream_window(self, stream_id: int) -> int:
        """The peer's window for `stream_id` (its initial one before the stream is framed)."""
        eng = self._engine
        s = eng.streams.get(stream_id)
        return (s.outbound_flow_control_window if s is not None
                else eng.remote_settings.initial_window_size)

    def stalled(self, stream_id: int) -> bool:
        """Whether body bytes of `stream_id` are queued that the peer's windows keep the
        next data_to_send() from framing: for an open body, no room is left
        (`available()` is 0); for an ended one (a whole request or answer queued at once),
        what is queued is more than its windows take now."""
        st = self._streams.get(stream_id)
        if st is None or not st.queued or st.done or self._dead:
            return False
        if st.tx == 1:
            return self.available(stream_id) <= 0
        return (st.queued > self._stream_window(stream_id)
                or self._queued_total > self._engine.outbound_flow_control_window)

    def queued(self, stream_id: int) -> int:
        """Body bytes of `stream_id` queued by send() and not framed yet (they wait for the
        peer's windows); `available()` cannot tell once the message has ended."""
        st = self._streams.get(stream_id)
        return st.queued if st is not None else 0

    # -- sending ---------------------------------------------------------------------------

    def _stream_for_send(self, stream_id: int) -> Optional[_St]:
        st = self._streams.get(stream_id)
        if st is None or st.done:
            if self._dead or self._known_stream(stream_id):
                return None  # reset or gone meanwhile: nothing to do (a race, not a bug)
            raise UsageError(f"no stream {stream_id}")
        return st

    def _known_stream(self, stream_id: int) -> bool:
        raise NotImplementedError

    def _send_data(self, ev: Data) -> None:
        st = self._stream_for_send(ev.stream_id)
        if st is None:
            return
        if st.tx != 1:
            raise UsageError("Data outside a message in progress on this stream")
        data = ev.data
        n = len(data)
        if st.tx_drop or not n:
            return
        if st.tx_nobody:
            raise UsageError("this message cannot carry a body")
        if st.tx_left >= 0:
            if n > st.tx_left:
                raise UsageError("more body bytes than the content-length sent")
            st.tx_left -= n
        st.out.append(data)
        st.queued += n
        self._queued_total += n
        self._ready[st.sid] = st

    def _send_eom(self, ev: EndOfMessage) -> None:
        st = self._stream_for_send(ev.stream_id)
        if st is None:
            return
        if st.tx != 1:
            raise UsageError("EndOfMessage outside a message in progress on this stream")
        if st.tx_left > 0:
            raise UsageError("EndOfMessage before content-length bytes were sent")
        st.out.append(_Trailers(trailer_block(ev.trailers)) if ev.trailers else _END)
        st.tx = 2
        self._ready[st.sid] = st

    def _send_reset(self, ev: StreamReset) -> None:
        st = self._stream_for_send(ev.stream_id)
        if st is None:
            return
        self._engine.reset_if_open(ev.stream_id, int(ev.error_code))
        self._finish(st, reset=True)

    def data_to_send(self) -> bytes:
        """Bytes to write to the peer, in order; empty when there is nothing."""
        if self._ready and not self._dead:
            self._flush()
        return self._engine.data_to_send()

    def _flush(self) -> None:
        eng = self._engine
        ready = self._ready
        mfs = eng.max_outbound_frame_size
        opening = True  # client: new streams may still be opened in this flush
        for sid, st in list(ready.items()):
            out = st.out
            try:
                while out:
                    it = out[0]
                    c = it.__class__
                    if c is list:
                        if self._client and st.tx <= 2 and sid not in eng.streams and (
                                not opening or len(eng.streams)
                                >= max_streams(eng.remote_settings)):
                            opening = False  # open streams in order, when there is room
                            break
                        end = len(out) > 1 and out[1] is _END
                        eng.send_headers(sid, it, end)
                        if end:
                            del out[:2]
                            st.tx = 3
                        else:
                            del out[0]
                    elif c is _End:
                        eng.end_stream(sid)
                        del out[0]
                        st.tx = 3
                    elif c is _Trailers:
                        eng.send_headers(sid, it.block, end_stream=True)
                        del out[0]
                        st.tx = 3
                    else:
                        window = min(eng.outbound_flow_control_window,
                                     eng.streams[sid].outbound_flow_control_window, mfs)
                        if window <= 0:
                            break
                        n = len(it)
                        if n <= window:
                            end = len(out) > 1 and out[1] is _END
                            eng.send_data(sid, it, end)
                            if end:
                                del out[:2]
                                st.tx = 3
                            else:
                                del out[0]
                        else:
                            if it.__class__ is not memoryview:
                                it = memoryview(it)
                            eng.send_data(sid, it[:window])
                            out[0] = it[window:]
                            n = window
                        st.queued -= n
                        self._queued_total -= n
            except TooManyStreamsError:
                continue  # the peer lowered its stream limit: wait for room
            except (StreamClosedError, StreamIDTooLowError):
                # closed under us (the engine reset and forgot it: h2 would take a
                # HEADERS on it for a new stream, too low); receive_data reports the reset
                st.out = []
                self._queued_total -= st.queued
                st.queued = 0
            del ready[sid]
            if out:
                ready[sid] = st  # still waiting for window: to the back of the line
            elif st.tx == 3:
                eng.reap(sid)
                if not st.rx:
                    self._finish(st)
                elif not self._client:
                    # a complete response to a request still arriving: the rest of it is
                    # not wanted (RFC 9113 §8.1), free the stream now
                    eng.reset_if_open(sid, 0)
                    self._finish(st, reset=True)

    # -- closing ---------------------------------------------------------------------------

    def close(self, error_code: int = 0, last_stream_id: Optional[int] = None,
              debug: bytes = b"") -> None:
        """Send GOAWAY.  With error_code 0 it is graceful: streams up to `last_stream_id`
        (default: the highest the peer opened) finish, later ones are refused, and
        should_close turns True when none is left.  Any other code ends the connection."""
        if self._dead:
            return
        if error_code:
            self._flush()
        self._engine.goaway(int(error_code), last_stream_id, debug)
        if error_code:
            self._dead = True
            self._ready.clear()

    @property
    def should_close(self) -> bool:
        """True when the driver should close after flushing data_to_send(): a connection
        error either way, EOF, or a graceful GOAWAY with no stream left."""
        if self._dead or self._error is not None:
            return True
        eng = self._engine
        return (eng.goaway_sent is not None or eng.goaway_received is not None) and (
            self._open == 0)

    @property
    def pending_error(self) -> Optional[ProtocolError]:
        """The ProtocolError met so far (raised by receive_data now or at its next call)."""
        return self._error

    @property
    def outbound_buffered(self) -> int:
        """Bytes queued on our side and not yet taken by data_to_send(): body bytes waiting
        for the peer's windows plus frames already built.  A driver whose writes are
        blocked (a peer that does not read) stops taking more from the application when
        this grows; frames the peer provokes by itself are capped (see _engine)."""
        return self._queued_total + len(self._engine._data_to_send)

    @property
    def open_streams(self) -> int:
        """Streams not complete yet (either side may still send on them)."""
        return self._open

    @property
    def limits(self) -> H2Limits:
        return self._limits
