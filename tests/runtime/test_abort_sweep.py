"""runtime/abort.py on real socket pairs: what the sweep reads from a client socket, and
that only requests in for a full tick are looked at and cancelled."""

from __future__ import annotations

import socket

from apigw_core.runtime import abort


class Client:
    """The transport's two attributes the sweep reads (`raw`, `closed`), over a real
    non-blocking socket (SocketTransport's own close needs a running trio)."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.raw, self.closed = sock, False

    def close_now(self) -> None:
        self.closed = True
        self.raw.close()


class FakeStream:
    def __init__(self, transport) -> None:
        self.transport = transport
        self.aborted = 0

    def client_aborted(self) -> None:
        self.aborted += 1


def _pair():
    ours, theirs = socket.socketpair()
    return Client(ours), theirs


def test_client_gone_reads_eof_reset_quiet_and_bytes():
    t, peer = _pair()
    assert abort.client_gone(t) is False          # quiet: still there
    peer.sendall(b"GET /next HTTP/1.1\r\n")
    assert abort.client_gone(t) is None            # bytes: a pipelined request, unknown
    t2, peer2 = _pair()
    peer2.shutdown(socket.SHUT_WR)
    assert abort.client_gone(t2) is True           # a half-close counts
    t3, peer3 = _pair()
    peer3.close()
    assert abort.client_gone(t3) is True
    t3.close_now()
    assert abort.client_gone(t3) is True           # our side already closed
    for s in (peer, peer2):
        s.close()
    t.close_now()
    t2.close_now()


def test_sweep_ages_then_cancels_and_forgets():
    t, peer = _pair()
    quiet_t, quiet_peer = _pair()
    gone, quiet = FakeStream(t), FakeStream(quiet_t)
    peer.close()
    abort.WATCHED.clear()
    abort.WATCHED[gone] = abort.WATCHED[quiet] = False
    abort.sweep()                                  # first tick: only aged
    assert gone.aborted == 0 and abort.WATCHED == {gone: True, quiet: True}
    abort.sweep()
    assert gone.aborted == 1 and quiet.aborted == 0
    assert list(abort.WATCHED) == [quiet]          # the cancelled one is forgotten
    quiet_peer.sendall(b"x")                       # bytes end the watch, no cancel
    abort.sweep()
    assert quiet.aborted == 0 and abort.WATCHED == {}
    t.close_now()
    quiet_t.close_now()
    quiet_peer.close()
