"""What one loaded config becomes in a worker: router, operations, subscriptions, policy
programs and backend pools, as one object the request handler reads once per request.

Strategy.  Everything a request consults is derived from the config once, here, so a
reload builds a new `GatewayState` beside the old one and swaps a single reference: a
request that started on the old state finishes on it (it holds the reference), the next
one sees the new state, and nothing is ever half-loaded.  Pools are kept across reloads
for backends whose config did not change (their keep-alive connections stay warm); the
pools of removed or changed backends are retired (closed once their requests are done).
So are the live states of backends behind pools, breakers or health checks (`lives`,
`balanced`: runtime/balance.py): an unchanged backend keeps its breaker, its health and
its health-check task; a changed one starts afresh.

`plain` names the APIs that need no pipeline at all: no operations, no product, no
subscription that could apply, and the default program (no policy but the implicit
forward-request).  They keep the proxy's direct path, so a config without policies pays
nothing for the pipeline; every other API runs its program.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Optional

from ..gateway.config import BackendConfig, GatewayConfig
from ..gateway.operations import OperationIndex
from ..gateway.pipeline import PolicyError, Programs
from ..gateway.pipeline.policies.flow import ForwardRequestPolicy
from ..gateway.router import Router
from ..gateway.subscriptions import SubscriptionIndex
from .balance import build_balanced
from .h2upstream import H2UpstreamPool
from .health_checks import start_health_checks
from .redis_store import redis_stores
from .jwks import bind_providers, start_providers
from .secrets import remember as remember_secrets
from .upstream import UpstreamPool

if TYPE_CHECKING:
    from .transport import Watchdog

__all__ = ["GatewayState", "new_pool"]

_MAX_AD_HOC_POOLS = 64   # send-request / base-url origins kept warm per state


def new_pool(backend: BackendConfig, watchdog: "Watchdog", write_timeout: float) -> Any:
    """The pool for one backend: HTTP/1.1 keep-alive, or multiplexed HTTP/2."""
    if backend.http_version == "1":
        return UpstreamPool(backend, watchdog)
    return H2UpstreamPool(backend, watchdog, write_timeout)


class GatewayState:
    """One config, compiled.  Immutable once built, except for the lazily filled pools of
    ad-hoc origins (send-request, set-backend-service base-url)."""

    def __init__(self, config: GatewayConfig, watchdog: "Watchdog", version: int = 1,
                 previous: Optional["GatewayState"] = None,
                 make_pool: Optional[Callable[[str, BackendConfig], Any]] = None) -> None:
        self.config = config
        remember_secrets(config)      # secret named values: out of every log line
        self.version = version
        self.loaded_at = time.time()
        self.watchdog = watchdog
        self.router = Router(config)
        self.operations = OperationIndex(config.apis)
        self.subscriptions = SubscriptionIndex(config)
        self.programs = Programs(config)
        wt = config.server.write_timeout
        make = make_pool or (lambda _name, b: new_pool(b, watchdog, wt))
        old = previous.pools if previous is not None else {}
        self.pools: dict[str, Any] = {}
        for name, b in config.backends.items():
            if b.pool:
                continue     # a pool has no connections of its own: its members do
            pool = old.get(name)
            self.pools[name] = pool if pool is not None and pool.backend == b \
                else make(name, b)
        # pools, breakers, health (runtime/balance.py): looked up before self.pools
        self.lives, self.balanced = build_balanced(
            config, self.pools, previous.lives if previous is not None else None)
        self._dropped = [lv for n, lv in (previous.lives.items() if previous else ())
                         if self.lives.get(n) is not lv]
        self.ad_hoc: dict[tuple, Any] = {}
        # counter stores beyond the local table (runtime/limits.py finds them here); a
        # store closes like a pool (idle connections now, busy ones when released), so
        # it is listed with them
        self.stores: dict[str, Any] = redis_stores(config, previous)
        self.nursery: Any = None
        self.plain = frozenset(api.name for api in config.apis if self._is_plain(api))
        # validate-jwt's OpenID providers by URL, shared across reloads (runtime/jwks.py)
        self.jwt_providers = bind_providers(
            self.programs, previous.jwt_providers if previous is not None else None)

    def retired_pools(self, newer: "GatewayState") -> list[Any]:
        """This state's pools that `newer` does not use (to close once idle)."""
        keep = {id(p) for p in (*newer.pools.values(), *newer.stores.values())}
        return [p for p in self.all_pools() if id(p) not in keep]

    def all_pools(self) -> list[Any]:
        return [*self.pools.values(), *self.ad_hoc.values(), *self.stores.values()]

    def _is_plain(self, api: Any) -> bool:
        cfg = self.config
        if api.operations or self.subscriptions.products_for(api.name):
            return False
        if any(s.scope == "all-apis" or s.api == api.name for s in cfg.subscriptions):
            return False   # a key sent to this API must be checked (401 if invalid)
        if self.subscriptions.requires_key(api.name):
            return False
        p = self.programs.get(api.name, None, None)
        if p.inbound or p.outbound or p.on_error or len(p.backend) != 1:
            return False
        fwd = p.backend[0].policy
        return (type(fwd) is ForwardRequestPolicy and fwd.cmd.timeout is None
                and fwd.cmd.http_version is None and not fwd.fail_on_error
                and not fwd.cmd.buffer_request_body)

    def pool_for(self, name: str, http_version: Optional[str] = None) -> Any:
        """The pool of a configured backend, or of the same backend with another HTTP
        version (forward-request http-version)."""
        bal = self.balanced.get(name)
        if bal is not None and (http_version is None or bal.is_pool):
            return bal       # a pool's members keep their own http-version
        pool = self.pools[name]
        if http_version is None or http_version == pool.backend.http_version:
            return pool
        return self._ad_hoc(("backend", name, http_version),
                            lambda: _replace(pool.backend, http_version=http_version))

    def with_certificate(self, pool: Any, cert_id: str) -> Any:
        """The pool like `pool` whose connections present the client certificate
        `cert_id` of the certificates: store (authentication-certificate: backend mTLS);
        one per (backend, certificate).  PolicyError for an http backend (nothing to
        present it on) or when too many pools are open already."""
        b = pool.backend
        if b.tls.client_certificate == cert_id:
            return pool
        if b.scheme != "https":
            raise PolicyError(500, "BackendConnectionFailure",
                              "authentication-certificate needs an https backend")
        c = self.config.certificates[cert_id]
        tls = _replace(b.tls, client_certificate=cert_id, cert=c.cert, key=c.key,
                       password=c.password)
        found = self._ad_hoc(("cert", b, cert_id), lambda: _replace(b, tls=tls))
        if found is None:
            raise PolicyError(503, "BackendConnectionFailure", "too many backend origins")
        return found

    def pool_for_url(self, scheme: str, host: str, port: int,
                     http_version: str = "1") -> Optional[Any]:
        """A pool for an origin named by a policy (send-request, base-url); None when too
        many origins are in use already (the caller answers 503)."""
        def make() -> BackendConfig:
            return BackendConfig(name=f"{scheme}://{host}:{port}", url=f"{scheme}://{host}:{port}",
                                 scheme=scheme, host=host, port=port, base_path="",
                                 http_version=http_version)
        return self._ad_hoc(("url", scheme, host, port, http_version), make)

    def _ad_hoc(self, key: tuple, make: Any) -> Optional[Any]:
        pool = self.ad_hoc.get(key)
        if pool is None:
            if len(self.ad_hoc) >= _MAX_AD_HOC_POOLS:
                return None
            pool = self.ad_hoc[key] = new_pool(make(), self.watchdog,
                                               self.config.server.write_timeout)
            pool.nursery = self.nursery
        return pool

    def start(self, nursery: Any) -> None:
        """Give the pools the nursery their HTTP/2 connections run in; start the health
        checks of new backends, stop those of the backends this state dropped."""
        self.nursery = nursery
        for pool in self.all_pools():
            pool.nursery = nursery
        start_health_checks(nursery, self.lives.values(), self._dropped)
        self._dropped = []
        start_providers(self, nursery)   # fetch the JWKS at load, refresh when stale


def _replace(b: BackendConfig, **changes: Any) -> BackendConfig:
    import dataclasses
    return dataclasses.replace(b, **changes)
