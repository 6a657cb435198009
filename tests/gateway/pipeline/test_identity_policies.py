"""validate-client-certificate, authentication-basic and authentication-certificate in
memory: their load-time errors (with paths), and their decisions on a Context with a
parsed certificate, the clock replaced at the edges of the validity period."""

from __future__ import annotations

import base64
import datetime
from types import SimpleNamespace

import pytest

pytest.importorskip("cryptography")

from mtls_pki import ClientCA, der_of, sha1_upper  # noqa: E402

from apigw_core.gateway.certificates import ClientCertificate, TrustStore  # noqa: E402
from apigw_core.gateway.config import ConfigError, parse_config  # noqa: E402
from apigw_core.gateway.pipeline import Programs  # noqa: E402
from apigw_core.gateway.pipeline.contract import (  # noqa: E402
    Context, Headers, PolicyError, RequestView)
from apigw_core.gateway.pipeline.policies.certificates import (  # noqa: E402
    ValidateClientCertificate)

_UTC = datetime.timezone.utc


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("idp")
    ca, other = ClientCA(d, "policy CA"), ClientCA(d, "policy other CA")
    return SimpleNamespace(d=d, ca=ca, other=other, alice=ca.client("alice", org="Org"),
                           mallory=other.client("mallory"), crl=ca.crl([99]),
                           srv=ca.issue("localhost"))


def config(pki, inbound, **top):
    return {"listeners": [{"bind": "127.0.0.1:0"}],
            "backends": {"b": {"url": "http://127.0.0.1:1"}},
            "apis": [{"name": "a", "path": "/a", "backend": "b",
                      "policies": {"inbound": inbound}}], **top}


def errors(data) -> list[str]:
    with pytest.raises(ConfigError) as e:
        parse_config(data)
    return e.value.errors


def step(data):
    cfg = parse_config(data)
    return Programs(cfg).get("a", None, None).inbound[0].policy


def ctx_with(cert_path=None, trust=None, headers=None) -> Context:
    tls = ClientCertificate.from_der(der_of(cert_path), trust) if cert_path else None
    req = RequestView("GET", "https", "h", "/a/x", "", Headers(list(headers or [])), "1.2.3.4",
                      {}, None, tls)
    return Context(req, "rid")


P = "apis[0].policies.inbound[0]"


def test_apim_defaults_need_a_ca_and_a_crl(pki):
    errs = errors(config(pki, [{"validate-client-certificate": {}}]))
    assert any(e.startswith(f"{P}.validate-client-certificate.validate-trust: ") for e in errs)
    assert any(e.startswith(f"{P}.validate-client-certificate.validate-revocation: ")
               and "CRL files only" in e for e in errs), errs
    # with both the defaults are fine
    parse_config(config(pki, [{"validate-client-certificate": {}}],
                        **{"ca-certificates": [str(pki.ca.pem)],
                           "certificate-revocation-lists": [pki.crl]}))


def test_bad_identities_are_config_errors(pki):
    errs = errors(config(pki, [{"validate-client-certificate": {
        "validate-revocation": False, "validate-trust": False,
        "identities": [{"thumbprint": ""}, {"colour": "red"}, {},
                       {"issuer-certificate-id": "nope"}]}}]))
    q = f"{P}.validate-client-certificate.identities"
    assert f"{q}[0].thumbprint: expected a non-empty string, got string" in errs
    assert any(e.startswith(f"{q}[1].colour: unknown attribute") for e in errs)
    assert f"{q}[2]: an identity names at least one claim" in errs
    assert f"{q}[3].issuer-certificate-id: unknown certificate 'nope' (certificates: none declared)" in errs


def test_validity_edges(pki):
    pol = step(config(pki, [{"validate-client-certificate": {
        "validate-revocation": False, "validate-trust": False}}]))
    cc = ctx_with(pki.alice[0]).request.tls
    for now, ok in ((cc.not_before_dt, True), (cc.not_after_dt, True),
                    (cc.not_before_dt - datetime.timedelta(seconds=1), False),
                    (cc.not_after_dt + datetime.timedelta(seconds=1), False)):
        pol.now = lambda now=now: now
        if ok:
            assert pol.apply(ctx_with(pki.alice[0])) is None
        else:
            with pytest.raises(PolicyError) as e:
                pol.apply(ctx_with(pki.alice[0]))
            assert e.value.status == 403


def test_trust_from_the_listener_store_or_ca_certificates(pki):
    rules = {"validate-client-certificate": {"validate-revocation": False}}
    pol = step(config(pki, [rules], **{"ca-certificates": [str(pki.ca.pem)]}))
    assert pol.apply(ctx_with(pki.alice[0])) is None
    with pytest.raises(PolicyError) as e:
        pol.apply(ctx_with(pki.mallory[0]))
    assert e.value.reason == "ClientCertificateNotTrusted"
    from apigw_core.gateway.config._certs import read_certificates
    listener = TrustStore(read_certificates(str(pki.other.pem)))   # the listener's ca
    assert pol.apply(ctx_with(pki.mallory[0], listener)) is None


def test_identity_any_one_matches(pki):
    pol = step(config(pki, [{"validate-client-certificate": {
        "validate-revocation": False, "validate-trust": False,
        "identities": [{"thumbprint": sha1_upper(pki.mallory[0]).lower(), "common-name": "x"},
                       {"subject": "cn=ALICE, o=org"}]}}]))
    assert pol.apply(ctx_with(pki.alice[0])) is None
    with pytest.raises(PolicyError) as e:
        pol.apply(ctx_with(pki.mallory[0]))     # thumbprint matches, common-name does not
    assert e.value.reason == "ClientCertificateIdentityMismatch"


def test_authentication_basic(pki):
    pol = step(config(pki, [{"authentication-basic": {"username": "u", "password": "{{pw}}"}}],
                      **{"named-values": {"pw": {"value": "p:w", "secret": True}}}))
    ctx = ctx_with(headers=[(b"authorization", b"Bearer x")])
    pol.apply(ctx)
    assert ctx.request.headers.get_all(b"authorization") == [
        b"Basic " + base64.b64encode(b"u:p:w")]
    errs = errors(config(pki, [{"authentication-basic": {"username": "a:b"}}]))
    assert f"{P}.authentication-basic.username: a username cannot contain ':' (RFC 7617)" in errs
    assert f"{P}.authentication-basic.password: required" in errs


def test_authentication_certificate(pki):
    certs = {"certificates": {"full": {"cert": pki.alice[0], "key": pki.alice[1]},
                              "public": {"cert": str(pki.ca.pem)}}}
    pol = step(config(pki, [{"authentication-certificate": {"certificate-id": "full"}}], **certs))
    ctx = ctx_with()
    pol.apply(ctx)
    assert ctx.backend_certificate == "full"
    pol = step(config(pki, [{"authentication-certificate": {
        "thumbprint": sha1_upper(pki.alice[0])}}], **certs))
    pol.apply(ctx)
    assert ctx.backend_certificate == "full"
    q = f"{P}.authentication-certificate"
    for body, want in (
            ({"certificate-id": "nope"}, f"{q}.certificate-id: unknown certificate 'nope' "
                                         "(certificates: full, public)"),
            ({"certificate-id": "public"}, f"{q}.certificate-id: certificate 'public' has no "
                                           "key: it cannot be presented"),
            ({"body": "{request.body}"}, f"{q}.body: not supported"),
            ({}, f"{q}: exactly one of certificate-id and thumbprint is required")):
        errs = errors(config(pki, [{"authentication-certificate": body}], **certs))
        assert any(e.startswith(want) for e in errs), (body, errs)


def test_certificate_expressions_are_checked_at_load(pki):
    errs = errors(config(pki, [{"set-header": {"name": "x", "value": [
        "{request.certificate.colour}"]}}]))
    assert any("request.certificate. one of thumbprint, subject" in e for e in errs), errs
    pol = step(config(pki, [{"set-header": {"name": "x", "value": [
        "{request.certificate.thumbprint}"]}}]))
    ctx = ctx_with(pki.alice[0])
    pol.apply(ctx)
    assert ctx.request.headers.get(b"x") == sha1_upper(pki.alice[0]).encode()
    ctx = ctx_with()
    pol.apply(ctx)
    assert ctx.request.headers.get(b"x") == b""            # no certificate: empty (APIM null)


def test_validate_client_certificate_only_in_inbound(pki):
    data = config(pki, [])
    data["apis"][0]["policies"] = {"outbound": [{"validate-client-certificate": {
        "validate-revocation": False, "validate-trust": False}}]}
    assert any("validate-client-certificate" in e for e in errors(data))


def test_class_is_registered():
    from apigw_core.gateway.pipeline.registry import lookup
    assert lookup("validate-client-certificate") is ValidateClientCertificate
    assert lookup("authentication-basic") is not None
    assert lookup("authentication-certificate") is not None
