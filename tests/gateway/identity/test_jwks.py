"""The OpenID provider key cache's decisions (gateway/identity/jwks.py), on a fake clock:
keys by kid, freshness (1 h or the response's max-age), the unknown-kid refetch rule (at
most once per 5 min, joining the fetch in flight), failures that keep the last good keys,
and the retry schedule of a provider that never answered."""

from __future__ import annotations

import json

import pytest

from apigw_core.gateway.identity.jwks import (DEFAULT_MAX_AGE, REFETCH_INTERVAL, JwksError,
                                              Provider, max_age_of, parse_discovery,
                                              parse_jwks)
from oidc import Key

URL = "https://idp.test/.well-known/openid-configuration"
DISCOVERY = json.dumps({"issuer": "https://idp.test",
                        "jwks_uri": "https://idp.test/keys"}).encode()


def jwks(*keys: Key) -> bytes:
    return json.dumps({"keys": [k.jwk() for k in keys]}).encode()


@pytest.fixture(scope="module")
def k1() -> Key:
    return Key.rsa("k1")


@pytest.fixture(scope="module")
def k2() -> Key:
    return Key.ec("k2")


def loaded(k: Key, now: float = 1000.0, cache_control=None) -> Provider:
    p = Provider(URL)
    assert p.due(now)
    assert p.begin(now)
    p.fetched(now, DISCOVERY, jwks(k), cache_control)
    return p


def test_a_new_provider_is_due_now_and_has_no_keys():
    p = Provider(URL)
    assert not p.usable and p.due(0.0) and p.wait(0.0) == 0.0
    assert p.lookup("k1") is None


def test_fetched_keys_are_indexed_by_kid_and_fresh_for_an_hour(k1):
    p = loaded(k1)
    assert p.usable and p.lookup("k1").kind == "RSA" and p.lookup("k2") is None
    assert p.issuer == "https://idp.test" and p.jwks_uri == "https://idp.test/keys"
    assert not p.due(1000.0 + DEFAULT_MAX_AGE - 1)
    assert p.wait(1000.0) == DEFAULT_MAX_AGE
    assert p.due(1000.0 + DEFAULT_MAX_AGE)


@pytest.mark.parametrize("header, age", [
    ("public, max-age=120", 120.0), ("max-age=0", 10.0), ("no-store", 10.0),
    ("max-age=999999999", 86400.0), ("private", DEFAULT_MAX_AGE), (None, DEFAULT_MAX_AGE)])
def test_the_responses_max_age_sets_freshness_within_bounds(k1, header, age):
    assert loaded(k1, cache_control=header).max_age == age


def test_max_age_of_parses_cache_control():
    assert max_age_of('max-age="30", public') == 30.0
    assert max_age_of("s-maxage=5") is None
    assert max_age_of("") is None


def test_single_flight_a_second_begin_joins(k1):
    p = Provider(URL)
    assert p.begin(0.0)
    assert not p.begin(0.0) and not p.due(0.0)
    assert p.fetches == 1
    p.fetched(1.0, DISCOVERY, jwks(k1))
    assert not p.fetching and p.begin(2.0)


def test_unknown_kid_refetch_at_most_once_per_five_minutes(k1, k2):
    p = loaded(k1, now=0.0)
    # the load fetch does not count: a rotation right after start is picked up at once
    assert p.may_refetch(1.0)
    assert p.begin(1.0, kid_miss=True)
    assert p.may_refetch(1.5)             # in flight: join it
    p.fetched(2.0, DISCOVERY, jwks(k1, k2))
    assert p.lookup("k2") is not None
    assert not p.may_refetch(2.0 + 1)
    assert not p.may_refetch(1.0 + REFETCH_INTERVAL - 0.001)
    assert p.may_refetch(1.0 + REFETCH_INTERVAL)


def test_a_failure_keeps_the_last_good_keys_and_retries_every_minute(k1):
    p = loaded(k1, now=0.0)
    key = p.lookup("k1")
    assert p.begin(DEFAULT_MAX_AGE)
    p.failed(DEFAULT_MAX_AGE, "connection refused")
    assert p.lookup("k1") is key and p.usable
    assert p.last_error == "connection refused"
    assert p.wait(DEFAULT_MAX_AGE) == 60.0
    assert p.due(DEFAULT_MAX_AGE + 60)


def test_a_provider_that_never_answered_retries_with_backoff():
    p = Provider(URL)
    waits = []
    now = 0.0
    for _ in range(9):
        assert p.due(now) and p.begin(now)
        p.failed(now, "down")
        waits.append(p.wait(now))
        now += waits[-1]
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert not p.usable


def test_a_bad_document_fails_the_fetch_and_changes_nothing(k1):
    p = loaded(k1, now=0.0)
    key = p.lookup("k1")
    for disc, body in [(b"not json", jwks(k1)), (DISCOVERY, b"{}"),
                       (DISCOVERY, json.dumps({"keys": [{"kty": "RSA", "n": "x"}]}).encode())]:
        assert p.begin(10.0)
        with pytest.raises(JwksError):
            p.fetched(10.0, disc, body)
        assert p.lookup("k1") is key and not p.fetching and p.failures >= 1


def test_a_refetch_keeps_unchanged_key_objects_and_drops_withdrawn_ones(k1, k2):
    p = loaded(k1, now=0.0)
    old = p.lookup("k1")
    assert p.begin(5.0)
    p.fetched(5.0, DISCOVERY, jwks(k1, k2))
    assert p.lookup("k1") is old and p.current(old)
    assert p.begin(6.0)
    p.fetched(6.0, DISCOVERY, jwks(k2))
    assert p.lookup("k1") is None and not p.current(old)


def test_parse_jwks_skips_unusable_keys_and_says_why(k1):
    enc = dict(k1.jwk(), kid="e1", use="enc")
    weak = Key.rsa("weak", bits=1024).jwk()
    keys, skipped = parse_jwks(json.dumps({"keys": [k1.jwk(), enc, weak,
                                                    {"kty": "XYZ"}]}).encode())
    assert [k.kid for k in keys] == ["k1"]
    assert len(skipped) == 3 and "use 'enc'" in skipped[0] and "too weak" in skipped[1]


def test_parse_discovery_needs_an_http_jwks_uri():
    assert parse_discovery(DISCOVERY) == ("https://idp.test/keys", "https://idp.test")
    for bad in (b"[]", b'{"issuer": "x"}', b'{"jwks_uri": "file:///etc/passwd"}'):
        with pytest.raises(JwksError):
            parse_discovery(bad)
