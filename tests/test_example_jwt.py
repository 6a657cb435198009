"""examples/jwt-api.yaml does what its header says: the token in the header opens /orders
(x-user: alice), no token is APIM's 401, and /me trusts the OpenID provider (here the test's
stand-in on the port the example names, rewritten to an ephemeral one): 503 before it ever
answered, 200 once it serves its keys."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "runtime"))
from oidc import Key, Provider, claims  # noqa: E402
from procs import start_echo, start_gateway  # noqa: E402
from support import wait_until  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "jwt-api.yaml"


def test_jwt_example(tmp_path):
    text = EXAMPLE.read_text()
    token = re.search(r"TOKEN=(\S+)", text).group(1)
    echo = start_echo()
    idp = Provider([Key.rsa("idp1")], start=False)
    text = text.replace("127.0.0.1:8081", f"127.0.0.1:{echo.port}")
    text = text.replace("127.0.0.1:8082", f"127.0.0.1:{idp.port}")
    config = yaml.safe_load(text)
    config["listeners"][0]["bind"] = "127.0.0.1:0"
    gw = start_gateway(tmp_path, config)
    try:
        with httpx.Client(base_url=gw.url, timeout=20) as c:
            r = c.get("/orders/7", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text
            assert r.json()["headers"]["x-user"] == "alice"
            assert r.json()["path"] == "/api/7"
            r = c.get("/orders/7")
            assert r.status_code == 401 and r.json() == {"statusCode": 401,
                                                         "message": "JWT not present."}
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.headers["x-error-reason"] == "TokenNotPresent"
            mine = idp.keys[0].sign(claims(sub="carol", aud="api://orders"))
            r = c.get("/me", headers={"Authorization": f"Bearer {mine}"})
            assert r.status_code == 503
            assert r.json()["message"].startswith("The signing keys of the identity "
                                                  "provider could not be loaded")
            idp.up()
            wait_until(lambda: c.get("/me", headers={"Authorization": f"Bearer {mine}"}
                                     ).status_code == 200, message="/me once the IdP is up")
            r = c.get("/me", headers={"Authorization": f"Bearer {mine}"})
            assert r.json()["headers"]["x-user"] == "carol"
    finally:
        gw.stop()
        echo.stop()
        idp.close()
