"""Backend credentials end to end: backend mTLS (`authentication-certificate`, backend
`tls.client-certificate`) against a backend that requires a client certificate,
`authentication-basic` as the echo backend sees it, and secret named values that never
show in the gateway's output, `GET /config`, answers or `apigw validate`.

The mTLS backend is http.server over ssl with CERT_REQUIRED (a TLS stack independent of
the gateway's trio + OpenSSL memory-BIO one); it reports the client certificate's CN.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mtls_pki import ClientCA, sha1_upper
from procs import start_gateway
from support import lazy_module, wait_until

httpx = lazy_module("httpx")

KEY_PASSWORD = "kp-7f3a9c1e-secret"
BASIC_PASSWORD = "bp-51d2e8aa-secret"


class MTLSBackend:
    """https on 127.0.0.1, requiring a client certificate of `client_ca`."""

    def __init__(self, cert: str, key: str, client_ca: str) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        ctx.load_verify_locations(cafile=client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                peer = self.connection.getpeercert()
                cn = dict(x[0] for x in peer["subject"])["commonName"] if peer else None
                out = json.dumps({"client-cn": cn, "path": self.path}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.server.handle_error = lambda *a: None     # refused handshakes: expected here
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("cred-pki")
    ca = ClientCA(d, "backend CA")
    return {"ca": ca, "server": ca.issue("localhost", "localhost", "127.0.0.1"),
            "client": ca.client("gateway", password=KEY_PASSWORD.encode()),
            "stranger": ClientCA(d, "stranger CA").client("stranger")}


@pytest.fixture(scope="module")
def backend(pki):
    b = MTLSBackend(*pki["server"], str(pki["ca"].pem))
    yield b
    b.close()


def _config(pki, backend, echo) -> dict:
    ca = str(pki["ca"].pem)
    url = f"https://localhost:{backend.port}"
    cert, key = pki["client"]
    scert, skey = pki["stranger"]
    return {
        "listeners": [{"bind": "127.0.0.1:0"}],
        "admin": {"bind": "127.0.0.1:0"},
        "named-values": {"key-pass": {"value": KEY_PASSWORD, "secret": True},
                         "basic-pass": {"value": BASIC_PASSWORD, "secret": True},
                         "user": "svc-user"},
        "certificates": {"gw-client": {"cert": cert, "key": key, "password": "{{key-pass}}"},
                         "stranger": {"cert": scert, "key": skey}},
        "backends": {
            "mtls": {"url": f"{url}/m", "tls": {"ca": ca}},
            "mtls-short": {"url": f"{url}/s", "tls": {"ca": ca, "client-certificate": "gw-client"}},
            "echo": {"url": f"http://127.0.0.1:{echo.port}/e"},
        },
        "apis": [
            {"name": "none", "path": "/none", "backend": "mtls",
             "policies": {"inbound": [{"set-header": {"name": "x-a", "value": ["1"]}}]}},
            {"name": "by-id", "path": "/by-id", "backend": "mtls", "policies": {"inbound": [
                {"authentication-certificate": {"certificate-id": "gw-client"}}]}},
            {"name": "by-thumb", "path": "/by-thumb", "backend": "mtls", "policies": {"inbound": [
                {"authentication-certificate": {"thumbprint": sha1_upper(cert).lower()}}]}},
            {"name": "wrong", "path": "/wrong", "backend": "mtls", "policies": {"inbound": [
                {"authentication-certificate": {"certificate-id": "stranger"}}]}},
            {"name": "short", "path": "/short", "backend": "mtls-short"},
            {"name": "cleartext", "path": "/cleartext", "backend": "echo", "policies": {
                "inbound": [{"authentication-certificate": {"certificate-id": "gw-client"}}]}},
            {"name": "basic", "path": "/basic", "backend": "echo", "policies": {"inbound": [
                {"authentication-basic": {"username": "{{user}}",
                                          "password": "{{basic-pass}}"}}]}},
            {"name": "basic-expr", "path": "/basic-expr", "backend": "echo", "policies": {
                "inbound": [{"authentication-basic": {
                    "username": "{request.headers.x-user}", "password": "{{basic-pass}}"}}]}},
        ],
    }


@pytest.fixture(scope="module")
def gw(tmp_path_factory, pki, backend, echo):
    p = start_gateway(tmp_path_factory.mktemp("cred-gw"), _config(pki, backend, echo))
    p.cfg_dir = p.proc.args[-1]
    yield p
    p.stop()


def _get(gw, path: str, **kw) -> httpx.Response:
    with httpx.Client(timeout=30) as c:
        return c.get(f"{gw.url}{path}", **kw)


def test_backend_that_requires_a_certificate_without_one_is_502(gw):
    r = _get(gw, "/none/x")
    assert r.status_code == 502
    assert r.json()["statusCode"] == 502


def test_authentication_certificate_presents_it(gw):
    for path in ("/by-id/x", "/by-thumb/x", "/by-id/y"):     # the pool is reused
        r = _get(gw, path)
        assert r.status_code == 200, r.text
        assert r.json()["client-cn"] == "gateway"


def test_a_certificate_the_backend_does_not_trust_is_502(gw):
    assert _get(gw, "/wrong/x").status_code == 502


def test_a_certificate_for_an_http_backend_is_an_error_not_ignored(gw):
    r = _get(gw, "/cleartext/x")
    assert r.json() == {"statusCode": 500,
                        "message": "authentication-certificate needs an https backend"}


def test_backend_tls_client_certificate_shorthand(gw):
    r = _get(gw, "/short/x")
    assert r.status_code == 200, r.text
    assert r.json() == {"client-cn": "gateway", "path": "/s/x"}


def test_authentication_basic_seen_by_the_backend(gw):
    auth = _get(gw, "/basic/x", headers={"authorization": "Bearer client-own"}).json()[
        "headers"]["authorization"]
    assert auth == "Basic " + base64.b64encode(f"svc-user:{BASIC_PASSWORD}".encode()).decode()
    auth = _get(gw, "/basic-expr/x", headers={"x-user": "dyn"}).json()["headers"]["authorization"]
    assert base64.b64decode(auth.split()[1]).decode() == f"dyn:{BASIC_PASSWORD}"
    r = _get(gw, "/basic-expr/x", headers={"x-user": "a:b"})
    assert r.status_code == 500 and BASIC_PASSWORD not in r.text


def _no_secret(text: str) -> None:
    for secret in (KEY_PASSWORD, BASIC_PASSWORD):
        assert secret not in text
        assert base64.b64encode(secret.encode()).decode() not in text


def test_secrets_never_in_output_config_or_errors(gw, tmp_path):
    import pathlib
    cfg_path = pathlib.Path(gw.proc.args[-1])
    good = cfg_path.read_text()
    doc = json.loads(good)
    # a broken reload whose errors sit where the secrets were substituted
    doc["backends"]["echo"]["url"] = "{{basic-pass}}"
    doc["certificates"]["gw-client"]["password"] = "{{basic-pass}}"   # wrong password
    doc["apis"][0]["policies"]["inbound"][0]["set-header"]["name"] = "{{key-pass}} x"
    cfg_path.write_text(json.dumps(doc))
    try:
        admin = f"http://127.0.0.1:{gw.admin_port}"
        with httpx.Client(timeout=30) as c:
            r = c.post(f"{admin}/reload")
            assert r.status_code == 400
            errors = r.json()["last-error"]["errors"]
            assert any("backends.echo.url" in e for e in errors), errors
            assert any("certificates.gw-client.key" in e for e in errors), errors
            config_doc = c.get(f"{admin}/config").text
        _no_secret(r.text)
        _no_secret(config_doc)
        v = subprocess.run([sys.executable, "-m", "apigw_core", "validate", str(cfg_path)],
                           capture_output=True, text=True, timeout=60)
        assert v.returncode == 2 and "backends.echo.url" in v.stdout + v.stderr
        _no_secret(v.stdout + v.stderr)
    finally:
        cfg_path.write_text(good)
    for path in ("/basic/x", "/by-id/x", "/none/x"):
        _get(gw, path)
    assert wait_until(lambda: any("reload" in line for line in gw.output))
    _no_secret("\n".join(gw.output))


def test_backend_mtls_over_http2(tmp_path, pki, echo):
    """An HTTP/2 backend that requires a client certificate: a second gateway (h2 only,
    `require`), which also shows the certificate it was given, in front of the echo."""
    ca = str(pki["ca"].pem)
    cert, key = pki["server"]
    (tmp_path / "back").mkdir()
    back = start_gateway(tmp_path / "back", {
        "listeners": [{"bind": "127.0.0.1:0", "protocols": ["h2"], "tls": {
            "cert": cert, "key": key, "client-certificate": {"mode": "require", "ca": ca}}}],
        "backends": {"echo": {"url": f"http://127.0.0.1:{echo.port}/e"}},
        "apis": [{"name": "e", "path": "", "backend": "echo", "policies": {"inbound": [
            {"set-header": {"name": "x-client", "value": ["{request.certificate.subject}"]}}]}}],
    })
    try:
        url = f"https://localhost:{back.port}"
        ccert, ckey = pki["client"]
        (tmp_path / "front").mkdir()
        front = start_gateway(tmp_path / "front", {
            "listeners": [{"bind": "127.0.0.1:0"}],
            "named-values": {"kp": {"value": KEY_PASSWORD, "secret": True}},
            "certificates": {"c": {"cert": ccert, "key": ckey, "password": "{{kp}}"}},
            "backends": {
                "with": {"url": url, "http-version": "2", "tls": {"ca": ca, "client-certificate": "c"}},
                "without": {"url": url, "http-version": "2", "tls": {"ca": ca}}},
            "apis": [{"name": "w", "path": "/with", "backend": "with"},
                     {"name": "wo", "path": "/without", "backend": "without"},
                     {"name": "p", "path": "/policy", "backend": "without", "policies": {
                         "inbound": [{"authentication-certificate": {"certificate-id": "c"}}]}}],
        })
        try:
            for path in ("/with/x", "/policy/x"):
                r = _get(front, path)
                assert r.status_code == 200, r.text
                doc = r.json()
                assert doc["headers"]["x-client"] == "CN=gateway"
                assert "2 apigw" in doc["headers"]["via"]     # the hop to `back` was HTTP/2
            assert _get(front, "/without/x").status_code == 502
        finally:
            front.stop()
    finally:
        back.stop()
