"""Coverage-guided fuzzing of the access-log lines from Python (atheris).

Same input layout as fuzz_accesslog.c (2 bytes buffer capacity, 8 field lengths, 3
doubles, then the fields).  The fields become one entry (bytes where the wire gives
bytes, UTF-8-decoded text with surrogates escaped where config gives str); the C lines
(AccessLog.log with that capacity) and the twin (format_entry) write the same bytes,
and every line is JSON.

Run (a corpus folder is optional; libFuzzer writes new inputs into the first one given):
    python native/fuzz/atheris_accesslog.py -max_total_time=60 /tmp/corpus \
        native/fuzz/corpus_accesslog
"""

from __future__ import annotations

import json
import os
import struct
import sys
import tempfile

import atheris

with atheris.instrument_imports():
    from apigw_core.protocol.events import Request
    from apigw_core.runtime.accesslog import AccessLog

_DIR = tempfile.mkdtemp(prefix="atheris-accesslog-")


def _written(batch: list, use_c: bool, cap: int) -> bytes:
    path = os.path.join(_DIR, "c.log" if use_c else "py.log")
    if os.path.exists(path):
        os.unlink(path)
    log = AccessLog(path, 100, key_names=(b"subscription-key",))
    log.use_c, log.cap = use_c, cap
    log.open()
    for e in batch:
        log.log(*e)
    log.close()
    with open(path, "rb") as f:
        return f.read()


def one_input(data: bytes) -> None:
    if len(data) < 34:
        return
    cap = max(64, int.from_bytes(data[:2], "little"))
    # (NaN is None; a request's durations are below a day, so the time stays a time)
    total, bdur, cdur = (None if d != d or abs(d) > 1e5 else d
                         for d in struct.unpack("<3d", data[10:34]))
    fields, p = [], 34
    for n in data[2:10]:
        fields.append(data[p:p + n])
        p += n
    rid, ip, method, host, path, sub, message, ua = fields
    text = [f.decode("utf-8", "surrogateescape") for f in (ip, sub, message)]
    req = Request(1, method, b"/" + path, [(b"host", host), (b"user-agent", ua)])
    entry = (1.7e9, 0.001 if total is None else total, bdur, cdur, rid,
             b"0af7651916cd43dd8448eb211c80319c", text[0], req, 200, len(path), 2, "api",
             "", "", text[1], "backend", None, 1, "", text[2], None)
    c = _written([entry, entry], True, cap)   # (the second line's tail from the cache)
    assert c == _written([entry, entry], False, cap)
    for line in c.split(b"\n")[:-1]:
        json.loads(line)


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
