"""The configuration file's format, declared as pydantic v2 models.

Strategy.  One model per section, in the file's own shape and spelling: keys are the
kebab-case aliases of the fields (`head-timeout`), python names are refused, unknown keys
are errors (extra="forbid").  Leaves are strict (a bool is not an int, "10" is not an
int); formats pydantic has no type for (durations, sizes, binds, URLs, URL templates) are
the converters of `_values.py` attached with PlainValidator, with a JSON Schema beside
each so that `json_schema()` describes what the validators accept.  A model checks only
itself (a listener's protocols against its tls, a subscription's one scope); what spans
sections (names that refer to other sections, uniqueness) is `_checks.py`, and turning the
validated models into the runtime's dataclasses is `_build.py`.  Defaults are read from the
dataclasses of `_model.py`, so there is one place for them.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, fields
from typing import Annotated, Any, ClassVar, Literal, Optional

from pydantic import (BaseModel, ConfigDict, Field, PlainValidator, StrictBool,
                      ValidationInfo, WithJsonSchema, model_validator)
from pydantic.json_schema import GenerateJsonSchema

from . import _model as m
from ._retrybudget import RetryBudget
from . import _resilience as r
from ._telemetry import Telemetry
from ._ratelimits import RateLimits
from ._redis import Redis
from ._values import (DURATION_PATTERN, SIZE_PATTERN, TOKEN_PATTERN, Bound, Url, _api_path,
                      _backend_url, _bind, _bounded, _duration, _hostname, _http_version,
                      _Invalid, _method, _policy_entry, _positive_duration, _protocols,
                      _secret_key, _size, _string, _token, _url_template)

__all__ = ["Gateway", "json_schema", "Expect", "Later"]


class Expect:
    """Field metadata: what a wrong-typed value should have been ("a mapping of name to
    backend"), for the message `_errors.py` writes instead of the generic one."""

    def __init__(self, what: str) -> None:
        self.what = what


class Later:
    """Field metadata: a key reserved for a later issue, refused and not listed as known."""


def _default(cls: type, name: str) -> Any:
    f = next(f for f in fields(cls) if f.name == name)
    return f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]


def _leaf(conv: Any, schema: dict, typ: Any = Any) -> Any:
    return Annotated[typ, PlainValidator(conv), WithJsonSchema(schema)]


def _range(lo: int, hi: int) -> Any:
    return Annotated[int, Field(strict=True, ge=lo, le=hi)]


def _file(v: object, info: ValidationInfo) -> str:
    """An existing file, relative to the config file's directory (context "base_dir")."""
    base = (info.context or {}).get("base_dir") or os.getcwd()
    full = os.path.normpath(os.path.join(base, os.path.expanduser(_string(v))))
    if not os.path.isfile(full):
        raise _Invalid(f"file not found: {full}")
    return full


def _later(v: object) -> Any:
    raise _Invalid("not supported yet")


def _number_or(pattern: str, minimum: dict) -> dict:
    return {"anyOf": [{"type": "number", **minimum}, {"type": "string", "pattern": pattern}]}


_BIND_SCHEMA = {"type": "string", "pattern": r"^(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+):\d{1,5}$"}

Duration = _leaf(_duration, _number_or(DURATION_PATTERN, {"minimum": 0}), float)
PositiveDuration = _leaf(_positive_duration, _number_or(DURATION_PATTERN, {"exclusiveMinimum": 0}), float)
Size = _leaf(_size, {"anyOf": [{"type": "integer", "minimum": 0},
                               {"type": "string", "pattern": SIZE_PATTERN}]}, int)
Limit = _leaf(_bounded(_size, 1, 2**31 - 1), {"anyOf": [
    {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
    {"type": "string", "pattern": SIZE_PATTERN}]}, int)
Name = Annotated[str, Field(strict=True, min_length=1)]
Bind = _leaf(_bind, _BIND_SCHEMA, Bound)
File = _leaf(_file, {"type": "string", "minLength": 1}, str)
Host = _leaf(lambda v: _hostname(v, wildcard=True), {"type": "string", "minLength": 1}, str)
Token = _leaf(_token("header name"), {"type": "string", "pattern": TOKEN_PATTERN}, str)
Key = _leaf(_secret_key, {"type": "string", "minLength": 1}, str)
Reserved = Annotated[Any, PlainValidator(_later), WithJsonSchema({"not": {}}), Later()]
Count = _range(1, 2**31 - 1)
FieldCount = _range(0, 2**31 - 1)
MessageSize = _leaf(_bounded(_size, 125, 2**31 - 1), {"anyOf": [
    {"type": "integer", "minimum": 125, "maximum": 2**31 - 1},
    {"type": "string", "pattern": SIZE_PATTERN}]}, int)
BackendUrl = _leaf(_backend_url, {"type": "string", "pattern": "^https?://"}, Url)
HttpVersion = _leaf(_http_version, {"enum": ["1", "2", "2or1", 1, 2]}, str)
ApiPath = _leaf(_api_path, {"type": "string"}, str)
Method = _leaf(_method, {"type": "string", "pattern": TOKEN_PATTERN}, str)
UrlTemplate = _leaf(_url_template, {"type": "string", "pattern": "^/"}, str)


def _protocol_list(allowed: tuple[str, ...]) -> Any:
    return _leaf(_protocols(allowed), {"type": "array", "minItems": 1, "uniqueItems": True,
                                       "items": {"enum": list(allowed)}}, tuple[str, ...])


ListenerProtocols = _protocol_list(("http1", "h2", "h2c"))
ApiProtocols = _protocol_list(("http", "websocket", "grpc"))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=lambda s: s.replace("_", "-"),
                              use_attribute_docstrings=True)


# --- listeners, server, admin ---------------------------------------------------------------

from ._certs import (CertificateEntry, ClientCertDetails, ForwardClientCert,  # noqa: E402
                     ListenerClientCertificate, NamedValueEntry, CaFile, CrlFile)


class SniCert(_Section):
    cert: File
    key: File


class ListenerTLS(_Section):
    cert: File
    key: File
    sni: Annotated[dict[Host, SniCert], Expect("a mapping of server name to {cert, key}")] = {}
    client_certificate: Optional[ListenerClientCertificate] = None


class Listener(_Section):
    bind: Bind
    """host:port; IPv6 as [::1]:8080; port 0 picks a free port"""
    protocols: ListenerProtocols = _default(m.ListenerConfig, "protocols")
    tls: Optional[ListenerTLS] = None
    forward_client_cert: ForwardClientCert = _default(m.ListenerConfig, "forward_client_cert")
    """x-forwarded-client-cert (Envoy's modes): sanitize (drop the client's) | sanitize-set
    (drop it, send ours) | append-forward (keep it, append ours) | forward-only"""
    client_cert_details: ClientCertDetails = list(_default(m.ListenerConfig, "client_cert_details"))
    """what our x-forwarded-client-cert element carries besides Hash"""

    @model_validator(mode="after")
    def _http2_and_tls(self) -> Listener:
        # RFC 9113 §3: "h2" is HTTP/2 over TLS (ALPN), "h2c" over cleartext only.
        if "h2" in self.protocols and self.tls is None:
            raise _Invalid("h2 needs tls (h2c is HTTP/2 without TLS)", at=("protocols",))
        if "h2c" in self.protocols and self.tls is not None:
            raise _Invalid("h2c is cleartext HTTP/2; with tls use h2", at=("protocols",))
        return self


def _server_default(name: str) -> Any:
    return _default(m.ServerConfig, name)


class Server(_Section):
    head_timeout: PositiveDuration = _server_default("head_timeout")
    idle_timeout: PositiveDuration = _server_default("idle_timeout")
    body_timeout: PositiveDuration = _server_default("body_timeout")
    write_timeout: PositiveDuration = _server_default("write_timeout")
    shutdown_timeout: Duration = _server_default("shutdown_timeout")
    """0: close at once"""
    max_connections: Count = _server_default("max_connections")
    # The head parser's ranges (apigw_core/_purepy/http1_head.check_limits).
    max_request_line: Limit = _server_default("max_request_line")
    max_head: Limit = _server_default("max_head")
    max_fields: FieldCount = _server_default("max_fields")
    max_body: Optional[Size] = _server_default("max_body")
    """request body cap (413); null: unlimited"""
    websocket_idle_timeout: PositiveDuration = _server_default("websocket_idle_timeout")
    websocket_max_message: MessageSize = _server_default("websocket_max_message")
    escaped_slashes: Literal["keep", "reject", "unescape"] = _server_default("escaped_slashes")
    client_abort: Literal["cancel", "ignore"] = _server_default("client_abort")
    """cancel: a client closing while its request waits on the backend cancels it (499)"""


class Admin(_Section):
    bind: Bind


# --- backends ----------------------------------------------------------------------------

class BackendTLS(_Section):
    verify: StrictBool = _default(m.BackendTLSConfig, "verify")
    ca: Optional[File] = None
    """CA bundle; absent: the system store"""
    client_certificate: Optional[Name] = None
    """a certificates: ID presented to the backend (backend mTLS)"""


def _backend_default(name: str) -> Any:
    return _default(m.BackendConfig, name)


class Backend(_Section):
    # Not required for pydantic, so that a pool (no url) and a missing url are told apart
    # here; the JSON Schema says one of them is.
    model_config = ConfigDict(json_schema_extra={"anyOf": [{"required": ["url"]},
                                                           {"required": ["pool"]}]})

    url: BackendUrl = None
    connect_timeout: PositiveDuration = _backend_default("connect_timeout")
    timeout: PositiveDuration = _backend_default("timeout")
    idle_timeout: PositiveDuration = _backend_default("idle_timeout")
    max_connections: Count = _backend_default("max_connections")
    http_version: HttpVersion = _backend_default("http_version")
    tls: Optional[BackendTLS] = None
    pool: Optional[r.PoolMembers] = None
    """a pool: members instead of a url (config/_resilience.py)"""
    session_affinity: Optional[r.SessionAffinity] = None
    circuit_breaker: Optional[r.CircuitBreaker] = None
    health_check: Optional[r.HealthCheck] = None
    ejection_time: PositiveDuration = _backend_default("ejection_time")
    """a pool member that failed to connect is skipped this long, then tried again"""
    retry_budget: Optional[RetryBudget] = None
    """retries at once capped at a share of active requests (Envoy's retry budget)"""

    @model_validator(mode="after")
    def _url_and_tls(self) -> Backend:
        if self.pool is not None:
            own = [k for k in self.model_fields_set
                   if k not in ("pool", "session_affinity", "timeout", "retry_budget")]
            if own:
                spelt = own[0].replace("_", "-")
                raise _Invalid("a pool has only pool, session-affinity and timeout, and a "
                               "retry-budget (connection settings, circuit-breaker and "
                               "health-check go on its members)",
                               at=(spelt,))
            r.check_pool(self.pool)
            return self
        if self.session_affinity is not None:
            raise _Invalid("session-affinity needs a pool", at=("session-affinity",))
        if self.url is None:
            raise _Invalid("required (or pool: for a pool)", at=("url",))
        if self.tls is not None and self.url.scheme != "https":
            raise _Invalid("only an https backend uses tls", at=("tls",))
        return self


# --- policies, operations, apis, products, subscriptions ---------------------------------

PolicyEntry = _leaf(_policy_entry, {"anyOf": [
    {"const": "base"}, {"type": "object", "minProperties": 1, "maxProperties": 1}]})


class Policies(_Section):
    """A scope's policies; each entry `base` or {policy-name: attributes}"""

    inbound: list[PolicyEntry] = []
    backend: list[PolicyEntry] = []
    outbound: list[PolicyEntry] = []
    on_error: list[PolicyEntry] = []

    _global: ClassVar[bool] = False

    @model_validator(mode="after")
    def _base(self) -> Policies:
        for section in ("inbound", "backend", "outbound", "on_error"):
            at = None
            for i, entry in enumerate(getattr(self, section)):
                if entry != "base":
                    continue
                spelt = section.replace("_", "-")
                if self._global:
                    raise _Invalid("base is not allowed at the global scope (it has no outer scope)",
                                   at=(spelt, i))
                if at is not None:
                    raise _Invalid(f"base appears twice in a section (also {spelt}[{at}])", at=(spelt, i))
                at = i
        return self


class GlobalPolicies(Policies):
    _global: ClassVar[bool] = True


class Operation(_Section):
    name: Name
    method: Method
    """GET, POST, ... or * for any"""
    url_template: UrlTemplate
    """/{id}, /files/{*path}, /get?a={b}"""
    policies: Policies = Field(default_factory=Policies)


_KEY_DEFAULTS = m.SubscriptionKeyConfig()


class SubscriptionKey(_Section):
    header: Token = _KEY_DEFAULTS.header
    query: Name = _KEY_DEFAULTS.query
    forward: StrictBool = _KEY_DEFAULTS.forward
    """the key header goes on to the backend"""


class Api(_Section):
    name: Name
    path: ApiPath
    """'' or /seg[/seg...], no trailing /"""
    host: Optional[Host] = None
    """*.example.com matches any subdomain"""
    backend: Name
    protocols: ApiProtocols = _default(m.ApiConfig, "protocols")
    subscription_required: StrictBool = _default(m.ApiConfig, "subscription_required")
    subscription_key: SubscriptionKey = Field(default_factory=SubscriptionKey)
    operations: list[Operation] = []
    policies: Policies = Field(default_factory=Policies)


class Product(_Section):
    apis: list[Name] = []
    subscription_required: StrictBool = _default(m.ProductConfig, "subscription_required")
    policies: Policies = Field(default_factory=Policies)


class Subscription(_Section):
    id: Name
    product: Optional[Name] = None
    api: Optional[Name] = None
    scope: Optional[Literal["product", "api", "all-apis"]] = None
    primary_key: Optional[Key] = None
    secondary_key: Optional[Key] = None
    state: Literal["active", "suspended", "expired", "submitted", "rejected", "cancelled"] = "active"

    @property
    def resolved_scope(self) -> str:
        return self.scope or ("product" if self.product is not None else "api")

    @model_validator(mode="after")
    def _one_scope(self) -> Subscription:
        named = [k for k in ("product", "api") if getattr(self, k) is not None]
        if self.scope == "all-apis" and named:
            raise _Invalid(f"one scope only: scope all-apis, or {named[0]}", at=(named[0],))
        if self.scope in ("product", "api") and named != [self.scope]:
            raise _Invalid(f"scope {self.scope} needs {self.scope}: NAME, and no other scope",
                           at=("scope",))
        if self.scope is None and len(named) != 1:
            raise _Invalid("one scope only: product or api, not both" if named else
                           "needs a scope: product: NAME, api: NAME or scope: all-apis")
        if self.primary_key is None and self.secondary_key is None:
            raise _Invalid("needs a primary-key or a secondary-key")
        return self


def _named_value_name(v: object) -> str:
    s = _string(v)
    if not all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in s):
        raise _Invalid(f"a named value's name is letters, digits, '.', '-' and '_', got {s!r}")
    return s


NamedValueName = _leaf(_named_value_name, {"type": "string", "pattern": r"^[A-Za-z0-9._-]+$"}, str)


class Gateway(_Section):
    """apigw_core gateway configuration"""

    model_config = ConfigDict(title="apigw_core gateway configuration")

    listeners: Annotated[list[Listener], Field(min_length=1), Expect("a non-empty list")]
    backends: Annotated[dict[Name, Backend], Expect("a mapping of name to backend")] = {}
    apis: list[Api] = []
    server: Server = Field(default_factory=Server)
    admin: Optional[Admin] = None
    named_values: dict[NamedValueName, NamedValueEntry] = {}
    """used as {{name}} in any string of the file; {value, secret: true} for a secret"""
    products: Annotated[dict[Name, Product], Expect("a mapping of name to product")] = {}
    subscriptions: list[Subscription] = []
    policies: GlobalPolicies = Field(default_factory=GlobalPolicies)
    """the global scope"""
    certificates: Annotated[dict[Name, CertificateEntry],
                            Expect("a mapping of id to {cert, key, password}")] = {}
    """certificate-id -> PEM files (authentication-certificate, issuer-certificate-id)"""
    ca_certificates: list[CaFile] = []
    """CA bundles trusted by validate-client-certificate (besides the listener's ca)"""
    certificate_revocation_lists: list[CrlFile] = []
    """CRL files for validate-client-certificate validate-revocation"""
    telemetry: Optional[Telemetry] = None
    """metrics, access log"""
    rate_limits: RateLimits = Field(default_factory=RateLimits)
    """defaults of the rate-limit and quota policies (store, on-store-failure)"""
    redis: Optional[Redis] = None
    """the Redis server of store: redis (url, timeout, pool, sentinels, master)"""


class _NoFieldTitles(GenerateJsonSchema):
    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the config file, for editors."""
    schema = Gateway.model_json_schema(by_alias=True, schema_generator=_NoFieldTitles)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
