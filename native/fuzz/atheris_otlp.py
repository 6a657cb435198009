"""Coverage-guided fuzzing of the OTLP span encoder from Python (atheris).

Same input layout as fuzz_otlp.c (2 bytes buffer capacity, 1 byte offset, 1 byte kind,
1 byte flags: bit 0 maps the ids' bytes onto hex digits, 6 field lengths, 3 doubles, then
the fields).  The C encoder (native.otlp_span) and the twin (otlp.span_entry) agree: the
same bytes, E_INPUT exactly when the twin raises ValueError, E_SPACE exactly when the
twin's span does not fit in cap - off.  Then the pair: native.otlp_pair and its twin
otlp.pair_into, given parts made of the name, attrs and tail (for both spans; the
CLIENT span's id the span id reversed), and given the input's own bytes as parts, return
the same and write the same bytes.

Run (a corpus folder is optional; libFuzzer writes new inputs into the first one given):
    python native/fuzz/atheris_otlp.py -max_total_time=60 /tmp/corpus native/fuzz/corpus_otlp
"""

from __future__ import annotations

import struct
import sys

import atheris

with atheris.instrument_imports():
    from apigw_core import native
    from apigw_core.runtime import otlp

_HEX = b"0123456789abcdefABCDEF"


def one_input(data: bytes) -> None:
    if len(data) < 35:
        return
    cap = int.from_bytes(data[:2], "little")
    off, kind, flags = data[2], data[3], data[4]
    start, end, uoff = struct.unpack("<3d", data[11:35])
    fields, p = [], 35
    for i, n in enumerate(data[5:11]):
        f = data[p:p + n]
        p += n
        if flags & 1 and i < 3:
            f = bytes(_HEX[b % 22] for b in f)
        fields.append(f)
    trace, span, parent, name, attrs, tail = fields
    try:
        want = otlp.span_entry(trace, span, parent, name, kind, start, end, uoff, attrs, tail)
    except ValueError:
        want = None
    buf = native.new_buffer(max(cap, 1))
    r = native.otlp_span(buf, off, cap, trace, len(trace), span, len(span), parent,
                         len(parent), name, len(name), kind, start, end, uoff, attrs,
                         len(attrs), tail, len(tail))
    if want is None:
        assert r == native.OTLP_E_INPUT, r
    elif off > cap or len(want) > cap - off:
        assert r == native.OTLP_E_SPACE, r
    else:
        assert r == len(want) and bytes(native.buffer_view(buf, off + r))[off:] == want
    cspan = span[::-1]
    for parts in (otlp.pair_parts(name, attrs, tail, name, attrs, tail), data[35:]):
        args = (parts, len(parts), trace, span, parent, cspan, start, end, start, end, uoff)
        cbuf, pbuf = native.new_buffer(max(cap, 1)), bytearray(max(cap, 1))
        rc = native.otlp_pair(cbuf, off, cap, *args)
        rp = otlp.pair_into(pbuf, off, cap, *args)
        assert rc == rp, (rc, rp)
        if rc > 0:
            assert bytes(native.buffer_view(cbuf, off + rc))[off:] == bytes(pbuf[off:off + rc])


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
