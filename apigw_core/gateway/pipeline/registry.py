"""Policy classes by APIM name.  Built-in policy modules register themselves on import
(`@register`); custom policies are named by dotted path in the config instead."""

from __future__ import annotations

from .contract import Policy

__all__ = ["register", "lookup", "names"]

_BY_NAME: dict[str, type[Policy]] = {}


def register(cls: type[Policy]) -> type[Policy]:
    if not cls.name or cls.name in _BY_NAME:
        raise ValueError(f"policy name missing or taken: {cls.name!r}")
    _BY_NAME[cls.name] = cls
    return cls


def lookup(name: str) -> type[Policy] | None:
    return _BY_NAME.get(name)


def names() -> list[str]:
    return sorted(_BY_NAME)
