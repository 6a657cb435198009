"""The policy contract: what a policy is, what it sees, and what it may answer.

Strategy.  Envoy's filter shape with mitmproxy's commands.  A policy is compiled once from
its config (`Policy.__init__(spec, site)`: attributes checked, templates and conditions
parsed, header names pre-lowered), then `apply(ctx)` runs it for one request in the section
it was placed in (the `Site` told it which one at compile time, so `set-header` in inbound
binds to the request's headers and in outbound to the response's).  `apply` returns:

- `None`: continue with the next policy;
- an `Answer`: reply now with this status, headers and body (`return-response`, a CORS
  preflight); the rest of the pipeline is skipped except outbound is NOT run (APIM);
- or it is a generator that yields `Command`s for the runtime (read the body up to N
  bytes, call a service, forward to the backend) and receives each command's result via
  `send()`; its return value is `None` or an `Answer` as above.

A refusal (`check-header` 401, `ip-filter` 403, ...) raises `PolicyError`: the engine
records it as `ctx.last_error` and runs the on-error section; if on-error does not answer
itself, the error's own answer goes to the client through the one local-reply path (APIM
JSON, or a gRPC status for a gRPC caller).

Policies never import trio or `apigw_core.protocol`: they see the protocol-neutral view
below (`Context`), with headers as `list[tuple[bytes, bytes]]` lower-case names (the
events' own lists, so nothing is converted unless a policy reads it), text values as str.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Callable, ClassVar, Generator, Iterable, Mapping, Optional, Union

__all__ = [
    "SECTIONS", "Answer", "PolicyError", "LastError", "Command", "ReadRequestBody",
    "ReadResponseBody", "SendRequest", "ServiceResponse", "ForwardRequest", "Headers",
    "RequestView", "ResponseView", "Context", "Site", "Policy", "Outcome", "Step",
]

SECTIONS = ("inbound", "backend", "outbound", "on-error")


# --- answers and errors ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Answer:
    """Reply now (a local reply made by a policy, e.g. `return-response`)."""

    status: int = 200
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""
    reason: str = ""


class PolicyError(Exception):
    """A policy refused the request, or failed.  APIM's `context.LastError` fields, plus
    the answer to give when on-error does not answer itself: `status`, `message` (the
    JSON body's), `headers` (e.g. WWW-Authenticate, Retry-After)."""

    def __init__(self, status: int, reason: str, message: str,
                 headers: Iterable[tuple[bytes, bytes]] = (), source: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.headers = tuple(headers)
        self.source = source   # the policy name; the engine fills it in when empty


@dataclass(frozen=True, slots=True)
class LastError:
    """APIM's context.LastError (error-handling doc): what failed, and where."""

    source: str        # policy name, or "configuration" / "forward-request" / ...
    reason: str        # SubscriptionKeyNotFound, OperationNotFound, HeaderNotFound, ...
    message: str
    scope: str = ""    # global | product | api | operation
    section: str = ""  # inbound | backend | outbound | on-error
    path: str = ""     # e.g. "choose[3]\\when[2]" (1-based, APIM's form)
    policy_id: str = ""
    status: int = 500  # the answer the error asks for (not an APIM field)
    headers: tuple[tuple[bytes, bytes], ...] = ()


# --- commands (the runtime carries them out and sends back the result) ------------------

class Command:
    """Something only the runtime can do.  Yielded by a policy generator."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class ReadRequestBody(Command):
    """Buffer the whole request body (result: bytes, also left in ctx.request.body).
    Over `limit` bytes the runtime raises PolicyError 413 into the policy."""

    limit: int


@dataclass(frozen=True, slots=True)
class ReadResponseBody(Command):
    """Buffer the whole backend response body (result: bytes, in ctx.response.body).
    Over `limit` bytes: PolicyError 502."""

    limit: int


@dataclass(frozen=True, slots=True)
class ServiceResponse:
    """The result of a SendRequest: a whole response."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SendRequest(Command):
    """Call a service (`send-request`): result ServiceResponse, or a PolicyError thrown
    into the generator (reason BackendConnectionFailure / Timeout) when it fails."""

    method: str
    url: str
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""
    timeout: float = 60.0
    max_body: int = 1 << 20


@dataclass(frozen=True, slots=True)
class ForwardRequest(Command):
    """Forward ctx.request to the selected backend (`forward-request`).  The runtime fills
    ctx.response (status, reason, headers; body only when buffered) and resumes; a failure
    is thrown in as PolicyError (BackendConnectionFailure 502, Timeout 504, ...)."""

    timeout: Optional[float] = None          # None: the backend's configured timeout
    http_version: Optional[str] = None       # None: the backend's
    buffer_request_body: bool = False
    fail_on_error_status_code: bool = False


# --- the protocol-neutral view ------------------------------------------------------------

_first = itemgetter(0)   # a field's name


class Headers:
    """A view over a `list[tuple[bytes, bytes]]` (lower-case names, order kept).  Names are
    bytes, lower-case, pre-encoded at compile time by the policies."""

    __slots__ = ("items",)

    def __init__(self, items: Optional[list[tuple[bytes, bytes]]] = None) -> None:
        self.items = items if items is not None else []

    def get(self, name: bytes) -> Optional[bytes]:
        """The values of `name` joined by ", " (RFC 9110 §5.3), or None."""
        found = [v for n, v in self.items if n == name]
        if not found:
            return None
        return found[0] if len(found) == 1 else b", ".join(found)

    def get_all(self, name: bytes) -> list[bytes]:
        return [v for n, v in self.items if n == name]

    def __contains__(self, name: bytes) -> bool:
        return name in map(_first, self.items)   # the scan in C

    def set(self, name: bytes, values: Iterable[bytes]) -> None:
        """Replace every `name` field by `values` (one field per value)."""
        self.items = [(n, v) for n, v in self.items if n != name]
        self.items.extend((name, v) for v in values)

    def add(self, name: bytes, value: bytes) -> None:
        self.items.append((name, value))

    def remove(self, name: bytes) -> None:
        self.items = [(n, v) for n, v in self.items if n != name]


@dataclass(slots=True)
class RequestView:
    """The request as policies see it.  `path` is the full normalised path as received
    (APIM's Request.Url.Path), `query` the raw query string without "?"; `body` is None
    until a ReadRequestBody brought it in.  Policies may change method, path, query,
    headers and body (set-method, rewrite-uri, set-query-parameter, set-header, set-body):
    the runtime forwards what is here then, mapping `path` minus the API's path
    (`ctx.api.path`, which rewrite-uri keeps) onto the backend's base path as for an
    untouched request; a body set by a policy drops `content-length` from `headers`, and
    the runtime frames it anew."""

    method: str
    scheme: str
    host: str
    path: str
    query: str
    headers: Headers
    ip: str
    params: dict[str, str] = field(default_factory=dict)   # URL-template parameters
    body: Optional[bytes] = None
    tls: Any = None      # the client certificate (gateway.certificates.ClientCertificate)
    protocol: str = "http"                   # http | grpc | grpc-web | websocket


@dataclass(slots=True)
class ResponseView:
    status: int
    reason: str
    headers: Headers
    body: Optional[bytes] = None


@dataclass(slots=True)
class Context:
    """One request's state through the pipeline (APIM's `context`)."""

    request: RequestView
    request_id: str
    api: Any = None                 # ApiConfig
    operation: Any = None           # OperationConfig or None
    product: Any = None             # ProductConfig or None
    subscription: Any = None        # SubscriptionConfig or None
    subscription_key: Optional[str] = None
    response: Optional[ResponseView] = None
    variables: dict[str, Any] = field(default_factory=dict)
    last_error: Optional[LastError] = None
    backend_id: Optional[str] = None      # set-backend-service backend-id (None: the API's)
    backend_url: Optional[str] = None     # set-backend-service base-url
    backend_certificate: Optional[str] = None   # authentication-certificate: a certificates: ID
    section: str = "inbound"              # the section running now
    # Added by the policies helper (cors): fields an inbound policy wants on the client's
    # response whatever makes it (backend, return-response, on-error, a local error reply).
    # The runtime appends them last, after dropping the response's own fields of the same
    # names, except `vary`, which is list-valued and kept (RFC 9110 §12.5.5).
    response_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    # Callbacks `f(ctx)` the runtime calls once when the request is over: the response
    # written to its end, or the client gone, or a failure (limit-concurrency releases its
    # slot here, quota counts bandwidth).  Exceptions are logged, never raised.
    finish: list[Callable[["Context"], None]] = field(default_factory=list)
    # The claims of the token validate-jwt accepted (`{jwt.claims.sub}`), else None.
    jwt: Optional[Mapping[str, Any]] = None


# --- compiling ------------------------------------------------------------------------

Outcome = Optional[Answer]
Step = Callable[[Context], Union[Outcome, Generator[Command, Any, Outcome]]]


class Site:
    """Where a policy is being compiled: its config path (for errors), its section and
    scope, and the compilers it needs.  Errors are collected, not raised, so a config
    shows all of its mistakes at once; `error()` returns nothing and compiling goes on."""

    def __init__(self, path: str, section: str, scope: str, errors: list[str],
                 named_values: Mapping[str, str], compile_nested: Callable[..., Any],
                 template: Callable[..., Any], condition: Callable[..., Any],
                 backends: Iterable[str] = ()) -> None:
        self.path = path                  # e.g. "apis[2].policies.inbound[0].set-header"
        self.section = section            # inbound | backend | outbound | on-error
        self.scope = scope                # global | product | api | operation
        self.errors = errors
        self.named_values = named_values
        self.backends = frozenset(backends)
        self._nested = compile_nested
        self._template = template
        self._condition = condition

    def error(self, message: str, key: str = "") -> None:
        self.errors.append(f"{self.path}.{key}: {message}" if key else f"{self.path}: {message}")

    def template(self, text: Any, key: str):
        """A compiled template (`.render(ctx) -> str`, `.constant`: the text when it has no
        expression, else None), or None after recording an error at `path.key`."""
        return self._template(text, f"{self.path}.{key}", self.errors)

    def condition(self, text: Any, key: str):
        """A compiled condition (`.test(ctx) -> bool`), or None after an error."""
        return self._condition(text, f"{self.path}.{key}", self.errors)

    def nested(self, entries: Any, key: str):
        """Compile a nested policy list (choose/when policies): a tuple of steps."""
        return self._nested(entries, f"{self.path}.{key}", self)


class Policy:
    """Base class: a pass-through policy.  Subclasses set `name` (APIM's) and `sections`
    (where APIM allows them) and override `__init__` / `apply`."""

    name: ClassVar[str] = ""
    sections: ClassVar[frozenset[str]] = frozenset(SECTIONS)
    # True when apply() may read the request / response body (the runtime then knows
    # before the request is forwarded that the body must be buffered).
    reads_request_body: bool = False
    reads_response_body: bool = False

    def __init__(self, spec: Any, site: Site) -> None:
        self.spec = spec
        self.site_path = site.path

    def apply(self, ctx: Context) -> Union[Outcome, Generator[Command, Any, Outcome]]:
        return None
