"""Client certificates end to end: mTLS listeners (`request`, `require`), the
`validate-client-certificate` policy, the certificate facts in expressions and the
`x-forwarded-client-cert` header, through a running gateway with curl and httpx.

Every certificate is made here (tests/runtime/mtls_pki.py): a client CA, an unrelated CA,
valid, expired and not-yet-valid client certificates, one revoked by a CRL.  Expected
facts (thumbprints, serial numbers) are computed from the files with hashlib and
cryptography, independently of the gateway's code.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import ssl
import subprocess

import pytest

from mtls_pki import ClientCA, der_of, sha1_upper
from procs import start_gateway
from support import lazy_module, need_binary

httpx = lazy_module("httpx")

_UTC = datetime.timezone.utc


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("mtls-pki")
    ca = ClientCA(d, "client CA")
    other = ClientCA(d, "other CA")
    now = datetime.datetime.now(_UTC)
    p = {
        "ca": ca, "other": other,
        "server": ca.issue("localhost", "localhost", "127.0.0.1"),
        "sni": ca.issue("api.example"),
        "alice": ca.client("alice", org="Contoso", dns=["alice.example"],
                           uris=["spiffe://test/alice"], serial=0x0ABCDEF123),
        "bob": ca.client("bob", org="Contoso"),
        "expired": ca.client("old", not_before=now - datetime.timedelta(days=3),
                             not_after=now - datetime.timedelta(days=1)),
        "future": ca.client("soon", not_before=now + datetime.timedelta(days=1),
                            not_after=now + datetime.timedelta(days=2)),
        "revoked": ca.client("carol", serial=4242),
        "mallory": other.client("mallory"),
    }
    p["crl"] = ca.crl(revoked=[4242])
    return p


def _policy(rules: dict, *extra: dict) -> dict:
    return {"inbound": [{"validate-client-certificate": rules}, *extra]}


@pytest.fixture(scope="module")
def gw(tmp_path_factory, pki, echo):
    ca = str(pki["ca"].pem)
    cert, key = pki["server"]
    tls = {"cert": cert, "key": key}
    facts = {"set-header": {"name": "x-cert", "value": [
        "{request.certificate.thumbprint}|{request.certificate.subject}|"
        "{request.certificate.issuer}|{request.certificate.serial-number}|"
        "{request.certificate.not-after}|{request.certificate.not-before}"]}}
    no_rev = {"validate-revocation": False}
    alice_thumb = sha1_upper(pki["alice"][0]).lower()         # compared case-insensitively
    ca_thumb = hashlib.sha1(der_of(ca)).hexdigest()
    cfg = {
        "listeners": [
            {"bind": "127.0.0.1:0", "protocols": ["http1", "h2"],
             "tls": {**tls, "client-certificate": {"mode": "request", "ca": ca}},
             "forward-client-cert": "sanitize-set"},
            {"bind": "127.0.0.1:0",
             "tls": {**tls, "client-certificate": {"mode": "require", "ca": ca}}},
            {"bind": "127.0.0.1:0"},                                      # plain, sanitize
            {"bind": "127.0.0.1:0", "forward-client-cert": "forward-only"},  # trusted hop
            {"bind": "127.0.0.1:0",                # require + CRL at the handshake, with SNI
             "tls": {**tls, "sni": {"api.example": {"cert": pki["sni"][0], "key": pki["sni"][1]}},
                     "client-certificate": {"mode": "require", "ca": ca, "crl": pki["crl"]}}},
        ],
        "certificates": {"client-ca": {"cert": ca}},
        "certificate-revocation-lists": [pki["crl"]],
        "backends": {"echo": {"url": f"http://127.0.0.1:{echo.port}/e"}},
        "apis": [
            {"name": "v", "path": "/v", "backend": "echo", "policies": _policy(no_rev, facts)},
            {"name": "rev", "path": "/rev", "backend": "echo", "policies": _policy({})},
            {"name": "thumb", "path": "/thumb", "backend": "echo", "policies": _policy(
                {**no_rev, "identities": [{"thumbprint": alice_thumb}]})},
            {"name": "subject", "path": "/subject", "backend": "echo", "policies": _policy(
                {**no_rev, "identities": {"identity": [{"subject": "cn=bob,o=contoso"},
                                                       {"common-name": "nobody"}]}})},
            {"name": "issuer", "path": "/issuer", "backend": "echo", "policies": _policy(
                {**no_rev, "identities": [{"issuer-subject": "CN=client CA",
                                           "issuer-thumbprint": ca_thumb}]})},
            {"name": "issuer-id", "path": "/issuer-id", "backend": "echo", "policies": _policy(
                {**no_rev, "identities": [{"issuer-certificate-id": "client-ca",
                                           "dns-name": "ALICE.example"}]})},
            {"name": "pinned", "path": "/pinned", "backend": "echo", "policies": _policy(
                {**no_rev, "validate-trust": False,
                 "identities": [{"thumbprint": sha1_upper(pki["mallory"][0])}]})},
            {"name": "ignore", "path": "/ignore", "backend": "echo", "policies": _policy(
                {**no_rev, "ignore-error": True})},
            {"name": "lasterr", "path": "/lasterr", "backend": "echo", "policies": {
                **_policy(no_rev), "on-error": [{"set-header": {
                    "name": "x-reason", "value": ["{last-error.reason}"]}}]}},
            {"name": "open", "path": "/open", "backend": "echo"},       # the direct path
        ],
    }
    p = start_gateway(tmp_path_factory.mktemp("mtls-gw"), cfg)
    yield p
    p.stop()


def _curl(gw, port_index: int, path: str, cert=None, *extra: str,
          host: str = "localhost") -> subprocess.CompletedProcess:
    port = gw.ports[port_index]
    args = [need_binary("curl"), "-sS", "--max-time", "30", "-w", "\n%{http_code}",
            "--cacert", str(gw._ca), "--resolve", f"{host}:{port}:127.0.0.1",
            f"https://{host}:{port}{path}", *extra]
    if cert is not None:
        args += ["--cert", cert[0], "--key", cert[1]]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module", autouse=True)
def _ca_on_gw(gw, pki):
    gw._ca = pki["ca"].pem


def _answer(r: subprocess.CompletedProcess) -> tuple[int, str]:
    body, _, code = r.stdout.rpartition("\n")
    return int(code), body


def _echoed(r: subprocess.CompletedProcess) -> dict:
    status, body = _answer(r)
    assert status == 200, (status, body, r.stderr)
    return json.loads(body)["headers"]


# --- the two modes at the handshake ------------------------------------------------------

@pytest.mark.parametrize("who", ["none", "expired", "future", "mallory"])
def test_require_refuses_at_the_handshake(gw, pki, who):
    r = _curl(gw, 1, "/open/x", None if who == "none" else pki[who])
    assert r.returncode != 0, r.stdout
    assert r.stdout.strip() in ("", "000"), r.stdout


@pytest.mark.parametrize("host", ["localhost", "api.example"])   # default and SNI contexts
def test_require_with_a_crl_and_sni(gw, pki, host):
    assert _answer(_curl(gw, 4, "/open/x", pki["alice"], host=host))[0] == 200
    for who in (None, "revoked", "mallory"):
        r = _curl(gw, 4, "/open/x", pki[who] if who else None, host=host)
        assert r.returncode != 0 and r.stdout.strip() in ("", "000"), (who, r.stdout)


def test_require_admits_a_valid_certificate_curl_and_httpx(gw, pki):
    assert _answer(_curl(gw, 1, "/open/x", pki["alice"]))[0] == 200
    ctx = ssl.create_default_context(cafile=str(pki["ca"].pem))
    ctx.load_cert_chain(*pki["alice"])
    with httpx.Client(verify=ctx) as c:
        assert c.get(f"https://localhost:{gw.ports[1]}/open/x").status_code == 200
    ctx = ssl.create_default_context(cafile=str(pki["ca"].pem))
    with httpx.Client(verify=ctx) as c, pytest.raises(httpx.TransportError):
        c.get(f"https://localhost:{gw.ports[1]}/open/x")        # no certificate


@pytest.mark.parametrize("who, message", [
    ("none", "Client certificate not present. Access denied."),
    ("expired", "Client certificate expired at "),
    ("future", "Client certificate is not valid before "),
    ("mallory", "Client certificate is not trusted: "),
])
def test_request_mode_lets_the_policy_answer_403(gw, pki, who, message):
    status, body = _answer(_curl(gw, 0, "/v/x", None if who == "none" else pki[who]))
    assert status == 403
    doc = json.loads(body)
    assert doc["statusCode"] == 403 and doc["message"].startswith(message), doc
    assert doc["message"].endswith("Access denied.")


def test_request_mode_without_policy_admits_anyone(gw, pki):
    assert _answer(_curl(gw, 0, "/open/x"))[0] == 200
    assert _answer(_curl(gw, 0, "/open/x", pki["mallory"]))[0] == 200


def test_ignore_error_goes_on(gw):
    assert _answer(_curl(gw, 0, "/ignore/x"))[0] == 200


def test_the_reason_is_in_last_error(gw, pki):
    r = _curl(gw, 0, "/lasterr/x", pki["expired"], "-D", "-")
    assert "x-reason: ClientCertificateExpired" in r.stdout, r.stdout


# --- facts in expressions ---------------------------------------------------------------

def test_certificate_facts_in_expressions_http1_and_h2(gw, pki):
    from cryptography import x509
    cert = x509.load_pem_x509_certificate(open(pki["alice"][0], "rb").read())
    expected = "|".join([
        sha1_upper(pki["alice"][0]), "CN=alice, O=Contoso", "CN=client CA", "0ABCDEF123",
        cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ")])
    assert _echoed(_curl(gw, 0, "/v/x", pki["alice"]))["x-cert"] == expected
    r = _curl(gw, 0, "/v/x", pki["alice"], "--http2", "-o", "/dev/stdout", "-w",
              "\n%{http_version}")
    assert r.stdout.rstrip().endswith("\n2"), r.stdout[-50:]
    assert json.loads(r.stdout.rpartition("\n")[0].rpartition("\n")[0])["headers"]["x-cert"] \
        == expected


# --- identities ---------------------------------------------------------------------

@pytest.mark.parametrize("path, allowed", [
    ("/thumb/x", {"alice"}),
    ("/subject/x", {"bob"}),
    ("/issuer/x", {"alice", "bob"}),
    ("/issuer-id/x", {"alice"}),
])
def test_identities(gw, pki, path, allowed):
    for who in ("alice", "bob"):
        status, body = _answer(_curl(gw, 0, path, pki[who]))
        assert status == (200 if who in allowed else 403), (who, body)
        if status == 403:
            assert "does not match any allowed identity" in body


def test_validate_trust_false_pins_a_certificate_of_another_ca(gw, pki):
    assert _answer(_curl(gw, 0, "/pinned/x", pki["mallory"]))[0] == 200
    assert _answer(_curl(gw, 0, "/pinned/x", pki["alice"]))[0] == 403


def test_revocation_against_the_crl(gw, pki):
    assert _answer(_curl(gw, 0, "/rev/x", pki["alice"]))[0] == 200
    status, body = _answer(_curl(gw, 0, "/rev/x", pki["revoked"]))
    assert status == 403 and "revoked" in body, body


# --- x-forwarded-client-cert -----------------------------------------------------------

def test_xfcc_set_for_the_client_certificate_and_the_clients_own_dropped(gw, pki):
    der = der_of(pki["alice"][0])
    want = (f"Hash={hashlib.sha256(der).hexdigest()};Subject=\"CN=alice,O=Contoso\";"
            "URI=spiffe://test/alice;DNS=alice.example")
    for path in ("/open/x", "/v/x"):        # direct path and pipeline
        h = _echoed(_curl(gw, 0, path, pki["alice"], "-H", "x-forwarded-client-cert: Hash=forged"))
        assert h["x-forwarded-client-cert"] == want, h
    h = _echoed(_curl(gw, 0, "/open/x", None, "-H", "x-forwarded-client-cert: Hash=forged"))
    assert "x-forwarded-client-cert" not in h


def test_xfcc_of_a_client_dropped_on_a_plain_listener_unless_trusted(gw):
    with httpx.Client() as c:
        forged = {"x-forwarded-client-cert": "Hash=forged"}
        h = c.get(f"http://127.0.0.1:{gw.ports[2]}/open/x", headers=forged).json()["headers"]
        assert "x-forwarded-client-cert" not in h
        h = c.get(f"http://127.0.0.1:{gw.ports[3]}/open/x", headers=forged).json()["headers"]
        assert h["x-forwarded-client-cert"] == "Hash=forged"
