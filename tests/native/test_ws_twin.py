"""WebSocket masking and UTF-8 checking: the C functions (native/src/ws.c) and their
pure-Python twins (_purepy/ws.py) give the same answers, states included, and both agree
with CPython's strict UTF-8 decoder on whole messages.

Inputs: random masks, start phases and buffer offsets (memoryview slices, so the C code
sees every alignment), payloads that are valid UTF-8, valid UTF-8 with one byte mutated
into a byte that matters (continuation, overlong and surrogate leads, F4/F5, C0/C1), or
random bytes, cut at random split points (so code points are split between pieces).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apigw_core import native
from apigw_core._purepy import ws as py

pytestmark = pytest.mark.skipif(not native.enabled, reason="C extension not built")

EXAMPLES = int(os.environ.get("APIGW_TWIN_EXAMPLES", "1000"))
C_MASK, C_INTO = native._c_ws_mask, native._c_ws_mask_into
C_UTF8, C_FUSED = native._c_ws_utf8, native._c_ws_mask_utf8_into
SPECIAL = [0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xED, 0xEF,
           0xF0, 0xF4, 0xF5, 0xFF, 0x00, 0x7F]

keys = st.binary(min_size=4, max_size=4)
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)


@st.composite
def payloads(draw) -> bytes:
    kind = draw(st.integers(0, 2))
    if kind == 2:
        return draw(st.binary(max_size=3000))
    raw = bytearray(draw(texts).encode() * draw(st.integers(1, 12)))
    if kind == 1 and raw:
        for _ in range(draw(st.integers(1, 3))):
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.sampled_from(SPECIAL))
    return bytes(raw)


@st.composite
def splits(draw, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def _strict_ok(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@settings(max_examples=EXAMPLES)
@given(data=st.binary(max_size=5000), key=keys, phase=st.integers(0, 7),
       lead=st.integers(0, 31))
def test_mask_same(data, key, phase, lead):
    view = memoryview(b"\x00" * lead + data)[lead:]  # any alignment of the source
    out = C_MASK(view, key, phase)
    assert out == py.mask(data, key, phase)
    assert py.mask(out, key, phase) == data  # its own inverse
    buf_c, buf_p = bytearray(lead + len(data) + 3), bytearray(lead + len(data) + 3)
    C_INTO(buf_c, lead, view, key, phase)
    py.mask_into(buf_p, lead, data, key, phase)
    assert buf_c == buf_p


@settings(max_examples=EXAMPLES)
@given(st.data(), payloads(), keys, st.integers(0, 3))
def test_utf8_pieces_same(draw, data, key, phase):
    """Pieces of one message, checked plain and masked: same states, and the end result
    is what the strict decoder says of the whole message."""
    pieces = draw.draw(splits(data))
    masked = py.mask(data, key, phase)
    sc = sp = sm = sf = 0
    out_c = bytearray(len(data))
    okey = draw.draw(keys)
    pos = 0
    for i, piece in enumerate(pieces):
        final = i == len(pieces) - 1
        ph = (phase + pos) & 3
        mpiece = masked[pos:pos + len(piece)]
        sc = C_UTF8(sc, piece, None, 0, final) if sc >= 0 else sc
        sp = py.utf8(sp, piece, None, 0, final) if sp >= 0 else sp
        sm = C_UTF8(sm, mpiece, key, ph, final) if sm >= 0 else sm
        if sf >= 0:
            sf = C_FUSED(sf, out_c, pos, mpiece, key, okey, ph, final)
        assert sc == sp == sm, (i, sc, sp, sm)
        pos += len(piece)
    assert sf == sc
    assert (sc == 0) == _strict_ok(data)
    if sc == 0:
        assert out_c == py.mask(masked, okey, phase)  # re-keyed in the same pass


@settings(max_examples=EXAMPLES)
@given(st.data(), payloads(), keys, keys, st.integers(0, 3))
def test_fused_same(draw, data, vkey, okey, phase):
    pieces = draw.draw(splits(data))
    masked = py.mask(data, vkey, phase)
    out_c, out_p = bytearray(len(data)), bytearray(len(data))
    sc = sp = 0
    pos = 0
    for i, piece in enumerate(pieces):
        final = i == len(pieces) - 1
        mp = masked[pos:pos + len(piece)]
        ph = (phase + pos) & 3
        sc = C_FUSED(sc, out_c, pos, mp, vkey, okey, ph, final)
        sp = py.mask_utf8_into(sp, out_p, pos, mp, vkey, okey, ph, final)
        assert sc == sp
        if sc < 0:
            break
        assert out_c[pos:pos + len(piece)] == out_p[pos:pos + len(piece)]
        pos += len(piece)


@settings(max_examples=EXAMPLES)
@given(st.integers(-3, (1 << 33)), st.binary(max_size=8), st.booleans())
def test_any_state_same(state, data, final):
    """States the functions never produce are refused alike (and read nothing wild)."""
    assert C_UTF8(state, data, None, 0, final) == py.utf8(state, data, None, 0, final)


@pytest.mark.parametrize("raw,valid", [
    (b"\xc2\x80", True), (b"\xc1\xbf", False),             # overlong 2-byte
    (b"\xe0\xa0\x80", True), (b"\xe0\x9f\xbf", False),     # overlong 3-byte
    (b"\xed\x9f\xbf", True), (b"\xed\xa0\x80", False),     # U+D800 surrogate
    (b"\xed\xbf\xbf", False),                              # U+DFFF
    (b"\xf0\x90\x80\x80", True), (b"\xf0\x8f\xbf\xbf", False),  # overlong 4-byte
    (b"\xf4\x8f\xbf\xbf", True), (b"\xf4\x90\x80\x80", False),  # > U+10FFFF
    (b"\xf5\x80\x80\x80", False), (b"\xff", False), (b"\x80", False),
    (b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", True),   # Autobahn 6.2 "κόσμε"
])
@pytest.mark.parametrize("impl", ["c", "py"])
def test_rfc3629_edges(raw, valid, impl):
    fn = C_UTF8 if impl == "c" else py.utf8
    key = b"\x01\x02\x03\x04"
    for cut in range(len(raw) + 1):  # every split point, masked at every phase
        for phase in range(4):
            m = py.mask(raw, key, phase)
            st1 = fn(0, m[:cut], key, phase, False)
            st2 = fn(st1, m[cut:], key, (phase + cut) & 3, True) if st1 >= 0 else st1
            assert (st2 == 0) is valid, (cut, phase, st1, st2)


def test_fail_fast_on_bad_prefix():
    """An impossible continuation fails on the byte itself, before the code point ends."""
    for impl in (C_UTF8, py.utf8):
        assert impl(0, b"ok\xe0\x80", None, 0, False) == native.WS_UTF8_INVALID
        assert impl(0, b"ok\xf4\x90", None, 0, False) == native.WS_UTF8_INVALID
        assert impl(0, b"ok\xf0\x9f", None, 0, False) > 0  # still possible: open state


def test_bad_arguments_refused():
    for mask_into in (C_INTO, py.mask_into):
        with pytest.raises(ValueError):
            mask_into(bytearray(3), 1, b"abc", b"kkkk")
    for m in (C_MASK, py.mask):
        with pytest.raises(ValueError):
            m(b"abc", b"kk")
