"""Run runtime/otel.py's exporter with the C span writer or with its pure-Python twin."""

from __future__ import annotations

import pytest

from apigw_core import native
from apigw_core.runtime import otlp

WRITERS = [pytest.param("c", marks=pytest.mark.skipif(
    not native.enabled, reason="C extension not built")), "twin"]


def writer(which: str, monkeypatch) -> None:
    """Make runtime/otel.py write spans with the C encoder or with the twin."""
    from apigw_core.runtime import otel as otel_mod
    if which == "twin":
        monkeypatch.setattr(otel_mod, "_put", otlp.span_into)
        monkeypatch.setattr(otel_mod, "_pair", otlp.pair_into)
        monkeypatch.setattr(otel_mod, "_new_buffer", bytearray)
        monkeypatch.setattr(otel_mod, "_view", lambda b, n: memoryview(b)[:n])
    else:
        monkeypatch.setattr(otel_mod, "_put", native.otlp_span)
        monkeypatch.setattr(otel_mod, "_pair", native.otlp_pair)
        monkeypatch.setattr(otel_mod, "_new_buffer", native.new_buffer)
        monkeypatch.setattr(otel_mod, "_view", native.buffer_view)
