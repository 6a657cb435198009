"""HTTP/1.1 server connection, sans-IO (RFC 9112), and the re-exported client connection.

Strategy.  Request heads are parsed by `native.HeadParser` (C, or its pure-Python twin) in
one call that also enforces every head framing rule: Content-Length syntax and repeats,
Transfer-Encoding lists (501 for codings other than chunked), CL+TE, TE on HTTP/1.0, Host
exactly once on 1.1, bare CR/LF, obs-fold, and the 414/431 limits (RFC 9112 §2-§6).  The
parser returns the facts framing needs (content length, flags), so Python never re-reads the
fields.  Bodies are framed by the small readers/writers in `_body` (§6.3, §7.1).

Receive side (`receive_data`) is a state machine over one buffer:

    HEAD --request w/o body--> HEAD (or PAUSED for an upgrade, IGNORE for "close")
    HEAD --request w/ body--> BODY --EndOfMessage--> HEAD / PAUSED / IGNORE
    PAUSED --app sends 101--> SWITCHED (bytes left over: `trailing_data`)
    PAUSED --app sends a final Response--> HEAD (the upgrade was refused)
    any --peer EOF--> CLOSED;  any --bad bytes--> ERROR

Pipelining: every complete request in the buffer yields its events at once, in order, each
with its own `stream_id` (1, 2, 3, ... on this connection).  Responses must be sent in that
order (RFC 9112 §9.3.2); a `send` for another stream than the oldest unanswered one is a
UsageError.  If a ProtocolError happens after some events were already produced in the same
call, those events are returned and the error is raised by the next `receive_data` call
(`pending_error` shows it meanwhile, so a driver can answer without waiting for more bytes).

Keep-alive (§9.3): HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with
`Connection: keep-alive`.  After a request that ends the connection further input is
ignored, and its response gets `connection: close`.

Expect: 100-continue (RFC 9110 §10.1.1) is app-driven: `Request.expect_continue` is set and
the app sends `InformationalResponse(100)` when it wants the body.  If it sends the final
Response first while the body is still unread, the connection closes after that response:
the client may or may not send the body, so the next bytes would be ambiguous.

Upgrade (RFC 9110 §7.8): a HTTP/1.1 request with `Connection: upgrade` and an `Upgrade` field
is surfaced with `Request.upgrade` (first protocol token, lower-cased).  As in h11, its body
(if it declares one) is read as usual; after its EndOfMessage the connection stops parsing.
`send(InformationalResponse(101))` switches: `trailing_data` holds the bytes after the
request and no HTTP event is accepted any more.  A final Response instead refuses the upgrade
and HTTP goes on.  HTTP/1.0 requests never upgrade.

Responses always say HTTP/1.1 (RFC 9110 §6.2: our own version; `Response.http_version` is
for received responses).  The app's Content-Length is used and enforced; otherwise chunked for HTTP/1.1
clients and close-delimited for HTTP/1.0 ones.  HEAD, 1xx, 204 and 304 responses carry no
body (Data for a HEAD response is dropped, so the GET path can be reused).  A
`transfer-encoding` given by the app is always dropped: framing is ours to choose.
Trailers are sent only with chunked framing (dropped for HTTP/1.0 and HEAD).

After a ProtocolError, input is refused (the same error is raised again) but the app may
still answer: `send_error(status)` (or Response + EndOfMessage for `error_stream_id`) goes out
with `connection: close`, then `should_close` is True.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Optional, Sequence

from ... import native
from .._errors import ProtocolError, UsageError
from ._body import (
    FIELD_VALUE_RE,
    ChunkedReader,
    ChunkedWriter,
    CloseDelimitedWriter,
    ContentLengthReader,
    ContentLengthWriter,
    NoBodyWriter,
    write_fields,
)
from ._client import ClientConnection, ForwardedHead
from ..events import (
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    InformationalResponse,
    Response,
    _new_data,
    _new_eom,
    _new_request,
)

__all__ = ["ServerConnection", "ClientConnection", "ForwardedHead", "reason_phrase"]

_REASONS = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}


def reason_phrase(status: int) -> bytes:
    """The standard reason phrase for `status` (b"" when unknown)."""
    return _REASONS.get(status, b"")


# receive states
_R_HEAD, _R_BODY, _R_PAUSED, _R_IGNORE, _R_SWITCHED, _R_CLOSED, _R_ERROR = range(7)
_F_CHUNKED = native.F_CHUNKED
_F_CONN_CLOSE = native.F_CONN_CLOSE
_F_KEEP = native.F_CONN_KEEP_ALIVE
_F_UPGRADE_BOTH = native.F_CONN_UPGRADE | native.F_UPGRADE
_F_EXPECT = native.F_EXPECT_CONTINUE
_F_SLOW = _F_CHUNKED | _F_CONN_CLOSE | _F_UPGRADE_BOTH | _F_EXPECT  # not for the fast path
_INCOMPLETE = native.INCOMPLETE


class _Exchange:
    """What the send side must remember about one received request."""

    __slots__ = ("stream_id", "head", "minor", "keep_alive", "upgrade", "expect",
                 "request_done", "sent_100", "responding")

    def __init__(self, stream_id: int, head: bool, minor: int, keep_alive: bool,
                 upgrade: Optional[bytes], expect: bool) -> None:
        self.stream_id = stream_id
        self.head = head
        self.minor = minor
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        self.expect = expect
        self.request_done = False
        self.sent_100 = False
        self.responding = False


def _upgrade_token(headers: list[tuple[bytes, bytes]]) -> Optional[bytes]:
    for name, value in headers:
        if name == b"upgrade":
            tok = value.split(b",", 1)[0].strip().lower()
            return tok or None
    return None


class ServerConnection:
    """One HTTP/1.1 connection from a client, server side.  See the module docstring."""

    def __init__(self, *, max_request_line: int = 8192, max_head: int = 65536,
                 max_fields: int = 100, max_chunk_size: int = 1 << 30,
                 max_body_size: Optional[int] = None) -> None:
        if (max_request_line, max_head, max_fields) != (8192, 65536, 100):
            self._parse = native.head_parser(max_request_line, max_head, max_fields).parse
            self._max_head = max_head
            self._max_fields = max_fields
            self._max_line = max_request_line + 2
        if max_chunk_size != 1 << 30:
            self._max_chunk = max_chunk_size
        if max_body_size is not None:
            self._max_body = max_body_size
        # received, response not finished; a list: pipelines are short and a deque costs
        # more to build than a connection serves on average
        self._pending: list[_Exchange] = []
        self._out: list[bytes] = []

    # The default limits, and per-connection state, start as these class-level values: a
    # connection is built per client connection, and assigning a dozen attributes costs
    # more than a head parse.
    _parse = native.head_parser().parse
    _max_head = 65536
    _max_fields = 100
    _max_line = 8192 + 2
    _max_chunk = 1 << 30
    _max_body: Optional[int] = None
    _buf = b""
    _partial = False  # _buf holds a head the parser called incomplete
    _rstate = _R_HEAD
    _reader: Optional[object] = None
    _rx: Optional[_Exchange] = None  # the exchange whose body is being read
    _next_id = 1
    _writer: Optional[object] = None
    _error: Optional[ProtocolError] = None
    _error_stream_id: Optional[int] = None
    _closing = False  # a response that ends the connection has been completed
    _switched = False

    # -- receiving ------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the client (b"" = EOF); return the events they complete.

        Raises ProtocolError (and nothing else) when the bytes break HTTP/1.1."""
        first = None
        if self._rstate == _R_HEAD and not self._buf and not self._closing and data:
            # Fast path for the usual segment: exactly one whole keep-alive HTTP/1.1
            # request with no body or all of it.  Anything else goes the general way
            # below, starting from this parse.
            first = self._parse(data) if data.__class__ is bytes else None
            if first.__class__ is tuple and first[3] and not first[6] & _F_SLOW:
                consumed, method, target, _, headers, clen, _ = first
                if (consumed + clen if clen > 0 else consumed) == len(data) and (
                        self._max_body is None or clen <= self._max_body):
                    sid = self._next_id
                    self._next_id = sid + 1
                    ex = _Exchange(sid, method == b"HEAD", 1, True, None, False)
                    ex.request_done = True
                    self._pending.append(ex)
                    req = _new_request(sid, method, target, headers, b"1.1", None, False)
                    if clen > 0:
                        return [req, _new_data(sid, data[consumed:]), _new_eom(sid)]
                    return [req, _new_eom(sid)]
        if self._error is not None:
            raise self._error
        st = self._rstate
        if st >= _R_SWITCHED:
            if st == _R_CLOSED and not data:
                return []
            raise UsageError("connection is switched or closed: no more HTTP input")
        if self._closing:  # our closing response is complete: the rest is moot
            if not data:
                self._rstate = _R_CLOSED
                self._buf = b""
                return [ConnectionClosed()]
            return []
        if not data:
            return self._receive_eof()
        if st == _R_IGNORE:
            return []
        if data.__class__ is not bytes:
            data = bytes(data)
        buf = self._buf + data if self._buf else data
        if st == _R_PAUSED:
            self._buf = buf
            return []
        if (st == _R_HEAD and self._partial and b"\n" not in data
                and len(buf) < self._max_head
                and (len(buf) <= self._max_line or b"\n" in self._buf)):
            # A partial head only changes verdict at a line end or a limit: don't re-scan it
            # for every byte a slow client drips in (quadratic CPU otherwise).
            self._buf = buf
            return []
        events: list[Event] = []
        try:
            pos = self._run(buf, events, first)
        except ProtocolError as exc:
            if exc.stream_id is None and self._rx is not None:  # raised by a body reader
                exc.stream_id = self._error_stream_id = self._rx.stream_id
            self._fail(exc)
            if events:
                return events  # raised by the next call; visible as pending_error
            raise
        st = self._rstate
        if st == _R_IGNORE:
            self._buf = b""
        else:
            self._buf = buf[pos:] if pos else buf
        return events

    def _run(self, buf: bytes, events: list[Event], r: object = None) -> int:
        """Turn `buf` into events; `r` is the parse of its start when the caller has it."""
        self._partial = False
        pos = 0
        n = len(buf)
        parse = self._parse
        while pos < n:
            st = self._rstate
            if st == _R_HEAD:
                if r is None:
                    r = parse(buf, pos)
                if r.__class__ is int:
                    if r == _INCOMPLETE:
                        self._partial = True
                        break
                    self._error_stream_id = self._next_id
                    raise ProtocolError(f"bad request head: {native.error_name(r)}",
                                        status_hint=native.error_status(r),
                                        stream_id=self._next_id)
                pos = self._on_head(r, events, buf, pos)  # type: ignore[arg-type]
                r = None
            elif st == _R_BODY:
                rx = self._rx
                pos, data, trailers = self._reader.read(buf, pos)  # type: ignore[union-attr]
                if data:
                    events.append(_new_data(rx.stream_id, data))  # type: ignore[union-attr]
                if trailers is None:
                    break  # the reader took all it can use: wait for more bytes
                events.append(_new_eom(rx.stream_id, trailers))  # type: ignore
                self._end_request(rx)  # type: ignore[arg-type]
            else:  # PAUSED / IGNORE: leave the rest in the buffer (or drop it)
                break
        return pos

    def _on_head(self, r: tuple, events: list[Event], buf: bytes, pos: int) -> int:
        """Emit the Request (and the body events when the whole body is already in `buf`);
        return the position after what was consumed."""
        consumed, method, target, minor, headers, clen, flags = r
        sid = self._next_id
        self._next_id = sid + 1
        if minor:
            keep = not flags & _F_CONN_CLOSE
            upgrade = (_upgrade_token(headers)
                       if flags & _F_UPGRADE_BOTH == _F_UPGRADE_BOTH else None)
            expect = bool(flags & _F_EXPECT)
        else:  # HTTP/1.0: no upgrade (RFC 9110 §7.8), no 1xx (§15.2)
            keep = bool(flags & _F_KEEP) and not flags & _F_CONN_CLOSE
            upgrade = None
            expect = False
        events.append(_new_request(sid, method, target, headers,
                                   b"1.1" if minor else b"1.0", upgrade, expect))
        ex = _Exchange(sid, method == b"HEAD", minor, keep, upgrade, expect)
        self._pending.append(ex)
        if flags & _F_CHUNKED:
            self._reader = ChunkedReader(
                max_chunk=self._max_chunk, max_body=self._max_body,
                max_trailer=self._max_head, max_fields=self._max_fields,
                status=400, limit_status=413)
        elif clen > 0:
            if self._max_body is not None and clen > self._max_body:
                self._error_stream_id = sid
                ex.keep_alive = False
                raise ProtocolError("Content-Length larger than max_body_size",
                                    status_hint=413, stream_id=sid)
            end = pos + consumed + clen
            if end <= len(buf):  # the common small body: all here, no reader needed
                events.append(_new_data(sid, buf[end - clen:end]))
                events.append(_new_eom(sid))
                self._end_request(ex)
                return end
            self._reader = ContentLengthReader(clen)
        else:  # no framing: no body, whatever the method (RFC 9112 §6.3 item 7)
            events.append(_new_eom(sid))
            self._end_request(ex)
            return pos + consumed
        self._rx = ex
        self._rstate = _R_BODY
        return pos + consumed

    def _end_request(self, ex: _Exchange) -> None:
        ex.request_done = True
        self._reader = None
        self._rx = None
        if ex.upgrade is not None:
            self._rstate = _R_PAUSED
        elif not ex.keep_alive:
            self._rstate = _R_IGNORE
        else:
            self._rstate = _R_HEAD

    def _receive_eof(self) -> list[Event]:
        st = self._rstate
        self._rstate = _R_CLOSED
        if st == _R_BODY:
            sid = self._rx.stream_id  # type: ignore[union-attr]
            try:
                self._reader.eof(400)  # type: ignore[union-attr]
            except ProtocolError as exc:
                exc.stream_id = sid
                self._error_stream_id = sid
                self._fail(exc)
                raise
        elif st == _R_HEAD and self._buf.replace(b"\r\n", b""):
            # the verdict on bytes we skipped re-scanning (slow-drip guard) comes first
            r = self._parse(self._buf)
            sid = self._error_stream_id = self._next_id
            if r.__class__ is int and r != _INCOMPLETE:
                exc = ProtocolError(f"bad request head: {native.error_name(r)}",
                                    status_hint=native.error_status(r), stream_id=sid)
            else:
                exc = ProtocolError("connection closed in the middle of a request head",
                                    status_hint=400, stream_id=sid)
            self._fail(exc)
            raise exc
        self._buf = b""
        return [ConnectionClosed()]

    def _fail(self, exc: ProtocolError) -> None:
        self._error = exc
        self._rstate = _R_ERROR
        self._buf = b""
        sid = self._error_stream_id
        for ex in self._pending:
            if ex.stream_id == sid:
                ex.keep_alive = False
                break
        else:
            if sid is not None:  # a bad head: answer it as a bare HTTP/1.1 exchange
                ex = _Exchange(sid, False, 1, False, None, False)
                ex.request_done = True
                self._pending.append(ex)

    # -- sending --------------------------------------------------------------------------

    def send(self, event: Event) -> None:
        """Queue the bytes for `event` (Response, InformationalResponse, Data,
        EndOfMessage) of the oldest unanswered request.  Raises UsageError on misuse."""
        if self._switched or self._closing:
            raise UsageError("connection is switched or closing: nothing more to send")
        t = event.__class__
        if t is Data:
            w = self._writer
            if w is None or event.stream_id != self._pending[0].stream_id:  # type: ignore
                raise UsageError("Data without a Response in progress for this stream")
            chunk = w.data(event.data)  # type: ignore[attr-defined]
            if chunk:
                self._out.append(chunk)
        elif t is EndOfMessage:
            w = self._writer
            if w is None or event.stream_id != self._pending[0].stream_id:  # type: ignore
                raise UsageError("EndOfMessage without a Response in progress")
            self._out.append(w.eom(event.trailers))  # type: ignore[attr-defined]
            self._writer = None
            ex = self._pending.pop(0)
            if not ex.keep_alive:
                self._closing = True
                self._buf = b""
        elif t is Response:
            self._send_response(event)  # type: ignore[arg-type]
        elif t is InformationalResponse:
            self._send_informational(event)  # type: ignore[arg-type]
        else:
            raise UsageError(f"a server cannot send {t.__name__}")

    def _exchange_for(self, stream_id: int) -> _Exchange:
        if not self._pending or self._pending[0].stream_id != stream_id:
            raise UsageError(f"stream {stream_id} is not the oldest unanswered request")
        ex = self._pending[0]
        if ex.responding:
            raise UsageError(f"a Response was already sent on stream {stream_id}")
        return ex

    def _send_informational(self, ev: InformationalResponse) -> None:
        ex = self._exchange_for(ev.stream_id)
        status = ev.status_code
        if not 100 <= status <= 199:
            raise UsageError("InformationalResponse needs a 1xx status")
        if not ex.minor:
            raise UsageError("no 1xx responses to an HTTP/1.0 client (RFC 9110 §15.2)")
        if status == 101:
            if ex.upgrade is None:
                raise UsageError("101 for a request that did not ask to upgrade")
            if not ex.request_done:
                raise UsageError("101 before the upgrade request's body was received")
            if self._error is not None:
                raise UsageError("cannot switch protocols after a protocol error")
        self._out.append(self._head(status, ev.reason, ev.headers))
        if status == 100:
            ex.sent_100 = True
        elif status == 101:
            self._switched = True
            self._rstate = _R_SWITCHED
            self._pending.clear()

    def _send_response(self, ev: Response) -> None:
        ex = self._exchange_for(ev.stream_id)
        status = ev.status_code
        if not 200 <= status <= 999:
            raise UsageError("a final Response needs a status in 200..999")
        headers: list[tuple[bytes, bytes]] = []
        clen: Optional[int] = None
        tokens: set[bytes] = set()
        for name, value in ev.headers:
            low = name.lower()
            if low == b"content-length":
                if clen is not None or not value.isdigit():
                    raise UsageError(f"bad or repeated content-length {value!r}")
                clen = int(value)
                if status == 204:
                    continue  # RFC 9110 §8.6: never on a 204
            elif low == b"transfer-encoding":
                continue  # framing is ours to choose
            elif low == b"connection":
                tokens.update(t.strip().lower() for t in value.split(b","))
            headers.append((name, value))
        if ex.expect and not ex.sent_100 and not ex.request_done:
            ex.keep_alive = False  # the client may or may not send the body now
        if b"close" in tokens:
            ex.keep_alive = False
        if ex.head or status in (204, 304):
            w: object = NoBodyWriter(drop=ex.head)
        elif clen is not None:
            w = ContentLengthWriter(clen)
        elif ex.minor:
            w = ChunkedWriter()
            headers.append((b"transfer-encoding", b"chunked"))
        else:
            w = CloseDelimitedWriter()
            ex.keep_alive = False
        if not ex.keep_alive:
            if b"close" not in tokens:
                headers.append((b"connection", b"close"))
        elif not ex.minor and b"keep-alive" not in tokens:
            headers.append((b"connection", b"keep-alive"))
        self._out.append(self._head(status, ev.reason, headers))
        ex.responding = True
        self._writer = w
        if ex.upgrade is not None and self._rstate == _R_PAUSED:
            # upgrade refused: HTTP goes on (buffered bytes are parsed on the next call)
            self._rstate = _R_HEAD if ex.keep_alive else _R_IGNORE
        ex.upgrade = None

    @staticmethod
    def _head(status: int, reason: bytes, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
        if not reason:
            reason = _REASONS.get(status, b"")
        elif FIELD_VALUE_RE.fullmatch(reason) is None:
            raise UsageError("reason phrase with control characters")
        out = [b"HTTP/1.1 %d %b\r\n" % (status, reason)]
        write_fields(headers, out)
        out.append(b"\r\n")
        return b"".join(out)

    def send_error(self, status: int, body: bytes = b"",
                   headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        """Answer the request that broke the protocol (or the oldest unanswered one) with a
        complete `status` response and `connection: close`.  `headers` (lower-case names)
        may bring a content-type (else text/plain for a body); framing is ours."""
        sid = self._error_stream_id
        if sid is None:
            if not self._pending:
                raise UsageError("no request to answer")
            sid = self._pending[0].stream_id
        hdrs = [h for h in headers if h[0] not in (b"content-length", b"transfer-encoding",
                                                   b"connection")]
        if body and not any(name == b"content-type" for name, _ in hdrs):
            hdrs.insert(0, (b"content-type", b"text/plain; charset=utf-8"))
        hdrs += [(b"content-length", b"%d" % len(body)), (b"connection", b"close")]
        self.send(Response(sid, status, hdrs))
        if body:
            self.send(Data(sid, body))
        self.send(EndOfMessage(sid))

    def data_to_send(self) -> bytes:
        """Bytes to write to the client, in order; empty when there is nothing."""
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        self._out = []
        return data

    # -- state for the driver -------------------------------------------------------------

    @property
    def trailing_data(self) -> bytes:
        """After a 101: the bytes received after the upgrade request (the new protocol's)."""
        return self._buf

    @property
    def switched(self) -> bool:
        """True once a 101 was sent: the socket now carries another protocol."""
        return self._switched

    @property
    def should_close(self) -> bool:
        """True when the driver must close after flushing data_to_send(): a response that
        ends the connection is complete, or the peer closed and nothing is left to answer."""
        return self._closing or (self._rstate == _R_CLOSED and not self._pending)

    @property
    def pending_error(self) -> Optional[ProtocolError]:
        """The ProtocolError met so far (raised by receive_data now or at its next call)."""
        return self._error

    @property
    def error_stream_id(self) -> Optional[int]:
        """The stream whose request broke the protocol, for the error Response."""
        return self._error_stream_id
