"""HTTP/2 server and client connections, sans-IO (RFC 9113, RFC 7541, RFC 8441), over h2.

Same contract as `http1`: `receive_data(bytes) -> list[Event]` (b"" = EOF), `send(event)`,
`data_to_send() -> bytes`, with the same neutral events, each carrying its HTTP/2 stream id,
so code above the protocol layer never knows which version carried a message.

Mapping (RFC 9113 §8.3).  A request's `:method` is `Request.method`; `:path` is
`Request.target` (for a plain CONNECT, `:authority` is); `:authority` becomes the `host`
field, first in `Request.headers` (and `host` becomes `:authority` on the way out);
`:scheme` is checked and, on the client side, is the connection's `scheme`;
`:protocol` (extended CONNECT, RFC 8441, only when `H2Limits.enable_connect_protocol` is
on) is `Request.protocol`.  `http_version` is b"2".  Trailers are `EndOfMessage.trailers`
both ways; 1xx heads are `InformationalResponse` (101 does not exist in HTTP/2); a stream
reset either way is `StreamReset(stream_id, error_code)` (send one to reset a stream);
GOAWAY and EOF are `ConnectionClosed(error_code, last_stream_id)`.  `expect: 100-continue`
sets `Request.expect_continue` as on HTTP/1.1.

Validation: see `_headers` (h2's checks, done once, by us).  A malformed request resets
its stream with PROTOCOL_ERROR and no event; the other streams go on.  A malformed body
(content-length mismatch) or trailers reset the stream and report `StreamReset`.  A
request whose header section is over the server's soft limits (`H2Limits.max_header_section`,
`max_header_fields`) is reported as `RequestRejected(431)` instead of `Request`: the
application answers it on its stream and the connection goes on (RFC 9113 §10.5.1);
trailers over them reset their stream.

Flow control, lazy sending and stream ends: see `_conn`.  The application calls
`acknowledge_received(stream_id, len(data))` once it has consumed a Data event (that is
what lets the peer send more), and may call `available(stream_id)` to pace its sending.

Limits and flood defences: `H2Limits` and `_engine`.  Connection errors raise
`ProtocolError` with `error_code` set (and `status_hint` 400 on the server side, 502 on the
client side) after queueing GOAWAY; flood defences use ENHANCE_YOUR_CALM.  Rapid reset
(CVE-2023-44487) is counted as Envoy does: a stream reset by the client before we finished
answering it is premature (with a `clock`: younger than `premature_reset_min_lifetime`
seconds, Envoy's exact rule); streams refused for concurrency and malformed requests count
too; the connection goes once half of at least `premature_reset_total` (500) streams were
premature, or earlier at `premature_reset_total / 2` premature ones.

Cleartext HTTP/2: `ServerConnection()` expects the client preface (prior knowledge, see
`alpn.sniff`); `ServerConnection.from_h1_upgrade` takes over after an HTTP/1.1
`Upgrade: h2c` request (see `alpn.h2c_settings`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from h2 import events as h2e

from .._errors import ProtocolError, UsageError
from ._conn import H2Base, _St
from ._engine import H2Limits, max_streams
from ._headers import Malformed, parse_request, parse_response, request_block, response_block
from ..alpn import h2c_settings
from ..events import (
    Data,
    EndOfMessage,
    Event,
    InformationalResponse,
    Request,
    Response,
    StreamReset,
    _new_eom,
    _new_request,
)

__all__ = ["ServerConnection", "ClientConnection", "H2Limits", "RequestRejected"]

_PROTOCOL_ERROR = 1
_HOP = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                  b"upgrade", b"http2-settings", b"te"))


@dataclass(frozen=True, slots=True)
class RequestRejected(Event):
    """A request head the server connection decoded but does not hand over as a `Request`:
    answer it with `status_code` (431: its header section is over the soft limits).
    `request` is the head as parsed, only to shape that answer (never route or forward
    it); the stream stays open for the answer and its body, if any, arrives as usual."""

    stream_id: int
    request: Request
    status_code: int
    reason: str


class ServerConnection(H2Base):
    """One HTTP/2 connection from a client, server side.  See the module docstring.

    `clock` (optional, seconds) only refines rapid-reset accounting; nothing else here
    reads time."""

    _client = False
    _status_hint = 400

    def __init__(self, *, limits: Optional[H2Limits] = None,
                 clock: Optional[Callable[[], float]] = None) -> None:
        super().__init__(limits, clock)
        self._dispatch[h2e.RequestReceived] = self._on_request
        self._connect_protocol = self._limits.enable_connect_protocol
        self._engine.start()

    @classmethod
    def from_h1_upgrade(cls, request: Request, trailing_data: bytes = b"", *,
                        body: bytes = b"", limits: Optional[H2Limits] = None,
                        clock: Optional[Callable[[], float]] = None
                        ) -> tuple["ServerConnection", list[Event]]:
        """Take over an HTTP/1.1 connection after `101 Switching Protocols` to h2c
        (RFC 7540 §3.2).  `request` (with its whole `body`) becomes stream 1, already
        ended by the client; `trailing_data` is what the HTTP/1.1 connection received
        after it.  Returns the connection and its first events: the request as stream 1,
        then whatever `trailing_data` completes.  ProtocolError(400) when `request` is not
        a valid h2c upgrade."""
        settings = h2c_settings(request)
        if settings is None:
            raise ProtocolError("not a valid h2c upgrade request", status_hint=400)
        self = cls.__new__(cls)
        H2Base.__init__(self, limits, clock)
        self._dispatch[h2e.RequestReceived] = self._on_request
        self._connect_protocol = self._limits.enable_connect_protocol
        try:
            self._engine.start(settings, upgrade=True)
        except Exception as exc:  # h2 raises several kinds on a bad settings payload
            raise ProtocolError(f"bad HTTP2-Settings: {exc}", status_hint=400) from exc
        st = _St(1)
        st.rx = False
        st.head_req = request.method == b"HEAD"
        if clock is not None:
            st.born = clock()
        self._streams[1] = st
        self._open = 1
        headers = [h for h in request.headers if h[0] not in _HOP]
        events: list[Event] = [_new_request(1, request.method, request.target, headers,
                                            b"2", None, request.expect_continue, None)]
        if body:
            events.append(Data(1, body))
        events.append(_new_eom(1))
        if trailing_data:
            events += self.receive_data(trailing_data)
        return self, events

    def _known_stream(self, stream_id: int) -> bool:
        return stream_id % 2 == 1 and stream_id <= self._engine.highest_inbound_stream_id

    def _on_request(self, ev: h2e.RequestReceived, out: list) -> None:
        sid = ev.stream_id
        st = _St(sid)
        self._streams[sid] = st
        self._open += 1
        if self._clock is not None:
            st.born = self._clock()
        try:
            method, target, headers, protocol, expect, clen = parse_request(
                ev.headers, self._connect_protocol)
            if clen > 0 and ev.stream_ended is not None:
                raise Malformed("content-length but no body")
        except Malformed:
            # §8.1.1: a stream error; the application never hears of this stream
            self._engine.reset_if_open(sid, _PROTOCOL_ERROR)
            self._finish(st, reset=True)
            self._premature += 1
            self._check_premature()
            return
        st.fresh = True
        self._fresh.append(st)
        st.head_in = True
        st.head_req = method == b"HEAD"
        if method == b"CONNECT":
            st.connect = True
        else:
            st.rx_clen = clen
        req = _new_request(sid, method, target, headers, b"2", None, expect, protocol)
        why = (self._over_limits(ev, headers) if self._soft_limits and (
            len(headers) > self._field_cap
            or getattr(ev, "header_size", 0) > self._section_cap) else None)
        out.append(req if not why else RequestRejected(sid, req, 431, why))

    # -- sending ---------------------------------------------------------------------------

    def send(self, event: Event) -> None:
        """Queue a Response, InformationalResponse, Data, EndOfMessage or StreamReset.
        UsageError on misuse; events for a stream the client reset meanwhile are dropped."""
        t = event.__class__
        if t is Data:
            self._send_data(event)  # type: ignore[arg-type]
        elif t is EndOfMessage:
            self._send_eom(event)  # type: ignore[arg-type]
        elif t is Response:
            self._send_response(event)  # type: ignore[arg-type]
        elif t is InformationalResponse:
            self._send_informational(event)  # type: ignore[arg-type]
        elif t is StreamReset:
            self._send_reset(event)  # type: ignore[arg-type]
        else:
            raise UsageError(f"a server cannot send {t.__name__}")

    def _send_response(self, ev: Response) -> None:
        st = self._stream_for_send(ev.stream_id)
        if st is None:
            return
        if st.tx:
            raise UsageError(f"a Response was already sent on stream {st.sid}")
        status = ev.status_code
        if not 200 <= status <= 999:
            raise UsageError("a final Response needs a status in 200..999")
        block, clen = response_block(status, ev.headers)
        st.tx = 1
        if st.head_req:
            st.tx_drop = True
        elif status == 204 or status == 304:
            st.tx_nobody = True
            if status == 204 and clen >= 0:  # RFC 9110 §8.6: never on a 204
                block = [f for f in block if f[0] != b"content-length"]
        elif clen >= 0 and not (st.connect and status < 300):
            st.tx_left = clen
        st.out.append(block)
        self._ready[st.sid] = st

    def _send_informational(self, ev: InformationalResponse) -> None:
        st = self._stream_for_send(ev.stream_id)
        if st is None:
            return
        status = ev.status_code
        if not 100 <= status <= 199 or status == 101:
            raise UsageError("InformationalResponse needs a 1xx status other than 101 "
                             "(RFC 9113 §8.6)")
        if st.tx:
            raise UsageError("1xx after the final Response")
        block, _ = response_block(status, ev.headers)
        st.out.append(block)
        self._ready[st.sid] = st


class ClientConnection(H2Base):
    """One HTTP/2 connection to a backend, client side.  Streams are opened by sending a
    Request with `stream_id == next_stream_id` (or any higher odd id); `can_open` says
    whether the server's SETTINGS_MAX_CONCURRENT_STREAMS and GOAWAY state allow one more.
    `scheme` is the `:scheme` of every request (b"https" over TLS, b"http" for h2c)."""

    _client = True
    _status_hint = 502

    def __init__(self, *, scheme: bytes = b"https", limits: Optional[H2Limits] = None
                 ) -> None:
        super().__init__(limits, None)
        self._scheme = scheme
        self._next = 1
        self._dispatch[h2e.ResponseReceived] = self._on_response
        self._dispatch[h2e.InformationalResponseReceived] = self._on_informational
        self._engine.start()

    @property
    def next_stream_id(self) -> int:
        return self._next

    @property
    def max_streams(self) -> int:
        """The server's SETTINGS_MAX_CONCURRENT_STREAMS as known now."""
        return max_streams(self._engine.remote_settings)

    @property
    def can_open(self) -> bool:
        eng = self._engine
        return (not self._dead and eng.goaway_received is None and eng.goaway_sent is None
                and self._open < max_streams(eng.remote_settings)
                and self._next < 2**31)

    def _known_stream(self, stream_id: int) -> bool:
        return stream_id % 2 == 1 and stream_id < self._next

    def send(self, event: Event) -> None:
        """Queue a Request, Data, EndOfMessage or StreamReset.  UsageError on misuse."""
        t = event.__class__
        if t is Data:
            self._send_data(event)  # type: ignore[arg-type]
        elif t is EndOfMessage:
            self._send_eom(event)  # type: ignore[arg-type]
        elif t is Request:
            self._send_request(event)  # type: ignore[arg-type]
        elif t is StreamReset:
            self._send_reset(event)  # type: ignore[arg-type]
        else:
            raise UsageError(f"a client cannot send {t.__name__}")

    def _send_request(self, ev: Request) -> None:
        sid = ev.stream_id
        if sid % 2 == 0 or sid < self._next:
            raise UsageError(f"stream id {sid}: use an odd id >= next_stream_id "
                             f"({self._next})")
        if not self.can_open:
            raise UsageError("no new stream now: closed, GOAWAY, or the server's "
                             "concurrent-stream limit (check can_open)")
        if ev.protocol is not None and not self._engine.remote_settings.enable_connect_protocol:
            raise UsageError("the server did not enable extended CONNECT (RFC 8441)")
        block, clen = request_block(ev.method, ev.target, ev.headers, self._scheme,
                                    ev.protocol)
        st = _St(sid)
        st.tx = 1
        st.head_req = ev.method == b"HEAD"
        if ev.method == b"CONNECT":
            st.connect = True
        else:
            st.tx_left = clen
        st.out.append(block)
        self._streams[sid] = st
        self._open += 1
        self._next = sid + 2
        self._ready[sid] = st

    def _on_response(self, ev: h2e.ResponseReceived, out: list) -> None:
        st = self._streams.get(ev.stream_id)
        if st is None or st.done:
            return
        try:
            status, headers, clen = parse_response(ev.headers)
        except Malformed:
            self._malformed(st, out)
            return
        if self._soft_limits and self._over_limits(ev, headers):  # too large: a bad answer
            self._malformed(st, out)
            return
        st.head_in = True
        if st.head_req or status == 204 or status == 304:
            st.rx_clen = 0
        elif not (st.connect and status < 300):
            st.rx_clen = clen
        out.append(Response(st.sid, status, headers, b"2"))

    def _on_informational(self, ev: h2e.InformationalResponseReceived, out: list) -> None:
        st = self._streams.get(ev.stream_id)
        if st is None or st.done:
            return
        try:
            status, headers, _ = parse_response(ev.headers)
        except Malformed:
            self._malformed(st, out)
            return
        out.append(InformationalResponse(st.sid, status, headers))
