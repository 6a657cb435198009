"""The traced twin of a program: every step, nested ones too, records what it did.

Strategy.  Only a request that carries a valid debug token runs a twin (runtime/admission.py
swaps the program), so an untraced request pays nothing per policy: the engine and the
policies are the same objects and code paths as without tracing.  The twin is built per
traced request (debug traffic is rare; the twin holds that request's `Trace`): each
`CompiledStep` becomes a `_Step` that records its scope, section, paths, start, duration
and decision, and each policy holding something recordable is shallow-copied with those
parts replaced, found by walking its attributes (slots included) through tuples, lists,
dicts and the pipeline's own helper objects (set-header's `HeaderEdit`, ...):

  * a nested `CompiledStep` (choose's when/otherwise, retry's and limit-concurrency's
    policies) becomes a `_Step` too, so nested policies appear with their own paths
    (`choose[1]\\when[2]\\set-header[1]`, APIM's form, and the config path);
  * a `Template` records the value it rendered (set-header's value, set-variable's value,
    rate-limit-by-key's counter-key), a `Condition` its result (each `when` tried), on
    the entry of the step running now (a stack: nested steps run inside their parent);
    a constant template (no expression; named values already substituted) is listed on
    its step's entry as it is, since the policy uses its text without rendering it.

A shallow copy shares everything it does not replace (counters, bucket tables, key
providers), so the twin acts on the same state as the original.  Values are cut to
`_VALUE_MAX` characters; secrets are scrubbed from the finished document
(runtime/debugtrace.py).
"""

from __future__ import annotations

import copy
import dataclasses
from types import GeneratorType
from typing import Any

from ..gateway.pipeline.contract import Answer
from ..gateway.pipeline.expressions import Condition, Template, render_value
from ..gateway.pipeline.program import CompiledStep

__all__ = ["traced_program"]

_VALUE_MAX = 1024
_PIPELINE = "apigw_core.gateway.pipeline"


def _plain(v: Any) -> Any:
    """A JSON-friendly copy of an expression's value, cut to `_VALUE_MAX` characters."""
    if v is None or isinstance(v, (bool, int, float)):
        return v
    text = v if isinstance(v, str) else render_value(v)
    return text if len(text) <= _VALUE_MAX else text[:_VALUE_MAX] + "..."


class _Step:
    """A program step that records what it did; everything else (name, scope,
    apim_path, ... read by the engine for errors) is the step's own."""

    __slots__ = ("_step", "_trace", "apply_inner", "_constants")
    bare = None   # never the step's own command: a traced forward goes through apply


    def __init__(self, step: Any, apply_inner: Any, trace: Any, constants: list) -> None:
        self._step, self._trace, self.apply_inner = step, trace, apply_inner
        self._constants = constants

    def __getattr__(self, name: str) -> Any:
        return getattr(self._step, name)

    def _open(self) -> dict:
        s, tr = self._step, self._trace
        e = tr.add_policy(s.name, s.scope, s.section, s.path, s.apim_path, s.policy_id)
        tr.stack.append(e)
        if self._constants:       # fixed by the config (named values substituted)
            e["expressions"] = [{"kind": "constant", "value": _plain(c)}
                                for c in self._constants]
        return e

    def _close(self, e: dict, decision: str, **more: Any) -> None:
        tr = self._trace
        e["duration_ms"] = round((tr.clock() - e.pop("_t0")) * 1000, 3)
        e["decision"] = decision
        e.update(more)
        if tr.stack and tr.stack[-1] is e:
            tr.stack.pop()

    def apply(self, ctx: Any) -> Any:
        e = self._open()
        try:
            r = self.apply_inner(ctx)
        except Exception as exc:
            self._close(e, "error", error=_reason(exc))
            raise
        if r is None:
            self._close(e, "continue")
            return None
        if isinstance(r, Answer):
            self._close(e, "answer", status=r.status)
            return r
        if type(r) is GeneratorType:
            return self._gen(r, e)
        self._close(e, "error", error="not a generator")
        return r

    def _gen(self, gen: Any, e: dict) -> Any:
        try:
            r = yield from gen
        except Exception as exc:
            self._close(e, "error", error=_reason(exc))
            raise
        if isinstance(r, Answer):
            self._close(e, "answer", status=r.status)
        else:
            self._close(e, "continue")
        return r


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", type(exc).__name__))


class _Recorder:
    """Records a template's or a condition's values on the running step's entry."""

    __slots__ = ("trace", "source")

    def __init__(self, trace: Any, source: str) -> None:
        self.trace, self.source = trace, source

    def note(self, kind: str, value: Any) -> None:
        stack = self.trace.stack
        if stack:
            stack[-1].setdefault("expressions", []).append(
                {"kind": kind, "expression": self.source, "value": _plain(value)})


class _RecTemplate:
    """A Template whose `render` / `value` record what they produced."""

    __slots__ = ("source", "constant", "render", "value", "reads_request_body",
                 "reads_response_body")

    def __init__(self, t: Template, trace: Any) -> None:
        self.source, self.constant = t.source, t.constant
        self.reads_request_body, self.reads_response_body = \
            t.reads_request_body, t.reads_response_body
        rec = _Recorder(trace, t.source)
        render, value = t.render, t.value

        def rendered(ctx: Any) -> str:
            out = render(ctx)
            rec.note("template", out)
            return out

        def valued(ctx: Any) -> Any:
            out = value(ctx)
            rec.note("template", out)
            return out
        self.render, self.value = rendered, valued


class _RecCondition:
    """A Condition whose `test` records its result."""

    __slots__ = ("source", "test", "reads_request_body", "reads_response_body")

    def __init__(self, c: Condition, trace: Any) -> None:
        self.source = c.source
        self.reads_request_body, self.reads_response_body = \
            c.reads_request_body, c.reads_response_body
        rec = _Recorder(trace, c.source)
        test = c.test

        def tested(ctx: Any) -> bool:
            out = test(ctx)
            rec.note("condition", bool(out))
            return out
        self.test = tested


def _attrs(obj: Any) -> list[str]:
    names = list(getattr(obj, "__dict__", ()))
    for cls in type(obj).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        names.extend((slots,) if isinstance(slots, str) else slots)
    return [n for n in dict.fromkeys(names) if n not in ("__dict__", "__weakref__")]


class _Twin:
    """The walk: `value(v)` is v, or its recording copy when it holds anything to record."""

    def __init__(self, trace: Any, body_limit: int) -> None:
        self.trace, self.body_limit = trace, body_limit
        self.memo: dict[int, Any] = {}
        self.constants: list[str] = []   # the constant templates of the step walked now

    def step(self, s: CompiledStep) -> _Step:
        outer, self.constants = self.constants, []
        try:
            policy = self.value(s.policy)
            constants = self.constants
        finally:
            self.constants = outer
        apply = s.apply
        if policy is not s.policy:   # re-bind: the step's apply may wrap a body read
            apply = _rebind(s, policy, self.body_limit)
        return _Step(s, apply, self.trace, constants)

    def value(self, v: Any, depth: int = 0) -> Any:
        if depth > 12 or v is None or isinstance(v, (str, bytes, int, float, bool)):
            return v
        key = id(v)
        if key in self.memo:
            return self.memo[key]
        self.memo[key] = v            # a cycle sees the original
        out = self._value(v, depth)
        self.memo[key] = out
        return out

    def _value(self, v: Any, depth: int) -> Any:
        if isinstance(v, CompiledStep):
            return self.step(v)
        if isinstance(v, Template):
            if v.constant is not None:   # policies use the text as is: nothing to wrap
                self.constants.append(v.constant)
                return v
            return _RecTemplate(v, self.trace)
        if isinstance(v, Condition):
            return _RecCondition(v, self.trace)
        if isinstance(v, (tuple, list)):
            items = [self.value(x, depth + 1) for x in v]
            if all(a is b for a, b in zip(items, v)):
                return v
            return type(v)(items) if type(v) in (tuple, list) else v
        if type(v) is dict:
            vals = {k: self.value(x, depth + 1) for k, x in v.items()}
            return vals if any(vals[k] is not v[k] for k in v) else v
        if not type(v).__module__.startswith(_PIPELINE) or isinstance(v, type):
            return v
        changed = {}
        for name in _attrs(v):
            try:
                cur = getattr(v, name)
            except AttributeError:
                continue
            if callable(cur) and not isinstance(cur, (Template, Condition, CompiledStep)):
                continue       # bound methods, closures: kept
            new = self.value(cur, depth + 1)
            if new is not cur:
                changed[name] = new
        if not changed:
            return v
        twin = copy.copy(v)
        for name, new in changed.items():
            object.__setattr__(twin, name, new)
        return twin


def _rebind(s: CompiledStep, policy: Any, body_limit: int) -> Any:
    """The step's apply for the twin policy (its body-reading wrappers made again)."""
    fresh = CompiledStep(policy, s.name, s.scope, s.section, s.path, s.apim_path,
                         s.policy_id, body_limit)
    return fresh.apply


def traced_program(program: Any, trace: Any) -> Any:
    """`program` with every step, nested ones included, recording into `trace`."""
    tw = _Twin(trace, program.body_limit)

    def wrap(steps: tuple) -> tuple:
        return tuple(tw.step(s) for s in steps)
    return dataclasses.replace(program, inbound=wrap(program.inbound),
                               backend=wrap(program.backend),
                               outbound=wrap(program.outbound),
                               on_error=wrap(program.on_error))
