"""examples/mtls/ runs as its header says: make-certs.sh (openssl) makes the certificates,
the gateway starts on the example (binds moved to port 0, the echo backend started here),
and the curl lines give the promised answers."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "runtime"))
from procs import start_echo, start_gateway  # noqa: E402
from support import need_binary  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mtls"


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    need_binary("openssl")
    d = tmp_path_factory.mktemp("example-mtls")
    shutil.copy(EXAMPLE / "make-certs.sh", d)
    subprocess.run(["bash", str(d / "make-certs.sh"), str(d)], check=True, timeout=120,
                   capture_output=True)
    config = yaml.safe_load((EXAMPLE / "gateway.yaml").read_text())
    header = (EXAMPLE / "gateway.yaml").read_text().split("\nlisteners:")[0]
    assert "apigw serve examples/mtls/gateway.yaml" in header and "curl " in header
    for listener in config["listeners"]:
        listener["bind"] = "127.0.0.1:0"
        tls = listener["tls"]
        for k in ("cert", "key"):
            tls[k] = str(d / tls[k])
        tls["client-certificate"]["ca"] = str(d / tls["client-certificate"]["ca"])
    echo = start_echo()
    for b in config["backends"].values():
        b["url"] = b["url"].replace("127.0.0.1:8081", f"127.0.0.1:{echo.port}")
    p = start_gateway(d, config)
    p.dir = d
    yield p
    p.stop()
    echo.stop()


def _curl(gw, port: int, *args: str) -> tuple[int, str, int]:
    r = subprocess.run([need_binary("curl"), "-sS", "--max-time", "30", "-w", "\n%{http_code}",
                        "--cacert", "ca.pem", *args, f"https://localhost:{port}/orders/7"],
                       capture_output=True, text=True, cwd=gw.dir, timeout=60)
    body, _, code = r.stdout.rpartition("\n")
    return int(code or 0), body, r.returncode


def test_alice_gets_through_with_her_certificate_in_the_headers(gw):
    status, body, _ = _curl(gw, gw.ports[0], "--cert", "alice.pem", "--key", "alice.key")
    assert status == 200, body
    h = json.loads(body)["headers"]
    assert h["x-client"] == "CN=alice, O=Contoso"
    assert h["x-forwarded-client-cert"].startswith("Hash=")
    assert h["x-forwarded-client-cert"].endswith(';Subject="CN=alice,O=Contoso";DNS=alice.example')
    assert base64.b64decode(h["authorization"].split()[1]) == \
        b"gateway:correct horse battery staple"


def test_without_or_with_a_foreign_certificate_403(gw):
    status, body, _ = _curl(gw, gw.ports[0])
    assert (status, json.loads(body)["message"]) == (403, "Client certificate not present. Access denied.")
    status, body, _ = _curl(gw, gw.ports[0], "--cert", "mallory.pem", "--key", "mallory.key")
    assert status == 403 and "not trusted" in body


def test_require_listener_refuses_at_the_handshake(gw):
    status, _, rc = _curl(gw, gw.ports[1])
    assert rc != 0 and status == 0
    assert _curl(gw, gw.ports[1], "--cert", "alice.pem", "--key", "alice.key")[0] == 200
