"""The certificate sections of the config: listener client-certificate, certificates,
ca-certificates, certificate-revocation-lists, backend tls.client-certificate,
forward-client-cert, secret named values; every mistake with its path, no secret in any
message."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("cryptography")

from mtls_pki import ClientCA  # noqa: E402

from apigw_core.gateway.config import ConfigError, json_schema, parse_config  # noqa: E402

SECRET = "pw-9c2f1b7d-secret"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("cfgpki")
    ca = ClientCA(d, "cfg CA")
    return SimpleNamespace(d=d, ca=str(ca.pem), srv=ca.issue("localhost"),
                           enc=ca.client("enc", password=SECRET.encode()),
                           crl=ca.crl([1]), plain=ca.client("plain"))


def base(pki, **top) -> dict:
    cert, key = pki.srv
    return {"listeners": [{"bind": "127.0.0.1:0", "tls": {"cert": cert, "key": key}}],
            "backends": {"b": {"url": "https://127.0.0.1:1"}}, **top}


def errors(data) -> list[str]:
    with pytest.raises(ConfigError) as e:
        parse_config(data)
    return e.value.errors


def test_a_valid_file_builds_the_runtime_shape(pki):
    data = base(pki, **{
        "certificates": {"c": {"cert": pki.enc[0], "key": pki.enc[1], "password": "{{pw}}"}},
        "named-values": {"pw": {"value": SECRET, "secret": True}, "plain": "v"},
        "ca-certificates": [pki.ca], "certificate-revocation-lists": [pki.crl]})
    data["listeners"][0]["tls"]["client-certificate"] = {"mode": "require", "ca": pki.ca,
                                                         "crl": pki.crl}
    data["listeners"][0]["forward-client-cert"] = "append-forward"
    data["listeners"][0]["client-cert-details"] = ["subject", "cert"]
    data["backends"]["b"]["tls"] = {"client-certificate": "c"}
    cfg = parse_config(data)
    lc = cfg.listeners[0]
    assert (lc.tls.client_certificate.mode, lc.tls.client_certificate.ca) == ("require", pki.ca)
    assert lc.forward_client_cert == "append-forward"
    assert lc.client_cert_details == ("subject", "cert")
    b = cfg.backends["b"].tls
    assert (b.client_certificate, b.cert, b.key, b.password) == ("c", pki.enc[0], pki.enc[1], SECRET)
    assert cfg.named_values == {"pw": SECRET, "plain": "v"}
    assert cfg.secret_values == {"pw"}
    assert SECRET not in repr(cfg) and SECRET not in repr(cfg.certificates["c"])
    assert cfg.ca_certificates == (pki.ca,) and cfg.certificate_revocation_lists == (pki.crl,)


def test_defaults_keep_existing_configs(pki):
    cfg = parse_config(base(pki))
    assert cfg.listeners[0].tls.client_certificate is None
    assert cfg.listeners[0].forward_client_cert == "sanitize"
    assert cfg.certificates == {} and cfg.secret_values == frozenset()


def test_mistakes_with_their_paths(pki, tmp_path):
    not_pem = tmp_path / "x.pem"
    not_pem.write_text("hello")
    data = base(pki, **{
        "certificates": {"gone": {"cert": str(tmp_path / "missing.pem")},
                         "junk": {"cert": str(not_pem)},
                         "nokey": {"cert": pki.plain[0]},
                         "locked": {"cert": pki.enc[0], "key": pki.enc[1]},
                         "wrong": {"cert": pki.enc[0], "key": pki.enc[1], "password": "{{pw}}"},
                         "extra": {"cert": pki.plain[0], "key": pki.plain[1], "password": "x"}},
        "named-values": {"pw": {"value": SECRET + "-not", "secret": True}},
        "ca-certificates": [str(not_pem)],
        "certificate-revocation-lists": [pki.ca]})
    data["listeners"][0]["tls"]["client-certificate"] = {"mode": "require"}
    data["listeners"][0]["forward-client-cert"] = "maybe"
    data["backends"]["b"]["tls"] = {"client-certificate": "nope"}
    data["backends"]["c"] = {"url": "https://127.0.0.1:1", "tls": {"client-certificate": "nokey"}}
    errs = errors(data)
    want = [
        "listeners[0].tls.client-certificate.ca: mode require needs ca",
        "listeners[0].forward-client-cert: expected one of sanitize, sanitize-set, "
        "append-forward, forward-only, got 'maybe'",
        "backends.b.tls.client-certificate: unknown certificate 'nope' (certificates: extra, "
        "gone, junk, locked, nokey, wrong)",
        "backends.c.tls.client-certificate: certificate 'nokey' has no key: it cannot be presented",
        "certificates.gone.cert: file not found: ",
        "certificates.junk.cert: no PEM certificate in ",
        "certificates.locked.key: the key is encrypted: password required",
        "certificates.wrong.key: cannot load the key (not a PEM private key, or wrong password?)",
        "certificates.extra.key: the key is not encrypted: remove password",
        "ca-certificates[0]: no PEM certificate in ",
        "certificate-revocation-lists[0]: no CRL (PEM or DER) in ",
    ]
    for w in want:
        assert any(e.startswith(w) for e in errs), (w, errs)
    assert not any(SECRET in e for e in errs)


def test_named_value_shapes(pki):
    errs = errors(base(pki, **{"named-values": {
        "a": {"secret": True}, "b": {"value": 3}, "c": {"value": "x", "secret": "yes"},
        "d": {"value": "x", "hidden": True}}}))
    assert "named-values.a.value: required" in errs
    assert "named-values.b.value: expected string, got int" in errs
    assert "named-values.c.secret: expected bool, got string" in errs
    assert any(e.startswith("named-values.d.hidden: unknown key") for e in errs)


def test_a_secret_in_a_bad_field_is_not_printed(pki):
    data = base(pki, **{"named-values": {"s": {"value": "http://" + SECRET, "secret": True}}})
    data["backends"]["b"]["url"] = "{{s}}/x?y"
    errs = errors(data)
    assert errs and all(SECRET not in e for e in errs) and "{{s}}" in errs[0], errs


def test_schema_lists_the_new_sections():
    props = json_schema()["properties"]
    for key in ("certificates", "ca-certificates", "certificate-revocation-lists"):
        assert key in props
