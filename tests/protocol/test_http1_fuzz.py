"""The h11 fuzz invariant, for both connection sides: for ANY bytes split at ANY points,
`receive_data` returns events or raises ProtocolError, never any other exception.  Plus
split invariance: how the bytes are cut never changes the events or the verdict."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from h1_helpers import feed

from apigw_core.protocol import EndOfMessage, Request, UsageError
from apigw_core.protocol.http1 import ClientConnection, ServerConnection

FUZZ = settings(max_examples=1500)

# Fragments that steer random inputs into the deep states (bodies, trailers, upgrades).
REQUEST_BITS = [
    b"GET / HTTP/1.1\r\n", b"POST /x HTTP/1.1\r\n", b"HEAD / HTTP/1.0\r\n", b"GET / HTTP/1.0\r\n",
    b"Host: a\r\n", b"Content-Length: 3\r\n", b"Content-Length: 0\r\n",
    b"Transfer-Encoding: chunked\r\n", b"Connection: close\r\n", b"Connection: keep-alive\r\n",
    b"Connection: upgrade\r\n", b"Upgrade: websocket\r\n", b"Expect: 100-continue\r\n",
    b"\r\n", b"\n", b"\r", b" ", b":", b"3\r\n", b"abc", b"0\r\n", b"ffffffff\r\n", b";e=v",
    b'"q"', b"x-t: 1\r\n", b"\x00", b"\t", b"HTTP/1.1", b"\xff",
]
RESPONSE_BITS = [
    b"HTTP/1.1 200 OK\r\n", b"HTTP/1.0 200 OK\r\n", b"HTTP/1.1 100 Continue\r\n",
    b"HTTP/1.1 204 No Content\r\n", b"HTTP/1.1 101 Switching\r\n", b"HTTP/1.1 304 NM\r\n",
] + REQUEST_BITS[5:]


def structured(bits):
    return st.lists(st.sampled_from(bits) | st.binary(max_size=4), max_size=25).map(b"".join)


def any_input(bits):
    return st.one_of(st.binary(max_size=300), structured(bits))


def cut(data: bytes, points: list[int]) -> list[bytes]:
    cuts = sorted({p % (len(data) + 1) for p in points})
    edges = [0] + cuts + [len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:]) if b > a]


def run_server(chunks, eof):
    conn = ServerConnection(max_request_line=200, max_head=400, max_fields=8,
                            max_chunk_size=1 << 20, max_body_size=1 << 16)
    return feed(conn, chunks, eof=eof)  # anything but ProtocolError propagates


def run_client(chunks, eof, method=b"GET"):
    conn = ClientConnection(max_head=400, max_fields=8)
    conn.send(Request(1, method, b"/", [(b"host", b"a"), (b"connection", b"upgrade"),
                                        (b"upgrade", b"h2c")]))
    conn.send(EndOfMessage(1))
    return feed(conn, chunks, eof=eof)


@FUZZ
@given(any_input(REQUEST_BITS), st.lists(st.integers(0, 400), max_size=12), st.booleans())
def test_server_never_raises_anything_but_protocol_error(data, points, eof):
    # feed() lets any exception other than ProtocolError propagate and fail the test
    run_server(cut(data, points), eof)


@FUZZ
@given(any_input(RESPONSE_BITS), st.lists(st.integers(0, 400), max_size=12), st.booleans(),
       st.sampled_from([b"GET", b"HEAD", b"CONNECT"]))
def test_client_never_raises_anything_but_protocol_error(data, points, eof, method):
    try:
        run_client(cut(data, points), eof, method)
    except UsageError:
        # only legal after a 101/CONNECT switch: HTTP input is over by our own decision
        pass


def verdict(events, err):
    return events, (err.status_hint if err is not None else None)


@FUZZ
@given(structured(REQUEST_BITS), st.lists(st.integers(0, 400), min_size=1, max_size=12))
def test_server_split_invariance(data, points):
    whole = verdict(*run_server([data], True))
    split = verdict(*run_server(cut(data, points), True))
    assert split == whole


@FUZZ
@given(structured(RESPONSE_BITS), st.lists(st.integers(0, 400), min_size=1, max_size=12))
def test_client_split_invariance(data, points):
    try:
        whole = verdict(*run_client([data], True, b"GET"))
    except UsageError:
        return  # switched: the rest is not HTTP
    split = verdict(*run_client(cut(data, points), True, b"GET"))
    assert split == whole
