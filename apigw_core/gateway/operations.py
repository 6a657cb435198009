"""Operation matching: (method, path after the API prefix, query) -> operation and params.

Strategy.  APIM selects an operation of the routed API by HTTP method and URL template.  A
template is a path of segments, optionally followed by a query part:

* a literal segment matches itself exactly (case-sensitive; both sides percent-decoded, so
  `/caf%C3%A9` matches the literal `/café`);
* `{id}` matches one non-empty segment and binds it, percent-decoded, as params["id"];
* `{*path}` (or a bare `*`, unnamed) is the last segment and matches the rest of the path,
  possibly empty: `/files/{*path}` matches `/files`, `/files/` and `/files/a/b` ("a/b");
* `?a={b}&v=1` binds query parameter `a` as params["b"] and requires `v` to equal "1"; a
  template's query parameters must all be present (their values may be empty) for it to
  match, and the request may carry others (APIM's MatchedParameters holds path and
  template-query parameters only).

The request path "" (the API root) is "/".  A trailing slash is a segment of its own:
`/users` does not match `/users/`.

Precedence when several templates match (tests/gateway/test_operations.py checks it
against a brute-force oracle): the method first, an exact method before `*`; then the
templates compared segment by segment, left to right: a literal beats a parameter, which
beats a wildcard, and a template that ends at the path's end beats a wildcard matching the
empty rest (`/files` before `/files/{*p}`), so at equal prefixes the template that goes on
longer wins (`/a/{x}/{*p}` before `/a/{*p}`).  Among templates of the same shape, the one
with more query parameters wins (when present), then the one declared first.  Two
operations with the same method and shape (parameter names aside) and the same query
names are refused at load time: the second could never be chosen.

Compiled once per API into a trie per method, whose depth-first walk in the order literal,
parameter, wildcard *is* the precedence order: the first leaf reached whose query
requirements hold is the answer, with no sorting and no scoring per request.  Templates
made only of literals (no query part) are also kept in a dict keyed by the raw path, hit
before the walk when the path has no "%".  Measured (benchmarks/test_bench_routing.py,
1,000 APIs x 20 operations, CPython 3.11; table in benchmarks/README.md): 5k-26k
instructions per match (0.3-1.6 µs quiet), 37k for a percent-encoded path; one ordered
regex per API and method was tried and was no faster.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Optional, Protocol
from urllib.parse import unquote_to_bytes

from ._query import parse_query
from .denied import Denied

__all__ = [
    "OPERATION_NOT_FOUND", "OperationMatch", "OperationMatcher", "OperationIndex",
    "Template", "TemplateError", "parse_template",
]

OPERATION_NOT_FOUND = Denied(404, "OperationNotFound",
                             "Unable to match incoming request to an operation.")

_LIT, _PARAM, _WILD = 0, 1, 2
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*\Z")


class OperationLike(Protocol):
    """What the matcher reads of an operation (the config's OperationConfig)."""

    name: str
    method: str
    url_template: str


class TemplateError(ValueError):
    """A URL template (or a set of operations) that cannot be compiled; says why."""


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed URL template.

    `segments`: (kind, value) with kind 0 literal (value: decoded bytes), 1 parameter or 2
    wildcard (value: the name, "" for a bare `*`).  `query`: (name, param, literal) with
    exactly one of param (binds the value) and literal (the value must equal it) not None.
    """

    text: str
    segments: tuple[tuple[int, Any], ...]
    query: tuple[tuple[str, Optional[str], Optional[str]], ...]

    def shape(self) -> tuple:
        """What decides matching, parameter names aside (duplicate detection)."""
        return (tuple(k if k else v for k, v in self.segments),
                tuple(sorted(n for n, _, _ in self.query)))


def parse_template(text: str) -> Template:
    """Parse an APIM URL template; TemplateError with the reason when it is malformed."""
    if not isinstance(text, str):
        raise TemplateError("expected a string")
    path, sep, query = text.partition("?")
    if path == "":
        path = "/"
    if not path.startswith("/"):
        raise TemplateError(f"{text!r}: must start with '/'")
    names: set[str] = set()

    def bind(name: str) -> str:
        if not _NAME.match(name):
            raise TemplateError(f"{text!r}: bad parameter name {name!r}")
        if name in names:
            raise TemplateError(f"{text!r}: parameter {name!r} appears twice")
        names.add(name)
        return name

    segments: list[tuple[int, Any]] = []
    raw = path[1:].split("/")
    for i, seg in enumerate(raw):
        if seg == "*" or seg.startswith("{*"):
            if i != len(raw) - 1:
                raise TemplateError(f"{text!r}: a wildcard must be the last segment")
            if seg == "*":
                segments.append((_WILD, ""))
                continue
            if not seg.endswith("}"):
                raise TemplateError(f"{text!r}: unclosed '{{' in segment {seg!r}")
            segments.append((_WILD, bind(seg[2:-1])))
        elif seg.startswith("{") and seg.endswith("}") and seg.count("{") == 1:
            segments.append((_PARAM, bind(seg[1:-1])))
        elif "{" in seg or "}" in seg:
            raise TemplateError(f"{text!r}: a parameter must be a whole segment, "
                                f"'{{name}}' or '{{*name}}' (got {seg!r})")
        else:
            segments.append((_LIT, unquote_to_bytes(seg.encode("utf-8"))))

    params: list[tuple[str, Optional[str], Optional[str]]] = []
    if sep:
        seen: set[str] = set()
        for pair in query.split("&"):
            qname, eq, value = pair.partition("=")
            if not qname or not eq:
                raise TemplateError(f"{text!r}: the query part must be name={{param}} "
                                    f"or name=value pairs (got {pair!r})")
            if qname in seen:
                raise TemplateError(f"{text!r}: query parameter {qname!r} appears twice")
            seen.add(qname)
            if value.startswith("{") and value.endswith("}"):
                params.append((qname, bind(value[1:-1]), None))
            elif "{" in value or "}" in value:
                raise TemplateError(f"{text!r}: bad query value {value!r}")
            else:
                params.append((qname, None, value))
    return Template(text, tuple(segments), tuple(params))


@dataclass(frozen=True, slots=True)
class OperationMatch:
    """The operation chosen for a request (None: the API has no operations) and its params."""

    operation: Any          # the config's OperationConfig, or None
    params: Mapping[str, str]


# Built per request: object.__new__ + slot setters skip the frozen __init__ (as router.py).
_new = object.__new__
_SET_OP, _SET_PARAMS = (OperationMatch.__dict__[f].__set__ for f in ("operation", "params"))
_EMPTY: Mapping[str, str] = MappingProxyType({})
NO_OPERATION = OperationMatch(None, _EMPTY)


class _Leaf:
    __slots__ = ("operation", "path_params", "query", "order", "fixed")

    def __init__(self, operation: Any, template: Template, order: int) -> None:
        self.operation = operation
        # (name, segment index, is wildcard) for the path; the query as the template says
        self.path_params = tuple((v, i, k == _WILD) for i, (k, v) in enumerate(template.segments)
                                 if k != _LIT and v)
        self.query = template.query
        self.order = order
        # no parameter to bind: one shared, immutable answer (no allocation per request)
        binds = self.path_params or any(p is not None for _, p, _ in self.query)
        self.fixed = None if binds else OperationMatch(operation, _EMPTY)


class _Node:
    __slots__ = ("lit", "param", "ends", "wild", "end1", "wild1")

    def __init__(self) -> None:
        self.lit: dict[bytes, _Node] = {}
        self.param: Optional[_Node] = None
        self.ends: list[_Leaf] = []       # templates that end here
        self.wild: list[_Leaf] = []       # templates whose wildcard starts here
        # the answer without looking at the query (one leaf, no query part), else None
        self.end1: Optional[_Leaf] = None
        self.wild1: Optional[_Leaf] = None


def _insert(root: _Node, template: Template, leaf: _Leaf) -> None:
    node = root
    for kind, value in template.segments:
        if kind == _LIT:
            node = node.lit.setdefault(value, _Node())
        elif kind == _PARAM:
            if node.param is None:
                node.param = _Node()
            node = node.param
        else:
            node.wild.append(leaf)
            break
    else:
        node.ends.append(leaf)


def _sort(node: _Node) -> None:
    # Same shape: more query requirements first, then declaration order.
    for leaves in (node.ends, node.wild):
        leaves.sort(key=lambda lf: (-len(lf.query), lf.order))
    node.end1 = node.ends[0] if len(node.ends) == 1 and not node.ends[0].query else None
    node.wild1 = node.wild[0] if len(node.wild) == 1 and not node.wild[0].query else None
    for child in node.lit.values():
        _sort(child)
    if node.param is not None:
        _sort(node.param)


def _values(q: list) -> dict[str, str]:
    # q is [raw query bytes, parsed or None]: parsed on first use, most templates have no
    # query part (a list, not an object: cheaper to make per request)
    if q[1] is None:
        q[1] = parse_query(q[0])
    return q[1]


def _pick(leaves: list[_Leaf], q: list) -> Optional[_Leaf]:
    for leaf in leaves:
        if not leaf.query:
            return leaf
        values = _values(q)
        for name, _param, literal in leaf.query:
            got = values.get(name)
            if got is None or (literal is not None and got != literal):
                break
        else:
            return leaf
    return None


def _walk(node: _Node, segs: list[bytes], i: int, n: int, q: list) -> Optional[_Leaf]:
    # Depth first, literal before parameter before wildcard: the precedence order.
    if i == n:
        if node.end1 is not None:
            return node.end1
        if node.ends:
            leaf = _pick(node.ends, q)
            if leaf is not None:
                return leaf
    else:
        seg = segs[i]
        child = node.lit.get(seg)
        if child is not None:
            leaf = _walk(child, segs, i + 1, n, q)
            if leaf is not None:
                return leaf
        if seg and node.param is not None:
            leaf = _walk(node.param, segs, i + 1, n, q)
            if leaf is not None:
                return leaf
    if node.wild1 is not None:
        return node.wild1
    return _pick(node.wild, q) if node.wild else None


class OperationMatcher:
    """The operations of one API, compiled (immutable; rebuild on reload)."""

    def __init__(self, operations: Sequence[OperationLike]) -> None:
        self._empty = not operations
        tries: dict[bytes, _Node] = {}
        exact: dict[bytes, dict[bytes, tuple[_Leaf, list[bytes]]]] = {}
        shapes: dict[tuple, int] = {}
        for order, op in enumerate(operations):
            try:
                template = parse_template(op.url_template)
            except TemplateError as e:
                raise TemplateError(f"operations[{order}].url-template: {e}") from None
            method = op.method.upper().encode("ascii")
            key = (method, template.shape())
            if key in shapes:
                raise TemplateError(
                    f"operations[{order}]: same method and URL template as "
                    f"operations[{shapes[key]}] ({op.method} {op.url_template!r}); it could "
                    f"never be chosen")
            shapes[key] = order
            leaf = _Leaf(op, template, order)
            _insert(tries.setdefault(method, _Node()), template, leaf)
            literals = [v for k, v in template.segments if k == _LIT]
            if (not template.query and len(literals) == len(template.segments)
                    and not any(b"%" in v or b"/" in v for v in literals)):
                # looked up with the raw path: only literals that need no decoding
                exact.setdefault(method, {})[b"/" + b"/".join(literals)] = (leaf, literals)
        for root in tries.values():
            _sort(root)
        fast: dict[bytes, dict[bytes, _Leaf]] = {}
        for method, entries in exact.items():
            for path, (leaf, literals) in entries.items():
                node = tries[method]
                for v in literals:
                    node = node.lit[v]
                if len(node.ends) == 1:     # else a query variant may take precedence
                    fast.setdefault(method, {})[path] = leaf
        star = b"*"
        # Per method: (exact dict, trie) of that method, then those of "*".
        self._plans: dict[bytes, tuple] = {}
        for method in set(tries) | {star}:
            plan = []
            for m in (method, star) if method != star else (star,):
                if m in tries:
                    plan.append((fast.get(m, {}), tries[m]))
            self._plans[method] = tuple(plan)
        self._star_plan = self._plans[star]

    def match(self, method: bytes, rest: bytes, query: bytes = b"",
              ) -> OperationMatch | Denied:
        """The operation for a request, or OPERATION_NOT_FOUND (404).

        `rest` is the Route's rest (b"" or starting with b"/"), `query` the bytes after
        "?" (b"" if none).  An API without operations matches everything (operation None).
        """
        if self._empty:
            return NO_OPERATION
        plan = self._plans.get(method)
        if plan is None:
            plan = self._star_plan
        path = rest or b"/"
        encoded = b"%" in path
        segs: Optional[list[bytes]] = None
        q = [query, None]
        for exact, root in plan:
            if not encoded:
                leaf = exact.get(path)
                if leaf is not None:
                    return leaf.fixed
            if segs is None:
                segs = path[1:].split(b"/")
                if encoded:
                    segs = [unquote_to_bytes(s) if b"%" in s else s for s in segs]
            leaf = _walk(root, segs, 0, len(segs), q)
            if leaf is not None:
                return _result(leaf, segs, q)
        return OPERATION_NOT_FOUND


def _result(leaf: _Leaf, segs: Sequence[bytes], q: list) -> OperationMatch:
    if leaf.fixed is not None:
        return leaf.fixed
    params = {}
    for name, i, wild in leaf.path_params:       # a loop: 3.11 makes a comprehension a call
        params[name] = (b"/".join(segs[i:]) if wild else segs[i]).decode("utf-8", "replace")
    if leaf.query:
        values = _values(q)
        for qname, param, _literal in leaf.query:
            if param is not None:
                params[param] = values[qname]
    r = _new(OperationMatch)
    _SET_OP(r, leaf.operation)
    _SET_PARAMS(r, params)
    return r


class OperationIndex:
    """One OperationMatcher per API, by API name, built from the config's APIs."""

    def __init__(self, apis: Iterable[Any]) -> None:
        self._by_api: dict[str, OperationMatcher] = {}
        for i, api in enumerate(apis):
            try:
                self._by_api[api.name] = OperationMatcher(tuple(getattr(api, "operations", ())))
            except TemplateError as e:
                raise TemplateError(f"apis[{i}].{e}") from None

    def matcher(self, api_name: str) -> OperationMatcher:
        return self._by_api[api_name]

    def match(self, api: Any, method: bytes, rest: bytes, query: bytes = b"",
              ) -> OperationMatch | Denied:
        """`matcher(api.name).match(method, rest, query)`."""
        return self._by_api[api.name].match(method, rest, query)
