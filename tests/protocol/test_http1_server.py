"""ServerConnection: request framing, pipelining, keep-alive, 100-continue, upgrade,
response framing and the error path.  Tables of bytes in, events or statuses out."""

from __future__ import annotations

import random

import pytest
from h1_helpers import bytewise, feed, merge_data

from apigw_core.protocol import (
    ConnectionClosed,
    Data,
    EndOfMessage,
    InformationalResponse,
    ProtocolError,
    Request,
    Response,
    UsageError,
)
from apigw_core.protocol.http1 import ServerConnection

H = b"Host: a\r\n"
POST_CHUNKED = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


def body_of(events):
    return b"".join(e.data for e in events if isinstance(e, Data))


def eom_of(events):
    eoms = [e for e in events if isinstance(e, EndOfMessage)]
    assert len(eoms) == 1, events
    return eoms[0]


# -- body framing: accepted --------------------------------------------------------------

ACCEPT = [
    ("cl", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", b"hello", []),
    ("cl-zero", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", b"", []),
    ("no-framing-get", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"", []),
    ("no-framing-post", b"POST / HTTP/1.1\r\nHost: a\r\n\r\n", b"", []),
    ("chunked", POST_CHUNKED + b"5\r\nhello\r\n0\r\n\r\n", b"hello", []),
    ("chunks", POST_CHUNKED + b"3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n", b"abcd", []),
    ("hex-upper-lower", POST_CHUNKED + b"A\r\n0123456789\r\nb\r\n0123456789a\r\n0\r\n\r\n",
     b"0123456789" * 2 + b"a", []),
    ("leading-zeros", POST_CHUNKED + b"0003\r\nabc\r\n000\r\n\r\n", b"abc", []),
    ("ext-token", POST_CHUNKED + b"3;foo\r\nabc\r\n0;bar\r\n\r\n", b"abc", []),
    ("ext-value", POST_CHUNKED + b"3;a=b;c=d\r\nabc\r\n0\r\n\r\n", b"abc", []),
    ("ext-quoted", POST_CHUNKED + b'3;a="x y\\"z"\r\nabc\r\n0\r\n\r\n', b"abc", []),
    ("trailers", POST_CHUNKED + b"3\r\nabc\r\n0\r\nX-Sum: 12\r\nx-b:  v v \r\n\r\n", b"abc",
     [(b"x-sum", b"12"), (b"x-b", b"v v")]),
    ("trailer-empty-value", POST_CHUNKED + b"0\r\nx-e:\r\n\r\n", b"", [(b"x-e", b"")]),
]


@pytest.mark.parametrize("name,raw,body,trailers", ACCEPT, ids=[a[0] for a in ACCEPT])
@pytest.mark.parametrize("split", ["whole", "bytewise"])
def test_body_framing_accepted(name, raw, body, trailers, split):
    conn = ServerConnection()
    events, err = feed(conn, [raw] if split == "whole" else bytewise(raw))
    assert err is None
    assert isinstance(events[0], Request) and events[0].stream_id == 1
    assert body_of(events) == body
    eom = eom_of(events)
    assert list(eom.trailers) == trailers and eom.stream_id == 1
    # trailers are never merged into the head
    assert all(n not in (b"x-sum", b"x-b") for n, _ in events[0].headers)


def test_request_without_framing_has_no_body_and_next_bytes_are_a_request():
    conn = ServerConnection()
    events = conn.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\n" + H
                               + b"\r\n")
    assert [type(e) for e in events] == [Request, EndOfMessage, Request, EndOfMessage]
    assert events[2].target == b"/2" and events[2].stream_id == 2


# -- body framing: rejected --------------------------------------------------------------

REJECT = [
    ("size-trailing-space", POST_CHUNKED + b"5 \r\nhello\r\n0\r\n\r\n", 400),
    ("size-leading-space", POST_CHUNKED + b" 5\r\nhello\r\n0\r\n\r\n", 400),
    ("size-tab-before-ext", POST_CHUNKED + b"5\t;a\r\nhello\r\n0\r\n\r\n", 400),
    ("size-bare-lf", POST_CHUNKED + b"5\nhello\r\n0\r\n\r\n", 400),
    ("size-bare-cr", POST_CHUNKED + b"5\rhello\r\n0\r\n\r\n", 400),
    ("size-not-hex", POST_CHUNKED + b"g\r\nhello\r\n0\r\n\r\n", 400),
    ("size-empty", POST_CHUNKED + b"\r\nhello\r\n0\r\n\r\n", 400),
    ("size-negative", POST_CHUNKED + b"-5\r\nhello\r\n0\r\n\r\n", 400),
    ("size-0x", POST_CHUNKED + b"0x5\r\nhello\r\n0\r\n\r\n", 400),
    ("size-underscore", POST_CHUNKED + b"0_5\r\nhello\r\n0\r\n\r\n", 400),
    ("size-17-digits", POST_CHUNKED + b"00000000000000005\r\nhello\r\n0\r\n\r\n", 400),
    ("size-overflow", POST_CHUNKED + b"ffffffffffffffff\r\nhello\r\n0\r\n\r\n", 413),
    ("ext-empty", POST_CHUNKED + b"5;\r\nhello\r\n0\r\n\r\n", 400),
    ("ext-empty-value", POST_CHUNKED + b"5;a=\r\nhello\r\n0\r\n\r\n", 400),
    ("ext-space", POST_CHUNKED + b"5;a b\r\nhello\r\n0\r\n\r\n", 400),
    ("ext-bws", POST_CHUNKED + b"5 ; a=b\r\nhello\r\n0\r\n\r\n", 400),
    ("ext-open-quote", POST_CHUNKED + b'5;a="x\r\nhello\r\n0\r\n\r\n', 400),
    ("ext-ctl", POST_CHUNKED + b"5;a\x01\r\nhello\r\n0\r\n\r\n", 400),
    ("line-too-long", POST_CHUNKED + b"5;a=" + b"b" * 5000 + b"\r\nhello\r\n0\r\n\r\n", 400),
    ("data-no-crlf", POST_CHUNKED + b"5\r\nhelloXX0\r\n\r\n", 400),
    ("data-bare-lf", POST_CHUNKED + b"5\r\nhello\n0\r\n\r\n", 400),
    ("data-too-long", POST_CHUNKED + b"5\r\nhello!\r\n0\r\n\r\n", 400),
    ("trailer-obs-fold", POST_CHUNKED + b"0\r\nx-a: 1\r\n  2\r\n\r\n", 400),
    ("trailer-ws-colon", POST_CHUNKED + b"0\r\nx-a : 1\r\n\r\n", 400),
    ("trailer-bare-lf", POST_CHUNKED + b"0\r\nx-a: 1\nx-b: 2\r\n\r\n", 400),
    ("trailer-bare-cr", POST_CHUNKED + b"0\r\nx-a: 1\rx-b: 2\r\n\r\n", 400),
    ("trailer-start-bare-cr", POST_CHUNKED + b"0\r\n\rx\r\n\r\n", 400),
    ("trailer-no-colon", POST_CHUNKED + b"0\r\nx-a\r\n\r\n", 400),
    ("trailer-bad-name", POST_CHUNKED + b"0\r\nx(a): 1\r\n\r\n", 400),
    ("trailer-nul", POST_CHUNKED + b"0\r\nx-a: 1\x002\r\n\r\n", 400),
    ("trailer-content-length", POST_CHUNKED + b"0\r\nContent-Length: 5\r\n\r\n", 400),
    ("trailer-transfer-encoding", POST_CHUNKED + b"0\r\nTransfer-Encoding: chunked\r\n\r\n",
     400),
    ("trailer-host", POST_CHUNKED + b"0\r\nHost: b\r\n\r\n", 400),
    ("trailer-too-many", POST_CHUNKED + b"0\r\n" + b"x: 1\r\n" * 101 + b"\r\n", 431),
    ("trailer-too-large", POST_CHUNKED + b"0\r\nx: " + b"v" * 70000 + b"\r\n\r\n", 431),
    # head framing rules come from the native parser, mapped to its statuses
    ("cl-and-te", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n", 400),
    ("double-cl", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5"
     b"\r\n\r\nhello", 400),
    ("te-gzip", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    ("te-on-1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("http2-version", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    ("obs-fold-head", b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n", 400),
    ("bare-lf-head", b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
    ("uri-too-long", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    ("head-too-large", b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 70000 + b"\r\n\r\n", 431),
    ("no-host", b"GET / HTTP/1.1\r\n\r\n", 400),
]


@pytest.mark.parametrize("name,raw,status", REJECT, ids=[r[0] for r in REJECT])
@pytest.mark.parametrize("split", ["whole", "bytewise", "random"])
def test_framing_rejected(name, raw, status, split):
    chunks = {"whole": [raw], "bytewise": bytewise(raw)}.get(split)
    if chunks is None:
        rnd = random.Random(name)
        cuts = sorted(rnd.sample(range(1, len(raw)), min(5, len(raw) - 1)))
        chunks = [raw[a:b] for a, b in zip([0] + cuts, cuts + [len(raw)])]
    conn = ServerConnection()
    _, err = feed(conn, chunks, eof=True)
    assert err is not None, name
    assert err.status_hint == status, (err, status)


@pytest.mark.parametrize("raw,limit,status", [
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", 10, 413),
    (POST_CHUNKED + b"6\r\nabcdef\r\n5\r\n", 10, 413),
    (POST_CHUNKED + b"a\r\n0123456789\r\n0\r\n\r\n", 10, None),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789", 10, None),
])
def test_max_body_size(raw, limit, status):
    conn = ServerConnection(max_body_size=limit)
    _, err = feed(conn, [raw])
    assert (err.status_hint if err else None) == status
    if status == 413 and b"Content-Length" in raw:
        assert err.stream_id == 1  # refused right at the head, before any body byte


def test_max_chunk_size():
    conn = ServerConnection(max_chunk_size=4)
    _, err = feed(conn, [POST_CHUNKED + b"5\r\n"])
    assert err.status_hint == 413


# -- pipelining --------------------------------------------------------------------------

PIPELINE = (b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
            + POST_CHUNKED.replace(b"/ ", b"/3 ") + b"2\r\nde\r\n0\r\nx-t: 1\r\n\r\n")


def test_pipelining_three_requests_in_one_buffer():
    events, err = feed(ServerConnection(), [PIPELINE])
    assert err is None
    assert [(type(e).__name__, e.stream_id) for e in events] == [
        ("Request", 1), ("EndOfMessage", 1),
        ("Request", 2), ("Data", 2), ("EndOfMessage", 2),
        ("Request", 3), ("Data", 3), ("EndOfMessage", 3)]
    assert [e.target for e in events if isinstance(e, Request)] == [b"/1", b"/2", b"/3"]
    assert events[-1].trailers == [(b"x-t", b"1")]


@pytest.mark.parametrize("seed", range(20))
def test_pipelining_any_split_gives_identical_events(seed):
    whole, _ = feed(ServerConnection(), [PIPELINE])
    rnd = random.Random(seed)
    if seed == 0:
        chunks = bytewise(PIPELINE)
    else:
        cuts = sorted(rnd.sample(range(1, len(PIPELINE)), rnd.randint(1, 30)))
        chunks = [PIPELINE[a:b] for a, b in zip([0] + cuts, cuts + [len(PIPELINE)])]
    split, err = feed(ServerConnection(), chunks)
    assert err is None and split == whole


def test_responses_must_be_sent_in_order():
    conn = ServerConnection()
    conn.receive_data(PIPELINE)
    with pytest.raises(UsageError):
        conn.send(Response(2, 200, []))
    conn.send(Response(1, 200, [(b"content-length", b"0")]))
    with pytest.raises(UsageError):
        conn.send(Response(1, 200, []))  # twice
    conn.send(EndOfMessage(1))
    conn.send(Response(2, 200, [(b"content-length", b"0")]))
    conn.send(EndOfMessage(2))
    with pytest.raises(UsageError):
        conn.send(Response(4, 200, []))  # not received yet
    wire = conn.data_to_send()
    assert wire.count(b"HTTP/1.1 200 OK\r\n") == 2


def test_pipelined_error_returns_earlier_events_then_raises():
    conn = ServerConnection()
    events = conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\nHost: a\r\n\r\n")
    assert [type(e) for e in events] == [Request, EndOfMessage]
    assert conn.pending_error is not None and conn.error_stream_id == 2
    with pytest.raises(ProtocolError) as info:
        conn.receive_data(b"")
    assert info.value.status_hint == 400
    # stream 1 is answered normally, then the error response for stream 2 closes
    conn.send(Response(1, 200, [(b"content-length", b"2")]))
    conn.send(Data(1, b"ok"))
    conn.send(EndOfMessage(1))
    conn.send_error(400)
    wire = conn.data_to_send()
    first, second = wire.split(b"ok", 1)
    assert b"connection" not in first
    assert second.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"connection: close" in second
    assert conn.should_close


# -- keep-alive ---------------------------------------------------------------------------

KEEPALIVE = [
    # request line + connection field, response headers, keep?, connection header sent
    (b"GET / HTTP/1.1\r\nHost: a\r\n", [(b"content-length", b"0")], True, None),
    (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n", [(b"content-length", b"0")],
     False, b"close"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, Close\r\n",
     [(b"content-length", b"0")], False, b"close"),
    (b"GET / HTTP/1.0\r\n", [(b"content-length", b"0")], False, b"close"),
    (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n", [(b"content-length", b"0")], True,
     b"keep-alive"),
    (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n", [], False, b"close"),  # close-delimited
    (b"GET / HTTP/1.1\r\nHost: a\r\n", [(b"content-length", b"0"), (b"connection", b"close")],
     False, b"close"),  # the app may close
]


@pytest.mark.parametrize("head,resp_headers,keep,conn_value", KEEPALIVE)
def test_keep_alive(head, resp_headers, keep, conn_value):
    conn = ServerConnection()
    events = conn.receive_data(head + b"\r\n")
    conn.send(Response(1, 200, resp_headers))
    conn.send(EndOfMessage(1))
    wire = conn.data_to_send()
    values = [line.split(b": ", 1)[1] for line in wire.split(b"\r\n")
              if line.lower().startswith(b"connection:")]
    assert values == ([] if conn_value is None else [conn_value])
    assert conn.should_close is (not keep)
    more = conn.receive_data(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
    assert bool(more) is keep  # after a closing exchange, further input is ignored
    assert events[0].stream_id == 1


def test_connection_close_request_ignores_following_pipelined_input():
    conn = ServerConnection()
    events = conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                               b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
    assert [type(e) for e in events] == [Request, EndOfMessage]
    assert conn.receive_data(b"garbage\n\n") == []
    assert conn.receive_data(b"") == [ConnectionClosed()]


# -- 100-continue -------------------------------------------------------------------------

EXPECT = (b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")


def test_expect_continue_app_sends_100_then_reads_body():
    conn = ServerConnection()
    [req] = conn.receive_data(EXPECT)
    assert req.expect_continue
    conn.send(InformationalResponse(1, 100, []))
    assert conn.data_to_send() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert merge_data(conn.receive_data(b"abc")) == [Data(1, b"abc"), EndOfMessage(1)]
    conn.send(Response(1, 200, [(b"content-length", b"0")]))
    conn.send(EndOfMessage(1))
    assert b"connection" not in conn.data_to_send() and not conn.should_close


def test_expect_continue_final_response_without_100_closes():
    conn = ServerConnection()
    conn.receive_data(EXPECT)
    conn.send(Response(1, 417, [(b"content-length", b"0")]))
    conn.send(EndOfMessage(1))
    wire = conn.data_to_send()
    assert wire.startswith(b"HTTP/1.1 417 Expectation Failed\r\n")
    assert b"connection: close\r\n" in wire and conn.should_close


def test_expect_on_http10_is_ignored_and_1xx_refused():
    conn = ServerConnection()
    [req, _] = conn.receive_data(b"GET / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n")
    assert req.expect_continue is False
    with pytest.raises(UsageError):
        conn.send(InformationalResponse(1, 100, []))


# -- upgrade -------------------------------------------------------------------------------

WS = (b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n"
      b"Upgrade: WebSocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      b"Sec-WebSocket-Version: 13\r\n\r\n")
H2C = (b"OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
       b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n")


@pytest.mark.parametrize("head,token,body", [
    (WS, b"websocket", b""),
    (H2C + b"\r\n", b"h2c", b""),
    (H2C + b"Content-Length: 4\r\n\r\nbody", b"h2c", b"body"),  # h11: body first, then pause
])
def test_upgrade_accepted(head, token, body):
    conn = ServerConnection()
    after = b"\x81\x05hello" if token == b"websocket" else b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    events = merge_data(conn.receive_data(head + after[:5]))
    assert events[0].upgrade == token
    assert body_of(events) == body and isinstance(events[-1], EndOfMessage)
    assert conn.receive_data(after[5:]) == []  # not parsed as HTTP
    conn.send(InformationalResponse(1, 101, [(b"connection", b"upgrade"),
                                             (b"upgrade", token)]))
    assert conn.data_to_send().startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert conn.switched and conn.trailing_data == after
    with pytest.raises(UsageError):
        conn.receive_data(b"more")
    with pytest.raises(UsageError):
        conn.send(Response(1, 200, []))


@pytest.mark.parametrize("head", [WS, H2C + b"\r\n"])
def test_upgrade_refused_http_goes_on(head):
    conn = ServerConnection()
    conn.receive_data(head + b"GET /next HTTP/1.1\r\n")
    conn.send(Response(1, 426, [(b"content-length", b"0")]))
    conn.send(EndOfMessage(1))
    assert conn.data_to_send().startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    events = conn.receive_data(b"Host: a\r\n\r\n")
    assert [(type(e), e.stream_id) for e in events] == [(Request, 2), (EndOfMessage, 2)]
    assert events[0].target == b"/next" and not conn.switched


@pytest.mark.parametrize("head", [
    b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",        # no Connection: upgrade
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n",        # no Upgrade field
    b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",  # HTTP/1.0
])
def test_not_an_upgrade(head):
    conn = ServerConnection()
    events = conn.receive_data(head)
    assert events[0].upgrade is None
    with pytest.raises(UsageError):
        conn.send(InformationalResponse(1, 101, []))


# -- response framing -----------------------------------------------------------------------

RESPONSES = [
    # (request, status, headers, data, trailers, expected wire)
    ("cl", b"GET", b"1.1", 200, [(b"content-length", b"2")], b"ok", (),
     b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
    ("chunked", b"GET", b"1.1", 200, [], b"ok", (),
     b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    ("chunked-trailers", b"GET", b"1.1", 200, [], b"ok", [(b"x-sum", b"1")],
     b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nx-sum: 1\r\n\r\n"),
    ("app-te-stripped", b"GET", b"1.1", 200, [(b"Transfer-Encoding", b"gzip")], b"ok", (),
     b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    ("app-te-with-cl", b"GET", b"1.1", 200,
     [(b"transfer-encoding", b"chunked"), (b"content-length", b"2")], b"ok", (),
     b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
    ("http10-close-delimited", b"GET", b"1.0", 200, [], b"ok", [(b"x", b"dropped")],
     b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nok"),
    ("head-keeps-cl-drops-body", b"HEAD", b"1.1", 200, [(b"content-length", b"2")], b"ok", (),
     b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"),
    ("head-no-cl", b"HEAD", b"1.1", 200, [], b"ok", (), b"HTTP/1.1 200 OK\r\n\r\n"),
    ("204-strips-cl", b"GET", b"1.1", 204, [(b"content-length", b"0")], b"", (),
     b"HTTP/1.1 204 No Content\r\n\r\n"),
    ("304-keeps-cl", b"GET", b"1.1", 304, [(b"content-length", b"9")], b"", (),
     b"HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n"),
    ("unknown-status", b"GET", b"1.1", 599, [(b"content-length", b"0")], b"", (),
     b"HTTP/1.1 599 \r\ncontent-length: 0\r\n\r\n"),
]


@pytest.mark.parametrize("name,method,version,status,headers,data,trailers,wire", RESPONSES,
                         ids=[r[0] for r in RESPONSES])
def test_response_framing(name, method, version, status, headers, data, trailers, wire):
    conn = ServerConnection()
    host = b"Host: a\r\n" if version == b"1.1" else b""
    conn.receive_data(b"%b / HTTP/%b\r\n%b\r\n" % (method, version, host))
    conn.send(Response(1, status, headers))
    if data:
        conn.send(Data(1, data))
    conn.send(EndOfMessage(1, trailers))
    assert conn.data_to_send() == wire


def test_informational_103_then_final():
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    conn.send(InformationalResponse(1, 103, [(b"link", b"</s.css>; rel=preload")]))
    conn.send(Response(1, 200, [(b"content-length", b"0")], reason=b"Fine"))
    conn.send(EndOfMessage(1))
    assert conn.data_to_send() == (b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload"
                                   b"\r\n\r\nHTTP/1.1 200 Fine\r\ncontent-length: 0\r\n\r\n")


@pytest.mark.parametrize("action", [
    "cl-too-much", "cl-too-little", "cl-trailers", "204-body", "data-before-response",
    "header-crlf", "header-bad-name", "reason-crlf", "bad-status", "1xx-as-final",
    "double-cl", "client-event",
])
def test_response_usage_errors(action):
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    cl2 = [(b"content-length", b"2")]
    with pytest.raises(UsageError):
        if action == "cl-too-much":
            conn.send(Response(1, 200, cl2))
            conn.send(Data(1, b"abc"))
        elif action == "cl-too-little":
            conn.send(Response(1, 200, cl2))
            conn.send(Data(1, b"a"))
            conn.send(EndOfMessage(1))
        elif action == "cl-trailers":
            conn.send(Response(1, 200, cl2))
            conn.send(Data(1, b"ab"))
            conn.send(EndOfMessage(1, [(b"x", b"y")]))
        elif action == "204-body":
            conn.send(Response(1, 204, []))
            conn.send(Data(1, b"a"))
        elif action == "data-before-response":
            conn.send(Data(1, b"a"))
        elif action == "header-crlf":
            conn.send(Response(1, 200, [(b"x", b"a\r\nset-cookie: evil")]))
        elif action == "header-bad-name":
            conn.send(Response(1, 200, [(b"x y", b"a")]))
        elif action == "reason-crlf":
            conn.send(Response(1, 200, [], reason=b"OK\r\nx: y"))
        elif action == "bad-status":
            conn.send(Response(1, 42, []))
        elif action == "1xx-as-final":
            conn.send(Response(1, 100, []))
        elif action == "double-cl":
            conn.send(Response(1, 200, cl2 + cl2))
        elif action == "client-event":
            conn.send(Request(1, b"GET", b"/", []))


# -- errors and EOF --------------------------------------------------------------------------

def test_input_refused_after_protocol_error():
    conn = ServerConnection()
    with pytest.raises(ProtocolError) as first:
        conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n")
    assert first.value.status_hint == 400 and "ws-before-colon" in str(first.value)
    for data in (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b""):
        with pytest.raises(ProtocolError) as again:
            conn.receive_data(data)
        assert again.value is first.value
    conn.send_error(first.value.status_hint, b"bad request\n")
    wire = conn.data_to_send()
    assert wire.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"content-length: 12\r\n" in wire and b"connection: close\r\n" in wire
    assert wire.endswith(b"\r\n\r\nbad request\n") and conn.should_close
    with pytest.raises(UsageError):
        conn.send(Response(2, 200, []))


def test_error_in_body_answers_that_stream():
    conn = ServerConnection()
    conn.receive_data(POST_CHUNKED)
    with pytest.raises(ProtocolError) as info:
        conn.receive_data(b"zz\r\n")
    assert info.value.stream_id == 1 and conn.error_stream_id == 1
    conn.send(Response(1, 400, [(b"content-length", b"0")]))
    conn.send(EndOfMessage(1))
    assert b"connection: close" in conn.data_to_send() and conn.should_close


@pytest.mark.parametrize("data,status", [
    (b"", None),
    (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", None),
    (b"GET / HTTP/1.1\r\nHo", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nabc", 400),
    (POST_CHUNKED + b"5\r\nabcde\r\n", 400),
])
def test_eof(data, status):
    conn = ServerConnection()
    events, err = feed(conn, [data], eof=True)
    if status is None:
        assert err is None and events[-1] == ConnectionClosed()
    else:
        assert err.status_hint == status


def test_early_closing_response_then_eof_mid_body_is_a_clean_close():
    conn = ServerConnection()
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc")
    conn.send(Response(1, 413, [(b"content-length", b"0"), (b"connection", b"close")]))
    conn.send(EndOfMessage(1))
    assert conn.should_close
    assert conn.receive_data(b"more body") == []
    assert conn.receive_data(b"") == [ConnectionClosed()]


def test_early_keep_alive_response_keeps_reading_the_body():
    conn = ServerConnection()
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\na")
    conn.send(Response(1, 200, [(b"content-length", b"0")]))
    conn.send(EndOfMessage(1))
    assert not conn.should_close
    events = conn.receive_data(b"bcGET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert [(type(e), e.stream_id) for e in events] == [
        (Data, 1), (EndOfMessage, 1), (Request, 2), (EndOfMessage, 2)]
