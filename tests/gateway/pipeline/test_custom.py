"""Custom policies: a user's class named by class path, both spellings, load errors with
their path, and the example in examples/."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from apigw_core.gateway.pipeline import Programs

from helpers import (
    ApiConfig, GatewayConfig, config_errors, make_ctx, one_api, run_program, sections,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

MODULE = '''
from apigw_core.gateway.pipeline import Answer, Policy

class Hello(Policy):
    name = "hello"
    sections = frozenset({"inbound", "outbound"})

    def __init__(self, spec, site):
        super().__init__(spec, site)
        self.text = site.template(spec.get("text", "hi"), "text")

    def apply(self, ctx):
        return Answer(200, (), self.text.render(ctx).encode())

class NotAPolicy:
    pass
'''


@pytest.fixture
def usermod(tmp_path, monkeypatch):
    name = f"usermod_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_custom_entry(usermod):
    prog = one_api(inbound=[{"custom": {"class": f"{usermod}:Hello", "text": "hi {request.ip}"}}])
    result, _, _ = run_program(prog)
    assert result.answer.body == b"hi 127.0.0.1"
    assert prog.inbound[0].name == "hello"


@pytest.mark.parametrize("spelling", ["{m}:Hello", "{m}.Hello"])
def test_class_path_as_the_policy_name(usermod, spelling):
    prog = one_api(inbound=[{spelling.format(m=usermod): {"text": "x"}}])
    result, _, _ = run_program(prog)
    assert result.answer.body == b"x"


def test_custom_policy_sections_are_enforced(usermod):
    errors = config_errors([ApiConfig("a", policies=sections(backend=[
        {"custom": {"class": f"{usermod}:Hello"}}]))])
    assert errors == ["apis[0].policies.backend[0].custom: not allowed in backend (allowed in "
                      "inbound, outbound)"]


@pytest.mark.parametrize("body,needle", [
    ({"class": "no_such_module_xyz:P"}, "custom.class: cannot import no_such_module_xyz "
                                        "(ModuleNotFoundError: No module named "
                                        "'no_such_module_xyz')"),
    ({"class": "{m}:Missing"}, "custom.class: module {m} has no Missing"),
    ({"class": "{m}:NotAPolicy"}, "custom.class: {m}:NotAPolicy is not a subclass of "
                                  "apigw_core.gateway.pipeline.Policy"),
    ({"class": "justaname"}, "custom.class: expected module:Class or module.Class"),
    ({"text": "no class"}, "custom.class: expected a mapping with class"),
    ({"class": "{m}:Hello", "text": "{bad"}, "custom.text: unclosed {"),
])
def test_load_errors_have_their_path(usermod, body, needle):
    body = {k: v.replace("{m}", usermod) if k == "class" else v for k, v in body.items()}
    errors = config_errors([ApiConfig("a", policies=sections(inbound=[{"custom": body}]))])
    assert len(errors) == 1
    assert errors[0].startswith("apis[0].policies.inbound[0].")
    assert needle.replace("{m}", usermod) in errors[0], errors


def test_a_module_that_raises_on_import_is_a_config_error(tmp_path, monkeypatch):
    (tmp_path / "explodes_on_import.py").write_text("raise RuntimeError('kaput')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    errors = config_errors([ApiConfig("a", policies=sections(inbound=[
        {"explodes_on_import:P": {}}]))])
    assert errors == ["apis[0].policies.inbound[0].explodes_on_import:P: cannot import "
                      "explodes_on_import (RuntimeError: kaput)"]


def test_module_beside_the_config_file(tmp_path):
    (tmp_path / "beside_cfg_mod.py").write_text(textwrap.dedent(MODULE))
    cfg_file = tmp_path / "gw.yaml"
    cfg_file.write_text("# the config\n")
    api = ApiConfig("a", policies=sections(inbound=[{"custom": {"class": "beside_cfg_mod:Hello"}}]))
    errors = Programs(GatewayConfig(apis=(api,))).errors       # not on sys.path
    assert len(errors) == 1 and "cannot import beside_cfg_mod" in errors[0]
    assert Programs(GatewayConfig(apis=(api,), source=str(cfg_file))).errors == []


# --- the example ----------------------------------------------------------------------------------

def example_config() -> GatewayConfig:
    """examples/custom-policy.yaml in the stand-in config classes."""
    path = EXAMPLES / "custom-policy.yaml"
    raw = yaml.safe_load(path.read_text())
    apis = tuple(ApiConfig(a["name"], path=a["path"], backend=a["backend"],
                           policies=a.get("policies") or {}) for a in raw["apis"])
    return GatewayConfig(apis=apis, backends=raw["backends"], source=str(path))


def test_example_loads_and_routes_by_tenant():
    programs = Programs(example_config())
    assert programs.errors == []
    prog = programs.get("orders")
    _, ctx, driver = run_program(prog, make_ctx(headers={"X-Tenant": "Globex"}))
    assert ctx.backend_id == "globex" and (b"x-tenant", b"globex") in ctx.response_headers
    result, ctx, driver = run_program(prog, make_ctx())
    assert result.kind == "error" and driver.commands == []
    assert ctx.response.status == 400
    assert json.loads(ctx.response.body)["message"] == "Unknown or missing tenant in x-tenant."
    assert ctx.response.headers.get(b"x-error-reason") == b"TenantNotFound"


def test_example_reports_bad_specs():
    cfg = example_config()
    api = cfg.apis[0]
    bad = {"inbound": [{"custom": {"class": "custom_policy:TenantRouting",
                                   "tenants": {"acme": "nowhere"}, "colour": "red"}}]}
    errors = Programs(GatewayConfig(apis=(ApiConfig(api.name, policies=bad),),
                                    backends=cfg.backends, source=cfg.source)).errors
    assert errors == [
        "apis[0].policies.inbound[0].custom.colour: unknown attribute (expected one of header, "
        "tenants, default)",
        "apis[0].policies.inbound[0].custom.tenants.acme: unknown backend 'nowhere'"]
