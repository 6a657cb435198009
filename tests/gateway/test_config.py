"""Configuration loader: the full model, defaults, every error kind with its path."""

from __future__ import annotations

import json
import pickle
from importlib import resources

import pytest
import yaml

from apigw_core.gateway import (
    AdminConfig,
    ApiConfig,
    BackendConfig,
    BackendTLSConfig,
    ConfigError,
    GatewayConfig,
    ListenerConfig,
    ServerConfig,
    TLSConfig,
    load_config,
    parse_config,
    parse_duration,
    parse_size,
)

FULL_YAML = """\
listeners:
  - bind: "0.0.0.0:8080"
    protocols: [http1, h2c]
  - bind: "[::1]:8443"
    protocols: [http1, h2]
    tls:
      cert: certs/server.pem
      key: certs/server.key
      sni:
        API.example.com: {cert: certs/api.pem, key: certs/api.key}
backends:
  orders:
    url: "https://Orders.internal:9443/api/v1/"
    connect-timeout: 2s
    timeout: 1m30s
    idle-timeout: 500ms
    max-connections: 64
    http-version: "2or1"
    tls: {verify: false, ca: certs/ca.pem}
  echo:
    url: "http://127.0.0.1:8081"
apis:
  - name: orders
    path: /orders
    host: "*.Example.com"
    backend: orders
    protocols: [http, websocket, grpc]
  - name: root
    path: /
    backend: echo
server:
  head-timeout: 5
  idle-timeout: 2.5
  body-timeout: 10s
  write-timeout: 1m
  shutdown-timeout: 0
  max-connections: 500
  max-request-line: 4KiB
  max-head: 32768
  max-fields: 50
  max-body: 1MiB
admin:
  bind: "127.0.0.1:9901"
"""


@pytest.fixture
def tls_dir(tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    for name in ("server.pem", "server.key", "api.pem", "api.key", "ca.pem"):
        (certs / name).write_text("x")
    return tmp_path


def minimal(**extra) -> dict:
    data = {
        "listeners": [{"bind": "127.0.0.1:8080"}],
        "backends": {"b": {"url": "http://b"}},
        "apis": [{"name": "a", "path": "/a", "backend": "b"}],
    }
    data.update(extra)
    return data


def errors_of(data, **kw) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, **kw)
    return info.value.errors


def test_full_config_every_field(tls_dir):
    path = tls_dir / "gw.yaml"
    path.write_text(FULL_YAML)
    c = load_config(path)
    certs = str(tls_dir / "certs")
    assert c.source == str(path)
    assert c.listeners == (
        ListenerConfig(bind="0.0.0.0:8080", host="0.0.0.0", port=8080, protocols=("http1", "h2c")),
        ListenerConfig(
            bind="[::1]:8443", host="::1", port=8443, protocols=("http1", "h2"),
            tls=TLSConfig(cert=f"{certs}/server.pem", key=f"{certs}/server.key",
                          sni={"api.example.com": (f"{certs}/api.pem", f"{certs}/api.key")})),
    )
    assert dict(c.backends) == {
        "orders": BackendConfig(
            name="orders", url="https://Orders.internal:9443/api/v1/", scheme="https",
            host="orders.internal", port=9443, base_path="/api/v1", connect_timeout=2.0,
            timeout=90.0, idle_timeout=0.5, max_connections=64, http_version="2or1",
            tls=BackendTLSConfig(verify=False, ca=f"{certs}/ca.pem")),
        "echo": BackendConfig(name="echo", url="http://127.0.0.1:8081", scheme="http",
                              host="127.0.0.1", port=8081, base_path=""),
    }
    assert c.apis == (
        ApiConfig(name="orders", path="/orders", backend="orders", host="*.example.com",
                  protocols=("http", "websocket", "grpc")),
        ApiConfig(name="root", path="", backend="echo"),
    )
    assert c.server == ServerConfig(
        head_timeout=5.0, idle_timeout=2.5, body_timeout=10.0, write_timeout=60.0,
        shutdown_timeout=0.0, max_connections=500, max_request_line=4096, max_head=32768,
        max_fields=50, max_body=1024 * 1024)
    assert c.admin == AdminConfig(bind="127.0.0.1:9901", host="127.0.0.1", port=9901)


def test_json_gives_the_same_config(tls_dir):
    (tls_dir / "gw.yaml").write_text(FULL_YAML)
    (tls_dir / "gw.json").write_text(json.dumps(yaml.safe_load(FULL_YAML)))
    from_yaml = load_config(tls_dir / "gw.yaml")
    from_json = load_config(str(tls_dir / "gw.json"))
    assert from_json.listeners == from_yaml.listeners
    assert from_json.backends == from_yaml.backends
    assert (from_json.apis, from_json.server, from_json.admin) == \
        (from_yaml.apis, from_yaml.server, from_yaml.admin)


def test_config_is_frozen_hashable_and_picklable(tls_dir):
    (tls_dir / "gw.yaml").write_text(FULL_YAML)
    c = load_config(tls_dir / "gw.yaml")
    assert pickle.loads(pickle.dumps(c)) == c       # worker processes may receive it
    hash(c)
    with pytest.raises(AttributeError):
        c.apis = ()                                  # type: ignore[misc]
    with pytest.raises(TypeError):
        c.backends["x"] = None                       # type: ignore[index]
    with pytest.raises(TypeError):
        c.listeners[1].tls.sni["x"] = ("a", "b")     # type: ignore[index,union-attr]


def test_defaults():
    c = parse_config(minimal())
    assert c.server == ServerConfig()
    assert (c.server.head_timeout, c.server.idle_timeout, c.server.body_timeout,
            c.server.write_timeout, c.server.shutdown_timeout) == (10.0, 75.0, 60.0, 60.0, 30.0)
    assert (c.server.max_connections, c.server.max_request_line, c.server.max_head,
            c.server.max_fields, c.server.max_body) == (10000, 8192, 65536, 100, None)
    b = c.backends["b"]
    assert (b.scheme, b.host, b.port, b.base_path) == ("http", "b", 80, "")
    assert (b.connect_timeout, b.timeout, b.idle_timeout, b.max_connections, b.http_version) == \
        (5.0, 30.0, 60.0, 1024, "1")
    assert b.tls == BackendTLSConfig(verify=True, ca=None)
    assert c.listeners[0].protocols == ("http1",) and c.listeners[0].tls is None
    assert c.apis[0].host is None and c.apis[0].protocols == ("http",)
    assert c.admin is None and c.source == "<config>"
    assert parse_config(minimal(backends={"b": {"url": "https://b"}})).backends["b"].port == 443
    assert parse_config(minimal(apis=[])).apis == ()
    assert isinstance(c, GatewayConfig)


@pytest.mark.parametrize("data, expected", [
    # unknown keys, at every level
    (minimal(bakends={}), "bakends: unknown key (expected one of: listeners, backends, apis, server, admin, "
     "named-values, products, subscriptions, policies"),   # later sections follow
    (minimal(apis=[{"name": "a", "path": "/a", "backend": "b", "bakend": "b"}]),
     "apis[0].bakend: unknown key (expected one of: name, path, host, backend, protocols, "
     "subscription-required, subscription-key, operations, policies)"),
    (minimal(server={"head_timeout": 1}), "server.head_timeout: unknown key"),
    (minimal(backends={"b": {"url": "https://b", "tls": {"verfy": True}}}), "backends.b.tls.verfy: unknown key"),
    (minimal(listeners=[{"bind": "h:1", "tsl": {}}]), "listeners[0].tsl: unknown key"),
    (minimal(admin={"bind": "h:1", "x": 1}), "admin.x: unknown key"),
    # later issues (products, subscriptions, policies, operations: tests/gateway/config/)
    (minimal(backends={"b": {"pool": []}}), "backends.b.pool: expected a non-empty list"),
    (minimal(backends={"b": {"url": "http://b", "circuit-breaker": {"trip-duration": 1}}}),
     "backends.b.circuit-breaker.failure-condition: required"),
    # types
    ([], "(top level): expected a mapping, got list"),
    (minimal(server={"max-connections": True}), "server.max-connections: expected int, got bool"),
    (minimal(server={"max-fields": "10"}), "server.max-fields: expected int, got string"),
    (minimal(server={"max-connections": 0}), "server.max-connections: expected 1..2147483647, got 0"),
    (minimal(server={"max-head": 2**31}), "server.max-head: expected 1..2147483647"),
    (minimal(server={"head-timeout": 0}), "server.head-timeout: expected a duration > 0"),
    (minimal(server={"idle-timeout": "-1s"}), "server.idle-timeout: invalid duration '-1s'"),
    (minimal(server={"max-body": "8k"}), "server.max-body: expected a size"),
    (minimal(server=[]), "server: expected a mapping, got list"),
    (minimal(backends={"b": {"url": "https://b", "tls": {"verify": "no"}}}),
     "backends.b.tls.verify: expected bool, got string"),
    (minimal(backends={"b": {"url": "http://b", "http-version": "1.1"}}),
     "backends.b.http-version: expected one of '1', '2', '2or1'"),
    (minimal(backends=[]), "backends: expected a mapping of name to backend, got list"),
    (minimal(apis={}), "apis: expected a list, got mapping"),
    (minimal(apis=[{"name": 1, "path": "", "backend": "b"}]), "apis[0].name: expected string, got int"),
    # required keys
    ({"backends": {}, "apis": []}, "listeners: required"),
    (minimal(listeners=[]), "listeners: expected a non-empty list"),
    (minimal(listeners=[{"protocols": ["http1"]}]), "listeners[0].bind: required"),
    (minimal(backends={"b": {}}), "backends.b.url: required"),
    (minimal(apis=[{"name": "a", "backend": "b"}]), "apis[0].path: required"),
    (minimal(apis=[{"path": "/a", "backend": "b"}]), "apis[0].name: required"),
    (minimal(apis=[{"name": "a", "path": "/a"}]), "apis[0].backend: required"),
    (minimal(admin={}), "admin.bind: required"),
    # listeners
    (minimal(listeners=[{"bind": "8080"}]), "listeners[0].bind: expected 'host:port'"),
    (minimal(listeners=[{"bind": "::1:8080"}]), "listeners[0].bind: expected 'host:port'"),
    (minimal(listeners=[{"bind": "h:65536"}]), "listeners[0].bind: port out of range: 65536"),
    (minimal(listeners=[{"bind": "[nope]:80"}]), "listeners[0].bind: invalid host '[nope]'"),
    (minimal(listeners=[{"bind": "h:1", "protocols": ["http3"]}]),
     "listeners[0].protocols: unknown protocol 'http3'"),
    (minimal(listeners=[{"bind": "h:1", "protocols": []}]), "listeners[0].protocols: expected a non-empty list"),
    (minimal(listeners=[{"bind": "h:1", "protocols": ["h2"]}]), "listeners[0].protocols: h2 needs tls"),
    (minimal(listeners=[{"bind": "a:1"}, {"bind": "a:1"}]),
     "listeners[1].bind: duplicate bind 'a:1' (also listeners[0])"),
    (minimal(listeners=[{"bind": "A:1"}, {"bind": "a:1"}]), "listeners[1].bind: duplicate bind"),
    (minimal(admin={"bind": "127.0.0.1:8080"}), "admin.bind: same address as listeners[0]"),
    (minimal(listeners=[{"bind": "h:1", "tls": {"cert": "nope.pem", "key": __file__}}]),
     "listeners[0].tls.cert: file not found: "),
    (minimal(listeners=[{"bind": "h:1", "tls": {"key": __file__}}]), "listeners[0].tls.cert: required"),
    # backends
    (minimal(backends={"b": {"url": "ftp://b"}}), "backends.b.url: expected an http:// or https:// URL"),
    (minimal(backends={"b": {"url": "b:80"}}), "backends.b.url: expected an http:// or https:// URL"),
    (minimal(backends={"b": {"url": "http:///x"}}), "backends.b.url: URL without a host"),
    (minimal(backends={"b": {"url": "http://u:p@b"}}), "backends.b.url: credentials in the URL"),
    (minimal(backends={"b": {"url": "http://b/x?y=1"}}), "backends.b.url: URL must not have a query"),
    (minimal(backends={"b": {"url": "http://b/x#f"}}), "backends.b.url: URL must not have a query or fragment"),
    (minimal(backends={"b": {"url": "http://b:99999"}}), "backends.b.url: invalid port"),
    (minimal(backends={"b": {"url": "http://b:0"}}), "backends.b.url: invalid port"),
    (minimal(backends={"b": {"url": "http://b/a b"}}), "backends.b.url: invalid URL"),
    (minimal(backends={"b": {"url": "http://b", "tls": {"verify": False}}}),
     "backends.b.tls: only an https backend uses tls"),
    (minimal(backends={"b": {"url": "https://b", "tls": {"ca": "none.pem"}}}),
     "backends.b.tls.ca: file not found"),
    # apis
    (minimal(apis=[{"name": "a", "path": "/a", "backend": "x"}]), "apis[0].backend: unknown backend 'x'"),
    (minimal(apis=[{"name": "a", "path": "a", "backend": "b"}]),
     "apis[0].path: expected '' or a path starting with '/'"),
    (minimal(apis=[{"name": "a", "path": "/a/", "backend": "b"}]), "apis[0].path: no trailing '/'"),
    (minimal(apis=[{"name": "a", "path": "/a?x", "backend": "b"}]), "apis[0].path: a path has no query"),
    (minimal(apis=[{"name": "a", "path": "/a b", "backend": "b"}]), "apis[0].path: invalid characters"),
    (minimal(apis=[{"name": "a", "path": "/a/../b", "backend": "b"}]), "apis[0].path: dot segments"),
    (minimal(apis=[{"name": "a", "path": "/a", "backend": "b", "host": "a b"}]),
     "apis[0].host: invalid host 'a b'"),
    (minimal(apis=[{"name": "a", "path": "/a", "backend": "b", "host": "a.*.com"}]),
     "apis[0].host: invalid host 'a.*.com' (a wildcard is '*.suffix')"),
    (minimal(apis=[{"name": "a", "path": "/a", "backend": "b", "protocols": ["http2"]}]),
     "apis[0].protocols: unknown protocol 'http2'"),
    (minimal(apis=[{"name": "a", "path": "/a", "backend": "b", "protocols": ["http", "http"]}]),
     "apis[0].protocols: protocol listed twice"),
    (minimal(apis=[{"name": "a", "path": "/a", "backend": "b"}, {"name": "a", "path": "/c", "backend": "b"}]),
     "apis[1].name: duplicate api name 'a' (also apis[0])"),
    (minimal(apis=[{"name": "a", "path": "/a", "backend": "b"}, {"name": "c", "path": "/a", "backend": "b"}]),
     "apis[1].path: another api has the same host and path (apis[0])"),
    (minimal(apis=[{"name": "a", "path": "", "backend": "b"}, {"name": "c", "path": "/", "backend": "b"}]),
     "apis[1].path: another api has the same host and path (apis[0])"),
    (minimal(apis=[{"name": "a", "path": "/a", "backend": "b", "host": "X.com"},
                   {"name": "c", "path": "/a", "backend": "b", "host": "x.com"}]),
     "apis[1].path: another api has the same host and path (apis[0])"),
])
def test_each_error_names_its_path(data, expected):
    errors = errors_of(data)
    assert len(errors) == 1, errors
    assert errors[0].startswith(expected), errors


def test_same_path_on_different_hosts_is_fine():
    c = parse_config(minimal(apis=[
        {"name": "a", "path": "/a", "backend": "b"},
        {"name": "c", "path": "/a", "backend": "b", "host": "x.com"},
        {"name": "d", "path": "/a", "backend": "b", "host": "*.x.com"},
    ]))
    assert [a.host for a in c.apis] == [None, "x.com", "*.x.com"]


def test_ephemeral_ports_are_not_duplicates():
    c = parse_config(minimal(listeners=[{"bind": "127.0.0.1:0"}, {"bind": "127.0.0.1:0"}],
                             admin={"bind": "127.0.0.1:0"}))
    assert [lc.port for lc in c.listeners] == [0, 0] and c.admin.port == 0


def test_all_errors_at_once_in_document_order():
    data = {
        "listeners": [{"bind": "x"}, {"bind": "h:1", "protocols": "http1"}],
        "backends": {"ok": {"url": "http://ok"}, "bad": {"url": "ftp://bad", "timeout": "soon"}},
        "apis": [
            {"name": "a", "path": "/a", "backend": "nope"},
            {"name": "b", "path": "/b", "backend": "bad"},      # declared, if invalid: no extra error
        ],
        "server": {"max-body": -1},
        "products": {"p": {"apis": ["b", "nope"]}},
    }
    errors = errors_of(data, source="gw.yaml")
    assert errors == [
        "listeners[0].bind: expected 'host:port' (IPv6 as '[::1]:8080'), got 'x'",
        "listeners[1].protocols: expected a non-empty list of: http1, h2, h2c",
        "backends.bad.url: expected an http:// or https:// URL, got 'ftp://bad'",
        "backends.bad.timeout: invalid duration 'soon' (e.g. 30, 2.5, '30s', '500ms', '1m30s')",
        "apis[0].backend: unknown backend 'nope'",
        "server.max-body: expected a non-negative size, got -1",
        "products.p.apis[1]: unknown api 'nope'",
    ]
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="gw.yaml")
    assert str(info.value).splitlines() == [f"gw.yaml: {e}" for e in errors]
    assert isinstance(info.value, ValueError)
    again = pickle.loads(pickle.dumps(info.value))
    assert (again.errors, again.source, str(again)) == (errors, "gw.yaml", str(info.value))


@pytest.mark.parametrize("value, seconds", [
    (30, 30.0), (2.5, 2.5), (0, 0.0), ("30", 30.0), ("0.25", 0.25), ("30s", 30.0),
    ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0), ("1m30s", 90.0), ("1.5s", 1.5),
    ("1h2m3s4ms", 3723.004), (" 10s ", 10.0), ("30 s", 30.0), ("1m 30s", 90.0),
    ("500 ms", 0.5),
])
def test_durations(value, seconds):
    assert parse_duration(value, "x") == pytest.approx(seconds)


@pytest.mark.parametrize("value", [
    -1, -0.5, float("inf"), float("nan"), True, None, [], "", "s", "-1s", "30s1m", "1m1m",
    "1.s", "ms", "10 sec", "1d", "1e3",
])
def test_bad_durations(value):
    with pytest.raises(ConfigError) as info:
        parse_duration(value, "server.head-timeout")
    assert info.value.errors[0].startswith("server.head-timeout: ")
    assert len(info.value.errors) == 1


@pytest.mark.parametrize("value, size", [
    (0, 0), (1024, 1024), ("1024", 1024), ("512B", 512), ("64KiB", 65536), ("1MiB", 1 << 20),
    ("2GiB", 2 << 30), ("8KB", 8000), ("1MB", 1_000_000), ("1GB", 10**9), ("64 KiB", 65536),
])
def test_sizes(value, size):
    assert parse_size(value, "x") == size


@pytest.mark.parametrize("value", [
    -1, 1.5, True, None, "", "8k", "1kib", "1.5MiB", "1TiB", "KiB", "-1KiB", "1 0",
])
def test_bad_sizes(value):
    with pytest.raises(ConfigError) as info:
        parse_size(value, "server.max-body")
    assert info.value.errors[0].startswith("server.max-body: ")


def test_max_body_null_means_unlimited():
    assert parse_config(minimal(server={"max-body": None})).server.max_body is None


def test_http_version_as_yaml_int():
    c = parse_config(minimal(backends={"b": {"url": "http://b", "http-version": 2}}))
    assert c.backends["b"].http_version == "2"


def test_hosts_are_normalised():
    c = parse_config(minimal(
        listeners=[{"bind": "[::1]:80"}, {"bind": "LocalHost:81"}],
        backends={"b": {"url": "http://[::1]:9000/Api/"}},
        apis=[{"name": "a", "path": "/a", "backend": "b", "host": "API.Example.COM."}]))
    assert [(lc.host, lc.port) for lc in c.listeners] == [("::1", 80), ("localhost", 81)]
    b = c.backends["b"]
    assert (b.host, b.port, b.base_path) == ("::1", 9000, "/Api")
    assert c.apis[0].host == "api.example.com"


def test_tls_paths_resolve_relative_to_the_config_dir(tmp_path, monkeypatch):
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    (conf_dir / "s.pem").write_text("c")
    (conf_dir / "s.key").write_text("k")
    (conf_dir / "gw.yaml").write_text(
        'listeners: [{bind: "h:443", protocols: [h2], tls: {cert: s.pem, key: s.key}}]\n')
    monkeypatch.chdir(tmp_path)     # the cwd does not hold the files
    tls = load_config("etc/gw.yaml").listeners[0].tls
    assert tls.cert == str(conf_dir / "s.pem") and tls.key == str(conf_dir / "s.key")
    # parse_config resolves against base_dir, else the current directory.
    data = {"listeners": [{"bind": "h:443", "tls": {"cert": "s.pem", "key": "s.key"}}]}
    assert parse_config(data, base_dir=str(conf_dir)).listeners[0].tls.cert == str(conf_dir / "s.pem")
    errors = errors_of(data)
    assert errors == [f"listeners[0].tls.cert: file not found: {tmp_path}/s.pem",
                      f"listeners[0].tls.key: file not found: {tmp_path}/s.key"]
    absolute = {"listeners": [{"bind": "h:443", "tls": {
        "cert": str(conf_dir / "s.pem"), "key": str(conf_dir / "s.key"),
        "sni": {"a.com": {"cert": "etc/s.pem", "key": "etc/missing.key"}}}}]}
    assert errors_of(absolute) == [
        f"listeners[0].tls.sni.a.com.key: file not found: {tmp_path}/etc/missing.key"]


def test_load_config_syntax_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("listeners:\n  - bind: [\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(info.value).startswith(f"{bad}: line ")
    dup = tmp_path / "dup.yaml"
    dup.write_text("listeners: [{bind: 'h:1'}]\nserver: {head-timeout: 1}\nserver: {}\n")
    with pytest.raises(ConfigError) as info:
        load_config(dup)
    assert info.value.errors == ["line 3, column 1: duplicate key 'server'"]
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"listeners": [}')
    with pytest.raises(ConfigError) as info:
        load_config(bad_json)
    assert info.value.errors[0].startswith("line 1, column 16: ")
    dup_json = tmp_path / "dup.json"
    dup_json.write_text('{"apis": [], "apis": []}')
    with pytest.raises(ConfigError, match="duplicate key 'apis'"):
        load_config(dup_json)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"# caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(latin)
    with pytest.raises(OSError):
        load_config(tmp_path / "missing.yaml")


def test_yaml_anchors_and_merge_keys_still_work(tmp_path):
    f = tmp_path / "gw.yml"
    f.write_text(
        "listeners: [{bind: 'h:1'}]\n"
        "backends:\n"
        "  a: &a {url: 'http://a', timeout: 5s}\n"
        "  b: {<<: *a, url: 'http://b'}\n")
    c = load_config(f)
    assert c.backends["b"].timeout == 5.0 and c.backends["b"].host == "b"


def test_empty_file_is_an_error(tmp_path):
    f = tmp_path / "empty.yaml"
    f.write_text("")
    with pytest.raises(ConfigError) as info:
        load_config(f)
    assert info.value.errors == ["(top level): expected a mapping, got null"]


def test_demo_config_is_valid():
    with resources.as_file(resources.files("apigw_core") / "demo" / "demo.yaml") as demo:
        c = load_config(demo)
    assert [lc.bind for lc in c.listeners] == ["127.0.0.1:8080"]
    assert c.backends["echo"].url == "http://127.0.0.1:8081"
    assert {a.name: a.path for a in c.apis}["echo"] == "/echo"
    assert c.admin is not None and c.admin.bind == "127.0.0.1:9901"
