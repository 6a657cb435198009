"""HTTP/2 floods sent at a running gateway over a raw socket (cleartext, prior knowledge),
frames built with hyperframe and hpack.

Each flood must end with the attacking connection closed after a GOAWAY with
ENHANCE_YOUR_CALM (the defences of `protocol/http2/_engine.py` and the rapid-reset count of
`http2/_conn.py`, with their default limits), quickly, with the gateway's memory flat, while a
well-behaved HTTP/2 connection opened before the attack is still served during and after
it, and a new one is served after it.  A peer that asks for big responses with its windows
wide open and never reads is not a flood of frames: it is dropped after `write-timeout`,
having made the gateway read no more from the backends than a few socket buffers.

The attacker never reads while it attacks; it reads only afterwards, to see the GOAWAY.
"""

from __future__ import annotations

import socket
import time

import pytest
from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from h1special import MiB, Special
from h2raw import H2Client, h2c_socket, read_until_close, req_block
from procs import start_gateway
from support import wait_until

ENHANCE_YOUR_CALM, CANCEL = 0xB, 0x8
WRITE_TIMEOUT = 3.0


@pytest.fixture(scope="module")
def special():
    s = Special()
    yield s
    s.close()


@pytest.fixture(scope="module")
def gw(tmp_path_factory, special):
    cfg = {"listeners": [{"bind": "127.0.0.1:0", "protocols": ["http1", "h2c"]}],
           "backends": {"special": {"url": special.url}},
           "apis": [{"name": "root", "path": "", "backend": "special"}],
           "server": {"write-timeout": f"{WRITE_TIMEOUT:g}s"}}
    p = start_gateway(tmp_path_factory.mktemp("h2attacks"), cfg)
    yield p
    p.stop()


# ---------------------------------------------------------------------------------------
# the floods: each writes to `s` and never reads
# ---------------------------------------------------------------------------------------

def rapid_reset(s: socket.socket) -> None:
    """CVE-2023-44487: open a stream, reset it at once, 1000 times."""
    enc = Encoder()
    out = bytearray()
    for i in range(1000):
        sid = 1 + 2 * i
        out += HeadersFrame(sid, req_block(enc, f"/rr?i={i}"),
                            flags=["END_HEADERS", "END_STREAM"]).serialize()
        out += RstStreamFrame(sid, error_code=CANCEL).serialize()
    s.sendall(out)


def continuation_flood(s: socket.socket) -> None:
    """CVE-2024-27316: one header block that never ends, in 1000 small CONTINUATIONs."""
    enc = Encoder()
    block = req_block(enc, "/cont")
    out = bytearray(HeadersFrame(1, block, flags=["END_STREAM"]).serialize())
    for _ in range(1000):
        out += ContinuationFrame(1, b"\x40\x01a\x01b").serialize()   # literal a: b
    s.sendall(out)


def _trickle(s: socket.socket, frame: bytes, total: int = 400_000, batch: int = 100) -> None:
    """`total` copies of `frame` in small writes: fewer per read than the per-read caps, so
    only the outbound queue of a peer that does not read can trip."""
    chunk = frame * batch
    for _ in range(total // batch):
        s.sendall(chunk)


def ping_flood(s: socket.socket) -> None:
    _trickle(s, PingFrame(0, opaque_data=b"flood!!!").serialize())


def settings_flood(s: socket.socket) -> None:
    _trickle(s, SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 65535})
             .serialize())


def empty_data_frames(s: socket.socket) -> None:
    """A POST, then DATA frames that carry nothing (and no END_STREAM)."""
    enc = Encoder()
    s.sendall(HeadersFrame(1, req_block(enc, "/empty", "POST"), flags=["END_HEADERS"])
              .serialize() + DataFrame(1, b"").serialize() * 1000)


def window_update_spam(s: socket.socket) -> None:
    s.sendall(WindowUpdateFrame(0, window_increment=1).serialize() * 1000)


def priority_churn(s: socket.socket) -> None:
    """PRIORITY frames for ever new (idle) streams, each moving the tree around."""
    out = bytearray()
    for i in range(1000):
        out += PriorityFrame(1 + 2 * i, depends_on=max(0, 2 * i - 1), stream_weight=i % 256,
                             exclusive=bool(i % 2)).serialize()
    s.sendall(out)


FLOODS = {
    "rapid_reset": (rapid_reset, {}),
    "continuation": (continuation_flood, {}),
    "ping_no_read": (ping_flood, {"rcvbuf": 4096}),
    "settings_no_read": (settings_flood, {"rcvbuf": 4096}),
    "empty_data": (empty_data_frames, {}),
    "window_update": (window_update_spam, {}),
    "priority": (priority_churn, {}),
}


@pytest.mark.parametrize("name", list(FLOODS))
def test_flood_gets_goaway_calm_and_others_are_served(gw, special, name):
    attack, kw = FLOODS[name]
    good = H2Client.h2c(gw.port)
    try:
        assert good.get("/before").status == 200
        rss0 = gw.rss_kib()
        heads0 = len(special.heads)
        s = h2c_socket(gw.port, **kw)
        t0 = time.monotonic()
        try:
            attack(s)
        except OSError as exc:           # the gateway may close while we still write
            print(f"\n[{name}] write ended: {exc}")
        sent = time.monotonic() - t0
        during = good.get("/during")     # the good connection, while the bad one goes
        closed = read_until_close(s, 60)
        s.close()
        elapsed = time.monotonic() - t0
        forwarded = len(special.heads) - heads0 - 1   # less /during
        rss1 = gw.rss_kib()
        after_good = good.get("/after")
    finally:
        good.close()
    fresh = H2Client.h2c(gw.port)
    try:
        after_new = fresh.get("/new")
    finally:
        fresh.close()
    print(f"\n[{name}] attack written in {sent:.2f} s, connection {closed.how} after "
          f"{elapsed:.2f} s, GOAWAY {closed.error_code}, {closed.frames} frames back, "
          f"{forwarded} requests forwarded, gateway RSS {rss0 / 1024:.1f} -> "
          f"{rss1 / 1024:.1f} MiB")
    assert closed.error_code == ENHANCE_YOUR_CALM, closed
    assert closed.how == "eof", closed
    assert (during.status, after_good.status, after_new.status) == (200, 200, 200)
    assert rss1 - rss0 < 20 * 1024
    if name == "rapid_reset":
        # streams reset in the read that opened them never reach the proxy; the
        # connection goes after at most 250 premature resets
        assert forwarded < 250, forwarded


# ---------------------------------------------------------------------------------------
# a peer that asks for big responses and never reads
# ---------------------------------------------------------------------------------------

def test_peer_that_never_reads_big_responses(gw, special):
    """Windows opened wide (2^31-1), ten 100 MiB downloads, not one byte read: the gateway
    holds at most a few socket buffers per stream, serves others meanwhile, and drops the
    connection after write-timeout, abandoning the ten backend fetches."""
    sent0, closed0 = special.sent, special.closed
    rss0 = gw.rss_kib()
    s = h2c_socket(gw.port, {SettingsFrame.INITIAL_WINDOW_SIZE: 2**31 - 1}, rcvbuf=4096)
    enc = Encoder()
    s.sendall(WindowUpdateFrame(0, window_increment=2**31 - 1 - 65535).serialize()
              + b"".join(HeadersFrame(1 + 2 * i, req_block(enc, f"/bytes/{100 * MiB}"),
                                      flags=["END_HEADERS", "END_STREAM"]).serialize()
                         for i in range(10)))
    t0 = time.monotonic()
    good = H2Client.h2c(gw.port)
    try:
        during = good.get("/during")
    finally:
        good.close()
    time.sleep(max(0.0, t0 + 1.5 - time.monotonic()))   # pacing: the stall sets in
    stalled = (special.sent - sent0, gw.rss_kib())
    # dropped at write-timeout: the backend connections of its ten streams close
    wait_until(lambda: special.closed - closed0 >= 10, timeout=60,
               message="the ten backend fetches were abandoned")
    dropped = time.monotonic() - t0
    abandoned = special.closed - closed0
    sent_total = special.sent - sent0
    closed = read_until_close(s, 60)
    s.close()
    print(f"\n[never reads] backend sent {stalled[0] / MiB:.1f} MiB of 1000 MiB asked "
          f"({sent_total / MiB:.1f} in all), gateway RSS {rss0 / 1024:.1f} -> "
          f"{stalled[1] / 1024:.1f} MiB; {abandoned} backend fetches abandoned after "
          f"{dropped:.1f} s; then the client read {closed.frames} frames and {closed.how}")
    assert during.status == 200
    assert stalled[0] < 64 * MiB
    assert stalled[1] - rss0 < 40 * 1024
    assert abandoned == 10
    assert dropped >= WRITE_TIMEOUT - 0.5   # not before write-timeout (the writes start
                                            # about when t0 is taken)
    assert closed.how in ("eof", "reset")
