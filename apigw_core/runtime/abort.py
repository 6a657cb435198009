"""Client abort (nginx's `proxy_ignore_client_abort`, off by default): an HTTP/1.1 client
that closes while its request is being served cancels it.

Strategy.  Nothing per request but a dict entry.  While a request whose body has been
received whole is being served (`server.client-abort: cancel`), its H1 stream sits in
`WATCHED`; the watchdog's sweep (transport.Watchdog, every 0.1 s) calls `sweep()`, which
looks at each request that has been in for a full tick with a non-blocking
`recv(MSG_PEEK)` on the client socket: end of input (a FIN, even a half-close: nginx does
the same) or a reset means the client is gone, and the driver cancels the connection's
work at once (the backend exchange is released unfinished, so the backend sees its
connection close) and records 499 on the stream (`abort_status`).  Bytes waiting there
(a pipelined request, or a TLS alert we cannot read past) end the watch for that request:
it is served as usual.  A watcher task per request would notice sooner, but costs about
as much as the rest of a proxied request; a request answered within a tick costs no
system call.  HTTP/2 needs none of this: a client's RST_STREAM cancels its stream task.
"""

from __future__ import annotations

import socket
from typing import Any

__all__ = ["WATCHED", "sweep", "client_gone"]

CLIENT_CLOSED_STATUS = 499   # nginx's "client closed request"

# stream -> False when just added, True once it has been there a full sweep
WATCHED: dict[Any, bool] = {}

_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT


def client_gone(transport: Any) -> bool | None:
    """True when the client closed or reset; False while it is quiet; None when it sent
    bytes (nothing more can be known without reading them)."""
    if transport.closed:
        return True
    try:
        data = transport.raw.recv(1, _PEEK)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True if not data else None


def sweep() -> None:
    """One watchdog tick: cancel the requests whose client is gone."""
    for stream, aged in list(WATCHED.items()):
        if not aged:
            WATCHED[stream] = True
            continue
        gone = client_gone(stream.transport)
        if gone is False:
            continue
        del WATCHED[stream]
        if gone:
            stream.client_aborted()
