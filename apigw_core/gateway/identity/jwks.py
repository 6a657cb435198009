"""The key cache of one OpenID provider, as decisions with the clock passed in (no I/O).

Strategy.  A `Provider` holds what the runtime last fetched from an `openid-config` URL
(the discovery document, then its `jwks_uri`): the signing keys by kid, when they were
fetched, how long they stay fresh (the JWKS response's Cache-Control max-age, else 1 h, as
APIM), and when the last unknown-kid refetch was.  The runtime (runtime/jwks.py) asks it:

- `lookup(kid)`: the key, or None;
- `may_refetch(now)`: a token names a kid we do not have: may it start a refetch now?  At
  most once per 5 minutes per provider (APIM's rule; unknown kids are an easy way to make
  a gateway hammer its IdP: lua-resty-openidc #468), or join the one already in flight;
- `due(now)` / `wait(now)`: whether (and in how long) the background refresh should run:
  never fetched, stale, or retrying after a failure (1 s doubling to 60 s while it has no
  keys at all, every 60 s while it serves stale keys);
- `begin(now, kid_miss)` / `fetched(now, ...)` / `failed(now, why)`: a fetch's life; only
  one runs at a time (single flight).  A failure keeps the last good keys: they go on
  serving while the provider is down (Envoy #41669); only a provider that never gave
  usable keys leaves the policy without any (it answers 503, not 401).

The documents are parsed here too (`parse_discovery`, `parse_jwks`, `max_age_of`): bad
ones fail the fetch like a network error, so the keys served are never half-updated.
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional

from .keys import KeyError_, SigningKey, key_from_jwk

__all__ = ["Provider", "JwksError", "parse_discovery", "parse_jwks", "max_age_of",
           "DEFAULT_MAX_AGE", "REFETCH_INTERVAL"]

DEFAULT_MAX_AGE = 3600.0     # APIM: the configuration and keys are cached for an hour
MIN_MAX_AGE = 10.0           # a max-age of 0 must not turn into a fetch per request
MAX_MAX_AGE = 86400.0
REFETCH_INTERVAL = 300.0     # unknown kid: at most one refetch per 5 min per provider
RETRY_MIN, RETRY_MAX = 1.0, 60.0
STALE_RETRY = 60.0           # stale keys still serving: retry the refresh this often

_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)\"?", re.IGNORECASE)


class JwksError(ValueError):
    """A discovery document or JWKS that cannot be used."""


def parse_discovery(body: bytes) -> tuple[str, Optional[str]]:
    """(jwks_uri, issuer) of an OpenID discovery document."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise JwksError("the OpenID configuration is not JSON") from None
    if not isinstance(doc, dict):
        raise JwksError("the OpenID configuration is not a JSON object")
    uri = doc.get("jwks_uri")
    if not isinstance(uri, str) or not uri.startswith(("http://", "https://")):
        raise JwksError("the OpenID configuration has no http(s) jwks_uri")
    issuer = doc.get("issuer")
    return uri, issuer if isinstance(issuer, str) else None


def parse_jwks(body: bytes) -> tuple[list[SigningKey], list[str]]:
    """The usable signing keys of a JWKS, and why each other key was skipped."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise JwksError("the JWKS is not JSON") from None
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list):
        raise JwksError("the JWKS has no keys list")
    out: list[SigningKey] = []
    skipped: list[str] = []
    for i, jwk in enumerate(keys):
        try:
            out.append(key_from_jwk(jwk))
        except KeyError_ as e:
            kid = jwk.get("kid") if isinstance(jwk, dict) else None
            skipped.append(f"key {i} (kid {kid!r}): {e}")
    return out, skipped


def max_age_of(cache_control: Optional[str]) -> Optional[float]:
    """The max-age of a Cache-Control value, in seconds (None: none given)."""
    if not cache_control:
        return None
    if "no-store" in cache_control.lower() or "no-cache" in cache_control.lower():
        return 0.0
    m = _MAX_AGE.search(cache_control)
    return float(m.group(1)) if m else None


class Provider:
    """One `openid-config` URL's keys and fetch state (see the module docstring).  The
    runtime mutates it from one thread only (trio's), so no locking."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.keys: dict[str, SigningKey] = {}     # by kid
        self.unnamed: tuple[SigningKey, ...] = ()  # JWKs without a kid
        self.issuer: Optional[str] = None
        self.jwks_uri: Optional[str] = None
        self.fetched_at: Optional[float] = None    # the last good fetch
        self.max_age = DEFAULT_MAX_AGE
        self.last_kid_refetch: Optional[float] = None
        self.fetching = False
        self.fetches = 0                           # fetches started (for tests, /status)
        self.failures = 0                          # consecutive failures
        self.failed_at: Optional[float] = None
        self.last_error = ""
        self.runtime: Any = None                   # the runtime's fetcher (runtime/jwks.py)

    def __repr__(self) -> str:
        return f"<Provider {self.url} keys={sorted(self.keys)} fetched_at={self.fetched_at}>"

    # -- what a request asks ---------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """Any key at all to verify with (no keys: the policy answers 503)."""
        return bool(self.keys or self.unnamed)

    def lookup(self, kid: str) -> Optional[SigningKey]:
        return self.keys.get(kid)

    def all_keys(self) -> tuple[SigningKey, ...]:
        return tuple(self.keys.values()) + self.unnamed

    def current(self, key: SigningKey) -> bool:
        """`key` is still one of this provider's keys (a cached token verified with a key
        that was since withdrawn is verified again)."""
        if key.kid is not None:
            return self.keys.get(key.kid) is key
        return any(k is key for k in self.unnamed)

    def may_refetch(self, now: float) -> bool:
        """A token names a kid we do not have: refetch (or join the fetch in flight)?"""
        if self.fetching:
            return True
        return self.last_kid_refetch is None or now - self.last_kid_refetch >= REFETCH_INTERVAL

    # -- what the background refresh asks ---------------------------------------------------

    def _next_at(self) -> float:
        """When the next background fetch is due (a clock value; 0: now).  A success
        clears `failed_at`, so a failure's retry time wins until the next success."""
        if self.failed_at is not None:
            backoff = STALE_RETRY if self.usable else \
                min(RETRY_MAX, RETRY_MIN * 2 ** (self.failures - 1))
            return self.failed_at + backoff
        if self.fetched_at is None:
            return 0.0
        return self.fetched_at + self.max_age

    def due(self, now: float) -> bool:
        return not self.fetching and now >= self._next_at()

    def wait(self, now: float) -> float:
        """Seconds until `due` (0 when due now)."""
        return max(0.0, self._next_at() - now)

    def stale(self, now: float) -> bool:
        return self.fetched_at is None or now >= self.fetched_at + self.max_age

    # -- a fetch's life ---------------------------------------------------------------------

    def begin(self, now: float, kid_miss: bool = False) -> bool:
        """Start a fetch; False when one is in flight already (join it instead)."""
        if self.fetching:
            return False
        self.fetching = True
        self.fetches += 1
        if kid_miss:
            self.last_kid_refetch = now
        return True

    def fetched(self, now: float, discovery: bytes, jwks: bytes,
                cache_control: Optional[str] = None) -> list[str]:
        """A fetch brought both documents: adopt the keys (all or nothing).  Returns why
        keys were skipped; raises JwksError (after recording the failure) when the
        documents are unusable or hold no usable key."""
        try:
            self.jwks_uri, issuer = parse_discovery(discovery)
            keys, skipped = parse_jwks(jwks)
            if not keys:
                raise JwksError("the JWKS holds no usable signing key" +
                                (f" ({'; '.join(skipped)})" if skipped else ""))
        except JwksError as e:
            self.failed(now, str(e))
            raise
        named: dict[str, SigningKey] = {}
        unnamed: list[SigningKey] = []
        for k in keys:
            if k.kid is None:
                unnamed.append(k)
            else:
                named.setdefault(k.kid, k)
        # keep the objects of keys that did not change, so verified tokens stay cached
        for kid, k in list(named.items()):
            old = self.keys.get(kid)
            if old is not None and _same(old, k):
                named[kid] = old
        self.keys, self.unnamed, self.issuer = named, tuple(unnamed), issuer
        age = max_age_of(cache_control)
        self.max_age = DEFAULT_MAX_AGE if age is None else \
            min(MAX_MAX_AGE, max(MIN_MAX_AGE, age))
        self.fetched_at = now
        self.fetching = False
        self.failures = 0
        self.failed_at = None
        self.last_error = ""
        return skipped

    def failed(self, now: float, why: str) -> None:
        """The fetch failed: the keys we have keep serving; retry later (see `due`)."""
        self.fetching = False
        self.failures += 1
        self.failed_at = now
        self.last_error = why

    def status(self, now: float) -> dict[str, Any]:
        """A summary for logs and the admin endpoint."""
        return {"url": self.url, "kids": sorted(self.keys), "keys": len(self.all_keys()),
                "fetched-ago": None if self.fetched_at is None
                else round(now - self.fetched_at, 1),
                "max-age": self.max_age, "fetches": self.fetches,
                "failures": self.failures, "last-error": self.last_error or None}


def _same(a: SigningKey, b: SigningKey) -> bool:
    if a.kind != b.kind or a.algorithms != b.algorithms:
        return False
    if a.kind == "oct":
        return a.key == b.key
    return a.key.public_numbers() == b.key.public_numbers() if a.kind in ("RSA", "EC") \
        else _raw(a.key) == _raw(b.key)


def _raw(pub: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
