"""The `telemetry.otel` section: defaults, bad fields with their paths, and the missing
extra (the SDK looked up, not imported: a hidden module makes the lookup fail)."""

from __future__ import annotations

import sys

import pytest

from apigw_core.gateway.config import ConfigError, parse_config
from apigw_core.gateway.config._telemetry import OtelConfig

BASE = {"listeners": [{"bind": "127.0.0.1:8080"}], "backends": {"b": {"url": "http://b"}},
        "apis": [{"name": "a", "path": "/a", "backend": "b"}]}
URL = "http://127.0.0.1:4318/v1/traces"


def otel(o: dict):
    return parse_config(dict(BASE, telemetry={"otel": o})).telemetry.otel


def test_defaults_and_values():
    pytest.importorskip("opentelemetry.sdk.trace")
    assert otel({"endpoint": URL}) == OtelConfig(endpoint=URL)
    assert otel({"endpoint": URL, "sampler": "always_off", "ratio": 0.25,
                 "service-name": "edge", "queue": 10}) == OtelConfig(
        endpoint=URL, sampler="always_off", ratio=0.25, service_name="edge", queue=10)
    assert parse_config(BASE).telemetry.otel is None


@pytest.mark.parametrize("o, message", [
    ({}, "telemetry.otel.endpoint: required"),
    ({"endpoint": "ftp://x"}, "telemetry.otel.endpoint: expected an http:// or https:// URL"),
    ({"endpoint": URL, "sampler": "sometimes"}, "telemetry.otel.sampler: expected one of "
     "always_on, always_off, traceidratio, parentbased_always_on"),
    ({"endpoint": URL, "ratio": 2}, "telemetry.otel.ratio:"),
    ({"endpoint": URL, "queue": 0}, "telemetry.otel.queue:"),
    ({"endpoint": URL, "rate": 1}, "telemetry.otel.rate: unknown key"),
])
def test_bad_fields(o, message):
    pytest.importorskip("opentelemetry.sdk.trace")
    with pytest.raises(ConfigError) as e:
        otel(o)
    assert message in str(e.value)


def test_missing_extra_is_an_error(monkeypatch):
    for m in ("opentelemetry", "opentelemetry.sdk.trace",
              "opentelemetry.exporter.otlp.proto.http"):
        monkeypatch.setitem(sys.modules, m, None)   # import says: not installed
    with pytest.raises(ConfigError) as e:
        otel({"endpoint": URL})
    assert "telemetry.otel: OpenTelemetry needs the optional extra apigw_core[otel]" \
        in str(e.value)
    assert parse_config(BASE).telemetry.otel is None     # no section: no check
