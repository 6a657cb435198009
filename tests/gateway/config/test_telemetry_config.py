"""The `telemetry:` section: defaults, what it builds, and every mistake reported at the
path of the bad field (`telemetry.access-log.statuses[1]`), `otel` refused as not yet
supported rather than ignored; and a change to it is restart-only on reload."""

from __future__ import annotations

import dataclasses

import pytest

from apigw_core.gateway.config import ConfigError, parse_config
from apigw_core.gateway.config._telemetry import AccessLogConfig, MetricsConfig
from apigw_core.runtime.reload import restart_only_changes

BASE = {"listeners": [{"bind": "127.0.0.1:0"}]}


def test_defaults():
    t = parse_config(BASE).telemetry
    assert t.metrics == MetricsConfig(enabled=True, max_dimension_values=100)
    assert t.access_log is None


def test_built():
    t = parse_config({**BASE, "telemetry": {
        "metrics": {"enabled": False, "max-dimension-values": 5},
        "access-log": {"path": "-", "sample": 0.25, "statuses": ["400-499", 503, "500"],
                       "buffer": 10}}}).telemetry
    assert t.metrics == MetricsConfig(enabled=False, max_dimension_values=5)
    assert t.access_log == AccessLogConfig(path="-", sample=0.25,
                                           statuses=((400, 499), (503, 503), (500, 500)),
                                           buffer=10)


@pytest.mark.parametrize("section, error", [
    ({"access-log": {"statuses": ["200", "abc"]}},
     "telemetry.access-log.statuses[1]: expected a status or a range of statuses"),
    ({"access-log": {"statuses": ["599-400"]}}, "telemetry.access-log.statuses[0]: empty range"),
    ({"access-log": {"statuses": ["600"]}}, "telemetry.access-log.statuses[0]: expected"),
    ({"access-log": {"sample": 1.5}}, "telemetry.access-log.sample: "),
    ({"access-log": {"path": ""}}, "telemetry.access-log.path: "),
    ({"access-log": {"buffer": 0}}, "telemetry.access-log.buffer: "),
    ({"access-log": {"file": "x"}}, "telemetry.access-log.file: unknown key"),
    ({"metrics": {"enabled": "yes"}}, "telemetry.metrics.enabled: "),
    ({"metrics": {"max-dimension-values": 0}}, "telemetry.metrics.max-dimension-values: "),
    ({"otel": {"endpoint": "ftp://x"}}, "telemetry.otel.endpoint: expected an http:// or https:// URL"),
    ({"tracing": {}}, "telemetry.tracing: unknown key"),
])
def test_errors_name_their_path(section, error):
    with pytest.raises(ConfigError) as e:
        parse_config({**BASE, "telemetry": section})
    assert len(e.value.errors) == 1 and e.value.errors[0].startswith(error), e.value.errors


def test_restart_only():
    a = parse_config(BASE)
    b = dataclasses.replace(a, telemetry=parse_config(
        {**BASE, "telemetry": {"access-log": {"path": "-"}}}).telemetry)
    assert restart_only_changes(a, b) == ["telemetry: changed; restart the gateway to apply"]
