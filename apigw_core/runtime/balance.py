"""Pools, circuit breakers and passive health at run time: which backend a request goes to,
and what its answer says about that backend.

Strategy.  A backend that is a pool, or has a circuit breaker or a health check, is
served through a `BalancedPool` in place of its upstream pool (`GatewayState.balanced`;
`state.pool_for` and the direct path in proxy.py look there first).  It has the verbs of
an upstream pool (`backend`, `authority`, `open`), so both request paths stay as they
are:

- `open(request, tried)` picks a member (gateway/backends/balancer.py: priority groups,
  smooth weights, cookie affinity; members whose breaker is open, that fail their health
  checks or are ejected are skipped), rewrites the request's Host and base path for it,
  and opens an exchange on the member's own upstream pool.  A connection that fails
  before anything was sent (refused, unreachable, connect timeout) is counted against the
  member, ejects it (pool members only) and moves the request to the next member at once,
  as nginx's `proxy_next_upstream error`.  Nothing available: `BackendUnavailable` (503,
  gRPC UNAVAILABLE) at once, its message naming the backend and why.
- `tried` is the set of member names a request went to; a retry passes the same set
  (the executor's `call.tried`), so it goes to another member while there is one.
- the returned `MemberExchange` wraps the upstream exchange: it notes the answer's status
  (and Retry-After), or the error (Timeout, BackendConnectionFailure: a stale keep-alive
  connection that the proxy retries does not count), adds the affinity cookie, and at
  `release` reports the outcome once to the member's breaker and passive health.

`Live` is one backend's state, kept across reloads while its config is unchanged, as
plain attributes (/backends and metrics read them): breaker, health, in-flight,
connections of its pool, the last failure.  Times are trio's clock, except the epoch
that Retry-After dates and /backends need.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Optional

import trio

from ..gateway.backends import (CLOSED, HALF_OPEN, Balancer, Breaker, Health, affinity_token,
                                cookie_value, in_ranges, parse_retry_after)
from ..gateway.config import BackendConfig, GatewayConfig
from ..protocol import ConnectionClosed, ProtocolError, Request, Response, StreamReset
from ..protocol.events import _new_request
from .transport import TransportClosed, TransportTimeout
from .upstream import (BREAKER_OPEN, NO_MEMBER, UNHEALTHY, BackendUnavailable,
                       UpstreamConnectError, UpstreamTimeout)

__all__ = ["Live", "BalancedPool", "MemberExchange", "build_balanced"]

log = logging.getLogger("apigw_core.runtime")


class Live:
    """One single backend's live state (see the module docstring).  `clean`: breaker
    closed (or none), healthy, not ejected: the common case, which takes no clock reading
    and no breaker call per request; every change of state goes through this object's
    methods, which recompute it."""

    __slots__ = ("name", "config", "pool", "breaker", "health", "in_flight", "last_failure",
                 "authority", "base", "token", "scope", "member_of", "clean", "fails_on",
                 "counted", "retry_after")

    def __init__(self, config: BackendConfig, pool: Any) -> None:
        self.name = config.name
        self.config = config
        self.pool = pool
        cb = config.circuit_breaker
        self.breaker = Breaker(cb) if cb else None
        self.health = Health(config.health_check, config.ejection_time)
        self.in_flight = 0
        self.last_failure: Optional[tuple[float, str]] = None   # (epoch, what)
        self.authority: bytes = pool.authority
        self.base = config.base_path.encode("ascii")
        self.token = affinity_token(config.name).encode()
        self.scope: Optional[trio.CancelScope] = None   # its health-check task
        self.member_of: set[str] = set()                 # pools that list it
        self.clean = True
        # statuses that count as failures (without a breaker: 5xx, for last-failure only)
        ranges = cb.status_code_ranges if cb else ((500, 599),)
        self.fails_on = bytes(in_ranges(s, ranges) for s in range(600))
        self.counted = cb is not None and cb.percentage is not None  # every outcome counts
        self.retry_after = cb is not None and cb.accept_retry_after

    def available(self, now: float, passive: bool) -> bool:
        """Can it take a request?  `passive`: ejections count (pool members)."""
        if self.clean:
            return True
        b = self.breaker
        if b is not None and not b.available(now):
            return False
        h = self.health
        return h.available(now) if passive else h.healthy

    def update(self) -> None:
        b, h = self.breaker, self.health
        self.clean = ((b is None or b.state == CLOSED) and h.healthy
                      and h.ejected_until is None)

    @property
    def connections(self) -> int:
        pool = self.pool
        h1 = getattr(pool, "h1", None)
        if h1 is None:
            return pool.open_connections
        return h1.open_connections + len(pool.conns)

    def failed(self, what: str) -> None:
        self.last_failure = (time.time(), what)

    def connect_failed(self, now: float, reason: str, detail: str, trial: bool,
                       eject: bool) -> None:
        self.failed(f"{reason}: {detail}")
        if self.breaker is not None:
            self.breaker.record(now, reason=reason, trial=trial)
        if eject:
            self.health.eject(now, f"connect failed: {detail}")
        self.update()

    def checked(self, ok: bool, detail: str) -> None:
        """An active health check's verdict."""
        self.health.check_result(trio.current_time(), ok, detail)
        if not ok:
            self.failed(f"health check: {detail}")
        self.update()

    def finish(self, mx: "MemberExchange") -> None:
        """One exchange ended: its outcome, once, to the breaker and passive health."""
        self.in_flight -= 1
        status = mx.status
        if mx.error is None and status is not None and self.clean and not (
                self.fails_on[status] or mx.trial or mx.probe or self.counted):
            h = self.health      # the common case: a good answer, nothing to change
            if h.errors:
                h.errors = 0
            return
        now = trio.current_time()
        b, h = self.breaker, self.health
        if mx.error is not None:
            self.failed(f"{mx.error}: {mx.detail}")
            if b is not None:
                b.record(now, reason=mx.error, trial=mx.trial)
            if mx.passive:
                h.outcome(now, False, mx.probe, mx.error)
        elif status is not None:
            if self.fails_on[status]:
                self.failed(f"status {status}")
            if b is not None:
                b.record(now, status, retry_after=mx.retry_after, trial=mx.trial)
            if mx.passive:
                h.outcome(now, True, mx.probe)
        else:   # ended without a verdict (the client left, a deadline): free the trial
            if mx.trial and b is not None:
                b.cancel()
            if mx.probe:
                h.cancel()
        self.update()


class MemberExchange:
    """An upstream exchange that notes its outcome for its member (module docstring)."""

    __slots__ = ("ex", "live", "trial", "probe", "passive", "status", "error", "detail",
                 "retry_after", "cookie", "done", "send_data", "send_end")

    def __init__(self, ex: Any, live: Live, trial: bool, probe: bool, passive: bool,
                 cookie: Optional[bytes]) -> None:
        self.ex = ex
        self.live = live
        self.trial, self.probe, self.passive = trial, probe, passive
        self.status: Optional[int] = None
        self.error: Optional[str] = None      # APIM's reason: Timeout, BackendConnectionFailure
        self.detail = ""
        self.retry_after: Optional[float] = None
        self.cookie = cookie                  # Set-Cookie value for affinity
        self.done = False
        self.send_data = ex.send_data
        self.send_end = ex.send_end

    @property
    def reused(self) -> bool:
        return self.ex.reused

    @property
    def answered(self) -> bool:
        return self.ex.answered

    async def flush(self, timeout: float) -> None:
        try:
            await self.ex.flush(timeout)
        except (TransportClosed, TransportTimeout) as e:
            if not self.ex.reused:      # a stale keep-alive connection is retried, not blamed
                self._error("BackendConnectionFailure", f"sending the request: {e}")
            raise

    async def receive(self, timeout: float) -> list:
        ex = self.ex
        answered = ex.answered
        try:
            events = await ex.receive(timeout)
        except TransportTimeout as e:
            self._error("Timeout", str(e) or f"no answer within {timeout}s")
            raise
        except (TransportClosed, ProtocolError) as e:
            if answered or not ex.reused:
                self._error("BackendConnectionFailure", str(e) or type(e).__name__)
            raise
        if self.error is None:
            for ev in events:
                t = ev.__class__
                if t is Response:
                    self.status = ev.status_code
                    if self.cookie is not None or self.live.retry_after:
                        self._head(ev)
                elif t is StreamReset or (t is ConnectionClosed and (answered or not ex.reused)):
                    self._error("BackendConnectionFailure", t.__name__)
        return events

    def _head(self, ev: Any) -> None:
        if self.live.retry_after and self.live.fails_on[ev.status_code]:
            for n, v in ev.headers:
                if n == b"retry-after":
                    self.retry_after = parse_retry_after(v, time.time())
        if self.cookie is not None:
            ev.headers.append((b"set-cookie", self.cookie))

    def _error(self, reason: str, detail: str) -> None:
        if self.error is None:
            self.error, self.detail = reason, detail

    def release(self, ok: bool) -> None:
        self.ex.release(ok)
        if not self.done:
            self.done = True
            self.live.finish(self)


class BalancedPool:
    """In place of the upstream pool of a pool, or of a backend with a breaker or health
    checks.  `backend` is that backend's config (a pool's has no url)."""

    __slots__ = ("backend", "name", "lives", "balancer", "authority", "cookie", "is_pool",
                 "single")

    def __init__(self, backend: BackendConfig, lives: list[Live]) -> None:
        self.backend = backend
        self.name = backend.name
        self.lives = lives
        self.is_pool = bool(backend.pool)
        self.single = None if self.is_pool else lives[0]
        self.balancer = Balancer(backend.pool) if self.is_pool else None
        self.authority = lives[0].authority
        self.cookie = backend.session_affinity.encode() if backend.session_affinity else None

    @property
    def h1(self) -> Any:
        """An HTTP/1.1 pool of an available member (a WebSocket gets its own connection)."""
        live = self._choose((), None)
        if live is None:
            raise self._unavailable()
        pool = live.pool
        return getattr(pool, "h1", pool)

    def _choose(self, tried: Any, affinity: Optional[bytes]) -> Optional[Live]:
        single = self.single
        if single is not None:
            return single if single.clean or single.available(trio.current_time(), False) \
                else None
        lives = self.lives
        ok = [lv.clean for lv in lives]
        every = all(ok)
        if not every:
            now = trio.current_time()
            ok = [lv.clean or lv.available(now, True) for lv in lives]
        i = self.balancer.pick(ok, tried, affinity, every)  # type: ignore[union-attr]
        return None if i is None else lives[i]

    def _unavailable(self) -> BackendUnavailable:
        if self.single is not None:
            live = self.single
            b = live.breaker
            why = (b.reason if b is not None and not b.available(trio.current_time())
                   else live.health.reason)
            msg = BREAKER_OPEN if b is not None and not b.available(trio.current_time()) \
                else UNHEALTHY
            return BackendUnavailable(msg.format(backend=self.name), f"{self.name}: {why}")
        states = "; ".join(f"{lv.name}: {_why(lv)}" for lv in self.lives)
        return BackendUnavailable(NO_MEMBER.format(backend=self.name),
                                  f"pool {self.name}: {states}")

    async def open(self, request: Request, tried: Optional[set] = None) -> MemberExchange:
        if tried is None:
            tried = set()
        affinity = None
        if self.cookie is not None:
            affinity = cookie_value(request.headers, self.cookie)
        while True:
            live = self._choose(tried, affinity)
            if live is None:
                raise self._unavailable()
            tried.add(live.name)
            passive = self.is_pool
            trial = probe = False
            if not live.clean:   # a half-open trial, or the re-probe of an ejection
                now = trio.current_time()
                b = live.breaker
                if b is not None:
                    b.acquire(now)
                    trial = b.state == HALF_OPEN
                probe = live.health.acquire(now) if passive else False
            cookie = None
            if self.cookie is not None and affinity != live.token:
                cookie = self.cookie + b"=" + live.token + b"; Path=/; HttpOnly"
            live.in_flight += 1
            try:
                ex = await live.pool.open(self._for(request, live))
            except (UpstreamConnectError, UpstreamTimeout) as e:
                live.in_flight -= 1
                reason = "Timeout" if isinstance(e, UpstreamTimeout) else "BackendConnectionFailure"
                live.connect_failed(trio.current_time(), reason, str(e), trial, passive)
                if not passive or self._choose(tried, None) is None:
                    raise
                log.warning("backend %s: %s; trying another member of pool %s",
                            live.name, e, self.name)
                continue
            except BaseException:
                live.in_flight -= 1
                if trial:
                    live.breaker.cancel()  # type: ignore[union-attr]
                if probe:
                    live.health.cancel()
                raise
            return MemberExchange(ex, live, trial, probe, passive, cookie)

    def _for(self, request: Request, live: Live) -> Request:
        """The request for member `live`: its Host (the head's list is the request's own,
        built per request: changed in place) and its base path."""
        if not self.is_pool:
            return request
        headers = request.headers
        if live.authority != self.authority:
            for i, (n, _) in enumerate(headers):
                if n == b"host":
                    headers[i] = (n, live.authority)
                    break
        if not live.base:
            return request
        target = request.target
        target = live.base + (target[1:] if target == b"/" or target[:2] == b"/?" else target)
        return _new_request(request.stream_id, request.method, target, headers,
                            request.http_version, request.upgrade, request.expect_continue,
                            request.protocol)


def _why(live: Live) -> str:
    b = live.breaker
    if b is not None and not b.available(trio.current_time()):
        return f"circuit breaker open ({b.reason})"
    return live.health.reason or "unavailable"


def build_balanced(config: GatewayConfig, pools: dict[str, Any],
                   previous: Optional[dict[str, Live]]) -> tuple[dict[str, Live],
                                                                 dict[str, BalancedPool]]:
    """The live states and balanced pools of one config.  A backend's `Live` is kept from
    `previous` while its config and pool are the same (a reload keeps its breaker and
    health)."""
    backends = config.backends
    members = {m.backend for b in backends.values() for m in b.pool}
    lives: dict[str, Live] = {}
    for name, b in backends.items():
        if b.pool or not (name in members or b.circuit_breaker or b.health_check):
            continue
        old = (previous or {}).get(name)
        if old is not None and old.config == b and old.pool is pools[name]:
            lives[name] = old
        else:
            lives[name] = Live(b, pools[name])
        lives[name].member_of = set()
    balanced: dict[str, BalancedPool] = {}
    for name, b in backends.items():
        if b.pool:
            for m in b.pool:
                lives[m.backend].member_of.add(name)
            balanced[name] = BalancedPool(b, [lives[m.backend] for m in b.pool])
        elif b.circuit_breaker or b.health_check:
            balanced[name] = BalancedPool(b, [lives[name]])
    return lives, balanced
