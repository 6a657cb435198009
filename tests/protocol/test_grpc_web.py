"""gRPC-Web <-> gRPC translation on real protobuf messages (tests/protocol/grpc_test.proto,
compiled by grpcio-tools): request heads and bodies (binary, and base64 text cut anywhere),
responses with the 0x80 trailer frame (binary and text), pass-through cases, and one call
carried over our own HTTP/2 client and server connections in memory."""

from __future__ import annotations

import base64

import pytest

# the messages come from grpc_test.proto, compiled by grpcio-tools at import: without it or
# protobuf, this module skips (and nothing else)
pytest.importorskip("grpc_tools", reason="optional test dependency 'grpcio-tools' missing")
pytest.importorskip("google.protobuf", reason="optional test dependency 'protobuf' missing")
from grpc_test_pb import SERVICE, pb2  # noqa: E402
from h2_helpers import Pair  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from apigw_core.protocol import Data, EndOfMessage, Request, Response, StreamReset
from apigw_core.protocol.grpc import (
    Base64Decoder,
    GrpcCall,
    GrpcError,
    GrpcMessage,
    GrpcWebTranslator,
    MessageDecoder,
    StatusCode,
    Wire,
    check_request,
    encode_message,
    encode_trailer_frame,
    parse_status,
    parse_web_response,
    status_trailers,
    web_request_body,
)

UNARY = f"/{SERVICE}/UnaryCall".encode()
STREAM_IN = f"/{SERVICE}/StreamingInputCall".encode()


def web_request(ctype: bytes, body: bytes = b"", accept: bytes | None = None,
                version: bytes = b"1.1", target: bytes = UNARY) -> Request:
    headers = [(b"host", b"gw.example"), (b"content-type", ctype),
               (b"content-length", b"%d" % len(body)), (b"x-grpc-web", b"1"),
               (b"x-user-agent", b"grpc-web-javascript/0.1")]
    if accept is not None:
        headers.append((b"accept", accept))
    return Request(1, b"POST", target, headers, version)


def translator(req: Request) -> GrpcWebTranslator:
    return GrpcWebTranslator(check_request(req), req)


def backend_messages(events) -> list[bytes]:
    dec = MessageDecoder()
    out = []
    for ev in events:
        if isinstance(ev, Data):
            out += [m.data for m in dec.feed(ev.data)]
        elif isinstance(ev, EndOfMessage):
            dec.end()
    return out


def simple_request(n: int = 0) -> bytes:
    return pb2.SimpleRequest(response_size=314 + n, payload=pb2.Payload(body=bytes(271 + n)),
                             response_status=pb2.EchoStatus(code=0, message="ok")
                             ).SerializeToString()


# -- Base64Decoder ----------------------------------------------------------------------------

@settings(max_examples=300)
@given(parts=st.lists(st.binary(max_size=40), max_size=6),
       cuts=st.lists(st.integers(0, 400), max_size=12))
def test_base64_decoder_any_flushes_any_cuts(parts, cuts):
    wire = b"".join(base64.b64encode(p) for p in parts)  # each flush padded on its own
    points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    dec = Base64Decoder()
    out = b"".join(dec.feed(wire[a:b]) for a, b in zip(points, points[1:])) + dec.end()
    assert out == b"".join(parts)


@pytest.mark.parametrize("wire,expected", [
    (b"", b""), (b"QQ==", b"A"), (b"QUI=", b"AB"), (b"QUJD", b"ABC"),
    (b"QQ==QQ==QUI=", b"AAAB"), (b"QQ", b"A"), (b"QUI", b"AB"),  # unpadded tail accepted
])
def test_base64_decoder_table(wire, expected):
    dec = Base64Decoder()
    assert dec.feed(wire) + dec.end() == expected


@pytest.mark.parametrize("wire", [
    b"QQ==\n", b"Q Q=", b"QQ-_", b"QQ*=", b"=QQQ", b"Q=QQ", b"QQ=Q", b"Q===", b"====",
    b"Q", b"QQ=", b"QQQQQ", b"\xff\xfe==",
])
def test_base64_decoder_rejects(wire):
    dec = Base64Decoder()
    with pytest.raises(GrpcError) as ei:
        dec.feed(wire)
        dec.end()
    assert (ei.value.code, ei.value.status_hint) == (StatusCode.INTERNAL, 400)


# -- requests -----------------------------------------------------------------------------------

def test_binary_request_head_and_body():
    body = web_request_body([simple_request()])
    req = web_request(b"application/grpc-web+proto", body)
    tr = translator(req)
    evs = tr.to_backend(req) + tr.to_backend(Data(1, body)) + tr.to_backend(EndOfMessage(1))
    head = evs[0]
    assert head == Request(1, b"POST", UNARY, [
        (b"host", b"gw.example"), (b"content-length", b"%d" % len(body)),
        (b"x-grpc-web", b"1"), (b"x-user-agent", b"grpc-web-javascript/0.1"),
        (b"content-type", b"application/grpc+proto"), (b"te", b"trailers")], b"2")
    assert evs[1:] == [Data(1, body), EndOfMessage(1)]  # the very same bytes
    assert check_request(head).wire is Wire.GRPC        # what the backend will see is gRPC
    (msg,) = backend_messages(evs)
    assert pb2.SimpleRequest.FromString(msg).payload.body == bytes(271)


@settings(max_examples=100)
@given(sizes=st.lists(st.integers(0, 300), min_size=0, max_size=5),
       cuts=st.lists(st.integers(0, 3000), max_size=15), per_message_padding=st.booleans())
def test_text_request_cut_anywhere(sizes, cuts, per_message_padding):
    msgs = [pb2.StreamingInputCallRequest(payload=pb2.Payload(body=bytes([n % 256]) * n))
            .SerializeToString() for n in sizes]
    if per_message_padding:  # a client that flushes (and pads) after each message
        wire = b"".join(base64.b64encode(encode_message(m)) for m in msgs)
    else:
        wire = web_request_body(msgs, text=True)
    req = web_request(b"application/grpc-web-text", wire, target=STREAM_IN)
    tr = translator(req)
    evs = tr.to_backend(req)
    points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    for a, b in zip(points, points[1:]):
        evs += tr.to_backend(Data(1, wire[a:b]))
    evs += tr.to_backend(EndOfMessage(1))
    head = evs[0]
    assert (b"content-type", b"application/grpc") in head.headers
    assert not any(n == b"content-length" for n, _ in head.headers)  # decoded body is shorter
    assert all(ev.data for ev in evs if isinstance(ev, Data))       # no empty Data events
    assert evs[-1] == EndOfMessage(1)
    got = [pb2.StreamingInputCallRequest.FromString(m).payload.body
           for m in backend_messages(evs)]
    assert got == [bytes([n % 256]) * n for n in sizes]


def test_text_request_bad_base64_is_a_grpc_error():
    req = web_request(b"application/grpc-web-text", b"")
    tr = translator(req)
    tr.to_backend(req)
    with pytest.raises(GrpcError):
        tr.to_backend(Data(1, b"AAAA!!!!"))


def test_translator_is_for_grpc_web_only():
    with pytest.raises(ValueError):
        GrpcWebTranslator(GrpcCall(Wire.GRPC))


# -- responses ----------------------------------------------------------------------------------

TRAILERS = [(b"grpc-status", b"0"), (b"grpc-message", b"all good"),
            (b"x-trailer-bin", b"AAEC")]


def backend_response(msgs: list[bytes], trailers=TRAILERS) -> list:
    return ([Response(1, 200, [(b"content-type", b"application/grpc+proto"),
                               (b"content-length", b"999"), (b"x-header", b"h")], b"2")]
            + [Data(1, encode_message(m)) for m in msgs] + [EndOfMessage(1, trailers)])


def test_trailer_frame_bytes():
    assert encode_trailer_frame([(b"grpc-status", b"0"), (b"Grpc-Message", b"OK")]) == (
        b"\x80\x00\x00\x00\x22grpc-status: 0\r\ngrpc-message: OK\r\n")
    assert encode_trailer_frame([]) == b"\x80\x00\x00\x00\x00"


def test_binary_response_gets_the_trailer_frame():
    req = web_request(b"application/grpc-web+proto")
    tr = translator(req)
    replies = [pb2.SimpleResponse(payload=pb2.Payload(body=b"r" * 314), request_size=271)
               .SerializeToString()]
    out = [e for ev in backend_response(replies) for e in tr.to_client(ev)]
    assert out[0] == Response(1, 200, [(b"x-header", b"h"),
                                       (b"content-type", b"application/grpc-web+proto")], b"2")
    assert out[-1] == EndOfMessage(1)  # the trailers moved into the body
    body = b"".join(ev.data for ev in out if isinstance(ev, Data))
    assert body.endswith(encode_trailer_frame(TRAILERS))
    msgs, trailers = parse_web_response(body)
    assert trailers == TRAILERS and parse_status(trailers) == (StatusCode.OK, "all good")
    assert [pb2.SimpleResponse.FromString(m.data).payload.body for m in msgs] == [b"r" * 314]


@pytest.mark.parametrize("ctype,accept", [
    (b"application/grpc-web-text", None),
    (b"application/grpc-web-text+proto", b"application/grpc-web-text"),
    (b"application/grpc-web+proto", b"application/grpc-web-text"),  # asked by accept
])
def test_text_response_each_chunk_base64(ctype, accept):
    tr = translator(web_request(ctype, accept=accept))
    replies = [pb2.StreamingOutputCallResponse(payload=pb2.Payload(body=bytes(n)))
               .SerializeToString() for n in (0, 1, 2, 3, 1000)]
    out = [e for ev in backend_response(replies) for e in tr.to_client(ev)]
    assert dict(out[0].headers)[b"content-type"] == b"application/grpc-web-text+proto"
    chunks = [ev.data for ev in out if isinstance(ev, Data)]
    # one base64 block per backend chunk: nothing held back, every block decodable alone
    assert len(chunks) == len(replies) + 1 and all(len(c) % 4 == 0 for c in chunks)
    assert [base64.b64decode(c) for c in chunks[:-1]] == [encode_message(m) for m in replies]
    msgs, trailers = parse_web_response(b"".join(chunks), text=True)
    assert [m.data for m in msgs] == replies and trailers == TRAILERS


def test_trailers_only_answer_passes_with_the_status_in_the_headers():
    tr = translator(web_request(b"application/grpc-web-text"))
    resp = Response(1, 200, [(b"content-type", b"application/grpc"),
                             (b"grpc-status", b"12"), (b"grpc-message", b"no such method")], b"2")
    out = tr.to_client(resp) + tr.to_client(EndOfMessage(1))
    assert out == [Response(1, 200, [(b"grpc-status", b"12"),
                                     (b"grpc-message", b"no such method"),
                                     (b"content-type", b"application/grpc-web-text")], b"2"),
                   EndOfMessage(1)]


@pytest.mark.parametrize("resp", [
    Response(1, 503, [(b"content-type", b"text/html")]),
    Response(1, 404, [(b"content-type", b"application/grpc")]),
    Response(1, 200, [(b"content-type", b"application/json")]),
    Response(1, 200, []),
])
def test_non_grpc_answers_pass_untouched(resp):
    tr = translator(web_request(b"application/grpc-web-text"))
    evs = [resp, Data(1, b"<html>oops</html>"), EndOfMessage(1, [(b"x", b"y")])]
    assert [e for ev in evs for e in tr.to_client(ev)] == evs


def test_other_events_pass():
    tr = translator(web_request(b"application/grpc-web"))
    assert tr.to_client(StreamReset(1, 8)) == [StreamReset(1, 8)]
    assert tr.to_backend(StreamReset(1, 8)) == [StreamReset(1, 8)]


@pytest.mark.parametrize("body", [
    b"\x00\x00\x00", b"\x00\x00\x00\x00\x05abc", b"\x02\x00\x00\x00\x00",
    encode_trailer_frame([]) + encode_message(b"late"), b"\x80\x00\x00\x00\x03abc",
])
def test_parse_web_response_rejects(body):
    with pytest.raises(GrpcError):
        parse_web_response(body)


# -- one call over our HTTP/2 connections --------------------------------------------------------

def test_grpc_web_call_through_http2_client_and_server():
    """gRPC-Web client events -> translator -> our http2 ClientConnection -> wire -> our
    http2 ServerConnection (the backend's side): the backend sees a valid native gRPC call;
    its answer, trailers included, comes back as a gRPC-Web text body."""
    msgs = [simple_request(i) for i in range(3)]
    wire = web_request_body(msgs, text=True)
    req = web_request(b"application/grpc-web-text+proto", wire)
    tr = translator(req)
    pair = Pair()
    sid = pair.client.next_stream_id
    for ev in tr.to_backend(req):
        pair.client.send(Request(sid, ev.method, ev.target, ev.headers, b"2"))
    for i in range(0, len(wire), 7):
        for ev in tr.to_backend(Data(1, wire[i:i + 7])):
            pair.client.send(Data(sid, ev.data))
    for ev in tr.to_backend(EndOfMessage(1)):
        pair.client.send(Data(sid, ev.data) if isinstance(ev, Data) else EndOfMessage(sid))
    server_events, _ = pair.exchange()
    breq = server_events[0]
    call = check_request(breq)  # te: trailers survived, HTTP/2, content-type native
    assert (call.wire, call.subtype) == (Wire.GRPC, b"proto")
    got = backend_messages(server_events)
    assert [pb2.SimpleRequest.FromString(m).response_size for m in got] == [314, 315, 316]

    ssid = breq.stream_id
    pair.server.send(Response(ssid, 200, [(b"content-type", b"application/grpc+proto")]))
    for m in got:
        reply = pb2.SimpleResponse(request_size=len(pb2.SimpleRequest.FromString(m)
                                                     .payload.body)).SerializeToString()
        pair.server.send(Data(ssid, encode_message(reply)))
    pair.server.send(EndOfMessage(ssid, status_trailers(StatusCode.OK)))
    _, client_events = pair.exchange()
    for ev in client_events:
        if isinstance(ev, Data):
            pair.client.acknowledge_received(ev.stream_id, len(ev.data))
    out = [e for ev in client_events for e in tr.to_client(ev)]
    assert dict(out[0].headers)[b"content-type"] == b"application/grpc-web-text+proto"
    body = b"".join(ev.data for ev in out if isinstance(ev, Data))
    web_msgs, trailers = parse_web_response(body, text=True)
    assert [pb2.SimpleResponse.FromString(m.data).request_size for m in web_msgs] == [
        271, 272, 273]
    assert trailers == [(b"grpc-status", b"0")]
    assert isinstance(web_msgs[0], GrpcMessage)


# -- fuzz: only GrpcError escapes ---------------------------------------------------------------

b64ish = st.binary(max_size=60) | st.text(alphabet="QUJDa0+/=", max_size=60).map(str.encode)


@settings(max_examples=500)
@given(chunks=st.lists(b64ish, max_size=5))
def test_fuzz_base64_decoder_only_grpc_errors(chunks):
    dec = Base64Decoder()
    try:
        for c in chunks:
            assert isinstance(dec.feed(c), bytes)
        assert isinstance(dec.end(), bytes)
    except GrpcError as exc:
        assert exc.code == StatusCode.INTERNAL


@settings(max_examples=500)
@given(body=st.binary(max_size=80) | b64ish, text=st.booleans())
def test_fuzz_parse_web_response_only_grpc_errors(body, text):
    try:
        msgs, trailers = parse_web_response(body, text=text)
    except GrpcError:
        return
    assert all(isinstance(m, GrpcMessage) for m in msgs) and isinstance(trailers, list)
