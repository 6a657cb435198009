"""Subscription access: every APIM rule of api-management-subscriptions.md, as data."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apim_model import gateway
from apigw_core.gateway import subscriptions as subs_mod
from apigw_core.gateway.subscriptions import (
    KEY_INVALID_MESSAGE, KEY_MISSING_MESSAGE, Access, Denied, SubscriptionIndex,
    subscription_errors, without_key,
)

STATES = ["suspended", "expired", "submitted", "rejected", "cancelled"]
DOC = {
    "apis": [
        {"name": "orders", "path": "/orders", "subscription-required": True},
        {"name": "catalog", "path": "/catalog", "subscription-required": True},
        {"name": "public", "path": "/public"},
        {"name": "internal", "path": "/internal"},
        {"name": "keys", "path": "/keys",
         "subscription-key": {"header": "X-Api-Key", "query": "key", "forward": False}},
        {"name": "root", "path": ""},
    ],
    "products": {
        "starter": {"apis": ["orders", "catalog", "internal"]},
        "free": {"apis": ["catalog", "public"], "subscription-required": False},
        "gold": {"apis": ["keys", "root"], "subscription-required": True},
    },
    "subscriptions": [
        {"id": "alice", "product": "starter", "primary-key": "alice-1", "secondary-key": "alice-2"},
        {"id": "bob", "api": "orders", "primary-key": "bob-1"},
        {"id": "ops", "scope": "all-apis", "primary-key": "ops-1", "secondary-key": "ops-2"},
        {"id": "carol", "product": "gold", "primary-key": "carol-1"},
        {"id": "dave", "product": "free", "primary-key": "dave-1"},
    ] + [{"id": s, "product": "starter", "primary-key": f"{s}-1", "state": s} for s in STATES],
}
CFG = gateway(DOC)
INDEX = SubscriptionIndex(CFG)
API = {a.name: a for a in CFG.apis}
PRODUCT = CFG.products
SUB = {s.id: s for s in CFG.subscriptions}


def resolve(api: str, header=None, query=None, **kw):
    return INDEX.resolve(API[api], header, query, **kw)


def invalid(api: str, host: str = "gw.example.com", header: str | None = None,
            scheme: str = "https") -> Denied:
    path = API[api].path
    header = header or API[api].subscription_key.header
    return Denied(401, "SubscriptionKeyInvalid", KEY_INVALID_MESSAGE, (
        (b"www-authenticate", f'AzureApiManagementKey realm="{scheme}://{host}{path}",'
                              f'name="{header}",type="header"'.encode()),))


def missing(api: str, **kw) -> Denied:
    d = invalid(api, **kw)
    return Denied(401, "SubscriptionKeyNotFound", KEY_MISSING_MESSAGE, d.headers)


def test_messages_are_apims() -> None:
    assert KEY_INVALID_MESSAGE == ("Access denied due to invalid subscription key. Make sure "
                                   "to provide a valid key for an active subscription.")
    assert KEY_MISSING_MESSAGE == ("Access denied due to missing subscription key. Make sure "
                                   "to include subscription key when making requests to an API.")


@pytest.mark.parametrize("key", ["alice-1", "alice-2", b"alice-1", b"alice-2"])
def test_product_key_primary_and_secondary(key) -> None:
    for api in ("orders", "catalog", "internal"):
        text = key.decode() if isinstance(key, bytes) else key
        assert resolve(api, key) == Access(SUB["alice"], PRODUCT["starter"], text)
        assert resolve(api, None, key) == Access(SUB["alice"], PRODUCT["starter"], text)


def test_product_key_on_an_api_outside_its_product_is_invalid() -> None:
    for api in ("public", "keys", "root"):
        assert resolve(api, "alice-1", host="gw.example.com") == invalid(api)


def test_api_scoped_key_has_no_product_context() -> None:
    assert resolve("orders", "bob-1") == Access(SUB["bob"], None, "bob-1")
    assert resolve("catalog", "bob-1", host="gw.example.com") == invalid("catalog")
    # an open API still refuses a key that is not valid for it (APIM checks any key sent)
    assert resolve("public", "bob-1", host="gw.example.com") == invalid("public")


@pytest.mark.parametrize("key", ["ops-1", "ops-2"])
def test_all_apis_key_opens_every_api_without_product(key: str) -> None:
    for api in API:
        assert resolve(api, key) == Access(SUB["ops"], None, key)


def test_key_of_an_open_product_still_gives_its_subscription() -> None:
    assert resolve("catalog", "dave-1") == Access(SUB["dave"], PRODUCT["free"], "dave-1")


@pytest.mark.parametrize("state", STATES)
def test_only_active_subscriptions_work(state: str) -> None:
    assert SUB[state].state == state
    assert resolve("orders", f"{state}-1", host="gw.example.com") == invalid("orders")
    assert resolve("orders", None, f"{state}-1", host="gw.example.com") == invalid("orders")


def test_unknown_key_is_invalid() -> None:
    assert resolve("orders", "nope", host="gw.example.com") == invalid("orders")
    assert resolve("orders", "alice-1 ", host="gw.example.com") == invalid("orders")
    assert resolve("orders", "ALICE-1", host="gw.example.com") == invalid("orders")


def test_header_wins_and_the_query_is_not_read_when_the_header_is_there() -> None:
    assert resolve("orders", "alice-1", "nope") == Access(SUB["alice"], PRODUCT["starter"],
                                                          "alice-1")
    assert resolve("orders", "nope", "alice-1", host="gw.example.com") == invalid("orders")
    assert resolve("orders", b"", "alice-1") == Access(SUB["alice"], PRODUCT["starter"],
                                                       "alice-1")   # empty header: absent


def test_no_key() -> None:
    # subscription required, no open product
    assert resolve("orders", host="gw.example.com") == missing("orders")
    # required by the API, but an open product contains it: that product's context
    assert resolve("catalog") == Access(None, PRODUCT["free"], None)
    assert resolve("public") == Access(None, PRODUCT["free"], None)
    # in a product that requires a key and no open one: required (see the module docstring)
    assert resolve("internal", host="gw.example.com") == missing("internal")
    assert resolve("root", host="gw.example.com") == missing("root")
    assert INDEX.requires_key("internal") and not INDEX.requires_key("catalog")


def test_api_in_no_product_and_not_required_is_open() -> None:
    cfg = gateway({"apis": [{"name": "open", "path": "/open"},
                            {"name": "closed", "path": "/closed", "subscription-required": True}],
                   "subscriptions": [{"id": "x", "scope": "all-apis", "primary-key": "k"}]})
    index = SubscriptionIndex(cfg)
    open_, closed = cfg.apis
    assert index.resolve(open_, None, None) == Access(None, None, None)
    assert index.resolve(open_, "k", None) == Access(cfg.subscriptions[0], None, "k")
    assert isinstance(index.resolve(closed, None, None), Denied)
    # without products or subscriptions at all, an API stays open
    bare = gateway({"apis": [{"name": "a", "path": "/a"}]})
    assert SubscriptionIndex(bare).resolve(bare.apis[0], None, None) == Access()


def test_www_authenticate_realm_and_header_name() -> None:
    d = resolve("keys", host=b"api.example.com:8443", scheme="http")
    assert d == missing("keys", host="api.example.com:8443", header="X-Api-Key", scheme="http")
    assert d.headers == ((b"www-authenticate", b'AzureApiManagementKey realm="http://api.'
                          b'example.com:8443/keys",name="X-Api-Key",type="header"'),)
    assert resolve("root", host="h").headers[0][1] == (
        b'AzureApiManagementKey realm="https://h",name="Ocp-Apim-Subscription-Key",'
        b'type="header"')
    # a hostile Host cannot break out of the quoted string
    evil = resolve("orders", host='h",x="y\\').headers[0][1]
    assert b'realm="https://h\\",x=\\"y\\\\/orders",' in evil


def test_resolve_request_reads_the_apis_header_and_query() -> None:
    def req(api, headers, query=b""):
        return INDEX.resolve_request(API[api], headers, query, host="gw.example.com")
    # header names arrive lower-case from the protocol layer; the config's case is irrelevant
    assert req("orders", [(b"ocp-apim-subscription-key", b"alice-2")]).subscription is SUB["alice"]
    assert req("orders", [], b"a=1&subscription-key=alice-1").key == "alice-1"
    assert req("orders", [], b"subscription%2Dkey=alice-1").key == "alice-1"   # encoded name
    assert req("orders", [(b"ocp-apim-subscription-key", b"bad")],
               b"subscription-key=alice-1") == invalid("orders")
    assert req("orders", [(b"ocp-apim-subscription-key", b"")],
               b"subscription-key=alice-1").key == "alice-1"
    # per-API names: the defaults no longer count on that API
    assert req("keys", [(b"x-api-key", b"carol-1")]).subscription is SUB["carol"]
    assert req("keys", [], b"key=carol-1").subscription is SUB["carol"]
    assert req("keys", [(b"ocp-apim-subscription-key", b"carol-1")],
               b"subscription-key=carol-1") == missing("keys", header="X-Api-Key")


def test_keys_compared_in_constant_time(monkeypatch) -> None:
    calls = []
    real = subs_mod.hmac.compare_digest
    monkeypatch.setattr(subs_mod.hmac, "compare_digest",
                        lambda a, b: calls.append((a, b)) or real(a, b))
    assert resolve("orders", "alice-1").subscription is SUB["alice"]
    assert calls == [(b"alice-1", b"alice-1")]


@given(st.text(min_size=1, max_size=20))
def test_random_keys_are_invalid(key: str) -> None:
    valid = {"alice-1", "alice-2", "bob-1", "ops-1", "ops-2"}
    got = resolve("orders", key, host="gw.example.com")
    assert got == (invalid("orders") if key not in valid else got)
    assert isinstance(got, Access) == (key in valid)


def test_without_key_when_forward_is_false() -> None:
    headers = [(b"host", b"h"), (b"x-api-key", b"carol-1"), (b"accept", b"*/*")]
    assert without_key(API["keys"], headers, b"/k/1?a=1&key=carol-1&key=x&b=2") == (
        [(b"host", b"h"), (b"accept", b"*/*")], b"/k/1?a=1&b=2")
    assert without_key(API["keys"], headers, b"/k/1?key=carol-1") == (
        [(b"host", b"h"), (b"accept", b"*/*")], b"/k/1")
    assert without_key(API["keys"], [], b"/k/1?keyx=1&k%65y=2") == ([], b"/k/1?keyx=1")
    # forward: true (the default, as APIM): the very same objects go on
    h = [(b"ocp-apim-subscription-key", b"alice-1")]
    target = b"/o?subscription-key=alice-1"
    fh, ft = without_key(API["orders"], h, target)
    assert fh is h and ft is target


def test_products_for() -> None:
    assert INDEX.products_for("catalog") == (PRODUCT["starter"], PRODUCT["free"])
    assert INDEX.products_for("nobody") == ()


def test_config_errors() -> None:
    bad = gateway({
        "apis": [{"name": "a", "path": "/a"}],
        "products": {"p": {"apis": ["a", "ghost"], "subscription-required": False},
                     "q": {"apis": ["a"], "subscription-required": False}},
        "subscriptions": [
            {"id": "s1", "product": "p", "primary-key": "k"},
            {"id": "s2", "product": "nope", "primary-key": "k"},
            {"id": "s3", "api": "ghost", "primary-key": "k3"},
            {"id": "s4", "scope": "all-apis"},
            {"id": "s5", "scope": "all-apis", "primary-key": "k5", "state": "paused"},
        ]}, real=False)   # the real loader may refuse these itself; this checks ours
    errors = subscription_errors(bad)
    assert errors == [
        "products.p.apis: no API named 'ghost'",
        "products.q: API 'a' is already in open product 'p' (APIM allows at most one open "
        "product per API)",
        "subscriptions[1].product: no product named 'nope'",
        "subscriptions[1].primary-key: the same key as subscription 's1'; a key must identify "
        "one subscription",
        "subscriptions[2].api: no API named 'ghost'",
        "subscriptions[3]: a subscription needs a primary-key or a secondary-key",
        "subscriptions[4].state: expected one of active, suspended, expired, submitted, "
        "rejected, cancelled",
    ]
    with pytest.raises(ValueError, match="no API named 'ghost'"):
        SubscriptionIndex(bad)
    assert subscription_errors(CFG) == []
