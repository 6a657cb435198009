"""The HTTP/2 engine's frame shortcuts (protocol/http2/_fast.py) against hyperframe:
`quick_frame` must parse a DATA or HEADERS frame into the same attributes hyperframe's
parser gives (or leave it to hyperframe), and the frames we send as bytes (`RawFrame`)
must be the bytes hyperframe would serialize."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from hyperframe.frame import ContinuationFrame, DataFrame, Frame, HeadersFrame

from apigw_core.protocol.http2._engine import Engine
from apigw_core.protocol.http2._fast import quick_frame
from apigw_core.protocol.http2._limits import H2Limits


def _hyperframe(raw: bytes):
    frame, length = Frame.parse_frame_header(memoryview(raw[:9]))
    frame.parse_body(memoryview(raw[9:9 + length]))
    return frame


def _attrs(frame) -> dict:
    out = {"cls": frame.__class__, "stream_id": frame.stream_id, "flags": set(frame.flags),
           "data": bytes(frame.data), "body_len": frame.body_len,
           "pad_length": frame.pad_length}
    if frame.__class__ is HeadersFrame:
        out.update(depends_on=frame.depends_on, stream_weight=frame.stream_weight,
                   exclusive=frame.exclusive)
    if frame.__class__ is DataFrame:
        out["flow_controlled_length"] = frame.flow_controlled_length
    return out


@settings(max_examples=400, deadline=None)
@given(ftype=st.sampled_from([0, 1]), flags=st.integers(0, 255),
       sid=st.integers(0, 2**32 - 1), body=st.binary(max_size=64),
       prefix=st.binary(max_size=16))
def test_quick_frame_parses_as_hyperframe(ftype, flags, sid, body, prefix):
    raw = (len(body).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big")
           + body)
    buf = prefix + raw
    quick = quick_frame(buf, len(prefix), len(buf))
    if flags & 0x28 or not sid & 0x7FFFFFFF:
        assert quick is None  # padding, priority, stream 0: hyperframe's own checks
        return
    assert quick is not None
    assert _attrs(quick) == _attrs(_hyperframe(raw))
    quick.flags.add("END_STREAM")  # still a hyperframe Flags: checked, per frame
    assert "END_STREAM" in quick.flags


def test_quick_frame_leaves_other_types_to_hyperframe():
    for ftype in range(2, 10):
        raw = (0).to_bytes(3, "big") + bytes([ftype, 0]) + (1).to_bytes(4, "big")
        assert quick_frame(raw, 0, len(raw)) is None


def _engine() -> Engine:
    eng = Engine(False, H2Limits())
    eng.initiate_connection()
    eng.data_to_send()
    return eng


def _open_stream(eng: Engine, sid: int) -> None:
    client = Engine(True, H2Limits())
    client.initiate_connection()
    client.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"http"),
                              (b":path", b"/"), (b":authority", b"x")], end_stream=True)
    eng.receive(client.data_to_send())
    eng.data_to_send()


@settings(max_examples=60, deadline=None)
@given(value=st.binary(min_size=0, max_size=40000), end=st.booleans())
def test_raw_headers_are_hyperframes_bytes(value, end):
    """HEADERS (+ CONTINUATION past the frame size) as hyperframe would build them from
    the same HPACK block."""
    eng = _engine()
    _open_stream(eng, 1)
    block = [(b":status", b"200"), (b"x-big", value.hex().encode()[:30000])]
    ref_block = eng.encoder.__class__().encode(block)
    eng.send_headers(1, block, end_stream=end)
    got = eng.data_to_send()
    mfs = eng.max_outbound_frame_size
    frames = [HeadersFrame(1, ref_block[:mfs])]
    for i in range(mfs, len(ref_block), mfs):
        frames.append(ContinuationFrame(1, ref_block[i:i + mfs]))
    frames[-1].flags.add("END_HEADERS")
    if end:
        frames[0].flags.add("END_STREAM")
    assert got == b"".join(f.serialize() for f in frames)


@given(body=st.binary(max_size=16384), end=st.booleans())
@settings(max_examples=60, deadline=None)
def test_raw_data_is_hyperframes_bytes(body, end):
    eng = _engine()
    _open_stream(eng, 1)
    eng.send_headers(1, [(b":status", b"200")])
    eng.data_to_send()
    sent = eng.data_frames_sent
    window = eng.outbound_flow_control_window
    eng.send_data(1, body, end_stream=end)
    ref = DataFrame(1, body)
    if end:
        ref.flags.add("END_STREAM")
    assert eng.data_to_send() == ref.serialize()
    assert eng.data_frames_sent == sent + 1          # the WINDOW_UPDATE flood guard's count
    assert eng.outbound_flow_control_window == window - len(body)
    if not end:
        eng.end_stream(1)
        ref = DataFrame(1)
        ref.flags.add("END_STREAM")
        assert eng.data_to_send() == ref.serialize()
