"""gateway/certificates.py in memory: the facts of a certificate in APIM's forms, trust
(anchors, pinned certificates, CA validity), revocation against CRLs, Envoy's XFCC
element, and the XFCC rules of forward_request_headers."""

from __future__ import annotations

import datetime
import hashlib
from types import SimpleNamespace

import pytest

pytest.importorskip("cryptography")

from mtls_pki import ClientCA, der_of  # noqa: E402

from apigw_core.gateway.certificates import (  # noqa: E402
    ClientCertificate, TrustStore, normalise_dn, normalise_hex, xfcc_element)
from apigw_core.gateway.config._certs import read_certificates, read_crls  # noqa: E402
from apigw_core.gateway.forwarding import RequestIds, forward_request_headers  # noqa: E402

_UTC = datetime.timezone.utc
NOW = datetime.datetime.now(_UTC)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    ca, other = ClientCA(d, "unit CA"), ClientCA(d, "unit other CA")
    return SimpleNamespace(
        d=d, ca=ca, other=other,
        alice=ca.client("alice", org="Contoso, Ltd", dns=["a.example", "b;c.example"],
                        uris=["spiffe://t/alice"], serial=0x00FF01),
        mallory=other.client("mallory"))


def facts(path: str, trust=None) -> ClientCertificate:
    return ClientCertificate.from_der(der_of(path), trust)


def test_facts_in_apim_forms(pki):
    cc = facts(pki.alice[0])
    assert cc.thumbprint == hashlib.sha1(der_of(pki.alice[0])).hexdigest().upper()
    assert cc.subject == r"CN=alice, O=Contoso\, Ltd"
    assert cc.issuer == "CN=unit CA"
    assert cc.serial_number == "FF01"
    assert cc.common_name == "alice"
    assert cc.dns_names == ("a.example", "b;c.example") and cc.uris == ("spiffe://t/alice",)
    assert cc.not_after.endswith("Z") and cc.not_after[:4].isdigit()


@pytest.mark.parametrize("a, b", [
    ("CN=alice, O=Contoso", "cn=alice,o=contoso"),
    ("CN = alice ,  O=Contoso", "CN=alice, O=Contoso"),
    (r"CN=a\, b, O=x", r"cn=a\, b,o=x"),
])
def test_normalise_dn(a, b):
    assert normalise_dn(a) == normalise_dn(b)


def test_normalise_dn_keeps_differences():
    assert normalise_dn("CN=alice, O=A") != normalise_dn("CN=alice, O=B")
    assert normalise_hex("00:ff:01") == normalise_hex("FF01") == "FF01"


def test_trust_by_anchor_pin_and_none(pki):
    store = TrustStore(read_certificates(str(pki.ca.pem)))
    assert facts(pki.alice[0]).trusted_by([store], NOW) is None
    assert "does not chain" in facts(pki.mallory[0]).trusted_by([store], NOW)
    pinned = TrustStore(read_certificates(pki.mallory[0]))    # the certificate itself
    assert facts(pki.mallory[0]).trusted_by([pinned], NOW) is None
    later = NOW + datetime.timedelta(days=30)                 # the CA itself expired then
    assert "validity" in facts(pki.alice[0]).trusted_by([store], later)


def test_a_ca_of_the_same_name_with_another_key_is_not_trusted(pki, tmp_path):
    impostor = ClientCA(tmp_path, "unit CA")                  # same subject, new key
    store = TrustStore(read_certificates(str(impostor.pem)))
    assert facts(pki.alice[0]).trusted_by([store], NOW) is not None


def test_revocation(pki, tmp_path):
    # the time of this test, not NOW (taken at collection): crl() puts last_update 5
    # minutes before its own now, so a stale next_update of NOW - 1 minute is refused
    # by cryptography ("next update ... after the last update") once the run reached
    # this test more than 4 minutes after collecting it (a full tests/runtime run first)
    now = datetime.datetime.now(_UTC)
    cc = facts(pki.alice[0])
    issuers = read_certificates(str(pki.ca.pem))
    revoked = TrustStore(issuers, read_crls(pki.ca.crl([0x00FF01], "r.crl")))
    clean = TrustStore(issuers, read_crls(pki.ca.crl([7], "c.crl")))
    stale = TrustStore(issuers, read_crls(pki.ca.crl(
        [], "s.crl", next_update=now - datetime.timedelta(minutes=1))))
    foreign = TrustStore(issuers, read_crls(pki.other.crl([], "o.crl")))
    assert "revoked" in revoked.revocation(cc, issuers, now)
    assert clean.revocation(cc, issuers, now) is None
    assert "unknown" in stale.revocation(cc, issuers, now)
    assert "unknown" in foreign.revocation(cc, issuers, now)


def test_xfcc_element(pki):
    cc = facts(pki.alice[0])
    h = hashlib.sha256(der_of(pki.alice[0])).hexdigest()
    assert xfcc_element(cc, ()) == f"Hash={h}".encode()
    assert xfcc_element(cc, ("subject", "uri", "dns")) == (
        f'Hash={h};Subject="CN=alice,O=Contoso\\\\, Ltd";URI=spiffe://t/alice;'
        f'DNS=a.example;DNS="b;c.example"').encode()
    assert b'Cert="-----BEGIN%20CERTIFICATE-----' in xfcc_element(cc, ("cert",))


def _fwd(headers, tls):
    out, _ = forward_request_headers(headers, client_ip="192.0.2.1", scheme=b"https",
                                     backend_authority=b"b", new_id=RequestIds(b"x"), tls=tls)
    return [v for n, v in out if n == b"x-forwarded-client-cert"]


def test_forwarding_xfcc_modes():
    client = [(b"x-forwarded-client-cert", b"Hash=aa"), (b"x-forwarded-client-cert", b"Hash=bb")]
    assert _fwd(client, None) == []                                          # sanitize
    mode = SimpleNamespace
    assert _fwd(client, mode(keep_xfcc=False, xfcc=b"Hash=cc")) == [b"Hash=cc"]  # sanitize-set
    assert _fwd(client, mode(keep_xfcc=True, xfcc=b"Hash=cc")) == [b"Hash=aa,Hash=bb,Hash=cc"]
    assert _fwd(client, mode(keep_xfcc=True, xfcc=None)) == [b"Hash=aa,Hash=bb"]  # forward-only
    assert _fwd([], mode(keep_xfcc=True, xfcc=None)) == []
