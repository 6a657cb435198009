"""Leaf converters of the configuration: a plain value in, a checked value out, or
`_Invalid(message)`.  `_schema.py` attaches them to fields (pydantic calls them and keeps the
exception, `_errors.py` turns it into "path: message"), so they hold the formats pydantic
has no type for: durations, sizes, addresses, URLs, URL templates.

Messages name the kind of a wrong value ("got bool"), and repeat a value only when it is a
string in the wrong format ("invalid duration 'soon'"), never for a secret.
"""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Any, Callable, NamedTuple
from urllib.parse import urlsplit


class _Invalid(ValueError):
    """A bad value.  `at`: where, below the field being validated (a model's check of one
    of its fields), as a pydantic location tuple."""

    def __init__(self, message: str, at: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.at = at


def _kind(v: object) -> str:
    if v is None:
        return "null"
    names = {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "mapping"}
    return names.get(type(v), type(v).__name__)


# Seconds as a number, or units largest first, each at most once: "1h", "1m30s", "500ms",
# "30 s", "1m 30s" (spaces between a number and its unit, as sizes allow "10 MB").
_NUM = r"(\d+(?:\.\d+)?)"
_DURATION_RE = re.compile(
    rf"{_NUM}|(?:{_NUM}\s*h\s*)?(?:{_NUM}\s*m\s*)?(?:{_NUM}\s*s\s*)?(?:{_NUM}\s*ms)?")
_DURATION_SCALE = (1.0, 3600.0, 60.0, 1.0, 0.001)
DURATION_PATTERN = r"^\s*(?=\d)(\d+(\.\d+)?|(\d+(\.\d+)?\s*h\s*)?(\d+(\.\d+)?\s*m\s*)?(\d+(\.\d+)?\s*s\s*)?(\d+(\.\d+)?\s*ms)?)\s*$"


def _duration(v: object) -> float:
    if type(v) in (int, float):
        secs = float(v)  # type: ignore[arg-type]
    elif isinstance(v, str):
        m = _DURATION_RE.fullmatch(v.strip())
        if m is None or not any(m.groups()):
            raise _Invalid(f"invalid duration {v!r} (e.g. 30, 2.5, '30s', '500ms', '1m30s')")
        secs = sum(float(g) * k for g, k in zip(m.groups(), _DURATION_SCALE) if g)
    else:
        raise _Invalid(f"expected a duration (seconds, or e.g. '30s', '500ms'), got {_kind(v)}")
    if not math.isfinite(secs) or secs < 0:
        raise _Invalid(f"expected a non-negative duration, got {v!r}")
    return secs


def _positive_duration(v: object) -> float:
    secs = _duration(v)
    if secs == 0:
        raise _Invalid("expected a duration > 0")
    return secs


# SI prefixes are powers of 1000, IEC ones powers of 1024 (no guessing at a bare "k").
_SIZE_UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3,
               "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
_SIZE_RE = re.compile(r"\s*(\d+)\s*([A-Za-z]*)\s*")
SIZE_PATTERN = r"^\s*\d+\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$"


def _size(v: object) -> int:
    if type(v) is int:
        n = v
    elif isinstance(v, str) and (m := _SIZE_RE.fullmatch(v)) and m[2] in _SIZE_UNITS:
        n = int(m[1]) * _SIZE_UNITS[m[2]]
    else:
        got = repr(v) if isinstance(v, str) else _kind(v)
        raise _Invalid(f"expected a size (bytes, or e.g. '64KiB', '1MiB', '8KB'), got {got}")
    if n < 0:
        raise _Invalid(f"expected a non-negative size, got {v!r}")
    return n


def _bounded(conv: Callable[[object], int], lo: int, hi: int) -> Callable[[object], int]:
    def check(v: object) -> int:
        n = conv(v)
        if not lo <= n <= hi:
            raise _Invalid(f"expected {lo}..{hi}, got {n}")
        return n
    return check


def _int(v: object) -> int:
    if type(v) is not int:        # bool is an int subclass; a bool here is a mistake
        raise _Invalid(f"expected int, got {_kind(v)}")
    return v


def _string(v: object) -> str:
    if not isinstance(v, str):
        raise _Invalid(f"expected string, got {_kind(v)}")
    if not v:
        raise _Invalid("expected a non-empty string")
    return v


def _http_version(v: object) -> str:
    if type(v) is int:            # YAML reads `http-version: 2` as an int
        v = str(v)
    if v not in ("1", "2", "2or1"):
        got = repr(v) if isinstance(v, str) else _kind(v)
        raise _Invalid(f"expected one of '1', '2', '2or1', got {got}")
    return v  # type: ignore[return-value]


def _protocols(allowed: tuple[str, ...]) -> Callable[[object], tuple[str, ...]]:
    def conv(v: object) -> tuple[str, ...]:
        if not isinstance(v, list) or not v:
            raise _Invalid(f"expected a non-empty list of: {', '.join(allowed)}")
        for p in v:
            if p not in allowed:
                what = repr(p) if isinstance(p, str) else _kind(p)
                raise _Invalid(f"unknown protocol {what} (expected some of: {', '.join(allowed)})")
        if len(set(v)) != len(v):
            raise _Invalid("protocol listed twice")
        return tuple(v)
    return conv


_LABEL = r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?"
_HOSTNAME_RE = re.compile(rf"{_LABEL}(\.{_LABEL})*\.?")


def _hostname(v: object, wildcard: bool = False) -> str:
    """A DNS name or IP literal, lower-cased; IPv6 without brackets."""
    h = _string(v).lower()
    bracketed = h.startswith("[") and h.endswith("]")
    if bracketed:
        h = h[1:-1]
    if ":" in h or bracketed:
        try:
            return str(ipaddress.IPv6Address(h))
        except ValueError:
            raise _Invalid(f"invalid host {v!r}") from None
    name = h[2:] if wildcard and h.startswith("*.") else h
    if not _HOSTNAME_RE.fullmatch(name):
        raise _Invalid(f"invalid host {v!r}" + (" (a wildcard is '*.suffix')" if "*" in h else ""))
    return h.rstrip(".")


class Bound(NamedTuple):
    bind: str
    host: str
    port: int


def _bind(v: object) -> Bound:
    """'host:port', '[v6]:port' -> (bind, host, port)."""
    s = _string(v)
    host, sep, port = s.rpartition(":")
    if not sep or not host or not port.isdigit() or (":" in host and not host.startswith("[")):
        raise _Invalid(f"expected 'host:port' (IPv6 as '[::1]:8080'), got {s!r}")
    if int(port) > 65535:
        raise _Invalid(f"port out of range: {port}")
    return Bound(s, _hostname(host), int(port))


class Url(NamedTuple):
    url: str
    scheme: str
    host: str
    port: int
    base_path: str


def _backend_url(v: object) -> Url:
    s = _string(v)
    if not s.isascii() or any(ch <= " " or ch == "\x7f" for ch in s):
        raise _Invalid(f"invalid URL {s!r}: whitespace, control or non-ASCII characters")
    try:
        u = urlsplit(s)
        hostname = u.hostname
    except ValueError as e:                      # "http://[::1": unbalanced brackets
        raise _Invalid(f"invalid URL {s!r}: {e}") from None
    try:
        port = u.port
    except ValueError:
        raise _Invalid(f"invalid port in URL {s!r}") from None
    if u.scheme not in ("http", "https"):
        raise _Invalid(f"expected an http:// or https:// URL, got {s!r}")
    if not hostname:
        raise _Invalid(f"URL without a host: {s!r}")
    if u.username is not None or u.password is not None:
        raise _Invalid("credentials in the URL are not allowed (use a policy to add them)")
    if u.query or u.fragment or "?" in s or "#" in s:
        raise _Invalid(f"URL must not have a query or fragment: {s!r}")
    if port == 0:
        raise _Invalid(f"invalid port in URL {s!r}")
    host = _hostname(hostname)
    return Url(s, u.scheme, host, port or (443 if u.scheme == "https" else 80), u.path.rstrip("/"))


def _api_path(v: object) -> str:
    if not isinstance(v, str):
        raise _Invalid(f"expected string, got {_kind(v)}")
    if v == "/":
        return ""
    if v and not v.startswith("/"):
        raise _Invalid(f"expected '' or a path starting with '/', got {v!r}")
    if v.endswith("/"):
        raise _Invalid(f"no trailing '/' please: {v!r}")
    if "?" in v or "#" in v:
        raise _Invalid(f"a path has no query or fragment: {v!r}")
    if not v.isascii() or any(ch <= " " or ch == "\x7f" for ch in v):
        raise _Invalid(f"invalid characters in {v!r} (percent-encode them)")
    if any(seg in (".", "..") for seg in v.split("/")[1:]):
        raise _Invalid(f"dot segments are not allowed: {v!r}")
    return v


# RFC 9110 §5.6.2 token: header names and methods.
TOKEN_PATTERN = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$"
_TOKEN_RE = re.compile(TOKEN_PATTERN)


def _token(what: str) -> Callable[[object], str]:
    def conv(v: object) -> str:
        s = _string(v)
        if not _TOKEN_RE.match(s):
            raise _Invalid(f"invalid {what} {s!r} (letters, digits and !#$%&'*+-.^_`|~ only)")
        return s
    return conv


def _method(v: object) -> str:
    s = _string(v)
    if s != "*" and not _TOKEN_RE.match(s):
        raise _Invalid(f"expected an HTTP method (e.g. GET) or '*', got {s!r}")
    return s.upper()


_PARAM_RE = re.compile(r"\*?[A-Za-z0-9_][A-Za-z0-9_.-]*")


def _url_template(v: object) -> str:
    """An operation's template: "/{id}", "/files/{*path}", "/get?a={b}"."""
    s = _string(v)
    if not s.startswith("/"):
        raise _Invalid(f"a url-template starts with '/', got {s!r}")
    if not s.isascii() or any(ch <= " " or ch == "\x7f" for ch in s) or "#" in s:
        raise _Invalid(f"invalid characters in {s!r} (percent-encode them; no fragment)")
    path, _, query = s.partition("?")
    names: set[str] = set()
    segments = path.split("/")
    for part, pieces in (("path", segments), ("query", [query])):
        for i, piece in enumerate(pieces):
            for name in _template_params(s, piece):
                if name.startswith("*"):
                    if part == "query" or piece != "{" + name + "}" or i != len(pieces) - 1:
                        raise _Invalid(f"{{{name}}} must be the whole last path segment: {s!r}")
                    name = name[1:]
                if name in names:
                    raise _Invalid(f"parameter {name!r} appears twice in {s!r}")
                names.add(name)
    return s


def _template_params(template: str, piece: str) -> list[str]:
    out, depth_open = [], -1
    for i, ch in enumerate(piece):
        if ch == "{":
            if depth_open >= 0:
                raise _Invalid(f"nested '{{' in {template!r}")
            depth_open = i
        elif ch == "}":
            if depth_open < 0:
                raise _Invalid(f"'}}' without '{{' in {template!r}")
            name = piece[depth_open + 1:i]
            if not _PARAM_RE.fullmatch(name):
                raise _Invalid(f"invalid parameter name {{{name}}} in {template!r}")
            out.append(name)
            depth_open = -1
    if depth_open >= 0:
        raise _Invalid(f"unclosed '{{' in {template!r}")
    return out


def _secret_key(v: object) -> str:
    """A subscription key: printable ASCII without spaces (it travels in a header).
    The messages never repeat it."""
    if not isinstance(v, str):
        raise _Invalid(f"expected string, got {_kind(v)}")
    if not v or not v.isascii() or any(ch <= " " or ch == "\x7f" for ch in v):
        raise _Invalid("a key is non-empty printable ASCII without spaces")
    return v


def _policy_entry(v: object) -> Any:
    """`base`, or a one-key mapping {policy-name: body} (the body is checked by the pipeline)."""
    if v == "base":
        return v
    if isinstance(v, str):
        raise _Invalid(f"expected 'base' or a one-key mapping {{policy-name: attributes}}, "
                       f"got {v!r} (a policy without attributes is written `{v}: {{}}`)")
    if not isinstance(v, dict):
        raise _Invalid(f"expected 'base' or a one-key mapping {{policy-name: attributes}}, got {_kind(v)}")
    if len(v) != 1:
        raise _Invalid(f"expected one policy per list entry, got {len(v)} keys"
                       + (f" ({', '.join(map(str, v))})" if v else ""))
    (name, _), = v.items()
    if not isinstance(name, str) or not name:
        raise _Invalid(f"a policy name is a non-empty string, got {_kind(name)}")
    return v
