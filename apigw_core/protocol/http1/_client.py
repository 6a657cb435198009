"""HTTP/1.1 client connection for talking to backends, sans-IO (RFC 9112).

Strategy.  One request at a time (no pipelining: pools open another connection instead).
Response heads are read by the C parser `apigw_h1_parse_response` (native/src/
http1_response.c; its pure-Python twin, `_purepy/http1_response.py`, is the logic that
lived here) as strictly as the C parser reads request heads, because a gateway that
believes a lenient reading of a backend's response can be made to mis-frame the *next*
response on a pooled connection (response smuggling).  h11 0.16 (read
for this) accepts, and we refuse with ProtocolError(status_hint=502):
- bare LF line endings and empty lines before the status line (h11 `_receivebuffer`: "\n
  or \n\n are also acceptable"; RFC 9112 §2.2 allows that leniency, a proxy should not);
- obs-fold continuation lines, which h11 unfolds (`_obsolete_line_fold`; §5.2);
- Content-Length repeated with identical values or as a list "3, 3" (h11 `_headers`
  collapses them; §6.3 lets a recipient do so, we do not);
- Transfer-Encoding together with Content-Length (h11 `_body_framing`: "T-E beats C-L"
  silently; §6.3 item 3 says the message then MUST be treated as an error or the connection
  closed), or TE on an HTTP/1.0 response (§6.1);
- chunk extensions of any shape (h11: `;.*`) and whitespace after the chunk size;
- also: any transfer coding besides a single final "chunked" (we cannot forward it), an
  unsolicited response (bytes before we sent a request), and a 101 we did not ask for.
Bodies use the same readers as the server side (`_body`), so the chunk-size and trailer
rules are identical both ways.

Message length (§6.3): no body for responses to HEAD, for 1xx, 204 and 304; a 2xx answer to
CONNECT and a 101 to our Upgrade request switch the connection (`switched`, `trailing_data`);
otherwise chunked, then Content-Length, else the body runs until the server closes (and the
connection cannot be reused).  `is_reusable` is True when both messages are complete and
neither side asked to close.
"""

from __future__ import annotations

import re
from operator import itemgetter
from typing import Optional

from ... import native as _native
from .._errors import ProtocolError, UsageError
from ._body import (
    TOKEN_RE,
    ChunkedReader,
    ChunkedWriter,
    CloseDelimitedReader,
    ContentLengthReader,
    ContentLengthWriter,
    NoBodyWriter,
    write_fields,
)
from ..events import (
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    InformationalResponse,
    Request,
    _new_data,
    _new_eom,
    _new_response,
)

__all__ = ["ClientConnection", "ForwardedHead"]

_TARGET_RE = re.compile(rb"[\x21-\x7e\x80-\xff]+")
_rh = _native.response_codes
_INCOMPLETE = _rh.INCOMPLETE
_MESSAGES = _rh.MESSAGES
_E_FIELD_FIRST, _E_FIELD_LAST = _rh.E_BAD_FIELD_VALUE, _rh.E_OBS_FOLD
_E_TOO_MANY = _rh.E_TOO_MANY_FIELDS
_F_CHUNKED, _F_CLOSE, _F_KEEP_ALIVE = _rh.F_CHUNKED, _rh.F_CONN_CLOSE, _rh.F_CONN_KEEP_ALIVE
_BAD = 502

# receive states
_IDLE, _HEAD, _BODY, _DONE, _SWITCHED, _CLOSED, _ERROR = range(7)
_first = itemgetter(0)   # a field's name


def _bad(msg: str) -> ProtocolError:
    return ProtocolError(f"bad backend response: {msg}", status_hint=_BAD)


def _head_error(code: int) -> ProtocolError:
    """The error for a response-head parser code (the messages predate the C parser)."""
    msg = _MESSAGES.get(code, "head")
    if _E_FIELD_FIRST <= code <= _E_FIELD_LAST:
        return ProtocolError(f"bad header line: {msg}", status_hint=_BAD)
    if code == _E_TOO_MANY:
        return ProtocolError(msg, status_hint=_BAD)
    return _bad(msg)


class ForwardedHead:
    """A request head already written whole (gateway/forwarding.py's forward_request_head:
    native/src/http1_forward.c): `head` is the bytes `send(Request(...))` would queue for
    the same request, `content_length` its Content-Length (-1: none), `chunked` whether
    the body goes chunked.  Such a head never asks to close or upgrade (its Connection and
    Upgrade fields are gone) and always has a Host.  `headers` is None: Python never had
    the list."""

    __slots__ = ("stream_id", "method", "head", "content_length", "chunked")
    headers = None

    def __init__(self, stream_id: int, method: bytes, head: bytes, content_length: int,
                 chunked: bool) -> None:
        self.stream_id = stream_id
        self.method = method
        self.head = head
        self.content_length = content_length
        self.chunked = chunked


class ClientConnection:
    """One HTTP/1.1 connection to a backend, client side.  See the module docstring."""

    def __init__(self, *, max_head: int = 65536, max_fields: int = 100,
                 max_chunk_size: int = 1 << 30, max_body_size: Optional[int] = None) -> None:
        self._max_head = max_head
        self._max_fields = max_fields
        self._max_chunk = max_chunk_size
        self._max_body = max_body_size
        self._parser = _native.response_parser(max_head, max_fields)
        self._buf = b""
        self._rstate = _IDLE
        self._reader: Optional[object] = None
        self._writer: Optional[object] = None   # None: no request body in progress
        self._out: list[bytes] = []
        self._error: Optional[ProtocolError] = None
        self._stream_id = 0
        self._method = b""
        self._req_keep = True
        self._resp_keep = True
        self._req_upgrade = False
        self._req_done = True
        self._switched = False

    # -- sending --------------------------------------------------------------------------

    def send(self, event: Event) -> None:
        """Queue the bytes for a Request, Data or EndOfMessage.  UsageError on misuse."""
        t = event.__class__
        if t is Data or t is EndOfMessage:
            if self._writer is None or event.stream_id != self._stream_id:  # type: ignore
                raise UsageError("no request body in progress for this stream")
            if t is Data:
                chunk = self._writer.data(event.data)  # type: ignore[attr-defined]
                if chunk:
                    self._out.append(chunk)
            else:
                self._out.append(self._writer.eom(event.trailers))  # type: ignore
                self._writer = None
                self._req_done = True
        elif t is Request:
            self._send_request(event)  # type: ignore[arg-type]
        elif t is ForwardedHead:
            self._send_head(event)  # type: ignore[arg-type]
        else:
            raise UsageError(f"a client cannot send {t.__name__}")

    def _send_request(self, ev: Request) -> None:
        if self._stream_id and not self.is_reusable:
            raise UsageError("connection cannot carry another request")
        if TOKEN_RE.fullmatch(ev.method) is None:
            raise UsageError(f"invalid method {ev.method!r}")
        if _TARGET_RE.fullmatch(ev.target) is None:
            raise UsageError(f"invalid request target {ev.target!r}")
        if ev.http_version not in (b"1.1", b"1.0"):
            raise UsageError("http_version must be b'1.1' or b'1.0'")
        v11 = ev.http_version == b"1.1"
        clen: Optional[int] = None
        chunked = False
        host = False
        upgrade = False
        tokens: set[bytes] = set()
        # One C scan of the names first: with none of the fields below but host (the
        # usual request), the loop would only find host.  A name holding "\n" (refused
        # by write_fields) takes the loop, so errors come in the same order.
        headers = ev.headers
        names = b"\n%s\n" % b"\n".join(map(_first, headers)).lower()
        if (b"\ncontent-length\n" not in names and b"\ntransfer-encoding\n" not in names
                and b"\nupgrade\n" not in names and b"\nconnection\n" not in names
                and names.count(b"\n") == len(headers) + 1):
            host = b"\nhost\n" in names
            headers = ()
        for name, value in headers:
            low = name.lower()
            if low == b"content-length":
                if clen is not None or not value.isdigit():
                    raise UsageError(f"bad or repeated content-length {value!r}")
                clen = int(value)
            elif low == b"transfer-encoding":
                if chunked or value.strip().lower() != b"chunked":
                    raise UsageError("transfer-encoding must be a single 'chunked'")
                chunked = True
            elif low == b"host":
                host = True
            elif low == b"upgrade":
                upgrade = True
            elif low == b"connection":
                tokens.update(t.strip().lower() for t in value.split(b","))
        if chunked and (clen is not None or not v11):
            raise UsageError("chunked needs HTTP/1.1 and no content-length")
        if v11 and not host:
            raise UsageError("HTTP/1.1 requests need a host header")
        out = [b"%b %b HTTP/%b\r\n" % (ev.method, ev.target, ev.http_version)]
        write_fields(ev.headers, out)
        out.append(b"\r\n")
        self._begin(b"".join(out), ev.stream_id, ev.method,
                    (b"close" not in tokens) if v11 else (b"keep-alive" in tokens),
                    upgrade and b"upgrade" in tokens, chunked, clen or 0)

    def _send_head(self, ev: ForwardedHead) -> None:
        """_send_request's state for a head written elsewhere (HTTP/1.1, no close)."""
        if self._stream_id and not self.is_reusable:
            raise UsageError("connection cannot carry another request")
        # content_length is -1 without a Content-Length: _begin's clen > 0 covers both
        self._begin(ev.head, ev.stream_id, ev.method, True, False, ev.chunked,
                    ev.content_length)

    def _begin(self, head: bytes, stream_id: int, method: bytes, keep: bool, upgrade: bool,
               chunked: bool, clen: int) -> None:
        """Queue a request head and set the state both send paths share.  `clen` is the
        Content-Length to write the body to; 0 or less (a ForwardedHead's -1: none) means
        no body unless `chunked`."""
        self._out.append(head)
        self._stream_id = stream_id
        self._method = method
        self._req_keep = keep
        self._req_upgrade = upgrade
        self._resp_keep = True
        self._rstate = _HEAD
        if chunked:
            self._writer = ChunkedWriter()
        elif clen > 0:
            self._writer = ContentLengthWriter(clen)
        else:
            self._writer = NoBodyWriter(drop=False)
        self._req_done = False

    def data_to_send(self) -> bytes:
        """Bytes to write to the backend, in order; empty when there is nothing."""
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        self._out = []
        return data

    # -- receiving ------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the backend (b"" = EOF).  Raises ProtocolError(502) and nothing
        else when the bytes break HTTP/1.1."""
        if self._error is not None:
            raise self._error
        st = self._rstate
        if st == _SWITCHED:
            raise UsageError("connection switched protocols: no more HTTP input")
        if st == _CLOSED:
            if data:
                raise UsageError("data after EOF")
            return []
        events: list[Event] = []
        try:
            if not data:
                self._eof(events)
                return events
            if data.__class__ is not bytes:
                data = bytes(data)
            if st == _IDLE or st == _DONE:
                raise _bad("data received while no request was outstanding")
            buf = self._buf + data if self._buf else data
            pos = 0
            n = len(buf)
            while pos < n:
                st = self._rstate
                if st == _HEAD:
                    pos = self._head(buf, pos, events)
                    if pos < 0:  # incomplete
                        pos = -pos - 1
                        break
                elif st == _BODY:
                    pos, body, trailers = self._reader.read(buf, pos)  # type: ignore
                    if body:
                        events.append(_new_data(self._stream_id, body))
                    if trailers is None:
                        break  # the reader took all it can use: wait for more bytes
                    events.append(_new_eom(self._stream_id, trailers))
                    self._rstate = _DONE
                    self._reader = None
                elif st == _DONE:
                    raise _bad("bytes after the end of the response")
                else:  # switched
                    break
            self._buf = buf[pos:] if pos else buf
        except ProtocolError as exc:
            exc.stream_id = self._stream_id or None
            self._error = exc
            self._rstate = _ERROR
            self._buf = b""
            if events:
                return events  # the error is raised by the next call
            raise
        return events

    def _eof(self, events: list[Event]) -> None:
        st = self._rstate
        if st == _BODY:
            trailers = self._reader.eof(_BAD)  # type: ignore[union-attr]
            events.append(_new_eom(self._stream_id, trailers))
            self._resp_keep = False
        elif st == _HEAD and self._buf:
            raise _bad("connection closed inside the response head")
        self._rstate = _CLOSED
        events.append(ConnectionClosed())

    def _head(self, buf: bytes, pos: int, events: list[Event]) -> int:
        """Parse one response head at `pos`; return the offset after it, or -(pos+1)."""
        r = self._parser.parse(buf, pos)
        if r.__class__ is int:
            if r == _INCOMPLETE:
                return -(pos + 1)
            raise _head_error(r)  # type: ignore[arg-type]
        pos, status, minor, reason, headers, clen, flags = r  # type: ignore[misc]
        sid = self._stream_id
        if status < 200:
            events.append(InformationalResponse(sid, status, headers, reason))
            if status == 101:
                if not self._req_upgrade:
                    raise _bad("101 without an Upgrade request")
                self._switch()
            return pos
        chunked = flags & _F_CHUNKED
        no_body = self._method == b"HEAD" or status == 204 or status == 304
        if self._max_body is not None and clen > self._max_body and not no_body:
            raise _bad("content-length larger than max_body_size")
        self._resp_keep = (not flags & _F_CLOSE) if minor else bool(flags & _F_KEEP_ALIVE)
        # (the frozen dataclass's __init__ sets each field through object.__setattr__)
        events.append(_new_response(sid, status, headers, b"1.1" if minor else b"1.0", reason))
        if self._method == b"CONNECT" and status < 300:
            self._switch()
            return pos
        if no_body:
            events.append(_new_eom(sid))
            self._rstate = _DONE
            return pos
        if chunked:
            self._reader = ChunkedReader(
                max_chunk=self._max_chunk, max_body=self._max_body,
                max_trailer=self._max_head, max_fields=self._max_fields,
                status=_BAD, limit_status=_BAD)
        elif clen == 0:
            events.append(_new_eom(sid))
            self._rstate = _DONE
            return pos
        elif clen > 0:
            self._reader = ContentLengthReader(clen)
        else:
            self._reader = CloseDelimitedReader(self._max_body, _BAD)
            self._resp_keep = False
        self._rstate = _BODY
        return pos

    def _switch(self) -> None:
        self._rstate = _SWITCHED
        self._switched = True
        self._resp_keep = False

    # -- state for the pool ---------------------------------------------------------------

    @property
    def is_reusable(self) -> bool:
        """True when another request may be sent on this connection."""
        return (self._rstate == _DONE and self._req_done and self._req_keep
                and self._resp_keep and self._error is None)

    @property
    def pending_error(self) -> Optional[ProtocolError]:
        """The ProtocolError met so far (raised by receive_data now or at its next call)."""
        return self._error

    @property
    def response_complete(self) -> bool:
        return self._rstate == _DONE

    @property
    def switched(self) -> bool:
        """True after a 101 to our Upgrade request (or a 2xx to CONNECT)."""
        return self._switched

    @property
    def trailing_data(self) -> bytes:
        """After switching: the bytes the backend sent after the response head."""
        return self._buf
