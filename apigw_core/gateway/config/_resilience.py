"""Config of backends that fail well: pools, circuit breakers, health checks.

Strategy.  The file's shape (pydantic models, kebab-case keys, as `_schema.py`) and the
runtime's shape (frozen dataclasses, as `_model.py`) of the four backend keys this module
adds, side by side, with the converters between them:

    backends:
      orders-a: {url: ..., circuit-breaker: {failure-condition: {count: 5, interval: 10s,
                 status-code-ranges: ["500-599"], error-reasons: [Timeout]},
                 trip-duration: 30s, accept-retry-after: true},
                 health-check: {path: /healthz, interval: 5s}}
      orders: {pool: [{backend: orders-a, weight: 3, priority: 1}, {backend: orders-b}],
               session-affinity: {cookie: orders-member}}

A pool is a backend with `pool` instead of `url` (APIM's Pool type): it names single
backends, never another pool (APIM pools do not nest, so no cycle can form), and has no
connection settings of its own (its members have).  What spans backends (a member that
does not exist or is a pool) is checked by `_checks.py`; the rest here.  A failure
condition with neither `status-code-ranges` nor `error-reasons` counts 5xx answers and
both error reasons; one written alone is the whole rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Optional

from pydantic import (BaseModel, ConfigDict, Field, PlainValidator, StrictBool,
                      WithJsonSchema, model_validator)

from ._values import DURATION_PATTERN, TOKEN_PATTERN, _Invalid, _kind, _positive_duration, _token

__all__ = ["PoolMemberConfig", "CircuitBreakerConfig", "HealthCheckConfig", "ERROR_REASONS",
           "PoolMember", "SessionAffinity", "CircuitBreaker", "HealthCheck", "build_pool",
           "build_breaker", "build_health", "MAX_POOL_MEMBERS"]

# The error reasons a breaker can count (APIM's, as last-error.reason spells them).
ERROR_REASONS = ("BackendConnectionFailure", "Timeout")
MAX_POOL_MEMBERS = 30          # APIM's limit


# --- the runtime's shape --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PoolMemberConfig:
    backend: str
    weight: int = 1
    priority: int = 1              # lower is used first


@dataclass(frozen=True, slots=True)
class CircuitBreakerConfig:
    interval: float
    trip_duration: float
    count: Optional[int] = None           # exactly one of count, percentage
    percentage: Optional[int] = None
    status_code_ranges: tuple[tuple[int, int], ...] = ((500, 599),)
    error_reasons: tuple[str, ...] = ERROR_REASONS
    accept_retry_after: bool = False


@dataclass(frozen=True, slots=True)
class HealthCheckConfig:
    path: str
    interval: float = 5.0                 # Envoy/nginx-style active checks
    timeout: float = 1.0
    healthy_threshold: int = 2
    unhealthy_threshold: int = 3
    expected_statuses: tuple[tuple[int, int], ...] = ((200, 299),)


# --- the file's shape -----------------------------------------------------------------------

class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=lambda s: s.replace("_", "-"),
                              use_attribute_docstrings=True)


_RANGE_RE = re.compile(r"\s*(\d{3})\s*(?:-\s*(\d{3})\s*)?")


def _status_range(v: object) -> tuple[int, int]:
    if type(v) is int:
        lo = hi = v
    elif isinstance(v, str) and (m := _RANGE_RE.fullmatch(v)):
        lo, hi = int(m[1]), int(m[2] or m[1])
    else:
        got = repr(v) if isinstance(v, str) else _kind(v)
        raise _Invalid(f"expected a status code or range such as 500 or '500-599', got {got}")
    if not (100 <= lo <= 599 and 100 <= hi <= 599):
        raise _Invalid(f"status codes are 100..599, got {v!r}")
    if lo > hi:
        raise _Invalid(f"empty range {v!r} (the first code is above the last)")
    return lo, hi


def _error_reason(v: object) -> str:
    if v not in ERROR_REASONS:
        got = repr(v) if isinstance(v, str) else _kind(v)
        raise _Invalid(f"expected one of {', '.join(ERROR_REASONS)}, got {got}")
    return v  # type: ignore[return-value]


def _health_path(v: object) -> str:
    if not isinstance(v, str) or not v.startswith("/") or any(c in v for c in " \r\n\t#"):
        raise _Invalid(f"expected a path starting with '/', got {v!r}")
    return v


_PositiveDuration = Annotated[float, PlainValidator(_positive_duration), WithJsonSchema(
    {"anyOf": [{"type": "number", "exclusiveMinimum": 0},
               {"type": "string", "pattern": DURATION_PATTERN}]})]
_StatusRange = Annotated[tuple[int, int], PlainValidator(_status_range), WithJsonSchema(
    {"anyOf": [{"type": "integer", "minimum": 100, "maximum": 599},
               {"type": "string", "pattern": r"^\s*\d{3}\s*(-\s*\d{3}\s*)?$"}]})]
_Reason = Annotated[str, PlainValidator(_error_reason), WithJsonSchema({"enum": list(ERROR_REASONS)})]
_Ranges = Annotated[list[_StatusRange], Field(min_length=1)]
_Name = Annotated[str, Field(strict=True, min_length=1)]
_Cookie = Annotated[str, PlainValidator(_token("cookie name")),
                    WithJsonSchema({"type": "string", "pattern": TOKEN_PATTERN})]
_Path = Annotated[str, PlainValidator(_health_path), WithJsonSchema({"type": "string", "pattern": "^/"})]


def _range(lo: int, hi: int) -> Any:
    return Annotated[int, Field(strict=True, ge=lo, le=hi)]


class PoolMember(_Section):
    backend: _Name
    """a single backend (pools do not nest)"""
    weight: _range(1, 1000) = 1
    """share within its priority group (smooth weighted round-robin)"""
    priority: _range(0, 1000) = 1
    """lower first; a higher number is used only when every lower one is unavailable"""


class SessionAffinity(_Section):
    cookie: _Cookie
    """the cookie that pins a client to the member that served it"""


class FailureCondition(_Section):
    count: Optional[int] = Field(None, strict=True, ge=1, le=1_000_000)
    percentage: Optional[int] = Field(None, strict=True, ge=1, le=100)
    interval: _PositiveDuration
    status_code_ranges: Optional[_Ranges] = None
    """e.g. ["500-599", 429]; default 500-599 when error-reasons is not written either"""
    error_reasons: Optional[Annotated[list[_Reason], Field(min_length=1)]] = None

    @model_validator(mode="after")
    def _one_rule(self) -> FailureCondition:
        if (self.count is None) == (self.percentage is None):
            raise _Invalid("expected exactly one of count, percentage")
        return self


class CircuitBreaker(_Section):
    failure_condition: FailureCondition
    trip_duration: _PositiveDuration
    """how long the breaker stays open before one trial request"""
    accept_retry_after: StrictBool = False
    """the tripping answer's Retry-After replaces trip-duration"""


class HealthCheck(_Section):
    path: _Path
    interval: _PositiveDuration = 5.0
    timeout: _PositiveDuration = 1.0
    healthy_threshold: _range(1, 1000) = 2
    unhealthy_threshold: _range(1, 1000) = 3
    expected_statuses: _Ranges = [(200, 299)]


PoolMembers = Annotated[list[PoolMember], Field(min_length=1, max_length=MAX_POOL_MEMBERS)]


def check_pool(members: list[PoolMember]) -> None:
    """A pool's own checks (not its references): each member once."""
    seen: dict[str, int] = {}
    for i, mem in enumerate(members):
        if mem.backend in seen:
            raise _Invalid(f"backend {mem.backend!r} is listed twice (also pool[{seen[mem.backend]}])",
                           at=("pool", i, "backend"))
        seen[mem.backend] = i


# --- file -> runtime ------------------------------------------------------------------------

def build_pool(members: Optional[list[PoolMember]]) -> tuple[PoolMemberConfig, ...]:
    return tuple(PoolMemberConfig(m.backend, m.weight, m.priority) for m in members or ())


def build_breaker(cb: Optional[CircuitBreaker]) -> Optional[CircuitBreakerConfig]:
    if cb is None:
        return None
    fc = cb.failure_condition
    ranges, reasons = fc.status_code_ranges, fc.error_reasons
    if ranges is None and reasons is None:
        ranges, reasons = [(500, 599)], list(ERROR_REASONS)
    return CircuitBreakerConfig(
        interval=fc.interval, trip_duration=cb.trip_duration, count=fc.count,
        percentage=fc.percentage, status_code_ranges=tuple(ranges or ()),
        error_reasons=tuple(reasons or ()), accept_retry_after=cb.accept_retry_after)


def build_health(hc: Optional[HealthCheck]) -> Optional[HealthCheckConfig]:
    if hc is None:
        return None
    return HealthCheckConfig(hc.path, hc.interval, hc.timeout, hc.healthy_threshold,
                             hc.unhealthy_threshold, tuple(hc.expected_statuses))
