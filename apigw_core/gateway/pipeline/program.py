"""From the config's policy entries to flat programs, one per (API, operation, product).

Strategy.  Two passes.  First every policy entry of every scope (global, each product,
each API, each operation) is compiled exactly once into a `CompiledStep` (the policy
object, its bound `apply`, and where it sits: scope, section, config path, APIM path,
policy id), so a config shows all its mistakes at once (`check_config`) and a policy
placed at global scope is one object shared by every program.  Then a program is resolved
by walking the scopes outside in, per section: an undeclared section is `[base]`, `base`
splices in the outer scope's resolved list, no `base` means no inheritance.  The global
scope's outer list is empty, except for the backend section, whose default (global
backend undeclared) is `[forward-request]` as in APIM; a program whose backend section
forwards nothing answers from outbound alone (an empty 200 unless a policy says otherwise).
Programs are resolved lazily by `Programs.get` and cached: a request walks tuples.

Entries: `"base"`, a one-key mapping `{policy-name: body}` (a bare policy name string is
the same as an empty body), `{custom: {class: "pkg.mod:Class", ...}}`, or
`{"pkg.mod:Class": body}` (see `custom`).  A mapping body may carry `id` (APIM's policy id,
reported in last-error); it is taken off before the policy sees its spec.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

from . import policies as _builtins  # noqa: F401  (registers the built-in policies)
from .contract import Answer, Context, Policy, ReadRequestBody, ReadResponseBody, Site
from .custom import is_custom, load_custom
from .expressions import compile_condition, compile_template
from .registry import lookup, names

__all__ = ["CompiledStep", "Program", "Programs", "build_programs", "check_config",
           "DEFAULT_BODY_LIMIT"]

DEFAULT_BODY_LIMIT = 4 << 20     # bytes buffered for a policy that reads a body
_SECTION_ATTR = {"inbound": "inbound", "backend": "backend", "outbound": "outbound",
                 "on-error": "on_error"}
_SCOPE_ORDER = ("global", "product", "api", "operation")


class CompiledStep:
    """One compiled policy in place.  `apply(ctx)` is the policy's, wrapped when it reads a
    body the runtime has not brought in yet (the wrapper yields the read first)."""

    __slots__ = ("apply", "policy", "name", "scope", "section", "path", "apim_path",
                 "policy_id", "bare")

    def __init__(self, policy: Policy, name: str, scope: str, section: str, path: str,
                 apim_path: str, policy_id: str, body_limit: int) -> None:
        self.policy, self.name, self.scope, self.section = policy, name, scope, section
        self.path, self.apim_path, self.policy_id = path, apim_path, policy_id
        apply = policy.apply
        if policy.reads_request_body:
            apply = _reading(apply, ReadRequestBody(body_limit), _needs_request_body)
        if policy.reads_response_body and section in ("outbound", "on-error"):
            apply = _reading(apply, ReadResponseBody(body_limit), _needs_response_body)
        self.apply = apply
        # the command a policy that only yields one command yields (forward-request
        # without fail-on-error-status-code): the engine yields it itself, no generator
        self.bare = getattr(policy, "bare_command", None) if apply == policy.apply else None

    def __repr__(self) -> str:
        return f"<step {self.name} {self.scope}/{self.section} {self.path}>"


def _needs_request_body(ctx: Context) -> bool:
    return ctx.request.body is None


def _needs_response_body(ctx: Context) -> bool:
    return ctx.response is not None and ctx.response.body is None


def _reading(apply: Callable, cmd: Any, needed: Callable[[Context], bool]) -> Callable:
    def read_then_apply(ctx: Context) -> Any:
        yield cmd
        r = apply(ctx)
        if r is None or isinstance(r, Answer):
            return r
        return (yield from r)

    def wrapped(ctx: Context) -> Any:
        return read_then_apply(ctx) if needed(ctx) else apply(ctx)
    return wrapped


@dataclass(frozen=True, slots=True)
class Program:
    """A resolved pipeline: the steps of each section, in order.  The body flags tell the
    runtime before anything is forwarded what will be read (a policy with nested lists,
    such as choose, reports its children's reads as its own)."""

    inbound: tuple[CompiledStep, ...]
    backend: tuple[CompiledStep, ...]
    outbound: tuple[CompiledStep, ...]
    on_error: tuple[CompiledStep, ...]
    reads_request_body: bool = False     # some policy reads the request body
    reads_response_body: bool = False    # some outbound / on-error policy reads the response's
    body_limit: int = DEFAULT_BODY_LIMIT
    # the backend section's one command when it is a lone plain forward-request and no
    # policy reads the request body: then engine.inbound, this command and
    # engine.outbound are the whole of engine.run (runtime/lean.py); made from the
    # fields above, also by dataclasses.replace
    lone_forward: Any = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        steps = self.backend
        if len(steps) == 1 and not self.reads_request_body:
            object.__setattr__(self, "lone_forward", getattr(steps[0], "bare", None))


# --- compiling entries --------------------------------------------------------------------

class _Compiler:
    """Compiles policy lists; collects errors; remembers every step for the body flags."""

    def __init__(self, config: Any, errors: list[str]) -> None:
        self.errors = errors
        self.config = config    # policies that need other sections (certificates) read it
        self.named_values: Mapping[str, str] = getattr(config, "named_values", None) or {}
        self.backends = tuple(getattr(config, "backends", None) or ())
        server = getattr(config, "server", None)
        self.body_limit = getattr(server, "max_body", None) or DEFAULT_BODY_LIMIT
        source = getattr(config, "source", None)   # the config file: custom modules beside it
        self.search_dir = os.path.dirname(os.path.abspath(source)) \
            if isinstance(source, str) and os.path.isfile(source) else None
        nv = self.named_values
        self.template = lambda text, path, errors: compile_template(text, path, errors, nv)
        self.condition = compile_condition
        self.steps: list[CompiledStep] = []   # every step compiled, nested ones too

    def site(self, path: str, section: str, scope: str, apim_path: str) -> Site:
        s = Site(path, section, scope, self.errors, self.named_values, self.nested,
                 self.template, self.condition, self.backends)
        s.apim_path = apim_path   # type: ignore[attr-defined]  (read back by nested())
        s.config = self.config    # type: ignore[attr-defined]
        return s

    def nested(self, entries: Any, path: str, parent: Site) -> tuple[CompiledStep, ...]:
        """Site.nested: a policy list inside a policy (choose's when/otherwise)."""
        key = path[len(parent.path) + 1:] if path.startswith(parent.path + ".") else path
        apim = getattr(parent, "apim_path", "") + _apim_suffix(key)
        return self.compile_list(entries, path, parent.section, parent.scope, apim,
                                 allow_base=False)

    def compile_list(self, entries: Any, path: str, section: str, scope: str,
                     apim_prefix: str = "", allow_base: bool = True
                     ) -> tuple[Any, ...]:
        """Steps (and the string "base" where it stood, when allowed)."""
        if entries is None:
            return ()
        if isinstance(entries, (str, bytes)) or not isinstance(entries, Sequence):
            self.errors.append(f"{path}: expected a list of policies")
            return ()
        out: list[Any] = []
        seen: dict[str, int] = {}
        for i, entry in enumerate(entries):
            epath = f"{path}[{i}]"
            if entry == "base":
                if not allow_base:
                    self.errors.append(f"{epath}: base is only allowed at the top of a "
                                       f"section")
                elif "base" in out:
                    self.errors.append(f"{epath}: base may appear only once in a section")
                else:
                    out.append("base")
                continue
            step = self.compile_entry(entry, epath, section, scope, apim_prefix, seen)
            if step is not None:
                out.append(step)
        return tuple(out)

    def compile_entry(self, entry: Any, path: str, section: str, scope: str,
                      apim_prefix: str, seen: dict[str, int]) -> Optional[CompiledStep]:
        if isinstance(entry, str):
            entry = {entry: None}
        if not isinstance(entry, Mapping) or len(entry) != 1:
            self.errors.append(f"{path}: expected base or a one-key mapping "
                               f"{{policy-name: {{...}}}}")
            return None
        (name, body), = entry.items()
        if not isinstance(name, str):
            self.errors.append(f"{path}: expected a policy name, got {name!r}")
            return None
        policy_id = ""
        if isinstance(body, Mapping) and "id" in body:
            policy_id = str(body["id"])
            body = {k: v for k, v in body.items() if k != "id"}
        if body is None:
            body = {}
        seen[name] = seen.get(name, 0) + 1
        apim_path = f"{apim_prefix}\\{name}[{seen[name]}]" if apim_prefix else \
            f"{name}[{seen[name]}]"
        site = self.site(f"{path}.{name}", section, scope, apim_path)
        if is_custom(name):
            found = load_custom(name, body, site, self.search_dir)
            if found is None:
                return None
            cls, body = found
        else:
            cls = lookup(name)
            if cls is None:
                self.errors.append(f"{path}: unknown policy {name} (expected one of "
                                   f"{', '.join(names())}, or custom)")
                return None
        if section not in cls.sections:
            self.errors.append(f"{path}.{name}: not allowed in {section} (allowed in "
                               f"{', '.join(s for s in _SECTION_ATTR if s in cls.sections)})")
            return None
        n_errors = len(self.errors)
        policy = _instantiate(cls, body, site)
        if policy is None or len(self.errors) > n_errors:
            return None
        step = CompiledStep(policy, policy.name or name, scope, section, path, apim_path,
                            policy_id, self.body_limit)
        self.steps.append(step)
        return step


def _instantiate(cls: type[Policy], body: Any, site: Site) -> Optional[Policy]:
    try:
        return cls(body, site)
    except Exception as e:   # a policy bug while compiling: report it, do not crash the load
        site.error(f"could not compile ({type(e).__name__}: {e})")
        return None


def _apim_suffix(key: str) -> str:
    """`when[0].policies` -> `\\when[1]`; `otherwise` -> `\\otherwise`; `policies` -> ``."""
    out = ""
    for part in key.split("."):
        if part == "policies" or not part:
            continue
        m = re.fullmatch(r"(.*)\[(\d+)\]", part)
        out += f"\\{m.group(1)}[{int(m.group(2)) + 1}]" if m else f"\\{part}"
    return out


# --- scopes and programs ------------------------------------------------------------------

def _sections_of(policies: Any) -> dict[str, tuple[Any, bool]]:
    """{section: (entries, declared)} from a PolicySections (or a plain mapping)."""
    out: dict[str, tuple[Any, bool]] = {}
    if policies is None:
        return {s: ((), False) for s in _SECTION_ATTR}
    if isinstance(policies, Mapping):
        for s in _SECTION_ATTR:
            key = s if s in policies else _SECTION_ATTR[s]
            out[s] = (policies.get(key), key in policies)
        return out
    declared = getattr(policies, "declared", frozenset())
    for s, attr in _SECTION_ATTR.items():
        out[s] = (getattr(policies, attr, ()), attr in declared or s in declared)
    return out


class _Scope:
    """One scope's compiled sections: {section: steps-with-base, or None if undeclared}."""

    def __init__(self, comp: _Compiler, policies: Any, prefix: str, scope: str) -> None:
        self.sections: dict[str, Optional[tuple[Any, ...]]] = {}
        for section, (entries, declared) in _sections_of(policies).items():
            steps = comp.compile_list(entries, f"{prefix}.{section}", section, scope)
            self.sections[section] = steps if declared else None


class Programs:
    """Every program of a config, resolved on first use: `get(api, operation, product)`."""

    def __init__(self, config: Any, errors: Optional[list[str]] = None) -> None:
        self.errors: list[str] = [] if errors is None else errors
        comp = _Compiler(config, self.errors)
        self._body_limit = comp.body_limit
        self._global = _Scope(comp, getattr(config, "policies", None), "policies", "global")
        if self._global.sections["backend"] is None:
            self._default_backend = comp.compile_list(
                ["forward-request"], "policies.backend", "backend", "global")
        else:
            self._default_backend = ()
        self._products = {name: _Scope(comp, getattr(p, "policies", None),
                                       f"products.{name}.policies", "product")
                          for name, p in (getattr(config, "products", None) or {}).items()}
        self._apis: dict[str, tuple[_Scope, dict[str, _Scope]]] = {}
        for i, api in enumerate(getattr(config, "apis", ()) or ()):
            ops = {op.name: _Scope(comp, getattr(op, "policies", None),
                                   f"apis[{i}].operations[{j}].policies", "operation")
                   for j, op in enumerate(getattr(api, "operations", ()) or ())}
            self._apis[api.name] = (_Scope(comp, getattr(api, "policies", None),
                                           f"apis[{i}].policies", "api"), ops)
        self._cache: dict[tuple[str, Optional[str], Optional[str]], Program] = {}
        # every compiled step of every scope, nested ones included (the runtime finds the
        # policies that need it here, e.g. validate-jwt's key providers)
        self.steps: tuple[CompiledStep, ...] = tuple(comp.steps)

    def get(self, api: str, operation: Optional[str] = None,
            product: Optional[str] = None) -> Program:
        """The program of an API (KeyError when unknown), an operation of it (None: the API
        alone) and a product (None: no product scope)."""
        key = (api, operation, product)
        prog = self._cache.get(key)
        if prog is None:
            prog = self._cache[key] = self._resolve(api, operation, product)
        return prog

    def _resolve(self, api: str, operation: Optional[str], product: Optional[str]) -> Program:
        api_scope, ops = self._apis[api]
        chain = [self._global]
        if product is not None:
            chain.append(self._products[product])
        chain.append(api_scope)
        if operation is not None:
            chain.append(ops[operation])
        resolved: dict[str, tuple[CompiledStep, ...]] = {}
        for section in _SECTION_ATTR:
            outer: tuple[Any, ...] = self._default_backend if section == "backend" else ()
            for scope in chain:
                own = scope.sections[section]
                if own is None:
                    continue
                spliced: list[Any] = []
                for s in own:
                    spliced.extend(outer if s == "base" else (s,))
                outer = tuple(spliced)
            resolved[section] = tuple(s for s in outer if s != "base")
        every = [s for steps in resolved.values() for s in steps]
        return Program(
            inbound=resolved["inbound"], backend=resolved["backend"],
            outbound=resolved["outbound"], on_error=resolved["on-error"],
            reads_request_body=any(s.policy.reads_request_body for s in every),
            reads_response_body=any(s.policy.reads_response_body for s in every
                                    if s.section in ("outbound", "on-error")),
            body_limit=self._body_limit)


def build_programs(config: Any) -> Programs:
    """Compile every policy of `config`; raises ValueError listing every error."""
    programs = Programs(config)
    if programs.errors:
        raise ValueError("\n".join(programs.errors))
    return programs


def check_config(config: Any) -> list[str]:
    """Every policy mistake in `config`, as "path: message" (empty when all is well)."""
    return Programs(config).errors
