"""Validated models (the file's shape) -> the public dataclasses (the runtime's shape).

Only keys the file wrote are passed on (`model_fields_set`), so the dataclasses' defaults
apply to the rest; mappings become `_Frozen`, lists tuples, policy bodies deep-frozen.
"""

from __future__ import annotations

from typing import Any

from . import _model as m
from ._retrybudget import build_retry_budget
from . import _resilience as r
from . import _telemetry
from ._schema import (Api, Backend, Gateway, Listener, Operation, Policies, Product, Server,
                      Subscription)
from ._certs import CertificateConfig, CertificateEntry, ClientCertificateConfig  # after _schema


def _given(model: Any, *names: str) -> dict[str, Any]:
    return {n: getattr(model, n) for n in names if n in model.model_fields_set}


def policies(p: Policies) -> m.PolicySections:
    sections = ("inbound", "backend", "outbound", "on_error")
    return m.PolicySections(
        **{s: tuple(m.deep_freeze(e) for e in getattr(p, s)) for s in sections},
        declared=frozenset(s for s in sections if s in p.model_fields_set))


def listener(lc: Listener) -> m.ListenerConfig:
    tls = None
    if lc.tls is not None:
        sni = {name: (pair.cert, pair.key) for name, pair in lc.tls.sni.items()}
        cc = lc.tls.client_certificate
        client = (ClientCertificateConfig(mode=cc.mode, ca=cc.ca, crl=cc.crl)
                  if cc is not None and cc.mode != "none" else None)
        tls = m.TLSConfig(cert=lc.tls.cert, key=lc.tls.key, sni=m._Frozen(sni),
                          client_certificate=client)
    return m.ListenerConfig(bind=lc.bind.bind, host=lc.bind.host, port=lc.bind.port, tls=tls,
                            **_given(lc, "protocols", "forward_client_cert"),
                            client_cert_details=tuple(dict.fromkeys(lc.client_cert_details)))


def backend(name: str, b: Backend, certs: dict[str, CertificateEntry]) -> m.BackendConfig:
    if b.pool is not None:
        return m.BackendConfig(name=name, url="", scheme="", host="", port=0, base_path="",
                               pool=r.build_pool(b.pool), session_affinity=(
                                   b.session_affinity.cookie if b.session_affinity else None),
                               retry_budget=build_retry_budget(b.retry_budget),
                               **_given(b, "timeout"))
    tls = m.BackendTLSConfig()
    if b.tls is not None:
        files: dict = {}
        entry = certs.get(b.tls.client_certificate or "")
        if entry is not None:
            files = {"cert": entry.cert, "key": entry.key, "password": entry.password}
        tls = m.BackendTLSConfig(**_given(b.tls, "verify", "ca", "client_certificate"), **files)
    u = b.url
    return m.BackendConfig(name=name, url=u.url, scheme=u.scheme, host=u.host, port=u.port,
                           base_path=u.base_path, tls=tls,
                           retry_budget=build_retry_budget(b.retry_budget),
                           circuit_breaker=r.build_breaker(b.circuit_breaker),
                           health_check=r.build_health(b.health_check),
                           **_given(b, "connect_timeout", "timeout", "idle_timeout",
                                    "max_connections", "http_version", "ejection_time"))


def operation(op: Operation) -> m.OperationConfig:
    return m.OperationConfig(name=op.name, method=op.method, url_template=op.url_template,
                             policies=policies(op.policies))


def api(a: Api) -> m.ApiConfig:
    key = m.SubscriptionKeyConfig(**_given(a.subscription_key, "header", "query", "forward"))
    return m.ApiConfig(name=a.name, path=a.path, backend=a.backend, subscription_key=key,
                       operations=tuple(operation(op) for op in a.operations),
                       policies=policies(a.policies),
                       **_given(a, "host", "protocols", "subscription_required"))


def product(name: str, p: Product) -> m.ProductConfig:
    return m.ProductConfig(name=name, apis=tuple(p.apis), policies=policies(p.policies),
                           **_given(p, "subscription_required"))


def subscription(s: Subscription) -> m.SubscriptionConfig:
    return m.SubscriptionConfig(id=s.id, scope=s.resolved_scope, product=s.product, api=s.api,
                                primary_key=s.primary_key, secondary_key=s.secondary_key,
                                state=s.state)


def server(s: Server) -> m.ServerConfig:
    return m.ServerConfig(**_given(s, *s.model_fields_set))


def gateway(g: Gateway, source: str) -> m.GatewayConfig:
    admin = m.AdminConfig(*g.admin.bind) if g.admin is not None else None
    return m.GatewayConfig(
        listeners=tuple(listener(lc) for lc in g.listeners),
        backends=m._Frozen({name: backend(name, b, g.certificates) for name, b in g.backends.items()}),
        apis=tuple(api(a) for a in g.apis),
        server=server(g.server), admin=admin, source=source,
        named_values=m._Frozen({k: v if isinstance(v, str) else v.value
                                for k, v in g.named_values.items()}),
        secret_values=frozenset(k for k, v in g.named_values.items()
                                if not isinstance(v, str) and v.secret),
        certificates=m._Frozen({i: CertificateConfig(id=i, cert=c.cert, key=c.key,
                                                     password=c.password)
                                for i, c in g.certificates.items()}),
        ca_certificates=tuple(g.ca_certificates),
        certificate_revocation_lists=tuple(g.certificate_revocation_lists),
        products=m._Frozen({name: product(name, p) for name, p in g.products.items()}),
        subscriptions=tuple(subscription(s) for s in g.subscriptions),
        policies=policies(g.policies), telemetry=_telemetry.build(g.telemetry),
        rate_limits=g.rate_limits.build(),
        redis=g.redis.build() if g.redis is not None else None)
