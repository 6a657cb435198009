"""HTTP/2 flood defences, each attack run in memory against our ServerConnection: the
connection must end with GOAWAY(ENHANCE_YOUR_CALM) and a ProtocolError, after a fixed number
of frames and within a bounded amount of memory (traced allocations: the same on any
machine); and the matching legitimate pattern must not trip it.  The CPU time each attack
costs is measured in benchmarks/test_bench_floods.py, not asserted here."""

from __future__ import annotations

import tracemalloc
from contextlib import contextmanager

import pytest
from h2_helpers import (
    ENHANCE_YOUR_CALM,
    POST,
    REQ,
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    Pair,
    PingFrame,
    PriorityFrame,
    RawClient,
    RstStreamFrame,
    WindowUpdateFrame,
    goaways,
    settings_frame,
)

from apigw_core.protocol import Data, EndOfMessage, ProtocolError, Request, Response, StreamReset
from apigw_core.protocol.http2 import H2Limits

MiB = 1 << 20


@contextmanager
def bounded(max_bytes: int):
    """The block's peak traced memory, checked against the bound."""
    tracemalloc.start()
    try:
        yield
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < max_bytes, f"peak memory {peak} >= {max_bytes}"


def ready(**limits) -> RawClient:
    rc = RawClient(limits=H2Limits(**limits)) if limits else RawClient()
    rc.handshake()
    rc.read()
    return rc


def assert_calm(rc: RawClient) -> None:
    assert isinstance(rc.error, ProtocolError)
    assert rc.error.error_code == ENHANCE_YOUR_CALM
    (g,) = goaways(rc.read())
    assert g.error_code == ENHANCE_YOUR_CALM
    assert rc.server.should_close
    with pytest.raises(ProtocolError):
        rc.server.receive_data(rc.headers(999))


def feed_until_error(rc: RawClient, chunks, limit: int) -> int:
    """Send chunks one receive_data call each until the server errors; return how many."""
    for i, chunk in enumerate(chunks):
        if i >= limit:
            break
        rc.send_bytes(chunk)
        if rc.error is not None:
            return i + 1
    return -1


# -- rapid reset (CVE-2023-44487) -----------------------------------------------------------

def test_rapid_reset_trips_at_envoy_threshold():
    rc = ready()

    def attack():
        sid = 1
        while True:
            yield rc.headers(sid) + RstStreamFrame(sid, error_code=8).serialize()
            sid += 2

    with bounded(2 * MiB):
        n = feed_until_error(rc, attack(), 100_000)
    # premature_reset_total 500: fewer than 500 streams done, so trip at 250 premature
    assert n == 250
    assert_calm(rc)


def test_same_batch_open_and_reset_never_reaches_the_application():
    rc = ready()
    evs = rc.send(rc.headers(1), RstStreamFrame(1, error_code=8),
                  rc.headers(3, end_stream=False))
    assert [type(e) for e in evs] == [Request]  # stream 3 only; 1 was withdrawn
    assert evs[0].stream_id == 3


def test_rapid_reset_across_separate_reads_is_counted_when_not_answered():
    rc = ready()
    for sid in range(1, 499, 2):  # 249 requests the client cancels before we answer
        assert [type(e) for e in rc.send(rc.headers(sid))] == [Request, EndOfMessage]
        assert rc.send(RstStreamFrame(sid, error_code=8)) == [StreamReset(sid, 8)]
    assert rc.error is None
    rc.send(rc.headers(499))
    rc.send(RstStreamFrame(499, error_code=8))
    assert_calm(rc)


def test_cancellations_among_many_answered_streams_do_not_trip():
    rc = ready()
    sid = 1
    for i in range(1200):
        rc.send(rc.headers(sid))
        if i % 3 == 0:  # a third cancelled before the answer: fewer than half
            rc.send(RstStreamFrame(sid, error_code=8))
        else:
            rc.server.send(Response(sid, 200, []))
            rc.server.send(EndOfMessage(sid))
        rc.read()
        sid += 2
    assert rc.error is None


def test_with_a_clock_only_young_streams_count_as_premature():
    now = [0.0]
    rc = RawClient(clock=lambda: now[0])
    rc.handshake()
    for sid in range(1, 1001, 2):   # 500 streams, each reset 2 s after it opened
        rc.send(rc.headers(sid))
        now[0] += 2.0
        rc.send(RstStreamFrame(sid, error_code=8))
    assert rc.error is None
    for sid in range(1001, 3001, 2):  # then young ones: half of all soon
        rc.send(rc.headers(sid))
        rc.send(RstStreamFrame(sid, error_code=8))
        if rc.error is not None:
            break
    assert_calm(rc)


def test_refused_streams_count_as_premature():
    rc = ready(max_concurrent_streams=1)
    rc.send(rc.headers(1, end_stream=False))
    n = feed_until_error(rc, (rc.headers(sid) for sid in range(3, 10**6, 2)), 10_000)
    assert n == 250
    assert_calm(rc)


def test_malformed_requests_count_as_premature():
    rc = ready()
    bad = REQ + [(b"connection", b"x")]
    n = feed_until_error(rc, (rc.headers(sid, bad) for sid in range(1, 10**6, 2)), 10_000)
    assert n == 250
    assert_calm(rc)


# -- CONTINUATION flood (CVE-2024-27316 and friends) ---------------------------------------

def test_continuation_flood_of_small_frames():
    rc = ready()
    start = HeadersFrame(1, b"\x82", flags=["END_STREAM"]).serialize()

    def attack():
        yield start
        while True:
            yield ContinuationFrame(1, b"\x82").serialize()

    with bounded(1 * MiB):
        n = feed_until_error(rc, attack(), 10_000)
    assert n == 1 + 9  # HEADERS + 8 CONTINUATION allowed, the 9th trips
    assert_calm(rc)


def test_continuation_flood_of_big_frames_is_bounded_by_header_list_size():
    rc = ready()
    chunk = b"\x00" * 16384
    frames = [HeadersFrame(1, chunk).serialize()] + [
        ContinuationFrame(1, chunk).serialize() for _ in range(100)]
    with bounded(2 * MiB):
        n = feed_until_error(rc, frames, 101)
    assert n == 5  # 5 x 16 KiB > 64 KiB
    assert_calm(rc)


def test_empty_continuation_frames():
    rc = ready()
    rc.send(HeadersFrame(1, b"\x82"), ContinuationFrame(1, b""), ContinuationFrame(1, b""))
    assert_calm(rc)


def test_legit_header_block_over_several_continuations_is_fine():
    rc = ready()
    block = rc.block(REQ + [(b"x-big", b"v" * 40_000)])
    parts = [block[i:i + 16384] for i in range(0, len(block), 16384)]
    frames = [HeadersFrame(1, parts[0], flags=["END_STREAM"])] + [
        ContinuationFrame(1, p) for p in parts[1:-1]] + [
        ContinuationFrame(1, parts[-1], flags=["END_HEADERS"])]
    evs = rc.send(*frames)
    assert rc.error is None and evs[0].headers[-1] == (b"x-big", b"v" * 40_000)


def test_hpack_bomb_over_the_header_list_size():
    rc = ready()
    big = (b"x-bomb", b"b" * 4000)
    rc.send(rc.headers(1, REQ + [big]))           # enters the dynamic table
    rc.send(rc.headers(3, REQ + [big] * 20))      # 20 one-byte references = 80 KB
    assert_calm(rc)


# -- PING / SETTINGS floods, outbound queue --------------------------------------------------

def test_ping_flood_from_a_peer_that_never_reads():
    rc = ready()
    ping = PingFrame(0, b"\x00" * 8).serialize()
    with bounded(1 * MiB):
        n = feed_until_error(rc, (ping for _ in range(10**6)), 10**6)
    assert n == 1001  # 1000 ACKs queued and nobody takes them
    assert_calm(rc)


def test_ping_flood_in_one_segment():
    rc = ready()
    with bounded(3 * MiB):
        rc.send_bytes(PingFrame(0, b"\x00" * 8).serialize() * 100_000)
    assert_calm(rc)


def test_pings_from_a_peer_that_reads_are_answered():
    rc = ready()
    for _ in range(3000):
        rc.send(PingFrame(0, b"\x01" * 8))
        assert len(rc.read()) == 1
    assert rc.error is None


def test_settings_flood():
    rc = ready()
    s = settings_frame({4: 70000})
    with bounded(1 * MiB):
        n = feed_until_error(rc, (s for _ in range(10**6)), 10**6)
    assert n == 1001
    assert_calm(rc)


def test_outbound_frame_cap():
    rc = ready(max_outbound_frames=50)
    n = feed_until_error(rc, (PingFrame(0, b"\x00" * 8).serialize() for _ in range(1000)),
                         1000)
    assert n == 51
    assert_calm(rc)


def test_data_on_a_stream_we_reset_gets_no_reply():
    """RFC 9113 §5.1: after our RST_STREAM, late frames on that stream are ignored (h2
    would answer each with another RST_STREAM: a second reset, and an outbound flood
    the peer controls).  So a spray of DATA on it costs no output at all."""
    rc = ready()
    rc.send(rc.headers(1, POST, end_stream=False))
    rc.server.send(StreamReset(1, 8))
    assert [f.__class__.__name__ for f in rc.read()] == ["RstStreamFrame"]
    with bounded(2 * MiB):
        n = feed_until_error(rc, (DataFrame(1, b"x").serialize() for _ in range(5000)), 5000)
    assert n == -1 and rc.error is None
    assert not [f for f in rc.read() if f.__class__.__name__ == "RstStreamFrame"]


# -- empty frames -------------------------------------------------------------------------

def test_empty_data_flood():
    rc = ready()
    rc.send(rc.headers(1, POST, end_stream=False))
    with bounded(1 * MiB):
        n = feed_until_error(rc, (DataFrame(1, b"").serialize() for _ in range(10**5)), 10**5)
    assert n == 2  # Envoy: 1 allowed
    assert_calm(rc)


def test_empty_headers_flood():
    rc = ready()
    frames = (HeadersFrame(sid, b"", flags=["END_HEADERS"]).serialize()
              for sid in range(1, 10**6, 2))
    n = feed_until_error(rc, frames, 1000)
    assert n == 2
    assert_calm(rc)


def test_empty_frames_between_data_are_fine():
    rc = ready()
    rc.send(rc.headers(1, POST, end_stream=False))
    for _ in range(100):
        rc.send(DataFrame(1, b""), DataFrame(1, b"x"))
    rc.send(DataFrame(1, b"", flags=["END_STREAM"]))  # END_STREAM: not "empty"
    assert rc.error is None


# -- WINDOW_UPDATE and PRIORITY churn -------------------------------------------------------

def test_window_update_spam():
    rc = ready()
    wu = WindowUpdateFrame(0, window_increment=1).serialize()
    with bounded(1 * MiB):
        n = feed_until_error(rc, (wu for _ in range(10**6)), 10**6)
    assert n == 6  # 5 + 2 x (0 streams + 10 x 0 DATA frames sent)
    assert_calm(rc)


def test_window_updates_in_proportion_to_our_data_are_fine():
    p = Pair()
    c, s = p.client, p.server
    c.send(Request(1, b"GET", b"/", [(b"host", b"a")]))
    c.send(EndOfMessage(1))
    p.exchange()
    s.send(Response(1, 200, []))
    received = 0
    for _ in range(200):   # 200 DATA frames, each acknowledged as it arrives
        s.send(Data(1, b"z" * 16384))
        _, cev = p.exchange()
        for e in cev:
            if isinstance(e, Data):
                c.acknowledge_received(1, len(e.data))
                received += len(e.data)
    assert received == 200 * 16384 and s.pending_error is None


def test_priority_churn():
    rc = ready()
    frames = (PriorityFrame(sid, depends_on=0, stream_weight=7).serialize()
              for sid in range(1, 10**6, 2))
    with bounded(1 * MiB):
        n = feed_until_error(rc, frames, 10**5)
    assert n == 101  # 100 x (1 + 0 streams)
    assert_calm(rc)


def test_priority_frames_per_opened_stream_are_fine():
    rc = ready()
    for sid in range(1, 40, 2):
        rc.send(rc.headers(sid))
        for _ in range(50):
            rc.send(PriorityFrame(sid, depends_on=0, stream_weight=1))
    assert rc.error is None
