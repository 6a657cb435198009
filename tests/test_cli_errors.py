"""`python -m apigw_core` when things go wrong: one line that says what, a documented exit
status, never a traceback (issue 8, defects 5 and 6), and `--version`.

Ports are held by the test itself (a listening socket on 127.0.0.1:0), so the gateway
surely cannot have them; 192.0.2.1 (TEST-NET-1, RFC 5737) is an address no test machine
has."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import apigw_core

NOT_LOCAL = "192.0.2.1"


def apigw(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "apigw_core", *args], capture_output=True,
                          text=True, timeout=timeout)


def apigw_patched(patch: str, *args: str) -> subprocess.CompletedProcess:
    """The CLI in a fresh interpreter after running `patch` (Python source)."""
    code = f"{patch}\nimport sys\nfrom apigw_core.cli import main\nsys.exit(main({list(args)!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=180)   # bounds a hang only (a busy machine is slow)


@pytest.fixture
def held_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def _config(tmp_path: Path, **parts) -> str:
    cfg = {"listeners": [{"bind": "127.0.0.1:0"}],
           "backends": {"b": {"url": "http://127.0.0.1:9"}},
           "apis": [{"name": "root", "path": "", "backend": "b"}]}
    cfg.update(parts)
    path = tmp_path / "gw.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def _one_line(p: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in p.stderr, p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    return lines[0]


# -- a port that cannot be had -------------------------------------------------------------

@pytest.mark.parametrize("workers", [1, 2])
def test_serve_on_a_port_in_use(tmp_path, held_port, workers):
    cfg = _config(tmp_path, listeners=[{"bind": f"127.0.0.1:{held_port}"}])
    p = apigw("serve", cfg, "--workers", str(workers))
    assert p.returncode == 1
    assert _one_line(p) == f"apigw: cannot listen on 127.0.0.1:{held_port}: address already in use"
    assert "listening on" not in p.stdout


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_with_the_admin_port_in_use(tmp_path, held_port, workers):
    cfg = _config(tmp_path, admin={"bind": f"127.0.0.1:{held_port}"})
    p = apigw("serve", cfg, "--workers", str(workers))
    assert p.returncode == 1
    assert _one_line(p) == f"apigw: cannot listen on 127.0.0.1:{held_port}: address already in use"


def test_serve_on_an_address_that_is_not_local(tmp_path):
    p = apigw("serve", _config(tmp_path, listeners=[{"bind": f"{NOT_LOCAL}:8080"}]))
    assert p.returncode == 1
    assert _one_line(p) == f"apigw: cannot listen on {NOT_LOCAL}:8080: cannot assign requested address"


def test_echo_on_a_port_in_use(held_port):
    p = apigw("echo", "--bind", f"127.0.0.1:{held_port}")
    assert p.returncode == 1
    assert _one_line(p) == f"apigw: cannot listen on 127.0.0.1:{held_port}: address already in use"


def test_echo_on_an_address_that_is_not_local():
    p = apigw("echo", "--bind", f"{NOT_LOCAL}:8081")
    assert p.returncode == 1
    assert _one_line(p) == f"apigw: cannot listen on {NOT_LOCAL}:8081: cannot assign requested address"


# -- a worker that cannot start: said once, and no restarts ---------------------------------

@pytest.mark.parametrize("workers", [1, 3])
def test_a_tls_certificate_that_does_not_load(tmp_path, workers):
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n")
    # validate checks that the files exist; only loading them finds them broken
    cfg = _config(tmp_path, listeners=[{"bind": "127.0.0.1:0",
                                        "tls": {"cert": str(junk), "key": str(junk)}}])
    assert apigw("validate", cfg).returncode == 0
    p = apigw("serve", cfg, "--workers", str(workers))
    assert p.returncode == 1
    line = _one_line(p)  # each of the 3 workers failed; the supervisor says it once
    assert re.fullmatch(r"apigw: listener 127\.0\.0\.1:\d+: cannot load its TLS "
                        r"certificate or key: .+", line), line
    assert "restarting" not in p.stderr and "listening on" not in p.stdout


def test_a_backend_ca_file_that_does_not_load(tmp_path):
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")
    cfg = _config(tmp_path, backends={"b": {"url": "https://127.0.0.1:9",
                                            "tls": {"ca": str(junk)}}})
    p = apigw("serve", cfg)
    assert p.returncode == 1
    assert _one_line(p).startswith("apigw: backend b: cannot load its TLS CA file: ")


# -- validate never shows a traceback --------------------------------------------------------

def test_validate_reports_a_config_module_failure_in_one_line(tmp_path):
    f = tmp_path / "gw.yaml"
    f.write_text("listeners: [{bind: '127.0.0.1:0'}]\nbackends: {}\napis: []\n")
    patch = ("import apigw_core.gateway.config as c\n"
             "def broken(path):\n    raise KeyError('surprise')\n"
             "c.load_config = broken")
    for command in ("validate", "serve"):
        p = apigw_patched(patch, command, str(f))
        assert p.returncode == 2, p.stderr
        assert _one_line(p) == f"apigw: cannot load {f}: KeyError: 'surprise'"


def test_validate_a_bad_ipv6_backend_url(tmp_path):
    f = tmp_path / "gw.yaml"
    f.write_text("listeners: [{bind: '127.0.0.1:0'}]\n"
                 "backends: {b: {url: 'http://[::1'}}\napis: []\n")
    p = apigw("validate", str(f))
    assert p.returncode == 2
    assert str(f) in _one_line(p)  # a config error at backends.b.url, or "cannot load"
    assert "url" in p.stderr or "IPv6" in p.stderr


@pytest.mark.parametrize("name,text", [
    ("deep.json", '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    ("deep.yaml", "a: " + "[" * 100_000 + "]" * 100_000 + "\n"),
], ids=["json", "yaml"])
def test_validate_deeply_nested_input(tmp_path, name, text):
    f = tmp_path / name
    f.write_text(text)
    p = apigw("validate", str(f))
    assert p.returncode == 2
    assert "Traceback" not in p.stderr, p.stderr
    assert p.stderr and all(str(f) in line for line in p.stderr.splitlines()), p.stderr


def test_unreadable_config_message_is_lower_case_like_the_others(tmp_path):
    p = apigw("validate", str(tmp_path))  # a directory
    assert p.returncode == 1
    assert _one_line(p) == f"apigw: cannot read {tmp_path}: is a directory"


# -- the CLI's own arguments speak the config's language ------------------------------------

@pytest.mark.parametrize("bind", ["::1:8081", "127.0.0.1:99999", "bad host:80", ":80"])
def test_echo_bind_is_checked_like_a_listener_bind(tmp_path, bind):
    v = apigw("validate", _config(tmp_path, listeners=[{"bind": bind}]))
    assert v.returncode == 2
    config_says = _one_line(v).split(": ", 2)[2]  # "FILE: listeners[0].bind: MESSAGE"
    p = apigw("echo", "--bind", bind)
    assert p.returncode == 2
    assert p.stderr.splitlines()[-1] == f"apigw echo: error: argument --bind: {config_says}"


# -- --version -------------------------------------------------------------------------------

def test_version():
    p = apigw("--version")
    assert p.returncode == 0, p.stderr
    assert re.fullmatch(r"apigw_core \d+\.\d+\.\d+\S*\n", p.stdout), p.stdout
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", apigw_core.__version__)


def test_version_without_package_metadata():
    patch = ("import importlib.metadata as m\n"
             "def missing(name):\n    raise m.PackageNotFoundError(name)\n"
             "m.version = missing")
    p = apigw_patched(patch, "--version")
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"apigw_core {apigw_core.__version__}\n"


def test_help_mentions_version():
    assert "--version" in apigw("--help").stdout
