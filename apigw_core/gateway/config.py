"""The gateway configuration: typed, frozen model and its loader.

Strategy.  A config file (YAML through PyYAML's safe loader, or JSON for `.json` files) is
plain data; `parse_config` walks it once and builds frozen, slotted dataclasses.  No check
raises on its own: each appends "path: message" to one list, where the path is spelt as in
the file (`apis[2].backend`, `server.head-timeout`, `backends.orders.url`), and at the end a
single `ConfigError` carries every mistake, so a user fixes them all in one round.  Leaf
values go through small converters (duration, size, int range, ...) chosen from per-section
tables; the tables are also the list of known keys.  Keys that DESIGN.md reserves for later
issues (products, subscriptions, policies, operations, pool, circuit-breaker) are refused
with "not supported yet" rather than silently ignored: a user must not believe a rate limit
is in force when it is not.

Defaults follow the established edge proxies; each field says whose value it takes.
Relative file paths (TLS certificates, CA bundles) are resolved against the config file's
directory and must exist when the config is loaded, so a bad path fails `apigw validate`,
not the first TLS handshake.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

from ._values import (  # the leaf converters the section tables name
    _bind, _bool, _bounded, _duration, _escaped_slashes, _hostname, _http_version, _int,
    _Invalid, _kind, _optional, _positive_duration, _protocols, _size, _string,
)

__all__ = [
    "ConfigError", "parse_duration", "parse_size", "TLSConfig", "ListenerConfig",
    "ServerConfig", "BackendTLSConfig", "BackendConfig", "ApiConfig", "AdminConfig",
    "GatewayConfig", "parse_config", "load_config",
]


class ConfigError(ValueError):
    """An invalid configuration.  `errors` holds every problem found, as "path: message"."""

    errors: list[str]
    source: str

    def __init__(self, errors: list[str], source: str = "<config>") -> None:
        self.errors = list(errors)
        self.source = source
        super().__init__("\n".join(f"{source}: {e}" for e in self.errors))

    def __reduce__(self) -> tuple:  # keep both attributes across pickling (worker processes)
        return (type(self), (self.errors, self.source))


class _Frozen(Mapping):
    """A read-only, hashable, picklable dict (MappingProxyType cannot be pickled)."""

    __slots__ = ("_d",)

    def __init__(self, d: Mapping | None = None) -> None:
        self._d = dict(d or {})

    def __getitem__(self, key: Any) -> Any:
        return self._d[key]

    def __iter__(self) -> Iterator:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __hash__(self) -> int:
        return hash(frozenset(self._d.items()))

    def __repr__(self) -> str:
        return repr(self._d)


# --- the model ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TLSConfig:
    """Server certificate of a listener; `sni` maps a server name to its own (cert, key)."""

    cert: str
    key: str
    sni: Mapping[str, tuple[str, str]] = field(default_factory=_Frozen)


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    bind: str
    host: str                                  # without brackets for IPv6
    port: int                                  # 0: ephemeral (tests)
    protocols: tuple[str, ...] = ("http1",)    # http1, h2 (TLS, ALPN), h2c (cleartext)
    tls: TLSConfig | None = None


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Client-side limits.  YAML key `server:`, with hyphenated names (head-timeout, ...)."""

    head_timeout: float = 10.0       # Envoy edge request_headers_timeout 10s (nginx's 60s
                                     # client_header_timeout is too lax against slowloris)
    idle_timeout: float = 75.0       # nginx keepalive_timeout
    body_timeout: float = 60.0       # nginx client_body_timeout (between two reads)
    write_timeout: float = 60.0      # nginx send_timeout (a stalled write)
    shutdown_timeout: float = 30.0   # graceful drain deadline
    max_connections: int = 10000
    max_request_line: int = 8192     # the head parser's defaults
    max_head: int = 65536
    max_fields: int = 100
    max_body: int | None = None      # request body cap (413); None: unlimited, streamed
    websocket_idle_timeout: float = 600.0  # a WebSocket with no frame either way is closed
                                     # (APIM's 10 min; long-lived, unlike HTTP's idle)
    websocket_max_message: int = 16 * 1024 * 1024  # close 1009 past it (frame cap alike)
    escaped_slashes: str = "keep"    # %2F / %5C in paths: keep | reject | unescape (Envoy's
                                     # path_with_escaped_slashes_action; gateway/paths.py)


@dataclass(frozen=True, slots=True)
class BackendTLSConfig:
    verify: bool = True
    ca: str | None = None            # CA bundle; None: the system store


@dataclass(frozen=True, slots=True)
class BackendConfig:
    name: str
    url: str
    scheme: str                      # "http" | "https"
    host: str                        # lower-case, without brackets for IPv6
    port: int                        # the URL's, else 80 / 443 by scheme
    base_path: str                   # URL path without trailing slash; "" for the root
    connect_timeout: float = 5.0     # Envoy cluster connect_timeout
    timeout: float = 30.0            # to the response head, and between body reads
    idle_timeout: float = 60.0       # pooled keep-alive connection (nginx upstream keepalive_timeout)
    max_connections: int = 1024      # Envoy circuit-breaker max_connections
    http_version: str = "1"          # "1" | "2" | "2or1" (2 is used by a later issue)
    tls: BackendTLSConfig = BackendTLSConfig()


@dataclass(frozen=True, slots=True)
class ApiConfig:
    name: str
    path: str                        # "" or "/seg[/seg...]", no trailing slash
    backend: str
    host: str | None = None          # lower-case; "*.example.com" matches any subdomain
    protocols: tuple[str, ...] = ("http",)   # subset of http, websocket, grpc


@dataclass(frozen=True, slots=True)
class AdminConfig:
    bind: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    listeners: tuple[ListenerConfig, ...]
    backends: Mapping[str, BackendConfig]
    apis: tuple[ApiConfig, ...]
    server: ServerConfig = ServerConfig()
    admin: AdminConfig | None = None
    source: str = "<config>"


# --- sections -----------------------------------------------------------------------------

_Conv = Callable[[object], Any]

# Top level and per-section keys: YAML name -> converter (None: handled by the section code).
_TOP = {"listeners": None, "backends": None, "apis": None, "server": None, "admin": None}
_TOP_LATER = ("products", "subscriptions", "policies")    # later issues: not supported yet

_SERVER: dict[str, _Conv] = {
    "head-timeout": _positive_duration,
    "idle-timeout": _positive_duration,
    "body-timeout": _positive_duration,
    "write-timeout": _positive_duration,
    "shutdown-timeout": _duration,          # 0: close at once
    "max-connections": _bounded(_int, 1, 2**31 - 1),
    # The head parser's ranges (apigw_core/_purepy/http1_head.check_limits).
    "max-request-line": _bounded(_size, 1, 2**31 - 1),
    "max-head": _bounded(_size, 1, 2**31 - 1),
    "max-fields": _bounded(_int, 0, 2**31 - 1),
    "max-body": _optional(_size),
    "websocket-idle-timeout": _positive_duration,
    "websocket-max-message": _bounded(_size, 125, 2**31 - 1),
    "escaped-slashes": _escaped_slashes,
}

_LISTENER = {"bind": None, "protocols": _protocols(("http1", "h2", "h2c")), "tls": None}
_TLS = {"cert": None, "key": None, "sni": None}

_BACKEND: dict[str, _Conv | None] = {
    "url": None,
    "connect-timeout": _positive_duration,
    "timeout": _positive_duration,
    "idle-timeout": _positive_duration,
    "max-connections": _bounded(_int, 1, 2**31 - 1),
    "http-version": _http_version,
    "tls": None,
}
_BACKEND_LATER = ("pool", "circuit-breaker")
_BACKEND_TLS = {"verify": _bool, "ca": None}

_API = {"name": _string, "path": None, "host": _optional(lambda v: _hostname(v, wildcard=True)),
        "backend": _string, "protocols": _protocols(("http", "websocket", "grpc"))}
_API_LATER = ("operations", "policies")


class _Checker:
    """Accumulates "path: message" errors while the sections are walked."""

    def __init__(self, base_dir: str) -> None:
        self.errors: list[str] = []
        self.base_dir = base_dir

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def leaf(self, conv: _Conv, value: object, path: str) -> Any:
        """conv(value), or None after recording the error (check `len(errors)` if None is valid)."""
        try:
            return conv(value)
        except _Invalid as e:
            self.error(path, str(e))
            return None

    def mapping(self, value: object, path: str, keys: Mapping[str, Any],
                later: tuple[str, ...] = ()) -> dict | None:
        """The mapping's known items; unknown and not-yet-supported keys are errors."""
        if not isinstance(value, dict):
            self.error(path or "(top level)", f"expected a mapping, got {_kind(value)}")
            return None
        out = {}
        for k, v in value.items():
            p = f"{path}.{k}" if path else str(k)
            if k in later:
                self.error(p, "not supported yet")
            elif k not in keys:
                self.error(p, f"unknown key (expected one of: {', '.join(keys)})")
            else:
                out[k] = v
        return out

    def fields(self, m: dict, path: str, table: Mapping[str, _Conv | None]) -> dict[str, Any]:
        """Convert the table-driven keys present in m to dataclass keyword arguments."""
        out = {}
        for k, v in m.items():
            conv = table[k]
            if conv is not None:
                n = len(self.errors)
                val = self.leaf(conv, v, f"{path}.{k}")
                if len(self.errors) == n:
                    out[k.replace("-", "_")] = val
        return out

    def required(self, m: dict, key: str, path: str, conv: _Conv = lambda v: v) -> Any:
        """conv(m[key]), or None after recording an error (missing or invalid)."""
        p = f"{path}.{key}" if path else key
        if key not in m:
            self.error(p, "required")
            return None
        return self.leaf(conv, m[key], p)

    def file(self, m: dict, key: str, path: str) -> str | None:
        """m[key] as an existing file, relative to the config file's directory."""
        name = self.required(m, key, path, _string)
        if name is None:
            return None
        full = os.path.normpath(os.path.join(self.base_dir, os.path.expanduser(name)))
        if not os.path.isfile(full):
            self.error(f"{path}.{key}", f"file not found: {full}")
            return None
        return full


def _tls(c: _Checker, value: object, path: str) -> TLSConfig | None:
    m = c.mapping(value, path, _TLS)
    if m is None:
        return None
    cert, key = c.file(m, "cert", path), c.file(m, "key", path)
    sni: dict[str, tuple[str, str]] = {}
    if "sni" in m:
        if not isinstance(m["sni"], dict):
            c.error(f"{path}.sni", f"expected a mapping of server name to {{cert, key}}, got {_kind(m['sni'])}")
        else:
            for name, pair in m["sni"].items():
                p = f"{path}.sni.{name}"
                host = c.leaf(lambda v: _hostname(v, wildcard=True), name, p)
                pm = c.mapping(pair, p, {"cert": None, "key": None})
                if pm is None:
                    continue
                s_cert, s_key = c.file(pm, "cert", p), c.file(pm, "key", p)
                if host is not None and s_cert and s_key:
                    sni[host] = (s_cert, s_key)
    if cert is None or key is None:
        return None
    return TLSConfig(cert=cert, key=key, sni=_Frozen(sni))


def _listeners(c: _Checker, value: object) -> list[ListenerConfig]:
    if not isinstance(value, list) or not value:
        c.error("listeners", f"expected a non-empty list, got {_kind(value)}")
        return []
    out = []
    for i, item in enumerate(value):
        path = f"listeners[{i}]"
        m = c.mapping(item, path, _LISTENER)
        if m is None:
            continue
        n = len(c.errors)
        bound = c.required(m, "bind", path, _bind)
        kw = c.fields(m, path, _LISTENER)
        tls = _tls(c, m["tls"], f"{path}.tls") if "tls" in m else None
        protocols = kw.get("protocols", ("http1",))
        # RFC 9113 §3: "h2" is HTTP/2 over TLS (ALPN), "h2c" over cleartext only.
        if "h2" in protocols and "tls" not in m:
            c.error(f"{path}.protocols", "h2 needs tls (h2c is HTTP/2 without TLS)")
        if "h2c" in protocols and "tls" in m:
            c.error(f"{path}.protocols", "h2c is cleartext HTTP/2; with tls use h2")
        if len(c.errors) == n and bound is not None:
            bind, host, port = bound
            out.append(ListenerConfig(bind=bind, host=host, port=port, tls=tls, **kw))
    return out


def _backend(c: _Checker, name: object, value: object) -> BackendConfig | None:
    path = f"backends.{name}"
    m = c.mapping(value, path, _BACKEND, later=_BACKEND_LATER)
    if m is None:
        return None
    n = len(c.errors)
    if not isinstance(name, str) or not name:
        c.error(path, "a backend name must be a non-empty string")
    # With a (refused) pool, a missing url is no news.
    parsed = (c.required(m, "url", path, _backend_url) if "url" in m or not set(value) & set(_BACKEND_LATER)
              else None)  # type: ignore[arg-type]
    kw = c.fields(m, path, _BACKEND)
    tls = BackendTLSConfig()
    if "tls" in m:
        tm = c.mapping(m["tls"], f"{path}.tls", _BACKEND_TLS)
        if tm is not None:
            tkw = c.fields(tm, f"{path}.tls", _BACKEND_TLS)
            if "ca" in tm:
                tkw["ca"] = c.file(tm, "ca", f"{path}.tls")
            tls = BackendTLSConfig(**tkw)
        if parsed is not None and parsed[0] != "https":
            c.error(f"{path}.tls", "only an https backend uses tls")
    if len(c.errors) != n or parsed is None:
        return None
    scheme, host, port, base_path = parsed
    return BackendConfig(name=name, url=m["url"], scheme=scheme, host=host, port=port,  # type: ignore[arg-type]
                         base_path=base_path, tls=tls, **kw)


def _backend_url(v: object) -> tuple[str, str, int, str]:
    s = _string(v)
    if not s.isascii() or any(ch <= " " or ch == "\x7f" for ch in s):
        raise _Invalid(f"invalid URL {s!r}: whitespace, control or non-ASCII characters")
    u = urlsplit(s)
    if u.scheme not in ("http", "https"):
        raise _Invalid(f"expected an http:// or https:// URL, got {s!r}")
    if not u.hostname:
        raise _Invalid(f"URL without a host: {s!r}")
    if u.username is not None or u.password is not None:
        raise _Invalid("credentials in the URL are not allowed (use a policy to add them)")
    if u.query or u.fragment or "?" in s or "#" in s:
        raise _Invalid(f"URL must not have a query or fragment: {s!r}")
    try:
        port = u.port
    except ValueError:
        raise _Invalid(f"invalid port in URL {s!r}") from None
    if port == 0:
        raise _Invalid(f"invalid port in URL {s!r}")
    host = _hostname(u.hostname)
    return u.scheme, host, port or (443 if u.scheme == "https" else 80), u.path.rstrip("/")


def _api_path(v: object) -> str:
    if not isinstance(v, str):
        raise _Invalid(f"expected string, got {_kind(v)}")
    if v == "/":
        return ""
    if v and not v.startswith("/"):
        raise _Invalid(f"expected '' or a path starting with '/', got {v!r}")
    if v.endswith("/"):
        raise _Invalid(f"no trailing '/' please: {v!r}")
    if "?" in v or "#" in v:
        raise _Invalid(f"a path has no query or fragment: {v!r}")
    if not v.isascii() or any(ch <= " " or ch == "\x7f" for ch in v):
        raise _Invalid(f"invalid characters in {v!r} (percent-encode them)")
    if any(seg in (".", "..") for seg in v.split("/")[1:]):
        raise _Invalid(f"dot segments are not allowed: {v!r}")
    return v


def _apis(c: _Checker, value: object, backend_names: set | None) -> list[ApiConfig]:
    if not isinstance(value, list):
        c.error("apis", f"expected a list, got {_kind(value)}")
        return []
    out = []
    names: dict[str, int] = {}
    routes: dict[tuple[str | None, str], int] = {}
    for i, item in enumerate(value):
        path = f"apis[{i}]"
        m = c.mapping(item, path, _API, later=_API_LATER)
        if m is None:
            continue
        n = len(c.errors)
        for key in ("name", "backend"):
            if key not in m:
                c.required(m, key, path)
        kw = c.fields(m, path, _API)
        api_path = c.required(m, "path", path, _api_path)
        if api_path is not None:
            kw["path"] = api_path
        if "backend" in kw and backend_names is not None and kw["backend"] not in backend_names:
            c.error(f"{path}.backend", f"unknown backend {kw['backend']!r}")
        if "name" in kw:
            if kw["name"] in names:
                c.error(f"{path}.name", f"duplicate api name {kw['name']!r} (also apis[{names[kw['name']]}])")
            names.setdefault(kw["name"], i)
        if "path" in kw:
            route = (kw.get("host"), kw["path"])
            if route in routes:
                c.error(f"{path}.path", f"another api has the same host and path (apis[{routes[route]}])")
            routes.setdefault(route, i)
        if len(c.errors) == n:
            out.append(ApiConfig(**kw))
    return out


def parse_config(data: object, source: str = "<config>", base_dir: str | None = None) -> GatewayConfig:
    """Validate plain data (as loaded from YAML or JSON) into a GatewayConfig.

    Relative file paths are resolved against `base_dir` (default: the current directory).
    Raises ConfigError with every problem found.
    """
    c = _Checker(os.path.abspath(base_dir if base_dir is not None else os.getcwd()))
    top = c.mapping(data, "", _TOP, later=_TOP_LATER)
    if top is None:
        raise ConfigError(c.errors, source)

    listeners = _listeners(c, top["listeners"]) if "listeners" in top else []
    if "listeners" not in top:
        c.error("listeners", "required")

    binds: dict[tuple[str, int], str] = {}
    for i, lc in enumerate(listeners):
        if lc.port != 0 and (lc.host, lc.port) in binds:   # port 0: each one gets its own port
            c.error(f"listeners[{i}].bind", f"duplicate bind {lc.bind!r} (also {binds[lc.host, lc.port]})")
        binds.setdefault((lc.host, lc.port), f"listeners[{i}]")

    backends: dict[str, BackendConfig] = {}
    raw_backends = top.get("backends", {})
    if isinstance(raw_backends, dict):
        for name, b in raw_backends.items():
            bc = _backend(c, name, b)
            if bc is not None:
                backends[bc.name] = bc
    else:
        c.error("backends", f"expected a mapping of name to backend, got {_kind(raw_backends)}")

    # "unknown backend" only for names not declared at all: a declared but invalid backend
    # (or an invalid backends section) already has its own error.
    declared = set(raw_backends) if isinstance(raw_backends, dict) else None
    apis = _apis(c, top.get("apis", []), declared)

    server = ServerConfig()
    if "server" in top:
        sm = c.mapping(top["server"], "server", _SERVER)
        if sm is not None:
            server = ServerConfig(**c.fields(sm, "server", _SERVER))

    admin = None
    if "admin" in top:
        am = c.mapping(top["admin"], "admin", {"bind": None})
        bound = c.required(am, "bind", "admin", _bind) if am is not None else None
        if bound is not None:
            admin = AdminConfig(*bound)
            if admin.port != 0 and (admin.host, admin.port) in binds:
                c.error("admin.bind", f"same address as {binds[admin.host, admin.port]}")

    if c.errors:
        raise ConfigError(c.errors, source)
    return GatewayConfig(listeners=tuple(listeners), backends=_Frozen(backends), apis=tuple(apis),
                         server=server, admin=admin, source=source)


# --- public helpers and the file loader ----------------------------------------------------

def parse_duration(value: object, path: str) -> float:
    """Seconds from 30, 2.5, "30s", "500ms", "2m", "1h", "1m30s"; ConfigError at `path` else."""
    try:
        return _duration(value)
    except _Invalid as e:
        raise ConfigError([f"{path}: {e}"]) from None


def parse_size(value: object, path: str) -> int:
    """Bytes from 1024, "64KiB", "1MiB", "1GiB", "8KB" (1000s), "1MB"; ConfigError at `path` else."""
    try:
        return _size(value)
    except _Invalid as e:
        raise ConfigError([f"{path}: {e}"]) from None


def load_config(path: str | os.PathLike) -> GatewayConfig:
    """Read and validate a YAML file (JSON if it ends in .json).

    OSError if it cannot be read; ConfigError for a syntax error or an invalid config.
    """
    path = os.fspath(path)
    source = path                   # as given: that is how the user named it
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
        data = _load_json(text) if path.lower().endswith(".json") else _load_yaml(text)
    except UnicodeDecodeError as e:
        raise ConfigError([f"byte {e.start}: not UTF-8"], source) from None
    except _Invalid as e:
        raise ConfigError([str(e)], source) from None
    return parse_config(data, source=source, base_dir=os.path.dirname(os.path.abspath(path)))


def _load_json(text: str) -> object:
    import json

    def no_duplicates(pairs: list) -> dict:
        keys = [k for k, _ in pairs]
        for k in keys:
            if keys.count(k) > 1:
                raise _Invalid(f"duplicate key {k!r}")
        return dict(pairs)

    try:
        return json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as e:
        raise _Invalid(f"line {e.lineno}, column {e.colno}: {e.msg}") from None


def _load_yaml(text: str) -> object:
    import yaml

    # safe_load, except that a repeated key is an error: PyYAML keeps the last one silently,
    # and a pasted-twice `timeout:` should not decide which value wins.
    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
        seen: set = set()
        for key_node, _ in node.value:    # own keys only: "<<" merges may be overridden
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = loader.construct_object(key_node)
            if isinstance(key, (str, int, float, bool)):   # others fail in construct_mapping
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        loader.flatten_mapping(node)
        return loader.construct_mapping(node)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise _Invalid(f"{where}{e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise _Invalid(f"invalid YAML: {e}") from None
