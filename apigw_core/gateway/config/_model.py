"""The public configuration objects: frozen, slotted, picklable dataclasses.

These are what the runtime and the router read on hot paths, so they are plain dataclasses
with the runtime's own shape (a listener's `host` and `port`, a backend's parsed URL), not
the file's: `_schema.py` declares the file format and `_build.py` turns a validated file into
these.  Mappings are `_Frozen` (read-only, hashable and, unlike MappingProxyType,
picklable), sequences are tuples, so a whole GatewayConfig can be hashed, compared and sent
to worker processes.  Defaults live here only; the schema reads them from these classes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from ._resilience import CircuitBreakerConfig, HealthCheckConfig, PoolMemberConfig

from ._telemetry import TelemetryConfig
from ._ratelimits import RateLimitsConfig
from ._redis import RedisConfig

__all__ = [
    "ConfigError", "TLSConfig", "ListenerConfig", "ServerConfig", "BackendTLSConfig",
    "BackendConfig", "RetryBudgetConfig", "PolicyEntry", "PolicySections", "OperationConfig",
    "SubscriptionKeyConfig", "ApiConfig", "ProductConfig", "SubscriptionConfig",
    "AdminConfig", "GatewayConfig",
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


def deep_freeze(value: Any) -> Any:
    """A YAML value made immutable (and hashable): mappings -> _Frozen, lists -> tuples."""
    if isinstance(value, Mapping):
        return _Frozen({k: deep_freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(deep_freeze(v) for v in value)
    if isinstance(value, (set, frozenset)):          # YAML !!set
        return frozenset(deep_freeze(v) for v in value)
    return value


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """Server certificate of a listener; `sni` maps a server name to its own (cert, key)."""

    cert: str
    key: str
    sni: Mapping[str, tuple[str, str]] = field(default_factory=_Frozen)
    client_certificate: Any = None   # ClientCertificateConfig (_certs.py) or None: mode none


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    bind: str
    host: str                                  # without brackets for IPv6
    port: int                                  # 0: ephemeral (tests)
    protocols: tuple[str, ...] = ("http1",)    # http1, h2 (TLS, ALPN), h2c (cleartext)
    tls: TLSConfig | None = None
    forward_client_cert: str = "sanitize"      # x-forwarded-client-cert (Envoy's modes)
    client_cert_details: tuple[str, ...] = ("subject", "uri", "dns")


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
    escaped_slashes: str = "keep"    # %2F / %5C in a path: keep | reject | unescape (Envoy's
                                     # path_with_escaped_slashes_action)
    client_abort: str = "cancel"     # cancel | ignore (nginx proxy_ignore_client_abort): a
                                     # client closing while its request waits cancels it


@dataclass(frozen=True, slots=True)
class BackendTLSConfig:
    verify: bool = True
    ca: str | None = None            # CA bundle; None: the system store
    client_certificate: str | None = None    # a certificates: ID presented to the backend
    cert: str | None = None                  # ... its files (resolved at load)
    key: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class RetryBudgetConfig:
    """Envoy's retry budget: retries at once <= max(min_concurrency, percent % of the
    backend's active requests)."""

    percent: float = 20.0            # Envoy budget_percent
    min_concurrency: int = 3         # Envoy min_retry_concurrency


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
    http_version: str = "1"          # "1" | "2" | "2or1"
    tls: BackendTLSConfig = BackendTLSConfig()
    retry_budget: RetryBudgetConfig = RetryBudgetConfig()
    # pools, breakers, health (config/_resilience.py); a pool has no url: url, scheme and
    # host are "", port 0
    pool: tuple[PoolMemberConfig, ...] = ()
    session_affinity: Optional[str] = None    # the cookie's name
    circuit_breaker: Optional[CircuitBreakerConfig] = None
    health_check: Optional[HealthCheckConfig] = None
    ejection_time: float = 10.0      # nginx fail_timeout: a member that failed is skipped


# "base", or a one-key mapping {policy-name: body}; the body is the YAML value, deep-frozen.
PolicyEntry = Union[str, Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class PolicySections:
    """A scope's policies.  YAML: {inbound: [...], backend: [...], outbound: [...], on-error: [...]}."""

    inbound: tuple[PolicyEntry, ...] = ()
    backend: tuple[PolicyEntry, ...] = ()
    outbound: tuple[PolicyEntry, ...] = ()
    on_error: tuple[PolicyEntry, ...] = ()
    declared: frozenset[str] = frozenset()  # sections the file wrote ("on_error"): an absent
                                            # section means [base]


@dataclass(frozen=True, slots=True)
class OperationConfig:
    name: str
    method: str                      # upper-case; "*" = any
    url_template: str                # "/{id}", "/files/{*path}", "/get?a={b}" (query part allowed)
    policies: PolicySections = PolicySections()


@dataclass(frozen=True, slots=True)
class SubscriptionKeyConfig:
    header: str = "Ocp-Apim-Subscription-Key"
    query: str = "subscription-key"
    forward: bool = True             # the key header goes on to the backend (APIM does)


@dataclass(frozen=True, slots=True)
class ApiConfig:
    name: str
    path: str                        # "" or "/seg[/seg...]", no trailing slash
    backend: str
    host: str | None = None          # lower-case; "*.example.com" matches any subdomain
    protocols: tuple[str, ...] = ("http",)   # subset of http, websocket, grpc
    subscription_required: bool = False      # configs without products stay open
    subscription_key: SubscriptionKeyConfig = SubscriptionKeyConfig()
    operations: tuple[OperationConfig, ...] = ()
    policies: PolicySections = PolicySections()


@dataclass(frozen=True, slots=True)
class ProductConfig:
    name: str
    apis: tuple[str, ...] = ()
    subscription_required: bool = True
    policies: PolicySections = PolicySections()


@dataclass(frozen=True, slots=True)
class SubscriptionConfig:
    id: str
    scope: str                       # "product" | "api" | "all-apis"
    product: str | None = None       # scope product
    api: str | None = None           # scope api
    primary_key: str | None = field(default=None, repr=False)    # secrets: never printed
    secondary_key: str | None = field(default=None, repr=False)
    state: str = "active"            # active | suspended | expired | submitted | rejected | cancelled


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
    named_values: Mapping[str, str] = field(default_factory=_Frozen, repr=False)
    products: Mapping[str, ProductConfig] = field(default_factory=_Frozen)
    subscriptions: tuple[SubscriptionConfig, ...] = ()
    policies: PolicySections = PolicySections()     # the global scope
    certificates: Mapping[str, Any] = field(default_factory=_Frozen)  # id -> CertificateConfig
    ca_certificates: tuple[str, ...] = ()           # validate-client-certificate trust
    certificate_revocation_lists: tuple[str, ...] = ()
    secret_values: frozenset[str] = field(default=frozenset(), repr=False)  # named values' names
    telemetry: TelemetryConfig = TelemetryConfig()
    rate_limits: RateLimitsConfig = RateLimitsConfig()   # rate-limits: (store defaults)
    redis: RedisConfig | None = None                # redis: (store: redis); None: no section
