"""Trio's promises on the HTTP/1.1 hot path (issue 14 cut the per-request awaits): a
connection whose every read succeeds at once still passes a checkpoint per request (other
tasks run between its requests, and a cancel reaches it), whether or not its handler
waited on a socket; and an idle keep-alive connection holds nothing of its last request.

The driver runs on one end of a socket pair (inproc.client_pair); a burst of pipelined
requests arrives in one segment, so no read of the driver ever waits.
"""

from __future__ import annotations

import trio
import trio.testing

from inproc import client_pair, config, run
from apigw_core.runtime.h1server import H1Driver, HTTPStream

SETTINGS = config({"b": {"url": "http://127.0.0.1:9"}}).server
N = 40


def _burst(n: int) -> bytes:
    return b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n" * n


async def _read_n(client: trio.SocketStream, n: int) -> int:
    got = b""
    while got.count(b"HTTP/1.1 200") < n:
        data = await client.receive_some(65536)
        if not data:
            break
        got += data
    return got.count(b"HTTP/1.1 200")


def test_other_tasks_run_between_pipelined_requests_of_a_busy_connection():
    ticks = [0]
    seen: list[int] = []

    async def ticker() -> None:
        while True:
            ticks[0] += 1
            await trio.lowlevel.checkpoint()

    async def handler(stream: HTTPStream) -> None:   # never waits on a socket
        seen.append(ticks[0])
        await stream.reply(200, [(b"content-length", b"2")], b"ok")

    async def main() -> None:
        server, client = client_pair()
        async with trio.open_nursery() as n:
            n.start_soon(ticker)
            n.start_soon(H1Driver(server, handler, SETTINGS).run)
            await client.send_all(_burst(N))
            assert await _read_n(client, N) == N
            n.cancel_scope.cancel()
    run(main)
    assert len(seen) == N
    # the driver yielded after each request (trio runs a batch's tasks in random order,
    # so a tick can fall on either side of one; without the checkpoints it never moves)
    assert seen[-1] - seen[0] >= (N - 1) // 2, repr(seen)


def test_a_cancel_reaches_a_connection_whose_reads_never_wait():
    served = [0]

    async def handler(stream: HTTPStream) -> None:
        served[0] += 1
        if served[0] == 3:
            cancel.cancel()   # honoured at the request's checkpoint, not N requests later
        await stream.reply(200, [(b"content-length", b"2")], b"ok")

    async def main() -> None:
        server, client = client_pair()
        await client.send_all(_burst(N))
        with trio.CancelScope() as scope:
            cancel.cancel = scope.cancel
            await H1Driver(server, handler, SETTINGS).run()
        assert scope.cancelled_caught
        await client.aclose()

    class cancel:   # noqa: N801 - a holder the handler reaches
        cancel = staticmethod(lambda: None)

    run(main)
    assert served[0] == 3


def test_an_idle_keep_alive_connection_holds_nothing_of_its_last_request():
    import gc

    from apigw_core.protocol import Request
    from apigw_core.runtime.h1server import H1Stream

    async def handler(stream: HTTPStream) -> None:
        await stream.reply(200, [(b"content-length", b"2")], b"ok")

    def live(cls) -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if o.__class__ is cls)

    async def main() -> None:
        server, client = client_pair()
        async with trio.open_nursery() as n:
            n.start_soon(H1Driver(server, handler, SETTINGS).run)
            before = live(Request)
            await client.send_all(_burst(1))
            assert await _read_n(client, 1) == 1
            await trio.testing.wait_all_tasks_blocked()   # the driver waits for a head
            assert live(H1Stream) == 0
            assert live(Request) == before
            await client.aclose()
    run(main)
