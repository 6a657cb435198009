"""A port of the Autobahn|Testsuite fuzzing-client cases that matter for a relay.

The Autobahn tool cannot run here, so its cases are re-created as tables: the "server under
test" is our relay in front of a wsproto echo backend (what Autobahn expects a server to
be), and the fuzzing client is raw frames written by hand (`ws_helpers.frame`).  Each test
id is the Autobahn case number.  Classes: 1 framing, 2 pings/pongs, 3 reserved bits,
4 opcodes, 5 fragmentation, 6 UTF-8, 7 close handling, 9 limits (and their enforcement),
12 permessage-deflate.

Outcomes, as Autobahn grades them: "echo" (the messages come back, then a clean close
1000), "fail" (the gateway fails the connection with that close code, and the bad frame
never reaches the backend).  Autobahn sends a case's frames back to back; where it waits
between frames (or a valid message precedes the bad frame) we feed the frames as separate
reads, each pumped through, as a network would deliver them.  Sent in one read, the echo
of a valid message that precedes a bad frame cannot come back (the client connection is
failed before the backend answers): Autobahn's NON-STRICT outcome for those cases.
"""

from __future__ import annotations

import zlib
from typing import Optional

import pytest

from apigw_core.protocol.websocket import WSLimits

from ws_helpers import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    Bench,
    EchoBackend,
    close_frame,
    enabled_pmd,
    frame,
    kuhn_utf8_cases,
)

BYE = close_frame(1000)


def chops(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def run(*reads: bytes, limits: Optional[WSLimits] = None, deflate: bool = False) -> Bench:
    backend = EchoBackend(extensions=[enabled_pmd()]) if deflate else None
    return Bench(limits=limits, deflate=deflate, backend=backend).send(*reads)


def at_backend(b: Bench) -> list:
    """The messages and pings the backend got (not the Close it was sent)."""
    return [m for m in b.backend.received if not hasattr(m, "code")]


def expect_echo(b: Bench, expected: list[tuple[int, bytes]], close: bool = True) -> None:
    assert b.error is None and b.backend_error is None, (b.error, b.backend_error)
    got = b.client_messages()
    if close:
        assert got[-1][0] == CLOSE and got[-1][1][:2] == b"\x03\xe8"
        got = got[:-1]
        assert b.relay.finished
    assert got == expected
    b.check_wire()


def expect_fail(b: Bench, code: int, echoed: Optional[list] = None) -> None:
    assert b.error is not None and b.error.error_code == code
    assert b.close_code() == code
    if echoed is not None:
        assert [m for m in b.client_messages() if m[0] != CLOSE] == echoed
    assert b.relay.client.should_close
    b.check_wire()


# -- 1 framing ------------------------------------------------------------------------------

FRAMING = {"1.%d.%d" % (op, i + 1): (op, n, chop)
           for op in (1, 2)
           for i, (n, chop) in enumerate([(0, 0), (125, 0), (126, 0), (127, 0), (128, 0),
                                          (65535, 0), (65536, 0), (65536, 997)])}


@pytest.mark.parametrize("op,n,chop", FRAMING.values(), ids=FRAMING.keys())
def test_1_framing(op, n, chop):
    payload = (b"*" if op == TEXT else b"\xfe") * n
    data = frame(op, payload)
    b = run(*(chops(data, chop) if chop else [data]), BYE)
    expect_echo(b, [(op, payload)])


# -- 2 pings and pongs ----------------------------------------------------------------------

def test_2_1():
    expect_echo(run(frame(PING), BYE), [(PONG, b"")])


def test_2_2():
    expect_echo(run(frame(PING, b"Hello, world!"), BYE), [(PONG, b"Hello, world!")])


def test_2_3():
    p = b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff"
    expect_echo(run(frame(PING, p), BYE), [(PONG, p)])


def test_2_4():
    p = b"\xfe" * 125
    expect_echo(run(frame(PING, p), BYE), [(PONG, p)])


def test_2_5():
    expect_fail(run(frame(PING, b"\xfe" * 126)), 1002)


def test_2_6():
    p = b"\xfe" * 125
    expect_echo(run(*chops(frame(PING, p), 1), BYE), [(PONG, p)])


def test_2_7():
    expect_echo(run(frame(PONG), BYE), [])


def test_2_8():
    expect_echo(run(frame(PONG, b"unsolicited pong payload"), BYE), [])


def test_2_9():
    expect_echo(run(frame(PONG, b"unsolicited pong payload") + frame(PING, b"ping"), BYE),
                [(PONG, b"ping")])


def test_2_10():
    pings = [b"payload-%d" % i for i in range(10)]
    expect_echo(run(b"".join(frame(PING, p) for p in pings), BYE),
                [(PONG, p) for p in pings])


def test_2_11():
    pings = [b"payload-%d" % i for i in range(10)]
    expect_echo(run(*chops(b"".join(frame(PING, p) for p in pings), 1), BYE),
                [(PONG, p) for p in pings])


# -- 3 reserved bits ------------------------------------------------------------------------

HELLO = b"Hello, world!"


def test_3_1():
    expect_fail(run(frame(TEXT, HELLO, rsv=1)), 1002, [])


def test_3_2():
    expect_fail(run(frame(TEXT, HELLO), frame(TEXT, HELLO, rsv=2), frame(PING)), 1002,
                [(TEXT, HELLO)])


def test_3_3():
    # all at once: NON-STRICT (no echo), see the module docstring
    expect_fail(run(frame(TEXT, HELLO) + frame(TEXT, HELLO, rsv=3) + frame(PING)), 1002, [])


def test_3_4():
    b = run(frame(TEXT, HELLO), *chops(frame(TEXT, HELLO, rsv=4) + frame(PING), 1))
    expect_fail(b, 1002, [(TEXT, HELLO)])


def test_3_5():
    expect_fail(run(frame(BINARY, bytes(range(8)), rsv=5)), 1002, [])


def test_3_6():
    expect_fail(run(frame(PING, HELLO, rsv=6)), 1002, [])


def test_3_7():
    expect_fail(run(close_frame(1000, rsv=7)), 1002, [])


# -- 4 opcodes ------------------------------------------------------------------------------

OPCODES = {
    # case: (opcode, payload, preceded by a text message, in 1-byte chops)
    "4.1.1": (3, b"", False, False),
    "4.1.2": (4, b"reserved opcode payload", False, False),
    "4.1.3": (5, b"", True, False),
    "4.1.4": (6, b"reserved opcode payload", True, False),
    "4.1.5": (7, b"reserved opcode payload", True, True),
    "4.2.1": (11, b"", False, False),
    "4.2.2": (12, b"reserved opcode payload", False, False),
    "4.2.3": (13, b"", True, False),
    "4.2.4": (14, b"reserved opcode payload", True, False),
    "4.2.5": (15, b"reserved opcode payload", True, True),
}


@pytest.mark.parametrize("op,payload,text_first,bytewise", OPCODES.values(),
                         ids=OPCODES.keys())
def test_4_opcodes(op, payload, text_first, bytewise):
    bad = frame(op, payload) + frame(PING)
    reads = ([frame(TEXT, HELLO)] if text_first else []) + (chops(bad, 1) if bytewise
                                                             else [bad])
    b = run(*reads)
    expect_fail(b, 1002, [(TEXT, HELLO)] if text_first else [])
    assert all(f.op < 3 or f.op > 7 for f in b.client_frames())


# -- 5 fragmentation ------------------------------------------------------------------------

FRAG1, FRAG2 = b"fragment1", b"fragment2"
TWO = frame(TEXT, FRAG1, fin=False) + frame(CONT, FRAG2)
TWO_PING = frame(TEXT, FRAG1, fin=False) + frame(PING, b"ping payload") + frame(CONT, FRAG2)


def test_5_1():
    expect_fail(run(frame(PING, FRAG1, fin=False) + frame(CONT, FRAG2)), 1002)


def test_5_2():
    expect_fail(run(frame(PONG, FRAG1, fin=False) + frame(CONT, FRAG2)), 1002)


@pytest.mark.parametrize("reads", [
    pytest.param([TWO], id="5.3"), pytest.param(chops(TWO, 1), id="5.4"),
    pytest.param([frame(TEXT, FRAG1, fin=False), frame(CONT, FRAG2)], id="5.5")])
def test_5_3_to_5_5(reads):
    expect_echo(run(*reads, BYE), [(TEXT, FRAG1 + FRAG2)])


@pytest.mark.parametrize("reads", [
    pytest.param([TWO_PING], id="5.6"), pytest.param(chops(TWO_PING, 1), id="5.7"),
    pytest.param([frame(TEXT, FRAG1, fin=False), frame(PING, b"ping payload"),
                  frame(CONT, FRAG2)], id="5.8")])
def test_5_6_to_5_8(reads):
    expect_echo(run(*reads, BYE), [(PONG, b"ping payload"), (TEXT, FRAG1 + FRAG2)])


NO_START_FIN = frame(CONT, b"non-continuation payload") + frame(TEXT, HELLO) + frame(PING)
NO_START = (frame(CONT, FRAG1, fin=False) + frame(TEXT, HELLO) + frame(PING))


@pytest.mark.parametrize("reads", [
    pytest.param([NO_START_FIN], id="5.9"), pytest.param(chops(NO_START_FIN, 3), id="5.10"),
    pytest.param(chops(NO_START_FIN, 1), id="5.11"), pytest.param([NO_START], id="5.12"),
    pytest.param(chops(NO_START, 3), id="5.13"), pytest.param(chops(NO_START, 1), id="5.14")])
def test_5_9_to_5_14(reads):
    b = run(*reads)
    expect_fail(b, 1002, [])
    assert at_backend(b) == []


def test_5_15():
    b = run(TWO, frame(CONT, b"fragment3") + frame(CONT, b"fragment4", fin=False))
    expect_fail(b, 1002, [(TEXT, FRAG1 + FRAG2)])


def test_5_16():
    bad = frame(CONT, FRAG1, fin=False) + frame(TEXT, FRAG2, fin=False) + frame(CONT, b"x")
    expect_fail(run(bad * 2), 1002, [])


def test_5_17():
    bad = frame(CONT, FRAG1) + frame(TEXT, FRAG2, fin=False) + frame(CONT, b"x")
    expect_fail(run(bad * 2), 1002, [])


def test_5_18():
    b = run(frame(TEXT, FRAG1, fin=False) + frame(TEXT, FRAG2))
    expect_fail(b, 1002, [])
    assert at_backend(b) == []


@pytest.mark.parametrize("together", [pytest.param(False, id="5.19"),
                                      pytest.param(True, id="5.20")])
def test_5_19_and_5_20(together):
    reads = [frame(TEXT, b"fragment1", fin=False), frame(CONT, b"fragment2", fin=False),
             frame(PING, b"pongme 1!"), frame(CONT, b"fragment3", fin=False),
             frame(CONT, b"fragment4", fin=False), frame(PING, b"pongme 2!"),
             frame(CONT, b"fragment5")]
    b = run(*([b"".join(reads)] if together else reads), BYE)
    expect_echo(b, [(PONG, b"pongme 1!"), (PONG, b"pongme 2!"),
                    (TEXT, b"fragment1fragment2fragment3fragment4fragment5")])


# -- 6 UTF-8 --------------------------------------------------------------------------------

UTF8_SAMPLE = "Hello-µ@ßöäüàá-UTF-8!!".encode()
KOSME = "κόσμε".encode()


def test_6_1_1():
    expect_echo(run(frame(TEXT, b""), BYE), [(TEXT, b"")])


def test_6_1_2():
    b = run(frame(TEXT, b"", fin=False) + frame(CONT, b"", fin=False) + frame(CONT, b""), BYE)
    expect_echo(b, [(TEXT, b"")])


def test_6_1_3():
    b = run(frame(TEXT, b"", fin=False) + frame(CONT, b"middle", fin=False) + frame(CONT, b""),
            BYE)
    expect_echo(b, [(TEXT, b"middle")])


@pytest.mark.parametrize("payload,split", [
    pytest.param(UTF8_SAMPLE, None, id="6.2.1"),
    pytest.param(UTF8_SAMPLE, [0, 7, 14, len(UTF8_SAMPLE)], id="6.2.2"),
    pytest.param(UTF8_SAMPLE, "bytes", id="6.2.3"), pytest.param(KOSME, "bytes", id="6.2.4")])
def test_6_2_valid_utf8_in_fragments(payload, split):
    if split is None:
        data = frame(TEXT, payload)
    else:
        cuts = list(range(len(payload) + 1)) if split == "bytes" else split
        parts = [payload[a:b] for a, b in zip(cuts, cuts[1:])]
        data = b"".join(frame(TEXT if i == 0 else CONT, p, fin=i == len(parts) - 1)
                        for i, p in enumerate(parts))
    expect_echo(run(data, BYE), [(TEXT, payload)])


INVALID = "κόσμε".encode() + b"\xed\xa0\x80" + b"edited"


def test_6_3_1():
    expect_fail(run(frame(TEXT, INVALID)), 1007, [])


def test_6_3_2():
    data = b"".join(frame(TEXT if i == 0 else CONT, INVALID[i:i + 1], fin=i == len(INVALID) - 1)
                    for i in range(len(INVALID)))
    expect_fail(run(data), 1007, [])


P1 = "κόσμε".encode()
P2 = b"\xf4\x90\x80\x80"  # U+110000: out of range, invalid at its second byte
P3 = b"edited"


def _fails_fast(reads: list[bytes], fatal: int) -> None:
    """The connection is failed by read number `fatal` (0-based), before the rest."""
    b = Bench()
    for i, r in enumerate(reads):
        b.send(r)
        assert (b.error is not None) == (i >= fatal), i
    expect_fail(b, 1007, [])
    assert at_backend(b) == []


def test_6_4_1():
    _fails_fast([frame(TEXT, P1, fin=False), frame(CONT, P2, fin=False), frame(CONT, P3)], 1)


def test_6_4_2():
    _fails_fast([frame(TEXT, P1 + P2[:1], fin=False), frame(CONT, P2[1:], fin=False),
                 frame(CONT, P3)], 1)


def test_6_4_3():
    whole = frame(TEXT, P1 + P2 + P3)
    head = len(whole) - len(P1 + P2 + P3)
    _fails_fast([whole[:head + len(P1)], whole[head + len(P1):head + len(P1) + 4],
                 whole[head + len(P1) + 4:]], 1)


def test_6_4_4():
    whole = frame(TEXT, P1 + P2 + P3)
    head = len(whole) - len(P1 + P2 + P3)
    cut = head + len(P1)
    _fails_fast([whole[:cut], whole[cut:cut + 2], whole[cut + 2:]], 1)


UTF8_CASES = kuhn_utf8_cases()


@pytest.mark.parametrize("valid,payload", UTF8_CASES.values(), ids=UTF8_CASES.keys())
def test_6_5_to_6_23_utf8(valid, payload):
    try:
        payload.decode("utf-8")
        assert valid
    except UnicodeDecodeError:
        assert not valid
    b = run(frame(TEXT, payload), BYE)
    if valid:
        expect_echo(b, [(TEXT, payload)])
    else:
        expect_fail(b, 1007, [])


# -- 7 close handling -----------------------------------------------------------------------

def test_7_1_1():
    expect_echo(run(frame(TEXT, HELLO), BYE), [(TEXT, HELLO)])


def test_7_1_2():
    b = run(BYE + BYE)
    expect_echo(b, [])
    assert len([f for f in b.client_frames() if f.op == CLOSE]) == 1


def test_7_1_3():
    expect_echo(run(BYE + frame(PING, b"after close")), [])


def test_7_1_4():
    b = run(BYE + frame(TEXT, b"after close"))
    expect_echo(b, [])
    assert b.backend.received[-1].code == 1000 and len(b.backend.received) == 1


def test_7_1_5():
    b = run(frame(TEXT, FRAG1, fin=False) + BYE + frame(CONT, FRAG2))
    expect_echo(b, [])


def test_7_1_6():
    big = b"BAsd7&jh23" * 26214  # ~256 KiB
    b = run(frame(TEXT, big) + BYE + frame(PING, b"ping"))
    assert b.error is None and b.relay.finished
    # Autobahn: implementation-defined; here the backend echoes before answering the
    # Close, and a client that sent its Close may still receive data (RFC 6455 §5.5.1)
    assert b.client_messages() == [(TEXT, big), (CLOSE, b"\x03\xe8")]
    assert at_backend(b) == [big.decode()]


def test_7_3_1():
    b = run(close_frame())
    assert b.error is None and b.relay.finished
    assert [(f.op, f.payload) for f in b.client_frames()] == [(CLOSE, b"")]


def test_7_3_2():
    expect_fail(run(frame(CLOSE, b"\x2a")), 1002)


def test_7_3_3():
    expect_echo(run(close_frame(1000)), [])


def test_7_3_4():
    expect_echo(run(close_frame(1000, b"Hello World!")), [])


def test_7_3_5():
    expect_echo(run(close_frame(1000, b"*" * 123)), [])


def test_7_3_6():
    expect_fail(run(close_frame(1000, b"*" * 124)), 1002)


def test_7_5_1():
    expect_fail(run(close_frame(1000, INVALID)), 1007)


VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999]


@pytest.mark.parametrize("code", VALID_CODES,
                         ids=["7.7.%d" % (i + 1) for i in range(len(VALID_CODES))])
def test_7_7_valid_close_codes(code):
    b = run(close_frame(code))
    assert b.error is None and b.relay.finished
    (f,) = [f for f in b.client_frames() if f.op == CLOSE]
    assert int.from_bytes(f.payload[:2], "big") == code  # the backend echoed it through
    assert b.backend.received[-1].code == code
    b.check_wire()


@pytest.mark.parametrize("code", INVALID_CODES + [5000, 65535],
                         ids=["7.9.%d" % (i + 1) for i in range(len(INVALID_CODES))]
                         + ["7.13.1", "7.13.2"])
def test_7_9_invalid_close_codes(code):
    b = run(close_frame(code))
    expect_fail(b, 1002)
    assert all(not hasattr(e, "code") or e.code == 1001 for e in b.backend.received)


# -- 9 limits -------------------------------------------------------------------------------

MIB = 1 << 20
SIZES = [64 << 10, 256 << 10, MIB, 4 * MIB, 8 * MIB, 16 * MIB]


@pytest.mark.parametrize("op,n", [(TEXT, n) for n in SIZES[:4]] + [(TEXT, 16 * MIB)]
                         + [(BINARY, n) for n in SIZES[:4]] + [(BINARY, 16 * MIB)],
                         ids=["9.1.%d" % i for i in (1, 2, 3, 4, 6)]
                         + ["9.2.%d" % i for i in (1, 2, 3, 4, 6)])
def test_9_1_and_9_2_big_messages(op, n):
    payload = (b"*" if op == TEXT else b"\xfe") * n
    b = run(*chops(frame(op, payload), 65536), BYE)  # as read from a socket
    expect_echo(b, [(op, payload)])


@pytest.mark.parametrize("op,frag", [(TEXT, 64), (TEXT, 4096), (TEXT, 65536), (TEXT, 4 * MIB),
                                     (BINARY, 64), (BINARY, 65536)],
                         ids=["9.3.1", "9.3.4", "9.3.6", "9.3.9", "9.4.1", "9.4.6"])
def test_9_3_and_9_4_fragmented_4mib(op, frag):
    payload = (b"*" if op == TEXT else b"\xfe") * (4 * MIB)
    parts = chops(payload, frag)
    data = b"".join(frame(op if i == 0 else CONT, p, fin=i == len(parts) - 1)
                    for i, p in enumerate(parts))
    expect_echo(run(*chops(data, 65536), BYE), [(op, payload)])


@pytest.mark.parametrize("op,chop", [(TEXT, 64), (TEXT, 2048), (BINARY, 64)],
                         ids=["9.5.1", "9.5.6", "9.6.1"])
def test_9_5_and_9_6_chopped_1mib(op, chop):
    payload = (b"*" if op == TEXT else b"\xfe") * MIB
    expect_echo(run(*chops(frame(op, payload), chop), BYE), [(op, payload)])


@pytest.mark.parametrize("op,n", [(TEXT, 0), (TEXT, 64), (TEXT, 4096), (BINARY, 0),
                                  (BINARY, 4096)],
                         ids=["9.7.1", "9.7.3", "9.7.6", "9.8.1", "9.8.6"])
def test_9_7_and_9_8_thousand_messages(op, n):
    payload = (b"*" if op == TEXT else b"\xfe") * n
    expect_echo(run(frame(op, payload) * 1000, BYE), [(op, payload)] * 1000)


@pytest.mark.parametrize("op,n", [pytest.param(TEXT, MIB, id="9.1.3"),
                                  pytest.param(BINARY, MIB, id="9.2.3")])
def test_9_over_a_configured_limit(op, n):
    lim = WSLimits(max_message_size=MIB - 1)
    b = run(*chops(frame(op, b"*" * n), 65536), limits=lim)
    expect_fail(b, 1009, [])
    assert at_backend(b) == []  # refused on the header: nothing went through


def test_9_3_1_over_a_configured_limit():
    lim = WSLimits(max_message_size=4 * MIB - 1)
    parts = chops(b"*" * (4 * MIB), 64)
    data = b"".join(frame(TEXT if i == 0 else CONT, p, fin=i == len(parts) - 1)
                    for i, p in enumerate(parts))
    b = run(*chops(data, 65536), limits=lim)
    expect_fail(b, 1009, [])


def test_9_2_6_over_a_frame_limit():
    b = run(frame(BINARY, b"", length=16 * MIB)[:14], limits=WSLimits(max_frame_size=MIB))
    expect_fail(b, 1009, [])


# -- 12 permessage-deflate ------------------------------------------------------------------

def _deflater() -> "zlib._Compress":
    return zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)


def _compressed(c: "zlib._Compress", data: bytes) -> bytes:
    return (c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]


@pytest.mark.parametrize("n,frag", [(16, 0), (256, 0), (4096, 0), (4096, 256), (65536, 4096)],
                         ids=["12.1.1", "12.1.3", "12.1.5", "12.2.5", "12.5.8"])
def test_12_compressed_messages(n, frag):
    c = _deflater()
    msgs = [bytes([65 + i % 26]) * n for i in range(100)]
    data = b""
    for m in msgs:
        z = _compressed(c, m)
        parts = chops(z, frag) if frag and z else [z]
        data += b"".join(frame(TEXT if i == 0 else CONT, p, fin=i == len(parts) - 1,
                               rsv=4 if i == 0 else 0) for i, p in enumerate(parts))
    b = run(data, BYE, deflate=True)
    assert b.error is None and b.backend_error is None
    assert b.backend.received[:-1] == [m.decode() for m in msgs]
    d = zlib.decompressobj(-15)
    echoed = [d.decompress(p + b"\x00\x00\xff\xff") for op, p in b.client_messages()
              if op == TEXT]
    assert echoed == msgs
    b.check_wire()
