"""The C response-head parser and its pure-Python twin give the same answer on every input.

Inputs: response heads built from the grammar (status lines right and wrong, the framing
fields with right and wrong values) and then mutated with the bytes that matter to the
parser, cut at random points, parsed at an offset and under random small limits; random
bytes; and a seeded loop of 20,000 mutated heads without hypothesis's overhead, so that
tens of thousands of inputs are compared in a few seconds.  Also: the ClientConnection
raises the same errors with either parser.
"""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apigw_core import native
from apigw_core._purepy import http1_response as rh
from apigw_core.protocol import ProtocolError
from apigw_core.protocol.events import Request
from apigw_core.protocol.http1 import _client

pytestmark = pytest.mark.skipif(native.CResponseParser is None, reason="C extension not built")

EXAMPLES = int(os.environ.get("APIGW_TWIN_EXAMPLES", "800"))
LOOP = int(os.environ.get("APIGW_TWIN_LOOP", "20000"))
SPECIAL = b"\r\n\x00 \t:,;/\x7f\x80\xffaZ09-"

STATUS_LINES = [b"HTTP/1.1 200 OK", b"HTTP/1.0 200 OK", b"HTTP/1.1 204", b"HTTP/1.1 200 ",
                b"HTTP/1.1 101 Switching Protocols", b"HTTP/1.1 100 Continue",
                b"HTTP/1.1 099 x", b"HTTP/2.0 200 OK", b"HTTP/1.9 304 Not\tModified",
                b"HTTP/1.1 20 OK", b"HTTP/1.1 2000", b"HTTP/1.1  200 OK", b"http/1.1 200 OK",
                b"HTTP/1.1 200 caf\xc3\xa9", b"HTTP/1.1 200 O\x01K", b"HTTP/11 200 OK", b""]
NAMES = [b"Content-Length", b"content-length", b"Transfer-Encoding", b"Connection",
         b"Server", b"X-A", b"", b"X A", b"X-A ", b"x(y)", b" X", b"Date"]
VALUES = [b"5", b"0", b"005", b"-1", b"5, 5", b"123456789012345678", b"1234567890123456789",
          b"chunked", b"CHUNKED", b" chunked ", b"gzip, chunked", b"chunked, chunked",
          b"chunked,", b"", b"close", b"keep-alive", b"Keep-Alive, close", b" x y ",
          b"\tv\t", b"a\x7fb", b"a\rb", b"a\nb", b"nginx/1.24"]


def parsers(max_head: int, max_fields: int):
    return native.CResponseParser(max_head, max_fields), native.PyResponseParser(
        max_head, max_fields)


def build(status: bytes, fields: list, tail: bytes) -> bytes:
    return status + b"\r\n" + b"".join(n + b":" + sep + v + b"\r\n" for n, sep, v in fields) \
        + b"\r\n" + tail


values = st.one_of(st.sampled_from(VALUES), st.binary(max_size=10))
fields = st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from([b"", b" ", b"\t "]),
                            values), max_size=8)


@st.composite
def heads(draw) -> bytes:
    data = bytearray(build(draw(st.sampled_from(STATUS_LINES)), draw(fields),
                           draw(st.binary(max_size=6))))
    for _ in range(draw(st.integers(0, 3))):
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


limits = st.one_of(st.just((65536, 100)),
                   st.tuples(st.integers(1, 120), st.integers(0, 5)))


def check(data: bytes, lim: tuple[int, int], pos: int = 0):
    c, py = parsers(*lim)
    a, b = c.parse(data, pos), py.parse(data, pos)
    assert a == b, (data, lim, pos)
    if isinstance(a, tuple):
        assert pos < a[0] <= len(data) and a[0] - pos <= lim[0]
    else:
        assert rh.E_LAST <= a <= rh.INCOMPLETE
    return a


@settings(max_examples=EXAMPLES)
@given(heads(), limits)
def test_same_answer_on_mutated_heads(data, lim):
    check(data, lim)


@settings(max_examples=EXAMPLES // 2)
@given(st.binary(max_size=200), limits)
def test_same_answer_on_random_bytes(data, lim):
    check(data, lim)
    check(b"HTTP/1.1 200 OK\r\n" + data, lim)


@settings(max_examples=EXAMPLES // 3)
@given(st.binary(max_size=30), heads(), limits)
def test_parse_at_offset_equals_parse_of_the_rest(prefix, data, lim):
    at = check(prefix + data, lim, len(prefix))
    alone = check(data, lim)
    if isinstance(alone, tuple):
        assert at == (alone[0] + len(prefix),) + alone[1:]
    else:
        assert at == alone
    c, _ = parsers(*lim)
    assert c.parse(bytearray(prefix + data), len(prefix)) == at


def test_seeded_loop_of_mutated_heads():
    rng = random.Random(14)
    for _ in range(LOOP):
        fl = [(rng.choice(NAMES), rng.choice([b"", b" "]), rng.choice(VALUES))
              for _ in range(rng.randrange(6))]
        data = bytearray(build(rng.choice(STATUS_LINES), fl, b"body"))
        for _ in range(rng.randrange(3)):
            i = rng.randrange(len(data))
            data[i:i + rng.randrange(2)] = bytes([rng.choice(SPECIAL)])
        data = bytes(data[:rng.randrange(len(data) + 1)]) if rng.random() < 0.3 else bytes(data)
        lim = (65536, 100) if rng.random() < 0.7 else (rng.randrange(1, 120), rng.randrange(5))
        check(data, lim)


@pytest.mark.parametrize("head, code", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
     rh.E_REPEATED_CONTENT_LENGTH),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n", rh.E_BAD_CONTENT_LENGTH),
    (b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", rh.E_OBS_FOLD),
    (b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", rh.E_FIELD_BARE_CR),
    (b"HTTP/1.1 200 OK\nX: a\r\n\r\n", rh.E_STATUS_LINE),
    (b"HTTP/1.1 200 OK\n", rh.E_BARE_LF),
    (b"\r\nHTTP/1.1 200 OK\r\n\r\n", rh.E_STATUS_LINE),
    (b"\r\nHTTP/1.1 200 OK", rh.E_NOT_HTTP),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
     rh.E_TE_WITH_CONTENT_LENGTH),
    (b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", rh.E_TE_ON_HTTP10),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
     rh.E_BAD_TRANSFER_ENCODING),
    (b"HTTP/2.0 200 OK\r\n\r\n", rh.E_MAJOR_VERSION),
    (b"HTTP/1.1 099 Low\r\n\r\n", rh.E_STATUS_BELOW_100),
    (b"HTTP/1.1 100 Continue\r\nContent-Length: x\r\n\r\n", None),  # 1xx: no framing
])
def test_named_rules(head, code):
    got = check(head, (65536, 100))
    if code is None:
        assert isinstance(got, tuple) and got[1] == 100 and got[5] == -1
    else:
        assert got == code


def test_limits():
    head = b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n"
    assert check(head, (len(head), 2))[0] == len(head)
    assert check(head, (len(head) - 1, 2)) == rh.E_HEAD_TOO_LARGE
    assert check(head, (len(head), 1)) == rh.E_TOO_MANY_FIELDS
    assert check(head[:-1], (len(head), 2)) == rh.INCOMPLETE


@pytest.mark.parametrize("head", [
    b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
    b"HTTP/1.1 200 OK\n",
])
def test_client_connection_raises_the_same_error_with_either_parser(head, monkeypatch):
    msgs = []
    for parser in parsers(65536, 2):
        conn = _client.ClientConnection(max_fields=2)
        monkeypatch.setattr(conn, "_parser", parser)
        conn.send(Request(1, b"GET", b"/", [(b"host", b"h")]))
        with pytest.raises(ProtocolError) as ei:
            conn.receive_data(head)
        assert ei.value.status_hint == 502
        msgs.append(str(ei.value))
    assert msgs[0] == msgs[1]
