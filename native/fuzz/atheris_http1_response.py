"""Coverage-guided fuzzing of the HTTP/1.1 backend side from Python (atheris = libFuzzer).

Two invariants, for any input:
  1. the C response-head parser and its pure-Python twin give the same answer, at offset 0
     and at offset 1, under small limits;
  2. ``ClientConnection.receive_data`` after a GET, fed the input in arbitrary pieces,
     returns events or raises ``ProtocolError`` -- never any other exception.

    python native/fuzz/atheris_http1_response.py -max_total_time=60 /tmp/corpus \
        native/fuzz/corpus_response
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from apigw_core import native
    from apigw_core.protocol import ProtocolError
    from apigw_core.protocol.events import Request, _new_eom
    from apigw_core.protocol.http1._client import ClientConnection

_C = native.CResponseParser(512, 8) if native.CResponseParser else None
_PY = native.PyResponseParser(512, 8)
_REQ = Request(1, b"GET", b"/", [(b"host", b"h")])


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    cuts = [fdp.ConsumeIntInRange(1, 64) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    payload = fdp.ConsumeBytes(fdp.remaining_bytes())
    if _C is not None:
        for pos in (0, 1):
            c, py = _C.parse(payload, pos), _PY.parse(payload, pos)
            if c != py:
                raise AssertionError(f"C {c!r} != twin {py!r} for {payload!r} at {pos}")
    conn = ClientConnection(max_head=512, max_fields=8)
    conn.send(_REQ)
    conn.send(_new_eom(1))
    pos = 0
    try:
        for n in cuts + [len(payload)]:  # never b"" before the end: that is EOF
            if pos < len(payload) and not conn.switched:
                conn.receive_data(payload[pos:pos + n])
            pos += n
        if not conn.switched:
            conn.receive_data(b"")
    except ProtocolError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
