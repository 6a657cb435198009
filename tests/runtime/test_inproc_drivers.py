"""The connection drivers (h1server.H1Driver, h2server.H2Driver) and the proxy's retry, in
process: the driver runs on one end of a socket pair, a test client (raw bytes parsed with
h11, or the h2 library) on the other, in the same trio run; for the proxy, a Gateway made
from a config with its pool's connect step replaced by socket pairs (inproc.Pairs).

What must hold: pipelined HTTP/1.1 requests are answered in order, even when the first
takes longer; a handler that fails before answering gives a 500 (no traceback on the
wire); HTTP/2 streams are served concurrently on one connection; a GET whose reused
keep-alive connection dies before any answer is retried once on a new connection, a POST
never is (502, the backend saw it once).
"""

from __future__ import annotations

import json

import h2.config
import h2.connection
import h2.events
import h11
import trio

from inproc import BackendLog, Pairs, client_pair, config, ok, run, serve_h1
from apigw_core.runtime.gateway import Gateway
from apigw_core.runtime.h1server import H1Driver, HTTPStream
from apigw_core.runtime.h2server import H2Driver

SETTINGS = config({"b": {"url": "http://127.0.0.1:9"}}).server


async def _read_responses(stream: trio.SocketStream, n: int) -> list[tuple[int, bytes]]:
    """n HTTP/1.1 responses read off `stream`: (status, body) each, in arrival order."""
    c = h11.Connection(h11.CLIENT)
    out: list[tuple[int, bytes]] = []
    status, body = 0, b""
    # h11 must have sent a request for each response it parses
    for _ in range(n):
        c.send(h11.Request(method="GET", target="/", headers=[("host", "t")]))
        c.send(h11.EndOfMessage())
        while True:
            ev = c.next_event()
            if ev is h11.NEED_DATA:
                c.receive_data(await stream.receive_some(65536))
                continue
            if isinstance(ev, h11.Response):
                status, body = ev.status_code, b""
            elif isinstance(ev, h11.Data):
                body += ev.data
            elif isinstance(ev, h11.EndOfMessage):
                out.append((status, body))
                break
        if c.our_state is h11.DONE and c.their_state is h11.DONE:
            c.start_next_cycle()
    return out


def _requests(*targets: bytes, method: bytes = b"GET", body: bytes = b"") -> bytes:
    extra = b"content-length: %d\r\n" % len(body) if body else b""
    return b"".join(b"%s %s HTTP/1.1\r\nhost: t\r\n%s\r\n%s" % (method, t, extra, body)
                    for t in targets)


def test_h1_pipelined_pair_is_answered_in_order():
    order: list[bytes] = []

    async def handler(stream: HTTPStream) -> None:
        target = stream.request.target
        if target == b"/slow":
            await trio.sleep(5)   # virtual: the second request is already read meanwhile
        order.append(target)
        await stream.reply(200, [(b"content-length", b"%d" % len(target))], target)

    async def main() -> None:
        server, client = client_pair()
        async with trio.open_nursery() as n:
            n.start_soon(H1Driver(server, handler, SETTINGS).run)
            await client.send_all(_requests(b"/slow", b"/fast"))   # one segment
            assert await _read_responses(client, 2) == [(200, b"/slow"), (200, b"/fast")]
            assert order == [b"/slow", b"/fast"]
            await client.aclose()
    run(main, virtual=True)


def test_h1_handler_failure_before_answering_is_a_500():
    async def handler(stream: HTTPStream) -> None:
        raise RuntimeError("a bug in a handler")

    got = bytearray()

    async def main() -> None:
        server, client = client_pair()
        async with trio.open_nursery() as n:
            n.start_soon(H1Driver(server, handler, SETTINGS).run)
            await client.send_all(_requests(b"/x"))
            while True:                                 # the driver closes after it
                more = await client.receive_some(65536)
                if not more:
                    break
                got.extend(more)
            await client.aclose()
    run(main)
    data = bytes(got)
    assert data.startswith(b"HTTP/1.1 500 "), data[:100]
    assert b"Traceback" not in data and b"a bug in a handler" not in data


def test_h2_driver_serves_two_streams_at_once():
    """Each handler waits until both requests are in flight before it answers: with one
    stream at a time this would never finish (the run's bound fails it)."""
    both = trio.Event()
    seen: list[bytes] = []

    async def handler(stream: HTTPStream) -> None:
        seen.append(stream.request.target)
        if len(seen) == 2:
            both.set()
        await both.wait()
        body = stream.request.target
        await stream.reply(200, [(b"content-length", b"%d" % len(body))], body)

    async def main() -> None:
        server, client = client_pair()
        c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                 header_encoding=None))
        c.initiate_connection()
        for sid, path in ((1, b"/one"), (3, b"/two")):
            c.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"http"),
                                 (b":authority", b"t"), (b":path", path)], end_stream=True)
        bodies: dict[int, bytes] = {1: b"", 3: b""}
        status: dict[int, bytes] = {}
        ended: set[int] = set()
        async with trio.open_nursery() as n:
            n.start_soon(H2Driver(server, handler, SETTINGS, b"http").run)
            await client.send_all(c.data_to_send())
            while ended != {1, 3}:
                data = await client.receive_some(65536)
                assert data, "the driver closed the connection"
                for ev in c.receive_data(data):
                    if isinstance(ev, h2.events.ResponseReceived):
                        status[ev.stream_id] = dict(ev.headers)[b":status"]
                    elif isinstance(ev, h2.events.DataReceived):
                        bodies[ev.stream_id] += ev.data
                        c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        ended.add(ev.stream_id)
                await client.send_all(c.data_to_send())
            await client.aclose()
        assert status == {1: b"200", 3: b"200"}
        assert bodies == {1: b"/one", 3: b"/two"}
        assert sorted(seen) == [b"/one", b"/two"]
    run(main)


# -- the proxy's retry, through a Gateway and the H1 driver ------------------------------

def _gateway() -> tuple[Gateway, Pairs]:
    gw = Gateway(config({"b": {"url": "http://127.0.0.1:9"}},
                        apis=[{"name": "b", "path": "", "backend": "b"}]))
    pairs = Pairs()
    gw.pools["b"]._connect = pairs.connect   # only the connect step is replaced
    return gw, pairs


def _once(target: bytes, nth: int):
    """The first request of each connection is answered; at the second the backend hangs
    up without a word (a keep-alive connection that dies as it is reused)."""
    return ok(target) if nth == 1 else None


async def _proxy(second: bytes, method: bytes = b"GET", body: bytes = b""):
    gw, pairs = _gateway()
    log = BackendLog()
    async with trio.open_nursery() as n:
        async def serve_all() -> None:
            async for stream in pairs.accepted:
                n.start_soon(serve_h1, stream, pairs.count, log, _once)

        n.start_soon(serve_all)
        server, client = client_pair()
        n.start_soon(H1Driver(server, gw._handler, gw.config.server).run)
        await client.send_all(_requests(b"/first"))
        first = await _read_responses(client, 1)
        await client.send_all(_requests(second, method=method, body=body))
        again = await _read_responses(client, 1)
        await client.aclose()
        n.cancel_scope.cancel()
    return first + again, log, pairs


def test_get_on_a_reused_connection_that_dies_is_retried_on_a_new_one():
    async def main() -> None:
        responses, log, pairs = await _proxy(b"/second")
        assert responses == [(200, b"/first"), (200, b"/second")]
        assert pairs.count == 2
        assert log.requests == [(1, 1, b"/first"), (1, 2, b"/second"), (2, 1, b"/second")]
    run(main)


def test_post_on_a_reused_connection_that_dies_is_not_retried():
    async def main() -> None:
        responses, log, pairs = await _proxy(b"/pay", method=b"POST", body=b"once")
        assert responses[0] == (200, b"/first")
        status, body = responses[1]
        assert status == 502 and json.loads(body)["statusCode"] == 502
        assert [t for _, _, t in log.requests].count(b"/pay") == 1   # sent exactly once
        assert pairs.count == 1
    run(main)
