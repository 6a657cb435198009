"""Coverage-guided fuzzing of the HTTP/1.1 server side from Python (atheris = libFuzzer).

Two invariants, for any input:
  1. the C head parser and its pure-Python twin give the same answer;
  2. ``ServerConnection.receive_data``, fed the input in arbitrary pieces, returns events
     or raises ``ProtocolError`` -- never any other exception.

Run (a corpus folder is optional; libFuzzer writes new inputs into the first one given):
    python native/fuzz/atheris_http1.py -max_total_time=60 /tmp/corpus native/fuzz/corpus
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from apigw_core import native
    from apigw_core.protocol import ProtocolError
    from apigw_core.protocol.http1 import ServerConnection

_C = native.CHeadParser(64, 512, 8) if native.CHeadParser else None
_PY = native.PyHeadParser(64, 512, 8)


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    cuts = [fdp.ConsumeIntInRange(1, 64) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    payload = fdp.ConsumeBytes(fdp.remaining_bytes())
    if _C is not None:
        c, py = _C.parse(payload), _PY.parse(payload)
        if c != py:
            raise AssertionError(f"C {c!r} != twin {py!r} for {payload!r}")
    conn = ServerConnection(max_request_line=64, max_head=512, max_fields=8)
    pos = 0
    try:
        for n in cuts + [len(payload)]:  # never b"" before the end: that is EOF
            conn.receive_data(payload[pos:pos + n])
            pos += n
        conn.receive_data(b"")
    except ProtocolError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
