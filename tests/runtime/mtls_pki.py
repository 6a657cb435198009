"""Client certificates for the mTLS tests: a CA (pki.CA) that also issues client
certificates (clientAuth), with chosen validity periods, SANs and serial numbers, and
writes CRLs.  Everything is made by the test with `cryptography`; nothing is shared.
"""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path
from typing import Optional, Sequence

from pki import CA

__all__ = ["ClientCA", "sha1_upper", "der_of"]

_UTC = datetime.timezone.utc


def der_of(pem_path: str) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    return x509.load_pem_x509_certificate(Path(pem_path).read_bytes()).public_bytes(Encoding.DER)


def sha1_upper(pem_path: str) -> str:
    """APIM's thumbprint of a PEM certificate file, computed independently of the code
    under test."""
    return hashlib.sha1(der_of(pem_path)).hexdigest().upper()


class ClientCA(CA):
    """`client(cn, ...)` -> (cert path, key path); `crl(revoked_serials)` -> CRL path."""

    def client(self, cn: str, *, org: Optional[str] = None, dns: Sequence[str] = (),
               uris: Sequence[str] = (), serial: Optional[int] = None,
               not_before: Optional[datetime.datetime] = None,
               not_after: Optional[datetime.datetime] = None,
               password: Optional[bytes] = None, stem: Optional[str] = None) -> tuple[str, str]:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(_UTC)
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name(list(reversed(attrs))))   # O first in DER, CN last
             .issuer_name(self.cert.subject).public_key(key.public_key())
             .serial_number(serial if serial is not None else x509.random_serial_number())
             .not_valid_before(not_before or now - datetime.timedelta(hours=1))
             .not_valid_after(not_after or now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                            critical=False))
        sans = [x509.DNSName(d) for d in dns] + [x509.UniformResourceIdentifier(u) for u in uris]
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = b.sign(self.key, hashes.SHA256())
        stem = stem or cn.replace(" ", "_")
        cert_path, key_path = self.dir / f"{stem}.crt", self.dir / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        enc = (serialization.BestAvailableEncryption(password) if password
               else serialization.NoEncryption())
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8, enc))
        return str(cert_path), str(key_path)

    def crl(self, revoked: Sequence[int] = (), name: str = "ca.crl",
            next_update: Optional[datetime.datetime] = None) -> str:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization

        now = datetime.datetime.now(_UTC)
        b = (x509.CertificateRevocationListBuilder().issuer_name(self.cert.subject)
             .last_update(now - datetime.timedelta(minutes=5))
             .next_update(next_update or now + datetime.timedelta(days=1)))
        for serial in revoked:
            b = b.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial)
                .revocation_date(now - datetime.timedelta(minutes=1)).build())
        path = self.dir / name
        path.write_bytes(b.sign(self.key, hashes.SHA256()).public_bytes(
            serialization.Encoding.PEM))
        return str(path)
