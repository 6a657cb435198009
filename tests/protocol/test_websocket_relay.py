"""The WebSocket frame relay between real wsproto peers in memory: every frame kind both
ways, close handshakes and their codes, masking, UTF-8, limits, permessage-deflate."""

from __future__ import annotations

import struct
import tracemalloc
import zlib

import pytest
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from apigw_core.protocol import ConnectionClosed, ProtocolError
from apigw_core.protocol.events import Close
from apigw_core.protocol.websocket import WebSocketRelay, WSLimits, wire_close_code

from ws_helpers import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    Bench,
    WsPair,
    close_frame,
    counter_random,
    enabled_pmd,
    frame,
    read_frames,
    whole,
)

SIZES = [0, 1, 125, 126, 65535, 65536, 200_000]


@pytest.mark.parametrize("size", SIZES)
def test_text_and_binary_both_ways(size):
    p = WsPair()
    text = "é" * (size // 2) + "a" * (size % 2)
    assert whole(p.c2s(TextMessage(text))[1]) == [text]
    assert whole(p.c2s(BytesMessage(b"\x00\xff" * (size // 2)))[1]) == [b"\x00\xff" * (size // 2)]
    assert whole(p.s2c(TextMessage(text))[1]) == [text]
    assert whole(p.s2c(BytesMessage(bytes(size)))[1]) == [bytes(size)]
    assert p.relay.client.messages_received == 2 and p.relay.backend.messages_received == 2


def test_frames_are_relayed_as_they_are():
    r = WebSocketRelay(random=counter_random)
    data = (frame(TEXT, b"he", fin=False) + frame(CONT, b"", fin=False)
            + frame(PING, b"p") + frame(CONT, b"llo") + frame(BINARY, b"\x00" * 300))
    assert r.client.receive_data(data) == []
    out = read_frames(r.backend.data_to_send())
    assert [(f.fin, f.op, f.payload) for f in out] == [
        (False, TEXT, b"he"), (False, CONT, b""), (True, PING, b"p"), (True, CONT, b"llo"),
        (True, BINARY, b"\x00" * 300)]
    assert all(f.masked for f in out)


def test_fresh_masking_key_per_frame_and_none_towards_the_client():
    r = WebSocketRelay()  # os.urandom
    r.client.receive_data(frame(BINARY, b"same") * 3)
    wire = r.backend.data_to_send()
    keys = {wire[i * 10 + 2:i * 10 + 6] for i in range(3)}
    assert len(keys) == 3
    r.backend.receive_data(frame(BINARY, b"same", masked=False))
    assert r.client.data_to_send() == frame(BINARY, b"same", masked=False)


def test_one_byte_at_a_time():
    r = WebSocketRelay(random=counter_random)
    text = "héllo wörld".encode()
    data = frame(TEXT, text) + frame(PING, b"x") + frame(BINARY, bytes(300))
    out = b""
    for i in range(len(data)):
        assert r.client.receive_data(data[i:i + 1]) == []
        out += r.backend.data_to_send()
    frames = read_frames(out)
    # pieces of a frame still arriving go on as they come (each a valid frame)
    ping = next(i for i, f in enumerate(frames) if f.op == PING)
    assert frames[0].op == TEXT and all(f.op == CONT for f in frames[1:ping])
    assert b"".join(f.payload for f in frames[:ping]) == text and frames[ping - 1].fin
    assert frames[ping].payload == b"x"
    assert b"".join(f.payload for f in frames[ping + 1:]) == bytes(300)


def test_big_frame_arriving_slowly_is_relayed_in_pieces_with_bounded_memory():
    lim = WSLimits(fragment_size=16 << 10)
    r = WebSocketRelay(limits=lim, random=counter_random)
    payload = bytes(range(256)) * 4096  # 1 MiB, one frame
    data = frame(BINARY, payload)
    out = []
    for i in range(0, len(data), 4000):
        r.client.receive_data(data[i:i + 4000])
        assert r.client._pending_len < lim.fragment_size
        out.append(r.backend.data_to_send())
    frames = read_frames(b"".join(out))
    assert frames[0].op == BINARY and all(f.op == CONT for f in frames[1:])
    assert [f.fin for f in frames] == [False] * (len(frames) - 1) + [True]
    assert all(len(f.payload) >= lim.fragment_size for f in frames[:-1])
    assert b"".join(f.payload for f in frames) == payload


def test_fragmented_message_through_wsproto_peers():
    p = WsPair()
    _, seen = p.c2s(TextMessage("a", message_finished=False), Ping(b"mid"),
                    TextMessage("b", message_finished=False), TextMessage("c"))
    assert [type(e).__name__ for e in seen] == ["TextMessage", "Ping", "TextMessage",
                                                "TextMessage"]
    assert whole(seen) == [Ping(b"mid"), "abc"]


# -- control frames -------------------------------------------------------------------------

def test_ping_and_pong_are_forwarded_end_to_end():
    p = WsPair()
    assert p.c2s(Ping(b"c1"))[1] == [Ping(b"c1")]
    assert p.s2c(Pong(b"c1"))[1] == [Pong(b"c1")]
    assert p.s2c(Ping(b""))[1] == [Ping(b"")]
    assert p.c2s(Pong(b""))[1] == [Pong(b"")]
    assert p.c2s(Pong(b"unsolicited"))[1] == [Pong(b"unsolicited")]


def test_gateway_ping_pong_is_consumed():
    p = WsPair()
    p.relay.backend.ping(b"gw-1")
    p.server.receive_data(p.relay.backend.data_to_send())
    assert list(p.server.events()) == [Ping(b"gw-1")]
    _, to_client = p.s2c(Pong(b"gw-1"))
    assert to_client == []  # not forwarded
    _, to_client = p.s2c(Pong(b"gw-1"))
    assert to_client == [Pong(b"gw-1")]  # a second one is the backend's own business
    p.relay.client.ping(b"gw-2")
    p.client.receive_data(p.relay.client.data_to_send())
    assert list(p.client.events()) == [Ping(b"gw-2")]
    assert p.c2s(Pong(b"gw-2"))[1] == []
    with pytest.raises(ValueError):
        p.relay.client.ping(b"x" * 126)


def test_ping_while_the_other_side_is_closing():
    r = WebSocketRelay(random=counter_random)
    r.backend.receive_data(close_frame(1000, masked=False))  # the backend closes first
    assert read_frames(r.client.data_to_send())[0].op == CLOSE
    # the client pings before answering: the backend, which awaits the answer, gets it
    r.client.receive_data(frame(PING, b"late"))
    assert [(f.op, f.payload) for f in read_frames(r.backend.data_to_send())] == [
        (PING, b"late")]
    # once the backend was sent a Close, a ping from the client is answered here
    r = WebSocketRelay(random=counter_random)
    r.backend.close(1001)
    r.backend.data_to_send()
    r.client.receive_data(frame(PING, b"p"))
    assert r.backend.data_to_send() == b""
    assert [(f.op, f.payload) for f in read_frames(r.client.data_to_send())] == [(PONG, b"p")]
    # and dropped when both were sent one
    r = WebSocketRelay(random=counter_random)
    r.close()
    r.backend.data_to_send()
    r.client.data_to_send()
    r.backend.receive_data(frame(PING, b"x", masked=False))
    assert r.client.data_to_send() == b"" and r.backend.data_to_send() == b""


# -- closing --------------------------------------------------------------------------------

@pytest.mark.parametrize("code,reason", [(1000, "bye"), (1001, ""), (1002, "oops"),
                                         (1011, "é" * 40), (1013, ""), (3000, "app"),
                                         (4999, "x" * 123)])
def test_close_code_and_reason_go_through_and_the_handshake_completes(code, reason):
    p = WsPair()
    evs, seen = p.c2s(CloseConnection(code, reason))
    assert evs == [Close(1, code, reason)]
    assert seen == [CloseConnection(code, reason)]
    assert p.relay.backend.close_sent and not p.relay.client.close_sent
    assert not p.relay.client.should_close and not p.relay.finished
    # the backend may still send data before it answers (wsproto would not): relayed
    p.relay.backend.receive_data(frame(TEXT, b"last words", masked=False))
    p.client.receive_data(p.relay.client.data_to_send())
    assert whole(list(p.client.events())) == ["last words"]
    evs, seen = p.s2c(CloseConnection(code, reason))
    assert evs == [Close(1, code, reason)]
    assert seen == [CloseConnection(code, reason)]
    assert p.relay.client.should_close and p.relay.backend.should_close and p.relay.finished
    assert p.relay.client.close_code == code and p.relay.client.close_reason == reason
    assert p.relay.backend.receive_data(b"") == [ConnectionClosed()]
    assert p.relay.client.receive_data(b"") == [ConnectionClosed()]
    assert p.relay.client.close_received


def test_close_code_1014_is_registered_and_goes_through():
    # IANA "Bad Gateway"; wsproto 1.3 refuses it, the websockets library accepts it
    r = WebSocketRelay(random=counter_random)
    assert r.backend.receive_data(close_frame(1014, masked=False)) == [Close(1, 1014, "")]
    assert read_frames(r.client.data_to_send())[0].payload == b"\x03\xf6"


def test_close_without_code_is_forwarded_without_code():
    r = WebSocketRelay(random=counter_random)
    assert r.backend.receive_data(close_frame(masked=False)) == [Close(1, 1005, "")]
    (f,) = read_frames(r.client.data_to_send())
    assert (f.op, f.payload) == (CLOSE, b"")


def test_frames_after_a_close_are_not_read():
    r = WebSocketRelay(random=counter_random)
    evs = r.client.receive_data(close_frame(1000) + frame(TEXT, b"after") + b"\xff\xff")
    assert evs == [Close(1, 1000, "")]
    assert [f.op for f in read_frames(r.backend.data_to_send())] == [CLOSE]
    assert r.client.receive_data(frame(TEXT, b"more")) == []
    assert r.backend.data_to_send() == b""


def test_gateway_close_maps_codes_that_must_not_be_sent():
    for code, wire in [(None, None), (1005, None), (1006, 1001), (1015, 1011), (999, 1011),
                       (1004, 1011), (2000, 1011), (5000, 1011), (1000, 1000), (4000, 4000)]:
        assert wire_close_code(code) == wire
        r = WebSocketRelay(random=counter_random)
        r.close(code, "")
        for data in (r.client.data_to_send(), r.backend.data_to_send()):
            (f,) = read_frames(data)
            got = struct.unpack("!H", f.payload[:2])[0] if f.payload else None
            assert got == wire
    r = WebSocketRelay(random=counter_random)
    r.close(1001, "ü" * 100)  # 200 bytes: cut at a code point boundary to fit 125
    (f,) = read_frames(r.client.data_to_send())
    assert len(f.payload) == 124 and f.payload[2:].decode() == "ü" * 61


def test_client_gone_without_close():
    r = WebSocketRelay(random=counter_random)
    assert r.client.receive_data(b"") == [ConnectionClosed()]
    assert r.client.should_close and r.client.close_code == 1006
    assert not r.client.close_received
    (f,) = read_frames(r.backend.data_to_send())
    assert f.op == CLOSE and struct.unpack("!H", f.payload[:2])[0] == 1001
    assert r.backend.receive_data(close_frame(1001, masked=False)) == [Close(1, 1001, "")]
    assert r.client.data_to_send() == b""  # nobody to tell
    assert r.finished


def test_backend_gone_mid_message():
    r = WebSocketRelay(random=counter_random)
    r.backend.receive_data(frame(TEXT, b"part", fin=False, masked=False))
    assert r.backend.receive_data(b"") == [ConnectionClosed()]
    frames = read_frames(r.client.data_to_send())
    assert [(f.op, f.fin) for f in frames] == [(TEXT, False), (CLOSE, True)]
    assert struct.unpack("!H", frames[1].payload[:2])[0] == 1001


def test_simultaneous_closes():
    r = WebSocketRelay(random=counter_random)
    r.client.receive_data(close_frame(1000))
    r.backend.receive_data(close_frame(1001, masked=False))
    assert [f.payload for f in read_frames(r.backend.data_to_send())] == [b"\x03\xe8"]
    assert [f.payload for f in read_frames(r.client.data_to_send())] == [b"\x03\xe9"]
    assert r.finished


# -- protocol errors ------------------------------------------------------------------------

def test_client_error_closes_both_sides_and_raises_again():
    r = WebSocketRelay(random=counter_random, client_stream_id=5, backend_stream_id=1)
    with pytest.raises(ProtocolError) as info:
        r.client.receive_data(frame(TEXT, b"\xff"))
    exc = info.value
    assert (exc.error_code, exc.status_hint, exc.stream_id) == (1007, 400, 5)
    assert r.client.pending_error is exc and r.client.should_close
    (f,) = read_frames(r.client.data_to_send())
    assert f.op == CLOSE and f.payload[:2] == b"\x03\xef"  # 1007
    (g,) = read_frames(r.backend.data_to_send())
    assert g.op == CLOSE and g.payload[:2] == b"\x03\xe9"  # 1001: the client is gone
    with pytest.raises(ProtocolError) as again:
        r.client.receive_data(b"anything")
    assert again.value is exc


def test_backend_error_gives_the_client_1011():
    r = WebSocketRelay(random=counter_random)
    with pytest.raises(ProtocolError) as info:
        r.backend.receive_data(frame(BINARY, b"x", masked=True))  # servers never mask
    assert (info.value.error_code, info.value.status_hint) == (1002, 502)
    (f,) = read_frames(r.backend.data_to_send())
    assert f.masked and f.payload[:2] == b"\x03\xea"  # 1002, masked: we are its client
    (g,) = read_frames(r.client.data_to_send())
    assert g.payload[:2] == b"\x03\xf3"  # 1011
    assert r.backend.should_close and not r.client.should_close
    r.client.receive_data(close_frame(1011))
    assert r.finished and r.backend.data_to_send() == b""


BAD_FROM_CLIENT = {
    "unmasked": (frame(TEXT, b"x", masked=False), 1002),
    "reserved opcode 3": (frame(3, b""), 1002),
    "reserved opcode 11": (frame(11, b""), 1002),
    "RSV1 without deflate": (frame(TEXT, b"x", rsv=4), 1002),
    "RSV2": (frame(BINARY, b"x", rsv=2), 1002),
    "RSV3 on ping": (frame(PING, b"", rsv=1), 1002),
    "fragmented ping": (frame(PING, b"", fin=False), 1002),
    "ping of 126 bytes": (frame(PING, b"x" * 126), 1002),
    "continuation first": (frame(CONT, b"x"), 1002),
    "new message inside one": (frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"), 1002),
    "2-byte length for 5 bytes": (frame(BINARY, b"12345", wide=2), 1002),
    "8-byte length for 300 bytes": (frame(BINARY, b"x" * 300, wide=8), 1002),
    "64-bit length with top bit": (frame(BINARY, b"", length=1 << 63), 1002),
    "close with 1 byte": (frame(CLOSE, b"\x03"), 1002),
    "close code 1005": (close_frame(1005), 1002),
    "close code 999": (close_frame(999), 1002),
    "close code 2999": (close_frame(2999), 1002),
    "close code 5000": (close_frame(5000), 1002),
    "close reason not UTF-8": (close_frame(1000, b"\xc3"), 1007),
    "invalid UTF-8": (frame(TEXT, b"ok\xed\xa0\x80"), 1007),
    "truncated UTF-8 at message end": (frame(TEXT, b"a\xc3", fin=False) + frame(CONT, b""),
                                       1007),
}


@pytest.mark.parametrize("data,code", BAD_FROM_CLIENT.values(), ids=BAD_FROM_CLIENT.keys())
def test_bad_frames_from_the_client(data, code):
    b = Bench().send(data)
    assert b.error is not None and b.error.error_code == code
    assert b.close_code() == code
    b.check_wire()


def test_masked_frame_from_backend_and_unmasked_from_client_both_refused():
    r = WebSocketRelay()
    with pytest.raises(ProtocolError):
        r.backend.receive_data(frame(PING, b"", masked=True))
    r = WebSocketRelay()
    with pytest.raises(ProtocolError):
        r.client.receive_data(frame(PING, b"", masked=False))


def test_utf8_split_across_frames_and_reads():
    text = "κόσμε €𤭢".encode()
    for cut in range(1, len(text)):
        b = Bench().send(frame(TEXT, text[:cut], fin=False))
        b.send(*[bytes([c]) for c in frame(CONT, text[cut:])])
        assert b.error is None and b.client_messages() == [(TEXT, text)]
        b.check_wire()


# -- limits ---------------------------------------------------------------------------------

def test_frame_too_big_is_refused_on_its_header():
    r = WebSocketRelay(limits=WSLimits(max_frame_size=1000))
    r.client.receive_data(frame(BINARY, b"x" * 1000))
    with pytest.raises(ProtocolError) as info:
        r.client.receive_data(frame(BINARY, b"x" * 1001)[:8])  # header and key only
    assert info.value.error_code == 1009


def test_message_too_big_across_frames():
    lim = WSLimits(max_message_size=1000)
    b = Bench(limits=lim).send(frame(TEXT, b"x" * 600, fin=False), frame(CONT, b"x" * 400))
    assert b.error is None and b.client_messages() == [(TEXT, b"x" * 1000)]
    b.send(frame(TEXT, b"x" * 600, fin=False), frame(CONT, b"x" * 401, fin=False))
    assert b.error.error_code == 1009 and b.close_code() == 1009
    r = WebSocketRelay(limits=lim)
    with pytest.raises(ProtocolError) as info:
        r.backend.receive_data(frame(BINARY, b"", length=1001, masked=False))
    assert info.value.error_code == 1009


# -- permessage-deflate ---------------------------------------------------------------------

def deflate_message(data: bytes, *, final_block: bool = False) -> bytes:
    c = zlib.compressobj(wbits=-15)
    out = c.compress(data) + c.flush(zlib.Z_FINISH if final_block else zlib.Z_SYNC_FLUSH)
    return out if final_block else out[:-4]


@pytest.mark.parametrize("kw", [{}, {"client_no_context_takeover": True,
                                     "server_no_context_takeover": True},
                                {"client_max_window_bits": 9, "server_max_window_bits": 10}])
def test_compressed_messages_pass_through_both_ways(kw):
    p = WsPair(deflate=True, client_ext=[enabled_pmd(**kw)], server_ext=[enabled_pmd(**kw)])
    msgs = ["hello " * 1000, "é€" * 5000, ""]
    for m in msgs:
        assert whole(p.c2s(TextMessage(m))[1]) == [m]
        assert whole(p.s2c(TextMessage(m))[1]) == [m]
    big = bytes(range(256)) * 2000
    assert whole(p.c2s(BytesMessage(big))[1]) == [big]
    _, seen = p.s2c(BytesMessage(b"ab" * 100, message_finished=False),
                    BytesMessage(b"cd" * 100))
    assert whole(seen) == [b"ab" * 100 + b"cd" * 100]


def test_control_frame_inside_a_compressed_message():
    # (wsproto 1.3 itself loses the compression flag here; the websockets peers in
    # test_websocket_carriers.py cover it end to end)
    r = WebSocketRelay(deflate=True, random=counter_random)
    z = deflate_message("κόσμε".encode() * 50)
    data = (frame(TEXT, z[:7], fin=False, rsv=4, masked=False) + frame(PING, b"p", masked=False)
            + frame(CONT, z[7:], masked=False))
    assert r.backend.receive_data(data) == []
    out = read_frames(r.client.data_to_send())
    assert [(f.op, f.rsv, f.fin) for f in out] == [(TEXT, 4, False), (PING, 0, True),
                                                   (CONT, 0, True)]


def test_compressed_frames_keep_rsv1_on_the_first_frame_only():
    r = WebSocketRelay(deflate=True, random=counter_random)
    z = deflate_message(b"x" * 10000)
    r.client.receive_data(frame(TEXT, z[:5], fin=False, rsv=4) + frame(CONT, z[5:]))
    out = read_frames(r.backend.data_to_send())
    assert [(f.op, f.rsv, f.fin) for f in out] == [(TEXT, 4, False), (CONT, 0, True)]
    assert b"".join(f.payload for f in out) == z  # unchanged: never recompressed
    r.client.receive_data(frame(TEXT, b"plain"))  # uncompressed messages still allowed
    assert read_frames(r.backend.data_to_send())[0].rsv == 0


def test_final_deflate_block_then_next_message():
    # RFC 7692 §7.2.3.3: a sender may end a message with a BFINAL block; the next message
    # then starts a new deflate stream (wsproto 1.3 as a receiver does not handle it)
    r = WebSocketRelay(deflate=True, random=counter_random)
    data = (frame(TEXT, deflate_message(b"first", final_block=True), rsv=4)
            + frame(TEXT, deflate_message(b"second"), rsv=4))
    assert r.client.receive_data(data) == []
    assert [(f.op, f.rsv) for f in read_frames(r.backend.data_to_send())] == [(TEXT, 4)] * 2


DEFLATE_BAD = {
    "RSV1 on continuation": (frame(TEXT, deflate_message(b"ab"), fin=False, rsv=4)
                             + frame(CONT, b"", rsv=4), 1002),
    "RSV1 on ping": (frame(PING, b"", rsv=4), 1002),
    "corrupt deflate": (frame(BINARY, b"\xff\xff\xff\xff", rsv=4), 1007),
    "compressed invalid UTF-8": (frame(TEXT, deflate_message(b"ok\xff"), rsv=4), 1007),
    "compressed truncated UTF-8": (frame(TEXT, deflate_message(b"ok\xc3"), rsv=4), 1007),
    "data after final block": (frame(BINARY, deflate_message(b"x", final_block=True) + b"\x00",
                                     rsv=4), 1007),
}


@pytest.mark.parametrize("data,code", DEFLATE_BAD.values(), ids=DEFLATE_BAD.keys())
def test_bad_compressed_frames(data, code):
    r = WebSocketRelay(deflate=True)
    with pytest.raises(ProtocolError) as info:
        r.client.receive_data(data)
    assert info.value.error_code == code


def test_decompression_bomb_stops_at_the_limit_with_bounded_memory():
    lim = WSLimits(max_message_size=1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    bomb = b"".join(c.compress(chunk) for _ in range(256)) + c.flush(zlib.Z_SYNC_FLUSH)[:-4]
    assert len(bomb) < 300_000  # 256 MiB of zeros once inflated
    data = frame(BINARY, bomb, rsv=4, masked=False)
    r = WebSocketRelay(deflate=True, limits=lim)
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError) as info:
            for i in range(0, len(data), 65536):
                r.backend.receive_data(data[i:i + 65536])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.error_code == 1009
    assert peak < 2 * len(data) + (1 << 20)  # never the inflated megabytes


def test_empty_deflate_blocks_cannot_make_an_endless_message():
    lim = WSLimits(max_message_size=10_000)
    r = WebSocketRelay(deflate=True, limits=lim)
    empty_block = b"\x00\x00\x00\xff\xff"  # a stored block of length 0: inflates to b""
    r.client.receive_data(frame(BINARY, empty_block * 1000, fin=False, rsv=4))
    with pytest.raises(ProtocolError) as info:
        r.client.receive_data(frame(CONT, empty_block * 1001, fin=False))
    assert info.value.error_code == 1009
