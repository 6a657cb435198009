"""Access policies: `check-header`, `ip-filter` and `cors`, with APIM's attributes, reasons
and messages (APIM's error-handling table; /work/shared/APIM-REFERENCE.md).

Strategy.  Everything a request does not decide is decided at compile time: header names
lowered and encoded, allowed values case-folded when `ignore-case` says so, addresses and
CIDR blocks turned into merged integer ranges per IP family (a bisect per request, however
many entries), origins normalised to `scheme://host:port` (APIM: a missing port is 80 for
http, 443 for https).  All three run in inbound only.

`cors` answers a preflight (OPTIONS with Origin and Access-Control-Request-Method) itself.
An actual request with an allowed Origin continues, and the policy records the
Access-Control-* fields in `ctx.response_headers`, which the runtime puts on whatever
response the client gets (backend, return-response, on-error, a local error reply), so a
browser can read errors too.  Unmatched requests follow APIM's cors page: with
terminate-unmatched-request (default true) an unmatched preflight, and an unmatched GET or
HEAD carrying Origin, get an empty 200; with false, the preflight goes on through the
pipeline (APIM would try the next cors policy first; we have at most one per section) and a
GET/HEAD goes on without CORS fields.  Other methods with an unmatched Origin always go on
without CORS fields: the browser enforces the preflight's verdict, not the server.
"""

from __future__ import annotations

from bisect import bisect_right
from functools import lru_cache
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from operator import itemgetter
from typing import Any, Mapping, Optional, Sequence, Union
from urllib.parse import urlsplit

from ..contract import Answer, Context, Policy, PolicyError, Site
from ..registry import register
from ._spec import Spec, describe, header_name, is_token

_first = itemgetter(0)   # a field's name

__all__ = ["CheckHeader", "IpFilter", "Cors"]


# --- check-header ---------------------------------------------------------------------------

@register
class CheckHeader(Policy):
    """`check-header: {name, failed-check-httpcode, failed-check-error-message, ignore-case,
    value: [...]}`: the header must be present and, when values are listed, equal one of
    them (any field of it, or all its fields joined)."""

    name = "check-header"
    sections = frozenset({"inbound"})

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        s = Spec(spec, site, ("name", "failed-check-httpcode", "failed-check-error-message",
                              "ignore-case", "value"))
        self.header = s.text("name", required=True) or ""
        if self.header and not is_token(self.header):
            site.error(f"not a header name: {self.header!r}", "name")
        self._key = header_name(self.header) if is_token(self.header) else b""
        # APIM marks it required; 401 (its documented examples) when left out is kinder than a refusal
        self.status = s.integer("failed-check-httpcode", 401, 200, 599) or 401
        self.message = s.text("failed-check-error-message")
        self.ignore_case = s.flag("ignore-case", False)
        values: list[str] = []
        for i, v in enumerate(s.items("value")):
            if isinstance(v, (str, int, float)) and not isinstance(v, bool):
                values.append(str(v))
            else:
                site.error(f"expected a string, got {describe(v)}", f"value[{i}]")
        self._allowed = frozenset(v.casefold() if self.ignore_case else v for v in values)

    def _refuse(self, reason: str, default: str) -> PolicyError:
        return PolicyError(self.status, reason, self.message or default)

    def apply(self, ctx: Context) -> None:
        key = self._key
        if not self._allowed and key in map(_first, ctx.request.headers.items):
            return None   # presence only: a C scan, no list built
        found = ctx.request.headers.get_all(key)
        if not found:
            raise self._refuse("HeaderNotFound", f"Header {self.header} was not found in "
                                                 f"the request. Access denied.")
        if not self._allowed:
            return None
        texts = [v.decode("latin-1") for v in found]
        if len(texts) > 1:
            texts.append(", ".join(texts))
        for t in texts:
            if (t.casefold() if self.ignore_case else t) in self._allowed:
                return None
        raise self._refuse("HeaderValueNotAllowed", f"Header {self.header} value of "
                                                    f"{texts[-1]} is not allowed. Access denied.")


# --- ip-filter ------------------------------------------------------------------------------

Address = Union[IPv4Address, IPv6Address]
_UNSEEN: Any = object()
_SEEN_MAX = 4096   # IpFilter's per-policy memo of decisions, cleared when full


def _plain(a: Address) -> Address:
    """IPv4-mapped IPv6 (::ffff:1.2.3.4) is the IPv4 address (dual-stack sockets)."""
    if isinstance(a, IPv6Address) and a.ipv4_mapped is not None:
        return a.ipv4_mapped
    return a


@lru_cache(maxsize=4096)
def client_address(ip: str) -> Optional[tuple[int, int]]:
    """(IP version, integer) of a client address, or None when it is not one."""
    text = ip.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        a = _plain(ip_address(text))
    except ValueError:
        return None
    return a.version, int(a)


class _Ranges:
    """Disjoint, sorted [start, end] integer ranges of one IP family."""

    __slots__ = ("starts", "ends")

    def __init__(self, pairs: list[tuple[int, int]]) -> None:
        merged: list[list[int]] = []
        for lo, hi in sorted(pairs):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        self.starts = [lo for lo, _ in merged]
        self.ends = [hi for _, hi in merged]

    def __contains__(self, n: int) -> bool:
        i = bisect_right(self.starts, n) - 1
        return i >= 0 and n <= self.ends[i]


def _range_of(text: Any) -> tuple[int, int, int]:
    """(version, first, last) of an address or CIDR block; ValueError when neither."""
    if not isinstance(text, str):
        raise ValueError(f"expected an IP address or CIDR block, got {describe(text)}")
    text = text.strip()
    if "/" in text:
        net = ip_network(text, strict=False)
        first, last = _plain(net.network_address), _plain(net.broadcast_address)
        if first.version != last.version:   # an IPv6 block reaching into ::ffff:0:0/96:
            # it stays IPv6 (an IPv4 client, seen as mapped, is not in it)
            first, last = net.network_address, net.broadcast_address
        return first.version, int(first), int(last)
    a = _plain(ip_address(text))
    return a.version, int(a), int(a)


@register
class IpFilter(Policy):
    """`ip-filter: {action: allow | forbid, address: [...], address-range: [{from, to}]}`;
    `address` also takes CIDR blocks; IPv4 and IPv6."""

    name = "ip-filter"
    sections = frozenset({"inbound"})

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        s = Spec(spec, site, ("action", "address", "address-range"))
        self.allow = s.choice("action", ("allow", "forbid"), required=True) != "forbid"
        pairs: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
        for i, a in enumerate(s.items("address")):
            try:
                v, lo, hi = _range_of(a)
            except ValueError as e:
                site.error(str(e), f"address[{i}]")
                continue
            pairs[v].append((lo, hi))
        for i, r in enumerate(s.items("address-range")):
            key = f"address-range[{i}]"
            if not isinstance(r, Mapping) or set(r) != {"from", "to"}:
                site.error("expected a mapping {from: address, to: address}", key)
                continue
            try:
                v1, lo, _ = _range_of(r["from"])
                v2, hi, _ = _range_of(r["to"])
            except ValueError as e:
                site.error(str(e), key)
                continue
            if "/" in str(r["from"]) + str(r["to"]):
                site.error("from and to are addresses, not CIDR blocks", key)
            elif v1 != v2:
                site.error("from and to are not of the same IP version", key)
            elif lo > hi:
                site.error("from is after to", key)
            else:
                pairs[v1].append((lo, hi))
        if not s.items("address") and not s.items("address-range"):
            site.error("at least one address or address-range is required")
        self._ranges = {4: _Ranges(pairs[4]), 6: _Ranges(pairs[6])}
        self._seen: dict[str, Optional[bool]] = {}   # matches() of recent clients

    def matches(self, ip: str) -> Optional[bool]:
        """Whether `ip` is listed; None when it is not an IP address."""
        found = client_address(ip)
        if found is None:
            return None
        return found[1] in self._ranges[found[0]]

    def apply(self, ctx: Context) -> None:
        ip = ctx.request.ip
        listed = self._seen.get(ip, _UNSEEN)
        if listed is _UNSEEN:   # the same few clients again and again: decided once each
            listed = self.matches(ip)
            if len(self._seen) >= _SEEN_MAX:
                self._seen.clear()
            self._seen[ip] = listed
        if listed is None:
            raise PolicyError(403, "FailedToParseCallerIP",
                              "Failed to establish IP address for the caller. Access denied.")
        if self.allow and not listed:
            raise PolicyError(403, "CallerIpNotAllowed", f"Caller IP address "
                                                         f"{ctx.request.ip} is not allowed. Access denied.")
        if not self.allow and listed:
            raise PolicyError(403, "CallerIpBlocked",
                              "Caller IP address is blocked. Access denied.")
        return None


# --- cors -----------------------------------------------------------------------------------

_DEFAULT_PORTS = {"http": 80, "https": 443}


@lru_cache(maxsize=1024)
def normalise_origin(text: str) -> Optional[str]:
    """`scheme://host:port` (lower-case, default port filled in), or None when `text` is
    not an origin (APIM allows a trailing "/")."""
    try:
        u = urlsplit(text.strip())
        port = u.port
    except ValueError:
        return None
    if not u.scheme or not u.hostname or u.path not in ("", "/") or u.query or u.fragment \
            or u.username is not None or u.password is not None:
        return None
    scheme = u.scheme.lower()
    port = port if port is not None else _DEFAULT_PORTS.get(scheme)
    if port is None:
        return None
    host = u.hostname.lower()
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def _children(s: Spec, key: str, child: str, extra: Sequence[str] = ()) -> tuple[tuple, dict]:
    """A list under `key`, or APIM's element shape `{child: [...], attribute: ...}`."""
    v = s.raw(key)
    if isinstance(v, Mapping):
        known = (child, *extra)
        for k in v:
            if k not in known:
                s.site.error(f"unknown attribute (expected one of {', '.join(known)})",
                             f"{key}.{k}")
        inner = Spec({child: v.get(child)}, s.site, (child,))
        return inner.items(child), {k: v[k] for k in extra if k in v}
    return s.items(key), {}


def _names(s: Spec, key: str, child: str, items: tuple) -> list[str]:
    out = []
    for i, v in enumerate(items):
        if isinstance(v, str) and (v == "*" or is_token(v)):
            out.append(v)
        else:
            s.site.error(f"expected a {child} name or *, got {v!r}", f"{key}[{i}]")
    return out


@register
class Cors(Policy):
    """`cors: {allow-credentials, terminate-unmatched-request, allowed-origins: [...],
    allowed-methods: [...], preflight-result-max-age, allowed-headers: [...],
    expose-headers: [...]}` (APIM's `{origin: [...]}`-style child mappings work too)."""

    name = "cors"
    sections = frozenset({"inbound"})

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        s = Spec(spec, site, ("allow-credentials", "terminate-unmatched-request",
                              "allowed-origins", "allowed-methods", "preflight-result-max-age",
                              "allowed-headers", "expose-headers"))
        self.credentials = s.flag("allow-credentials", False)
        self.terminate = s.flag("terminate-unmatched-request", True)

        origins, _ = _children(s, "allowed-origins", "origin")
        self.any_origin = False
        self._origins: set[str] = set()
        for i, o in enumerate(origins):
            norm = normalise_origin(o) if isinstance(o, str) and o != "*" else None
            if o == "*":
                self.any_origin = True
            elif norm is None:
                site.error(f"expected * or an origin (scheme://host[:port]), got {o!r}",
                           f"allowed-origins[{i}]")
            else:
                self._origins.add(norm)
        if not origins:
            site.error("at least one origin (or *) is required", "allowed-origins")
        if self.any_origin and self.credentials:
            site.error("* cannot be used with allow-credentials: true (browsers refuse it)",
                       "allowed-origins")

        methods, attrs = _children(s, "allowed-methods", "method", ("preflight-result-max-age",))
        if s.has("allowed-methods") and not methods:
            site.error("at least one method is required", "allowed-methods")
        names = _names(s, "allowed-methods", "method", methods) if methods else ["GET", "POST"]
        self.any_method = "*" in names
        self._methods = frozenset(m.upper() for m in names)
        age_spec = Spec(attrs, site, ("preflight-result-max-age",))
        if "preflight-result-max-age" in attrs and s.has("preflight-result-max-age"):
            site.error("given twice (here and in allowed-methods)", "preflight-result-max-age")
        age = age_spec.integer("preflight-result-max-age", None, 0, 2**31 - 1) \
            if attrs else s.integer("preflight-result-max-age", None, 0, 2**31 - 1)
        self.max_age = age

        hnames = _names(s, "allowed-headers", "header",
                        _children(s, "allowed-headers", "header")[0])
        self.any_header = "*" in hnames
        self._headers = frozenset(h.lower() for h in hnames)
        exposed = [h for h in _names(s, "expose-headers", "header",
                                     _children(s, "expose-headers", "header")[0]) if h != "*"]

        # The fields an allowed actual request's response gets, after Allow-Origin.
        tail = []
        if self.credentials:
            tail.append((b"access-control-allow-credentials", b"true"))
        if exposed:
            tail.append((b"access-control-expose-headers", ",".join(exposed).encode("ascii")))
        echo = not self.any_origin
        if echo:
            tail.append((b"vary", b"Origin"))
        self._echo = echo
        self._actual_tail = tuple(tail)

    def origin_allowed(self, origin: str) -> bool:
        return self.any_origin or normalise_origin(origin) in self._origins

    def _allow_origin(self, origin: bytes) -> tuple[bytes, bytes]:
        return (b"access-control-allow-origin", origin if self._echo else b"*")

    def _preflight(self, origin: bytes, ctx: Context) -> Optional[Answer]:
        h = ctx.request.headers
        method = (h.get(b"access-control-request-method") or b"").strip().decode("latin-1")
        asked = h.get(b"access-control-request-headers") or b""
        wanted = [t.strip().lower() for t in asked.decode("latin-1").split(",") if t.strip()]
        ok = (self.origin_allowed(origin.decode("latin-1"))
              and (self.any_method or method.upper() in self._methods)
              and (self.any_header or all(w in self._headers for w in wanted)))
        if not ok:
            return Answer(200) if self.terminate else None
        fields = [self._allow_origin(origin)]
        if self.credentials:
            fields.append((b"access-control-allow-credentials", b"true"))
        fields.append((b"access-control-allow-methods", method.encode("latin-1")))
        if wanted:
            fields.append((b"access-control-allow-headers", ",".join(wanted).encode("latin-1")))
        if self.max_age is not None:
            fields.append((b"access-control-max-age", str(self.max_age).encode("ascii")))
        if self._echo:
            fields.append((b"vary", b"Origin"))
        return Answer(200, tuple(fields))

    def apply(self, ctx: Context) -> Optional[Answer]:
        h = ctx.request.headers
        if b"origin" not in map(_first, h.items):   # not a CORS request (the usual): a C scan
            return None
        origin = h.get(b"origin")
        method = ctx.request.method
        if method == "OPTIONS" and b"access-control-request-method" in h:
            return self._preflight(origin, ctx)
        if self.origin_allowed(origin.decode("latin-1")):
            ctx.response_headers.append(self._allow_origin(origin))
            ctx.response_headers.extend(self._actual_tail)
            return None
        if self.terminate and method in ("GET", "HEAD"):
            return Answer(200)
        return None
