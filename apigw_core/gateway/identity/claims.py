"""A verified token's claims against validate-jwt's rules: lifetime, audiences, issuers and
`required-claims` (APIM's reasons and messages), plus how a claim reads as text.

Strategy.  Plain functions over the claims dict, each returning None (fine) or a
`Refusal(reason, message)`; the policy turns a refusal into its PolicyError.  Lifetime is
checked on every request, cached token or not (RFC 7519 §4.1.4/§4.1.5, with the clock skew
on both edges: valid while `now < exp + skew` and once `now >= nbf - skew`); the rest is
fixed for a given token and policy, so it runs once per distinct token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

__all__ = ["Refusal", "RequiredClaim", "check_lifetime", "check_audience", "check_issuer",
           "check_required", "claim_text", "claim_values"]


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class RequiredClaim:
    """`required-claims` entry: the claim must be present and, when `values` are given,
    hold all of them (`match: all`) or at least one (`any`); a string claim is split by
    `separator` when one is given ("read write" with " "), an array claim is its items."""

    name: str
    match: str = "all"
    separator: Optional[str] = None
    values: tuple[str, ...] = ()


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_lifetime(claims: Mapping[str, Any], now: float, skew: float,
                   require_exp: bool) -> Optional[Refusal]:
    exp = claims.get("exp")
    if exp is None:
        if require_exp:
            return Refusal("JwtInvalid", "JWT has no expiration time (exp). Access denied.")
    elif not _number(exp):
        return Refusal("JwtInvalid", "JWT exp claim is not a number. Access denied.")
    elif now >= exp + skew:
        return Refusal("TokenExpired", "Lifetime validation failed. The token is expired. "
                                       "Access denied.")
    nbf = claims.get("nbf")
    if nbf is not None:
        if not _number(nbf):
            return Refusal("JwtInvalid", "JWT nbf claim is not a number. Access denied.")
        if now < nbf - skew:
            return Refusal("JwtInvalid", "Lifetime validation failed. The token is not yet "
                                         "valid. Access denied.")
    return None


def check_audience(claims: Mapping[str, Any], allowed: frozenset[str]) -> Optional[Refusal]:
    if not allowed:
        return None
    aud = claims.get("aud")
    got = [aud] if isinstance(aud, str) else [a for a in aud if isinstance(a, str)] \
        if isinstance(aud, list) else []
    if any(a in allowed for a in got):
        return None
    return Refusal("TokenAudienceNotAllowed", "Audience validation failed. Audiences: "
                                              f"'{', '.join(got)}'. Did not match the allowed "
                                              "audiences. Access denied.")


def check_issuer(claims: Mapping[str, Any], allowed: frozenset[str]) -> Optional[Refusal]:
    if not allowed:
        return None
    iss = claims.get("iss")
    if isinstance(iss, str) and iss in allowed:
        return None
    shown = iss if isinstance(iss, str) else ""
    return Refusal("TokenIssuerNotAllowed",
                   f"Issuer validation failed. Issuer: '{shown}'. Did not match the allowed "
                   "issuers. Access denied.")


def claim_values(value: Any, separator: Optional[str]) -> list[str]:
    """A claim as the list of strings `required-claims` compares."""
    if isinstance(value, list):
        return [claim_text(v) for v in value]
    text = claim_text(value)
    if separator:
        return [p for p in text.split(separator) if p != ""]
    return [text]


def claim_text(value: Any) -> str:
    """How a claim reads in text: strings as they are, bools lower-case, numbers plainly,
    arrays comma-joined (APIM joins multi-valued claims with ","), objects as JSON."""
    if isinstance(value, str):
        return value
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(claim_text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if value is None:
        return ""
    return str(value)


def check_required(claims: Mapping[str, Any], required: Sequence[RequiredClaim]
                   ) -> Optional[Refusal]:
    missing = [r.name for r in required if r.name not in claims]
    if missing:
        return Refusal("TokenClaimNotFound", f"JWT is missing the following claims: "
                                             f"{', '.join(missing)}. Access denied.")
    for r in required:
        if not r.values:
            continue
        have = claim_values(claims[r.name], r.separator)
        ok = all(v in have for v in r.values) if r.match == "all" else \
            any(v in have for v in r.values)
        if not ok:
            return Refusal("TokenClaimValueNotAllowed", f"Claim {r.name} value of "
                                                        f"{claim_text(claims[r.name])} is not "
                                                        "allowed. Access denied.")
    return None
