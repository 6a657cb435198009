"""Named values: `{{name}}` in any string of the file is replaced by `named-values.name`.

Strategy.  APIM's named values, done once at load time on the raw data, before anything
is validated, so a substituted string is checked like a written one (a backend url made of
named values is still a URL).  Every string value is rewritten, at any depth; mapping keys
are not (they name things), nor the named values themselves (no recursion).  An unknown name
is an error at the string's path (a value is a string, or `{value, secret}`).  Named values are often secrets: `Substituted` remembers
where each one went, and `redact` puts `{{name}}` back into any error message about those
places, so no message prints a value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ._errors import Loc, Problem

_REF = re.compile(r"\{\{([A-Za-z0-9._-]+)\}\}")


@dataclass
class Substituted:
    data: Any
    problems: list[Problem] = field(default_factory=list)
    used: list[tuple[Loc, str]] = field(default_factory=list)   # (where, which name)


def usable(raw: object) -> dict[str, str]:
    """The well-formed entries of a raw `named-values` section (the bad ones get their
    errors from the model; a reference to them is not also "unknown")."""
    if not isinstance(raw, dict):
        return {}
    out = {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)}
    for k, v in raw.items():       # {value: ..., secret: true}
        if isinstance(k, str) and isinstance(v, dict) and isinstance(v.get("value"), str):
            out[k] = v["value"]
    return out


def substitute(top: dict, values: dict[str, str], declared: set) -> Substituted:
    result = Substituted(data=None)

    def walk(v: Any, loc: Loc) -> Any:
        if isinstance(v, str):
            return _replace(v, loc) if "{{" in v else v
        if isinstance(v, dict):
            return {k: walk(x, loc + (k,)) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x, loc + (i,)) for i, x in enumerate(v)]
        return v

    def _replace(s: str, loc: Loc) -> str:
        def one(m: re.Match) -> str:
            name = m[1]
            if name in values:
                result.used.append((loc, name))
                return values[name]
            if name not in declared:
                known = ", ".join(sorted(map(str, declared))) or "none declared"
                result.problems.append(Problem(loc, f"unknown named value {name!r} (named-values: {known})"))
            return m[0]
        return _REF.sub(one, s)

    result.data = {k: (v if k == "named-values" else walk(v, (k,))) for k, v in top.items()}
    return result


def redact(errors: list[tuple[str, str]], spelt_used: list[tuple[str, str]],
           values: dict[str, str]) -> list[tuple[str, str]]:
    """Put `{{name}}` back for the values substituted at or around each error's path."""
    if not spelt_used:
        return errors
    out = []
    for path, message in errors:
        for where, name in spelt_used:
            if _related(path, where) and values[name]:
                message = message.replace(values[name], "{{" + name + "}}")
        out.append((path, message))
    return out


def _related(a: str, b: str) -> bool:
    """One path is the other or lies below it."""
    short, long = sorted((a, b), key=len)
    return long == short or long.startswith(short) and long[len(short)] in ".[" or short == "(top level)"
