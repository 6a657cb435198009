"""Programs: scopes global > product > API > operation resolved once, `base` splicing, the
default backend section, and every config mistake reported with its path."""

from __future__ import annotations

import pytest

from apigw_core.gateway.pipeline import Programs, build_programs, check_config
from apigw_core.gateway.pipeline.contract import ForwardRequest

from helpers import (
    ApiConfig, GatewayConfig, OperationConfig, ProductConfig, config_errors, make_ctx,
    one_api, program_of, run_program, sections,
)


def mark(tag: str) -> dict:
    """A set-variable that appends `tag` to variables.t: the trace shows what ran."""
    return {"set-variable": {"name": "t", "value": "{variables.t}" + tag}}


def trace(program, section="inbound") -> str:
    result, ctx, _ = run_program(program)
    return ctx.variables.get("t", "")


def layered(global_=None, product=None, api=None, operation=None):
    """One API `orders` (operation `get`) in product `starter`, with the inbound lists given."""
    def sec(entries):
        return sections(inbound=entries) if entries is not None else sections()
    cfg = dict(
        apis=[ApiConfig("orders", policies=sec(api),
                        operations=(OperationConfig("get", "GET", "/{id}", sec(operation)),))],
        products={"starter": ProductConfig("starter", apis=("orders",), policies=sec(product))},
        policies=sec(global_))
    return cfg


@pytest.mark.parametrize("g,p,a,o,expected", [
    (["base", mark("g")], ["base", mark("p")], ["base", mark("a")], ["base", mark("o")], "gpao"),
    ([mark("g")], None, None, None, "g"),                       # undeclared: [base]
    ([mark("g")], [mark("p")], ["base", mark("a")], None, "pa"),  # product drops global
    ([mark("g")], None, [mark("a")], ["base", mark("o")], "ao"),  # API without base
    ([mark("g")], None, [mark("a1"), "base", mark("a2")], None, "a1ga2"),
    ([mark("g")], None, ["base"], [mark("o"), "base"], "og"),
    ([mark("g")], None, None, [], ""),                            # declared empty
])
def test_scopes_and_base(g, p, a, o, expected):
    cfg = layered(g, p, a, o)
    assert trace(program_of(**cfg, operation="get", product="starter")) == expected


def test_product_scope_only_with_a_product():
    cfg = layered(["base", mark("g")], ["base", mark("p")], ["base", mark("a")])
    assert trace(program_of(**cfg, product="starter")) == "gpa"
    assert trace(program_of(**cfg)) == "ga"           # API-scoped or all-apis subscription


def test_every_section_resolved_the_same_way():
    api = ApiConfig("orders", policies=sections(
        outbound=["base", mark("a")], on_error=[mark("e"), "base"]))
    prog = program_of([api], policies=sections(outbound=[mark("g")], on_error=[mark("G")]))
    assert [s.scope for s in prog.outbound] == ["global", "api"]
    assert [s.scope for s in prog.on_error] == ["api", "global"]
    assert [s.name for s in prog.backend] == ["forward-request"]
    assert prog.inbound == ()


def test_default_backend_is_forward_request():
    result, ctx, driver = run_program(one_api())
    assert [type(c) for c in driver.commands] == [ForwardRequest]
    assert result.kind == "response" and result.forwarded


def test_backend_without_forward_request_forwards_nothing():
    # APIM: without forward-request nothing goes to the backend; the answer is what
    # outbound makes of an empty 200.
    prog = one_api(backend=[mark("b")], outbound=["base", mark("o")])
    result, ctx, driver = run_program(prog)
    assert driver.commands == []
    assert result.kind == "response" and not result.forwarded
    assert (ctx.response.status, ctx.response.body) == (200, b"")
    assert ctx.variables["t"] == "bo"


def test_global_backend_declared_replaces_the_default():
    prog = program_of([ApiConfig("orders")], policies=sections(backend=[mark("g")]))
    assert [s.name for s in prog.backend] == ["set-variable"]
    prog = program_of([ApiConfig("orders", policies=sections(backend=["base"]))])
    assert [s.name for s in prog.backend] == ["forward-request"]


def test_steps_compiled_once_and_shared():
    cfg = dict(apis=[ApiConfig("a"), ApiConfig("b")], policies=sections(inbound=[mark("g")]))
    programs = Programs(GatewayConfig(apis=tuple(cfg["apis"]), policies=cfg["policies"]))
    pa, pb = programs.get("a"), programs.get("b")
    assert pa.inbound[0] is pb.inbound[0]
    assert programs.get("a") is pa                      # resolved once, cached
    with pytest.raises(KeyError):
        programs.get("nope")


def test_plain_mappings_as_policy_sections():
    api = ApiConfig("orders", policies={"inbound": [mark("a")], "on-error": [mark("e")]})
    prog = program_of([api], policies={"inbound": [mark("g")]})
    assert [s.scope for s in prog.inbound] == ["api"]
    assert [s.scope for s in prog.on_error] == ["api"]


def test_step_places():
    api = ApiConfig("orders", policies=sections(inbound=[
        "base", mark("x"), {"choose": {"when": [{"condition": "true", "policies": []}]}},
        {"set-variable": {"id": "sv-2", "name": "y", "value": "1"}}]))
    prog = program_of([api])
    s1, c, s2 = prog.inbound
    assert (s1.apim_path, c.apim_path, s2.apim_path) == ("set-variable[1]", "choose[1]",
                                                         "set-variable[2]")
    assert s1.path == "apis[0].policies.inbound[1]" and s1.section == "inbound"
    assert s2.policy_id == "sv-2" and s1.policy_id == ""


def test_body_flags():
    prog = one_api(inbound=[{"set-variable": {"name": "b", "value": "{request.body}"}}])
    assert prog.reads_request_body and not prog.reads_response_body
    prog = one_api(outbound=[{"choose": {"when": [{"condition": "contains(response.body, 'x')",
                                                   "policies": []}]}}])
    assert prog.reads_response_body and not prog.reads_request_body
    assert not one_api(inbound=[mark("x")]).reads_request_body


def test_named_values_in_templates():
    prog = one_api(inbound=[{"set-variable": {"name": "t", "value": "Bearer {{token}}"}}],
                   named_values={"token": "s3cr3t"})
    assert trace(prog) == "Bearer s3cr3t"


# --- errors -------------------------------------------------------------------------------

def test_unknown_policy_lists_the_known_ones():
    errors = config_errors([ApiConfig("orders", policies=sections(inbound=[{"set-vairable": {}}]))])
    assert len(errors) == 1
    assert errors[0].startswith("apis[0].policies.inbound[0]: unknown policy set-vairable "
                                "(expected one of ")
    assert "choose" in errors[0] and "set-variable" in errors[0] and "custom" in errors[0]


@pytest.mark.parametrize("section,entry,needle", [
    ("inbound", {"forward-request": {}}, "forward-request: not allowed in inbound (allowed in "
                                         "backend)"),
    ("outbound", {"set-backend-service": {"base-url": "http://x"}},
     "set-backend-service: not allowed in outbound (allowed in inbound, backend)"),
    ("on_error", {"forward-request": {}}, "not allowed in on-error"),
])
def test_policy_in_a_section_apim_does_not_allow(section, entry, needle):
    errors = config_errors([ApiConfig("orders", policies=sections(**{section: [entry]}))])
    assert len(errors) == 1 and needle in errors[0], errors


def test_nested_policies_obey_their_section():
    choose = {"choose": {"when": [{"condition": "true", "policies": [{"forward-request": {}}]}]}}
    errors = config_errors([ApiConfig("orders", policies=sections(inbound=[choose]))])
    assert errors == ["apis[0].policies.inbound[0].choose.when[0].policies[0].forward-request: "
                      "not allowed in inbound (allowed in backend)"]
    assert config_errors([ApiConfig("orders", policies=sections(backend=[choose]))]) == []


@pytest.mark.parametrize("entries,needle", [
    (["base", "base"], "inbound[1]: base may appear only once"),
    ([42], "inbound[0]: expected base or a one-key mapping"),
    ([{"set-variable": {"name": "a", "value": "b"}, "choose": {}}], "inbound[0]: expected base"),
    ([{"choose": {"when": [{"condition": "true", "policies": ["base"]}]}}],
     "when[0].policies[0]: base is only allowed at the top of a section"),
])
def test_entry_shape_errors(entries, needle):
    errors = config_errors([ApiConfig("orders", policies=sections(inbound=entries))])
    assert any(needle in e for e in errors), errors


def test_a_section_must_be_a_list():
    errors = config_errors([ApiConfig("orders", policies={"inbound": "base"})])
    assert errors == ["apis[0].policies.inbound: expected a list of policies"]


def test_every_mistake_at_once_with_its_path():
    bad_var = {"set-variable": {"name": "x", "value": "{nope.x}"}}
    cfg = dict(
        apis=[ApiConfig("a"), ApiConfig("orders", operations=(
            OperationConfig("list"),
            OperationConfig("get", policies=sections(backend=[{"forward-request": {
                "http-version": "3"}}]))),
            policies=sections(inbound=[{"nope": {}}]))],
        products={"starter": ProductConfig("starter", policies=sections(inbound=["base", bad_var]))},
        policies=sections(outbound=[{"choose": {"when": [{"condition": "1 ==", "policies": []}]}}]))
    errors = config_errors(**cfg)
    assert errors == [
        "policies.outbound[0].choose.when[0].condition: expected a value at offset 4, got end "
        "of condition",
        "products.starter.policies.inbound[1].set-variable.value: unknown name 'nope' "
        "(expected one of api, jwt, last-error, operation, product, request, response, "
        "subscription, variables)",
        "apis[1].operations[1].policies.backend[0].forward-request.http-version: expected one "
        "of 1, 2, 2or1",
        errors[3],
    ]
    assert errors[3].startswith("apis[1].policies.inbound[0]: unknown policy nope")
    with pytest.raises(ValueError) as info:
        build_programs(GatewayConfig(apis=tuple(cfg["apis"]), products=cfg["products"],
                                     policies=cfg["policies"]))
    assert str(info.value) == "\n".join(errors)


def test_a_policy_crashing_while_compiling_is_a_config_error():
    errors = config_errors([ApiConfig("orders", policies=sections(inbound=[
        {"helpers:Fail": {"status": "not a number"}}]))])
    assert errors == ["apis[0].policies.inbound[0].helpers:Fail: could not compile "
                      "(ValueError: invalid literal for int() with base 10: 'not a number')"]


def test_check_config_clean():
    assert check_config(GatewayConfig(apis=(ApiConfig("orders"),))) == []
    ctx = make_ctx()
    assert ctx.variables == {}
