"""HTTP/1.1 request parsing micro-benchmarks: our C path, our pure-Python twin, h11, httptools.

Two levels, each on a realistic ~630-byte browser GET (14 fields) and a small JSON POST:
  * ``events``: bytes in, Python events out (a new server connection per request, so the
    work is the same for every contender: set up, parse the head, frame the body, build
    the Request / Data / EndOfMessage events);
  * ``head``: the request head alone, into (method, target, headers) Python objects.
httptools (llhttp) has no events of its own: its callbacks build ours, with the same fast
constructors our connection uses, so it is compared doing the same work.

    pytest benchmarks/test_bench_http1.py --benchmark-only --benchmark-group-by=group
"""

from __future__ import annotations

import h11
import httptools
import pytest

from apigw_core import native
from apigw_core.protocol import http1
from apigw_core.protocol.events import _new_data, _new_eom, _new_request

BROWSER_GET = (
    b"GET /wp-content/uploads/2024/01/photo.jpg?size=large&v=3 HTTP/1.1\r\n"
    b"Host: www.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/120.0.0.0 Safari/537.36\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    b"*/*;q=0.8\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"Referer: https://www.example.com/blog/\r\n"
    b"Cookie: session=abc123def456; theme=dark; _ga=GA1.2.3\r\n"
    b"Connection: keep-alive\r\n"
    b"Upgrade-Insecure-Requests: 1\r\n"
    b"Sec-Fetch-Dest: document\r\n"
    b"Sec-Fetch-Mode: navigate\r\n"
    b"Sec-Fetch-Site: same-origin\r\n"
    b"Sec-Fetch-User: ?1\r\n"
    b"Cache-Control: max-age=0\r\n"
    b"\r\n"
)
SMALL_POST = (
    b"POST /api/orders HTTP/1.1\r\n"
    b"Host: api.example.com\r\n"
    b"Content-Type: application/json\r\n"
    b"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.x\r\n"
    b"Content-Length: 27\r\n"
    b"\r\n"
    b'{"item": "book", "qty": 2}\n'
)
INPUTS = {"browser_get": BROWSER_GET, "small_post": SMALL_POST}


class HttptoolsServer:
    """The least a connection on httptools must do to produce our events."""

    def __init__(self) -> None:
        self.events: list = []
        self.stream_id = 0
        self.parser = httptools.HttpRequestParser(self)

    def on_message_begin(self) -> None:
        self.headers: list = []
        self.stream_id += 1

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        p = self.parser
        self.events.append(_new_request(self.stream_id, p.get_method(), self.url, self.headers,
                                        p.get_http_version().encode(), None, False))

    def on_body(self, body: bytes) -> None:
        self.events.append(_new_data(self.stream_id, body))

    def on_message_complete(self) -> None:
        self.events.append(_new_eom(self.stream_id, []))

    def receive_data(self, data: bytes) -> list:
        self.parser.feed_data(data)
        events, self.events = self.events, []
        return events


def ours_native(data: bytes) -> list:
    return http1.ServerConnection().receive_data(data)


_TWIN = native.PyHeadParser()


def ours_twin(data: bytes) -> list:
    conn = http1.ServerConnection()
    conn._parse = _TWIN.parse
    return conn.receive_data(data)


def with_h11(data: bytes) -> list:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    events = []
    while True:
        ev = conn.next_event()
        if ev is h11.NEED_DATA:
            return events
        events.append(ev)
        if type(ev) is h11.EndOfMessage:
            return events


def with_httptools(data: bytes) -> list:
    return HttptoolsServer().receive_data(data)


EVENTS = {"native": ours_native, "twin": ours_twin, "h11": with_h11, "httptools": with_httptools}


@pytest.mark.parametrize("name", list(INPUTS))
@pytest.mark.parametrize("impl", list(EVENTS))
def test_events(benchmark, impl, name):
    if impl == "native" and not native.enabled:
        pytest.skip("C extension not built")
    data = INPUTS[name]
    benchmark.group = f"events-{name}"
    events = benchmark(EVENTS[impl], data)
    assert len(events) == (3 if b"POST" in data[:4] else 2)


_C = native.CHeadParser() if native.enabled else None


class _HeadOnly:
    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))


def head_httptools(data: bytes):
    sink = _HeadOnly()
    sink.headers = []
    p = httptools.HttpRequestParser(sink)
    p.feed_data(data)
    return p.get_method(), sink.url, sink.headers


HEADS = {
    "native": lambda d: _C.parse(d),
    "twin": _TWIN.parse,
    "httptools": head_httptools,
}


@pytest.mark.parametrize("impl", list(HEADS))
def test_head(benchmark, impl):
    if impl == "native" and _C is None:
        pytest.skip("C extension not built")
    benchmark.group = "head-browser_get"
    result = benchmark(HEADS[impl], BROWSER_GET)
    assert result is not None


# Keep-alive, the usual case for a gateway: one connection carries many requests, so the
# per-connection set-up drops out.  100 pipelined requests in one receive_data call; the
# figure is per batch (divide by 100).  h11 cannot parse a pipelined request before the
# previous response is sent, so it is not in this group.
PIPELINE = 100


def pipelined_native(data: bytes) -> list:
    return http1.ServerConnection().receive_data(data)


def pipelined_httptools(data: bytes) -> list:
    return HttptoolsServer().receive_data(data)


PIPELINED = {"native": pipelined_native, "httptools": pipelined_httptools}


@pytest.mark.parametrize("name", list(INPUTS))
@pytest.mark.parametrize("impl", list(PIPELINED))
def test_pipelined_x100(benchmark, impl, name):
    if impl == "native" and not native.enabled:
        pytest.skip("C extension not built")
    data = INPUTS[name].replace(b"Connection: keep-alive\r\n", b"") * PIPELINE
    benchmark.group = f"pipelined-x{PIPELINE}-{name}"
    events = benchmark(PIPELINED[impl], data)
    assert len(events) == PIPELINE * (3 if b"POST" in data[:4] else 2)
