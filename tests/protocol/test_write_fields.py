"""write_fields validates a whole header block in two regex scans; it must accept exactly
what the per-field rules accept (token names, field-values without CTLs), and write it."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings, strategies as st

from apigw_core.protocol import UsageError
from apigw_core.protocol.http1._body import FIELD_VALUE_RE, TOKEN_RE, write_fields

# bytes that matter: token chars, separators, SP/HTAB, CR, LF, NUL, DEL, obs-text
_ALPHABET = st.sampled_from(list(b"aZ09-!~ :\t\r\n\x00\x7f\x80\xff\",;"))
_BYTES = st.lists(_ALPHABET, max_size=8).map(bytes)


def _per_field_ok(headers) -> bool:
    return all(TOKEN_RE.fullmatch(n) and FIELD_VALUE_RE.fullmatch(v) for n, v in headers)


@settings(max_examples=int(os.environ.get("APIGW_TWIN_EXAMPLES", "1000")))
@given(st.lists(st.tuples(_BYTES, _BYTES), max_size=5))
def test_block_check_equals_per_field_rules(headers):
    out: list[bytes] = []
    if _per_field_ok(headers):
        write_fields(headers, out)
        assert b"".join(out) == b"".join(n + b": " + v + b"\r\n" for n, v in headers)
    else:
        with pytest.raises(UsageError):
            write_fields(headers, out)
        assert out == []


@pytest.mark.parametrize("headers", [
    [(b"a", b"ok"), (b"b", b"x\r\nInjected: 1")],   # response splitting via a value
    [(b"a: b", b"c")],                              # a name that would read as name+value
    [(b"a\r\nb", b"c")],
    [(b"a", b"trailing ")],
])
def test_injection_refused(headers):
    with pytest.raises(UsageError):
        write_fields(headers, [])
