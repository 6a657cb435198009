"""Flow policies: `choose`, `return-response`, `set-variable`, `set-backend-service`,
`forward-request` and `send-request` (APIM's names, attributes and defaults;
/work/shared/APIM-REFERENCE.md "Transformation and flow").

Strategy.  Everything fixed by the config is decided at compile time: conditions and
templates parsed, header names lowered, a constant answer or ForwardRequest command built
once.  `choose` runs its chosen branch through the engine's `run_steps`, so a branch of
plain policies stays a plain call and a branch with a command becomes a generator only
then; a condition that fails to evaluate is reported at `choose[n]\\when[m]` (APIM's
path).  `forward-request` and `send-request` are generators: they yield one command and
read its result (ctx.response filled by the runtime / a ServiceResponse).

Headers in `return-response` and `send-request` (`set-header: [{name, exists-action,
value: [...]}]`) are set-header's own `HeaderEdit`s (transform.py), so they follow its
rules exactly: actions, comma joining, framing fields refused at load time.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Optional
from urllib.parse import urlsplit

from ..contract import (
    Answer, Context, ForwardRequest, Headers, Policy, PolicyError, ResponseView, SendRequest,
    ServiceResponse, Site,
)
from ..engine import run_steps
from ..expressions import evaluation_error
from ..registry import register
from ._spec import Spec, describe, is_token
from .transform import HeaderEdit

__all__ = ["Choose", "ReturnResponse", "SetVariable", "SetBackendService", "ForwardRequestPolicy",
           "SendRequestPolicy", "HeaderOps", "parse_seconds"]

_ALL = frozenset({"inbound", "backend", "outbound", "on-error"})


def parse_seconds(value: Any) -> Optional[float]:
    """APIM's seconds (`60`, `"60"`) or a duration (`"500ms"`, `"30s"`, `"2m"`); None if bad."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value > 0 else None
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", value)
        if m:
            n = float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600,
                                     None: 1}[m.group(2)]
            return n if n > 0 else None
    return None


def _seconds(s: Spec, key: str, default: Optional[float]) -> Optional[float]:
    if not s.has(key):
        return default
    n = parse_seconds(s.raw(key))
    if n is None:
        s.site.error(f"expected a positive number of seconds or a duration (30s, 500ms), "
                     f"got {s.raw(key)!r}", key)
        return default
    return n


class HeaderOps:
    """`set-header` children of return-response / send-request (a list, or one mapping),
    each one transform's `HeaderEdit`, applied in order to a Headers."""

    def __init__(self, spec: Any, site: Site, key: str = "set-header") -> None:
        entries = spec if isinstance(spec, (list, tuple)) else () if spec is None else (spec,)
        self.ops = [HeaderEdit(entry, site, prefix=f"{key}[{i}]")
                    for i, entry in enumerate(entries)]
        self.reads_request_body = any(op.reads_request_body for op in self.ops)
        self.reads_response_body = any(op.reads_response_body for op in self.ops)

    def apply(self, headers: Headers, ctx: Context) -> None:
        for op in self.ops:
            op.apply(headers, ctx)


# --- choose -----------------------------------------------------------------------------------

@register
class Choose(Policy):
    """`choose: {when: [{condition, policies: [...]}], otherwise: [...]}`: the first `when`
    whose condition holds runs its policies; none: `otherwise` (if any)."""

    name = "choose"
    sections = _ALL

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        s = Spec(spec, site, ("when", "otherwise"))
        self.branches: list[tuple[Any, tuple]] = []
        whens = s.items("when")
        if not whens:
            site.error("required (a list of {condition, policies})", "when")
        for i, w in enumerate(whens):
            if not isinstance(w, Mapping):
                site.error(f"expected a mapping of condition, policies, got {describe(w)}",
                           f"when[{i}]")
                continue
            for k in w:
                if k not in ("condition", "policies"):
                    site.error("unknown attribute (expected one of condition, policies)",
                               f"when[{i}].{k}")
            if "condition" not in w:
                site.error("required", f"when[{i}].condition")
                continue
            cond = site.condition(w["condition"], f"when[{i}].condition")
            steps = site.nested(w.get("policies") or (), f"when[{i}].policies")
            if cond is not None:
                self.branches.append((cond, steps))
        other = s.raw("otherwise")
        if isinstance(other, Mapping):       # `otherwise: {policies: [...]}` reads the same
            other = other.get("policies")
        self.otherwise = site.nested(other or (), "otherwise")
        parts = [c for c, _ in self.branches] + [st.policy for _, steps in self.branches
                                                 for st in steps] + \
            [st.policy for st in self.otherwise]
        self.reads_request_body = any(p.reads_request_body for p in parts)
        self.reads_response_body = any(p.reads_response_body for p in parts)

    def apply(self, ctx: Context) -> Any:
        for i, (cond, steps) in enumerate(self.branches):
            try:
                hit = cond.test(ctx)
            except Exception as e:
                setattr(e, "_pipeline_subpath", f"when[{i + 1}]")
                raise
            if hit:
                return run_steps(steps, ctx) if steps else None
        return run_steps(self.otherwise, ctx) if self.otherwise else None


# --- return-response --------------------------------------------------------------------------

def _status(s: Spec, key: str) -> tuple[int, str]:
    """`set-status: {code, reason}` (or `set-status: 201`)."""
    raw = s.raw(key)
    if raw is None:
        return 200, ""
    sub = Spec(raw, s.site, ("code", "reason"), scalar="code", prefix=key)
    code = sub.integer("code", 200, 100, 599, required=True) or 200
    return code, sub.text("reason", "") or ""


@register
class ReturnResponse(Policy):
    """`return-response: {response-variable-name, set-status: {code, reason}, set-header:
    [...], set-body}`: answer now (default 200, no body); outbound does not run."""

    name = "return-response"
    sections = _ALL

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        s = Spec(spec, site, ("response-variable-name", "set-status", "set-header", "set-body"))
        self.variable = s.text("response-variable-name")
        self.has_status = s.has("set-status")
        self.status, self.reason = _status(s, "set-status")
        self.headers = HeaderOps(s.raw("set-header"), site)
        self.body = s.template("set-body")
        parts = [self.headers] + ([self.body] if self.body is not None else [])
        self.reads_request_body = any(p.reads_request_body for p in parts)
        self.reads_response_body = any(p.reads_response_body for p in parts)
        self.constant: Optional[Answer] = None
        if self.variable is None and not self.headers.ops and (
                self.body is None or self.body.constant is not None):
            body = b"" if self.body is None else self.body.constant.encode("utf-8")
            self.constant = Answer(self.status, (), body, self.reason)

    def apply(self, ctx: Context) -> Answer:
        if self.constant is not None:
            return self.constant
        status, reason, headers, body = self.status, self.reason, Headers(), b""
        if self.variable is not None:
            base = ctx.variables.get(self.variable)
            if not isinstance(base, (ServiceResponse, ResponseView, Answer)):
                raise evaluation_error(f"Variable {self.variable} does not hold a response.")
            if not self.has_status:
                status, reason = base.status, base.reason
            items = base.headers.items if isinstance(base, ResponseView) else base.headers
            headers = Headers([h for h in items if h[0] not in (b"content-length",
                                                                b"transfer-encoding")])
            body = base.body or b""
        self.headers.apply(headers, ctx)
        if self.body is not None:
            body = self.body.render(ctx).encode("utf-8")
        return Answer(status, tuple(headers.items), body, reason)


# --- set-variable, set-backend-service --------------------------------------------------------

@register
class SetVariable(Policy):
    """`set-variable: {name, value}`: a string, unless the value is one expression alone
    (`{response.status}` stays an int, a stored response stays one)."""

    name = "set-variable"
    sections = _ALL

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        s = Spec(spec, site, ("name", "value"))
        self.var = s.text("name", required=True) or ""
        self.value = s.template("value", required=True)
        if self.value is not None:
            self.reads_request_body = self.value.reads_request_body
            self.reads_response_body = self.value.reads_response_body

    def apply(self, ctx: Context) -> None:
        if self.value is not None:
            ctx.variables[self.var] = self.value.value(ctx)


def _http_url(text: str) -> bool:
    try:
        u = urlsplit(text)
        u.port   # raises on a bad port
    except ValueError:
        return False
    return u.scheme in ("http", "https") and bool(u.hostname)


@register
class SetBackendService(Policy):
    """`set-backend-service: {base-url}` or `{backend-id}` (a name under `backends`)."""

    name = "set-backend-service"
    sections = frozenset({"inbound", "backend"})

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        s = Spec(spec, site, ("base-url", "backend-id"))
        self.url = s.template("base-url")
        self.backend_id = s.text("backend-id")
        if s.has("base-url") == s.has("backend-id"):
            site.error("expected exactly one of base-url, backend-id")
        if self.backend_id is not None and self.backend_id not in site.backends:
            site.error(f"unknown backend {self.backend_id!r} (expected one of "
                       f"{', '.join(sorted(site.backends)) or 'no backends defined'})",
                       "backend-id")
        if self.url is not None and self.url.constant is not None and \
                not _http_url(self.url.constant):
            site.error(f"expected an http:// or https:// URL, got {self.url.constant!r}",
                       "base-url")

    def apply(self, ctx: Context) -> None:
        if self.backend_id is not None:
            ctx.backend_id, ctx.backend_url = self.backend_id, None
            return
        url = self.url.render(ctx)
        if self.url.constant is None and not _http_url(url):
            raise evaluation_error(f"set-backend-service base-url {url!r} is not an http:// "
                                   f"or https:// URL.")
        ctx.backend_url, ctx.backend_id = url, None


# --- forward-request, send-request ------------------------------------------------------------

@register
class ForwardRequestPolicy(Policy):
    """`forward-request: {timeout, http-version, buffer-request-body,
    fail-on-error-status-code}`: hand the request to the backend (backend section only)."""

    name = "forward-request"
    sections = frozenset({"backend"})

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        s = Spec(spec, site, ("timeout", "http-version", "buffer-request-body",
                              "fail-on-error-status-code", "follow-redirects",
                              "buffer-response"))
        version = s.raw("http-version")
        if version is not None and str(version) not in ("1", "2", "2or1"):
            site.error("expected one of 1, 2, 2or1", "http-version")
            version = None
        if s.flag("follow-redirects", False):
            site.error("true is not supported (redirects are relayed to the client)",
                       "follow-redirects")
        s.flag("buffer-response", True)   # accepted: the response head is always read first
        self.fail_on_error = s.flag("fail-on-error-status-code", False)
        self.cmd = ForwardRequest(timeout=_seconds(s, "timeout", None),
                                  http_version=None if version is None else str(version),
                                  buffer_request_body=s.flag("buffer-request-body", False),
                                  fail_on_error_status_code=self.fail_on_error)
        # all that _forward does without the status check (engine.run yields it itself)
        plain = type(self).apply is ForwardRequestPolicy.apply and \
            type(self)._forward is ForwardRequestPolicy._forward
        self.bare_command = self.cmd if plain and not self.fail_on_error else None

    def apply(self, ctx: Context) -> Any:
        return self._forward(ctx)

    def _forward(self, ctx: Context) -> Any:
        yield self.cmd
        if self.fail_on_error and ctx.response is not None and ctx.response.status >= 400:
            status = ctx.response.status
            raise PolicyError(status, "BackendErrorStatusCode",
                              f"The backend answered with status {status}.")
        return None


@register
class SendRequestPolicy(Policy):
    """`send-request: {mode: new|copy, response-variable-name, timeout (60 s),
    ignore-error, set-url, set-method, set-header: [...], set-body}`: call a service; its
    ServiceResponse (or None after an ignored error) goes in the variable."""

    name = "send-request"
    sections = _ALL

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        s = Spec(spec, site, ("mode", "response-variable-name", "timeout", "ignore-error",
                              "set-url", "set-method", "set-header", "set-body"))
        self.copy = s.choice("mode", ("new", "copy"), "new") == "copy"
        self.variable = s.text("response-variable-name")
        self.timeout = _seconds(s, "timeout", 60.0) or 60.0
        self.ignore_error = s.flag("ignore-error", False)
        self.url = s.template("set-url", required=not self.copy)
        self.method = s.text("set-method")
        if self.method is not None and not is_token(self.method):
            site.error(f"not a method: {self.method!r}", "set-method")
        self.headers = HeaderOps(s.raw("set-header"), site)
        self.body = s.template("set-body")
        if self.url is not None and self.url.constant is not None and \
                not _http_url(self.url.constant):
            site.error(f"expected an http:// or https:// URL, got {self.url.constant!r}",
                       "set-url")
        parts = [self.headers] + [p for p in (self.url, self.body) if p is not None]
        self.reads_request_body = self.copy or any(p.reads_request_body for p in parts)
        self.reads_response_body = any(p.reads_response_body for p in parts)

    def _command(self, ctx: Context) -> SendRequest:
        req = ctx.request
        if self.copy:
            url = f"{req.scheme}://{req.host}{req.path}" + (f"?{req.query}" if req.query
                                                           else "")
            headers = Headers([h for h in req.headers.items
                               if h[0] not in (b"host", b"content-length",
                                               b"transfer-encoding", b"connection")])
            method, body = req.method, req.body or b""
        else:
            url, headers, method, body = "", Headers(), "GET", b""
        if self.url is not None:
            url = self.url.render(ctx)
            if self.url.constant is None and not _http_url(url):
                raise evaluation_error(f"send-request URL {url!r} is not an http:// or "
                                       f"https:// URL.")
        if self.method is not None:
            method = self.method.upper()
        self.headers.apply(headers, ctx)
        if self.body is not None:
            body = self.body.render(ctx).encode("utf-8")
        return SendRequest(method=method, url=url, headers=tuple(headers.items), body=body,
                           timeout=self.timeout)

    def apply(self, ctx: Context) -> Any:
        return self._send(ctx)

    def _send(self, ctx: Context) -> Any:
        cmd = self._command(ctx)
        try:
            resp = yield cmd
        except PolicyError:
            if not self.ignore_error:
                raise
            resp = None
        if self.variable is not None:
            ctx.variables[self.variable] = resp
        return None
