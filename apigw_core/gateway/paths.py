"""Request targets: what the router may take apart, and the one normalised path that is both
routed and forwarded.  HTTP/1.1 request targets and HTTP/2 `:path` both come through here
(the router calls it), so every protocol gets the same verdicts.

Strategy.  A target is refused (PathError, answered 400) when it carries a fragment (RFC 9112
§3.2 has none in a request-target; RFC 9113 §8.3.1 none in `:path`) or, in absolute form, a
userinfo (RFC 9110 §4.2.4).  The path is then normalised as RFC 3986 §6.2.2 says:
percent-encoded unreserved characters are decoded, the other escapes upper-cased, dot-segments
removed (§5.2.4), and the result is what the router matches *and* what the backend gets, so
"/public/../admin" cannot pick the API of /public while the backend serves /admin.  A path
whose dot-segments climb above the root, or with a broken escape ("%zz"), is refused.

Escaped slashes (%2F, %5C, and a raw "\\", which %5C spells) are where a proxy and a decoding
backend disagree about segments.  `server.escaped-slashes`, as Envoy's
`path_with_escaped_slashes_action`: `keep` (default) forwards them unchanged, but refuses a
path whose escaped slashes would let a backend that decodes them climb out of the backend's
base path ("/orders/..%2fsecret"); `reject` refuses any; `unescape` decodes them to "/" before
the dot-segments are removed.  Envoy's defaults also merge nothing ("//" is kept).

Cost: the router (which also refuses the fragment) calls `normalize_path` only when the
path holds "%", "\\" or "/." (memchr scans); a plain path costs nothing more.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["PathError", "ESCAPED_SLASH_ACTIONS", "split_absolute", "normalize_path",
           "escapes_base"]

ESCAPED_SLASH_ACTIONS = ("keep", "reject", "unescape")


class PathError(ValueError):
    """The request target is refused: answer `status` (400) with `message`."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = "0123456789abcdefABCDEF"


def _escape_table(action: str) -> dict[bytes, bytes]:
    """Two hex digits (any case) -> what "%" + them becomes; escaped slashes are absent
    under `reject`."""
    table = {}
    for a in _HEX:
        for b in _HEX:
            key = (a + b).encode()
            c = int(key, 16)
            if c in (0x2F, 0x5C):
                if action == "reject":
                    continue
                table[key] = b"/" if action == "unescape" else b"%" + key.upper()
            else:
                table[key] = bytes([c]) if c in _UNRESERVED else b"%" + key.upper()
    return table


_TABLES = {a: _escape_table(a) for a in ESCAPED_SLASH_ACTIONS}


def split_absolute(target: bytes) -> Optional[tuple[bytes, bytes]]:
    """(authority, origin-form rest) of an absolute-form http(s) target
    ("http://h:1/p?q" -> (b"h:1", b"/p?q"), the rest at least b"/"); None for any other
    form; PathError for an authority with userinfo."""
    scheme, sep, rest = target.partition(b"://")
    if not sep or scheme.lower() not in (b"http", b"https"):
        return None
    end = len(rest)
    for ch in b"/?":
        i = rest.find(ch)
        if 0 <= i < end:
            end = i
    host, target = rest[:end], rest[end:]
    if b"@" in host:
        raise PathError("userinfo is not allowed in a request target (RFC 9110 §4.2.4)")
    if target[:1] != b"/":
        target = b"/" + target
    return host, target


def normalize_path(path: bytes, escaped_slashes: str = "keep") -> bytes:
    """The RFC 3986 §6.2.2 form of an origin-form path (no query), under the
    `escaped-slashes` action; PathError when it is refused."""
    if b"\\" in path:
        if escaped_slashes == "reject":
            raise PathError("escaped slashes are not allowed in the path")
        if escaped_slashes == "unescape":
            path = path.replace(b"\\", b"/")
    if b"%" in path:
        table = _TABLES[escaped_slashes]
        parts = path.split(b"%")
        out = [parts[0]]
        for part in parts[1:]:
            rep = table.get(part[:2])
            if rep is None:
                if part[:2].upper() in (b"2F", b"5C"):
                    raise PathError("escaped slashes are not allowed in the path")
                raise PathError("bad percent-encoding in the path")
            out.append(rep)
            out.append(part[2:])
        path = b"".join(out)
    if b"/." in path:
        path = _remove_dot_segments(path)
    return path


def _remove_dot_segments(path: bytes) -> bytes:
    """RFC 3986 §5.2.4 for a path starting with "/", except that climbing above the root
    is refused instead of ignored (a client that sends it is probing, not browsing)."""
    segs = path.split(b"/")
    last = len(segs) - 1
    out: list[bytes] = []
    for i in range(1, last + 1):
        s = segs[i]
        if s == b".":
            if i == last:
                out.append(b"")
        elif s == b"..":
            if not out:
                raise PathError("the path climbs above the root")
            out.pop()
            if i == last:
                out.append(b"")
        else:
            out.append(s)
    return b"/" + b"/".join(out)


def escapes_base(rest: bytes) -> bool:
    """Whether a backend that decodes %2F / %5C (and takes "\\" for "/") would resolve the
    normalised path `rest` (what follows the API prefix) to above its own root.  Empty
    segments do not count as depth: some backends merge "//" first."""
    if not (b"%2F" in rest or b"%5C" in rest or b"\\" in rest):
        return False
    depth = 0
    for s in rest.replace(b"%2F", b"/").replace(b"%5C", b"/").replace(b"\\", b"/").split(
            b"/"):
        if s == b"..":
            depth -= 1
            if depth < 0:
                return True
        elif s and s != b".":
            depth += 1
    return False
