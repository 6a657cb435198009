"""Signing keys (gateway/identity/keys.py): which algorithms each key type may verify, the
refusals made before any cryptography (alg none, HMAC with an asymmetric key, a curve's
wrong ES algorithm), weak keys, and every supported encoding (JWK, n/e, PEM certificate,
PEM public key, base64 secret)."""

from __future__ import annotations

import base64
import datetime

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from apigw_core.gateway.identity.keys import (KeyError_, key_from_jwk, key_from_pem,
                                              key_from_rsa, key_from_secret,
                                              key_from_secret_text, verify)
from oidc import Key


def _cert(k: Key) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(k.public).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(k.private, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize("make, algs", [
    (lambda: Key.rsa(), {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}),
    (lambda: Key.ec(curve="P-256"), {"ES256"}),
    (lambda: Key.ec(curve="P-384"), {"ES384"}),
    (lambda: Key.ec(curve="P-521"), {"ES512"}),
    (lambda: Key.ed25519(), {"EdDSA"}),
    (lambda: Key.hmac(size=32), {"HS256"}),
    (lambda: Key.hmac(size=64), {"HS256", "HS384", "HS512"}),
])
def test_each_key_type_allows_its_algorithms(make, algs):
    k = make()
    sk = key_from_jwk(k.jwk())
    assert sk.algorithms == algs and sk.kid == k.kid
    for alg in algs:
        assert verify(k.sign({"a": 1}, alg=alg), alg, sk) == b'{"a":1}'


def test_a_jwk_alg_narrows_the_set():
    k = Key.rsa()
    sk = key_from_jwk(dict(k.jwk(), alg="PS256"))
    assert sk.algorithms == {"PS256"}
    assert verify(k.sign({}, alg="RS256"), "RS256", sk) is None


def test_alg_none_and_hmac_with_an_rsa_key_are_refused_before_verifying():
    k = Key.rsa()
    sk = key_from_jwk(k.jwk())
    unsigned = jwt.encode({"a": 1}, None, algorithm="none")
    assert verify(unsigned, "none", sk) is None
    # the confusion attack: the RSA public key (PEM) used as an HMAC secret
    forged = jwt.api_jws.PyJWS().encode(b'{"a":1}', b"x" * 32, algorithm="HS256")
    assert verify(forged, "HS256", sk) is None


def test_a_wrong_signature_or_key_does_not_verify():
    k, other = Key.ec(curve="P-256"), Key.ec(curve="P-256")
    assert verify(other.sign({}), "ES256", key_from_jwk(k.jwk())) is None
    tok = k.sign({"a": 1})
    head, body, sig = tok.split(".")
    tampered = ".".join([head, base64.urlsafe_b64encode(b'{"a":2}').decode().rstrip("="), sig])
    assert verify(tampered, "ES256", key_from_jwk(k.jwk())) is None


def test_pem_certificate_public_key_and_n_e_load_the_same_key():
    k = Key.rsa("r")
    tok = k.sign({"x": 1})
    j = k.jwk()
    for sk in (key_from_pem("r", _cert(k)), key_from_pem("r", k.pem()),
               key_from_rsa("r", j["n"], j["e"])):
        assert sk.kind == "RSA" and verify(tok, "RS256", sk) is not None
    e = Key.ec()
    assert key_from_pem("e", _cert(e)).algorithms == {"ES256"}


def test_symmetric_keys_from_base64_text():
    k = Key.hmac(size=48)
    sk = key_from_secret_text("h", k.secret_b64())
    assert sk.algorithms == {"HS256", "HS384"}
    assert verify(k.sign({}, alg="HS384"), "HS384", sk) is not None


@pytest.mark.parametrize("build, message", [
    (lambda: key_from_secret("h", b"short"), "too short"),
    (lambda: key_from_secret_text("h", "***"), "not base64"),
    (lambda: key_from_pem("p", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"),
     "not a PEM"),
    (lambda: key_from_jwk(Key.rsa(bits=1024).jwk()), "too weak"),
    (lambda: key_from_jwk(dict(Key.ec().jwk(), alg="ES384")), "does not fit"),
    (lambda: key_from_jwk({"kty": "RSA", "n": "AQAB"}), "bad JWK"),
    (lambda: key_from_jwk(dict(Key.rsa().jwk(), alg="none")), "unsupported alg"),
])
def test_unusable_keys_are_refused_with_a_reason(build, message):
    with pytest.raises(KeyError_, match=message):
        build()
