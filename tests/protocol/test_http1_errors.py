"""ServerConnection.send_error: the answer to a request that broke HTTP/1.1 has each framing
and content header exactly once, whatever headers the caller brings (issue 8, defect 1)."""

from __future__ import annotations

import pytest

from apigw_core.protocol import ProtocolError
from apigw_core.protocol.http1 import ServerConnection

JSON = (b"content-type", b"application/json")


def head_lines(data: bytes) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    return lines[0], [tuple(line.split(b": ", 1)) for line in lines[1:]], body  # type: ignore


def names(fields: list[tuple[bytes, bytes]]) -> list[bytes]:
    return [n for n, _ in fields]


def broken(raw: bytes) -> tuple[ServerConnection, ProtocolError]:
    conn = ServerConnection()
    with pytest.raises(ProtocolError) as info:
        conn.receive_data(raw)
    return conn, info.value


@pytest.mark.parametrize("raw, status", [
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nhost: a\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nhost: a\r\nx: " + b"v" * 70000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip, chunked\r\n\r\n", 501),
    (b"GET / HTTP/3.0\r\nhost: a\r\n\r\n", 505),
])
def test_a_caller_content_type_replaces_the_default(raw, status):
    conn, exc = broken(raw)
    assert exc.status_hint == status
    body = b'{"statusCode":%d}' % status
    conn.send_error(status, body, [JSON, (b"date", b"Tue, 01 Jan 2019 00:00:00 GMT")])
    line, fields, got = head_lines(conn.data_to_send())
    assert line.startswith(b"HTTP/1.1 %d " % status)
    assert [v for n, v in fields if n == b"content-type"] == [b"application/json"]
    assert sorted(names(fields)) == [b"connection", b"content-length", b"content-type",
                                     b"date"]
    assert dict(fields)[b"content-length"] == b"%d" % len(body) and got == body
    assert conn.should_close


def test_without_a_content_type_a_body_is_text_plain():
    conn, _ = broken(b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n")
    conn.send_error(400, b"bad request\n")
    _, fields, body = head_lines(conn.data_to_send())
    assert fields == [(b"content-type", b"text/plain; charset=utf-8"),
                      (b"content-length", b"12"), (b"connection", b"close")]
    assert body == b"bad request\n"


def test_no_body_no_content_type():
    conn, _ = broken(b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n")
    conn.send_error(400)
    _, fields, _ = head_lines(conn.data_to_send())
    assert fields == [(b"content-length", b"0"), (b"connection", b"close")]


def test_framing_and_connection_from_the_caller_are_not_repeated():
    conn, _ = broken(b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n")
    conn.send_error(400, b"{}", [JSON, (b"connection", b"close"),
                                 (b"content-length", b"99"),
                                 (b"transfer-encoding", b"chunked")])
    _, fields, body = head_lines(conn.data_to_send())
    assert sorted(names(fields)) == [b"connection", b"content-length", b"content-type"]
    assert dict(fields)[b"content-length"] == b"2" and body == b"{}"
