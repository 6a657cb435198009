#!/usr/bin/env python3
"""The trio floor: the cheapest HTTP/1.1 proxy trio can run, for run.py's `floor` row.

Strategy.  What the gateway cannot go below on this machine is trio's own cost of moving a
request and its answer: accept, one task per client connection, one keep-alive backend
connection per client connection, non-blocking socket calls first and trio's
`wait_readable` / `wait_writable` only on EAGAIN, and one scheduling checkpoint per request
(the gateway passes one too: trio's fairness promise).  There is no real parsing: a head
ends at the first CRLF CRLF, and a body is framed by a `Content-Length` found by a
case-insensitive byte search (chunked bodies are not supported; wrk sends none, and the
nginx backend answers with a length).  The bytes go through as they came.  gw1 / floor in
one run says how close the gateway is to the floor (issue 14's target: >= 0.5).

    python benchmarks/e2e/floor.py --port 8080 --backend-port 8081
"""

from __future__ import annotations

import argparse
import errno
import socket

import trio

RECV = 65536
_wait_readable = trio.lowlevel.wait_readable
_wait_writable = trio.lowlevel.wait_writable
_checkpoint = trio.lowlevel.checkpoint


async def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(RECV)
    except BlockingIOError:
        pass
    while True:
        await _wait_readable(sock)
        try:
            return sock.recv(RECV)
        except BlockingIOError:
            continue


async def _send(sock: socket.socket, data) -> None:
    try:
        n = sock.send(data)
    except BlockingIOError:
        n = 0
    if n == len(data):
        return
    view = memoryview(data)[n:]
    while view:
        await _wait_writable(sock)
        try:
            n = sock.send(view)
        except BlockingIOError:
            continue
        view = view[n:]


def _body_length(head: bytes) -> int:
    """The Content-Length of a head (0 if none): a byte search, no parsing."""
    low = head.lower()
    i = low.find(b"\r\ncontent-length:")
    if i < 0:
        return 0
    j = low.find(b"\r\n", i + 17)
    return int(head[i + 17:j])


async def _message(sock: socket.socket, buf: bytearray) -> bytes:
    """Take one message (head + Content-Length body) out of buf, reading sock as needed;
    b"" at EOF."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            total = end + 4 + _body_length(bytes(buf[:end + 2]))
            while len(buf) < total:
                data = await _recv(sock)
                if not data:
                    return b""
                buf += data
            msg = bytes(buf[:total])
            del buf[:total]
            return msg
        data = await _recv(sock)
        if not data:
            return b""
        buf += data


async def _connect(port: int) -> socket.socket:
    up = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    up.setblocking(False)
    err = up.connect_ex(("127.0.0.1", port))
    if err not in (0, errno.EINPROGRESS):
        raise OSError(err, "connect failed")
    await _wait_writable(up)
    err = up.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, "connect failed")
    return up


async def _serve(client: socket.socket, backend_port: int) -> None:
    up = None
    try:
        client.setblocking(False)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        up = await _connect(backend_port)
        cbuf, ubuf = bytearray(), bytearray()
        while True:
            req = await _message(client, cbuf)
            if not req:
                return
            await _send(up, req)
            resp = await _message(up, ubuf)
            if not resp:
                return
            await _send(client, resp)
            await _checkpoint()
    except OSError:
        pass
    finally:
        for s in (client, up):
            if s is not None:
                trio.lowlevel.notify_closing(s)
                s.close()


async def main(port: int, backend_port: int) -> None:
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", port))
    lsock.listen(1024)
    lsock.setblocking(False)
    async with trio.open_nursery() as nursery:
        while True:
            try:
                client, _ = lsock.accept()
            except BlockingIOError:
                await _wait_readable(lsock)
                continue
            nursery.start_soon(_serve, client, backend_port)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--backend-port", type=int, required=True)
    a = ap.parse_args()
    try:
        trio.run(main, a.port, a.backend_port)
    except KeyboardInterrupt:
        pass
