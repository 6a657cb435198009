"""validate-jwt with an `openid-config` provider, in memory: the commands the policy yields
to the runtime.  An unknown kid yields one `RefreshKeys` (then the new key validates); once
the provider refused a refetch (5 min rule) the answer is at once, with no command; no
usable keys is 503 with the clear message (joining a load in flight first); a cached token
whose key the provider withdrew is verified again; providers are shared by URL."""

from __future__ import annotations

import json
import types

import pytest

from apigw_core.gateway.identity.jwks import REFETCH_INTERVAL, Provider
from apigw_core.gateway.pipeline.contract import PolicyError
from apigw_core.gateway.pipeline.policies.jwt import NO_KEYS_MESSAGE, RefreshKeys
from helpers import make_ctx
from oidc import Key
from policy_kit import compile_policy

URL = "https://idp.test/.well-known/openid-configuration"
DISCOVERY = json.dumps({"issuer": "https://idp.test",
                        "jwks_uri": "https://idp.test/keys"}).encode()
NOW = 1_800_000_000.0


def publish(p: Provider, now: float, *keys: Key, kid_miss: bool = False) -> None:
    """What the runtime does for a fetch: begin, then the documents."""
    if p.begin(now, kid_miss):
        p.fetched(now, DISCOVERY, json.dumps({"keys": [k.jwk() for k in keys]}).encode())


class IdP:
    """The runtime's side of RefreshKeys, in memory: serves `keys` when asked."""

    def __init__(self, provider: Provider, *keys: Key) -> None:
        self.provider, self.keys, self.commands = provider, list(keys), []
        self.now = NOW

    def run(self, policy, ctx):
        out = policy.apply(ctx)
        if not isinstance(out, types.GeneratorType):
            return out
        value = None
        while True:
            try:
                cmd = out.send(value)
            except StopIteration as stop:
                return stop.value
            assert isinstance(cmd, RefreshKeys) and cmd.provider is self.provider
            self.commands.append(cmd)
            p = cmd.provider
            if p.fetching:                     # the fetch in flight completes
                p.fetched(self.now, DISCOVERY, self.jwks())
            elif cmd.kid is not None and p.may_refetch(self.now):
                publish(p, self.now, *self.keys, kid_miss=True)

    def jwks(self) -> bytes:
        return json.dumps({"keys": [k.jwk() for k in self.keys]}).encode()


def make(**spec):
    p = compile_policy("validate-jwt", dict({"openid-config": {"url": URL}}, **spec))
    p.clock = lambda: NOW
    return p


def claims(**extra):
    return dict({"sub": "alice", "exp": NOW + 600}, **extra)


def bearer(t: str) -> dict:
    return {"Authorization": f"Bearer {t}"}


@pytest.fixture(scope="module")
def k1() -> Key:
    return Key.rsa("k1")


@pytest.fixture(scope="module")
def k2() -> Key:
    return Key.ec("k2")


def test_an_unknown_kid_yields_one_refresh_then_the_new_key_validates(k1, k2):
    pol = make()
    prov = pol.providers[0]
    publish(prov, NOW - 100, k1)
    idp = IdP(prov, k1, k2)         # the provider has rotated in k2
    assert idp.run(pol, make_ctx(headers=bearer(k1.sign(claims())))) is None
    assert idp.commands == []
    ctx = make_ctx(headers=bearer(k2.sign(claims())))
    assert idp.run(pol, ctx) is None and ctx.jwt["sub"] == "alice"
    assert [(c.kid) for c in idp.commands] == ["k2"]
    assert prov.last_kid_refetch == NOW


def test_within_five_minutes_an_unknown_kid_is_refused_without_a_command(k1):
    pol = make()
    prov = pol.providers[0]
    publish(prov, NOW - 10, k1)
    prov.last_kid_refetch = NOW - REFETCH_INTERVAL + 1
    idp = IdP(prov, k1)
    with pytest.raises(PolicyError) as e:
        idp.run(pol, make_ctx(headers=bearer(Key.rsa("k9").sign(claims()))))
    assert e.value.reason == "TokenSignatureKeyNotFound" and idp.commands == []


def test_after_a_refetch_that_did_not_bring_the_kid_it_is_key_not_found(k1):
    pol = make()
    prov = pol.providers[0]
    publish(prov, NOW - 10, k1)
    idp = IdP(prov, k1)
    for _ in range(3):   # many tokens with random kids: one refetch, not one each
        with pytest.raises(PolicyError) as e:
            idp.run(pol, make_ctx(headers=bearer(Key.ec("random").sign(claims()))))
        assert e.value.reason == "TokenSignatureKeyNotFound"
    assert len(idp.commands) == 1 and prov.fetches == 2


def test_no_usable_keys_is_503_with_a_clear_message(k1):
    pol = make()
    prov = pol.providers[0]
    assert prov.begin(NOW)
    prov.failed(NOW, "connection refused")     # never answered
    with pytest.raises(PolicyError) as e:
        IdP(prov).run(pol, make_ctx(headers=bearer(k1.sign(claims()))))
    assert (e.value.status, e.value.message) == (503, NO_KEYS_MESSAGE)
    assert e.value.headers == ()


def test_no_keys_yet_but_a_load_in_flight_joins_it(k1):
    pol = make()
    prov = pol.providers[0]
    assert prov.begin(NOW)                      # the load fetch is running
    idp = IdP(prov, k1)
    ctx = make_ctx(headers=bearer(k1.sign(claims())))
    assert idp.run(pol, ctx) is None
    assert [c.kid for c in idp.commands] == [None]


def test_a_cached_token_is_verified_again_once_its_key_is_withdrawn(k1, k2):
    pol = make()
    prov = pol.providers[0]
    publish(prov, NOW - 10, k1, k2)
    tok = k1.sign(claims())
    assert IdP(prov).run(pol, make_ctx(headers=bearer(tok))) is None
    publish(prov, NOW - 5, k2)                   # k1 withdrawn (the refresh)
    prov.last_kid_refetch = NOW
    with pytest.raises(PolicyError) as e:
        IdP(prov).run(pol, make_ctx(headers=bearer(tok)))
    assert e.value.reason == "TokenSignatureKeyNotFound"


def test_static_keys_and_a_provider_together(k1, k2):
    pol = make(**{"issuer-signing-keys": [{"id": "k2", "public-key": k2.pem()}]})
    prov = pol.providers[0]
    assert prov.begin(NOW)
    prov.failed(NOW, "down")                    # the provider is down: static keys serve
    assert IdP(prov).run(pol, make_ctx(headers=bearer(k2.sign(claims())))) is None


def test_bind_shares_one_provider_per_url():
    a, b = make(), make()
    shared = {URL: Provider(URL)}
    a.bind(shared)
    b.bind(shared)
    assert a.providers[0] is b.providers[0] is shared[URL]
