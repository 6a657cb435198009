"""validate-jwt in memory: token sources and schemes, every key type, every failure reason
with APIM's message and RFC 6750's WWW-Authenticate, clock skew at the edges, alg none and
the HMAC-with-RSA-key confusion, required claims (all / any / separator), the verified-token
cache (signature once, lifetime every time), claims in expressions and the output variable,
and the config errors with their paths.  Tokens are signed by keys the tests generate."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from apigw_core.gateway.pipeline.contract import PolicyError
from apigw_core.gateway.pipeline.expressions import compile_template
from apigw_core.gateway.pipeline.policies import jwt as jwt_policy
from helpers import make_ctx
from oidc import Key
from policy_kit import compile_policy, config_errors, run

NOW = 1_800_000_000.0
AUD, ISS = "api://orders", "https://idp.test"


@pytest.fixture(scope="module")
def keys() -> dict[str, Key]:
    return {"rsa": Key.rsa("rsa1"), "ps": Key.rsa("ps1", alg="PS256"),
            "p256": Key.ec("p256", "P-256"), "p384": Key.ec("p384", "P-384"),
            "p521": Key.ec("p521", "P-521"), "ed": Key.ed25519("ed1"),
            "hs": Key.hmac("hs1", 64, "HS512"), "other": Key.rsa("rsa1")}


def static(keys: dict[str, Key]) -> list[dict]:
    k = keys
    rsa_jwk = k["rsa"].jwk()
    return [{"id": "rsa1", "n": rsa_jwk["n"], "e": rsa_jwk["e"]},
            {"id": "ps1", "public-key": k["ps"].pem()},
            {"id": "p256", "public-key": k["p256"].pem()},
            {"id": "p384", "public-key": k["p384"].pem()},
            {"id": "p521", "public-key": k["p521"].pem()},
            {"id": "ed1", "public-key": k["ed"].pem()},
            {"id": "hs1", "value": k["hs"].secret_b64()}]


def policy(keys, clock: float = NOW, **spec):
    body = {"issuer-signing-keys": static(keys)}
    body.update(spec)
    p = compile_policy("validate-jwt", body)
    p.clock = lambda: clock
    return p


def claims(**extra):
    c = {"sub": "alice", "iss": ISS, "aud": AUD, "exp": NOW + 600, "iat": NOW - 10}
    c.update(extra)
    return {k: v for k, v in c.items() if v is not None}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def refused(p, ctx) -> PolicyError:
    with pytest.raises(PolicyError) as e:
        run(p, ctx)
    return e.value


# --- accepted ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["rsa", "ps", "p256", "p384", "p521", "ed", "hs"])
def test_every_key_type_validates_its_tokens(keys, name):
    p = policy(keys)
    ctx = make_ctx(headers=bearer(keys[name].sign(claims())))
    assert run(p, ctx) is None
    assert ctx.jwt["sub"] == "alice"


def test_claims_read_in_expressions_and_the_output_variable(keys):
    p = policy(keys, **{"output-token-variable-name": "tok"})
    ctx = make_ctx(headers=bearer(keys["rsa"].sign(claims(scp="read write",
                                                          roles=["a", "b"]))))
    run(p, ctx)
    errors: list[str] = []
    t = compile_template("{jwt.claims.sub}|{jwt.claims.scp}|{jwt.claims.roles}|"
                         "{jwt.claims.none}|{variables.tok.claims.sub}|"
                         "{variables.tok.algorithm}",
                         "t", errors)
    assert errors == [] and t.render(ctx) == "alice|read write|a,b||alice|RS256"
    assert ctx.variables["tok"]["subject"] == "alice"
    assert compile_template("{jwt.sub}", "t", errors) is None
    assert "jwt.claims.NAME" in errors[-1]


def test_without_require_scheme_a_bare_token_or_a_bearer_one_is_taken(keys):
    p = policy(keys)
    tok = keys["rsa"].sign(claims())
    assert run(p, make_ctx(headers={"Authorization": tok})) is None
    assert run(p, make_ctx(headers={"Authorization": f"bearer  {tok}"})) is None


def test_query_parameter_and_token_value(keys):
    tok = keys["p256"].sign(claims())
    q = policy(keys, **{"query-parameter-name": "access_token"})
    assert run(q, make_ctx(query=f"a=1&access_token={tok}")) is None
    assert refused(q, make_ctx(headers=bearer(tok))).reason == "TokenNotPresent"
    v = policy(keys, **{"token-value": "{request.headers.x-token}"})
    assert run(v, make_ctx(headers={"X-Token": tok})) is None
    assert refused(v, make_ctx()).message == "JWT not present."


# --- schemes ------------------------------------------------------------------------------

def test_require_scheme_is_checked_on_authorization(keys):
    p = policy(keys, **{"require-scheme": "Bearer"})
    tok = keys["rsa"].sign(claims())
    assert run(p, make_ctx(headers=bearer(tok))) is None
    for value in (tok, f"Basic {tok}", "Bearer", "Bearer "):
        e = refused(p, make_ctx(headers={"Authorization": value}))
        assert (e.status, e.reason, e.message) == (401, "TokenNotPresent", "JWT not present.")
        assert e.headers == ((b"www-authenticate", b"Bearer"),)


def test_require_scheme_is_checked_on_a_custom_header_too(keys):
    # the field note: a custom header-name must not silently skip the scheme check
    p = policy(keys, **{"header-name": "X-Auth", "require-scheme": "Token"})
    tok = keys["rsa"].sign(claims())
    assert run(p, make_ctx(headers={"X-Auth": f"Token {tok}"})) is None
    for value in (tok, f"Bearer {tok}", f"Tokens {tok}"):
        e = refused(p, make_ctx(headers={"X-Auth": value}))
        assert e.reason == "TokenNotPresent", value
        assert e.headers == ((b"www-authenticate", b"Token"),)
    assert refused(p, make_ctx(headers=bearer(tok))).reason == "TokenNotPresent"


# --- refusals -----------------------------------------------------------------------------

def _www(reason_text: str) -> tuple:
    return ((b"www-authenticate", b'Bearer error="invalid_token", error_description="'
             + reason_text.encode() + b'"'),)


def test_expired(keys):
    e = refused(policy(keys), make_ctx(headers=bearer(keys["rsa"].sign(claims(exp=NOW - 1)))))
    assert (e.status, e.reason) == (401, "TokenExpired")
    assert e.message == "Lifetime validation failed. The token is expired. Access denied."
    assert e.headers == _www("The token is expired")


def test_signature_invalid_tampered_or_other_key(keys):
    p = policy(keys)
    tok = keys["rsa"].sign(claims())
    head, _, sig = tok.split(".")
    body = base64.urlsafe_b64encode(json.dumps(claims(sub="mallory")).encode()).rstrip(b"=")
    for bad in (f"{head}.{body.decode()}.{sig}", keys["other"].sign(claims())):
        e = refused(p, make_ctx(headers=bearer(bad)))
        assert e.reason == "TokenSignatureInvalid"
        assert e.message == "Signature validation failed. Access denied."


def test_alg_none_is_always_refused(keys):
    unsigned = jwt.encode(claims(), None, algorithm="none", headers={"kid": "rsa1"})
    e = refused(policy(keys), make_ctx(headers=bearer(unsigned)))
    assert e.reason == "TokenSignatureInvalid" and "not signed" in e.message
    assert config_errors("validate-jwt", {"issuer-signing-keys": static(keys),
                                          "require-signed-tokens": "false"}) == [
        "apis[0].policies.inbound[0].validate-jwt.require-signed-tokens: false is not "
        "supported: unsigned tokens (alg none) are always refused"]


def test_hmac_signed_with_the_rsa_public_key_is_refused(keys):
    # RS256 -> HS256 confusion: the attacker signs with the public key's PEM as secret
    pem = keys["rsa"].pem().encode()
    forged = jwt.api_jws.PyJWS().encode(json.dumps(claims(sub="mallory")).encode(),
                                        b"\0" * 32, algorithm="HS256",
                                        headers={"kid": "rsa1"})
    head, body, _ = forged.split(".")
    import hashlib
    import hmac as hmac_mod
    sig = hmac_mod.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    forged = f"{head}.{body}." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()
    e = refused(policy(keys), make_ctx(headers=bearer(forged)))
    assert e.reason == "TokenSignatureInvalid"
    assert "algorithm HS256 is not allowed" in e.message


def test_an_ec_key_refuses_another_curves_algorithm(keys):
    tok = jwt.encode(claims(), keys["p256"].private, algorithm="ES256",
                     headers={"kid": "p384"})
    e = refused(policy(keys), make_ctx(headers=bearer(tok)))
    assert e.reason == "TokenSignatureInvalid" and "ES256 is not allowed" in e.message


def test_unknown_kid(keys):
    tok = Key.rsa("nope").sign(claims())
    e = refused(policy(keys), make_ctx(headers=bearer(tok)))
    assert e.reason == "TokenSignatureKeyNotFound"
    assert e.message == ('Signature validation failed. Unable to match key: kid: "nope". '
                         'Access denied.')
    assert e.headers == _www("The token signing key was not found")


def test_a_token_without_kid_tries_every_key_of_its_algorithm(keys):
    k = keys["p384"]
    tok = jwt.encode(claims(), k.private, algorithm="ES384")
    assert run(policy(keys), make_ctx(headers=bearer(tok))) is None
    e = refused(policy(keys), make_ctx(headers=bearer(jwt.encode(
        claims(), Key.ec(None, "P-384").private, algorithm="ES384"))))
    assert e.reason == "TokenSignatureInvalid"


def test_a_key_without_id_is_tried_for_any_kid(keys):
    k = Key.ec("whatever", "P-256")
    p = compile_policy("validate-jwt", {"issuer-signing-keys": [{"public-key": k.pem()}]})
    p.clock = lambda: NOW
    assert run(p, make_ctx(headers=bearer(k.sign(claims())))) is None
    e = refused(p, make_ctx(headers=bearer(Key.ec("x", "P-256").sign(claims()))))
    assert e.reason == "TokenSignatureInvalid"


def test_audience_and_issuer(keys):
    p = policy(keys, audiences=["api://a", AUD], issuers={"issuer": [ISS]})
    k = keys["ed"]
    assert run(p, make_ctx(headers=bearer(k.sign(claims(aud=["x", AUD]))))) is None
    for c, reason in [(claims(aud="api://other"), "TokenAudienceNotAllowed"),
                      (claims(aud=None), "TokenAudienceNotAllowed"),
                      (claims(iss="https://evil"), "TokenIssuerNotAllowed"),
                      (claims(iss=None), "TokenIssuerNotAllowed")]:
        assert refused(p, make_ctx(headers=bearer(k.sign(c)))).reason == reason
    e = refused(p, make_ctx(headers=bearer(k.sign(claims(iss="https://evil")))))
    assert e.message == ("Issuer validation failed. Issuer: 'https://evil'. Did not match "
                         "the allowed issuers. Access denied.")


@pytest.mark.parametrize("token, reason, message", [
    ("abc", "JwtInvalid", "JWT not well formed. Access denied."),
    ("a.b.c", "JwtInvalid", "JWT not well formed. Access denied."),
    ("a.b.c.d.e", "JwtInvalid", "JWT is encrypted (JWE); encrypted tokens are not "
                                "supported. Access denied."),
])
def test_malformed_tokens(keys, token, reason, message):
    e = refused(policy(keys), make_ctx(headers=bearer(token)))
    assert (e.reason, e.message) == (reason, message)


def test_expiration_required_unless_turned_off(keys):
    tok = keys["rsa"].sign(claims(exp=None))
    e = refused(policy(keys), make_ctx(headers=bearer(tok)))
    assert e.reason == "JwtInvalid" and "no expiration time" in e.message
    assert run(policy(keys, **{"require-expiration-time": False}),
               make_ctx(headers=bearer(tok))) is None


def test_failed_validation_httpcode_and_message(keys):
    p = policy(keys, **{"failed-validation-httpcode": 403,
                        "failed-validation-error-message": "Nope"})
    e = refused(p, make_ctx())
    assert (e.status, e.reason, e.message, e.headers) == (403, "TokenNotPresent", "Nope", ())
    e = refused(p, make_ctx(headers=bearer(keys["rsa"].sign(claims(exp=NOW - 5)))))
    assert (e.status, e.reason, e.message) == (403, "TokenExpired", "Nope")


# --- clock skew -----------------------------------------------------------------------------

@pytest.mark.parametrize("skew, offset, ok", [
    (0, -0.001, True), (0, 0, False),               # valid while now < exp
    (30, 29.999, True), (30, 30, False),             # ... + clock-skew
    ("30s", 29.9, True),
])
def test_clock_skew_at_the_exp_edge(keys, skew, offset, ok):
    exp = NOW
    p = policy(keys, clock=exp + offset, **{"clock-skew": skew})
    ctx = make_ctx(headers=bearer(keys["rsa"].sign(claims(exp=exp))))
    if ok:
        assert run(p, ctx) is None
    else:
        assert refused(p, ctx).reason == "TokenExpired"


@pytest.mark.parametrize("skew, offset, ok", [
    (0, 0, True), (0, -0.001, False),                # valid once now >= nbf
    (60, -60, True), (60, -60.001, False),           # ... - clock-skew
])
def test_clock_skew_at_the_nbf_edge(keys, skew, offset, ok):
    nbf = NOW + 100
    p = policy(keys, clock=nbf + offset, **{"clock-skew": skew})
    ctx = make_ctx(headers=bearer(keys["rsa"].sign(claims(nbf=nbf, exp=nbf + 600))))
    if ok:
        assert run(p, ctx) is None
    else:
        e = refused(p, ctx)
        assert e.reason == "JwtInvalid" and "not yet valid" in e.message


# --- required claims ------------------------------------------------------------------------

def test_required_claims_missing_are_listed(keys):
    p = policy(keys, **{"required-claims": [{"name": "a"}, {"name": "sub"}, {"name": "b"}]})
    e = refused(p, make_ctx(headers=bearer(keys["rsa"].sign(claims()))))
    assert (e.reason, e.message) == (
        "TokenClaimNotFound", "JWT is missing the following claims: a, b. Access denied.")


@pytest.mark.parametrize("rule, value, ok", [
    ({"match": "all", "separator": " ", "value": ["read", "write"]}, "read write", True),
    ({"match": "all", "separator": " ", "value": ["read", "write"]}, "read", False),
    ({"match": "any", "separator": " ", "value": ["admin", "write"]}, "read write", True),
    ({"match": "any", "separator": " ", "value": ["admin"]}, "read write", False),
    ({"value": ["read write"]}, "read write", True),         # no separator: whole value
    ({"value": ["read"]}, "read write", False),
    ({"match": "any", "value": ["b"]}, ["a", "b"], True),    # an array claim: its items
    ({"value": ["a", "c"]}, ["a", "b"], False),
    ({"separator": ",", "value": ["x"]}, "x,y", True),
])
def test_required_claim_values(keys, rule, value, ok):
    p = policy(keys, **{"required-claims": {"claim": [dict(rule, name="scp")]}})
    ctx = make_ctx(headers=bearer(keys["rsa"].sign(claims(scp=value))))
    if ok:
        assert run(p, ctx) is None
    else:
        e = refused(p, ctx)
        shown = value if isinstance(value, str) else ",".join(value)
        assert (e.reason, e.message) == (
            "TokenClaimValueNotAllowed",
            f"Claim scp value of {shown} is not allowed. Access denied.")


# --- the verified-token cache ----------------------------------------------------------------

def test_a_repeated_token_is_verified_once_but_expires_on_time(keys, monkeypatch):
    calls = []
    real = jwt_policy.verify
    monkeypatch.setattr(jwt_policy, "verify", lambda *a: calls.append(1) or real(*a))
    now = [NOW]
    p = policy(keys, **{"clock-skew": 5})
    p.clock = lambda: now[0]
    tok = keys["rsa"].sign(claims(exp=NOW + 10))
    for _ in range(5):
        ctx = make_ctx(headers=bearer(tok))
        assert run(p, ctx) is None and ctx.jwt["sub"] == "alice"
    assert len(calls) == 1
    now[0] = NOW + 14.9
    assert run(p, make_ctx(headers=bearer(tok))) is None
    now[0] = NOW + 15
    assert refused(p, make_ctx(headers=bearer(tok))).reason == "TokenExpired"
    assert len(calls) == 1


def test_the_cache_is_bounded(keys, monkeypatch):
    monkeypatch.setattr(jwt_policy, "CACHE_SIZE", 3)
    p = policy(keys)
    for i in range(5):
        run(p, make_ctx(headers=bearer(keys["hs"].sign(claims(n=i)))))
    assert len(p._cache) == 3


def test_failures_are_not_cached(keys, monkeypatch):
    calls = []
    real = jwt_policy.verify
    monkeypatch.setattr(jwt_policy, "verify", lambda *a: calls.append(1) or real(*a))
    p = policy(keys, audiences=["x"])
    tok = keys["rsa"].sign(claims())
    for _ in range(2):
        assert refused(p, make_ctx(headers=bearer(tok))).reason == "TokenAudienceNotAllowed"
    assert len(calls) == 2


# --- config errors -------------------------------------------------------------------------

P = "apis[0].policies.inbound[0].validate-jwt"


@pytest.mark.parametrize("body, error", [
    ({}, f"{P}: no keys to validate with: give openid-config or issuer-signing-keys"),
    ({"header-name": "a", "token-value": "x"},
     f"{P}: expected exactly one of header-name, query-parameter-name, token-value "
     f"(got header-name, token-value)"),
    ({"query-parameter-name": "t", "require-scheme": "Bearer"},
     f"{P}.require-scheme: only applies to a token taken from a header"),
    ({"clock-skew": -1}, f"{P}.clock-skew: expected seconds from 0 to 86400 (or a duration: "
                         f"30s), got -1"),
    ({"failed-validation-httpcode": 200},
     f"{P}.failed-validation-httpcode: expected an integer from 400 to 599, got 200"),
    ({"decryption-keys": []}, f"{P}.decryption-keys: not supported (encrypted tokens, JWE)"),
    ({"issuer-signing-keys": [{"id": "x", "value": "c2hvcnQ="}]},
     f"{P}.issuer-signing-keys[0].value: symmetric key of 5 bytes is too short (HS256 "
     f"needs at least 32)"),
    ({"issuer-signing-keys": [{"id": "x", "n": "AQAB"}]},
     f"{P}.issuer-signing-keys[0]: n and e go together (an RSA modulus and exponent)"),
    ({"issuer-signing-keys": [{"id": "x", "public-key": "nope"}]},
     f"{P}.issuer-signing-keys[0].public-key: not a PEM certificate or public key"),
    ({"openid-config": {"url": "ftp://x"}},
     f"{P}.openid-config.url: expected an http(s) URL, got 'ftp://x'"),
    ({"openid-config": {"uri": "https://x"}},
     f"{P}.openid-config.uri: unknown attribute (expected one of url)"),
    ({"required-claims": [{"name": "a", "match": "some"}]},
     f"{P}.required-claims[0].match: expected one of all, any"),
    ({"audience": ["a"]}, f"{P}.audience: unknown attribute"),
])
def test_config_errors_name_the_field(keys, body, error):
    if "issuer-signing-keys" not in body and body and "openid-config" not in body:
        body = dict(body, **{"issuer-signing-keys": static(keys)[:1]})
    errors = config_errors("validate-jwt", body)
    assert any(e.startswith(error) for e in errors), errors


def test_only_inbound(keys):
    from apigw_core.gateway.pipeline.registry import lookup
    assert lookup("validate-jwt").sections == frozenset({"inbound"})
