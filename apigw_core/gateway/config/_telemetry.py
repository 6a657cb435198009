"""The `telemetry:` section: metrics, the access log (and, later, OpenTelemetry).

Strategy.  Its own file, so the schema model (pydantic, the file's kebab-case shape) and
the frozen dataclass the runtime reads sit together and other sections' files only gain
one field line each.  `statuses` ranges (`"400-599"`, `"404"`) are parsed here once into
(low, high) pairs, so the access log's filter is a tuple walk.  `otel` needs the optional extra
`apigw_core[otel]`: the section is refused, with the extra's name, when its SDK cannot be
found (looked up, never imported; runtime/otel.py encodes and posts OTLP itself).

```yaml
telemetry:
  metrics: {enabled: true, max-dimension-values: 100}
  access-log: {path: access.log, sample: 1.0, statuses: ["400-599"], buffer: 10000}
  otel: {endpoint: "http://127.0.0.1:4318/v1/traces", sampler: parentbased_traceidratio,
         ratio: 0.1, service-name: apigw, queue: 2048}
```
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StrictBool, WithJsonSchema

from ._values import _Invalid, _string

__all__ = ["MetricsConfig", "AccessLogConfig", "OtelConfig", "TelemetryConfig", "Telemetry", "build"]


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    enabled: bool = True                 # GET /metrics on the admin listener
    max_dimension_values: int = 100      # emit-metric: label sets per metric, then `other`


@dataclass(frozen=True, slots=True)
class AccessLogConfig:
    path: str = "-"                      # "-": stdout
    sample: float = 1.0                  # the share of requests logged
    statuses: tuple[tuple[int, int], ...] = ()   # () every status, else these ranges
    buffer: int = 10000                  # lines held for the writer; beyond: dropped, counted


@dataclass(frozen=True, slots=True)
class OtelConfig:
    endpoint: str                        # the OTLP/HTTP traces URL (".../v1/traces")
    sampler: str = "parentbased_traceidratio"
    ratio: float = 1.0                   # the *traceidratio samplers' share of new traces
    service_name: str = "apigw"
    queue: int = 2048                    # requests (their spans) held; beyond: dropped, counted


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    metrics: MetricsConfig = MetricsConfig()
    access_log: Optional[AccessLogConfig] = None
    otel: Optional[OtelConfig] = None


_RANGE = re.compile(r"^\s*([1-5]\d\d)\s*(?:-\s*([1-5]\d\d)\s*)?$")


def _status_range(v: object) -> tuple[int, int]:
    if isinstance(v, int) and not isinstance(v, bool):
        v = str(v)
    m = _RANGE.match(_string(v))
    if m is None:
        raise _Invalid(f"expected a status or a range of statuses (\"400-599\"), got {v!r}")
    lo = int(m.group(1))
    hi = int(m.group(2) or lo)
    if hi < lo:
        raise _Invalid(f"empty range {v!r}")
    return lo, hi


StatusRange = Annotated[tuple[int, int], PlainValidator(_status_range), WithJsonSchema(
    {"anyOf": [{"type": "integer", "minimum": 100, "maximum": 599},
               {"type": "string", "pattern": r"^[1-5]\d\d(-[1-5]\d\d)?$"}]})]


SAMPLERS = ("always_on", "always_off", "traceidratio", "parentbased_always_on",
            "parentbased_always_off", "parentbased_traceidratio")
OTEL_EXTRA = "apigw_core[otel]"


def otel_installed() -> bool:
    """Whether the SDK and the OTLP/HTTP exporter can be imported (found, not imported)."""
    try:
        return all(importlib.util.find_spec(m) is not None for m in (
            "opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http"))
    except (ImportError, ValueError, AttributeError):   # a broken or blocked install
        return False


class _Section(BaseModel):   # _schema's base (not imported: _schema imports this file)
    model_config = ConfigDict(extra="forbid", alias_generator=lambda s: s.replace("_", "-"),
                              use_attribute_docstrings=True)


class Metrics(_Section):
    enabled: StrictBool = True
    max_dimension_values: Annotated[int, Field(strict=True, ge=1, le=10000)] = 100
    """emit-metric: distinct dimension sets per metric; beyond them the value `other`"""


class AccessLog(_Section):
    path: Annotated[str, Field(strict=True, min_length=1)] = "-"
    """a file (appended to), or "-" for stdout"""
    sample: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    statuses: list[StatusRange] = []
    """only these statuses ("400-599", 404); none: every request"""
    buffer: Annotated[int, Field(strict=True, ge=1, le=1_000_000)] = 10000


def _endpoint(v: object) -> str:
    s = _string(v)
    if not re.match(r"^https?://[^/\s]+", s):
        raise _Invalid(f"expected an http:// or https:// URL, got {s!r}")
    return s


class Otel(_Section):
    endpoint: Annotated[str, PlainValidator(_endpoint), WithJsonSchema(
        {"type": "string", "pattern": "^https?://"})]
    """the OTLP/HTTP traces URL, e.g. http://127.0.0.1:4318/v1/traces"""
    sampler: Literal[SAMPLERS] = "parentbased_traceidratio"   # type: ignore[valid-type]
    ratio: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    """the share of new traces sampled (the *traceidratio samplers)"""
    service_name: Annotated[str, Field(strict=True, min_length=1)] = "apigw"
    queue: Annotated[int, Field(strict=True, ge=1, le=1_000_000)] = 2048
    """finished spans held for the exporter thread; beyond: dropped and counted"""


def _otel(v: object) -> Optional[Otel]:
    if v is None:
        return None
    if not otel_installed():
        raise _Invalid(f"OpenTelemetry needs the optional extra {OTEL_EXTRA} "
                       f"(pip install '{OTEL_EXTRA}'), which is not installed")
    return Otel.model_validate(v)


class Telemetry(_Section):
    metrics: Metrics = Field(default_factory=Metrics)
    access_log: Optional[AccessLog] = None
    otel: Annotated[Optional[Otel], PlainValidator(_otel),
                    WithJsonSchema(Otel.model_json_schema())] = None
    """OpenTelemetry traces: OTLP/HTTP export (needs the extra apigw_core[otel])"""


def build(t: Optional[Any]) -> TelemetryConfig:
    """The validated section (None: not written) as the runtime's dataclass."""
    if t is None:
        return TelemetryConfig()
    m = MetricsConfig(enabled=t.metrics.enabled,
                      max_dimension_values=t.metrics.max_dimension_values)
    log = None
    if t.access_log is not None:
        a = t.access_log
        log = AccessLogConfig(path=a.path, sample=float(a.sample),
                              statuses=tuple(a.statuses), buffer=a.buffer)
    otel = None
    if t.otel is not None:
        o = t.otel
        otel = OtelConfig(endpoint=o.endpoint, sampler=o.sampler, ratio=float(o.ratio),
                          service_name=o.service_name, queue=o.queue)
    return TelemetryConfig(metrics=m, access_log=log, otel=otel)
