"""validate-jwt's key fetching: the OpenID configuration and its JWKS, in the background.

Strategy.  The decisions live in the sans-IO `Provider` (gateway/identity/jwks.py); this
module only does what they ask, over the upstream client machinery (service.send_on_pool
on an HTTP/1.1 pool of its own per origin, so reloads never close it under a fetch):

- `bind_providers(programs, previous)` (GatewayState, at load): one Provider per
  `openid-config` URL, shared by every validate-jwt policy naming it and carried across
  reloads, so the last good keys keep serving while a new config loads;
- `start_providers(state, nursery)` (GatewayState.start: gateway start and every reload):
  a fetch now, then one background task per provider that refreshes the keys when they go
  stale (max-age) and retries after failures (the Provider says when), never per request;
- the `RefreshKeys` command (an unknown kid): single flight, the request awaits the fetch
  in flight or starts one if the Provider allows (once per 5 min), else returns at once.

A fetch runs in the gateway's long-lived nursery, not in a request, so a client that goes
away never cancels it, and concurrent requests await the same one.  Its failures are
logged (logger `apigw_core.runtime`) and kept on the Provider; the keys it had stay.
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import urlsplit

import trio

from ..gateway.config import BackendConfig
from ..gateway.identity.jwks import JwksError, Provider, parse_discovery
from ..gateway.pipeline import PolicyError, SendRequest
from ..gateway.pipeline.policies.jwt import RefreshKeys, ValidateJwt
from .commands import command_handler
from .service import send_on_pool
from .upstream import UpstreamPool

if TYPE_CHECKING:
    from .state import GatewayState

__all__ = ["bind_providers", "start_providers", "FETCH_TIMEOUT"]

log = logging.getLogger("apigw_core.runtime")

FETCH_TIMEOUT = 10.0      # each of the two GETs
_MAX_DOCUMENT = 1 << 20
_IDLE_CHECK = 60.0        # a sleeping refresher looks this often whether it is still used


def bind_providers(programs: Any, previous: Optional[dict[str, Provider]]
                   ) -> dict[str, Provider]:
    """Give every validate-jwt policy of `programs` the shared Provider of its URL (the
    previous state's when it had one).  Returns them by URL."""
    old = previous or {}
    shared: dict[str, Provider] = {}
    for step in programs.steps:
        policy = step.policy
        if isinstance(policy, ValidateJwt) and policy.providers:
            for p in policy.providers:
                if p.url not in shared:
                    shared[p.url] = old.get(p.url) or p
            policy.bind(shared)
    return shared


def start_providers(state: "GatewayState", nursery: Any) -> None:
    """At load: fetch every provider's keys now, and keep them fresh in the background."""
    for provider in state.jwt_providers.values():
        runner = _runner(provider)
        runner.owner = weakref.ref(state)
        runner.start(nursery, state.watchdog)


def _runner(provider: Provider) -> "_Runner":
    r = getattr(provider, "runtime", None)
    if r is None:
        r = provider.runtime = _Runner(provider)   # type: ignore[attr-defined]
    return r


class _Runner:
    """One provider's fetches: the background refresher and the single flight."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.owner: Any = lambda: None       # weakref to the newest state using it
        self.nursery: Any = None
        self.watchdog: Any = None
        self.done = trio.Event()
        self.done.set()
        self.wake = trio.Event()
        self.looping = False
        self.pools: dict[tuple[str, str, int], UpstreamPool] = {}

    def start(self, nursery: Any, watchdog: Any) -> None:
        self.nursery, self.watchdog = nursery, watchdog
        self.begin(kid_miss=False)            # "at load"
        if not self.looping:
            self.looping = True
            nursery.start_soon(self._loop)

    def begin(self, kid_miss: bool) -> bool:
        """Start a fetch unless one is in flight (the Provider decides; single flight)."""
        if self.nursery is None or not self.provider.begin(time.time(), kid_miss):
            return False
        self.done = trio.Event()
        self.nursery.start_soon(self._fetch)
        return True

    async def refetch(self, kid: Optional[str]) -> None:
        """RefreshKeys: await the fetch in flight, or start one when allowed."""
        p = self.provider
        if not p.fetching:
            if kid is None or not p.may_refetch(time.time()):
                return
            if self.begin(kid_miss=True):
                log.info("jwks %s: unknown kid %r, refetching the keys", p.url, kid[:64])
        await self.done.wait()

    async def _loop(self) -> None:
        try:
            while self.owner() is not None:
                p = self.provider
                now = time.time()
                if p.due(now):
                    self.begin(kid_miss=False)
                if p.fetching:
                    await self.done.wait()
                    continue
                with trio.move_on_after(min(_IDLE_CHECK, max(0.05, p.wait(time.time())))):
                    await self.wake.wait()
        finally:
            self.looping = False
            for pool in self.pools.values():
                pool.close()
            self.pools.clear()

    async def _fetch(self) -> None:
        p = self.provider
        try:
            discovery, _ = await self._get(p.url)
            jwks_uri, _ = parse_discovery(discovery)
            jwks, cache_control = await self._get(jwks_uri)
            skipped = p.fetched(time.time(), discovery, jwks, cache_control)
            for why in skipped:
                log.warning("jwks %s: skipped %s", jwks_uri, why)
            log.info("jwks %s: %d signing keys (kids %s), fresh for %.0f s", p.url,
                     len(p.all_keys()), ", ".join(sorted(p.keys)) or "-", p.max_age)
        except (PolicyError, JwksError, _Status, OSError) as e:
            why = e.message if isinstance(e, PolicyError) else str(e)
            if p.fetching:
                p.failed(time.time(), why)
            log.warning("jwks %s: fetching the signing keys failed (%s); %s", p.url, why,
                        f"the {len(p.all_keys())} keys from before keep serving"
                        if p.usable else "no keys yet: validate-jwt answers 503")
        finally:
            if p.fetching:   # an unexpected error: never leave the flight open
                p.failed(time.time(), "internal error")
            self.done.set()

    async def _get(self, url: str) -> tuple[bytes, Optional[str]]:
        u = urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise JwksError(f"not an http(s) URL: {url}")
        port = u.port or (443 if u.scheme == "https" else 80)
        key = (u.scheme, u.hostname, port)
        pool = self.pools.get(key)
        if pool is None:
            origin = f"{u.scheme}://{u.hostname}:{port}"
            pool = self.pools[key] = UpstreamPool(BackendConfig(
                name=f"jwks {origin}", url=origin, scheme=u.scheme, host=u.hostname,
                port=port, base_path="", timeout=FETCH_TIMEOUT, connect_timeout=5.0,
                max_connections=2), self.watchdog)
        resp = await send_on_pool(pool, SendRequest(
            "GET", url, headers=((b"accept", b"application/json"),),
            timeout=FETCH_TIMEOUT, max_body=_MAX_DOCUMENT))
        if resp.status != 200:
            raise _Status(f"{url} answered {resp.status}")
        cache = [v for n, v in resp.headers if n.lower() == b"cache-control"]
        return resp.body, b", ".join(cache).decode("latin-1") if cache else None


class _Status(Exception):
    """A document fetch answered with a status other than 200."""


@command_handler(RefreshKeys)
async def _refresh_keys(call: Any, cmd: RefreshKeys) -> None:
    runner = getattr(cmd.provider, "runtime", None)
    if runner is not None:
        await runner.refetch(cmd.kid)
    return None
