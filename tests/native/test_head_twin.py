"""The C parser and its pure-Python twin give the same answer on every input.

Inputs are random bytes, and valid-looking heads built from the grammar and then
mutated with the bytes that matter to the parser (CR, LF, NUL, SP, HTAB, ":", ",",
DEL, obs-text), cut at random points and parsed under random small limits, so that
every rule and every limit is reached from both sides.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apigw_core import native

pytestmark = pytest.mark.skipif(native.CHeadParser is None, reason="C extension not built")

# 1,000 per run (the C code is also fuzzed by libFuzzer and atheris in CI); a deeper run:
# APIGW_TWIN_EXAMPLES=20000 pytest tests/native
EXAMPLES = int(os.environ.get("APIGW_TWIN_EXAMPLES", "1000"))
SPECIAL = b"\r\n\x00 \t:,;=/%[]\x7f\x80\xffaZ09-"

methods = st.sampled_from([b"GET", b"POST", b"M-SEARCH", b"", b"G T", b"GE\x00"])
targets = st.sampled_from([b"/", b"*", b"/a?b=c", b"http://h/x", b"/caf\xc3\xa9", b"", b"/a b"])
versions = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.7", b"HTTP/2.0", b"HTTP/1.",
                            b"HTTP/11", b"http/1.1", b"HTTP/1.1 "])
names = st.sampled_from([b"Host", b"host", b"Content-Length", b"Transfer-Encoding",
                         b"Connection", b"Expect", b"Upgrade", b"X-A", b"Accept", b"", b"X A",
                         b"Host ", b"x(y)"])
values = st.one_of(
    st.sampled_from([b"a", b"example.com:8080", b"[::1]", b"[::1]:80", b"a%20b", b"5",
                     b"0005", b"-1", b"5, 5", b"9223372036854775807", b"9223372036854775808",
                     b"chunked", b"gzip, chunked", b"chunked, gzip", b"CHUNKED", b"",
                     b"identity", b",chunked", b"close", b"keep-alive, upgrade",
                     b"Content-Length", b"host", b"100-continue", b"websocket", b"  x  ",
                     b"\tv\t"]),
    st.binary(max_size=12),
)
fields = st.lists(st.tuples(names, values), max_size=8)


@st.composite
def heads(draw) -> bytes:
    lead = draw(st.sampled_from([b"", b"\r\n", b"\r\n\r\n", b"\n"]))
    line = draw(methods) + b" " + draw(targets) + b" " + draw(versions) + b"\r\n"
    body = b"".join(n + b":" + draw(st.sampled_from([b"", b" ", b"\t "])) + v + b"\r\n"
                    for n, v in draw(fields))
    data = bytearray(lead + line + body + b"\r\n" + draw(st.binary(max_size=8)))
    for _ in range(draw(st.integers(0, 3))):  # mutate
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["replace", "insert", "delete"]))
        b = draw(st.sampled_from(SPECIAL))
        if op == "replace":
            data[i] = b
        elif op == "insert":
            data.insert(i, b)
        else:
            del data[i]
    cut = draw(st.integers(0, len(data)))
    return bytes(data[: cut if draw(st.booleans()) else len(data)])


limits = st.one_of(
    st.just((8192, 65536, 100)),
    st.tuples(st.integers(1, 64), st.integers(1, 200), st.integers(0, 6)),
)


def both(data: bytes, lim: tuple[int, int, int]):
    c = native.CHeadParser(*lim).parse(data)
    py = native.PyHeadParser(*lim).parse(data)
    return c, py


@settings(max_examples=EXAMPLES)
@given(heads(), limits)
def test_same_answer_on_mutated_heads(data, lim):
    c, py = both(data, lim)
    assert c == py
    if isinstance(c, tuple):
        assert 0 < c[0] <= len(data)
    else:
        assert native.E_LAST <= c <= native.INCOMPLETE


@settings(max_examples=EXAMPLES // 2)
@given(st.binary(max_size=300), limits)
def test_same_answer_on_random_bytes(data, lim):
    c, py = both(data, lim)
    assert c == py


@settings(max_examples=EXAMPLES // 3)
@given(st.lists(st.sampled_from(SPECIAL), max_size=120).map(bytes), limits)
def test_same_answer_on_special_bytes(data, lim):
    c, py = both(b"GET / HTTP/1.1\r\n" + data, lim)
    assert c == py


@settings(max_examples=EXAMPLES // 3)
@given(st.binary(max_size=40), heads(), limits)
def test_parse_at_offset_equals_parse_of_the_rest(prefix, data, lim):
    c, py = native.CHeadParser(*lim), native.PyHeadParser(*lim)
    assert c.parse(prefix + data, len(prefix)) == py.parse(prefix + data, len(prefix)) \
        == py.parse(data)
    assert c.parse(bytearray(prefix + data), len(prefix)) == c.parse(data)
