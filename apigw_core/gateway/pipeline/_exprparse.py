"""The condition language: a hand-written tokenizer and recursive-descent parser that
compile to closures.

Grammar (lowest precedence first):

    cond    := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | compare
    compare := operand [("==" | "!=" | "<" | "<=" | ">" | ">=") operand
                        | ["not"] "in" "[" [operand ("," operand)*] "]"]
    operand := STRING | NUMBER | "true" | "false" | "null" | PATH
             | FUNC "(" cond ("," cond)* ")" | "(" cond ")"

Functions: startswith(a, b), endswith(a, b), contains(a, b), lower(a), upper(a).  A path
or value used as a condition is true unless it is null, "", 0, false or the string "false"
(any case), so a variable set to "true" by set-variable tests as true.

Comparing: `==`/`!=` compare numerically when one side is a number and the other is or
reads as one (`request.headers.x-count == 3`), null equals only null, bools compare with
"true"/"false" in any case, anything else compares as text.  Ordering (`<` ...) compares
numerically when one side is a number (the other must read as one), as text when both are
text; ordering a null, a bool, or a number with non-numeric text raises PolicyError
ExpressionValueEvaluationFailure at run time.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Optional

from .contract import Context
from .expressions import ExpressionError, PathInfo, evaluation_error, render_value

__all__ = ["parse_condition"]

Fn = Callable[[Context], Any]

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<num>-?\d+(?:\.\d+)?(?![A-Za-z_]))
  | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)
  | (?P<word>[A-Za-z_][A-Za-z0-9_.\-]*)
""", re.VERBOSE)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"'}
_KEYWORDS = {"and", "or", "not", "in", "true", "false", "null"}


def _tokenize(text: str) -> list[tuple[str, Any, int]]:
    out: list[tuple[str, Any, int]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ExpressionError(f"unexpected {text[pos]!r} at offset {pos}")
        kind = m.lastgroup
        tok = m.group()
        if kind == "str":
            value = re.sub(r"\\(.)", lambda e: _ESCAPES.get(e.group(1), e.group(1)), tok[1:-1])
            out.append(("lit", value, pos))
        elif kind == "num":
            out.append(("lit", float(tok) if "." in tok else int(tok), pos))
        elif kind == "op":
            out.append(("op", tok, pos))
        elif kind == "word":
            out.append(("kw", tok, pos) if tok in _KEYWORDS else ("word", tok, pos))
        pos = m.end()
    out.append(("end", None, len(text)))
    return out


# --- run-time semantics ---------------------------------------------------------------------

def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _as_number(v: Any) -> Optional[float]:
    if _is_number(v):
        return v
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def truth(v: Any) -> bool:
    if v is None or v is False:
        return False
    if v is True:
        return True
    if isinstance(v, str):
        return v != "" and v.lower() != "false"
    if _is_number(v):
        return v != 0
    return bool(v)


def equal(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if _is_number(a) or _is_number(b):
        na, nb = _as_number(a), _as_number(b)
        if na is not None and nb is not None:
            return na == nb
    if isinstance(a, bool) or isinstance(b, bool):
        return render_value(a).lower() == render_value(b).lower()
    return render_value(a) == render_value(b)


def _ordered(op: str) -> Callable[[Any, Any], bool]:
    cmp = {"<": lambda x, y: x < y, "<=": lambda x, y: x <= y,
           ">": lambda x, y: x > y, ">=": lambda x, y: x >= y}[op]

    def order(a: Any, b: Any) -> bool:
        if a is None or b is None or isinstance(a, bool) or isinstance(b, bool):
            raise evaluation_error(f"cannot order {render_value(a)!r} {op} "
                                   f"{render_value(b)!r}: null or bool")
        if _is_number(a) or _is_number(b):
            na, nb = _as_number(a), _as_number(b)
            if na is None or nb is None:
                raise evaluation_error(f"cannot order {render_value(a)!r} {op} "
                                       f"{render_value(b)!r}: not a number")
            return cmp(na, nb)
        return cmp(render_value(a), render_value(b))
    return order


def _equal_text(get: Fn, tok: tuple[str, Any, int]) -> Optional[Fn]:
    """`path == "text"` without the general rules when the value is text (the usual case):
    same answers as `equal`, one comparison."""
    kind, lit, _ = tok
    if kind != "lit" or type(lit) is not str:
        return None

    def eq(ctx: Context) -> bool:
        v = get(ctx)
        if type(v) is str:
            return v == lit
        return equal(v, lit)
    return eq


def _member_of_texts(get: Fn, texts: frozenset, items: list[Fn]) -> Fn:
    """`path in ["a", "b"]` as a set lookup when the value is text."""
    def member(ctx: Context) -> bool:
        v = get(ctx)
        if type(v) is str:
            return v in texts
        return any(equal(v, it(ctx)) for it in items)
    return member


def _s(v: Any) -> str:
    return render_value(v)


_FUNCS: dict[str, tuple[int, Callable[..., Any]]] = {
    "startswith": (2, lambda a, b: _s(a).startswith(_s(b))),
    "endswith": (2, lambda a, b: _s(a).endswith(_s(b))),
    "contains": (2, lambda a, b: _s(b) in _s(a)),
    "lower": (1, lambda a: None if a is None else _s(a).lower()),
    "upper": (1, lambda a: None if a is None else _s(a).upper()),
}


# --- the parser ---------------------------------------------------------------------------

class _Parser:
    def __init__(self, text: str, compile_path: Callable[[str], PathInfo]) -> None:
        self.toks = _tokenize(text)
        self.i = 0
        self.compile_path = compile_path
        self.reads_request_body = False
        self.reads_response_body = False

    def peek(self) -> tuple[str, Any, int]:
        return self.toks[self.i]

    def take(self) -> tuple[str, Any, int]:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, value: str) -> None:
        kind, v, pos = self.take()
        if v != value or kind not in ("op", "kw"):
            raise ExpressionError(f"expected {value!r} at offset {pos}, got "
                                  f"{'end' if kind == 'end' else repr(v)}")

    def at(self, *values: str) -> bool:
        kind, v, _ = self.peek()
        return kind in ("op", "kw") and v in values

    # cond := and ("or" and)*
    def cond(self) -> Fn:
        left = self.conj()
        while self.at("or"):
            self.take()
            right = self.conj()
            left = (lambda a, b: lambda ctx: a(ctx) or b(ctx))(left, right)
        return left

    def conj(self) -> Fn:
        left = self.neg()
        while self.at("and"):
            self.take()
            right = self.neg()
            left = (lambda a, b: lambda ctx: a(ctx) and b(ctx))(left, right)
        return left

    def neg(self) -> Fn:
        if self.at("not"):
            self.take()
            inner = self.neg()
            return lambda ctx: not inner(ctx)
        return self.compare()

    def compare(self) -> Fn:
        start = self.i
        left, boolean = self.operand()
        if self.at("==", "!="):
            op = self.take()[1]
            lit_at = self.i
            right, _ = self.operand()
            eq = _equal_text(left, self.toks[lit_at]) if self.i == lit_at + 1 else None
            if eq is None and self.i == lit_at + 1 and lit_at == start + 2:
                eq = _equal_text(right, self.toks[start])   # "gold" == request.x
            if eq is None:
                eq = lambda ctx: equal(left(ctx), right(ctx))   # noqa: E731
            if op == "==":
                return eq
            return lambda ctx: not eq(ctx)
        if self.at("<", "<=", ">", ">="):
            order = _ordered(self.take()[1])
            right, _ = self.operand()
            return lambda ctx: order(left(ctx), right(ctx))
        negate = False
        if self.at("not") and self.toks[self.i + 1][1] == "in":
            self.take()
            negate = True
        if self.at("in"):
            self.take()
            list_at = self.i
            items = self.items()
            texts = [t[1] for t in self.toks[list_at + 1:self.i - 1:2]]
            if len(texts) == len(items) and all(self.toks[j][0] == "lit" and
                                                type(self.toks[j][1]) is str
                                                for j in range(list_at + 1, self.i - 1, 2)):
                member = _member_of_texts(left, frozenset(texts), items)
                if negate:
                    return lambda ctx: not member(ctx)
                return member
            if negate:
                return lambda ctx: not any(equal(left(ctx), it(ctx)) for it in items)
            return lambda ctx: any(equal(left(ctx), it(ctx)) for it in items)
        if boolean:
            return left
        return lambda ctx: truth(left(ctx))

    def items(self) -> list[Fn]:
        self.expect("[")
        out: list[Fn] = []
        if self.at("]"):
            self.take()
            return out
        while True:
            out.append(self.operand()[0])
            if self.at("]"):
                self.take()
                return out
            self.expect(",")

    def operand(self) -> tuple[Fn, bool]:
        """A value getter, and whether it already yields a bool (a sub-condition)."""
        kind, v, pos = self.take()
        if kind == "lit":
            return (lambda ctx: v), False
        if kind == "kw" and v in ("true", "false", "null"):
            const = {"true": True, "false": False, "null": None}[v]
            return (lambda ctx: const), False
        if kind == "op" and v == "(":
            inner = self.cond()
            self.expect(")")
            return inner, True
        if kind == "word":
            if self.at("("):
                return self.call(v, pos), False
            info = self.compile_path(v)
            self.reads_request_body |= info.reads_request_body
            self.reads_response_body |= info.reads_response_body
            return info.get, False
        got = "end of condition" if kind == "end" else repr(v)
        raise ExpressionError(f"expected a value at offset {pos}, got {got}")

    def call(self, name: str, pos: int) -> Fn:
        spec = _FUNCS.get(name.lower())
        if spec is None:
            raise ExpressionError(f"unknown function {name!r} at offset {pos} (expected one "
                                  f"of {', '.join(sorted(_FUNCS))})")
        arity, fn = spec
        self.expect("(")
        args = [self.cond_value()]
        while self.at(","):
            self.take()
            args.append(self.cond_value())
        self.expect(")")
        if len(args) != arity:
            raise ExpressionError(f"{name}() takes {arity} argument"
                                  f"{'s' if arity > 1 else ''}, got {len(args)}")
        if arity == 1:
            a0 = args[0]
            return lambda ctx: fn(a0(ctx))
        a0, a1 = args
        return lambda ctx: fn(a0(ctx), a1(ctx))

    def cond_value(self) -> Fn:
        """A function argument: a plain operand keeps its value (not its truth)."""
        start = self.i
        value, _ = self.operand()
        if self.at(",", ")"):
            return value
        self.i = start
        return self.cond()


def parse_condition(text: str, compile_path: Callable[[str], PathInfo]
                    ) -> tuple[Callable[[Context], bool], bool, bool]:
    """(test, reads_request_body, reads_response_body); ExpressionError when malformed."""
    if not text.strip():
        raise ExpressionError("empty condition")
    p = _Parser(text, compile_path)
    test = p.cond()
    kind, v, pos = p.peek()
    if kind != "end":
        raise ExpressionError(f"unexpected {v!r} at offset {pos}")
    return test, p.reads_request_body, p.reads_response_body
