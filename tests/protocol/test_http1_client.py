"""ClientConnection: good and bad backend responses (incl. smuggling shapes), reuse,
switching, and in-memory round trips against ServerConnection."""

from __future__ import annotations

import pytest
from h1_helpers import bytewise, feed

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
from apigw_core.protocol.http1 import ClientConnection, ServerConnection

GET = Request(1, b"GET", b"/", [(b"host", b"b")])


def client_after(request: Request = GET) -> ClientConnection:
    c = ClientConnection()
    c.send(request)
    if request.method in (b"GET", b"HEAD", b"CONNECT", b"OPTIONS"):
        c.send(EndOfMessage(request.stream_id))
    c.data_to_send()
    return c


def summary(events):
    out = []
    for e in events:
        if isinstance(e, (Response, InformationalResponse)):
            out.append((type(e).__name__, e.status_code))
        elif isinstance(e, Data):
            out.append(("Data", e.data))
        elif isinstance(e, EndOfMessage):
            out.append(("EOM", list(e.trailers)))
        else:
            out.append((type(e).__name__,))
    return out


GOOD = [
    # name, method, response bytes, eof?, expected summary, reusable
    ("cl", b"GET", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", False,
     [("Response", 200), ("Data", b"ok"), ("EOM", [])], True),
    ("no-reason", b"GET", b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", False,
     [("Response", 200), ("EOM", [])], True),
    ("chunked-trailers", b"GET",
     b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\nok\r\n0\r\nGrpc-Status: 0"
     b"\r\n\r\n", False,
     [("Response", 200), ("Data", b"ok"), ("EOM", [(b"grpc-status", b"0")])], True),
    ("close-delimited", b"GET", b"HTTP/1.1 200 OK\r\n\r\nuntil eof", True,
     [("Response", 200), ("Data", b"until eof"), ("EOM", []), ("ConnectionClosed",)], False),
    ("http10-default-close", b"GET", b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", False,
     [("Response", 200), ("Data", b"x"), ("EOM", [])], False),
    ("http10-keep-alive", b"GET",
     b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx", False,
     [("Response", 200), ("Data", b"x"), ("EOM", [])], True),
    ("connection-close", b"GET",
     b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx", False,
     [("Response", 200), ("Data", b"x"), ("EOM", [])], False),
    ("head-ignores-cl", b"HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", False,
     [("Response", 200), ("EOM", [])], True),
    ("204", b"GET", b"HTTP/1.1 204 No Content\r\n\r\n", False,
     [("Response", 204), ("EOM", [])], True),
    ("304-with-cl", b"GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", False,
     [("Response", 304), ("EOM", [])], True),
    ("1xx-then-final", b"GET",
     b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
     b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", False,
     [("InformationalResponse", 100), ("InformationalResponse", 103), ("Response", 200),
      ("EOM", [])], True),
]


@pytest.mark.parametrize("name,method,raw,eof,expected,reusable", GOOD,
                         ids=[g[0] for g in GOOD])
@pytest.mark.parametrize("split", ["whole", "bytewise"])
def test_good_responses(name, method, raw, eof, expected, reusable, split):
    c = client_after(Request(1, method, b"/", [(b"host", b"b")]))
    events, err = feed(c, [raw] if split == "whole" else bytewise(raw), eof=eof)
    assert err is None
    assert summary(events) == expected
    assert all(getattr(e, "stream_id", 1) == 1 for e in events)
    assert c.is_reusable is reusable


BAD = [
    ("cl-and-te", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ("te-and-cl", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
    ("double-cl-same", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"),
    ("double-cl-diff", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc"),
    ("cl-list", b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc"),
    ("cl-negative", b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
    ("cl-plus", b"HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc"),
    ("cl-garbage", b"HTTP/1.1 200 OK\r\nContent-Length: 3x\r\n\r\nabc"),
    ("cl-huge", b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n"),
    ("bare-lf", b"HTTP/1.1 200 OK\nContent-Length: 0\n\n"),
    ("bare-lf-field", b"HTTP/1.1 200 OK\r\nContent-Length: 0\nX: y\r\n\r\n"),
    ("bare-cr-field", b"HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 0\r\n\r\n"),
    ("obs-fold", b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n"),
    ("ws-before-colon", b"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n"),
    ("leading-ws-field", b"HTTP/1.1 200 OK\r\n Content-Length: 0\r\n\r\n"),
    ("leading-empty-line", b"\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ("te-gzip", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
    ("te-gzip-chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
    ("te-chunked-twice", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
    ("te-http10", b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("chunk-size-space", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2 \r\nok\r\n"),
    ("chunk-size-garbage", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
    ("chunk-size-bare-lf", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\nok\r\n"),
    ("chunk-size-overflow",
     b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n"),
    ("chunk-data-no-crlf", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokX"),
    ("trailer-cl", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
     b"Content-Length: 1\r\n\r\n"),
    ("http2-version", b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ("status-2-digits", b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n"),
    ("status-099", b"HTTP/1.1 099 OK\r\nContent-Length: 0\r\n\r\n"),
    ("not-http", b"SSH-2.0-OpenSSH\r\n\r\n"),
    ("lowercase-http", b"http/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ("reason-ctl", b"HTTP/1.1 200 O\x01K\r\nContent-Length: 0\r\n\r\n"),
    ("unrequested-101", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"),
    ("extra-bytes-after-response", b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1"),
]


@pytest.mark.parametrize("name,raw", BAD, ids=[b[0] for b in BAD])
@pytest.mark.parametrize("split", ["whole", "bytewise"])
def test_bad_responses_are_502(name, raw, split):
    c = client_after()
    _, err = feed(c, [raw] if split == "whole" else bytewise(raw), eof=True)
    assert err is not None and err.status_hint == 502, name
    assert not c.is_reusable
    with pytest.raises(ProtocolError):
        c.receive_data(b"HTTP/1.1 200 OK\r\n")  # input refused after the error


def test_unsolicited_bytes_before_request():
    c = ClientConnection()
    with pytest.raises(ProtocolError) as info:
        c.receive_data(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
    assert info.value.status_hint == 502


@pytest.mark.parametrize("raw,events", [
    (b"", [ConnectionClosed()]),
])
def test_eof_before_any_response_is_a_clean_close(raw, events):
    c = client_after()
    assert c.receive_data(b"") == events
    assert not c.is_reusable


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 200 OK\r\nContent-Le",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
])
def test_eof_mid_response_is_502(raw):
    c = client_after()
    _, err = feed(c, [raw], eof=True)
    assert err.status_hint == 502


def test_max_body_size_on_responses():
    c = ClientConnection(max_body_size=3)
    c.send(GET)
    c.send(EndOfMessage(1))
    with pytest.raises(ProtocolError) as info:
        c.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n")
    assert info.value.status_hint == 502


def test_keep_alive_reuse_with_sequential_stream_ids():
    c = ClientConnection()
    for sid in (1, 2, 3):
        c.send(Request(sid, b"GET", b"/%d" % sid, [(b"host", b"b")]))
        c.send(EndOfMessage(sid))
        assert c.data_to_send().startswith(b"GET /%d HTTP/1.1\r\n" % sid)
        assert not c.is_reusable
        with pytest.raises(UsageError):
            c.send(Request(sid + 1, b"GET", b"/", [(b"host", b"b")]))
        events = c.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        assert [e.stream_id for e in events] == [sid, sid]
        assert c.is_reusable


@pytest.mark.parametrize("request_,response", [
    (Request(1, b"GET", b"/ws", [(b"host", b"b"), (b"connection", b"Upgrade"),
                                 (b"upgrade", b"websocket")]),
     b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
    (Request(1, b"CONNECT", b"b:443", [(b"host", b"b:443")]),
     b"HTTP/1.1 200 Connection Established\r\n\r\n"),
])
def test_switching_protocols(request_, response):
    c = client_after(request_)
    events = c.receive_data(response + b"\x81\x00tail")
    assert events[-1].status_code in (101, 200)
    assert c.switched and c.trailing_data == b"\x81\x00tail" and not c.is_reusable
    with pytest.raises(UsageError):
        c.receive_data(b"x")


@pytest.mark.parametrize("request_", [
    Request(1, b"GE T", b"/", [(b"host", b"b")]),
    Request(1, b"GET", b"/a b", [(b"host", b"b")]),
    Request(1, b"GET", b"/", []),  # HTTP/1.1 without host
    Request(1, b"GET", b"/", [(b"host", b"b\r\nx: y")]),
    Request(1, b"POST", b"/", [(b"host", b"b"), (b"content-length", b"1"),
                               (b"transfer-encoding", b"chunked")]),
    Request(1, b"POST", b"/", [(b"transfer-encoding", b"chunked")], http_version=b"1.0"),
    Request(1, b"POST", b"/", [(b"host", b"b"), (b"transfer-encoding", b"gzip")]),
    Request(1, b"GET", b"/", [(b"host", b"b")], http_version=b"2"),
])
def test_request_usage_errors(request_):
    with pytest.raises(UsageError):
        ClientConnection().send(request_)


def test_request_body_must_match_framing():
    c = ClientConnection()
    c.send(Request(1, b"POST", b"/", [(b"host", b"b"), (b"content-length", b"2")]))
    with pytest.raises(UsageError):
        c.send(Data(1, b"abc"))
    c2 = ClientConnection()
    c2.send(GET)
    with pytest.raises(UsageError):
        c2.send(Data(1, b"x"))  # no framing, no body


# -- round trips through our own server ------------------------------------------------------

def pump(a, b):
    """Move a's pending bytes to b; return b's events."""
    return b.receive_data(a.data_to_send())


@pytest.mark.parametrize("kind", ["get", "post-cl", "post-chunked-trailers", "head", "http10"])
def test_round_trip(kind):
    client, server = ClientConnection(), ServerConnection()
    headers = [(b"host", b"backend")]
    trailers = []
    body = b""
    version = b"1.1"
    method = b"GET"
    if kind == "post-cl":
        method, body = b"POST", b"hello"
        headers.append((b"content-length", b"5"))
    elif kind == "post-chunked-trailers":
        method, body = b"POST", b"chunked body"
        headers.append((b"transfer-encoding", b"chunked"))
        trailers = [(b"x-checksum", b"abc")]
    elif kind == "head":
        method = b"HEAD"
    elif kind == "http10":
        version, headers = b"1.0", []
    client.send(Request(1, method, b"/r", headers, http_version=version))
    if body:
        client.send(Data(1, body[:3]))
        client.send(Data(1, body[3:]))
    client.send(EndOfMessage(1, trailers))
    got = pump(client, server)
    assert got[0] == Request(1, method, b"/r", headers, http_version=version)
    assert b"".join(e.data for e in got if isinstance(e, Data)) == body
    assert list(got[-1].trailers) == trailers

    resp_trailers = [(b"grpc-status", b"0")] if version == b"1.1" and method != b"HEAD" else []
    server.send(Response(1, 200, [(b"content-type", b"text/plain")]))
    server.send(Data(1, b"response"))
    server.send(EndOfMessage(1, resp_trailers))
    events = pump(server, client)
    if server.should_close:
        events += client.receive_data(b"")
    assert isinstance(events[0], Response) and events[0].status_code == 200
    data = b"".join(e.data for e in events if isinstance(e, Data))
    assert data == (b"" if method == b"HEAD" else b"response")
    eom = [e for e in events if isinstance(e, EndOfMessage)][0]
    assert list(eom.trailers) == resp_trailers
    assert client.is_reusable is (version == b"1.1")


def test_round_trip_expect_continue():
    client, server = ClientConnection(), ServerConnection()
    client.send(Request(1, b"PUT", b"/big", [(b"host", b"b"), (b"expect", b"100-continue"),
                                            (b"content-length", b"3")]))
    [req] = pump(client, server)
    assert req.expect_continue
    server.send(InformationalResponse(1, 100, []))
    assert pump(server, client) == [InformationalResponse(1, 100, [], b"Continue")]
    client.send(Data(1, b"abc"))
    client.send(EndOfMessage(1))
    assert [type(e) for e in pump(client, server)] == [Data, EndOfMessage]


# -- a head written elsewhere (ForwardedHead: gateway/forwarding.py's C head) --------------

@pytest.mark.parametrize("fields, clen, chunked", [
    ([], -1, False),                                        # no Content-Length: -1
    ([(b"content-length", b"0")], 0, False),
    ([(b"content-length", b"5")], 5, False),
    ([(b"transfer-encoding", b"chunked")], -1, True),
])
def test_a_forwarded_head_leaves_the_state_a_request_leaves(fields, clen, chunked):
    """send(ForwardedHead) and send(Request) share one helper (_begin); the ForwardedHead's
    -1 ("no Content-Length") must not become a Content-Length body."""
    from apigw_core.protocol.http1 import ForwardedHead
    req = Request(1, b"POST", b"/p", [(b"host", b"b")] + fields)
    general = ClientConnection()
    general.send(req)
    head = general.data_to_send()
    fwd = ClientConnection()
    fwd.send(ForwardedHead(1, b"POST", head, clen, chunked))
    assert fwd.data_to_send() == head
    for a in ("_stream_id", "_method", "_req_keep", "_req_upgrade", "_resp_keep", "_rstate",
              "_req_done"):
        assert getattr(fwd, a) == getattr(general, a), a
    for c in (general, fwd):
        if clen <= 0 and not chunked:   # no framing: a body byte is misuse
            with pytest.raises(UsageError):
                c.send(Data(1, b"x"))
        else:
            c.send(Data(1, b"hello"))
        c.send(EndOfMessage(1))
    assert fwd.data_to_send() == general.data_to_send()
    assert fwd._req_done and general._req_done


def test_request_keep_alive_and_upgrade_state_goes_through_the_shared_helper():
    c = ClientConnection()
    c.send(Request(1, b"GET", b"/", [(b"host", b"b"), (b"connection", b"close")]))
    assert not c._req_keep and not c._req_upgrade
    c = ClientConnection()
    c.send(Request(1, b"GET", b"/", [(b"host", b"b"), (b"connection", b"upgrade"),
                                     (b"upgrade", b"websocket")]))
    assert c._req_keep and c._req_upgrade
    c = ClientConnection()
    c.send(Request(1, b"GET", b"/", [(b"host", b"b")], http_version=b"1.0"))
    assert not c._req_keep
    c = ClientConnection()
    c.send(Request(1, b"GET", b"/", [(b"connection", b"keep-alive")], http_version=b"1.0"))
    assert c._req_keep
