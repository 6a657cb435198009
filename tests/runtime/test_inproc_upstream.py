"""The upstream pools in process (runtime/upstream.py, runtime/h2upstream.py): the pool's
connect step replaced by socket pairs (inproc.Pairs), a small trio backend on each far
end, and trio's MockClock where an idle timeout must pass.

What must hold: a keep-alive connection is reused for the next request; a pooled
connection the backend closed is detected before reuse and replaced; one idle past the
backend's idle-timeout is dropped; a full pool makes a request wait for a released
connection, or gives up with PoolOverflow at connect-timeout; an HTTP/2 backend connection
is shared by streams and, once its last stream is released, closed at idle-timeout.
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import pytest
import trio

from inproc import BackendLog, Pairs, config, ok, run, serve_h1
from apigw_core.protocol import Data, EndOfMessage, Request, Response
from apigw_core.runtime import h2upstream
from apigw_core.runtime.h2upstream import H2UpstreamPool
from apigw_core.runtime.upstream import PoolOverflow, UpstreamPool


def _backend(**kw):
    return config({"b": {"url": "http://127.0.0.1:9", **kw}}).backends["b"]


def _pool(**kw) -> tuple[UpstreamPool, Pairs]:
    pool = UpstreamPool(_backend(**kw))
    pairs = Pairs()
    pool._connect = pairs.connect   # the connect step, and nothing else, replaced
    return pool, pairs


def _get(path: bytes) -> Request:
    return Request(1, b"GET", path, [(b"host", b"b")])


async def _exchange(pool, path: bytes) -> tuple[object, list]:
    """One GET through the pool: (the exchange, the response events)."""
    ex = await pool.open(_get(path))
    ex.send_end()
    await ex.flush(10)
    events: list = []
    while not any(isinstance(e, EndOfMessage) for e in events):
        got = await ex.receive(10)
        assert got or not ex.answered, "the backend closed mid-response"
        events += got
    ex.release(True)
    return ex, events


def _body(events: list) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Data))


async def _serve_all(nursery, pairs: Pairs, log: BackendLog, answer) -> None:
    async for stream in pairs.accepted:
        nursery.start_soon(serve_h1, stream, pairs.count, log, answer)


def test_keepalive_connection_is_reused():
    async def main() -> None:
        pool, pairs = _pool()
        log = BackendLog()
        async with trio.open_nursery() as n:
            n.start_soon(_serve_all, n, pairs, log, lambda t, nth: ok(t))
            first, ev1 = await _exchange(pool, b"/one")
            second, ev2 = await _exchange(pool, b"/two")
            assert (_body(ev1), _body(ev2)) == (b"/one", b"/two")
            assert [e.status_code for e in ev1 + ev2 if isinstance(e, Response)] == [200, 200]
            assert (first.reused, second.reused) == (False, True)
            assert pairs.count == 1
            assert log.requests == [(1, 1, b"/one"), (1, 2, b"/two")]   # one connection
            assert (pool.open_connections, pool.idle_connections) == (1, 1)
            pool.close()
            n.cancel_scope.cancel()
    run(main)


async def _until(pred) -> None:
    while not pred():
        await trio.sleep(0.01)


def test_pooled_connection_closed_by_the_backend_is_replaced():
    """The backend answers (keep-alive, as far as the response says) and then hangs up
    while the connection sits in the pool: the next request must not be written to the
    dead connection (a POST would be lost), but go out on a new one."""
    async def main() -> None:
        pool, pairs = _pool()
        log = BackendLog()
        async with trio.open_nursery() as n:
            n.start_soon(_serve_all, n, pairs, log, lambda t, nth: (ok(t), "close"))
            await _exchange(pool, b"/a")
            assert pool.idle_connections == 1
            await _until(lambda: 1 in log.closed)          # the backend hung up
            second, ev = await _exchange(pool, b"/b")
            assert _body(ev) == b"/b"
            assert second.reused is False and pairs.count == 2
            assert log.requests == [(1, 1, b"/a"), (2, 1, b"/b")]
            assert pool.open_connections == 1 or 2 in log.closed
            pool.close()
            n.cancel_scope.cancel()
    run(main)


def test_connection_idle_past_idle_timeout_is_dropped():
    async def main() -> None:
        pool, pairs = _pool(**{"idle-timeout": "30s"})
        log = BackendLog()
        async with trio.open_nursery() as n:
            n.start_soon(_serve_all, n, pairs, log, lambda t, nth: ok(t))
            await _exchange(pool, b"/a")
            await trio.sleep(10)                            # virtual time
            again, _ = await _exchange(pool, b"/b")         # within idle-timeout: reused
            assert again.reused and pairs.count == 1
            await trio.sleep(31)
            late, _ = await _exchange(pool, b"/c")          # past it: a new connection
            assert not late.reused and pairs.count == 2
            await _until(lambda: 1 in log.closed)           # and the old one was closed
            assert pool.open_connections == 1
            pool.close()
            n.cancel_scope.cancel()
    run(main, virtual=True)


def test_full_pool_waits_for_a_released_connection():
    async def main() -> None:
        pool, pairs = _pool(**{"max-connections": 1, "connect-timeout": "30s"})
        async with trio.open_nursery() as n:
            n.start_soon(_serve_all, n, pairs, BackendLog(), lambda t, nth: ok(t))
            held = await pool.acquire()
            got: list = []

            async def second() -> None:
                got.append(await pool.acquire())

            n.start_soon(second)
            await trio.sleep(5)
            assert got == []                                # waiting: the pool is full
            held.conn.send(_get(b"/x"))                     # finish an exchange on it
            held.conn.send(EndOfMessage(1))
            await held.transport.send(held.conn.data_to_send(), 10)
            while not any(isinstance(e, EndOfMessage)
                          for e in held.conn.receive_data(await held.transport.receive(10))):
                pass
            pool.release(held)
            await _until(lambda: got)
            assert got[0] is held and got[0].reused and pairs.count == 1
            pool.close()
            n.cancel_scope.cancel()
    run(main, virtual=True)


def test_full_pool_overflows_at_connect_timeout():
    async def main() -> None:
        pool, pairs = _pool(**{"max-connections": 1, "connect-timeout": "3s"})
        async with trio.open_nursery() as n:
            n.start_soon(_serve_all, n, pairs, BackendLog(), lambda t, nth: ok(t))
            held = await pool.acquire()
            t0 = trio.current_time()
            with pytest.raises(PoolOverflow):
                await pool.acquire()
            assert trio.current_time() - t0 == pytest.approx(3.0)
            assert pairs.count == 1 and pool.open_connections == 1
            pool.discard(held)
            assert pool.open_connections == 0
            n.cancel_scope.cancel()
    run(main, virtual=True)


# -- HTTP/2 -----------------------------------------------------------------------------

async def _serve_h2(stream: trio.SocketStream, conn_no: int, log: BackendLog) -> None:
    """An h2-library backend: answers every request 200 with its path as the body."""
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False,
                                                             header_encoding=None))
    c.initiate_connection()
    try:
        await stream.send_all(c.data_to_send())
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            for ev in c.receive_data(data):
                if isinstance(ev, h2.events.RequestReceived):
                    path = dict(ev.headers)[b":path"]
                    log.requests.append((conn_no, ev.stream_id, path))
                    c.send_headers(ev.stream_id, [(b":status", b"200")])
                    c.send_data(ev.stream_id, path, end_stream=True)
            await stream.send_all(c.data_to_send())
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        log.closed.append(conn_no)
        await trio.aclose_forcefully(stream)


def test_h2_connection_is_shared_then_closed_at_idle_timeout(monkeypatch):
    """Two streams on one backend connection; once the last is released the connection
    is idle, and at idle-timeout it is closed (it used to wait for the backend forever
    once it had carried a stream)."""
    pairs = Pairs()
    monkeypatch.setattr(h2upstream, "connect_backend", pairs.connect)

    async def main() -> None:
        pool = H2UpstreamPool(_backend(**{"http-version": "2", "idle-timeout": "30s"}))
        log = BackendLog()
        async with trio.open_nursery() as n:
            pool.nursery = n

            async def serve_all() -> None:
                async for stream in pairs.accepted:
                    n.start_soon(_serve_h2, stream, pairs.count, log)

            n.start_soon(serve_all)
            a = await pool.open(_get(b"/a"))
            b = await pool.open(_get(b"/b"))     # a second stream, same connection
            events = {}
            for ex in (a, b):
                ex.send_end()
                await ex.flush(10)
                got: list = []
                while not any(isinstance(e, EndOfMessage) for e in got):
                    got += await ex.receive(10)
                events[ex.sid] = got
            assert pairs.count == 1 and {c for c, _, _ in log.requests} == {1}
            assert sorted(_body(e) for e in events.values()) == [b"/a", b"/b"]
            a.release(True)
            b.release(True)
            t0 = trio.current_time()
            await _until(lambda: 1 in log.closed)
            assert trio.current_time() - t0 >= 30 - 1
            assert pool.conns == []
            n.cancel_scope.cancel()
    run(main, virtual=True, limit=600)
