"""Subscription access, exactly as Azure API Management decides it.

Strategy.  `SubscriptionIndex` is built once per config: every key of every *active*
subscription (primary and secondary) is stored in a dict keyed by the key itself, together
with the APIs it opens; per API, the open product (subscription-required: false) that
contains it, and whether it needs a key at all.  A request then costs a header lookup, one
dict lookup and one `hmac.compare_digest`.  The dict's hash of a bytes key is SipHash-1-3
under the interpreter's random per-process key (a keyed digest, 64 bits, ~10x cheaper
than the SHA-256 it replaces): a lookup compares bytes only after a full hash match, so
how long it takes says nothing about how much of a guessed key was right.  With a fixed
PYTHONHASHSEED that hash is no secret, so then the dict is keyed by SHA-256 digests.

The rules (api-management-subscriptions.md; tests/gateway/test_subscriptions.py):

* The key is the API's header (name case-insensitive, default Ocp-Apim-Subscription-Key),
  else its query parameter (default subscription-key); the query is read only when the
  header is absent.  An empty header counts as absent.
* With a key: the active subscription that owns it, if it is scoped to this API (its
  product contains the API, its scope is this API, or all-apis) -> Access.  A product
  subscription runs in its product's context; an api- or all-apis-scoped one in none
  (product policies do not apply).  Anything else (unknown key, a state other than active,
  a product that does not contain the API) -> 401 SubscriptionKeyInvalid.
* Without a key: the API's open product, if any -> Access(None, product); else, when the
  API does not require a subscription -> Access(None, None); else 401
  SubscriptionKeyNotFound.
* Whether an API requires a subscription.  In APIM every API has its own flag.  Here the
  flag defaults to false so that configs without products stay open, which would make an
  API listed in a key-protected product open to anyone who sends no key: a product with
  keys that protect nothing.  So an API requires a key when it says
  `subscription-required: true` *or* a product with `subscription-required: true` contains
  it; to publish such an API keyless as well, add it to an open product (APIM's own way).
* Every 401 carries `WWW-Authenticate: AzureApiManagementKey realm="<scheme>://<host><api
  path>",name="<header name>",type="header"` (the observed APIM header).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from ._query import query_value, remove_query_param
from .denied import Denied

# the interpreter's str/bytes hash is keyed by a random per-process secret unless
# PYTHONHASHSEED fixes it: only then is the key itself a safe dict key
_HASH_SECRET = os.environ.get("PYTHONHASHSEED", "random") == "random"


def _slot(secret: bytes) -> bytes:
    """What a key is stored and looked up under."""
    return secret if _HASH_SECRET else hashlib.sha256(secret).digest()

__all__ = [
    "Access", "Denied", "SubscriptionIndex", "subscription_errors", "without_key",
    "KEY_INVALID_MESSAGE", "KEY_MISSING_MESSAGE",
]

KEY_INVALID_MESSAGE = ("Access denied due to invalid subscription key. Make sure to provide "
                       "a valid key for an active subscription.")
KEY_MISSING_MESSAGE = ("Access denied due to missing subscription key. Make sure to include "
                       "subscription key when making requests to an API.")

_DEFAULT_HEADER = "Ocp-Apim-Subscription-Key"
_DEFAULT_QUERY = "subscription-key"
_SCOPES = ("product", "api", "all-apis")
_STATES = ("active", "suspended", "expired", "submitted", "rejected", "cancelled")


@dataclass(frozen=True, slots=True)
class Access:
    """A request allowed in: its subscription and product context (either may be None)."""

    subscription: Any = None     # the config's SubscriptionConfig
    product: Any = None          # the config's ProductConfig; None for api/all-apis scopes
    key: Optional[str] = None    # the subscription key it came with (as configured)


_OPEN = Access()


class _Key:
    __slots__ = ("secret", "access_for", "all_apis", "subscription", "product", "text",
                 "access")

    def __init__(self, text: str, subscription: Any, product: Any,
                 apis: Optional[frozenset[str]]) -> None:
        self.text = text
        self.secret = text.encode("utf-8")
        self.subscription = subscription
        self.product = product
        self.all_apis = apis is None
        self.access_for = apis or frozenset()
        self.access = Access(subscription, product, text)   # what every request with it gets


class _ApiAccess:
    __slots__ = ("header", "query", "header_name", "path", "open", "required")

    def __init__(self, api: Any, open_product: Any, in_closed_product: bool) -> None:
        key_cfg = getattr(api, "subscription_key", None)
        self.header_name = getattr(key_cfg, "header", _DEFAULT_HEADER)
        self.header = self.header_name.lower().encode("ascii")
        self.query = getattr(key_cfg, "query", _DEFAULT_QUERY)
        self.path = api.path
        self.open = None if open_product is None else Access(None, open_product, None)
        self.required = bool(getattr(api, "subscription_required", False)) or in_closed_product


def subscription_errors(config: Any) -> list[str]:
    """Every inconsistency of products and subscriptions, as "path: message" (config-style)."""
    errors: list[str] = []
    products: Mapping[str, Any] = getattr(config, "products", {}) or {}
    api_names = {api.name for api in config.apis}
    open_of: dict[str, str] = {}
    for pname, product in products.items():
        for api in product.apis:
            if api not in api_names:
                errors.append(f"products.{pname}.apis: no API named {api!r}")
            elif not product.subscription_required:
                if api in open_of:
                    errors.append(f"products.{pname}: API {api!r} is already in open product "
                                  f"{open_of[api]!r} (APIM allows at most one open product "
                                  f"per API)")
                else:
                    open_of[api] = pname
    owner: dict[str, str] = {}
    for i, sub in enumerate(getattr(config, "subscriptions", ()) or ()):
        where = f"subscriptions[{i}]"
        if sub.scope not in _SCOPES:
            errors.append(f"{where}.scope: expected one of {', '.join(_SCOPES)}")
        elif sub.scope == "product" and sub.product not in products:
            errors.append(f"{where}.product: no product named {sub.product!r}")
        elif sub.scope == "api" and sub.api not in api_names:
            errors.append(f"{where}.api: no API named {sub.api!r}")
        if sub.state not in _STATES:
            errors.append(f"{where}.state: expected one of {', '.join(_STATES)}")
        keys = [(f, k) for f, k in (("primary-key", sub.primary_key),
                                    ("secondary-key", sub.secondary_key)) if k is not None]
        if not keys:
            errors.append(f"{where}: a subscription needs a primary-key or a secondary-key")
        for field, key in keys:
            if not isinstance(key, str) or not key:
                errors.append(f"{where}.{field}: expected a non-empty string")
            elif key in owner and owner[key] != sub.id:
                errors.append(f"{where}.{field}: the same key as subscription "
                              f"{owner[key]!r}; a key must identify one subscription")
            else:
                owner[key] = sub.id
    return errors


class SubscriptionIndex:
    """Keys, products and open products of one config (immutable; rebuild on reload).

    Raises ValueError (with `subscription_errors`' messages) for an inconsistent config.
    """

    def __init__(self, config: Any) -> None:
        errors = subscription_errors(config)
        if errors:
            raise ValueError("; ".join(errors))
        products: Mapping[str, Any] = getattr(config, "products", {}) or {}
        self._products_of: dict[str, tuple[Any, ...]] = {}
        for product in products.values():
            for api in product.apis:
                self._products_of[api] = self._products_of.get(api, ()) + (product,)
        self._apis: dict[str, _ApiAccess] = {}
        for api in config.apis:
            mine = self._products_of.get(api.name, ())
            open_product = next((p for p in mine if not p.subscription_required), None)
            closed = any(p.subscription_required for p in mine)
            self._apis[api.name] = _ApiAccess(api, open_product, closed)
        self._keys: dict[bytes, _Key] = {}
        for sub in getattr(config, "subscriptions", ()) or ():
            if sub.state != "active":
                continue                   # its keys are invalid: never indexed
            if sub.scope == "product":
                product = products[sub.product]
                apis: Optional[frozenset[str]] = frozenset(product.apis)
            else:
                product = None
                apis = None if sub.scope == "all-apis" else frozenset((sub.api,))
            for key in (sub.primary_key, sub.secondary_key):
                if key is not None:
                    k = _Key(key, sub, product, apis)
                    self._keys[_slot(k.secret)] = k

    def products_for(self, api_name: str) -> tuple[Any, ...]:
        """The products that contain an API, in config order."""
        return self._products_of.get(api_name, ())

    def requires_key(self, api_name: str) -> bool:
        """Whether a request without a key is refused (no open product, key required)."""
        a = self._apis[api_name]
        return a.open is None and a.required

    def resolve(self, api: Any, header_value: bytes | str | None,
                query_value: bytes | str | None, *, scheme: str = "https",
                host: bytes | str = "") -> Access | Denied:
        """Access for a request to `api` with these key candidates, or a 401 Denied.

        `header_value` is the API's key header (None if absent); `query_value` its query
        parameter, used only when the header is absent or empty.  `scheme` and `host` (the
        request's Host) build the WWW-Authenticate realm of a 401.
        """
        a = self._apis[api.name]
        key = header_value or query_value
        if not key:
            if a.open is not None:
                return a.open
            if not a.required:
                return _OPEN
            return self._denied(a, "SubscriptionKeyNotFound", KEY_MISSING_MESSAGE, scheme, host)
        return self._keyed(a, api.name, key, scheme, host)

    def _keyed(self, a: _ApiAccess, api_name: str, key: bytes | str, scheme: str,
               host: bytes | str) -> Access | Denied:
        secret = key if key.__class__ is bytes else \
            key.encode("utf-8") if isinstance(key, str) else bytes(key)
        k = self._keys.get(_slot(secret))
        if (k is not None and hmac.compare_digest(k.secret, secret)
                and (k.all_apis or api_name in k.access_for)):
            return k.access
        return self._denied(a, "SubscriptionKeyInvalid", KEY_INVALID_MESSAGE, scheme, host)

    def resolve_request(self, api: Any, headers: Sequence[tuple[bytes, bytes]],
                        query: bytes, *, scheme: str = "https",
                        host: bytes | str = "") -> Access | Denied:
        """`resolve` reading the key from request headers (lower-case names) and query."""
        a = self._apis[api.name]
        header = None
        for name, value in headers:
            if name == a.header:
                header = value
                break
        if header:   # the usual case: _keyed inline
            k = self._keys.get(header if _HASH_SECRET else _slot(header))
            if (k is not None and hmac.compare_digest(k.secret, header)
                    and (k.all_apis or api.name in k.access_for)):
                return k.access
            return self._keyed(a, api.name, header, scheme, host)
        return self.resolve(api, None, query_value(query, a.query), scheme=scheme, host=host)

    @staticmethod
    def _denied(a: _ApiAccess, reason: str, message: str, scheme: str,
                host: bytes | str) -> Denied:
        if isinstance(host, bytes):
            host = host.decode("latin-1")
        realm = _quote(f"{scheme}://{host}{a.path}")
        value = (f'AzureApiManagementKey realm="{realm}",name="{_quote(a.header_name)}",'
                 f'type="header"')
        return Denied(401, reason, message,
                      ((b"www-authenticate", value.encode("latin-1", "replace")),))


def _quote(text: str) -> str:
    # RFC 9110 §5.6.4 quoted-string: backslash-escape the quote and the backslash.
    return text.replace("\\", "\\\\").replace('"', '\\"')


def without_key(api: Any, headers: list[tuple[bytes, bytes]], target: bytes,
                ) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers and upstream target as forwarded: without the key when the API says
    `subscription-key: {forward: false}` (header and query parameter), else unchanged."""
    key_cfg = getattr(api, "subscription_key", None)
    if key_cfg is None or getattr(key_cfg, "forward", True):
        return headers, target
    name = key_cfg.header.lower().encode("ascii")
    headers = [(n, v) for n, v in headers if n != name]
    path, sep, query = target.partition(b"?")
    if sep:
        query = remove_query_param(query, key_cfg.query)
        target = path + b"?" + query if query else path
    return headers, target
