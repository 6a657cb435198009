"""Coverage-guided fuzzing of WebSocket masking and UTF-8 checking from Python (atheris).

Same input layout as fuzz_ws.c (1 byte phase, 4 bytes key, 2 bytes split point, then the
payload).  For any input the C functions and their pure-Python twins (_purepy/ws.py)
give the same masks and the same UTF-8 states piece by piece, plain, masked and fused,
and the end result is what CPython's strict decoder says of the whole payload.

Run (a corpus folder is optional; libFuzzer writes new inputs into the first one given):
    python native/fuzz/atheris_ws.py -max_total_time=60 /tmp/corpus native/fuzz/corpus_ws
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from apigw_core import native
    from apigw_core._purepy import ws as py

OKEY = b"\xa5\x00\x5a\xff"


def one_input(data: bytes) -> None:
    if len(data) < 7:
        return
    phase, key = data[0] & 3, data[1:5]
    payload = data[7:]
    n = len(payload)
    cut = int.from_bytes(data[5:7], "big") % (n + 1)
    masked = native._c_ws_mask(payload, key, phase)
    assert masked == py.mask(payload, key, phase)
    ph2 = (phase + cut) & 3
    results = []
    for utf8 in (native._c_ws_utf8, py.utf8):
        s1 = utf8(0, payload[:cut], None, 0, False)
        s2 = s1 if s1 < 0 else utf8(s1, payload[cut:], None, 0, True)
        m1 = utf8(0, masked[:cut], key, phase, False)
        m2 = m1 if m1 < 0 else utf8(m1, masked[cut:], key, ph2, True)
        results += [(s1, s2), (m1, m2)]
    for fused in (native._c_ws_mask_utf8_into, py.mask_utf8_into):
        out = bytearray(n)
        f1 = fused(0, out, 0, masked[:cut], key, OKEY, phase, False)
        f2 = f1 if f1 < 0 else fused(f1, out, cut, masked[cut:], key, OKEY, ph2, True)
        results.append((f1, f2))
        if f2 == 0:
            assert bytes(out) == py.mask(masked, OKEY, phase)
    assert len(set(results)) == 1, results
    try:
        payload.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    assert (results[0][1] == 0) == valid, (results, valid)


def main() -> None:
    if not native.enabled:
        sys.exit("atheris_ws: the C extension is not built")
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
