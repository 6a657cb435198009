"""Signing keys for validate-jwt: what a key is, which algorithms it may verify, and how a
token's signature is checked with it (PyJWT + cryptography; no JOSE of our own).

Strategy.  A key is turned, once (config load or JWKS fetch), into a `SigningKey`: its kid,
its type, the key object PyJWT verifies with, and the algorithms that key type allows
(RFC 7518): RSA keys RS256/384/512 and PS256/384/512; EC keys the one ES algorithm of their
curve (P-256 ES256, P-384 ES384, P-521 ES512); Ed25519/Ed448 EdDSA; a symmetric key the
HS algorithms whose minimum key size it meets (§3.2: at least the hash size).  A JWK's own
`alg` narrows that set to one.  `verify` refuses, before any cryptography, a token whose
`alg` is not in its key's set: `none` never is, and neither is an HMAC algorithm for an
asymmetric key (the RS256-to-HS256 confusion, where the public key is used as an HMAC
secret).  RSA keys under 2048 bits are refused.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional

# PyJWT and cryptography (~0.3 s of imports) are imported by the functions that use them,
# on the first key made: a gateway without validate-jwt never loads them.

__all__ = ["SigningKey", "KeyError_", "ALGORITHMS", "key_from_jwk", "key_from_pem",
           "key_from_rsa", "key_from_secret", "key_from_secret_text", "read_header", "verify"]

# the algorithms we verify; `none` is absent on purpose
ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                        "ES256", "ES384", "ES512", "EdDSA", "HS256", "HS384", "HS512"})
_RSA_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_ALG = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_HMAC_MIN = {"HS256": 32, "HS384": 48, "HS512": 64}
_MIN_RSA_BITS = 2048


class KeyError_(ValueError):
    """A key that cannot be used (bad encoding, unsupported type, too weak)."""


@dataclass(frozen=True, slots=True, eq=False)
class SigningKey:
    """One verification key.  `key` is what PyJWT's algorithm verifies with (a
    cryptography public key, or the secret bytes); `algorithms` what it may verify."""

    kid: Optional[str]
    kind: str                     # RSA | EC | OKP | oct
    key: Any
    algorithms: frozenset[str]

    def __repr__(self) -> str:
        return f"<SigningKey {self.kind} kid={self.kid!r} {sorted(self.algorithms)}>"


def _from_public(kid: Optional[str], pub: Any, alg: Optional[str] = None) -> SigningKey:
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if isinstance(pub, rsa.RSAPublicKey):
        if pub.key_size < _MIN_RSA_BITS:
            raise KeyError_(f"RSA key of {pub.key_size} bits is too weak (at least "
                            f"{_MIN_RSA_BITS})")
        kind, algs = "RSA", _RSA_ALGS
    elif isinstance(pub, ec.EllipticCurvePublicKey):
        one = _EC_ALG.get(pub.curve.name)
        if one is None:
            raise KeyError_(f"unsupported EC curve {pub.curve.name}")
        kind, algs = "EC", frozenset({one})
    elif isinstance(pub, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        kind, algs = "OKP", frozenset({"EdDSA"})
    else:
        raise KeyError_(f"unsupported key type {type(pub).__name__}")
    return SigningKey(kid, kind, pub, _narrow(algs, alg))


def _narrow(algs: frozenset[str], alg: Optional[str]) -> frozenset[str]:
    if alg is None:
        return algs
    if alg not in algs:
        raise KeyError_(f"alg {alg} does not fit this key (it allows "
                        f"{', '.join(sorted(algs))})")
    return frozenset({alg})


def key_from_secret(kid: Optional[str], secret: bytes, alg: Optional[str] = None
                    ) -> SigningKey:
    algs = frozenset(a for a, n in _HMAC_MIN.items() if len(secret) >= n)
    if not algs:
        raise KeyError_(f"symmetric key of {len(secret)} bytes is too short (HS256 needs "
                        f"at least 32)")
    return SigningKey(kid, "oct", bytes(secret), _narrow(algs, alg))


def _b64(text: str) -> bytes:
    """Standard or URL-safe base64, padding optional."""
    t = text.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(t + "=" * (-len(t) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise KeyError_("not base64") from None


def key_from_rsa(kid: Optional[str], n: str, e: str) -> SigningKey:
    """APIM's `n`/`e` attributes: the modulus and exponent, base64url (JWK encoding)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        numbers = rsa.RSAPublicNumbers(int.from_bytes(_b64(e), "big"),
                                       int.from_bytes(_b64(n), "big"))
        return _from_public(kid, numbers.public_key())
    except ValueError as exc:
        raise KeyError_(f"bad RSA modulus/exponent: {exc}") from None


def key_from_pem(kid: Optional[str], pem: str) -> SigningKey:
    """A PEM certificate (its public key) or a PEM public key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    data = pem.strip().encode("ascii", "replace")
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            pub = x509.load_pem_x509_certificate(data).public_key()
        else:
            pub = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise KeyError_(f"not a PEM certificate or public key ({exc})") from None
    return _from_public(kid, pub)


def key_from_secret_text(kid: Optional[str], text: str) -> SigningKey:
    """APIM's key element text: a base64-encoded symmetric key."""
    return key_from_secret(kid, _b64(text))


def key_from_jwk(jwk: Mapping[str, Any]) -> SigningKey:
    """One key of a JWKS (RFC 7517).  Keys meant for encryption (`use: enc`) are refused."""
    if not isinstance(jwk, Mapping):
        raise KeyError_("a JWK is a JSON object")
    if jwk.get("use", "sig") != "sig":
        raise KeyError_(f"use {jwk.get('use')!r} is not sig")
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise KeyError_("kid is not a string")
    alg = jwk.get("alg")
    if alg is not None and alg not in ALGORITHMS:
        raise KeyError_(f"unsupported alg {alg!r}")
    import jwt

    try:
        parsed = jwt.PyJWK(dict(jwk), algorithm=alg)
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError) as exc:
        raise KeyError_(f"bad JWK ({exc})") from None
    if jwk.get("kty") == "oct":
        return key_from_secret(kid, parsed.key, alg)
    return _from_public(kid, parsed.key, alg)


_JWS: Any = None     # jwt.PyJWS(), made with the first key (see _jws)
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


def read_header(token: str) -> Optional[dict]:
    """The JOSE header of a compact token, to pick the key (None when it is not one).  Only
    a lookup aid: `verify` has PyJWT parse and check the whole token again.  (PyJWT's own
    get_unverified_header decodes all three segments, byte by byte: 10x the cost.)"""
    seg = token.partition(".")[0]
    if not _B64URL.fullmatch(seg):
        return None
    try:
        header = json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))
    except (ValueError, binascii.Error):
        return None
    return header if isinstance(header, dict) else None


def _jws() -> Any:
    global _JWS
    if _JWS is None:
        import jwt
        _JWS = jwt.PyJWS()
    return _JWS


def verify(token: str, alg: str, key: SigningKey) -> Optional[bytes]:
    """The token's payload when its signature checks out with `key` under `alg` (PyJWT's
    JWS verification); None (never an exception) when it does not, or when `alg` is not
    one the key may verify."""
    if alg not in key.algorithms:
        return None
    import jwt  # a lookup in sys.modules after the first call

    try:
        return (_JWS or _jws()).decode_complete(token, key.key, algorithms=[alg])["payload"]
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
