"""Checks across sections: names that refer to other sections, and what must be unique.

Strategy.  These run on `Parts`, the items that validated on their own (every item when
the file is valid; the valid ones when it is not, so one bad API does not hide that
another names a backend that does not exist), and return `Problem`s with the location of
the item that is wrong.  A reference is checked against the names the file *declares*
(raw), so a declared but invalid backend is not also "unknown".  Messages never repeat a
subscription key.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from ._errors import Problem
from ._schema import Admin, Api, Backend, Listener, Product, Subscription


@dataclass
class Parts:
    listeners: list[tuple[int, Listener]] = field(default_factory=list)
    admin: Admin | None = None
    apis: list[tuple[int, Api]] = field(default_factory=list)
    products: list[tuple[str, Product]] = field(default_factory=list)
    subscriptions: list[tuple[int, Subscription]] = field(default_factory=list)
    backends: list[tuple[str, Backend]] = field(default_factory=list)
    backend_names: set | None = None     # declared in the file; None: no usable section
    pool_names: set = field(default_factory=set)   # declared backends written as pools
    api_names: set = field(default_factory=set)
    product_names: set = field(default_factory=set)


def declared_names(top: dict) -> dict[str, Any]:
    """The names the raw file declares, whether or not their items are valid."""
    backends, apis, products = top.get("backends", {}), top.get("apis", []), top.get("products", {})
    return {
        "backend_names": set(backends) if isinstance(backends, dict) else None,
        "pool_names": ({n for n, b in backends.items() if isinstance(b, dict) and "pool" in b}
                       if isinstance(backends, dict) else set()),
        "api_names": ({a.get("name") for a in apis if isinstance(a, dict)}
                      if isinstance(apis, list) else set()),
        "product_names": set(products) if isinstance(products, dict) else set(),
    }


def cross_check(p: Parts) -> list[Problem]:
    return [*_binds(p), *_pools(p), *_apis(p), *_products(p), *_subscriptions(p)]


def _pools(p: Parts) -> list[Problem]:
    """A pool's members: declared backends, single ones (APIM pools do not nest, so a pool
    can neither contain itself nor form a cycle)."""
    out = []
    for name, b in p.backends:
        for i, member in enumerate(b.pool or ()):
            loc, ref = ("backends", name, "pool", i, "backend"), member.backend
            if ref == name:
                out.append(Problem(loc, "a pool cannot contain itself"))
            elif p.backend_names is not None and ref not in p.backend_names:
                out.append(Problem(loc, f"unknown backend {ref!r}"))
            elif ref in p.pool_names:
                out.append(Problem(loc, f"backend {ref!r} is a pool (pools do not nest)"))
    return out


def _may_overlap(a: str, b: str) -> bool:
    """Two bind hosts on one port: can they be (or cover) the same address?"""
    if a == b:
        return True
    try:
        x, y = ipaddress.ip_address(a), ipaddress.ip_address(b)
    except ValueError:
        return True                  # a host name may resolve to the other address
    # [::] is dual-stack (Linux's default): it covers every address; 0.0.0.0 every IPv4 one.
    return any(a.is_unspecified and (a.version == 6 or b.version == 4) for a, b in ((x, y), (y, x)))


def _binds(p: Parts) -> list[Problem]:
    # SO_REUSEPORT (workers) would let two listeners share a port silently: refuse it here.
    out, seen = [], []
    binds = [((i,), lc.bind) for i, lc in p.listeners]
    if p.admin is not None:
        binds.append(((), p.admin.bind))
    for where, b in binds:
        loc = ("listeners", *where, "bind") if where else ("admin", "bind")
        for other_where, o in seen:
            if b.port == 0 or b.port != o.port or not _may_overlap(b.host, o.host):
                continue
            other = f"listeners[{other_where[0]}]"
            if b.host == o.host:
                out.append(Problem(loc, f"duplicate bind {b.bind!r} (also {other})" if where
                                   else f"same address as {other}"))
            else:
                out.append(Problem(loc, f"{b.bind!r} may be the same address as {other} "
                                        f"{o.bind!r} (same port; a host name or a wildcard "
                                        "address can cover the other)"))
            break
        seen.append((where, b))
    return out


def _apis(p: Parts) -> list[Problem]:
    out = []
    names: dict[str, int] = {}
    routes: dict[tuple[str | None, str], int] = {}
    for i, api in p.apis:
        if p.backend_names is not None and api.backend not in p.backend_names:
            out.append(Problem(("apis", i, "backend"), f"unknown backend {api.backend!r}"))
        if api.name in names:
            out.append(Problem(("apis", i, "name"), f"duplicate api name {api.name!r} (also apis[{names[api.name]}])"))
        names.setdefault(api.name, i)
        route = (api.host, api.path)
        if route in routes:
            out.append(Problem(("apis", i, "path"), f"another api has the same host and path (apis[{routes[route]}])"))
        routes.setdefault(route, i)
        ops: dict[str, int] = {}
        for j, op in enumerate(api.operations):
            if op.name in ops:
                out.append(Problem(("apis", i, "operations", j, "name"),
                                   f"duplicate operation name {op.name!r} (also operations[{ops[op.name]}])"))
            ops.setdefault(op.name, j)
    return out


def _products(p: Parts) -> list[Problem]:
    out = []
    open_product: dict[str, str] = {}    # api -> the open product that contains it
    for name, product in p.products:
        listed: set[str] = set()
        for j, api in enumerate(product.apis):
            loc = ("products", name, "apis", j)
            if api not in p.api_names:
                out.append(Problem(loc, f"unknown api {api!r}"))
            elif api in listed:
                out.append(Problem(loc, f"api {api!r} listed twice"))
            elif not product.subscription_required and api in open_product:
                # APIM: a request without a key gets the API's one open product.
                out.append(Problem(loc, f"api {api!r} is already in the open product "
                                        f"{open_product[api]!r} (an api has at most one product "
                                        "with subscription-required: false)"))
            elif not product.subscription_required:
                open_product[api] = name
            listed.add(api)
    return out


def _subscriptions(p: Parts) -> list[Problem]:
    out = []
    ids: dict[str, int] = {}
    keys: dict[str, str] = {}            # key -> where it was first seen
    for i, s in p.subscriptions:
        if s.product is not None and s.product not in p.product_names:
            out.append(Problem(("subscriptions", i, "product"), f"unknown product {s.product!r}"))
        if s.api is not None and s.api not in p.api_names:
            out.append(Problem(("subscriptions", i, "api"), f"unknown api {s.api!r}"))
        if s.id in ids:
            out.append(Problem(("subscriptions", i, "id"), f"duplicate subscription id {s.id!r} (also subscriptions[{ids[s.id]}])"))
        ids.setdefault(s.id, i)
        for spelt, key in (("primary-key", s.primary_key), ("secondary-key", s.secondary_key)):
            if key is None:
                continue
            if key in keys:      # a key names one subscription; never print it
                out.append(Problem(("subscriptions", i, spelt), f"the same key as {keys[key]} (keys must be unique)"))
            else:
                keys[key] = f"subscriptions[{i}].{spelt}"
    return out
