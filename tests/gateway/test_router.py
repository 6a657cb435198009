"""Router: APIM prefix semantics, host precedence, upstream targets; a brute-force oracle."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apigw_core.gateway.config import parse_config
from apigw_core.gateway.router import PathError, Route, Router


def router(apis: list[dict], backends: dict | None = None) -> Router:
    backends = backends or {"root": {"url": "http://b"}, "api": {"url": "http://b/api/"}}
    return Router(parse_config({"listeners": [{"bind": "127.0.0.1:0"}], "backends": backends,
                                "apis": apis}))


def api(name: str, path: str, backend: str = "root", host: str | None = None) -> dict:
    return {"name": name, "path": path, "backend": backend, **({"host": host} if host else {})}


PREFIXES = router([api("root", ""), api("orders", "/orders"), api("lines", "/orders/lines"),
                   api("v1", "/v1/orders", "api")])


@pytest.mark.parametrize("target, name, rest", [
    (b"/orders", "orders", b""),
    (b"/orders/", "orders", b"/"),
    (b"/orders/1", "orders", b"/1"),
    (b"/orders?x=1", "orders", b""),
    (b"/orders/1?x=/orders/lines", "orders", b"/1"),
    (b"/ordersX", "root", b"/ordersX"),           # whole segments only
    (b"/orders/lines", "lines", b""),             # longest prefix wins
    (b"/orders/lines/3", "lines", b"/3"),
    (b"/orders/linesX", "orders", b"/linesX"),
    (b"/orders//lines", "orders", b"//lines"),
    (b"/", "root", b"/"),
    (b"/other/x", "root", b"/other/x"),
    (b"/v1/orders/7", "v1", b"/7"),
    (b"/v1", "root", b"/v1"),
    (b"/Orders", "root", b"/Orders"),             # paths are case-sensitive
])
def test_prefix_matching(target, name, rest):
    route = PREFIXES.match(b"h", target)
    assert route is not None and (route.api.name, route.rest) == (name, rest)


def test_no_root_api_means_no_match():
    r = router([api("orders", "/orders")])
    assert r.match(None, b"/ordersX") is None
    assert r.match(None, b"/") is None
    assert r.match(None, b"/orders/x") is not None


@pytest.mark.parametrize("base, api_path, target, upstream", [
    ("http://b/api", "/orders", b"/orders/7?x=1", b"/api/7?x=1"),
    ("http://b/api/", "/orders", b"/orders", b"/api"),
    ("http://b/api", "/orders", b"/orders/", b"/api/"),
    ("http://b", "/orders", b"/orders", b"/"),
    ("http://b", "/orders", b"/orders?x=1", b"/?x=1"),
    ("http://b", "/orders", b"/orders/7", b"/7"),
    ("http://b", "", b"/", b"/"),
    ("http://b", "", b"/a/b?c", b"/a/b?c"),
    ("http://b/api", "", b"/", b"/api/"),
    ("http://b/api", "/orders", b"/orders?", b"/api?"),        # the query is kept as sent
    ("http://b/api", "/orders", b"/orders?a=%2F&b", b"/api?a=%2F&b"),
])
def test_upstream_path(base, api_path, target, upstream):
    r = router([api("a", api_path, "x")], {"x": {"url": base}})
    route = r.match(None, target)
    assert route is not None and route.path == upstream
    assert route.backend.name == "x" and route.api.name == "a"


HOSTS = router([
    api("any", "/a"),
    api("exact", "/a", host="api.example.com"),
    api("wild", "/a", host="*.example.com"),
    api("deeper", "/a", host="*.eu.example.com"),
    api("short", "", host="api.example.com"),
    api("long-any", "/a/b"),
])


@pytest.mark.parametrize("host, target, name", [
    (b"api.example.com", b"/a/x", "exact"),
    (b"API.Example.COM", b"/a", "exact"),           # case-insensitive
    (b"api.example.com:8443", b"/a", "exact"),      # port stripped
    (b"api.example.com.", b"/a", "exact"),          # trailing dot
    (b"api.example.com", b"/a/b/c", "long-any"),    # prefix length first, then host
    (b"api.example.com", b"/z", "short"),
    (b"x.example.com", b"/a", "wild"),
    (b"x.y.example.com", b"/a", "wild"),            # any depth
    (b"x.eu.example.com", b"/a", "deeper"),         # longest wildcard
    (b"eu.example.com", b"/a", "wild"),
    (b"example.com", b"/a", "any"),                 # the suffix itself is not covered
    (b"xexample.com", b"/a", "any"),
    (b"other", b"/a", "any"),
    (None, b"/a", "any"),
    (b"", b"/a", "any"),
    (b"x.example.com", b"/z", None),                # host-specific "" only for its host
])
def test_host_precedence(host, target, name):
    route = HOSTS.match(host, target)
    assert (route.api.name if route else None) == name


def test_ipv6_hosts():
    r = router([api("v6", "/a", host="[::1]"), api("v4", "/a", host="127.0.0.1"), api("any", "/a")])
    assert r.match(b"[::1]:8080", b"/a").api.name == "v6"
    assert r.match(b"[::1]", b"/a").api.name == "v6"
    assert r.match(b"127.0.0.1:80", b"/a").api.name == "v4"
    assert r.match(b"[::2]:80", b"/a").api.name == "any"


@pytest.mark.parametrize("host, target, name, upstream", [
    (None, b"http://api.example.com/a/1?q", "exact", b"/1?q"),
    (b"other", b"http://api.example.com:80/a", "exact", b"/"),   # the authority wins
    (b"api.example.com", b"http://other/a", "any", b"/"),
    (None, b"HTTPS://x.example.com/a", "wild", b"/"),
    (None, b"http://api.example.com", "short", b"/"),
    (None, b"http://api.example.com?x", "short", b"/?x"),
])
def test_absolute_form(host, target, name, upstream):
    route = HOSTS.match(host, target)
    assert route is not None and (route.api.name, route.path) == (name, upstream)


@pytest.mark.parametrize("target", [
    b"*", b"", b"orders", b"api.example.com:443", b"ftp://api.example.com/a", b"http:/a",
])
def test_non_origin_targets(target):
    assert PREFIXES.match(b"api.example.com", target) is None


def test_userinfo_in_an_absolute_target_is_refused():
    with pytest.raises(PathError, match="userinfo"):
        PREFIXES.match(b"api.example.com", b"http://user@api.example.com/a")


# Dot segments are removed before routing (gateway/paths.py), not refused.
@pytest.mark.parametrize("target, name, upstream", [
    (b"/orders/../admin", "root", b"/admin"),
    (b"/orders/./x", "orders", b"/x"),
    (b"/orders/%2e%2e/admin", "root", b"/admin"),
    (b"/orders/%2E%2e", "root", b"/"),
    (b"/orders/.%2e/x", "root", b"/x"),
    (b"/orders/%2e", "orders", b"/"),
    (b"/orders/..?x", "root", b"/?x"),
    (b"/x/../orders/lines/1", "lines", b"/1"),
])
def test_dot_segments_are_removed_before_routing(target, name, upstream):
    route = PREFIXES.match(None, target)
    assert route is not None and (route.api.name, route.path) == (name, upstream)


@pytest.mark.parametrize("target", [b"/..", b"/orders/../..", b"/%2e%2e/x"])
def test_dot_segments_above_the_root_are_refused(target):
    with pytest.raises(PathError, match="above the root"):
        PREFIXES.match(None, target)


@pytest.mark.parametrize("target", [b"/orders/.well-known", b"/orders/a..b", b"/orders/%2F", b"/orders/x.json"])
def test_dots_inside_segments_are_fine(target):
    assert PREFIXES.match(None, target).api.name == "orders"


def test_route_is_a_frozen_equal_value():
    a = PREFIXES.match(None, b"/orders/1?x")
    b = PREFIXES.match(None, b"/orders/1?x")
    assert a == b and isinstance(a, Route)
    assert a == Route(api=a.api, backend=a.backend, path=b"/1?x", rest=b"/1")
    with pytest.raises(AttributeError):
        a.path = b"/"                                 # type: ignore[misc]


# --- property: the router equals a brute-force reference ---------------------------------

def reference(apis: list[dict], bases: dict[str, str], host: bytes | None, target: bytes):
    """The rules, spelt out the slow way: (api name, upstream path, rest) or None."""
    path, sep, query = target.partition(b"?")
    h = (host or b"").lower().partition(b":")[0].decode()
    best, best_key = None, None
    for a in apis:
        prefix = a["path"].encode()
        if not (path == prefix or path.startswith(prefix + b"/")):
            continue
        ah = a.get("host")
        if ah is None:
            specificity = 0
        elif ah.startswith("*."):
            if not (h.endswith(ah[1:]) and len(h) > len(ah) - 1):
                continue
            specificity = len(ah)
        elif ah == h:
            specificity = 10**6
        else:
            continue
        key = (len(prefix), specificity)
        if best_key is None or key > best_key:
            best, best_key = a, key
    if best is None:
        return None
    rest = path[len(best["path"]):]
    upstream = (bases[best["backend"]].encode() + rest or b"/") + sep + query
    return best["name"], upstream, rest


segment = st.sampled_from(["a", "b", "ab", "v1"])
prefix = st.lists(segment, max_size=3).map(lambda s: "".join("/" + x for x in s))
api_host = st.sampled_from([None, "x.com", "y.x.com", "*.x.com", "*.y.x.com"])
request_host = st.sampled_from([None, b"x.com", b"y.x.com", b"z.y.x.com", b"Y.X.com:80",
                                b"q.x.com", b".x.com", b"other"])
request_target = st.tuples(
    st.lists(st.sampled_from(["a", "b", "ab", "v1", "abc", ""]), max_size=5),
    st.sampled_from(["", "?", "?q=/a"]),
).map(lambda t: ("/" + "/".join(t[0]) + t[1]).encode())


@settings(max_examples=300)
@given(st.lists(st.tuples(prefix, api_host, st.sampled_from(["r", "p"])), max_size=12,
                unique_by=lambda t: (t[0], t[1])),
       st.lists(st.tuples(request_host, request_target), min_size=1, max_size=10))
def test_match_equals_reference(api_specs, requests):
    apis = [api(f"api{i}", p, b, h) for i, (p, h, b) in enumerate(api_specs)]
    bases = {"r": "", "p": "/base"}
    r = router(apis, {"r": {"url": "http://b"}, "p": {"url": "http://b/base/"}})
    for host, target in requests:
        route = r.match(host, target)
        got = None if route is None else (route.api.name, route.path, route.rest)
        assert got == reference(apis, bases, host, target), (host, target)
