"""Leaf converters of the configuration: a plain value in, a checked value out, or
`_Invalid(message)` (config.py adds the field's path).  Kept apart from config.py, which
walks the sections, so each file stays readable."""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Any, Callable

from .paths import ESCAPED_SLASH_ACTIONS


class _Invalid(Exception):
    pass


def _kind(v: object) -> str:
    if v is None:
        return "null"
    names = {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "mapping"}
    return names.get(type(v), type(v).__name__)


# Seconds as a number, or units largest first, each at most once: "1h", "1m30s", "500ms".
_NUM = r"(\d+(?:\.\d+)?)"
_DURATION_RE = re.compile(rf"{_NUM}|(?:{_NUM}h)?(?:{_NUM}m)?(?:{_NUM}s)?(?:{_NUM}ms)?")
_DURATION_SCALE = (1.0, 3600.0, 60.0, 1.0, 0.001)


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


def _size(v: object) -> int:
    if type(v) is int:
        n = v
    elif isinstance(v, str) and (m := _SIZE_RE.fullmatch(v)) and m[2] in _SIZE_UNITS:
        n = int(m[1]) * _SIZE_UNITS[m[2]]
    else:
        raise _Invalid(f"expected a size (bytes, or e.g. '64KiB', '1MiB', '8KB'), got {v!r}")
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


def _bool(v: object) -> bool:
    if type(v) is not bool:
        raise _Invalid(f"expected bool, got {_kind(v)}")
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
        raise _Invalid(f"expected one of '1', '2', '2or1', got {v!r}")
    return v  # type: ignore[return-value]


def _escaped_slashes(v: object) -> str:
    if v not in ESCAPED_SLASH_ACTIONS:
        raise _Invalid(f"expected one of {', '.join(ESCAPED_SLASH_ACTIONS)}, got {v!r}")
    return v  # type: ignore[return-value]


def _optional(conv: Callable[[object], Any]) -> Callable[[object], Any]:
    return lambda v: None if v is None else conv(v)


def _protocols(allowed: tuple[str, ...]) -> Callable[[object], tuple[str, ...]]:
    def conv(v: object) -> tuple[str, ...]:
        if not isinstance(v, list) or not v:
            raise _Invalid(f"expected a non-empty list of: {', '.join(allowed)}")
        for p in v:
            if p not in allowed:
                raise _Invalid(f"unknown protocol {p!r} (expected some of: {', '.join(allowed)})")
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


def _bind(v: object) -> tuple[str, str, int]:
    """'host:port', '[v6]:port' -> (bind, host, port)."""
    s = _string(v)
    host, sep, port = s.rpartition(":")
    if not sep or not host or not port.isdigit() or (":" in host and not host.startswith("[")):
        raise _Invalid(f"expected 'host:port' (IPv6 as '[::1]:8080'), got {s!r}")
    if int(port) > 65535:
        raise _Invalid(f"port out of range: {port}")
    return s, _hostname(host), int(port)
