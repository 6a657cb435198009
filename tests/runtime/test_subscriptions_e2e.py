"""Subscriptions through a running gateway, as APIM decides them (issue 9, "Subscriptions
and access"): the key from the header, else the query; 401 with APIM's exact messages and
WWW-Authenticate; primary and secondary keys; suspended and cancelled keys invalid; product,
API and all-apis scopes (the last two skip product policies); an open product for keyless
callers; `forward: false` keeps the key from the backend.  Real clients: httpx over
HTTP/1.1 and HTTP/2, and curl."""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest

from pipeline_kit import doc, echo, gateway  # noqa: F401  (echo is a fixture)

MISSING = ("Access denied due to missing subscription key. Make sure to include "
           "subscription key when making requests to an API.")
INVALID = ("Access denied due to invalid subscription key. Make sure to provide a valid "
           "key for an active subscription.")
KEY = "ocp-apim-subscription-key"


def _tag(name: str, value: str) -> dict:
    return {"set-header": {"name": name, "exists-action": "append", "value": [value]}}


@pytest.fixture(scope="module")
def gw(tmp_path_factory, echo):  # noqa: F811
    e = f"http://127.0.0.1:{echo.port}"
    cfg = {
        "listeners": [{"bind": "127.0.0.1:0", "protocols": ["http1", "h2c"]}],
        "backends": {"echo": {"url": e, "timeout": "5s"}},
        "products": {
            "starter": {"apis": ["orders", "catalog"],
                        "policies": {"inbound": ["base", _tag("x-scope", "product:starter")]}},
            "free": {"apis": ["catalog"], "subscription-required": False,
                     "policies": {"inbound": ["base", _tag("x-scope", "product:free")]}},
        },
        "subscriptions": [
            {"id": "alice", "product": "starter", "primary-key": "alice-1",
             "secondary-key": "alice-2"},
            {"id": "bob", "product": "starter", "primary-key": "bob-1", "state": "suspended"},
            {"id": "dan", "product": "starter", "primary-key": "dan-1", "state": "cancelled"},
            {"id": "erin", "product": "starter", "primary-key": "erin-1", "state": "expired"},
            {"id": "carol", "api": "orders", "scope": "api", "primary-key": "carol-1"},
            {"id": "ops", "scope": "all-apis", "primary-key": "ops-1"},
            {"id": "vault-user", "api": "vault", "scope": "api", "primary-key": "vault-1"},
        ],
        "apis": [
            {"name": "orders", "path": "/orders", "backend": "echo",
             "policies": {"inbound": ["base", _tag("x-sub", "{subscription.id}|{product.name}|"
                                                    "{subscription.key}")],
                          "on-error": [_tag("x-reason", "{last-error.reason}")]}},
            {"name": "catalog", "path": "/catalog", "backend": "echo"},
            {"name": "vault", "path": "/vault", "backend": "echo",
             "subscription-required": True,
             "subscription-key": {"header": "X-Vault-Key", "query": "vkey", "forward": False}},
            {"name": "open", "path": "/open", "backend": "echo"},
        ],
    }
    p = gateway(tmp_path_factory, cfg)
    yield p
    p.stop()


@pytest.fixture(scope="module")
def client(gw):
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        yield c


def _refused(r: httpx.Response, message: str, gw, api_path: str, header: str) -> None:
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"statusCode": 401, "message": message}
    assert r.headers["www-authenticate"] == (
        f'AzureApiManagementKey realm="http://127.0.0.1:{gw.port}{api_path}",'
        f'name="{header}",type="header"')


def test_missing_key_is_401_with_apim_message_and_www_authenticate(client, gw):
    _refused(client.get("/orders/1"), MISSING, gw, "/orders", "Ocp-Apim-Subscription-Key")


def test_missing_key_is_seen_by_on_error_as_subscription_key_not_found(client):
    r = client.get("/orders/1")
    assert r.status_code == 401
    assert r.headers["x-reason"] == "SubscriptionKeyNotFound"
    r = client.get("/orders/1", headers={KEY: "nope"})
    assert r.headers["x-reason"] == "SubscriptionKeyInvalid"


@pytest.mark.parametrize("key", ["nope", "bob-1", "dan-1", "erin-1", "vault-1"])
def test_unknown_inactive_or_foreign_keys_are_401_invalid(client, gw, key):
    """Unknown, suspended, cancelled, expired, and a key scoped to another API."""
    _refused(client.get("/orders/1", headers={KEY: key}), INVALID, gw, "/orders",
             "Ocp-Apim-Subscription-Key")


def test_primary_key_in_the_header_runs_in_its_product(client):
    d = doc(client.get("/orders/1", headers={KEY: "alice-1"}))
    assert d["headers"]["x-scope"] == "product:starter"
    assert d["headers"]["x-sub"] == "alice|starter|alice-1"
    assert d["headers"][KEY] == "alice-1"        # APIM forwards the key by default
    assert d["path"] == "/1"                   # the API path is replaced by the backend's


def test_secondary_key_works_too(client):
    d = doc(client.get("/orders/1", headers={KEY: "alice-2"}))
    assert d["headers"]["x-sub"] == "alice|starter|alice-2"


def test_key_in_the_query_when_no_header(client):
    d = doc(client.get("/orders/1?a=1&subscription-key=alice-1&b=2"))
    assert d["headers"]["x-sub"] == "alice|starter|alice-1"
    assert d["query"] == "a=1&subscription-key=alice-1&b=2"


def test_the_header_wins_over_the_query(client, gw):
    d = doc(client.get("/orders/1?subscription-key=nope", headers={KEY: "alice-1"}))
    assert d["headers"]["x-sub"].startswith("alice|")
    # a bad header key is not rescued by a good query key: the query is not read
    _refused(client.get("/orders/1?subscription-key=alice-1", headers={KEY: "nope"}),
             INVALID, gw, "/orders", "Ocp-Apim-Subscription-Key")


def test_api_scoped_key_skips_product_policies(client, gw):
    d = doc(client.get("/orders/1", headers={KEY: "carol-1"}))
    assert "x-scope" not in d["headers"]
    assert d["headers"]["x-sub"] == "carol||carol-1"
    _refused(client.get("/catalog/1", headers={KEY: "carol-1"}), INVALID, gw, "/catalog",
             "Ocp-Apim-Subscription-Key")


def test_all_apis_key_opens_every_api_without_product_policies(client):
    for path in ("/orders/1", "/catalog/1", "/vault/1"):
        headers = {"x-vault-key": "ops-1"} if path.startswith("/vault") else {KEY: "ops-1"}
        d = doc(client.get(path, headers=headers))
        assert "x-scope" not in d["headers"], path
    assert doc(client.get("/orders/1", headers={KEY: "ops-1"}))["headers"]["x-sub"] == \
        "ops||ops-1"


def test_open_product_serves_keyless_callers_in_its_context(client):
    d = doc(client.get("/catalog/1"))
    assert d["headers"]["x-scope"] == "product:free"
    # with a key the caller runs in its own subscription's product instead
    d = doc(client.get("/catalog/1", headers={KEY: "alice-1"}))
    assert d["headers"]["x-scope"] == "product:starter"


def test_forward_false_strips_the_key_header_and_query_parameter(client, gw):
    d = doc(client.get("/vault/x", headers={"X-Vault-Key": "vault-1"}))
    assert "x-vault-key" not in d["headers"]
    d = doc(client.get("/vault/x?a=1&vkey=vault-1&b=2"))
    assert d["query"] == "a=1&b=2"
    d = doc(client.get("/vault/x?vkey=vault-1"))
    assert d["query"] == "" and d["path"] == "/x"
    # its own header name is what the 401 names; the default header is no key here
    _refused(client.get("/vault/x", headers={KEY: "vault-1"}), MISSING, gw, "/vault",
             "X-Vault-Key")


def test_api_without_products_is_open_but_a_key_sent_to_it_is_checked(client, gw):
    assert "x-sub" not in doc(client.get("/open/x"))["headers"]
    # APIM: a request that comes with a key runs in that key's subscription, so an unknown
    # key is refused even where no key is needed; an all-apis key is welcome
    _refused(client.get("/open/x", headers={KEY: "whatever"}), INVALID, gw, "/open",
             "Ocp-Apim-Subscription-Key")
    assert doc(client.get("/open/x", headers={KEY: "ops-1"}))["headers"][KEY] == "ops-1"


def test_http2_client_gets_the_same_answers(gw):
    with httpx.Client(base_url=gw.url, http1=False, http2=True, timeout=10) as c:
        r = c.get("/orders/1")
        assert r.http_version == "HTTP/2"
        _refused(r, MISSING, gw, "/orders", "Ocp-Apim-Subscription-Key")
        r = c.get("/orders/1", headers={KEY: "alice-2"})
        assert r.http_version == "HTTP/2"
        assert doc(r)["headers"]["x-sub"] == "alice|starter|alice-2"


def test_curl_sees_the_401_head_and_body(gw):
    out = subprocess.run(["curl", "-sS", "-i", f"{gw.url}/orders/1"], capture_output=True,
                         timeout=30, check=True).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
    assert (b'\r\nwww-authenticate: AzureApiManagementKey realm="http://127.0.0.1:%d/orders",'
            b'name="Ocp-Apim-Subscription-Key",type="header"' % gw.port) in head
    assert json.loads(body) == {"statusCode": 401, "message": MISSING}
    out = subprocess.run(["curl", "-sS", "-H", "Ocp-Apim-Subscription-Key: alice-1",
                          f"{gw.url}/orders/1"], capture_output=True, text=True, timeout=30,
                         check=True).stdout
    assert json.loads(out)["headers"]["x-sub"] == "alice|starter|alice-1"
