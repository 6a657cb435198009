"""WebSocket opening handshakes: the client's request on both carriers (tables), the Upgrade
request to the backend, the check of the backend's answer, and the answer to the client."""

from __future__ import annotations

import base64

import pytest

from apigw_core.protocol import InformationalResponse, ProtocolError, Request, Response
from apigw_core.protocol import http1
from apigw_core.protocol.websocket import (
    BackendHandshake,
    HandshakeRefusal,
    WebSocketOffer,
    accept_value,
    is_websocket_request,
    parse_extensions,
    server_handshake,
)

RFC_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3
RFC_ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
V13 = [(b"sec-websocket-version", b"13")]


def h1_request(*lines: bytes, method: bytes = b"GET", version: bytes = b"1.1") -> Request:
    """A request head parsed by our HTTP/1.1 server, as the runtime would get it."""
    raw = b"%s /chat HTTP/%s\r\nHost: example.com\r\n" % (method, version)
    raw += b"".join(line + b"\r\n" for line in lines) + b"\r\n"
    (req, *_) = http1.ServerConnection().receive_data(raw)
    assert isinstance(req, Request)
    return req


UPGRADE = (b"Upgrade: websocket", b"Connection: Upgrade")
KEY = b"Sec-WebSocket-Key: " + RFC_KEY
VERSION = b"Sec-WebSocket-Version: 13"
GOOD = UPGRADE + (KEY, VERSION)


def refusal(result: object) -> tuple[int, list]:
    assert isinstance(result, HandshakeRefusal), result
    return result.status_code, result.headers


# -- the client's request over HTTP/1.1 (RFC 6455 §4.2.1) -----------------------------------

H1_OK = {
    "minimal": GOOD,
    "case-insensitive tokens": (b"Upgrade: WebSocket", b"Connection: keep-alive, UPGRADE",
                                KEY, VERSION),
    "key with spaces around": UPGRADE + (b"Sec-WebSocket-Key:  " + RFC_KEY + b" ", VERSION),
}


@pytest.mark.parametrize("lines", H1_OK.values(), ids=H1_OK.keys())
def test_h1_request_accepted(lines):
    req = h1_request(*lines)
    assert is_websocket_request(req)
    assert server_handshake(req) == WebSocketOffer(1, b"1.1", RFC_KEY, (), ())


H1_BAD = {
    # name: (lines, method, http version, status)
    "version 8": (UPGRADE + (KEY, b"Sec-WebSocket-Version: 8"), b"GET", b"1.1", 426),
    "version missing": (UPGRADE + (KEY,), b"GET", b"1.1", 426),
    "two versions": (UPGRADE + (KEY, b"Sec-WebSocket-Version: 13, 8"), b"GET", b"1.1", 426),
    "version repeated": (GOOD + (VERSION,), b"GET", b"1.1", 426),
    "key missing": (UPGRADE + (VERSION,), b"GET", b"1.1", 400),
    "key repeated": (GOOD + (KEY,), b"GET", b"1.1", 400),
    "key not base64": (UPGRADE + (b"Sec-WebSocket-Key: not*base64!!", VERSION),
                       b"GET", b"1.1", 400),
    "key of 15 bytes": (UPGRADE + (b"Sec-WebSocket-Key: " + base64.b64encode(b"x" * 15),
                                   VERSION), b"GET", b"1.1", 400),
    "key of 17 bytes": (UPGRADE + (b"Sec-WebSocket-Key: " + base64.b64encode(b"x" * 17),
                                   VERSION), b"GET", b"1.1", 400),
    "key without padding": (UPGRADE + (b"Sec-WebSocket-Key: " + RFC_KEY.rstrip(b"="),
                                       VERSION), b"GET", b"1.1", 400),
    "POST": (GOOD, b"POST", b"1.1", 400),
    "no Connection: upgrade": ((b"Upgrade: websocket", KEY, VERSION), b"GET", b"1.1", 400),
    "Upgrade: h2c": ((b"Upgrade: h2c", b"Connection: Upgrade", KEY, VERSION),
                     b"GET", b"1.1", 400),
    "no Upgrade at all": ((KEY, VERSION), b"GET", b"1.1", 400),
    "HTTP/1.0": (GOOD, b"GET", b"1.0", 400),
    "subprotocol not a token": (GOOD + (b"Sec-WebSocket-Protocol: a b",), b"GET", b"1.1", 400),
    "extensions syntax": (GOOD + (b"Sec-WebSocket-Extensions: permessage-deflate; ;",),
                          b"GET", b"1.1", 400),
    "extensions dangling =": (GOOD + (b"Sec-WebSocket-Extensions: permessage-deflate; a=",),
                              b"GET", b"1.1", 400),
}


@pytest.mark.parametrize("lines,method,version,status", H1_BAD.values(), ids=H1_BAD.keys())
def test_h1_request_refused(lines, method, version, status):
    result = server_handshake(h1_request(*lines, method=method, version=version))
    code, headers = refusal(result)
    assert code == status
    assert result.stream_id == 1 and result.message
    if status == 426:  # RFC 6455 §4.2.2: tell the client which version we speak
        assert headers == [(b"sec-websocket-version", b"13")]
    else:
        assert headers == []


def test_version_is_checked_before_the_key():
    # an old-draft client learns the version even if its key is also unacceptable
    req = h1_request(*UPGRADE, b"Sec-WebSocket-Version: 8")
    assert refusal(server_handshake(req))[0] == 426


OFFERS = {
    # Sec-WebSocket-Extensions lines -> permessage-deflate offers forwarded
    "pmd plain": ([b"permessage-deflate"], (b"permessage-deflate",)),
    "pmd with params": ([b"permessage-deflate; client_max_window_bits; server_max_window_bits=10"],
                        (b"permessage-deflate; client_max_window_bits; "
                         b"server_max_window_bits=10",)),
    "quoted value unquoted": ([b'permessage-deflate; client_max_window_bits="12"'],
                              (b"permessage-deflate; client_max_window_bits=12",)),
    "unknown extension dropped": ([b"x-webkit-deflate-frame, permessage-deflate"],
                                  (b"permessage-deflate",)),
    "two offers, two lines": ([b"permessage-deflate; server_no_context_takeover",
                               b"permessage-deflate"],
                              (b"permessage-deflate; server_no_context_takeover",
                               b"permessage-deflate")),
    "unknown param declined": ([b"permessage-deflate; foo, permessage-deflate"],
                               (b"permessage-deflate",)),
    "window bits out of range": ([b"permessage-deflate; server_max_window_bits=16"], ()),
    "window bits missing value": ([b"permessage-deflate; server_max_window_bits"], ()),
    "window bits leading zero": ([b"permessage-deflate; client_max_window_bits=09"], ()),
    "repeated param declined": ([b"permessage-deflate; server_no_context_takeover; "
                                 b"server_no_context_takeover"], ()),
    "flag with a value declined": ([b"permessage-deflate; client_no_context_takeover=1"], ()),
    "empty list elements": ([b", permessage-deflate ,"], (b"permessage-deflate",)),
}


@pytest.mark.parametrize("lines,forwarded", OFFERS.values(), ids=OFFERS.keys())
def test_extension_offers_forwarded_only_when_understood(lines, forwarded):
    req = h1_request(*GOOD, *(b"Sec-WebSocket-Extensions: " + v for v in lines))
    offer = server_handshake(req)
    assert isinstance(offer, WebSocketOffer)
    assert offer.extensions == forwarded


def test_subprotocols_in_order_over_several_lines():
    req = h1_request(*GOOD, b"Sec-WebSocket-Protocol: chat, superchat",
                     b"Sec-WebSocket-Protocol: v2.json")
    offer = server_handshake(req)
    assert isinstance(offer, WebSocketOffer)
    assert offer.subprotocols == (b"chat", b"superchat", b"v2.json")


def test_parse_extensions_grammar():
    assert parse_extensions([b'a; b=1; c="x\\"y", d']) == [
        (b"a", [(b"b", b"1"), (b"c", b'x"y')]), (b"d", [])]
    assert parse_extensions([]) == []
    for bad in (b"a;", b"a; =1", b"a b", b'a; b="x', b"=a", b"a; b=1=2"):
        with pytest.raises(ValueError):
            parse_extensions([bad])


# -- the client's request over HTTP/2 (RFC 8441) --------------------------------------------

def h2_request(headers, method=b"CONNECT", protocol=b"websocket") -> Request:
    return Request(3, method, b"/chat", [(b"host", b"example.com")] + headers, b"2",
                   protocol=protocol)


def test_h2_extended_connect_accepted():
    req = h2_request(V13 + [(b"sec-websocket-protocol", b"chat"),
                            (b"sec-websocket-extensions", b"permessage-deflate")])
    assert is_websocket_request(req)
    assert server_handshake(req) == WebSocketOffer(
        3, b"2", None, (b"chat",), (b"permessage-deflate",))


H2_BAD = {
    "version missing": ([], b"CONNECT", b"websocket", 426),
    "version 8": ([(b"sec-websocket-version", b"8")], b"CONNECT", b"websocket", 426),
    "a key (not used on HTTP/2)": (V13 + [(b"sec-websocket-key", RFC_KEY)],
                                   b"CONNECT", b"websocket", 400),
    "another protocol": (V13, b"CONNECT", b"connect-udp", 400),
    "no :protocol": (V13, b"CONNECT", None, 400),
    "GET with :protocol": (V13, b"GET", b"websocket", 400),
    "bad extensions": (V13 + [(b"sec-websocket-extensions", b"a;;")],
                       b"CONNECT", b"websocket", 400),
}


@pytest.mark.parametrize("headers,method,protocol,status", H2_BAD.values(), ids=H2_BAD.keys())
def test_h2_request_refused(headers, method, protocol, status):
    result = server_handshake(h2_request(headers, method, protocol))
    code, hdrs = refusal(result)
    assert code == status and result.stream_id == 3
    assert hdrs == ([(b"sec-websocket-version", b"13")] if status == 426 else [])


# -- towards the backend ------------------------------------------------------------------

def fixed_random(n: int) -> bytes:
    return bytes(range(n))


def offer_for(*lines: bytes) -> WebSocketOffer:
    offer = server_handshake(h1_request(*GOOD, *lines))
    assert isinstance(offer, WebSocketOffer)
    return offer


def test_backend_request_has_a_fresh_key_and_the_offers():
    offer = offer_for(b"Sec-WebSocket-Protocol: chat, v2",
                      b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
    hs = BackendHandshake(offer, random=fixed_random)
    assert hs.key == base64.b64encode(bytes(range(16))) != RFC_KEY
    client_headers = [
        (b"host", b"backend:9000"), (b"origin", b"https://example.com"),
        (b"connection", b"Upgrade, X-Hop"), (b"x-hop", b"1"), (b"keep-alive", b"5"),
        (b"upgrade", b"websocket"), (b"sec-websocket-key", RFC_KEY),
        (b"sec-websocket-version", b"13"), (b"sec-websocket-protocol", b"evil"),
        (b"sec-websocket-extensions", b"x-evil"), (b"content-length", b"0"),
        (b"cookie", b"a=1"), (b"te", b"trailers")]
    req = hs.request(b"/ws?x=1", client_headers)
    assert req == Request(1, b"GET", b"/ws?x=1", [
        (b"host", b"backend:9000"), (b"origin", b"https://example.com"), (b"cookie", b"a=1"),
        (b"connection", b"Upgrade"), (b"upgrade", b"websocket"),
        (b"sec-websocket-key", hs.key), (b"sec-websocket-version", b"13"),
        (b"sec-websocket-protocol", b"chat, v2"),
        (b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits")],
        b"1.1", upgrade=b"websocket")
    # and our HTTP/1.1 client connection takes it as an upgrade
    conn = http1.ClientConnection()
    conn.send(req)
    wire = conn.data_to_send()
    assert wire.startswith(b"GET /ws?x=1 HTTP/1.1\r\n") and b"sec-websocket-key: " in wire
    two = BackendHandshake(offer)  # os.urandom: a different key each time
    assert two.key != BackendHandshake(offer).key and len(base64.b64decode(two.key)) == 16


def test_backend_request_from_an_h2_offer():
    offer = server_handshake(h2_request(V13))
    assert isinstance(offer, WebSocketOffer)
    req = BackendHandshake(offer, random=fixed_random).request(
        b"/chat", [(b"host", b"example.com"), (b"sec-websocket-version", b"13")])
    assert [n for n, _ in req.headers] == [b"host", b"connection", b"upgrade",
                                            b"sec-websocket-key", b"sec-websocket-version"]


def answer(key: bytes, *extra: tuple[bytes, bytes], status: int = 101,
           accept: object = "right") -> InformationalResponse:
    headers = [(b"upgrade", b"websocket"), (b"connection", b"Upgrade")]
    if accept == "right":
        headers.append((b"sec-websocket-accept", accept_value(key)))
    elif accept is not None:
        headers.append((b"sec-websocket-accept", accept))  # type: ignore[arg-type]
    return InformationalResponse(1, status, headers + list(extra))


PMD_OFFERS = (b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits; "
              b"server_max_window_bits=12, permessage-deflate")

ANSWERS_BAD = {
    # name: (offer lines, extra answer fields, accept)
    "wrong accept": ((), [], b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
    "accept of the client's key": ((), [], RFC_ACCEPT),
    "no accept": ((), [], None),
    "two accepts": ((), [(b"sec-websocket-accept", b"x")], "right"),
    "subprotocol not offered": ((), [(b"sec-websocket-protocol", b"chat")], "right"),
    "other subprotocol": ((b"Sec-WebSocket-Protocol: chat",),
                          [(b"sec-websocket-protocol", b"superchat")], "right"),
    "two subprotocols": ((b"Sec-WebSocket-Protocol: a, b",),
                         [(b"sec-websocket-protocol", b"a"), (b"sec-websocket-protocol", b"b")],
                         "right"),
    "extension not offered": ((), [(b"sec-websocket-extensions", b"permessage-deflate")],
                              "right"),
    "unknown extension": ((PMD_OFFERS,), [(b"sec-websocket-extensions", b"x-foo")], "right"),
    "pmd twice": ((PMD_OFFERS,), [(b"sec-websocket-extensions",
                                  b"permessage-deflate, permessage-deflate")], "right"),
    "pmd unknown param": ((PMD_OFFERS,), [(b"sec-websocket-extensions",
                                          b"permessage-deflate; foo")], "right"),
    "client window bits not offered": (
        (b"Sec-WebSocket-Extensions: permessage-deflate",),
        [(b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits=10")],
        "right"),
    "client window bits without value": (
        (PMD_OFFERS,), [(b"sec-websocket-extensions",
                         b"permessage-deflate; client_max_window_bits")], "right"),
    "server window larger than offered": (
        (b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10",),
        [(b"sec-websocket-extensions", b"permessage-deflate; server_max_window_bits=12")],
        "right"),
    "offered no_context_takeover ignored": (
        (b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover",),
        [(b"sec-websocket-extensions", b"permessage-deflate")], "right"),
    "extensions syntax": ((PMD_OFFERS,), [(b"sec-websocket-extensions", b"permessage-deflate;")],
                          "right"),
}


@pytest.mark.parametrize("offer_lines,extra,accept", ANSWERS_BAD.values(),
                         ids=ANSWERS_BAD.keys())
def test_backend_answer_refused(offer_lines, extra, accept):
    hs = BackendHandshake(offer_for(*offer_lines), random=fixed_random)
    with pytest.raises(ProtocolError) as info:
        hs.check_response(answer(hs.key, *extra, accept=accept))
    assert info.value.status_hint == 502


def test_backend_101_without_upgrade_fields_refused():
    hs = BackendHandshake(offer_for(), random=fixed_random)
    good = accept_value(hs.key)
    for headers in ([(b"connection", b"Upgrade"), (b"sec-websocket-accept", good)],
                    [(b"upgrade", b"websocket"), (b"sec-websocket-accept", good)],
                    [(b"upgrade", b"h2c"), (b"connection", b"Upgrade"),
                     (b"sec-websocket-accept", good)]):
        with pytest.raises(ProtocolError):
            hs.check_response(InformationalResponse(1, 101, headers))


ANSWERS_OK = {
    # name: (offer lines, extra answer fields, subprotocol, deflate)
    "plain": ((), [], None, False),
    "subprotocol chosen": ((b"Sec-WebSocket-Protocol: chat, superchat",),
                           [(b"sec-websocket-protocol", b"superchat")], b"superchat", False),
    "subprotocol offered but none chosen": ((b"Sec-WebSocket-Protocol: chat",), [],
                                            None, False),
    "extension offered but declined": ((PMD_OFFERS,), [], None, False),
    "pmd plain": ((PMD_OFFERS,), [(b"sec-websocket-extensions", b"permessage-deflate")],
                  None, True),
    "pmd all params": ((PMD_OFFERS,), [(b"sec-websocket-extensions",
                                        b"permessage-deflate; server_no_context_takeover; "
                                        b"client_no_context_takeover; "
                                        b"server_max_window_bits=9; client_max_window_bits=11")],
                       None, True),
    "pmd fits the second offer": (
        (b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9, "
         b"permessage-deflate",),
        [(b"sec-websocket-extensions", b"PerMessage-Deflate; server_max_window_bits=15")],
        None, True),
}


@pytest.mark.parametrize("offer_lines,extra,subprotocol,deflate", ANSWERS_OK.values(),
                         ids=ANSWERS_OK.keys())
def test_backend_answer_accepted(offer_lines, extra, subprotocol, deflate):
    hs = BackendHandshake(offer_for(*offer_lines), random=fixed_random)
    acc = hs.check_response(answer(hs.key, *extra, (b"set-cookie", b"s=1")))
    assert acc is not None
    assert acc.subprotocol == subprotocol and acc.deflate is deflate
    assert acc.headers == [(b"set-cookie", b"s=1")]


@pytest.mark.parametrize("head", [
    Response(1, 200, [(b"content-length", b"0")]),
    Response(1, 403, []),
    Response(1, 426, [(b"sec-websocket-version", b"13")]),
    InformationalResponse(1, 100, []),
    InformationalResponse(1, 103, [(b"link", b"</a>")]),
], ids=lambda h: str(h.status_code))
def test_other_answers_are_plain_http(head):
    hs = BackendHandshake(offer_for(), random=fixed_random)
    assert hs.check_response(head) is None


def test_answer_to_an_h1_client_uses_the_clients_own_key():
    offer = offer_for(b"Sec-WebSocket-Protocol: chat",
                      b"Sec-WebSocket-Extensions: permessage-deflate")
    hs = BackendHandshake(offer, random=fixed_random)
    acc = hs.check_response(answer(
        hs.key, (b"sec-websocket-protocol", b"chat"),
        (b"sec-websocket-extensions", b"permessage-deflate; server_no_context_takeover"),
        (b"set-cookie", b"s=1"), (b"keep-alive", b"timeout=5"), (b"x-hop", b"1"),
        (b"connection", b"x-hop")))
    assert acc is not None
    assert acc.client_response() == InformationalResponse(1, 101, [
        (b"upgrade", b"websocket"), (b"connection", b"Upgrade"),
        (b"sec-websocket-accept", RFC_ACCEPT), (b"sec-websocket-protocol", b"chat"),
        (b"sec-websocket-extensions", b"permessage-deflate; server_no_context_takeover"),
        (b"set-cookie", b"s=1")])
    relay = acc.relay()
    assert relay.client.stream_id == 1 and relay.client._deflate


def test_answer_to_an_h2_client_is_200():
    offer = server_handshake(h2_request(V13 + [(b"sec-websocket-protocol", b"chat")]))
    assert isinstance(offer, WebSocketOffer)
    hs = BackendHandshake(offer, random=fixed_random)
    acc = hs.check_response(answer(hs.key, (b"sec-websocket-protocol", b"chat")))
    assert acc is not None
    assert acc.client_response() == Response(
        3, 200, [(b"sec-websocket-protocol", b"chat")], b"2")
    assert acc.relay().client.stream_id == 3


def test_accept_value_rfc_example():
    assert accept_value(RFC_KEY) == RFC_ACCEPT
