"""A config naming `telemetry.otel` on a machine without the extra `apigw_core[otel]` is a
config error that names the extra, from `serve` itself (not a silent gateway without
traces).  The SDK is hidden from the gateway process by an import hook that behaves as
an uninstalled package does (ModuleNotFoundError for `opentelemetry.*`)."""

from __future__ import annotations

import json
import subprocess
import sys

_HIDE = """
import sys
class _NoOtel:
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _NoOtel())
import runpy
sys.argv = ["apigw_core", *sys.argv[1:]]
runpy.run_module("apigw_core", run_name="__main__", alter_sys=True)
"""


def _config(otel: dict | None) -> dict:
    c = {"listeners": [{"bind": "127.0.0.1:0"}], "backends": {"b": {"url": "http://b"}},
         "apis": [{"name": "a", "path": "/a", "backend": "b"}]}
    if otel is not None:
        c["telemetry"] = {"otel": otel}
    return c


def _serve_without_otel(tmp_path, config: dict) -> subprocess.CompletedProcess:
    path = tmp_path / "gw.json"
    path.write_text(json.dumps(config))
    return subprocess.run([sys.executable, "-c", _HIDE, "serve", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_otel_without_the_extra_is_a_config_error(tmp_path):
    r = _serve_without_otel(tmp_path, _config({"endpoint": "http://127.0.0.1:4318/v1/traces"}))
    assert r.returncode != 0
    err = r.stdout + r.stderr
    assert "telemetry.otel" in err and "apigw_core[otel]" in err, err
    assert "Traceback" not in err


def test_the_hook_hides_only_otel(tmp_path):
    # the same hidden SDK with no otel section: the config is fine, so the failure above
    # is the section's (`validate` checks without serving)
    path = tmp_path / "gw.json"
    path.write_text(json.dumps(_config(None)))
    r = subprocess.run([sys.executable, "-c", _HIDE, "validate", str(path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
