"""Throw-away certificates for the TLS end-to-end tests (the approach of test_e2e_tls.py,
shared): a private CA made with the `cryptography` package signs one certificate per name.

    ca = CA(tmp_path)
    cert, key = ca.issue("localhost", "localhost", "127.0.0.1")   # file paths
    ssl.create_default_context(cafile=str(ca.pem))

`cryptography` is imported when a CA is made, not with this module: without the package,
the tests that need certificates are skipped and the rest of their module still runs.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from types import SimpleNamespace

import pytest

__all__ = ["CA"]


def _crypto() -> SimpleNamespace:
    """The parts of `cryptography` used here; skips the calling test if it is missing."""
    pytest.importorskip("cryptography",
                        reason="optional test dependency 'cryptography' missing")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    return SimpleNamespace(x509=x509, hashes=hashes, serialization=serialization, ec=ec,
                           ExtendedKeyUsageOID=ExtendedKeyUsageOID, NameOID=NameOID)


def _name(c: SimpleNamespace, cn: str):
    return c.x509.Name([c.x509.NameAttribute(c.NameOID.COMMON_NAME, cn)])


class CA:
    """A throw-away certificate authority; `issue(cn, *names)` writes cert + key files and
    returns their paths (names: DNS names or IP addresses, `cn` alone by default)."""

    def __init__(self, directory: Path, cn: str = "apigw test CA") -> None:
        self._c = c = _crypto()
        x509, ec, hashes, serialization = c.x509, c.ec, c.hashes, c.serialization
        self.dir = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder().subject_name(_name(c, cn)).issuer_name(_name(c, cn))
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(self.key, hashes.SHA256()))
        self.pem = directory / f"{cn.replace(' ', '_')}.pem"
        self.pem.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, cn: str, *names: str) -> tuple[str, str]:
        c = self._c
        x509, ec, hashes, serialization = c.x509, c.ec, c.hashes, c.serialization
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list = []
        for n in names or (cn,):
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder().subject_name(_name(c, cn)).issuer_name(self.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([c.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(self.key, hashes.SHA256()))
        stem = cn.replace("*", "star")
        cert_path, key_path = self.dir / f"{stem}.pem", self.dir / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return str(cert_path), str(key_path)
