"""Test helpers for the pipeline: config stand-ins, a Context builder and an in-memory
driver that carries out the engine's commands with fakes.

The config classes here stand in for `apigw_core.gateway.config`'s (same names and fields,
see the pipeline brief); the coordinator switches them to the real ones once the config
branch is merged.  Everything else is real pipeline code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

from apigw_core.gateway.pipeline.contract import (
    Answer, Context, ForwardRequest, Headers, Policy, PolicyError, ReadRequestBody,
    ReadResponseBody, RequestView, ResponseView, SendRequest, ServiceResponse, Site,
)

PolicyEntry = Any   # "base" or a one-key mapping


# --- config stand-ins (the real ones live in apigw_core.gateway.config) -------------------

@dataclass(frozen=True, slots=True)
class PolicySections:
    inbound: tuple = ()
    backend: tuple = ()
    outbound: tuple = ()
    on_error: tuple = ()
    declared: frozenset = frozenset()


def sections(**kw: Sequence[PolicyEntry]) -> PolicySections:
    """`sections(inbound=[...], on_error=[...])`: the given sections are declared."""
    return PolicySections(**{k: tuple(v) for k, v in kw.items()}, declared=frozenset(kw))


@dataclass(frozen=True, slots=True)
class OperationConfig:
    name: str
    method: str = "*"
    url_template: str = "/"
    policies: PolicySections = PolicySections()


@dataclass(frozen=True, slots=True)
class SubscriptionKeyConfig:
    header: str = "Ocp-Apim-Subscription-Key"
    query: str = "subscription-key"
    forward: bool = True


@dataclass(frozen=True, slots=True)
class ApiConfig:
    name: str
    path: str = ""
    backend: str = "b"
    host: Optional[str] = None
    protocols: tuple = ("http",)
    subscription_required: bool = False
    subscription_key: SubscriptionKeyConfig = SubscriptionKeyConfig()
    operations: tuple = ()
    policies: PolicySections = PolicySections()


@dataclass(frozen=True, slots=True)
class ProductConfig:
    name: str
    apis: tuple = ()
    subscription_required: bool = True
    policies: PolicySections = PolicySections()


@dataclass(frozen=True, slots=True)
class SubscriptionConfig:
    id: str
    scope: str = "product"
    product: Optional[str] = None
    api: Optional[str] = None
    primary_key: Optional[str] = None
    secondary_key: Optional[str] = None
    state: str = "active"


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    apis: tuple = ()
    backends: Mapping[str, Any] = field(default_factory=lambda: {"b": object()})
    products: Mapping[str, ProductConfig] = field(default_factory=dict)
    subscriptions: tuple = ()
    named_values: Mapping[str, str] = field(default_factory=dict)
    policies: PolicySections = PolicySections()
    listeners: tuple = ()
    source: str = "<config>"


# --- contexts -------------------------------------------------------------------------------

def hdrs(items: Mapping[str, str] | Sequence[tuple[str, str]] = ()) -> Headers:
    pairs = items.items() if isinstance(items, Mapping) else items
    return Headers([(k.lower().encode(), v.encode("latin-1")) for k, v in pairs])


def make_ctx(method: str = "GET", path: str = "/orders/7", query: str = "",
             headers: Mapping[str, str] | Sequence[tuple[str, str]] = (),
             ip: str = "127.0.0.1", body: Optional[bytes] = None,
             params: Optional[dict] = None, api: Any = None, operation: Any = None,
             product: Any = None, subscription: Any = None,
             subscription_key: Optional[str] = None, response: Optional[ResponseView] = None,
             variables: Optional[dict] = None, host: str = "gw.example",
             request_id: str = "req-1", protocol: str = "http") -> Context:
    req = RequestView(method=method, scheme="http", host=host, path=path, query=query,
                      headers=hdrs(headers), ip=ip, params=dict(params or {}), body=body,
                      protocol=protocol)
    return Context(request=req, request_id=request_id, api=api, operation=operation,
                   product=product, subscription=subscription,
                   subscription_key=subscription_key, response=response,
                   variables=dict(variables or {}))


def response(status: int = 200, headers: Mapping[str, str] | Sequence = (),
             body: Optional[bytes] = None, reason: str = "") -> ResponseView:
    return ResponseView(status=status, reason=reason, headers=hdrs(headers), body=body)


# --- the in-memory driver -------------------------------------------------------------------

@dataclass
class FakeBackend:
    """What ForwardRequest gets: a response, or an error to throw in (PolicyError)."""

    status: int = 200
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""
    error: Optional[PolicyError] = None
    seen: list = field(default_factory=list)   # (ForwardRequest, method, url-ish, headers)


class Driver:
    """Runs the engine's command generator to its end, in memory, like the runtime's
    executor: ReadRequestBody gives `request_body` (PolicyError 413 over the limit),
    ReadResponseBody the backend's body, ForwardRequest fills ctx.response from `backend`,
    SendRequest asks `services(cmd)` (a ServiceResponse, or raise PolicyError).
    `commands` records every command in order."""

    def __init__(self, request_body: bytes = b"", backend: Optional[FakeBackend] = None,
                 services: Optional[Callable[[SendRequest], ServiceResponse]] = None) -> None:
        self.request_body = request_body
        self.backend = backend or FakeBackend()
        self.services = services or (lambda cmd: ServiceResponse(200, (), b""))
        self.commands: list = []

    def execute(self, cmd: Any, ctx: Context) -> Any:
        self.commands.append(cmd)
        if isinstance(cmd, ReadRequestBody):
            if len(self.request_body) > cmd.limit:
                raise PolicyError(413, "RequestEntityTooLarge", "Request body too large.")
            ctx.request.body = self.request_body
            return self.request_body
        if isinstance(cmd, ReadResponseBody):
            assert ctx.response is not None
            if ctx.response.body is None:
                ctx.response.body = self.backend.body
            if len(ctx.response.body) > cmd.limit:
                raise PolicyError(502, "ResponseTooLarge", "Response body too large.")
            return ctx.response.body
        if isinstance(cmd, ForwardRequest):
            b = self.backend
            b.seen.append((cmd, ctx.request.method, ctx.request.path, ctx.request.query,
                           list(ctx.request.headers.items), ctx.backend_id, ctx.backend_url))
            if b.error is not None:
                raise b.error
            ctx.response = response(b.status, b.headers, None)
            return None
        if isinstance(cmd, SendRequest):
            return self.services(cmd)
        raise AssertionError(f"unknown command {cmd!r}")

    def run(self, gen: Any, ctx: Context) -> Any:
        """Drive `gen` (a generator of commands) and return its return value."""
        value: Any = None
        error: Optional[BaseException] = None
        while True:
            try:
                cmd = gen.throw(error) if error is not None else gen.send(value)
            except StopIteration as stop:
                return stop.value
            value, error = None, None
            try:
                value = self.execute(cmd, ctx)
            except PolicyError as e:
                error = e


# --- small custom policies for the engine tests (named "helpers:Fail" etc. in configs) ----

class Fail(Policy):
    """Raise PolicyError(status, reason, message) from the spec."""

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        self.err = (int(spec.get("status", 401)), spec.get("reason", "Nope"),
                    spec.get("message", "nope"))

    def apply(self, ctx: Context) -> None:
        raise PolicyError(*self.err)


class Boom(Policy):
    """A bug: raises RuntimeError with a secret in its message."""

    def apply(self, ctx: Context) -> None:
        raise RuntimeError("secret internals /etc/passwd")


class Tag(Policy):
    """Add `x-tag: <spec tag>` to the response (or the request in inbound)."""

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        self.tag = str(spec.get("tag", "t")).encode()
        self.section = site.section

    def apply(self, ctx: Context) -> None:
        target = ctx.request if self.section == "inbound" else ctx.response
        target.headers.add(b"x-tag", self.tag)


class Junk(Policy):
    """A bug: apply() returns something that is not an outcome."""

    def apply(self, ctx: Context) -> Any:
        return 42


def program_of(apis: Sequence[ApiConfig] = (), *, api: str = "", operation: Optional[str] = None,
               product: Optional[str] = None, **config: Any) -> Any:
    """Build the config's programs (failing on any config error) and return one."""
    from apigw_core.gateway.pipeline import Programs

    cfg = GatewayConfig(apis=tuple(apis), **config)
    programs = Programs(cfg)
    assert programs.errors == [], programs.errors
    return programs.get(api or cfg.apis[0].name, operation, product)


def config_errors(apis: Sequence[ApiConfig] = (), **config: Any) -> list[str]:
    from apigw_core.gateway.pipeline import check_config

    return check_config(GatewayConfig(apis=tuple(apis), **config))


def one_api(inbound: Any = None, backend: Any = None, outbound: Any = None,
            on_error: Any = None, **config: Any) -> Any:
    """The program of one API whose policies are the sections given (the others [base])."""
    kw = {k: v for k, v in (("inbound", inbound), ("backend", backend),
                            ("outbound", outbound), ("on_error", on_error)) if v is not None}
    return program_of([ApiConfig("orders", path="/orders", policies=sections(**kw))], **config)


def run_program(program: Any, ctx: Optional[Context] = None,
                driver: Optional[Driver] = None, error: Any = None) -> tuple:
    """Run the whole pipeline in memory: (Result, ctx, driver)."""
    from apigw_core.gateway.pipeline import run

    ctx = ctx if ctx is not None else make_ctx()
    driver = driver or Driver()
    return driver.run(run(program, ctx, error), ctx), ctx, driver


__all__ = ["PolicySections", "sections", "OperationConfig", "SubscriptionKeyConfig",
           "ApiConfig", "ProductConfig", "SubscriptionConfig", "GatewayConfig", "hdrs",
           "make_ctx", "response", "FakeBackend", "Driver", "Answer", "program_of",
           "config_errors", "one_api", "run_program"]
