"""From pydantic's errors to ours: "path: message", the path spelt as in the file.

Strategy.  Every problem is first a `Problem(loc, message)`, loc being a pydantic location
tuple (keys and list indices, in the file's own spelling since the models validate by
alias).  Pydantic's messages are rewritten from the error type and its context (no
"Input should be a valid integer [type=int_parsing" on the user's screen); our own
converters' messages (`_Invalid`) are kept, with their sub-location.  The few messages that
need the model (the known keys of an unknown key, the bounds of a range, a field's
`Expect` wording) walk the model classes along the location.  The raw data then spells the
path (a list index as `[2]`, a mapping key as `.name`, even a numeric one) and gives the
sort key: problems come in document order, the order of the keys in the file.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any, NamedTuple, Union

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from ._schema import Expect, Later
from ._values import _Invalid, _kind

Loc = tuple[Union[str, int], ...]


class Problem(NamedTuple):
    loc: Loc
    message: str


def from_validation_error(exc: ValidationError, root: type[BaseModel], prefix: Loc = ()) -> list[Problem]:
    out = []
    for e in exc.errors(include_url=False):
        loc = prefix + tuple(e["loc"])
        key = loc[-1:] == ("[key]",)        # a mapping's key, not its value, is wrong
        loc = loc[:-1] if key else loc
        if e["type"] == "value_error" and isinstance(err := e.get("ctx", {}).get("error"), _Invalid):
            out.append(Problem(loc + err.at, str(err)))
        elif key:
            out.append(Problem(loc, f"invalid name: {_message(e, root, loc, key=True)}"))
        else:
            out.append(Problem(loc, _message(e, root, loc)))
    return out


_TYPE_WORDS = {
    "int_type": "int", "int_parsing": "int", "int_from_float": "int", "bool_type": "bool",
    "bool_parsing": "bool", "string_type": "string", "float_type": "number",
    "float_parsing": "number", "list_type": "a list", "tuple_type": "a list", "set_type": "a list",
    "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
    "dataclass_type": "a mapping",
}


def _message(e: Mapping[str, Any], root: type[BaseModel], loc: Loc, key: bool = False) -> str:
    kind, ctx, got = e["type"], e.get("ctx") or {}, _kind(e.get("input"))
    info = None if key else _field_at(root, loc)[1]
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return f"unknown key (expected one of: {', '.join(_known_keys(root, loc[:-1]))})"
    if kind in _TYPE_WORDS:
        expect = next((x.what for x in (info.metadata if info else ()) if isinstance(x, Expect)), None)
        return f"expected {expect or _TYPE_WORDS[kind]}, got {got}"
    if kind == "string_too_short":
        return "expected a non-empty string"
    if kind == "too_short":
        return (f"expected a non-empty list, got {got}" if ctx.get("min_length") == 1
                else f"expected at least {ctx.get('min_length')} items")
    if kind in ("greater_than_equal", "less_than_equal"):
        lo = next((x.ge for x in (info.metadata if info else ()) if isinstance(x, annotated_types.Ge)), ctx.get("ge"))
        hi = next((x.le for x in (info.metadata if info else ()) if isinstance(x, annotated_types.Le)), ctx.get("le"))
        return f"expected {lo}..{hi}, got {e.get('input')!r}"
    if kind == "literal_error":
        allowed = _literal_values(root, loc) or [ctx.get("expected", "")]
        value = repr(e["input"]) if isinstance(e.get("input"), str) else got
        return f"expected one of {', '.join(map(str, allowed))}, got {value}"
    if kind == "value_error":
        return str(ctx.get("error", e.get("msg", "invalid value")))
    return e.get("msg", "invalid value").replace("Input should be", "expected")


# --- the models along a location -------------------------------------------------------

def _unwrap(t: Any) -> Any:
    """Optional[X] -> X, Annotated[X, ...] -> X."""
    while True:
        origin = typing.get_origin(t)
        if origin is typing.Annotated:
            t = typing.get_args(t)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(t) if a is not type(None)]
            if len(args) != 1:
                return t
            t = args[0]
        else:
            return t


def _field_at(root: type[BaseModel], loc: Loc) -> tuple[Any, FieldInfo | None]:
    """The type at `loc` below the model `root`, and the field that declares it (None for
    a list item or a mapping value)."""
    t: Any = root
    info: FieldInfo | None = None
    for part in loc:
        t = _unwrap(t)
        origin = typing.get_origin(t)
        if isinstance(t, type) and issubclass(t, BaseModel):
            info = next((f for n, f in t.model_fields.items() if (f.alias or n) == part), None)
            if info is None:
                return None, None
            t = info.annotation
        elif origin in (list, tuple, set, frozenset):
            t, info = typing.get_args(t)[0], None
        elif origin in (dict, Mapping):
            t, info = typing.get_args(t)[1], None
        else:
            return None, None
    return _unwrap(t), info


def _known_keys(root: type[BaseModel], loc: Loc) -> list[str]:
    model = _field_at(root, loc)[0]
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return []
    return [f.alias or n for n, f in model.model_fields.items()
            if not any(isinstance(x, Later) for x in f.metadata)]


def _literal_values(root: type[BaseModel], loc: Loc) -> list[Any]:
    t = _field_at(root, loc)[0]
    return list(typing.get_args(t)) if typing.get_origin(t) is typing.Literal else []


# --- spelling and ordering -----------------------------------------------------------------

def _walk(raw: Any, loc: Loc) -> tuple[str, tuple[int, ...]]:
    """The path as spelt in the file, and the document-order sort key, of `loc` in `raw`."""
    path, order = "", []
    node, known = raw, True
    for part in loc:
        if known and isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path += f"[{part}]"
            order.append(part)
            node = node[part]
        elif known and isinstance(node, dict) and part in node:
            path += f".{part}" if path else str(part)
            order.append(list(node).index(part))
            node = node[part]
        else:                   # below what the file has: a missing key, a sub-location
            if known:
                order.append(-1)      # a missing key: first among its parent's problems
            known = False
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)", tuple(order)


def spell(raw: Any, loc: Loc) -> str:
    return _walk(raw, loc)[0]


def in_document_order(raw: Any, problems: list[Problem]) -> list[tuple[str, str]]:
    """(path, message) pairs, sorted by where they are in the file (stable: a location with
    several problems keeps their order)."""
    walked = [(_walk(raw, p.loc), p.message) for p in problems]
    walked.sort(key=lambda w: w[0][1])
    out: list[tuple[str, str]] = []
    for (path, _), message in walked:
        if (path, message) not in out:        # one mistake seen by two checks is one error
            out.append((path, message))
    return out
