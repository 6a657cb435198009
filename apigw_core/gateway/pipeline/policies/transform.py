"""Transformation policies: `set-header`, `set-query-parameter`, `rewrite-uri`,
`set-method`, `set-status`, `set-body`, `find-and-replace` (APIM's attributes).

Strategy.  A policy is bound at compile time to what it edits: in inbound and backend the
request, in outbound and on-error the response (APIM).  Names are checked and lowered
then, constant values rendered and encoded then (a constant `set-header` is a list
splice per request).  Values rendered per request are checked before they reach a field:
CR, LF or NUL would split it (PolicyError 500, ExpressionValueEvaluationFailure).

`set-header` follows APIM's usage notes: several values are joined with "," into one
field, except for the headers whose values carry commas or dates (User-Agent,
WWW-Authenticate, Proxy-Authenticate, Cookie, Set-Cookie, Warning, Date, Expires,
If-Modified-Since, If-Unmodified-Since, Last-Modified, Retry-After), which get one field
per value; framing fields (Connection, Content-Length, Keep-Alive, Transfer-Encoding, and
the other hop-by-hop ones the proxy re-makes: TE, Upgrade, Proxy-Connection) are refused
at load time; Host may be set.  `HeaderEdit` is the reusable part (return-response's
`set-header` children use it too).  `set-query-parameter` has the same shape; repeated
values are repeated parameters (`a=1&a=2`, which `{request.query.a}` reads as "1,2").

`rewrite-uri` replaces the part of the path after the API's path (the runtime maps it onto
the backend's base path): `{name}` in the template is a URL-template parameter (APIM),
anything else in braces is an expression; query parameters of the request that the
operation's URL template does not name are kept unless copy-unmatched-params is false
(APIM's example: `/get?a=b&c=d` on operation `/get?a={b}` rewritten to `/put` is
`/put?c=d`).  Characters that cannot be in a path are percent-encoded; a rewritten path
with a dot segment is refused (it could climb out of the backend's base path).

The body policies edit the buffered body: they yield a body read first when it is not in
(up to `DEFAULT_BODY_LIMIT`), then set the new body, which drops Content-Length (the
runtime frames it anew).  `find-and-replace` leaves a content-coded body (gzip...) alone.
"""

from __future__ import annotations

import re
from functools import lru_cache
from http import HTTPStatus
from operator import itemgetter
from typing import Any, Optional
from urllib.parse import quote, unquote_plus

from ..contract import Context, Headers, Policy, PolicyError, Site
from ..registry import register
from ._spec import (DEFAULT_BODY_LIMIT, Spec, header_name, header_value, identity_encoded,
                    is_token, response_view, set_body, with_bodies, with_body)

_first = itemgetter(0)   # a field's name

__all__ = ["SEPARATE_FIELDS", "FRAMING_FIELDS", "HeaderEdit", "SetHeader",
           "SetQueryParameter", "RewriteUri", "SetMethod", "SetStatus", "SetBody",
           "FindAndReplace"]

SEPARATE_FIELDS = frozenset({
    b"user-agent", b"www-authenticate", b"proxy-authenticate", b"cookie", b"set-cookie",
    b"warning", b"date", b"expires", b"if-modified-since", b"if-unmodified-since",
    b"last-modified", b"retry-after"})
FRAMING_FIELDS = frozenset({b"connection", b"content-length", b"keep-alive",
                            b"transfer-encoding", b"te", b"upgrade", b"proxy-connection"})
ACTIONS = ("override", "skip", "append", "delete")
_REQUEST_SIDE = ("inbound", "backend")


def _reads(templates: list) -> tuple[bool, bool]:
    return (any(getattr(t, "reads_request_body", False) for t in templates),
            any(getattr(t, "reads_response_body", False) for t in templates))


def _values(s: Spec) -> list:
    """The `value` children compiled as templates (None entries dropped)."""
    out = []
    for i, v in enumerate(s.items("value")):
        t = s.template(f"value[{i}]", value=v)
        if t is not None:
            out.append(t)
    return out


def _constant(templates: list) -> Optional[list[str]]:
    texts = [t.constant for t in templates]
    return None if any(t is None for t in texts) else texts


class HeaderEdit:
    """One `set-header` body ({name, exists-action, value: [...]}), compiled; errors are
    reported under `prefix` (e.g. "set-header[0]" inside return-response)."""

    __slots__ = ("header", "key", "action", "templates", "_name", "_const", "_fields",
                 "reads_request_body", "reads_response_body")

    def __init__(self, body: Any, site: Site, prefix: str = "") -> None:
        s = Spec(body, site, ("name", "exists-action", "value"), prefix=prefix)
        self.header = s.text("name", required=True) or ""
        self.action = s.choice("exists-action", ACTIONS, "override") or "override"
        self._name = None
        self.key = b""
        if "{" in self.header:                       # APIM allows a name expression
            self._name = s.template("name")
        elif not is_token(self.header):
            if self.header:
                s.error(f"not a header name: {self.header!r}", "name")
        elif header_name(self.header) in FRAMING_FIELDS:
            s.error(f"{self.header} is a framing header and cannot be set or removed",
                    "name")
        else:
            self.key = header_name(self.header)
        self.templates = _values(s)
        self.reads_request_body, self.reads_response_body = _reads(
            self.templates + ([self._name] if self._name else []))
        self._const: Optional[list[bytes]] = None
        texts = _constant(self.templates)
        if texts is not None:
            try:
                self._const = [header_value(t) for t in texts]
            except PolicyError as e:
                s.error(e.message.replace("The header value", "the value"), "value")
                self._const = []
        # The common case, override with constant values, is one list rebuild per request.
        self._fields: Optional[list[tuple[bytes, bytes]]] = None
        if self._const is not None and self.key and self.action == "override":
            values = self._const if self.key in SEPARATE_FIELDS else [b",".join(self._const)]
            self._fields = [(self.key, v) for v in values]

    def _key(self, ctx: Context) -> bytes:
        if self._name is None:
            return self.key
        text = self._name.render(ctx).strip()
        key = text.lower().encode("latin-1", "replace")
        if not is_token(text) or key in FRAMING_FIELDS:
            raise PolicyError(500, "ExpressionValueEvaluationFailure",
                              f"set-header: {text!r} is not a header name that can be set.")
        return key

    def apply(self, headers: Headers, ctx: Context) -> None:
        if self._fields is not None:
            key = self.key
            headers.items = [h for h in headers.items if h[0] != key] + self._fields
            return
        key = self._key(ctx)
        if not key:
            return
        action = self.action
        if action == "delete":
            headers.remove(key)
            return
        if action != "override" and key in headers:
            if action == "skip":
                return
            values = self._render(ctx)                  # append to what is there
            if key in SEPARATE_FIELDS:
                for v in values:
                    headers.add(key, v)
            else:
                headers.set(key, [b",".join(headers.get_all(key) + values)])
            return
        values = self._render(ctx)
        fields = [(key, v) for v in values] if key in SEPARATE_FIELDS else \
            [(key, b",".join(values))]
        headers.items = [h for h in headers.items if h[0] != key] + fields

    def _render(self, ctx: Context) -> list[bytes]:
        if self._const is not None:
            return self._const
        return [header_value(t.render(ctx)) for t in self.templates]


@register
class SetHeader(Policy):
    """`set-header: {name, exists-action: override | skip | append | delete, value: [...]}`."""

    name = "set-header"

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        self.edit = HeaderEdit(spec, site)
        self._request = site.section in _REQUEST_SIDE
        self.reads_request_body = self.edit.reads_request_body
        self.reads_response_body = self.edit.reads_response_body
        self._fields = self.edit._fields
        if self._fields is not None:   # override with constants: one list rebuild, no calls
            self._key = self.edit.key
            self.apply = self._set_request if self._request else self._set_response

    def _set_request(self, ctx: Context) -> None:
        headers, key = ctx.request.headers, self._key
        items = headers.items   # (the field is rarely there already: a C scan first)
        headers.items = ([h for h in items if h[0] != key] if key in map(_first, items)
                         else items) + self._fields

    def _set_response(self, ctx: Context) -> None:
        headers, key = (ctx.response or response_view(ctx)).headers, self._key
        items = headers.items
        headers.items = ([h for h in items if h[0] != key] if key in map(_first, items)
                         else items) + self._fields

    def _work(self, ctx: Context) -> None:
        view = ctx.request if self._request else response_view(ctx)
        self.edit.apply(view.headers, ctx)

    def apply(self, ctx: Context) -> Any:
        if self.reads_request_body or self.reads_response_body:
            return with_bodies(ctx, self.reads_request_body, self.reads_response_body,
                               DEFAULT_BODY_LIMIT, lambda: self._work(ctx))
        self._work(ctx)
        return None


# --- the query and the URL -------------------------------------------------------------------

def _query_pairs(query: str) -> list[tuple[str, str]]:
    """(raw "name=value" piece, decoded name) for each parameter, order kept."""
    out = []
    for piece in query.split("&"):
        if piece:
            name = piece.partition("=")[0]
            out.append((piece, unquote_plus(name) if "%" in name or "+" in name else name))
    return out


def _encode_pair(name: str, value: str) -> str:
    return f"{quote(name, safe='')}={quote(value, safe='')}"


@register
class SetQueryParameter(Policy):
    """`set-query-parameter: {name, exists-action, value: [...]}` (inbound, backend)."""

    name = "set-query-parameter"
    sections = frozenset(_REQUEST_SIDE)

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        s = Spec(spec, site, ("name", "exists-action", "value"))
        self.param = s.text("name", required=True) or ""
        if s.has("name") and not self.param:
            s.error("must not be empty", "name")
        self.action = s.choice("exists-action", ACTIONS, "override") or "override"
        self.templates = _values(s)
        if self.action != "delete" and not s.items("value"):
            s.error("at least one value is required (exists-action delete takes none)",
                    "value")
        texts = _constant(self.templates)
        self._const = None if texts is None else [_encode_pair(self.param, t) for t in texts]
        self.reads_request_body, self.reads_response_body = _reads(self.templates)

    def apply(self, ctx: Context) -> None:
        req = ctx.request
        pairs = _query_pairs(req.query)
        exists = any(n == self.param for _, n in pairs)
        if self.action == "delete" or (exists and self.action == "override"):
            pairs = [p for p in pairs if p[1] != self.param]
        elif exists and self.action == "skip":
            return None
        new = self._const if self._const is not None else [
            _encode_pair(self.param, t.render(ctx)) for t in self.templates]
        pieces = [raw for raw, _ in pairs]
        if self.action != "delete":
            pieces.extend(new)
        req.query = "&".join(pieces)
        return None


_PARAM = re.compile(r"(?<!\{)\{\*?([A-Za-z_][A-Za-z0-9_\-]*)\}(?!\})")
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"
_DOT_SEGMENTS = {".", "..", "%2e", "%2e%2e", ".%2e", "%2e."}
_PATH_OK = re.compile(r"[A-Za-z0-9/%:@!$&'()*+,;=\-._~]*")


@lru_cache(maxsize=4096)
def template_query_names(url_template: str) -> frozenset[str]:
    """The query parameter names an operation's URL template binds (`/get?a={b}` -> a)."""
    _, _, query = url_template.partition("?")
    return frozenset(unquote_plus(p.partition("=")[0]) for p in query.split("&") if p)


@register
class RewriteUri(Policy):
    """`rewrite-uri: {template, copy-unmatched-params}` (or the template alone)."""

    name = "rewrite-uri"
    sections = frozenset({"inbound"})

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        s = Spec(spec, site, ("template", "copy-unmatched-params"), scalar="template")
        self.copy = s.flag("copy-unmatched-params", True)
        text = s.text("template", required=True)
        self.template = None
        if text is not None:
            if not text.strip():
                s.error("must not be empty", "template")
            else:
                # {id} names a URL-template parameter; other braces are expressions.
                self.template = s.template(
                    "template", value=_PARAM.sub(r"{request.params.\1}", text))
        self.reads_request_body, self.reads_response_body = _reads(
            [self.template] if self.template else [])

    def apply(self, ctx: Context) -> None:
        if self.template is None:
            return None
        req = ctx.request
        url = self.template.render(ctx).strip()
        path, _, query = url.partition("?")
        if not path.startswith("/"):
            path = "/" + path
        if not _PATH_OK.fullmatch(path):
            path = quote(path, safe=_PATH_SAFE)
        if ("/." in path or "%2" in path) and \
                any(seg.lower() in _DOT_SEGMENTS for seg in path.split("/")):
            raise PolicyError(500, "ExpressionValueEvaluationFailure",
                              "rewrite-uri: the rewritten path has a dot segment.")
        if query and not _PATH_OK.fullmatch(query.replace("?", "")):
            query = quote(query, safe=_QUERY_SAFE)
        pieces = [p for p in query.split("&") if p]
        if self.copy and req.query:
            bound = template_query_names(getattr(ctx.operation, "url_template", "") or "")
            taken = {unquote_plus(p.partition("=")[0]) for p in pieces}
            pieces.extend(raw for raw, name in _query_pairs(req.query)
                          if name not in bound and name not in taken)
        req.path = (getattr(ctx.api, "path", "") or "") + path
        req.query = "&".join(pieces)
        return None


@register
class SetMethod(Policy):
    """`set-method: POST` (APIM: inbound, on-error)."""

    name = "set-method"
    sections = frozenset({"inbound", "on-error"})

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        s = Spec(spec, site, ("method",), scalar="method")
        self.template = s.template("method", required=True)
        self.method: Optional[str] = None
        if self.template is not None and self.template.constant is not None:
            self.method = self.template.constant.strip().upper()
            if not is_token(self.method):
                s.error(f"not a method name: {self.template.constant!r}", "method")

    def apply(self, ctx: Context) -> None:
        if self.method is not None:
            ctx.request.method = self.method
        elif self.template is not None:
            m = self.template.render(ctx).strip().upper()
            if not is_token(m):
                raise PolicyError(500, "ExpressionValueEvaluationFailure",
                                  f"set-method: {m!r} is not a method name.")
            ctx.request.method = m
        return None


@register
class SetStatus(Policy):
    """`set-status: {code, reason}` on the response (the reason defaults to the standard
    phrase)."""

    name = "set-status"

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        s = Spec(spec, site, ("code", "reason"), scalar="code")
        raw = s.raw("code")
        self.code: Optional[int] = None
        self.code_template = None
        if isinstance(raw, str) and "{" in raw:
            self.code_template = s.template("code")
        else:
            self.code = s.integer("code", 200, 100, 599, required=True)
        self.reason = s.template("reason")

    def apply(self, ctx: Context) -> None:
        code = self.code
        if code is None:
            text = self.code_template.render(ctx).strip() if self.code_template else ""
            if not (text.isdigit() and 100 <= int(text) <= 599):
                raise PolicyError(500, "ExpressionValueEvaluationFailure",
                                  f"set-status: {text!r} is not a status code.")
            code = int(text)
        resp = response_view(ctx)
        resp.status = code
        if self.reason is not None:
            reason = self.reason.render(ctx)
            header_value(reason, "status reason")        # no CR/LF in the status line
            resp.reason = reason
        else:
            try:
                resp.reason = HTTPStatus(code).phrase
            except ValueError:
                resp.reason = ""
        return None


# --- bodies ------------------------------------------------------------------------------------

@register
class SetBody(Policy):
    """`set-body: "text with {expressions}"` (or `{value: ...}`): the request's body in
    inbound and backend, the response's in outbound."""

    name = "set-body"
    sections = frozenset({"inbound", "backend", "outbound"})

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        s = Spec(spec, site, ("value", "template", "xsi-nil"), scalar="value")
        if s.has("template"):
            s.error("liquid templates are not supported; write the body as a template "
                    "with {expressions}", "template")
        if s.has("xsi-nil"):
            s.error("not supported (it applies to liquid templates)", "xsi-nil")
        self.template = s.template("value", required=True)
        self._const = None
        if self.template is not None and self.template.constant is not None:
            self._const = self.template.constant.encode("utf-8")
        self._request = site.section in _REQUEST_SIDE
        self.reads_request_body, self.reads_response_body = _reads(
            [self.template] if self.template else [])

    def _work(self, ctx: Context) -> None:
        if self.template is None:
            return None
        body = self._const if self._const is not None else \
            self.template.render(ctx).encode("utf-8")
        set_body(ctx.request if self._request else response_view(ctx), body)
        return None

    def apply(self, ctx: Context) -> Any:
        if self.reads_request_body or self.reads_response_body:
            return with_bodies(ctx, self.reads_request_body, self.reads_response_body,
                               DEFAULT_BODY_LIMIT, lambda: self._work(ctx))
        return self._work(ctx)


@register
class FindAndReplace(Policy):
    """`find-and-replace: {from, to}`: every occurrence in the body (request in inbound and
    backend, response in outbound and on-error)."""

    name = "find-and-replace"

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        s = Spec(spec, site, ("from", "to"))
        self.find = s.template("from", required=True)
        self.to = None
        if not s.has("to"):
            s.error("required", "to")
        else:                           # `to:` left empty in YAML is null: replace by ""
            to = s.raw("to")
            self.to = s.template("to", value="" if to is None else to)
        if self.find is not None and self.find.constant == "":
            s.error("must not be empty", "from")
        self._request = site.section in _REQUEST_SIDE
        self.reads_request_body = self._request
        self.reads_response_body = not self._request

    def _work(self, view: Any, ctx: Context) -> None:
        if self.find is None or self.to is None or not identity_encoded(view.headers):
            return None
        find = self.find.render(ctx).encode("utf-8")
        if find and find in view.body:
            set_body(view, view.body.replace(find, self.to.render(ctx).encode("utf-8")),
                     coded=True)
        return None

    def apply(self, ctx: Context) -> Any:
        return with_body(ctx, self._request, DEFAULT_BODY_LIMIT,
                         lambda view: self._work(view, ctx))
