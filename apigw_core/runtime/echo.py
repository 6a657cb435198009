"""The built-in echo backend: reflects method, path, query, headers and body as JSON.

It runs on our own HTTP/1.1 driver (a real server on a real socket), so the demo and the
tests exercise the gateway against a real backend.  Bodies are streamed and hashed, never
held whole: the JSON carries the body itself only up to 64 KiB (as text when it is UTF-8,
else base64), and always its length and SHA-256, so a 100 MiB upload is echoed in bounded
memory.  Request trailers are echoed too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import signal
import socket
import trio

from ..gateway.config import ServerConfig
from ..protocol import EndOfMessage
from .h1server import H1Driver
from .stream import HTTPStream
from .listeners import accept_loop, bind_socket
from .startup import run_reporting

__all__ = ["echo_handler", "serve_echo", "run_echo"]

_KEEP = 64 * 1024

# A backend behind a proxy must accept more than the proxy accepts from its clients: the
# gateway adds its forwarding fields (X-Forwarded-*, Forwarded, Via, X-Request-Id) to a head
# that its own limits let through, so with the same defaults (100 fields, 64 KiB) a request
# at the gateway's limits would pass the gateway and be refused by the echo with a 431.
BACKEND_LIMITS = ServerConfig(max_request_line=16 * 1024, max_head=256 * 1024,
                              max_fields=1000)


async def echo_handler(stream: HTTPStream) -> None:
    req = stream.request
    path, _, query = req.target.partition(b"?")
    h = hashlib.sha256()
    kept = bytearray()
    size = 0
    while True:
        ev = await stream.receive_body()
        if ev.__class__ is EndOfMessage:
            trailers = ev.trailers  # type: ignore[attr-defined]
            break
        data = ev.data  # type: ignore[attr-defined]
        size += len(data)
        h.update(data)
        if len(kept) < _KEEP:
            kept += data[:_KEEP - len(kept)]
    doc: dict = {
        "method": req.method.decode("latin-1"),
        "path": path.decode("latin-1"),
        "query": query.decode("latin-1"),
        "http_version": req.http_version.decode(),
        "headers": _as_dict(req.headers),
        "body_length": size,
        "body_sha256": h.hexdigest(),
        "trailers": _as_dict(trailers),
    }
    try:
        doc["body"] = bytes(kept).decode("utf-8")
    except UnicodeDecodeError:
        doc["body_base64"] = base64.b64encode(bytes(kept)).decode()
    doc["body_truncated"] = size > len(kept)
    body = json.dumps(doc, indent=2).encode() + b"\n"
    await stream.reply(200, [(b"content-type", b"application/json"),
                             (b"content-length", b"%d" % len(body))], body)


def _as_dict(fields) -> dict[str, str]:
    """Fields as a JSON object; a repeated name's values joined with ", " (RFC 9110 5.3)."""
    out: dict[str, str] = {}
    for n, v in fields:
        name, value = n.decode("latin-1"), v.decode("latin-1")
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


async def serve_echo(host: str, port: int, *,
                     task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve the echo backend until cancelled; `task_status.started((host, port))`."""
    sock = bind_socket(host, port)
    settings = BACKEND_LIMITS
    try:
        async with trio.open_nursery() as nursery:
            task_status.started(sock.getsockname()[:2])
            await accept_loop(sock, nursery, _serve_one(settings))
    finally:
        sock.close()


def _serve_one(settings: ServerConfig):
    async def serve(conn: socket.socket, addr: tuple) -> None:
        from .transport import SocketTransport
        await H1Driver(SocketTransport(conn, addr), echo_handler, settings).run()
    return serve


async def echo_until_signal(host: str, port: int, *,
                            task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve the echo backend until SIGTERM or SIGINT; announce it once it listens."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            bound_host, bound_port = await nursery.start(serve_echo, host, port)
            shown = f"[{bound_host}]" if ":" in bound_host else bound_host
            print(f"apigw echo backend on http://{shown}:{bound_port}/", flush=True)
            task_status.started()
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def run_echo(host: str = "127.0.0.1", port: int = 8081) -> int:
    """`apigw echo`: run the echo backend in the foreground until Ctrl-C or SIGTERM; the
    exit status (1 when it cannot listen, after one line on stderr)."""
    return run_reporting(echo_until_signal, host, port)
