"""Coverage-guided fuzzing of the backend request-head writer from Python (atheris).

Same input layout as fuzz_forward.c (2 bytes capacity, 1 byte flags: bit 0 keep_xfcc,
bit 1 an xfcc, bit 2 an authority, bit 3 version "1.0"; 1 byte field count (bit 0 set:
count = byte >> 1, else the NULs' count says it), 8 bytes id_next, 7 field lengths, the
fields, then the NUL-joined name/value list).  The C writer (native.h1_forward) and the
twin (_purepy/http1_forward.forward_head) agree: the same head and outputs, or the same
error, at the given capacity.  A field count that does not match the NULs is the caller's
bug; both must still answer the same (in bounds, for C).

Run (a corpus folder is optional; libFuzzer writes new inputs into the first one given):
    python native/fuzz/atheris_forward.py -max_total_time=60 /tmp/corpus native/fuzz/corpus_forward
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from apigw_core import native


def one_input(data: bytes) -> None:
    if len(data) < 19:
        return
    cap = min(int.from_bytes(data[:2], "little"), native.H1F_CAP)
    flags, count = data[2], data[3]
    nid = int.from_bytes(data[4:12], "little")
    parts, p = [], 19
    for n in data[12:19]:
        parts.append(data[p:p + n])
        p += n
    method, target, ip, scheme, backend, prefix, extra = parts
    fields = data[p:]
    if count & 1:
        num = count >> 1
    else:
        num = (fields.count(b"\0") + 1) // 2 if fields else 0
    if num and fields.count(b"\0") != 2 * num - 1:
        return    # the twin splits on NULs: a mismatched count is not its input
    authority = extra if flags & 4 else None
    xfcc = extra if flags & 2 else None
    version = b"1.0" if flags & 8 else b"1.1"
    keep = flags & 1
    want = native.py_forward_head(method, target, fields, num, ip, scheme, backend, authority,
                                  version, prefix, nid, bool(keep), xfcc, cap)
    buf, _, out = native.forward_buffers()
    NULL = native.NULL
    n = native.h1_forward(buf, cap, method, len(method), target, len(target), fields,
                          len(fields), num, ip, len(ip), scheme, len(scheme), backend,
                          len(backend), NULL if authority is None else authority,
                          len(authority or b""), version, len(version), prefix, len(prefix),
                          nid, keep, NULL if xfcc is None else xfcc, len(xfcc or b""), out)
    if n < 0:
        assert n == want, (n, want)
    else:
        got = (native.unpack(buf, n), out[0], out[1], out[2], out[3])
        assert got == want, (got, want)


if __name__ == "__main__":
    if not native.enabled:
        sys.exit("atheris_forward: the C extension is not built (python setup.py build_ext --inplace)")
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
