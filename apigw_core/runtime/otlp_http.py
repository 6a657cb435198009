"""The OTLP/HTTP exporter's client: POSTs from the trio loop over one kept-alive connection.

Strategy.  An export is one request a few times a second, so what matters is what it
costs the gateway's process, not its latency: no thread (no GIL hand-over between the
event loop and an exporter thread on every batch), no urllib / requests stack, no new
TCP connection per batch.  `post` writes an HTTP/1.1 POST with Content-Length on a
non-blocking trio stream opened once and reused while the collector keeps it alive
(h11 reads the answer: Content-Length, chunked, or close-delimited; a collector that
answers `Connection: close` or HTTP/1.0 gets a new connection next time).  Any failure
(refused, reset, a timeout, a non-2xx status) closes the connection and raises
`ExportError`; the caller counts and backs off (runtime/otel.py).  A kept-alive
connection the collector closed while idle is retried once on a new one.
"""

from __future__ import annotations

import ssl
from typing import Optional
from urllib.parse import urlsplit

import h11
import trio

__all__ = ["OtlpHttp", "ExportError"]


class ExportError(Exception):
    """An export did not reach the collector, or the collector refused it."""


class OtlpHttp:
    """One collector endpoint (an `http://` or `https://` traces URL)."""

    def __init__(self, endpoint: str, timeout: float = 5.0) -> None:
        u = urlsplit(endpoint)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"not an http(s) URL: {endpoint!r}")
        self.tls = u.scheme == "https"
        self.host = u.hostname
        self.port = u.port or (443 if self.tls else 80)
        self.timeout = timeout
        target = (u.path or "/") + (f"?{u.query}" if u.query else "")
        host = u.netloc.rpartition("@")[2]
        # everything of the request head but the length, encoded once
        self._head = (f"POST {target} HTTP/1.1\r\nHost: {host}\r\n"
                      "Content-Type: application/x-protobuf\r\n"
                      "User-Agent: apigw_core\r\nContent-Length: ").encode("latin-1")
        self._stream: Optional[trio.abc.Stream] = None
        self._conn: Optional[h11.Connection] = None
        self.connects = 0      # connections opened (the tests check the keep-alive)

    async def _open(self) -> None:
        if self.tls:
            self._stream = await trio.open_ssl_over_tcp_stream(
                self.host, self.port, ssl_context=ssl.create_default_context())
        else:
            self._stream = await trio.open_tcp_stream(self.host, self.port)
        self._conn = h11.Connection(h11.CLIENT)
        self.connects += 1

    async def post(self, body: bytes) -> None:
        """Send one ExportTraceServiceRequest; returns once the collector took it (2xx)."""
        try:
            with trio.fail_after(self.timeout):
                if self._stream is not None:
                    try:
                        return await self._exchange(body)
                    except (OSError, trio.BrokenResourceError, h11.ProtocolError):
                        await self.close()   # the collector closed an idle connection
                await self._open()
                await self._exchange(body)
        except ExportError:
            await self.close()
            raise
        except (OSError, trio.BrokenResourceError, trio.TooSlowError, h11.ProtocolError,
                ssl.SSLError) as exc:
            await self.close()
            raise ExportError(str(exc) or type(exc).__name__) from None

    async def _exchange(self, body: bytes) -> None:
        stream, conn = self._stream, self._conn
        assert stream is not None and conn is not None
        # the head is sent as raw bytes; h11 is told what went out, so it reads the answer
        conn.send(h11.Request(method="POST", target="/", headers=[
            ("Host", "x"), ("Content-Length", "0")]))
        conn.send(h11.EndOfMessage())
        await stream.send_all(b"%s%d\r\n\r\n%s" % (self._head, len(body), body))
        status = 0
        keep = True
        while True:
            ev = conn.next_event()
            if ev is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data)
                continue
            if isinstance(ev, h11.Response):
                status = ev.status_code
            elif isinstance(ev, h11.EndOfMessage):
                break
            elif isinstance(ev, h11.ConnectionClosed):
                keep = False
                break
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE or not keep:
            await self.close()
        else:
            conn.start_next_cycle()
        if not 200 <= status < 300:
            raise ExportError(f"HTTP {status}" if status else "no answer")

    async def close(self) -> None:
        s, self._stream, self._conn = self._stream, None, None
        if s is not None:
            with trio.CancelScope(shield=True):
                try:
                    await trio.aclose_forcefully(s)
                except Exception:  # noqa: BLE001 - closing a broken stream
                    pass
