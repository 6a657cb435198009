"""The gRPC message counts of telemetry (runtime/telemetry.py `_Count`): its walk over
chunks of whole messages against grpc.MessageDecoder's observer on any chunking, valid
framing or not (the end-to-end counts: test_grpc_metrics_e2e.py)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from apigw_core.protocol import grpc
from apigw_core.runtime.telemetry import _Count

message = st.builds(lambda flag, payload: bytes([flag]) + len(payload).to_bytes(4, "big")
                    + payload, st.sampled_from([0, 0, 1, 2, 0x80]), st.binary(max_size=40))


def reference(chunks: list[bytes]) -> int:
    obs = grpc.MessageObserver()
    dec = grpc.MessageDecoder(max_message_size=(1 << 32) - 1, encoding=b"any",
                              observer=obs, collect=False)
    for c in chunks:
        try:
            dec.feed(c)
        except grpc.GrpcError:
            break
    return obs.count


@settings(max_examples=400)
@given(st.lists(message, max_size=8), st.lists(st.integers(0, 400), max_size=6),
       st.binary(max_size=7))
def test_count_equals_the_decoders(messages, cuts, tail):
    stream = b"".join(messages) + tail
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0] + points, points + [len(stream)])]
    count = _Count()
    for c in chunks:
        count(c)
    assert count.count == reference(chunks)


def test_whole_messages_make_no_decoder_and_a_cut_one_is_still_counted():
    one = b"\x00\x00\x00\x00\x03abc"
    count = _Count()
    count(one + one)
    assert (count.count, count.dec) == (2, None)
    count(one[:4])                       # a prefix cut: the decoder takes over from here
    count(one[4:] + one)
    assert count.count == 4 and count.dec is not None
