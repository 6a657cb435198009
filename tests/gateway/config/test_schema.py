"""`apigw schema`: the config's JSON Schema, as an editor would use it.  The schema must
accept what the loader accepts (the demo, the README's example, an APIM-style config) and
reject what it refuses."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
import yaml

from apigw_core.gateway.config import json_schema, load_config

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parents[3]

APIM = """\
named-values: {token: "s3cr3t"}
listeners: [{bind: "127.0.0.1:8080", protocols: [http1, h2c]}]
backends: {orders: {url: "http://127.0.0.1:9001/api", timeout: 30 s, http-version: 2}}
products: {starter: {apis: [orders], policies: {inbound: [base, {set-header: {name: x-tier, value: [starter]}}]}}}
subscriptions:
  - {id: alice, product: starter, primary-key: "k1", secondary-key: "k2"}
  - {id: ops, scope: all-apis, primary-key: "k3", state: suspended}
policies: {on-error: [{set-header: {name: x-token, value: ["{{token}}"]}}]}
apis:
  - name: orders
    path: /orders
    backend: orders
    subscription-required: true
    subscription-key: {header: X-Key, query: key, forward: false}
    operations:
      - {name: get, method: GET, url-template: "/{id}", policies: {backend: [base]}}
server: {head-timeout: 1m30s, max-body: 10 MB, escaped-slashes: reject}
admin: {bind: "127.0.0.1:9901"}
"""


@pytest.fixture(scope="module")
def validator():
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def readme_example() -> dict:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", text, re.S)
    assert block, "README has a yaml example"
    return yaml.safe_load(block[1])


def test_apigw_schema_prints_the_schema():
    p = subprocess.run([sys.executable, "-m", "apigw_core", "schema"], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == json_schema()


def test_the_schema_speaks_kebab_case():
    schema = json_schema()
    assert schema["$schema"].startswith("https://json-schema.org/draft/2020-12")
    server = schema["$defs"]["Server"]["properties"]
    assert "head-timeout" in server and "head_timeout" not in server
    assert server["escaped-slashes"]["enum"] == ["keep", "reject", "unescape"]
    assert server["head-timeout"]["default"] == 10.0           # the dataclass default
    assert set(schema["$defs"]["Policies"]["properties"]) == {"inbound", "backend", "outbound", "on-error"}
    assert {"named-values", "products", "subscriptions", "policies"} <= set(schema["properties"])
    assert schema["required"] == ["listeners"]
    assert {"required": ["url"]} in schema["$defs"]["Backend"]["anyOf"]   # or a pool


def test_the_schema_accepts_the_demo_the_readme_and_an_apim_config(validator, tmp_path):
    with resources.as_file(resources.files("apigw_core") / "demo" / "demo.yaml") as demo:
        configs = {"demo": yaml.safe_load(demo.read_text())}
    configs["readme"] = readme_example()
    configs["apim"] = yaml.safe_load(APIM)
    for name, data in configs.items():
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(data)]
        assert errors == [], name
    f = tmp_path / "gw.yaml"            # and the loader agrees
    f.write_text(APIM)
    assert load_config(f).subscriptions[1].state == "suspended"


@pytest.mark.parametrize("change, where", [
    (lambda d: d.update(bakends={}), []),
    (lambda d: d["server"].update(head_timeout=1), ["server"]),
    (lambda d: d["server"].update({"head-timeout": "soon"}), ["server", "head-timeout"]),
    (lambda d: d["server"].update({"max-connections": True}), ["server", "max-connections"]),
    (lambda d: d["server"].update({"escaped-slashes": "drop"}), ["server", "escaped-slashes"]),
    (lambda d: d["listeners"].clear(), ["listeners"]),
    (lambda d: d["apis"][0].update(protocols=["http2"]), ["apis", 0, "protocols", 0]),
    (lambda d: d["apis"][0]["operations"][0].update(method="G T"), ["apis", 0, "operations", 0, "method"]),
    (lambda d: d["apis"][0]["operations"][0].update({"url-template": "x"}), ["apis", 0, "operations", 0, "url-template"]),
    (lambda d: d["policies"].update(inbund=[]), ["policies"]),
    (lambda d: d["policies"]["on-error"].append({"a": {}, "b": {}}), ["policies", "on-error", 1]),
    (lambda d: d["subscriptions"][0].update(state="paused"), ["subscriptions", 0, "state"]),
    (lambda d: d["backends"]["orders"].update(pool=[]), ["backends", "orders", "pool"]),
    (lambda d: d["backends"]["orders"].pop("url"), ["backends", "orders"]),
])
def test_the_schema_rejects_what_the_loader_refuses(validator, change, where):
    data = yaml.safe_load(APIM)
    change(data)
    errors = list(validator.iter_errors(data))
    assert errors, "the schema accepted it"
    assert [list(e.absolute_path) for e in errors] == [where]
