"""Policy expressions: templates (`"Bearer {variables.token}"`) and conditions
(`request.method == "POST" and response.status >= 500`), never eval.

Strategy.  Everything is parsed once, when the config is compiled, into plain closures over
the `Context`; a request only calls them.  A *path* (`request.headers.x-tier`) is resolved
at compile time into a getter: its root and field are checked against the table below (an
unknown one is a config error listing the known ones), header names are lower-cased and
encoded, so the getter does one lookup.  A *template* is text with `{path}` parts:
constant pieces and getters, rendered by a join (a constant template renders its text and
exposes it as `.constant`, so a policy can pre-encode it).  `{{` and `}}` are literal
braces; `{{name}}` (a name alone between double braces) is a named value: substituted from
the named values given, else an error ("unknown named value"), since the config loader
replaces every known one before we see it.  A missing value renders as "" (APIM renders
null as empty).  A *condition* is a tiny language (see `_exprparse`): a hand-written
tokenizer and recursive-descent parser that compile to closures.

Values keep their type inside an expression (`response.status` is an int, a header a str,
a missing one None); rendering turns None into "", bools into "true"/"false".  Reading
`request.body` / `response.body` makes the expression a body reader (`reads_request_body`
/ `reads_response_body`), so the policy using it asks the runtime for the body first.
A failure while evaluating (ordering a null, ...) raises PolicyError 500 with APIM's
reason ExpressionValueEvaluationFailure.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Optional
from urllib.parse import parse_qsl

from .contract import Context, PolicyError, ServiceResponse

__all__ = ["Template", "Condition", "compile_template", "compile_condition", "render_value",
           "ExpressionError", "evaluation_error", "PATH_FIELDS"]

Getter = Callable[[Context], Any]


class ExpressionError(ValueError):
    """A syntax or name error in an expression (becomes "path: message" in the config)."""


def evaluation_error(message: str) -> PolicyError:
    return PolicyError(500, "ExpressionValueEvaluationFailure", message)  # source: the policy


def render_value(value: Any) -> str:
    """How a value reads in text: None -> "", bools lower-case, bytes as UTF-8."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, ServiceResponse):
        return value.body.decode("utf-8", "replace")
    return str(value)


# --- paths ------------------------------------------------------------------------------

def _text(b: Optional[bytes]) -> Optional[str]:
    return None if b is None else b.decode("latin-1")


def _body(b: Optional[bytes]) -> Optional[str]:
    return None if b is None else b.decode("utf-8", "replace")


def _query_value(query: str, name: str) -> Optional[str]:
    found = [v for k, v in parse_qsl(query, keep_blank_values=True) if k == name]
    return ",".join(found) if found else None   # APIM joins repeated parameters with ","


def _url(ctx: Context) -> str:
    r = ctx.request
    return f"{r.scheme}://{r.host}{r.path}" + (f"?{r.query}" if r.query else "")


def _first_or_joined(items: list[tuple[bytes, bytes]], key: bytes) -> Optional[str]:
    """Headers.get, inlined for the hot path: the value, or all of them joined by ", "."""
    found = None
    for n, v in items:
        if n == key:
            found = v if found is None else found + b", " + v
    return None if found is None else found.decode("latin-1")


def _header_getter(side: str, name: str) -> Getter:
    key = name.lower().encode("latin-1")
    if side == "request":
        return lambda ctx: _first_or_joined(ctx.request.headers.items, key)
    return lambda ctx: None if ctx.response is None else \
        _first_or_joined(ctx.response.headers.items, key)


def _attr(obj_attr: str, field: str) -> Getter:
    def get(ctx: Context) -> Any:
        obj = getattr(ctx, obj_attr)
        return None if obj is None else getattr(obj, field, None)
    return get


def _last_error(field: str) -> Getter:
    return lambda ctx: None if ctx.last_error is None else getattr(ctx.last_error, field)


# Fields without a name after them: root -> field -> getter.
_SIMPLE: dict[str, dict[str, Getter]] = {
    "request": {
        "ip": lambda ctx: ctx.request.ip,
        "method": lambda ctx: ctx.request.method,
        "path": lambda ctx: ctx.request.path,
        "url": _url,
        "scheme": lambda ctx: ctx.request.scheme,
        "host": lambda ctx: ctx.request.host,
        "query": lambda ctx: ctx.request.query,
        "id": lambda ctx: ctx.request_id,
        "protocol": lambda ctx: ctx.request.protocol,
        "body": lambda ctx: _body(ctx.request.body),
    },
    "response": {
        "status": lambda ctx: None if ctx.response is None else ctx.response.status,
        "reason": lambda ctx: None if ctx.response is None else ctx.response.reason,
        "body": lambda ctx: None if ctx.response is None else _body(ctx.response.body),
    },
    "subscription": {
        "id": _attr("subscription", "id"),
        "name": _attr("subscription", "id"),
        "key": lambda ctx: ctx.subscription_key,
    },
    "product": {"name": _attr("product", "name")},
    "api": {"name": _attr("api", "name"), "path": _attr("api", "path")},
    "operation": {"name": _attr("operation", "name"), "method": _attr("operation", "method"),
                  "url-template": _attr("operation", "url_template")},
    "last-error": {f.replace("_", "-"): _last_error(f) for f in
                   ("source", "reason", "message", "scope", "section", "path", "policy_id",
                    "status")},
}
# Fields followed by a name: `request.headers.x-name`, `request.query.q`, ...
_NAMED = {"request": ("headers", "query", "params"), "response": ("headers",)}


def _certificate(attr: str) -> Getter:
    """A fact of the client certificate (gateway/certificates.py); None without one."""
    return lambda ctx: None if ctx.request.tls is None else getattr(ctx.request.tls, attr)


# `request.certificate.<field>` (APIM's context.Request.Certificate)
CERTIFICATE_FIELDS: dict[str, Getter] = {
    f.replace("_", "-"): _certificate(f) for f in (
        "thumbprint", "subject", "issuer", "serial_number", "not_before", "not_after",
        "common_name")}
CERTIFICATE_FIELDS["dns-names"] = lambda ctx: None if ctx.request.tls is None else \
    ",".join(ctx.request.tls.dns_names)
PATH_FIELDS: dict[str, list[str]] = {
    root: sorted(list(fields) + [f"{n}.NAME" for n in _NAMED.get(root, ())])
    for root, fields in _SIMPLE.items()}
PATH_FIELDS["request"] += [f"certificate.{f}" for f in CERTIFICATE_FIELDS]
PATH_FIELDS["variables"] = ["NAME"]
PATH_FIELDS["jwt"] = ["claims.NAME"]


def _claim_getter(name: str) -> Getter:
    """`jwt.claims.NAME`: a claim of the token validate-jwt accepted (None before, or when
    absent); strings and numbers as they are, arrays comma-joined, objects as JSON."""
    from ..identity.claims import claim_text

    def get(ctx: Context) -> Any:
        claims = ctx.jwt
        if claims is None:
            return None
        v = claims.get(name)
        return v if v is None or isinstance(v, (str, int, float)) else claim_text(v)
    return get


def _variable_getter(name: str, rest: list[str]) -> Getter:
    if not rest:
        return lambda ctx: ctx.variables.get(name)
    field, tail = rest[0].lower(), rest[1:]
    if field == "headers" and tail:
        key = ".".join(tail).lower().encode("latin-1")
    else:
        key = b""

    def get(ctx: Context) -> Any:
        value = ctx.variables.get(name)
        if isinstance(value, ServiceResponse):   # a send-request response
            if field == "status":
                return value.status
            if field == "reason":
                return value.reason
            if field == "body":
                return _body(value.body)
            if key:
                found = [v for n, v in value.headers if n.lower() == key]
                return ", ".join(v.decode("latin-1") for v in found) if found else None
            return None
        for part in rest:                         # a mapping stored by a custom policy
            if not isinstance(value, Mapping):
                return None
            value = value.get(part)
        return value
    return get


class PathInfo:
    """A compiled path: its getter and whether it reads a body."""

    __slots__ = ("text", "get", "reads_request_body", "reads_response_body")

    def __init__(self, text: str, get: Getter, req: bool = False, resp: bool = False) -> None:
        self.text, self.get = text, get
        self.reads_request_body, self.reads_response_body = req, resp


def compile_path(text: str) -> PathInfo:
    """`request.headers.x-name` -> its getter; ExpressionError when it names nothing."""
    parts = text.strip().split(".")
    root = parts[0].lower()
    if any(not p for p in parts):
        raise ExpressionError(f"bad path {text!r}")
    if root == "variables":
        if len(parts) < 2:
            raise ExpressionError("variables needs a name: variables.NAME")
        return PathInfo(text, _variable_getter(parts[1], parts[2:]))
    if root == "jwt":
        if len(parts) < 3 or parts[1].lower() != "claims":
            raise ExpressionError("jwt needs a claim: jwt.claims.NAME")
        return PathInfo(text, _claim_getter(".".join(parts[2:])))
    if root not in _SIMPLE:
        raise ExpressionError(f"unknown name {parts[0]!r} (expected one of "
                              f"{', '.join(sorted(PATH_FIELDS))})")
    if len(parts) < 2:
        raise ExpressionError(f"{root} needs a field (one of {', '.join(PATH_FIELDS[root])})")
    field = parts[1].lower()
    if (root, field) == ("request", "certificate"):
        cget = CERTIFICATE_FIELDS.get(".".join(parts[2:]).lower())
        if cget is None:
            raise ExpressionError(f"unknown field {text.strip()!r} (expected "
                                  f"request.certificate. one of {', '.join(CERTIFICATE_FIELDS)})")
        return PathInfo(text, cget)
    if field in _NAMED.get(root, ()) and len(parts) > 2:
        name = ".".join(parts[2:])
        if field == "headers":
            return PathInfo(text, _header_getter(root, name))
        if field == "query":
            return PathInfo(text, lambda ctx: _query_value(ctx.request.query, name))
        return PathInfo(text, lambda ctx: ctx.request.params.get(name))
    get = _SIMPLE[root].get(field)
    if get is None or len(parts) > 2:
        raise ExpressionError(f"unknown field {text.strip()!r} (expected {root}. one of "
                              f"{', '.join(PATH_FIELDS[root])})")
    return PathInfo(text, get, req=(root, field) == ("request", "body"),
                    resp=(root, field) == ("response", "body"))


# --- templates --------------------------------------------------------------------------

class Template:
    """A compiled template: `.render(ctx) -> str`; `.value(ctx)` keeps the type when the
    template is one expression alone (set-variable); `.constant` is the text when there is
    no expression, else None."""

    __slots__ = ("source", "constant", "render", "value", "reads_request_body",
                 "reads_response_body")

    def __init__(self, source: str, parts: list[Any]) -> None:
        self.source = source
        getters = [p for p in parts if not isinstance(p, str)]
        self.reads_request_body = any(g.reads_request_body for g in getters)
        self.reads_response_body = any(g.reads_response_body for g in getters)
        if not getters:
            text = "".join(parts)
            self.constant: Optional[str] = text
            self.render: Callable[[Context], str] = lambda ctx: text
            self.value: Callable[[Context], Any] = self.render
            return
        self.constant = None
        if len(parts) == 1:
            get = parts[0].get
            self.value = get
            self.render = lambda ctx: render_value(get(ctx))
            return
        pieces = [(p, None) if isinstance(p, str) else (None, p.get) for p in parts]

        def render(ctx: Context) -> str:
            return "".join(s if g is None else render_value(g(ctx)) for s, g in pieces)
        self.render = render
        self.value = render

    def __repr__(self) -> str:
        return f"Template({self.source!r})"


_NAMED_VALUE = re.compile(r"\{\{([A-Za-z0-9_.\-]+)\}\}")


def _parse_template(text: str, named_values: Optional[Mapping[str, str]]) -> list[Any]:
    parts: list[Any] = []
    buf: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "{":
            m = _NAMED_VALUE.match(text, i)
            if m:
                name = m.group(1)
                if named_values is None or name not in named_values:
                    raise ExpressionError(f"unknown named value {name!r}")
                buf.append(named_values[name])
                i = m.end()
                continue
            if text.startswith("{{", i):
                buf.append("{")
                i += 2
                continue
            end = text.find("}", i + 1)
            if end < 0:
                raise ExpressionError(f"unclosed {{ at offset {i} (write {{{{ for a "
                                      f"literal brace)")
            inner = text[i + 1:end]
            if "{" in inner or not inner.strip():
                raise ExpressionError(f"bad expression {{{inner}}} at offset {i} (write "
                                      f"{{{{ for a literal brace)")
            if buf:
                parts.append("".join(buf))
                buf = []
            parts.append(compile_path(inner))
            i = end + 1
        elif c == "}":
            buf.append("}")
            i += 2 if text.startswith("}}", i) else 1
        else:
            j = i + 1
            while j < n and text[j] not in "{}":
                j += 1
            buf.append(text[i:j])
            i = j
    if buf or not parts:
        parts.append("".join(buf))
    return parts


def compile_template(text: Any, path: str, errors: list[str],
                     named_values: Optional[Mapping[str, str]] = None) -> Optional[Template]:
    """Compile `text` (a string; numbers and bools are taken as their text).  On a mistake,
    append "path: message" to `errors` and return None."""
    if isinstance(text, bool):
        text = "true" if text else "false"
    elif isinstance(text, (int, float)):
        text = str(text)
    if not isinstance(text, str):
        errors.append(f"{path}: expected a string, got {type(text).__name__}")
        return None
    try:
        return Template(text, _parse_template(text, named_values))
    except ExpressionError as e:
        errors.append(f"{path}: {e}")
        return None


# --- conditions ---------------------------------------------------------------------------

class Condition:
    """A compiled condition: `.test(ctx) -> bool`."""

    __slots__ = ("source", "test", "reads_request_body", "reads_response_body")

    def __init__(self, source: str, test: Callable[[Context], bool], req: bool,
                 resp: bool) -> None:
        self.source, self.test = source, test
        self.reads_request_body, self.reads_response_body = req, resp

    def __repr__(self) -> str:
        return f"Condition({self.source!r})"


def compile_condition(text: Any, path: str, errors: list[str]) -> Optional[Condition]:
    """Compile a bare condition (`request.method == "GET"`); a YAML bool is a constant.
    On a mistake, append "path: message" to `errors` and return None."""
    from ._exprparse import parse_condition

    if isinstance(text, bool):
        value = text
        return Condition(str(text).lower(), lambda ctx: value, False, False)
    if not isinstance(text, str):
        errors.append(f"{path}: expected a condition string, got {type(text).__name__}")
        return None
    try:
        test, req, resp = parse_condition(text, compile_path)
    except ExpressionError as e:
        errors.append(f"{path}: {e}")
        return None
    return Condition(text, test, req, resp)
