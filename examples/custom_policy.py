"""A custom policy: route each request to its tenant's backend (see custom-policy.yaml).

A custom policy is a subclass of `apigw_core.gateway.pipeline.Policy`, named in the config
by class path (`custom: {class: "custom_policy:TenantRouting", ...}`); the entry's other
keys are its `spec`.  `__init__` runs once, when the config is loaded: check the spec
there and report mistakes with `site.error(message, key)` (they show up in `apigw
validate` with their path, all at once); `apply(ctx)` runs per request and returns None
(go on), an `Answer` (reply now), or raises `PolicyError` (on-error runs, then the client
gets APIM's JSON error).  It must do no I/O: to call a service, be a generator that yields
a `SendRequest` (see the built-in send-request policy).
"""

from __future__ import annotations

from typing import Any, Mapping

from apigw_core.gateway.pipeline import Context, Policy, PolicyError, Site


class TenantRouting(Policy):
    """`{header: X-Tenant, tenants: {tenant: backend-name, ...}, default: backend-name}`:
    the tenant named in the header picks the backend; an unknown tenant, or none without a
    default, is a 400.  The tenant is echoed to the client as `x-tenant`."""

    name = "tenant-routing"
    sections = frozenset({"inbound"})

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        for key in spec:
            if key not in ("header", "tenants", "default"):
                site.error("unknown attribute (expected one of header, tenants, default)", key)
        header = spec.get("header", "X-Tenant")
        if not isinstance(header, str) or not header:
            site.error("expected a header name", "header")
            header = "X-Tenant"
        self.header = header.lower().encode("ascii")
        tenants = spec.get("tenants")
        if not isinstance(tenants, Mapping) or not tenants:
            site.error("required: a mapping of tenant name to backend name", "tenants")
            tenants = {}
        self.tenants: dict[bytes, str] = {}
        for tenant, backend in tenants.items():
            if backend not in site.backends:      # checked at load time, not per request
                site.error(f"unknown backend {backend!r}", f"tenants.{tenant}")
            self.tenants[str(tenant).lower().encode()] = backend
        self.default = spec.get("default")
        if self.default is not None and self.default not in site.backends:
            site.error(f"unknown backend {self.default!r}", "default")

    def apply(self, ctx: Context) -> None:
        tenant = (ctx.request.headers.get(self.header) or b"").strip().lower()
        backend = self.tenants.get(tenant) if tenant else self.default
        if backend is None:
            raise PolicyError(400, "TenantNotFound",
                              f"Unknown or missing tenant in {self.header.decode()}.")
        ctx.backend_id = backend
        ctx.response_headers.append((b"x-tenant", tenant or b"default"))
        return None
