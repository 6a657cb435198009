"""Query-string helpers shared by operation matching and subscription keys.

A query is the raw bytes after "?" (no "?").  Pairs are split on "&"; names and values are
form-decoded ("+" is a space, then percent-decoding, UTF-8 with U+FFFD for bad bytes), as
.NET's and every web framework's query collections do.  A pair without "=" has the value "".
The first occurrence of a name wins.  The raw bytes are only decoded when they hold "%" or
"+": most queries have neither, and the common question ("is `subscription-key` there?") is
answered by a substring test before anything is split.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

__all__ = ["decode_component", "parse_query", "query_value", "remove_query_param"]


def decode_component(raw: bytes) -> str:
    """One form-encoded query name or value, decoded to text."""
    if b"+" in raw:
        raw = raw.replace(b"+", b" ")
    if b"%" in raw:
        raw = unquote_to_bytes(raw)
    return raw.decode("utf-8", "replace")


def parse_query(query: bytes) -> dict[str, str]:
    """Every parameter of a query, name -> first value."""
    out: dict[str, str] = {}
    if not query:
        return out
    if b"%" not in query and b"+" not in query:     # nothing to decode: work on text
        for pair in query.decode("utf-8", "replace").split("&"):
            name, _, value = pair.partition("=")
            if name and name not in out:
                out[name] = value
        return out
    for pair in query.split(b"&"):
        if not pair:
            continue
        name, _, value = pair.partition(b"=")
        key = decode_component(name)
        if key not in out:
            out[key] = decode_component(value)
    return out


def query_value(query: bytes, name: str) -> str | None:
    """The first value of parameter `name`, or None when it is absent."""
    if not query:
        return None
    raw_name = name.encode("utf-8")
    if raw_name not in query and b"%" not in query and b"+" not in query:
        return None                      # cannot be there, even encoded
    return parse_query(query).get(name)


def remove_query_param(query: bytes, name: str) -> bytes:
    """The query without any occurrence of parameter `name`; other pairs keep their bytes."""
    if not query:
        return query
    kept = [pair for pair in query.split(b"&")
            if pair and decode_component(pair.partition(b"=")[0]) != name]
    return b"&".join(kept)
