"""Compile one policy and run it, for the access / transform / convert policy tests.

`compile_policy("set-header", {...}, section="outbound")` builds the policy with a real
Site (the real expression compilers) and returns it, failing the test if the config had
errors; `config_errors(...)` returns the errors instead.  `run(policy, ctx, driver)` calls
`apply` and, when it returned a generator, drives it with the in-memory Driver of
helpers.py (body reads, ...), returning the Answer or None.
"""

from __future__ import annotations

import types
from typing import Any, Optional

from apigw_core.gateway.pipeline.contract import Context, Policy, Site
from apigw_core.gateway.pipeline.expressions import compile_condition, compile_template
from apigw_core.gateway.pipeline.registry import lookup

from helpers import Driver

PATH = "apis[0].policies"


def make_site(name: str, section: str = "inbound", errors: Optional[list] = None,
              index: int = 0) -> Site:
    def nested(entries: Any, path: str, site: Site) -> tuple:
        raise AssertionError("no nested policies here")
    return Site(f"{PATH}.{section}[{index}].{name}", section, "api",
                errors if errors is not None else [], {}, nested,
                lambda text, path, errs: compile_template(text, path, errs),
                compile_condition)


def config_errors(name: str, body: Any, section: str = "inbound") -> list[str]:
    errors: list[str] = []
    cls = lookup(name)
    assert cls is not None, name
    cls(body, make_site(name, section, errors))
    return errors


def compile_policy(name: str, body: Any, section: str = "inbound") -> Policy:
    errors: list[str] = []
    cls = lookup(name)
    assert cls is not None, name
    policy = cls(body, make_site(name, section, errors))
    assert errors == [], errors
    assert section in cls.sections, (name, section)
    return policy


def run(policy: Policy, ctx: Context, driver: Optional[Driver] = None) -> Any:
    out = policy.apply(ctx)
    if isinstance(out, types.GeneratorType):
        return (driver or Driver()).run(out, ctx)
    return out
