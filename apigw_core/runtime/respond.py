"""The response half of a pipeline call: the backend's answer taken in, the result written.

Strategy.  `_Call` (executor.py) carries out a request's commands; this mixin holds what
it does once a backend exchange is open and when the program is over:

- `_receive`: the exchange's next events, its failures as `_Failed` (status, APIM's
  public message, whether the request may go again), gRPC messages counted and
  gRPC-Web framing applied on the way;
- `_response_head` / `_head`: the backend's head into `ctx.response`
  (forward_response_headers), 1xx relayed to the client at once;
- `_read_response_body` (`ReadResponseBody`) and `_rest`: the body, buffered up to the
  limit or yielded event by event, the exchange released at its EndOfMessage;
- `_write` / `_whole`: the program's `Result` to the client: a policy's answer, the
  error's (APIM JSON, or a trailers-only gRPC status for a gRPC caller), or the response
  with its body streamed from the backend unless a policy buffered or replaced it;
  `ctx.response_headers` (e.g. CORS) merged in, each body byte shown to the taps.

The mixin reads the call's `stream`, `ctx`, `web`, `rid`, `ex`, `pending`, `timeout`,
`resp_done`, `resp_trailers` and `taps` (set by `_Call`).
"""

from __future__ import annotations

import logging
from time import perf_counter as _now
from typing import Any

from ..gateway.forwarding import forward_response_headers
from ..gateway.pipeline import Headers, PolicyError, ResponseView
from ..gateway.replies import is_grpc
from ..protocol import (
    ConnectionClosed, Data, EndOfMessage, InformationalResponse, ProtocolError, Response,
    StreamReset,
)
from .limits import EXHAUSTED_REASONS
from .stream import ClientGone, send_local_reply
from .transport import TransportClosed, TransportTimeout
from .upstream import BAD_RESPONSE, CLOSED, STREAM_RESET, TIMED_OUT, log_failure

__all__: list[str] = []   # executor._Call's base; nothing here is called from outside

log = logging.getLogger("apigw_core.runtime")

_REFUSED_STREAM = 7
_BODY_FRAMING = (b"content-length", b"transfer-encoding")
_GRPC_OWN = frozenset((b"content-type", b"content-length", b"transfer-encoding",
                       b"grpc-status", b"grpc-message", b"x-request-id"))
_REASON_FOR = {502: "BackendConnectionFailure", 503: "BackendConnectionFailure",
               504: "Timeout"}


class _Failed(Exception):
    """A backend exchange failed: `status` and `public` for the client, `detail` for the
    log, `retry` when nothing was processed and the request may go again."""

    def __init__(self, status: int, public: str, detail: str, retry: bool = False) -> None:
        super().__init__(detail)
        self.status, self.public, self.detail, self.retry = status, public, detail, retry


def receive_failed(e: Exception, ex: Any, timeout: float, replayable: bool) -> _Failed:
    """A backend exchange's failed `receive` as a `_Failed`; `replayable`: the request may
    go again if nothing of the answer had arrived before this receive."""
    if isinstance(e, TransportTimeout):
        return _Failed(504, TIMED_OUT, f"no answer within {timeout}s")
    if isinstance(e, TransportClosed):
        return _Failed(502, CLOSED, f"connection lost: {e}", replayable)
    return _Failed(502, BAD_RESPONSE, e.message,   # type: ignore[attr-defined]
                   replayable and not ex.answered)


def _without(headers: list[tuple[bytes, bytes]], names: tuple[bytes, ...]) -> list:
    return [h for h in headers if h[0] not in names]


def _with_length(headers: list[tuple[bytes, bytes]], size: int) -> list:
    out = _without(headers, _BODY_FRAMING)
    out.append((b"content-length", b"%d" % size))
    return out


class Responding:
    """`_Call`'s response half (see the module docstring)."""

    async def _receive(self, ex: Any, timeout: float, may_retry: bool) -> list:
        answered = ex.answered
        try:
            events = await ex.receive(timeout)
        except (TransportTimeout, TransportClosed, ProtocolError) as e:
            raise receive_failed(e, ex, timeout, may_retry and not answered) from None
        rec = self.stream.tel
        if rec is not None and rec.grpc is not None:   # counted before gRPC-Web's framing
            down = rec.grpc.down
            for ev in events:
                if ev.__class__ is Data:
                    down(ev.data)
        if self.web is not None:
            events = [x for ev in events for x in self.web.to_client(ev)]
        return events

    def _response_head(self, ev: Response, events: list, rest: int) -> None:
        """The backend's response head in: ctx.response, and what came after it."""
        tel = self.stream.tel
        if tel is not None:
            tel.t_head = _now()
        self.ctx.response = ResponseView(   # positional: kwargs cost ~0.4 us
            ev.status_code, ev.reason.decode("latin-1"),
            Headers(forward_response_headers(ev.headers, ev.http_version)))
        self.pending = events[rest:]

    async def _head(self, events: list, may_retry: bool, replayable: bool) -> bool:
        """One batch of events before the response head: True when the head is among them
        (taken); 1xx go to the client at once."""
        stream = self.stream
        for i, ev in enumerate(events):
            t = ev.__class__
            if t is Response:
                self._response_head(ev, events, i + 1)
                return True
            if t is InformationalResponse:
                if ev.status_code not in (100, 101):
                    stream.send_informational(ev.status_code,
                                              forward_response_headers(ev.headers))
                    await stream.flush()
            elif t is StreamReset:
                retry = ev.error_code == _REFUSED_STREAM and replayable
                raise _Failed(502, STREAM_RESET, f"RST_STREAM error code {ev.error_code}",
                              retry)
            elif t is ConnectionClosed:
                raise _Failed(502, CLOSED, "closed before answering", may_retry)
        return False

    async def _read_response_body(self, limit: int) -> bytes:
        resp = self.ctx.response
        if resp is None:
            return b""
        if resp.body is not None:
            return resp.body
        chunks: list[bytes] = []
        size = 0
        async for ev in self._rest():
            if ev.__class__ is Data:
                size += len(ev.data)
                if size > limit:
                    raise PolicyError(502, "ResponseBodyTooLarge",
                                      "Backend response body is too large.")
                chunks.append(ev.data)
        resp.body = b"".join(chunks)
        resp.headers.remove(b"content-length")
        return resp.body

    async def _rest(self):
        """The response's remaining Data events (its trailers kept); releases the
        exchange once the EndOfMessage is in."""
        ex = self.ex
        if ex is None or self.resp_done:
            return
        events, self.pending = self.pending, []
        while True:
            for ev in events:
                t = ev.__class__
                if t is Data:
                    yield ev
                elif t is EndOfMessage:
                    self.resp_trailers = ev.trailers
                    self.resp_done = True
                    self.ex = None
                    ex.release(True)
                    return
                elif t is StreamReset or t is ConnectionClosed:
                    raise PolicyError(502, "BackendConnectionFailure", STREAM_RESET
                                      if t is StreamReset else CLOSED)
            try:
                events = await self._receive(ex, self.timeout, False)
            except _Failed as f:
                log_failure(self.rid, "-", f.status, f.detail, True)
                raise PolicyError(f.status, _REASON_FOR.get(f.status,
                                  "BackendConnectionFailure"), f.public) from None

    # -- writing the result -------------------------------------------------------------

    async def _write(self, result: Any) -> None:
        stream, ctx = self.stream, self.ctx
        if self.ws_done or stream.response_complete:
            return
        extra = ctx.response_headers
        if extra:
            extra = list(extra)
        if result.kind == "answer":
            a = result.answer
            await self._whole(a.status, list(a.headers), a.body, a.reason, extra)
            return
        if result.kind == "error":
            err = result.error
            r = ctx.response
            if is_grpc(stream.request.headers):
                # the error's answer as on-error left it: its status picks the gRPC code,
                # its fields (the error's own and on-error's set-header) become metadata
                own = [h for h in r.headers.items if h[0] not in _GRPC_OWN]
                await send_local_reply(stream, r.status, err.message, request_id=self.rid,
                                       headers=own + extra, grpc_code=8
                                       if err.reason in EXHAUSTED_REASONS else None)
                return
            await self._whole(r.status, r.headers.items, r.body or b"", r.reason, extra)
            return
        r = ctx.response
        assert r is not None
        if r.body is not None or self.ex is None:
            await self._whole(r.status, r.headers.items, r.body or b"", r.reason, extra,
                              self.resp_trailers)
            return
        # streamed: the head as the policies left it, then the backend's body
        headers = _merge(r.headers.items, extra) if extra else r.headers.items
        stream.send_response(r.status, headers, r.reason.encode("latin-1"))
        pending = self.pending
        if pending and pending[-1].__class__ is EndOfMessage and (
                len(pending) == 1 or len(pending) == 2 and pending[0].__class__ is Data
                or all(ev.__class__ is Data for ev in pending[:-1])):
            # the whole body came with the head (small responses): one write, as on the
            # direct path, and the connection back to the pool at once
            for ev in pending[:-1]:
                stream.send_data(ev.data)
                if self.taps:
                    _tap(self.taps, ev.data)
            end = pending[-1]
            self.pending = []
            self.resp_trailers = end.trailers
            self.resp_done = True
            ex, self.ex = self.ex, None
            ex.release(True)
            stream.send_end(end.trailers)
            await stream.flush()
            return
        try:
            async for ev in self._rest():
                stream.send_data(ev.data)
                if self.taps:
                    _tap(self.taps, ev.data)
                if not self.pending:
                    await stream.flush()
        except PolicyError:
            raise ClientGone("backend failed mid-response") from None
        stream.send_end(self.resp_trailers)
        await stream.flush()

    async def _whole(self, status: int, headers: list, body: bytes, reason: str,
                     extra: list, trailers: Any = ()) -> None:
        stream = self.stream
        await stream.drain_upload()
        headers = _merge(headers, extra)
        if not (status < 200 or status in (204, 304)):
            if stream.request.method != b"HEAD" or body:
                headers = _with_length(headers, len(body))
        else:
            headers = _without(headers, _BODY_FRAMING)
            body = b""
        stream.send_response(status, headers, reason.encode("latin-1", "replace"))
        stream.send_data(body)
        if self.taps and body:
            _tap(self.taps, body)
        stream.send_end(trailers)
        await stream.flush()


def _tap(taps: list, data: bytes) -> None:
    for fn in taps:
        try:
            fn(data)
        except Exception:   # a meter's bug must not break the response
            log.exception("a response tap failed")


def _merge(headers: list, extra: list) -> list:
    """`extra` (ctx.response_headers, e.g. CORS) replaces fields of the same name, except
    Vary, which is appended to."""
    if not extra:
        return headers
    names = {n for n, _ in extra if n != b"vary"}
    return [h for h in headers if h[0] not in names] + extra
