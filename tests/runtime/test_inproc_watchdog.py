"""The transport Watchdog in process: SocketTransports over socket pairs, trio's MockClock
(autojump: virtual time jumps whenever every task waits), so a 30 s timeout takes no real
time and the expiry instant is exact to the watchdog's tick.

What must hold: a `receive(timeout)` with nobody sending ends with TransportTimeout once
the deadline passes (not before), closing the transport; data before the deadline is
returned and takes the transport off the watch list; each transport keeps its own
deadline; without a watchdog the same timeout is a cancel scope's, with the same result.
"""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

from apigw_core.runtime.transport import SocketTransport, TransportTimeout, Watchdog


def _run(fn) -> None:
    """Run `fn` on a virtual clock; a wait that never ends fails (after 600 virtual s)
    instead of hanging."""
    async def bounded() -> None:
        with trio.fail_after(600):
            await fn()
    trio.run(bounded, clock=trio.testing.MockClock(autojump_threshold=0))


def _pair(watchdog) -> tuple[SocketTransport, socket.socket]:
    a, b = socket.socketpair()
    return SocketTransport(a, ("test", 0), watchdog), b


def test_idle_transport_expires_at_its_deadline():
    async def main() -> None:
        wd = Watchdog()
        t, peer = _pair(wd)
        async with trio.open_nursery() as n:
            n.start_soon(wd.run)
            t0 = trio.current_time()
            with pytest.raises(TransportTimeout):
                await t.receive(30.0)
            waited = trio.current_time() - t0
            n.cancel_scope.cancel()
        assert 30.0 <= waited <= 30.0 + 2 * Watchdog.TICK, waited
        assert t.closed and t not in wd.watched
        peer.close()
    _run(main)


def test_data_before_the_deadline_is_returned_and_unwatched():
    async def main() -> None:
        wd = Watchdog()
        t, peer = _pair(wd)
        got: list[bytes] = []
        async with trio.open_nursery() as n:
            n.start_soon(wd.run)

            async def reader() -> None:
                got.append(await t.receive(30.0))

            n.start_soon(reader)
            await trio.sleep(10)          # virtual: well inside the 30 s
            assert t in wd.watched        # waiting, with its deadline
            peer.sendall(b"hello")
            while not got:
                await trio.sleep(Watchdog.TICK)
            assert got == [b"hello"] and t not in wd.watched and not t.closed
            await trio.sleep(60)          # past the old deadline: nothing expires it
            assert not t.closed
            n.cancel_scope.cancel()
        t.close_now()
        peer.close()
    _run(main)


def test_each_transport_keeps_its_own_deadline():
    async def main() -> None:
        wd = Watchdog()
        short, p1 = _pair(wd)
        long_, p2 = _pair(wd)
        ended: dict[str, float] = {}

        async def wait(name: str, t: SocketTransport, timeout: float) -> None:
            try:
                await t.receive(timeout)
            except TransportTimeout:
                ended[name] = trio.current_time()

        async with trio.open_nursery() as n:
            n.start_soon(wd.run)
            t0 = trio.current_time()
            n.start_soon(wait, "short", short, 1.0)
            n.start_soon(wait, "long", long_, 20.0)
            await trio.sleep(5)
            assert "short" in ended and "long" not in ended
            assert long_ in wd.watched and not long_.closed
            while "long" not in ended:
                await trio.sleep(1)
            n.cancel_scope.cancel()
        assert 1.0 <= ended["short"] - t0 <= 1.0 + 2 * Watchdog.TICK
        assert 20.0 <= ended["long"] - t0 <= 20.0 + 2 * Watchdog.TICK
        p1.close()
        p2.close()
    _run(main)


def test_without_a_watchdog_the_timeout_is_a_cancel_scope():
    async def main() -> None:
        t, peer = _pair(None)
        t0 = trio.current_time()
        with pytest.raises(TransportTimeout):
            await t.receive(7.0)
        assert trio.current_time() - t0 == pytest.approx(7.0)
        t.close_now()
        peer.close()
    _run(main)


def test_receive_or_timeout_keeps_the_connection_usable():
    """The 408-style wait: its timeout does not close the transport, later data is read."""
    async def main() -> None:
        wd = Watchdog()
        t, peer = _pair(wd)
        async with trio.open_nursery() as n:
            n.start_soon(wd.run)
            with pytest.raises(TransportTimeout):
                await t.receive_or_timeout(3.0)
            assert not t.closed
            peer.sendall(b"late")
            assert await t.receive(30.0) == b"late"
            n.cancel_scope.cancel()
        t.close_now()
        peer.close()
    _run(main)
