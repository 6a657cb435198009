"""The top-level `rate-limits:` section: where the limit policies keep their counters.

Strategy.  One small section, its own file (other features add theirs beside it): the
defaults every rate-limit / quota policy uses unless it names its own `store` and
`on-store-failure` attributes.  `store: local` is the gateway's shared-memory table (exact
across the workers of one gateway, no server); `store: redis` is the Redis server of the
top-level `redis:` section (shared across gateways).  `on-store-failure` says what a
decision does when the store cannot answer within its deadline: `allow` lets the call
through, `deny` answers 503 "Rate limit store unavailable" with `Retry-After: 1`, `local`
decides on this gateway's own table instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["STORES", "FAILURE_MODES", "RateLimits", "RateLimitsConfig"]

STORES = ("local", "redis")
FAILURE_MODES = ("allow", "deny", "local")


@dataclass(frozen=True, slots=True)
class RateLimitsConfig:
    """YAML `rate-limits: {store, on-store-failure}`."""

    store: str = "local"
    on_store_failure: str = "allow"


class RateLimits(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=lambda s: s.replace("_", "-"),
                              use_attribute_docstrings=True)

    store: Literal["local", "redis"] = "local"
    """where counters live: local (this gateway's shared memory) or redis"""
    on_store_failure: Literal["allow", "deny", "local"] = "allow"
    """when the store does not answer in time: allow, deny (503), or local"""

    def build(self) -> RateLimitsConfig:
        return RateLimitsConfig(self.store, self.on_store_failure)
