"""Metrics of the gateway's state: breakers, health, pools, rate-limit decisions, stores.

Strategy.  Nothing here runs per request.  Breaker and health state, breaker trips,
health-check results and Redis client failures are plain attributes the owning features
keep anyway (gateway/backends/{breaker,health}.py, runtime/redis.py); they are read at
flush time (`Metrics.add_gauges` / `add_totals`, every half second and before a scrape)
from the state current then, so a reload is followed.  The counters the request path
feeds (rate-limit decisions, store failures, retries) are declared here and bumped with
`Metrics.count`: one dict update, and only by requests that reach a limit or a retry.

Labels are bounded: backend and pool names (the config's), policy names, API names,
fixed enumerations.  Never a subscription id, a counter key or a path.

Exported (with `--workers N`, each worker keeps its own breakers and health verdicts):

- `apigw_backend_circuit_breaker_state{backend, state}`: enum style, one series per
  state (closed, open, half-open), 1 for the breaker's state, else 0 (the shape
  prometheus-client's Enum and OpenMetrics' StateSet give; alert on
  `{state="open"} == 1`).  Multiprocess mode `livemax`: a state is 1 when any live
  worker's breaker is in it.
- `apigw_backend_circuit_breaker_trips_total{backend}`: closed or half-open -> open,
  summed over workers.
- `apigw_backend_healthy{backend}`: 1 when the backend (a pool member, or a backend with
  a health check or breaker) is healthy (its active checks pass and it is not ejected),
  else 0 (what /backends shows; the breaker is its own family);
  `livemin`: 0 as soon as one live worker sees it down.
- `apigw_backend_pool_members_available{backend}`: a pool's members that take requests
  now (healthy and breaker not open; `livemin`).
- `apigw_backend_health_checks_total{backend, result}`: active probes, passed | failed.
- `apigw_rate_limit_decisions_total{policy, api, decision}`: one per counter a limit
  policy checked (a policy with two limits makes two), decision allowed | limited.
- `apigw_rate_limit_store_failures_total{store, on_failure}`: decisions a counter store
  could not make, by store name and the mode that then decided (allow, deny, local;
  `settle`: a correction after the request that was lost).
- `apigw_redis_client_failures_total{store}`: failed Redis calls of that store's client.
- `apigw_retries_total{backend, result}`: retry attempts, retried | refused (no budget,
  a body that cannot be replayed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from ..gateway.backends.breaker import CLOSED, HALF_OPEN, OPEN

if TYPE_CHECKING:
    from .gateway import Gateway
    from .metrics import Metrics

__all__ = ["declare", "register", "count_decision", "count_store_failure", "count_retry",
           "BREAKER_STATES", "POLICY_LABELS"]

BREAKER_STATES = (CLOSED, OPEN, HALF_OPEN)
# the rate-limit policies by the first part of their counter keys; old names as new
POLICY_LABELS = {"rate-limit": "rate-limit", "rate-limit-by-key": "rate-limit-by-key",
                 "quota": "quota", "quota-by-key": "quota-by-key",
                 "llm-token-limit": "llm-token-limit",
                 "azure-openai-token-limit": "llm-token-limit"}


def _now() -> float:
    try:
        return trio.current_time()
    except RuntimeError:      # flushed outside trio (tests, shutdown paths)
        return float("-inf")  # no open breaker looks expired, no ejection looks over


def _breakers(gw: "Gateway") -> dict:
    now = _now()
    out: dict = {}
    for name, live in gw.state.lives.items():
        b = live.breaker
        if b is None:
            continue
        st = b.state_at(now) if now != float("-inf") else b.state
        for s in BREAKER_STATES:
            out[(name, s)] = 1 if s == st else 0
    return out


def _healthy(gw: "Gateway") -> dict:
    now = _now()
    return {(name,): 1 if (live.health.healthy and live.health.ejected_until is None
                           if now == float("-inf") else live.health.up(now)) else 0
            for name, live in gw.state.lives.items()}


def _up(live: Any, now: float) -> bool:
    h, b = live.health, live.breaker
    if now == float("-inf"):
        return h.healthy and h.ejected_until is None and (b is None or b.state != OPEN)
    return live.available(now, True)


def _members(gw: "Gateway") -> dict:
    now = _now()
    out: dict = {}
    for name, b in gw.state.config.backends.items():
        if b.pool:
            out[(name,)] = sum(1 for m in b.pool
                               if m.backend in gw.state.lives
                               and _up(gw.state.lives[m.backend], now))
    return out


def _trips(gw: "Gateway") -> dict:
    return {(name,): live.breaker.trips for name, live in gw.state.lives.items()
            if live.breaker is not None}


def _checks(gw: "Gateway") -> dict:
    out: dict = {}
    for name, live in gw.state.lives.items():
        h = live.health
        if h.cfg is not None:
            out[(name, "passed")] = h.checks_passed
            out[(name, "failed")] = h.checks_failed
    return out


def _redis(gw: "Gateway") -> dict:
    out: dict = {}
    for name, store in gw.state.stores.items():
        client = getattr(store, "client", None)
        failures = getattr(client, "failures", None)
        if isinstance(failures, int):
            out[(name,)] = failures
    return out


def declare(m: "Metrics") -> None:
    """The counters the request path bumps (Telemetry declares them with its own)."""
    m.counter("apigw_rate_limit_decisions", "Rate-limit and quota decisions, one per "
              "counter checked.", ("policy", "api", "decision"))
    m.counter("apigw_rate_limit_store_failures", "Decisions a counter store could not "
              "make, by store and the on-store-failure mode that decided instead.",
              ("store", "on_failure"))
    m.counter("apigw_retries", "Retry attempts, retried or refused.", ("backend", "result"))


def register(gw: "Gateway", m: "Metrics") -> None:
    """The families read from the gateway's state at flush time."""
    m.add_gauges("apigw_backend_circuit_breaker_state",
                 "Circuit breaker state per backend: 1 for the current state, else 0.",
                 ("backend", "state"), lambda: _breakers(gw), mode="livemax")
    m.add_totals("apigw_backend_circuit_breaker_trips", "Circuit breaker trips (to open).",
                 ("backend",), lambda: _trips(gw))
    m.add_gauges("apigw_backend_healthy", "1 when the backend is healthy (health checks "
                 "pass, not ejected), else 0.", ("backend",),
                 lambda: _healthy(gw), mode="livemin")
    m.add_gauges("apigw_backend_pool_members_available",
                 "Members of a backend pool that take requests now.", ("backend",),
                 lambda: _members(gw), mode="livemin")
    m.add_totals("apigw_backend_health_checks", "Active health-check probes, by result.",
                 ("backend", "result"), lambda: _checks(gw))
    m.add_totals("apigw_redis_client_failures", "Failed Redis calls, by store.",
                 ("store",), lambda: _redis(gw))


def _metrics(call: Any) -> Any:
    tel = getattr(call.gw, "telemetry", None)
    return getattr(tel, "metrics", None)


def count_decision(call: Any, key: str, allowed: bool) -> None:
    """A limit command's outcome; its policy is its counter key's first part."""
    m = _metrics(call)
    if m is None:
        return
    policy = POLICY_LABELS.get(key.partition("|")[0], "other")
    api = getattr(call.ctx, "api", None)
    m.count("apigw_rate_limit_decisions",
            (policy, api.name if api is not None else "", "allowed" if allowed else "limited"))


def count_store_failure(call: Any, store: str, mode: str) -> None:
    m = _metrics(call)
    if m is not None:
        m.count("apigw_rate_limit_store_failures", (store, mode))


def count_retry(call: Any, backend: str, retried: bool) -> None:
    m = _metrics(call)
    if m is not None:
        m.count("apigw_retries", (backend, "retried" if retried else "refused"))
