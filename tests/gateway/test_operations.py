"""Operation matching: APIM URL templates, precedence, params, 404; a brute-force oracle."""

from __future__ import annotations

from types import SimpleNamespace
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from apim_model import gateway, operations
from apigw_core.gateway.denied import Denied
from apigw_core.gateway.operations import (
    OPERATION_NOT_FOUND, OperationIndex, OperationMatch, OperationMatcher, TemplateError,
    parse_template,
)

OPS = operations(
    ("list-users", "GET", "/users"),
    ("get-user", "GET", "/users/{id}"),
    ("me", "GET", "/users/me"),
    ("user-orders", "GET", "/users/{id}/orders/{order}"),
    ("create-user", "POST", "/users"),
    ("files", "GET", "/files/{*path}"),
    ("search", "GET", "/search?q={query}"),
    ("search-v2", "GET", "/search?q={query}&v=2"),
    ("any-ping", "*", "/ping"),
    ("get-ping", "GET", "/ping"),
    ("root", "GET", "/"),
    ("cafe", "GET", "/caf%C3%A9/{x}"),
)
MATCHER = OperationMatcher(OPS)


def op(method: bytes, rest: bytes, query: bytes = b"") -> tuple[str, dict] | Denied:
    m = MATCHER.match(method, rest, query)
    if isinstance(m, Denied):
        return m
    return m.operation.name, dict(m.params)


@pytest.mark.parametrize("method, rest, query, name, params", [
    (b"GET", b"/users", b"", "list-users", {}),
    (b"POST", b"/users", b"", "create-user", {}),
    (b"GET", b"/users/7", b"", "get-user", {"id": "7"}),
    (b"GET", b"/users/me", b"", "me", {}),                       # literal beats {id}
    (b"GET", b"/users/a%20b", b"", "get-user", {"id": "a b"}),    # percent-decoded
    (b"GET", b"/users/a%2Fb", b"", "get-user", {"id": "a/b"}),    # one segment still
    (b"GET", b"/users/m%65", b"", "me", {}),                      # literals decoded too
    (b"GET", b"/users/7/orders/9", b"", "user-orders", {"id": "7", "order": "9"}),
    (b"GET", b"/files", b"", "files", {"path": ""}),              # the rest, maybe empty
    (b"GET", b"/files/", b"", "files", {"path": ""}),
    (b"GET", b"/files/a/b.txt", b"", "files", {"path": "a/b.txt"}),
    (b"GET", b"/files/a%2Fb/%C3%A9", b"", "files", {"path": "a/b/é"}),
    (b"GET", b"/search", b"q=cats", "search", {"query": "cats"}),
    (b"GET", b"/search", b"x=1&q=big+cats", "search", {"query": "big cats"}),
    (b"GET", b"/search", b"q=", "search", {"query": ""}),         # present, empty
    (b"GET", b"/search", b"q=a&v=2", "search-v2", {"query": "a"}),  # more query params
    (b"GET", b"/search", b"q=a&v=3", "search", {"query": "a"}),   # literal value differs
    (b"GET", b"/ping", b"", "get-ping", {}),                      # exact method before *
    (b"DELETE", b"/ping", b"", "any-ping", {}),
    (b"GET", b"", b"", "root", {}),                               # API root is "/"
    (b"GET", b"/", b"", "root", {}),
    (b"GET", b"/caf%C3%A9/1", b"", "cafe", {"x": "1"}),
])
def test_matches(method: bytes, rest: bytes, query: bytes, name: str, params: dict) -> None:
    assert op(method, rest, query) == (name, params)


@pytest.mark.parametrize("method, rest, query", [
    (b"GET", b"/Users", b""),            # case-sensitive path
    (b"GET", b"/users/", b""),           # {id} needs a non-empty segment
    (b"GET", b"/users/7/", b""),         # a trailing slash is a segment
    (b"GET", b"/users/7/orders", b""),
    (b"GET", b"/search", b""),           # template query parameters are required
    (b"GET", b"/search", b"Q=x"),        # names are case-sensitive
    (b"PUT", b"/users", b""),
    (b"get", b"/users", b""),            # methods are case-sensitive (RFC 9110 §9.1)
    (b"GET", b"/nothing", b""),
])
def test_no_match_is_operation_not_found(method: bytes, rest: bytes, query: bytes) -> None:
    assert MATCHER.match(method, rest, query) is OPERATION_NOT_FOUND
    assert (OPERATION_NOT_FOUND.status, OPERATION_NOT_FOUND.reason,
            OPERATION_NOT_FOUND.message) == (
        404, "OperationNotFound", "Unable to match incoming request to an operation.")


def test_api_without_operations_matches_everything() -> None:
    m = OperationMatcher(())
    for method, rest in ((b"GET", b""), (b"PATCH", b"/x/y"), (b"BREW", b"/%ZZ")):
        r = m.match(method, rest, b"a=1")
        assert isinstance(r, OperationMatch) and r.operation is None and dict(r.params) == {}


@pytest.mark.parametrize("templates, rest, winner", [
    # left to right: literal > parameter > wildcard
    (["/a/{x}", "/{y}/b"], b"/a/b", "/a/{x}"),
    (["/{y}/b", "/a/{x}"], b"/a/b", "/a/{x}"),
    (["/a/{*p}", "/a/{x}"], b"/a/b", "/a/{x}"),
    (["/{*p}", "/{x}/b"], b"/a/b", "/{x}/b"),
    # a template that ends beats a wildcard matching the empty rest
    (["/files/{*p}", "/files"], b"/files", "/files"),
    (["/{x}/{*p}", "/{x}"], b"/a", "/{x}"),
    (["/a/{*p}", "/a?q={q}"], b"/a?q=1", "/a?q={q}"),
    # equal prefix: the one that goes on longer
    (["/a/{*p}", "/a/{x}/{*q}"], b"/a/b/c", "/a/{x}/{*q}"),
    (["/*", "/a"], b"/a", "/a"),
    (["/*", "/a"], b"/b/c", "/*"),
    # same shape: more query parameters (when present), then declaration order
    (["/s?a={a}", "/s?a={a}&b={b}"], b"/s?a=1&b=2", "/s?a={a}&b={b}"),
    (["/s?a={a}", "/s?a={a}&b={b}"], b"/s?a=1", "/s?a={a}"),
    (["/s?a={a}", "/s?b={b}"], b"/s?b=1&a=2", "/s?a={a}"),
    # a query miss falls back to the next best template
    (["/a?x={x}", "/{p}"], b"/a", "/{p}"),
    (["/a?x={x}", "/{p}"], b"/a?x=1", "/a?x={x}"),
    (["/a", "/a?x={x}"], b"/a?x=1", "/a?x={x}"),
])
def test_precedence(templates: list[str], rest: bytes, winner: str) -> None:
    m = OperationMatcher(operations(*((t, "GET", t) for t in templates)))
    path, _, query = rest.partition(b"?")
    assert m.match(b"GET", path, query).operation.name == winner


@pytest.mark.parametrize("template, error", [
    ("users", "must start with '/'"),
    ("/a/{*p}/b", "wildcard must be the last segment"),
    ("/a/*/b", "wildcard must be the last segment"),
    ("/a/{id", "a parameter must be a whole segment"),
    ("/a/x{id}", "a parameter must be a whole segment"),
    ("/a/{}", "bad parameter name"),
    ("/a/{x y}", "bad parameter name"),
    ("/a/{id}/{id}", "appears twice"),
    ("/a/{id}?id={id}", "appears twice"),
    ("/a?x", "name={param}"),
    ("/a?=1", "name={param}"),
    ("/a?x=1&x=2", "query parameter 'x' appears twice"),
    ("/a?x={y", "bad query value"),
    ("/{*p", "unclosed"),
])
def test_bad_templates(template: str, error: str) -> None:
    with pytest.raises(TemplateError, match=error):
        parse_template(template)


def test_duplicate_operations_refused_with_their_paths() -> None:
    ops = [SimpleNamespace(name="a", method="GET", url_template="/x/{id}"),
           SimpleNamespace(name="b", method="POST", url_template="/x/{id}"),
           SimpleNamespace(name="c", method="GET", url_template="/x/{other}")]
    with pytest.raises(TemplateError, match=r"operations\[2\]: same method and URL template "
                                            r"as operations\[0\]"):
        OperationMatcher(ops)
    apis = [SimpleNamespace(name="ok", operations=()),
            SimpleNamespace(name="bad", operations=(
                SimpleNamespace(name="a", method="GET", url_template="/{*p}/x"),))]
    with pytest.raises(TemplateError, match=r"^apis\[1\]\.operations\[0\]\.url-template: "):
        OperationIndex(apis)


def test_index_by_api() -> None:
    cfg = gateway({"apis": [
        {"name": "orders", "path": "/orders",
         "operations": [{"name": "get-order", "method": "GET", "url-template": "/{id}"}]},
        {"name": "open", "path": "/open"}]})
    index = OperationIndex(cfg.apis)
    orders, open_ = cfg.apis
    m = index.match(orders, b"GET", b"/7", b"")
    assert (m.operation.name, dict(m.params)) == ("get-order", {"id": "7"})
    assert index.match(orders, b"POST", b"/7") is OPERATION_NOT_FOUND
    assert index.match(open_, b"POST", b"/anything").operation is None


# --- the oracle: every template tried on its own, the winner picked by sorting -------------

_END, _WILDCODE = 2, 3


def _ref_params(template, segs: list[bytes], query: dict[str, str]) -> dict | None:
    t = parse_template(template)
    params: dict[str, str] = {}
    for i, (kind, value) in enumerate(t.segments):
        if kind == 2:
            if len(segs) < i:
                return None
            if value:
                params[value] = b"/".join(segs[i:]).decode("utf-8", "replace")
            break
        if i >= len(segs) or (kind == 0 and segs[i] != value) or (kind == 1 and not segs[i]):
            return None
        if kind == 1:
            params[value] = segs[i].decode("utf-8", "replace")
    else:
        if len(segs) != len(t.segments):
            return None
    for name, param, literal in t.query:
        if name not in query or (literal is not None and query[name] != literal):
            return None
        if param is not None:
            params[param] = query[name]
    return params


def _ref_key(template: str) -> tuple:
    t = parse_template(template)
    codes = tuple(_WILDCODE if k == 2 else k for k, _ in t.segments)
    return codes if codes[-1:] == (_WILDCODE,) else codes + (_END,)


def reference(ops, method: bytes, rest: bytes, query: bytes):
    from apigw_core.gateway._query import parse_query
    segs = [unquote_to_bytes(s) for s in (rest or b"/")[1:].split(b"/")]
    q = parse_query(query)
    found = []
    for order, o in enumerate(ops):
        if o.method.encode() not in (method, b"*"):
            continue
        params = _ref_params(o.url_template, segs, q)
        if params is not None:
            found.append(((o.method == "*", _ref_key(o.url_template),
                           -len(parse_template(o.url_template).query), order), o, params))
    if not found:
        return None
    _, o, params = min(found, key=lambda f: f[0])
    return o.name, params


@st.composite
def _template(draw) -> str:
    names = (f"p{i}" for i in range(99))          # each parameter name once per template
    segs = ["{%s}" % next(names) if s == "{}" else s
            for s in draw(st.lists(st.sampled_from(["a", "b", "", "{}"]), max_size=3))]
    wild = draw(st.sampled_from(["", "*", "{*w}"]))
    if wild:
        segs.append(wild)
    query = draw(st.sampled_from(["", "?x={}", "?x=1", "?y={}", "?x={}&y=1"]))
    return "/" + "/".join(segs) + query.replace("{}", "{%s}" % next(names))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["GET", "POST", "*"]), _template()), max_size=8),
       st.lists(st.sampled_from(["a", "b", "", "c", "%61", "a%2Fb", "%C3%A9"]), max_size=4),
       st.sampled_from([b"", b"x=1", b"x=2&y=1", b"y=1", b"x=&y=2"]),
       st.sampled_from([b"GET", b"POST", b"PUT"]))
def test_agrees_with_reference(specs, path_segs, query, method) -> None:
    ops = [SimpleNamespace(name=f"op{i}", method=m, url_template=t)
           for i, (m, t) in enumerate(specs)]
    try:
        matcher = OperationMatcher(ops)
    except TemplateError:
        assume(False)
    rest = ("/" + "/".join(path_segs)).encode() if path_segs else b""
    got = matcher.match(method, rest, query)
    want = reference(ops, method, rest, query)
    if not ops:
        assert got.operation is None
    elif want is None:
        assert got is OPERATION_NOT_FOUND
    else:
        assert (got.operation.name, dict(got.params)) == want


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40), st.binary(max_size=40), st.binary(max_size=8))
def test_any_bytes_give_a_match_or_not_found(rest: bytes, query: bytes, method: bytes) -> None:
    r = MATCHER.match(method, b"/" + rest, query)
    assert r is OPERATION_NOT_FOUND or isinstance(r, OperationMatch)
