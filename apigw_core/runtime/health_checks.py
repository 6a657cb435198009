"""Active health checks (one trio task per backend that has one) and `GET /backends`.

Strategy.  A check is a `GET {path}` on the backend's own upstream pool (its connection
settings, TLS and HTTP version; a kept-alive connection is reused, as Envoy's checks do),
answered within `timeout` by a status in `expected-statuses`; the verdict goes to the
backend's `Health` (gateway/backends/health.py), which applies the thresholds.  The
first check runs at once, then one every `interval`.  The tasks live in the gateway's
connection nursery, started by `GatewayState.start`: a reload keeps the task of an
unchanged backend and cancels those of removed or changed ones.

`/backends` (admin listener) shows every backend's state from the plain attributes of
its `Live` (runtime/balance.py), pool members under their pool:
`{"backends": {"a": {"healthy": true, "breaker": "closed", "reason": null,
"last-failure": null, "in-flight": 0, "connections": 1}, "p": {"healthy": true,
"pool": {"a": {..., "weight": 3, "priority": 1}}}}}`.  A backend with no breaker shows
"closed" (it never opens).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterable

import trio

from ..gateway.backends import CLOSED, in_ranges
from ..protocol import EndOfMessage, ProtocolError, Request, Response
from .transport import TransportClosed, TransportTimeout
from .upstream import UpstreamError

if TYPE_CHECKING:
    from .balance import Live
    from .gateway import Gateway
    from .stream import HTTPStream

__all__ = ["start_health_checks", "check_once", "backends_document", "admin_backends"]

log = logging.getLogger("apigw_core.runtime")

_USER_AGENT = b"apigw-health-check"


def start_health_checks(nursery: Any, lives: Iterable["Live"], dropped: Iterable["Live"]) -> None:
    for live in dropped:
        if live.scope is not None:
            live.scope.cancel()
            live.scope = None
    for live in lives:
        if live.config.health_check is not None and live.scope is None:
            live.scope = trio.CancelScope()
            nursery.start_soon(_run, live)


async def _run(live: "Live") -> None:
    cfg = live.config.health_check
    assert cfg is not None and live.scope is not None
    with live.scope:
        while True:
            ok, detail = await check_once(live)
            was = live.health.healthy
            live.checked(ok, detail)
            if was != live.health.healthy:
                log.warning("backend %s is %s: %s", live.name,
                            "healthy again" if live.health.healthy else "unhealthy",
                            live.health.reason or detail)
            await trio.sleep(cfg.interval)


async def check_once(live: "Live") -> tuple[bool, str]:
    """One check: (passed, what happened)."""
    cfg = live.config.health_check
    assert cfg is not None
    request = Request(1, b"GET", cfg.path.encode("ascii"),
                      [(b"host", live.authority), (b"user-agent", _USER_AGENT)])
    status = None
    with trio.move_on_after(cfg.timeout):
        ex = None
        ok = False
        try:
            ex = await live.pool.open(request)
            ex.send_end(())
            await ex.flush(cfg.timeout)
            while True:
                for ev in await ex.receive(cfg.timeout):
                    if ev.__class__ is Response:
                        status = ev.status_code
                    elif ev.__class__ is EndOfMessage:
                        ok = True
                        break
                else:
                    continue
                break
        except UpstreamError as e:
            return False, str(e)
        except (TransportClosed, TransportTimeout, ProtocolError) as e:
            return False, f"{type(e).__name__}: {e}"
        finally:
            if ex is not None:
                ex.release(ok)
        if status is None:
            return False, "no answer"
        if in_ranges(status, cfg.expected_statuses):
            return True, f"status {status}"
        return False, f"status {status}"
    return False, f"no answer within {cfg.timeout:g}s"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds")


def _live_doc(live: "Live", now: float) -> dict:
    b, h = live.breaker, live.health
    breaker = b.state_at(now) if b is not None else CLOSED
    reason = b.reason if b is not None and breaker != CLOSED else h.reason
    lf = live.last_failure
    return {"healthy": h.up(now), "breaker": breaker, "reason": reason,
            "last-failure": {"at": _iso(lf[0]), "error": lf[1]} if lf else None,
            "in-flight": live.in_flight, "connections": live.connections}


def _plain_doc(pool: Any) -> dict:
    h1 = getattr(pool, "h1", None)
    if h1 is None:
        busy, conns = pool.open_connections - pool.idle_connections, pool.open_connections
    else:
        busy = sum(len(up.streams) for up in pool.conns) + h1.open_connections - h1.idle_connections
        conns = len(pool.conns) + h1.open_connections
    return {"healthy": True, "breaker": CLOSED, "reason": None, "last-failure": None,
            "in-flight": busy, "connections": conns}


def backends_document(state: Any) -> dict:
    now = trio.current_time()
    out: dict[str, Any] = {}
    for name, b in state.config.backends.items():
        if b.pool:
            members = {}
            for m in b.pool:
                doc = _live_doc(state.lives[m.backend], now)
                doc.update(weight=m.weight, priority=m.priority)
                members[m.backend] = doc
            out[name] = {"healthy": any(state.lives[m.backend].available(now, True)
                                        for m in b.pool),
                         "in-flight": sum(d["in-flight"] for d in members.values()),
                         "connections": sum(d["connections"] for d in members.values()),
                         "pool": members}
        elif name in state.lives:
            out[name] = _live_doc(state.lives[name], now)
        else:
            out[name] = _plain_doc(state.pools[name])
    return {"backends": out}


async def admin_backends(gw: "Gateway", stream: "HTTPStream") -> None:
    body = json.dumps(backends_document(gw.state), indent=2).encode() + b"\n"
    await stream.reply(200, [(b"content-type", b"application/json"),
                             (b"content-length", b"%d" % len(body)),
                             (b"cache-control", b"no-store")], body)
