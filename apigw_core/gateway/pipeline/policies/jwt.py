"""`validate-jwt`: APIM's token validation, with static keys and OpenID providers (JWKS).

Strategy.  Compile time does everything a request does not decide: the token's source
(`header-name` with its `require-scheme`, `query-parameter-name` or `token-value`), the
`issuer-signing-keys` turned into `SigningKey`s (identity/keys.py: a key knows the
algorithms it may verify), one `Provider` per `openid-config` URL (identity/jwks.py; the
runtime binds the shared one and fetches its keys, runtime/jwks.py), the audiences,
issuers and required claims.  A request then:

1. takes the token (none: TokenNotPresent "JWT not present.");
2. looks it up in a bounded LRU of tokens this policy accepted before (token string ->
   claims + the key that verified it): a hit skips the signature, and only the lifetime
   (`exp`/`nbf` with `clock-skew`) is checked again, plus that the key is still served;
3. otherwise reads the header (to pick the key), refuses `alg: none` and any algorithm
   its key may not verify (an HMAC algorithm with an RSA key: the confusion attack)
   before any cryptography, finds the key by kid (an unknown kid yields `RefreshKeys` to
   the runtime, which refetches the JWKS at most once per 5 min per provider, single
   flight), verifies with PyJWT, then checks lifetime, audience, issuer and required
   claims (APIM's reasons and messages, identity/claims.py) and caches the result.

A refusal is a PolicyError with `failed-validation-httpcode` (401), the message (or
`failed-validation-error-message`), and RFC 6750's `WWW-Authenticate`; on-error sees the
reason in `last-error`; a gRPC caller gets UNAUTHENTICATED through the local-reply path.
No usable key at all (the provider never answered) is 503 "...could not be loaded", not
401: the caller's token may be fine.  After validation `{jwt.claims.NAME}` reads a claim
(ctx.jwt), and `output-token-variable-name` holds the token as a mapping (claims, header,
subject, ...).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping, Optional
from urllib.parse import urlsplit

from ...identity.claims import (RequiredClaim, check_audience, check_issuer, check_lifetime,
                                check_required)
from ...identity.jwks import Provider
from ...identity.keys import (ALGORITHMS, KeyError_, SigningKey, key_from_pem, key_from_rsa,
                              key_from_secret_text, read_header, verify)
from ..contract import Command, Context, Policy, PolicyError, Site
from ..expressions import _query_value
from ..registry import register
from ._spec import Spec, describe, header_name, is_token
from .flow import parse_seconds

__all__ = ["ValidateJwt", "RefreshKeys", "CACHE_SIZE", "NO_KEYS_MESSAGE"]

CACHE_SIZE = 4096          # verified tokens kept per policy
MAX_TOKEN = 16 << 10       # longer "tokens" are refused unparsed
NO_KEYS_MESSAGE = ("The signing keys of the identity provider could not be loaded; the "
                   "token cannot be validated now. Try again later.")


@dataclass(frozen=True, slots=True, eq=False)
class RefreshKeys(Command):
    """A token names a kid `provider` does not have: refetch its JWKS (single flight, at
    most once per 5 min; the runtime decides with `provider.may_refetch`).  With kid None:
    only await the fetch in flight (no keys yet at all).  Result: None."""

    provider: Provider
    kid: Optional[str]


@dataclass(slots=True)
class _Verified:
    claims: dict
    header: dict
    key: SigningKey
    provider: Optional[Provider]
    view: Mapping[str, Any]
    valid_from: float = float("-inf")   # nbf - skew
    valid_until: float = float("inf")   # exp + skew: valid while now < this


_DESCRIPTIONS = {
    "TokenExpired": "The token is expired",
    "TokenSignatureInvalid": "The token signature is invalid",
    "TokenSignatureKeyNotFound": "The token signing key was not found",
    "TokenAudienceNotAllowed": "The token audience is not allowed",
    "TokenIssuerNotAllowed": "The token issuer is not allowed",
    "TokenClaimNotFound": "The token lacks required claims",
    "TokenClaimValueNotAllowed": "A token claim value is not allowed",
    "JwtInvalid": "The token is not valid",
}


def _children(s: Spec, key: str, child: str) -> tuple:
    """A list under `key`, or APIM's element shape `{child: [...]}`."""
    v = s.raw(key)
    if isinstance(v, Mapping) and set(v) == {child}:
        inner = v[child]
        return tuple(inner) if isinstance(inner, (list, tuple)) else (inner,)
    return s.items(key)


def _skew(s: Spec) -> float:
    v = s.raw("clock-skew", 0)
    if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 86400:
        return float(v)
    if isinstance(v, str):
        t = v.strip()
        n = float(t) if t.replace(".", "", 1).isdigit() else parse_seconds(t)
        if n is not None and 0 <= n <= 86400:
            return n
    s.error(f"expected seconds from 0 to 86400 (or a duration: 30s), got {v!r}", "clock-skew")
    return 0.0


@register
class ValidateJwt(Policy):
    """`validate-jwt: {header-name | query-parameter-name | token-value, require-scheme,
    failed-validation-httpcode, failed-validation-error-message, require-expiration-time,
    require-signed-tokens, clock-skew, output-token-variable-name, openid-config: {url},
    issuer-signing-keys: [{id, n, e} | {id, certificate} | {id, public-key} | {id, value}],
    audiences: [...], issuers: [...], required-claims: [{name, match, separator,
    value: [...]}]}` (see the module docstring)."""

    name = "validate-jwt"
    sections = frozenset({"inbound"})

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        s = Spec(spec, site, (
            "header-name", "query-parameter-name", "token-value", "failed-validation-httpcode",
            "failed-validation-error-message", "require-expiration-time", "require-scheme",
            "require-signed-tokens", "clock-skew", "output-token-variable-name",
            "openid-config", "issuer-signing-keys", "decryption-keys", "audiences",
            "issuers", "required-claims"))
        self.clock: Callable[[], float] = time.time   # tests give a fake one
        sources = [k for k in ("header-name", "query-parameter-name", "token-value")
                   if s.has(k)]
        if len(sources) > 1:
            site.error(f"expected exactly one of header-name, query-parameter-name, "
                       f"token-value (got {', '.join(sources)})")
        self.header = s.text("header-name", "Authorization") or "Authorization"
        if not is_token(self.header):
            site.error(f"not a header name: {self.header!r}", "header-name")
        self._header_key = header_name(self.header) if is_token(self.header) else b""
        self.query = s.text("query-parameter-name")
        self.token_value = s.template("token-value")
        self.scheme = s.text("require-scheme")
        if self.scheme is not None and not is_token(self.scheme):
            site.error(f"not an authentication scheme: {self.scheme!r}", "require-scheme")
        if self.scheme is not None and (s.has("query-parameter-name")
                                        or s.has("token-value")):
            site.error("only applies to a token taken from a header", "require-scheme")
        self.status = s.integer("failed-validation-httpcode", 401, 400, 599) or 401
        self.message = s.text("failed-validation-error-message")
        self.require_exp = s.flag("require-expiration-time", True)
        if not s.flag("require-signed-tokens", True):
            site.error("false is not supported: unsigned tokens (alg none) are always "
                       "refused", "require-signed-tokens")
        self.skew = _skew(s)
        self.variable = s.text("output-token-variable-name")
        if s.has("decryption-keys"):
            site.error("not supported (encrypted tokens, JWE)", "decryption-keys")
        self.keys = self._static_keys(s)
        self.providers: list[Provider] = self._providers(s)
        self.audiences = frozenset(self._strings(s, "audiences", "audience"))
        self.issuers = frozenset(self._strings(s, "issuers", "issuer"))
        self.required = self._required(s)
        if not self.keys and not self.providers:
            site.error("no keys to validate with: give openid-config or issuer-signing-keys")
        self._by_kid = {k.kid: k for k in self.keys if k.kid is not None}
        self._cache: OrderedDict[str, _Verified] = OrderedDict()
        self._scheme_fold = (self.scheme or "").lower()
        www = (self.scheme or "Bearer").encode("ascii", "replace")
        self._www_absent = ((b"www-authenticate", www),)
        self._www: dict[str, tuple] = {
            r: ((b"www-authenticate", www + b' error="invalid_token", error_description="'
                 + d.encode("ascii") + b'"'),) for r, d in _DESCRIPTIONS.items()}

    # -- compiling ---------------------------------------------------------------------

    def _strings(self, s: Spec, key: str, child: str) -> list[str]:
        out = []
        for i, v in enumerate(_children(s, key, child)):
            if isinstance(v, str) and v:
                out.append(v)
            else:
                s.error(f"expected a non-empty string, got {describe(v)}", f"{key}[{i}]")
        return out

    def _static_keys(self, s: Spec) -> list[SigningKey]:
        out: list[SigningKey] = []
        for i, k in enumerate(_children(s, "issuer-signing-keys", "key")):
            where = f"issuer-signing-keys[{i}]"
            if isinstance(k, str):
                k = {"value": k}
            if not isinstance(k, Mapping):
                s.error(f"expected a mapping (id, n/e, certificate, public-key or value), got "
                        f"{describe(k)}", where)
                continue
            ks = Spec(k, s.site, ("id", "n", "e", "certificate", "public-key", "value",
                                  "certificate-id"), prefix=where)
            kid = ks.text("id")
            given = [f for f in ("n", "certificate", "public-key", "value", "certificate-id")
                     if ks.has(f)]
            if ks.has("n") != ks.has("e"):
                ks.error("n and e go together (an RSA modulus and exponent)")
                continue
            if len(given) != 1:
                ks.error("expected exactly one of n/e, certificate, public-key, value")
                continue
            try:
                if given[0] == "n":
                    out.append(key_from_rsa(kid, ks.text("n") or "", ks.text("e") or ""))
                elif given[0] in ("certificate", "public-key"):
                    out.append(key_from_pem(kid, ks.text(given[0]) or ""))
                elif given[0] == "value":
                    out.append(key_from_secret_text(kid, ks.text("value") or ""))
                else:
                    ks.error("not supported: put the PEM certificate in certificate",
                             "certificate-id")
            except KeyError_ as e:
                ks.error(str(e), given[0])
        return out

    def _providers(self, s: Spec) -> list[Provider]:
        out: list[Provider] = []
        raw = s.raw("openid-config")
        entries = () if raw is None else raw if isinstance(raw, (list, tuple)) else (raw,)
        for i, e in enumerate(entries):
            where = "openid-config" if not isinstance(raw, (list, tuple)) \
                else f"openid-config[{i}]"
            url = e if isinstance(e, str) else None
            if isinstance(e, Mapping):
                url = Spec(e, s.site, ("url",), prefix=where).text("url", required=True)
            elif url is None:
                s.error(f"expected {{url: ...}}, got {describe(e)}", where)
                continue
            try:
                u = urlsplit(url or "")
                u.port   # raises on a bad port
                ok = u.scheme in ("http", "https") and bool(u.hostname)
            except ValueError:
                ok = False
            if not ok:
                s.error(f"expected an http(s) URL, got {url!r}", f"{where}.url")
                continue
            out.append(Provider(url or ""))
        return out

    def _required(self, s: Spec) -> tuple[RequiredClaim, ...]:
        out = []
        for i, c in enumerate(_children(s, "required-claims", "claim")):
            where = f"required-claims[{i}]"
            if isinstance(c, str):
                c = {"name": c}
            if not isinstance(c, Mapping):
                s.error(f"expected a mapping (name, match, separator, value), got "
                        f"{describe(c)}", where)
                continue
            cs = Spec(c, s.site, ("name", "match", "separator", "value"), prefix=where)
            name = cs.text("name", required=True)
            values = tuple(str(v) for v in cs.items("value")
                           if isinstance(v, (str, int, float)) and not isinstance(v, bool))
            if len(values) != len(cs.items("value")):
                cs.error("expected strings", "value")
            sep = cs.text("separator")
            if name:
                match = cs.choice("match", ("all", "any"), "all") or "all"
                out.append(RequiredClaim(name, match, sep or None, values))
        return tuple(out)

    def bind(self, providers: Mapping[str, Provider]) -> None:
        """Use the runtime's shared Provider objects (one per URL across policies and
        reloads) in place of the ones made at compile time."""
        self.providers = [providers.get(p.url, p) for p in self.providers]

    # -- a request -------------------------------------------------------------------------

    def _refuse(self, reason: str, message: str) -> PolicyError:
        headers = () if self.status != 401 else \
            self._www_absent if reason == "TokenNotPresent" else self._www.get(reason, ())
        return PolicyError(self.status, reason, self.message or message, headers)

    def _token(self, ctx: Context) -> str:
        if self.token_value is not None:
            text = self.token_value.render(ctx).strip()
        elif self.query is not None:
            text = (_query_value(ctx.request.query, self.query) or "").strip()
        else:
            found = None
            for n, v in ctx.request.headers.items:
                if n == self._header_key:
                    found = v
                    break
            text = "" if found is None else found.decode("latin-1").strip()
            if text:
                scheme, sp, rest = text.partition(" ")
                if self.scheme is not None:
                    # a custom header too: a scheme that is asked for is always checked
                    if not sp or scheme.lower() != self._scheme_fold:
                        text = ""
                    else:
                        text = rest.strip()
                elif sp and scheme.lower() == "bearer":
                    text = rest.strip()
        if not text:
            raise self._refuse("TokenNotPresent", "JWT not present.")
        return text

    def apply(self, ctx: Context) -> Any:
        token = self._token(ctx)
        now = self.clock()
        hit = self._cache.get(token)
        if hit is not None and (hit.provider is None or hit.provider.current(hit.key)):
            self._cache.move_to_end(token)
            if not hit.valid_from <= now < hit.valid_until:
                self._accept(ctx, hit, now)    # raises the lifetime refusal
            ctx.jwt = hit.claims
            if self.variable is not None:
                ctx.variables[self.variable] = hit.view
            return None
        return self._validate(ctx, token, now)

    def _accept(self, ctx: Context, v: _Verified, now: float) -> None:
        bad = check_lifetime(v.claims, now, self.skew, self.require_exp)
        if bad is not None:
            raise self._refuse(bad.reason, bad.message)
        ctx.jwt = v.claims
        if self.variable is not None:
            ctx.variables[self.variable] = v.view

    def _header(self, token: str) -> tuple[dict, str, Optional[str]]:
        if len(token) > MAX_TOKEN:
            raise self._refuse("JwtInvalid", "JWT is too long. Access denied.")
        dots = token.count(".")
        if dots == 4:
            raise self._refuse("JwtInvalid", "JWT is encrypted (JWE); encrypted tokens are "
                                             "not supported. Access denied.")
        header = read_header(token) if dots == 2 else None
        if not isinstance(header, dict):
            raise self._refuse("JwtInvalid", "JWT not well formed. Access denied.")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none" or token.endswith("."):
            raise self._refuse("TokenSignatureInvalid", "JWT is not signed (alg none is not "
                                                        "accepted). Access denied.")
        if alg not in ALGORITHMS:
            raise self._refuse("TokenSignatureInvalid", f"JWT algorithm "
                                                        f"{alg[:20]} is not supported. "
                                                        "Access denied.")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise self._refuse("JwtInvalid", "JWT kid is not a string. Access denied.")
        return header, alg, kid

    def _keys_for(self, kid: Optional[str]) -> list[tuple[SigningKey, Optional[Provider]]]:
        if kid is not None:
            k = self._by_kid.get(kid)
            if k is not None:
                return [(k, None)]
            for p in self.providers:
                k = p.lookup(kid)
                if k is not None:
                    return [(k, p)]
            return []
        found: list[tuple[SigningKey, Optional[Provider]]] = [(k, None) for k in self.keys]
        for p in self.providers:
            found.extend((k, p) for k in p.all_keys())
        return found

    def _unnamed(self) -> list[tuple[SigningKey, Optional[Provider]]]:
        """Keys without an id: tried for a kid no key names (after any refetch)."""
        found: list[tuple[SigningKey, Optional[Provider]]] = [
            (k, None) for k in self.keys if k.kid is None]
        for p in self.providers:
            found.extend((k, p) for k in p.unnamed)
        return found

    def _no_keys(self) -> bool:
        return not self.keys and not any(p.usable for p in self.providers)

    def _unavailable(self) -> PolicyError:
        return PolicyError(503, "OpenIdConfigurationUnavailable", NO_KEYS_MESSAGE)

    def _validate(self, ctx: Context, token: str, now: float) -> Any:
        header, alg, kid = self._header(token)
        if self._no_keys():
            loading = [p for p in self.providers if p.fetching]
            if not loading:
                raise self._unavailable()
            return self._refetch_then(ctx, token, header, alg, kid, loading, None)
        keys = self._keys_for(kid)
        if not keys and kid is not None:
            stale = [p for p in self.providers if p.may_refetch(now)]
            if stale:
                return self._refetch_then(ctx, token, header, alg, kid, stale, kid)
        self._finish(ctx, token, header, alg, kid, keys, now)
        return None

    def _refetch_then(self, ctx: Context, token: str, header: dict, alg: str,
                      kid: Optional[str], providers: list[Provider], wanted: Optional[str]
                      ) -> Any:
        for p in providers:
            yield RefreshKeys(p, wanted)
            if wanted is not None and p.lookup(wanted) is not None:
                break
        now = self.clock()
        if self._no_keys():
            raise self._unavailable()
        self._finish(ctx, token, header, alg, kid, self._keys_for(kid), now)
        return None

    def _finish(self, ctx: Context, token: str, header: dict, alg: str, kid: Optional[str],
                keys: list[tuple[SigningKey, Optional[Provider]]], now: float) -> None:
        if not keys and kid is not None:
            keys = self._unnamed()
        if not keys:
            shown = json.dumps(kid[:64] if kid is not None else None)
            raise self._refuse("TokenSignatureKeyNotFound", f"Signature validation failed. "
                                                            f"Unable to match key: kid: "
                                                            f"{shown}. Access denied.")
        usable = [(k, p) for k, p in keys if alg in k.algorithms]
        if not usable:
            raise self._refuse("TokenSignatureInvalid", f"Signature validation failed. The "
                                                        f"algorithm {alg} is not allowed for "
                                                        f"the signing key. Access denied.")
        payload = None
        for key, provider in usable:
            payload = verify(token, alg, key)
            if payload is not None:
                break
        if payload is None:
            raise self._refuse("TokenSignatureInvalid", "Signature validation failed. "
                                                        "Access denied.")
        try:
            claims = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            claims = None
        if not isinstance(claims, dict):
            raise self._refuse("JwtInvalid", "JWT payload is not a JSON object. "
                                             "Access denied.")
        for check in (check_lifetime(claims, now, self.skew, self.require_exp),
                      check_audience(claims, self.audiences),
                      check_issuer(claims, self.issuers),
                      check_required(claims, self.required)):
            if check is not None:
                raise self._refuse(check.reason, check.message)
        v = _Verified(claims, header, key, provider, _view(token, header, claims))
        if claims.get("exp") is not None:      # numbers: check_lifetime said so
            v.valid_until = claims["exp"] + self.skew
        if claims.get("nbf") is not None:
            v.valid_from = claims["nbf"] - self.skew
        cache = self._cache
        cache[token] = v
        if len(cache) > CACHE_SIZE:
            cache.popitem(last=False)
        ctx.jwt = claims
        if self.variable is not None:
            ctx.variables[self.variable] = v.view


def _view(token: str, header: dict, claims: dict) -> Mapping[str, Any]:
    """The token as `output-token-variable-name` holds it (APIM's Jwt object, by name)."""
    aud = claims.get("aud")
    return MappingProxyType({
        "token": token, "header": MappingProxyType(header),
        "claims": MappingProxyType(claims), "algorithm": header.get("alg"),
        "type": header.get("typ"), "id": claims.get("jti"), "issuer": claims.get("iss"),
        "subject": claims.get("sub"),
        "audiences": tuple(aud) if isinstance(aud, list) else (aud,) if aud else (),
        "expiration-time": claims.get("exp"), "not-before": claims.get("nbf"),
        "issued-at": claims.get("iat")})
