"""`python -m apigw_core`: validate (exit codes, messages with paths) and --help."""

from __future__ import annotations

import subprocess
import sys

import pytest


def apigw(*args: str, cwd=None) -> subprocess.CompletedProcess:
    # the timeout only bounds a hang: at load 35 on 2 cores `validate` took 58 s
    return subprocess.run([sys.executable, "-m", "apigw_core", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=180)


GOOD = """\
listeners: [{bind: "127.0.0.1:8080"}, {bind: "127.0.0.1:8081"}]
backends:
  a: {url: "http://127.0.0.1:9001"}
apis:
  - {name: a, path: /a, backend: a}
  - {name: b, path: /b, backend: a}
  - {name: c, path: "", backend: a}
"""


def test_validate_ok(tmp_path):
    f = tmp_path / "gw.yaml"
    f.write_text(GOOD)
    p = apigw("validate", str(f))
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"ok: {f}: 2 listeners, 1 backends, 3 apis\n"


def test_validate_json_relative_path(tmp_path):
    (tmp_path / "gw.json").write_text(
        '{"listeners": [{"bind": "127.0.0.1:0"}], "backends": {}, "apis": []}')
    p = apigw("validate", "gw.json", cwd=tmp_path)
    assert (p.returncode, p.stdout) == (0, "ok: gw.json: 1 listeners, 0 backends, 0 apis\n")


def test_validate_reports_every_error_with_its_path(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(GOOD.replace("backend: a}\n  - {name: b", "backend: x}\n  - {name: b")
                 + "server: {head-timeout: soon}\n")
    p = apigw("validate", str(f))
    assert p.returncode == 2
    assert p.stdout == ""
    assert p.stderr.splitlines() == [
        f"{f}: apis[0].backend: unknown backend 'x'",
        f"{f}: server.head-timeout: invalid duration 'soon' (e.g. 30, 2.5, '30s', '500ms', '1m30s')",
    ]


def test_validate_syntax_error(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text("listeners: [\n")
    p = apigw("validate", str(f))
    assert p.returncode == 2 and p.stderr.startswith(f"{f}: line ")


def test_validate_unreadable_file(tmp_path):
    p = apigw("validate", str(tmp_path / "missing.yaml"))
    assert p.returncode == 1
    assert "cannot read" in p.stderr and "missing.yaml" in p.stderr


def test_serve_with_an_invalid_config_exits_2_before_starting(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("listeners: []\n")
    p = apigw("serve", str(f))
    assert p.returncode == 2
    assert p.stderr == f"{f}: listeners: expected a non-empty list, got list\n"


def test_help_lists_the_commands():
    p = apigw("--help")
    assert p.returncode == 0
    for command in ("serve", "validate", "echo"):
        assert command in p.stdout


@pytest.mark.parametrize("args", [[], ["bogus"], ["serve", "--workers", "0"],
                                  ["echo", "--bind", "nope"], ["validate"]])
def test_bad_arguments_exit_2(args):
    p = apigw(*args)
    assert p.returncode == 2 and "usage: apigw" in p.stderr
