"""The configuration model on pydantic: APIM's sections (named values, products,
subscriptions, policies, operations), the checks across sections, and the error messages
(paths as in the file, every error at once, no pydantic jargon, no secrets)."""

from __future__ import annotations

import pickle
import subprocess
import sys
import types
from collections.abc import Mapping

import pytest

from apigw_core.gateway.config import (
    ApiConfig,
    ConfigError,
    GatewayConfig,
    OperationConfig,
    PolicySections,
    ProductConfig,
    SubscriptionConfig,
    SubscriptionKeyConfig,
    load_config,
    parse_config,
)

APIM_YAML = """\
named-values: {backend-token: "s3cr3t-token", orders-host: "orders.internal", alice-key: "k-alice-1"}
listeners: [{bind: "127.0.0.1:0"}]
backends:
  orders: {url: "http://{{orders-host}}:9001/api"}
products:
  starter:
    apis: [orders]
    policies: {inbound: [base, {set-header: {name: x-tier, value: [starter]}}]}
  open:
    apis: [orders]
    subscription-required: false
subscriptions:
  - {id: alice, product: starter, primary-key: "{{alice-key}}", secondary-key: "k-alice-2", state: active}
  - {id: ops, scope: all-apis, primary-key: "k-ops"}
  - {id: bob, api: orders, primary-key: "k-bob", state: suspended}
policies:
  inbound: [{check-header: {name: x-id, value: [a, b]}}]
  on-error: [{set-header: {name: x-err, exists-action: override, value: ["{{backend-token}}"]}}]
apis:
  - name: orders
    path: /orders
    backend: orders
    subscription-required: true
    subscription-key: {header: X-Key, query: key, forward: false}
    operations:
      - {name: get-order, method: get, url-template: "/{id}"}
      - name: get-file
        method: "*"
        url-template: "/files/{*path}"
        policies: {backend: [base, {forward-request: {timeout: 5}}]}
      - {name: search, method: GET, url-template: "/search?q={query}&page={page}"}
    policies: {inbound: [base], outbound: [base, {set-header: {name: x-a, value: [v]}}]}
  - {name: plain, path: /plain, backend: orders}
"""


def minimal(**extra) -> dict:
    data = {
        "listeners": [{"bind": "127.0.0.1:8080"}],
        "backends": {"b": {"url": "http://b"}},
        "apis": [{"name": "a", "path": "/a", "backend": "b"}],
    }
    data.update({k.replace("_", "-"): v for k, v in extra.items()})
    return data


def api(**extra) -> dict:
    return {"name": "a", "path": "/a", "backend": "b", **{k.replace("_", "-"): v for k, v in extra.items()}}


def errors_of(data, **kw) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, **kw)
    return info.value.errors


@pytest.fixture
def apim(tmp_path) -> GatewayConfig:
    f = tmp_path / "gw.yaml"
    f.write_text(APIM_YAML)
    return load_config(f)


# --- the new sections, read --------------------------------------------------------------

def test_named_values_are_substituted_everywhere(apim):
    assert dict(apim.named_values) == {"backend-token": "s3cr3t-token", "orders-host": "orders.internal",
                                       "alice-key": "k-alice-1"}
    assert apim.backends["orders"].host == "orders.internal"        # validated after substitution
    assert apim.subscriptions[0].primary_key == "k-alice-1"
    assert apim.policies.on_error[0]["set-header"]["value"] == ("s3cr3t-token",)
    assert "k-alice" not in repr(apim)
    assert "named_values=" not in repr(apim)                          # secrets stay out of reprs


def test_products_and_subscriptions(apim):
    starter, open_ = apim.products["starter"], apim.products["open"]
    assert starter == ProductConfig(name="starter", apis=("orders",), subscription_required=True,
                                    policies=starter.policies)
    assert starter.policies.inbound[0] == "base" and starter.policies.declared == {"inbound"}
    assert open_.subscription_required is False and open_.policies == PolicySections()
    assert [(s.id, s.scope, s.product, s.api, s.state) for s in apim.subscriptions] == [
        ("alice", "product", "starter", None, "active"),
        ("ops", "all-apis", None, None, "active"),
        ("bob", "api", None, "orders", "suspended"),
    ]
    assert (apim.subscriptions[0].secondary_key, apim.subscriptions[1].secondary_key) == ("k-alice-2", None)


def test_api_operations_and_policies(apim):
    orders, plain = apim.apis
    assert orders.subscription_required is True
    assert orders.subscription_key == SubscriptionKeyConfig(header="X-Key", query="key", forward=False)
    assert [(o.name, o.method, o.url_template) for o in orders.operations] == [
        ("get-order", "GET", "/{id}"), ("get-file", "*", "/files/{*path}"),
        ("search", "GET", "/search?q={query}&page={page}")]
    assert orders.operations[1].policies.backend == ("base", {"forward-request": {"timeout": 5}})
    assert orders.operations[1].policies.declared == {"backend"}
    assert orders.policies.declared == {"inbound", "outbound"}
    assert orders.policies.outbound[1] == {"set-header": {"name": "x-a", "value": ("v",)}}
    # the defaults: open, the APIM key names, forwarded, no operations, no policies
    assert plain == ApiConfig(name="plain", path="/plain", backend="orders")
    assert (plain.subscription_required, plain.subscription_key, plain.operations, plain.policies) == \
        (False, SubscriptionKeyConfig("Ocp-Apim-Subscription-Key", "subscription-key", True), (),
         PolicySections())


def test_global_policies_and_declared_sections(apim):
    assert apim.policies.declared == {"inbound", "on_error"}
    assert apim.policies.inbound == ({"check-header": {"name": "x-id", "value": ("a", "b")}},)
    assert apim.policies.backend == () and apim.policies.outbound == ()


def test_policy_bodies_are_deep_frozen_and_the_config_pickles(apim):
    body = apim.policies.inbound[0]["check-header"]
    assert isinstance(body, Mapping) and isinstance(body["value"], tuple)
    with pytest.raises(TypeError):
        body["name"] = "y"                                   # type: ignore[index]
    hash(apim)
    again = pickle.loads(pickle.dumps(apim))
    assert again == apim and again.apis[0].operations == apim.apis[0].operations
    with pytest.raises(AttributeError):
        apim.apis[0].operations[0].name = "x"               # type: ignore[misc]


def test_defaults_of_the_new_sections():
    c = parse_config(minimal())
    assert (dict(c.named_values), dict(c.products), c.subscriptions, c.policies) == ({}, {}, (), PolicySections())
    assert c.server.escaped_slashes == "keep"
    assert parse_config(minimal(server={"escaped-slashes": "reject"})).server.escaped_slashes == "reject"
    assert OperationConfig("o", "GET", "/").policies == PolicySections()
    assert SubscriptionConfig(id="s", scope="all-apis").state == "active"


def test_a_product_policies_section_may_be_empty_and_base_is_optional():
    c = parse_config(minimal(products={"p": {"apis": ["a"], "policies": {"inbound": []}}}))
    assert c.products["p"].policies.declared == {"inbound"} and c.products["p"].policies.inbound == ()


# --- errors in the new sections, each with its path ----------------------------------------

BAD = [
    # named values
    (minimal(named_values={"a b": "x"}), "named-values.a b: a named value's name is letters, digits"),
    (minimal(named_values={"n": 5}), "named-values.n: expected string, got int"),
    (minimal(named_values=[]), "named-values: expected a mapping, got list"),
    (minimal(apis=[api(name="{{nope}}")]), "apis[0].name: unknown named value 'nope' (named-values: none declared)"),
    # policies
    (minimal(policies={"inbund": []}),
     "policies.inbund: unknown key (expected one of: inbound, backend, outbound, on-error)"),
    (minimal(policies={"on_error": []}), "policies.on_error: unknown key"),
    (minimal(policies={"inbound": ["base"]}),
     "policies.inbound[0]: base is not allowed at the global scope"),
    (minimal(policies={"inbound": {"set-header": {}}}), "policies.inbound: expected a list, got mapping"),
    (minimal(apis=[api(policies={"inbound": ["base", {"x": {}}, "base"]})]),
     "apis[0].policies.inbound[2]: base appears twice in a section (also inbound[0])"),
    (minimal(apis=[api(policies={"on-error": ["set-header"]})]),
     "apis[0].policies.on-error[0]: expected 'base' or a one-key mapping {policy-name: attributes}, "
     "got 'set-header' (a policy without attributes is written `set-header: {}`)"),
    (minimal(apis=[api(policies={"outbound": [{"set-header": {}, "set-body": "x"}]})]),
     "apis[0].policies.outbound[0]: expected one policy per list entry, got 2 keys (set-header, set-body)"),
    (minimal(apis=[api(policies={"backend": [7]})]),
     "apis[0].policies.backend[0]: expected 'base' or a one-key mapping {policy-name: attributes}, got int"),
    (minimal(products={"p": {"policies": {"inbound": [{}]}}}),
     "products.p.policies.inbound[0]: expected one policy per list entry, got 0 keys"),
    # operations
    (minimal(apis=[api(operations=[{"name": "o", "method": "GET"}])]), "apis[0].operations[0].url-template: required"),
    (minimal(apis=[api(operations=[{"name": "o", "method": "G T", "url-template": "/"}])]),
     "apis[0].operations[0].method: expected an HTTP method (e.g. GET) or '*', got 'G T'"),
    (minimal(apis=[api(operations=[{"name": "o", "method": "GET", "url-template": "x/{id}"}])]),
     "apis[0].operations[0].url-template: a url-template starts with '/', got 'x/{id}'"),
    (minimal(apis=[api(operations=[{"name": "o", "method": "GET", "url-template": "/{id"}])]),
     "apis[0].operations[0].url-template: unclosed '{' in '/{id'"),
    (minimal(apis=[api(operations=[{"name": "o", "method": "GET", "url-template": "/id}"}])]),
     "apis[0].operations[0].url-template: '}' without '{' in '/id}'"),
    (minimal(apis=[api(operations=[{"name": "o", "method": "GET", "url-template": "/{a{b}}"}])]),
     "apis[0].operations[0].url-template: nested '{'"),
    (minimal(apis=[api(operations=[{"name": "o", "method": "GET", "url-template": "/{}"}])]),
     "apis[0].operations[0].url-template: invalid parameter name {} in '/{}'"),
    (minimal(apis=[api(operations=[{"name": "o", "method": "GET", "url-template": "/{*p}/x"}])]),
     "apis[0].operations[0].url-template: {*p} must be the whole last path segment: '/{*p}/x'"),
    (minimal(apis=[api(operations=[{"name": "o", "method": "GET", "url-template": "/f{*p}"}])]),
     "apis[0].operations[0].url-template: {*p} must be the whole last path segment"),
    (minimal(apis=[api(operations=[{"name": "o", "method": "GET", "url-template": "/a?x={*p}"}])]),
     "apis[0].operations[0].url-template: {*p} must be the whole last path segment"),
    (minimal(apis=[api(operations=[{"name": "o", "method": "GET", "url-template": "/{id}/x/{id}"}])]),
     "apis[0].operations[0].url-template: parameter 'id' appears twice in '/{id}/x/{id}'"),
    (minimal(apis=[api(operations=[{"name": "o", "method": "GET", "url-template": "/{id}?id={id}"}])]),
     "apis[0].operations[0].url-template: parameter 'id' appears twice"),
    (minimal(apis=[api(operations=[{"name": "o", "method": "GET", "url-template": "/a b"}])]),
     "apis[0].operations[0].url-template: invalid characters in '/a b'"),
    (minimal(apis=[api(operations=[{"name": "o", "method": "GET", "url-template": "/"},
                                   {"name": "o", "method": "POST", "url-template": "/"}])]),
     "apis[0].operations[1].name: duplicate operation name 'o' (also operations[0])"),
    (minimal(apis=[api(operations=[{"name": "o", "method": "GET", "url-template": "/", "polices": {}}])]),
     "apis[0].operations[0].polices: unknown key (expected one of: name, method, url-template, policies)"),
    # the subscription key of an API
    (minimal(apis=[api(subscription_key={"header": "X Key"})]),
     "apis[0].subscription-key.header: invalid header name 'X Key'"),
    (minimal(apis=[api(subscription_key={"forward": "no"})]),
     "apis[0].subscription-key.forward: expected bool, got string"),
    (minimal(apis=[api(subscription_required=1)]), "apis[0].subscription-required: expected bool, got int"),
    # products
    (minimal(products={"p": {"apis": ["nope"]}}), "products.p.apis[0]: unknown api 'nope'"),
    (minimal(products={"p": {"apis": ["a", "a"]}}), "products.p.apis[1]: api 'a' listed twice"),
    (minimal(products={"p": {"apis": "a"}}), "products.p.apis: expected a list, got string"),
    (minimal(products={"p": {"apis": ["a"], "subscription-required": False},
                       "q": {"apis": ["a"], "subscription-required": False}}),
     "products.q.apis[0]: api 'a' is already in the open product 'p'"),
    (minimal(products=[]), "products: expected a mapping of name to product, got list"),
    (minimal(products={"p": {"api": ["a"]}}),
     "products.p.api: unknown key (expected one of: apis, subscription-required, policies)"),
    # subscriptions
    (minimal(subscriptions=[{"id": "s", "primary-key": "k"}]),
     "subscriptions[0]: needs a scope: product: NAME, api: NAME or scope: all-apis"),
    (minimal(products={"p": {}}, subscriptions=[{"id": "s", "product": "p", "api": "a", "primary-key": "k"}]),
     "subscriptions[0]: one scope only: product or api, not both"),
    (minimal(subscriptions=[{"id": "s", "scope": "all-apis", "api": "a", "primary-key": "k"}]),
     "subscriptions[0].api: one scope only: scope all-apis, or api"),
    (minimal(subscriptions=[{"id": "s", "scope": "product", "api": "a", "primary-key": "k"}]),
     "subscriptions[0].scope: scope product needs product: NAME, and no other scope"),
    (minimal(subscriptions=[{"id": "s", "scope": "everything", "primary-key": "k"}]),
     "subscriptions[0].scope: expected one of product, api, all-apis, got 'everything'"),
    (minimal(subscriptions=[{"id": "s", "api": "a"}]), "subscriptions[0]: needs a primary-key or a secondary-key"),
    (minimal(subscriptions=[{"id": "s", "product": "nope", "primary-key": "k"}]),
     "subscriptions[0].product: unknown product 'nope'"),
    (minimal(subscriptions=[{"id": "s", "api": "nope", "primary-key": "k"}]), "subscriptions[0].api: unknown api 'nope'"),
    (minimal(subscriptions=[{"id": "s", "api": "a", "primary-key": "k1"}, {"id": "s", "api": "a", "primary-key": "k2"}]),
     "subscriptions[1].id: duplicate subscription id 's' (also subscriptions[0])"),
    (minimal(subscriptions=[{"id": "s", "api": "a", "primary-key": "k", "state": "paused"}]),
     "subscriptions[0].state: expected one of active, suspended, expired, submitted, rejected, cancelled, got 'paused'"),
    (minimal(subscriptions=[{"api": "a", "primary-key": "k"}]), "subscriptions[0].id: required"),
    (minimal(subscriptions=[{"id": "s", "api": "a", "primary-key": 12345}]),
     "subscriptions[0].primary-key: expected string, got int"),
    (minimal(subscriptions=[{"id": "s", "api": "a", "primary-key": "a key"}]),
     "subscriptions[0].primary-key: a key is non-empty printable ASCII without spaces"),
    (minimal(subscriptions={"s": {}}), "subscriptions: expected a list, got mapping"),
]


@pytest.mark.parametrize("data, expected", BAD)
def test_each_error_names_its_path(data, expected):
    errors = errors_of(data)
    assert len(errors) == 1, errors
    assert errors[0].startswith(expected), errors


def test_no_pydantic_jargon_in_any_message():
    for data, _ in BAD:
        for e in errors_of(data):
            assert "Input should" not in e and "type=" not in e and "pydantic" not in e, e
            assert "Value error" not in e and "[key]" not in e, e


@pytest.mark.parametrize("section, value", [
    ({"server": {"max-connections": True}}, "server.max-connections: expected int, got bool"),
    ({"server": {"max-body": True}}, "server.max-body: expected a size (bytes, or e.g. '64KiB', '1MiB', '8KB'), got bool"),
    ({"server": {"head-timeout": True}}, "server.head-timeout: expected a duration (seconds, or e.g. '30s', '500ms'), got bool"),
    ({"server": {"escaped-slashes": True}}, "server.escaped-slashes: expected one of keep, reject, unescape, got bool"),
    ({"backends": {"b": {"url": "http://b", "http-version": True}}},
     "backends.b.http-version: expected one of '1', '2', '2or1', got bool"),
    ({"backends": {"b": {"url": True}}}, "backends.b.url: expected string, got bool"),
    ({"apis": [api(protocols=[True])]}, "apis[0].protocols: unknown protocol bool (expected some of: http, websocket, grpc)"),
])
def test_a_wrong_kind_is_named_not_printed(section, value):
    """Issue 8: "got bool", not "got True"."""
    errors = errors_of(minimal(**section))
    assert errors == [value]


def test_durations_accept_a_space_before_the_unit():
    c = parse_config(minimal(server={"head-timeout": "30 s", "idle-timeout": "1m 30s"},
                             backends={"b": {"url": "http://b", "timeout": "500 ms"}}))
    assert (c.server.head_timeout, c.server.idle_timeout, c.backends["b"].timeout) == (30.0, 90.0, 0.5)


@pytest.mark.parametrize("url", ["http://[::1", "http://[::1/x", "http://[nope]:80"])
def test_a_bad_ipv6_backend_url_is_a_config_error(url):
    errors = errors_of(minimal(backends={"b": {"url": url}}, apis=[api(name="x", path="/x", backend="nope")]))
    assert errors[0].startswith(f"backends.b.url: invalid"), errors
    assert errors[1:] == ["apis[0].backend: unknown backend 'nope'"]   # and the rest still reported


def test_apigw_validate_on_a_bad_ipv6_url_exits_2_with_the_path(tmp_path):
    f = tmp_path / "gw.yaml"
    f.write_text('listeners: [{bind: "127.0.0.1:8080"}]\nbackends: {orders: {url: "http://[::1"}}\n')
    p = subprocess.run([sys.executable, "-m", "apigw_core", "validate", str(f)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    assert p.stderr == f"{f}: backends.orders.url: invalid URL 'http://[::1': Invalid IPv6 URL\n"


@pytest.mark.parametrize("binds, expected", [
    (["localhost:8080", "127.0.0.1:8080"], "listeners[1].bind: '127.0.0.1:8080' may be the same address as listeners[0] 'localhost:8080'"),
    (["0.0.0.0:8080", "127.0.0.1:8080"], "listeners[1].bind: '127.0.0.1:8080' may be the same address as listeners[0] '0.0.0.0:8080'"),
    (["[::]:8080", "0.0.0.0:8080"], "listeners[1].bind: '0.0.0.0:8080' may be the same address"),
    (["127.0.0.1:8080", "127.0.0.1:8080"], "listeners[1].bind: duplicate bind '127.0.0.1:8080' (also listeners[0])"),
])
def test_listeners_that_may_share_a_port_are_refused(binds, expected):
    errors = errors_of(minimal(listeners=[{"bind": b} for b in binds]))
    assert len(errors) == 1 and errors[0].startswith(expected), errors


def test_listeners_on_distinct_addresses_or_ephemeral_ports_are_fine():
    c = parse_config(minimal(listeners=[{"bind": "127.0.0.1:8080"}, {"bind": "127.0.0.2:8080"},
                                        {"bind": "[::1]:8080"}, {"bind": "0.0.0.0:8081"},
                                        {"bind": "[::1]:8081"}, {"bind": "localhost:0"},
                                        {"bind": "127.0.0.1:0"}],
                             admin={"bind": "localhost:0"}))
    assert len(c.listeners) == 7


def test_a_listener_on_the_admin_port_is_refused():
    assert errors_of(minimal(admin={"bind": "localhost:8080"})) == [
        "admin.bind: 'localhost:8080' may be the same address as listeners[0] '127.0.0.1:8080' "
        "(same port; a host name or a wildcard address can cover the other)"]


# --- named values and secrets -------------------------------------------------------------

def test_named_values_are_never_printed_in_errors():
    data = minimal(named_values={"host": "s3cr3t.example", "port": "99999", "tok": "tok en"},
                   backends={"b": {"url": "http://{{host}}:{{port}}"}},
                   apis=[api(policies={"inbound": ["{{tok}}"]})])
    errors = errors_of(data)
    assert errors == [
        "backends.b.url: invalid port in URL 'http://{{host}}:{{port}}'",
        "apis[0].policies.inbound[0]: expected 'base' or a one-key mapping {policy-name: attributes}, "
        "got '{{tok}}' (a policy without attributes is written `{{tok}}: {}`)",
    ]
    assert not any("s3cr3t" in e or "tok en" in e for e in errors)


def test_unknown_named_values_are_reported_at_every_use():
    data = minimal(named_values={"known": "v"},
                   apis=[api(policies={"inbound": [{"set-header": {"name": "x", "value": ["{{known}}", "{{nope}}"]}}]})],
                   products={"p": {"apis": ["{{missing}}"]}})
    assert errors_of(data) == [
        "apis[0].policies.inbound[0].set-header.value[1]: unknown named value 'nope' (named-values: known)",
        "products.p.apis[0]: unknown named value 'missing' (named-values: known)",
        "products.p.apis[0]: unknown api '{{missing}}'",
    ]


def test_named_values_are_not_substituted_in_keys_or_in_themselves():
    c = parse_config(minimal(named_values={"a": "{{b}}", "b": "x"},
                             apis=[api(policies={"inbound": [{"set-variable": {"name": "{{b}}", "value": "{{a}} {{b}}"}}]})]))
    assert c.named_values["a"] == "{{b}}"
    assert c.apis[0].policies.inbound[0] == {"set-variable": {"name": "x", "value": "{{b}} x"}}


def test_a_duplicate_key_is_reported_without_the_key():
    data = minimal(named_values={"k": "p4ssw0rd-1"},
                   products={"p": {"apis": ["a"]}},
                   subscriptions=[
                       {"id": "s1", "product": "p", "primary-key": "{{k}}", "secondary-key": "p4ssw0rd-2"},
                       {"id": "s2", "api": "a", "primary-key": "p4ssw0rd-2"},
                       {"id": "s3", "scope": "all-apis", "primary-key": "p4ssw0rd-3", "secondary-key": "p4ssw0rd-3"},
                       {"id": "s4", "scope": "all-apis", "secondary-key": "p4ssw0rd-1"}])
    errors = errors_of(data)
    assert errors == [
        "subscriptions[1].primary-key: the same key as subscriptions[0].secondary-key (keys must be unique)",
        "subscriptions[2].secondary-key: the same key as subscriptions[2].primary-key (keys must be unique)",
        "subscriptions[3].secondary-key: the same key as subscriptions[0].primary-key (keys must be unique)",
    ]
    assert not any("p4ssw0rd" in e for e in errors)


# --- all at once, in document order --------------------------------------------------------

def test_all_errors_of_all_sections_at_once_in_document_order():
    data = {
        "named-values": {"ok": "v", "bad": 1},
        "listeners": [{"bind": "127.0.0.1:80"}, {"bind": "localhost:80"}],
        "backends": {"b": {"url": "http://b", "timeout": "soon"}},
        "apis": [
            {"name": "a", "path": "/a", "backend": "b",
             "operations": [{"name": "o", "method": "GET", "url-template": "/{x"}]},
            {"name": "c", "path": "/c", "backend": "nope", "subscription-required": "yes"},
            {"name": "d", "path": "/d", "backend": "b",
             "operations": [{"name": "o", "method": "GET", "url-template": "/"},
                            {"name": "o", "method": "GET", "url-template": "/2"}]},
        ],
        "products": {"p": {"apis": ["a", "zz"]}},
        "subscriptions": [{"id": "s", "product": "p", "primary-key": "k"},
                          {"id": "s", "product": "q", "primary-key": "k"}],
        "policies": {"inbound": ["base"]},
        "server": {"escaped-slashes": "no"},
    }
    assert errors_of(data, source="gw.yaml") == [
        "named-values.bad: expected string, got int",
        "listeners[1].bind: 'localhost:80' may be the same address as listeners[0] '127.0.0.1:80' "
        "(same port; a host name or a wildcard address can cover the other)",
        "backends.b.timeout: invalid duration 'soon' (e.g. 30, 2.5, '30s', '500ms', '1m30s')",
        "apis[0].operations[0].url-template: unclosed '{' in '/{x'",
        "apis[1].subscription-required: expected bool, got string",
        "apis[2].operations[1].name: duplicate operation name 'o' (also operations[0])",
        "products.p.apis[1]: unknown api 'zz'",
        "subscriptions[1].id: duplicate subscription id 's' (also subscriptions[0])",
        "subscriptions[1].product: unknown product 'q'",
        "subscriptions[1].primary-key: the same key as subscriptions[0].primary-key (keys must be unique)",
        "policies.inbound[0]: base is not allowed at the global scope (it has no outer scope)",
        "server.escaped-slashes: expected one of keep, reject, unescape, got 'no'",
    ]


# --- the pipeline's own checks ------------------------------------------------------------

def test_the_pipeline_checks_run_on_a_valid_model(monkeypatch):
    seen = []

    def check_config(config):
        seen.append(config)
        return ["apis[0].policies.inbound[0].set-header.exists-action: expected one of override, skip, append, delete"]

    fake = types.ModuleType("apigw_core.gateway.pipeline")
    fake.check_config = check_config          # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "apigw_core.gateway.pipeline", fake)
    data = minimal(apis=[api(policies={"inbound": [{"set-header": {"name": "x", "exists-action": "replace"}}]})])
    assert errors_of(data, source="gw.yaml") == [
        "apis[0].policies.inbound[0].set-header.exists-action: expected one of override, skip, append, delete"]
    assert isinstance(seen[0], GatewayConfig)
    assert seen[0].apis[0].policies.inbound[0]["set-header"]["exists-action"] == "replace"
    fake.check_config = lambda config: []     # type: ignore[attr-defined]
    assert parse_config(data).apis[0].name == "a"

