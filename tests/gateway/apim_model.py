"""Test helper: a config with operations, products and subscriptions, from YAML-shaped data.

`gateway(doc)` takes the YAML spellings of issue 9 (`apis[i].operations[j].url-template`,
`products.NAME.subscription-required`, `subscriptions[i].primary-key`, ...).  When the real
config model has those sections (apigw_core.gateway.config.ProductConfig exists), the
document goes through `parse_config` and the real classes come back.  Until then, the
sections that exist today are parsed for real (so the Router accepts the result) and the new
ones become the small stand-in dataclasses below, with the agreed attribute names.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from apigw_core.gateway import config as _config

REAL = hasattr(_config, "ProductConfig")


@dataclass(frozen=True, slots=True)
class OperationConfig:
    name: str
    method: str
    url_template: str


@dataclass(frozen=True, slots=True)
class SubscriptionKeyConfig:
    header: str = "Ocp-Apim-Subscription-Key"
    query: str = "subscription-key"
    forward: bool = True


@dataclass(frozen=True, slots=True)
class ApiConfig:
    name: str
    path: str
    backend: str
    host: str | None = None
    protocols: tuple[str, ...] = ("http",)
    subscription_required: bool = False
    subscription_key: SubscriptionKeyConfig = SubscriptionKeyConfig()
    operations: tuple[OperationConfig, ...] = ()


@dataclass(frozen=True, slots=True)
class ProductConfig:
    name: str
    apis: tuple[str, ...] = ()
    subscription_required: bool = True


@dataclass(frozen=True, slots=True)
class SubscriptionConfig:
    id: str
    scope: str
    product: str | None = None
    api: str | None = None
    primary_key: str | None = None
    secondary_key: str | None = None
    state: str = "active"


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    apis: tuple[ApiConfig, ...]
    backends: Mapping[str, Any]
    products: Mapping[str, ProductConfig] = field(default_factory=dict)
    subscriptions: tuple[SubscriptionConfig, ...] = ()


def gateway(doc: dict, real: bool = REAL) -> Any:
    """The config for `doc` (listeners and a backend "b" are added when missing).

    `real=False` forces the stand-ins: for documents the real loader would refuse, given to
    code that must report the problems itself.
    """
    doc = copy.deepcopy(doc)
    doc.setdefault("listeners", [{"bind": "127.0.0.1:0"}])
    doc.setdefault("backends", {"b": {"url": "http://127.0.0.1:9"}})
    for api in doc.get("apis", ()):
        api.setdefault("backend", "b")
    if real:
        return _config.parse_config(doc)
    legacy = {k: v for k, v in doc.items() if k not in ("products", "subscriptions")}
    legacy["apis"] = [{k: v for k, v in a.items()
                       if k not in ("operations", "subscription-required", "subscription-key")}
                      for a in doc.get("apis", ())]
    base = _config.parse_config(legacy)
    apis = []
    for real, a in zip(base.apis, doc.get("apis", ())):
        key = a.get("subscription-key", {})
        apis.append(ApiConfig(
            real.name, real.path, real.backend, real.host, real.protocols,
            subscription_required=a.get("subscription-required", False),
            subscription_key=SubscriptionKeyConfig(
                key.get("header", "Ocp-Apim-Subscription-Key"),
                key.get("query", "subscription-key"), key.get("forward", True)),
            operations=tuple(OperationConfig(o["name"], o["method"].upper(), o["url-template"])
                             for o in a.get("operations", ()))))
    products = {name: ProductConfig(name, tuple(p.get("apis", ())),
                                    p.get("subscription-required", True))
                for name, p in doc.get("products", {}).items()}
    subs = []
    for s in doc.get("subscriptions", ()):
        scope = s.get("scope") or ("product" if "product" in s else "api" if "api" in s
                                   else None)
        subs.append(SubscriptionConfig(s["id"], scope, s.get("product"), s.get("api"),
                                       s.get("primary-key"), s.get("secondary-key"),
                                       s.get("state", "active")))
    return GatewayConfig(tuple(apis), base.backends, MappingProxyType(products), tuple(subs))


def operations(*specs: tuple[str, str, str]) -> tuple:
    """Operation objects from (name, method, url-template), through `gateway`."""
    cfg = gateway({"apis": [{"name": "a", "path": "/a", "operations": [
        {"name": n, "method": m, "url-template": t} for n, m, t in specs]}]})
    return cfg.apis[0].operations
