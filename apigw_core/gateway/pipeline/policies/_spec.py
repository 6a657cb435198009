"""Reading a policy's config, and the small pieces the body and header policies share.

Strategy.  A policy's body is the raw YAML value (deep-frozen in the real config: read-only
mappings, tuples), so everything here accepts any Mapping / Sequence and never mutates.
`Spec` reads one attribute at a time and records each mistake through `site.error` with
the attribute's key, so the config reports `...set-header.exists-action: expected one of
override, skip, append, delete`, every mistake at once; a bad attribute reads as its
default and compiling goes on.  Unknown keys are errors too (a typo must not be ignored).
Attributes take APIM's spellings and also the strings an XML attribute would carry
("true", "401"), so a policy document translates line by line.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Generator, Iterable, Mapping, Optional, Sequence

from ..contract import (Context, Headers, Outcome, PolicyError, ReadRequestBody,
                        ReadResponseBody, ResponseView, Site)

__all__ = ["DEFAULT_BODY_LIMIT", "Spec", "is_token", "header_name", "header_value",
           "set_body", "identity_encoded", "media_type", "describe", "response_view",
           "with_body", "with_bodies"]

# How much of a body a policy buffers unless it says otherwise; over it the runtime answers
# 413 (request) or 502 (response).
DEFAULT_BODY_LIMIT = 4 << 20

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00\r\n]")
_MISSING = object()


def describe(v: object) -> str:
    """A value's kind, as the config errors name it."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return type(v).__name__
    if isinstance(v, str):
        return "string"
    if isinstance(v, Mapping):
        return "mapping"
    if isinstance(v, Sequence):
        return "list"
    return type(v).__name__


def is_token(text: str) -> bool:
    """RFC 9110 §5.6.2 token (header names, methods)."""
    return _TOKEN.fullmatch(text) is not None


def header_name(text: str) -> bytes:
    return text.lower().encode("ascii")


def header_value(text: str, what: str = "header value") -> bytes:
    """A rendered value as field bytes: latin-1 when it fits, else UTF-8.  CR, LF and NUL
    (from a decoded query parameter, say) would split or end the field: refused."""
    if _BAD_VALUE.search(text):
        raise PolicyError(500, "ExpressionValueEvaluationFailure",
                          f"The {what} contains a control character (CR, LF or NUL).")
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def media_type(headers: Headers) -> str:
    """The Content-Type's media type, lower-case, without parameters ("" when absent)."""
    v = headers.get(b"content-type")
    return "" if v is None else v.split(b";", 1)[0].strip().decode("latin-1").lower()


def identity_encoded(headers: Headers) -> bool:
    """True when the body is not content-coded (gzip...): only then can a policy edit it."""
    v = headers.get(b"content-encoding")
    return v is None or v.strip().lower() in (b"", b"identity")


def set_body(view: Any, body: bytes, *, coded: bool = False) -> None:
    """Give a request/response view a new body.  The runtime frames it anew, so the old
    framing fields go; a body made from text (`coded` False) is no longer gzip or br."""
    view.body = body
    headers = view.headers
    for name in (b"content-length", b"transfer-encoding") + ((b"content-encoding",)
                                                            if not coded else ()):
        if name in headers:
            headers.remove(name)


class Spec:
    """One policy's attributes.  `body` is a mapping, or (when `scalar` names the key it
    stands for) a bare value: `set-method: POST` is `{method: POST}`."""

    def __init__(self, body: Any, site: Site, known: Iterable[str],
                 scalar: Optional[str] = None, prefix: str = "") -> None:
        self.site = site
        self.known = tuple(known)
        self.prefix = prefix      # e.g. "set-header[0]" for a child of return-response
        if body is None:
            body = {}
        elif not isinstance(body, Mapping):
            if scalar is not None and not (isinstance(body, Sequence)
                                           and not isinstance(body, str)):
                body = {scalar: body}
            else:
                self.error(f"expected a mapping of {', '.join(self.known)}, got "
                           f"{describe(body)}")
                body = {}
        self.m: Mapping[str, Any] = body
        for k in body:
            if k not in self.known:
                self.error(f"unknown attribute (expected one of {', '.join(self.known)})",
                           str(k))

    def key(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix and key else (self.prefix or key)

    def error(self, message: str, key: str = "") -> None:
        self.site.error(message, self.key(key))

    def has(self, key: str) -> bool:
        return key in self.m

    def raw(self, key: str, default: Any = None) -> Any:
        return self.m.get(key, default)

    def _get(self, key: str, required: bool) -> Any:
        v = self.m.get(key, _MISSING)
        if v is _MISSING and required:
            self.error("required", key)
        return v

    def text(self, key: str, default: Optional[str] = None, required: bool = False,
             ) -> Optional[str]:
        v = self._get(key, required)
        if v is _MISSING or v is None:
            return default
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (str, int, float)):
            return str(v)
        self.error(f"expected a string, got {describe(v)}", key)
        return default

    def flag(self, key: str, default: bool) -> bool:
        v = self._get(key, False)
        if v is _MISSING:
            return default
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.strip().lower() in ("true", "false"):
            return v.strip().lower() == "true"
        self.error(f"expected true or false, got {v!r}", key)
        return default

    def integer(self, key: str, default: Optional[int], lo: int, hi: int,
                required: bool = False) -> Optional[int]:
        v = self._get(key, required)
        if v is _MISSING:
            return default
        n: Optional[int] = None
        if isinstance(v, int) and not isinstance(v, bool):
            n = v
        elif isinstance(v, str) and v.strip().isdigit():
            n = int(v.strip())
        if n is None or not lo <= n <= hi:
            self.error(f"expected an integer from {lo} to {hi}, got {v!r}", key)
            return default
        return n

    def choice(self, key: str, options: Sequence[str], default: Optional[str] = None,
               required: bool = False) -> Optional[str]:
        v = self._get(key, required)
        if v is _MISSING:
            return default
        if isinstance(v, str) and v in options:
            return v
        self.error(f"expected one of {', '.join(options)}", key)
        return default

    def items(self, key: str) -> tuple:
        """A repeated child: a list, or one value alone; absent: ()."""
        v = self.m.get(key)
        if v is None:
            return ()
        if isinstance(v, Sequence) and not isinstance(v, str):
            return tuple(v)
        return (v,)

    def template(self, key: str, required: bool = False, value: Any = _MISSING) -> Any:
        """The attribute (or `value`) compiled as a template; None when absent or bad."""
        v = self._get(key, required) if value is _MISSING else value
        if v is _MISSING or v is None:
            return None
        return self.site.template(v, self.key(key))


def response_view(ctx: Context) -> ResponseView:
    """The response being built.  APIM's context.Response always exists: in on-error after
    an inbound failure, or in inbound (set-status before return-response), there is none
    yet, so an empty 200 is started for the policies to shape."""
    if ctx.response is None:
        ctx.response = ResponseView(200, "OK", Headers())
    return ctx.response


def with_body(ctx: Context, on_request: bool, limit: int,
              work: Callable[[Any], Outcome]) -> Any:
    """`work(view)` on the request (or response) once its body is in: now when it already
    is, else as a generator that first yields the read.  No response: nothing to do."""
    view = ctx.request if on_request else ctx.response
    if view is None:
        return None
    if view.body is not None:
        return work(view)
    return _read_then(ctx, on_request, limit, lambda: work(view))


def with_bodies(ctx: Context, request: bool, response: bool, limit: int,
                work: Callable[[], Outcome]) -> Any:
    """`work()` once the bodies its templates read are in (a template reading
    `{request.body}` or `{response.body}`)."""
    request = request and ctx.request.body is None
    response = response and ctx.response is not None and ctx.response.body is None
    if not (request or response):
        return work()
    return _reads(ctx, request, response, limit, work)


def _read_then(ctx: Context, on_request: bool, limit: int,
               work: Callable[[], Outcome]) -> Generator[Any, Any, Outcome]:
    return _reads(ctx, on_request, not on_request, limit, work)


def _reads(ctx: Context, request: bool, response: bool, limit: int,
           work: Callable[[], Outcome]) -> Generator[Any, Any, Outcome]:
    if request:
        data = yield ReadRequestBody(limit)
        if ctx.request.body is None:
            ctx.request.body = data
    if response and ctx.response is not None:
        data = yield ReadResponseBody(limit)
        if ctx.response.body is None:
            ctx.response.body = data
    return work()
