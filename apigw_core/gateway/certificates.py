"""Client certificates: the facts of one (parsed once per connection), trust, revocation,
and the `x-forwarded-client-cert` element.  Decisions only: bytes in, answers out.

Strategy.  The runtime hands over the DER certificate the client presented (once per TLS
connection); `ClientCertificate.from_der` parses it with `cryptography.x509` and computes
every fact an expression or a policy may ask for, so a request reads attributes.  The
forms are APIM's (.NET's X509Certificate2): `thumbprint` the SHA-1 of the DER in upper-case
hex, `subject` / `issuer` as "CN=client, O=Org" (most specific first, ", " between RDNs),
`serial-number` upper-case hex, `not-before` / `not-after` ISO 8601 UTC.

`TrustStore` holds trusted certificates (a listener's `client-certificate.ca`, the
top-level `ca-certificates`) and CRLs.  Every certificate in it is a trust anchor, as with
OpenSSL's partial-chain mode: a client certificate is trusted when it is in the store, or
when a CA certificate of the store (basicConstraints CA, in its validity period) signed
it.  Python 3.11's ssl module does not give the chain a client sent beyond its own
certificate, so intermediate CAs must be listed in the trust files.  Revocation is checked
against CRL files only (no online CRL or OCSP fetching): a CRL of the certificate's issuer,
signed by it and not past its next update, must be at hand, else the status is unknown and
the check fails.

`xfcc_element` writes Envoy's `x-forwarded-client-cert` element for a certificate:
`Hash=<SHA-256 hex>` then, as configured, `Cert="<URL-encoded PEM>"`, `Subject="<RFC 4514>"`,
`URI=<each URI SAN>`, `DNS=<each DNS SAN>`.
"""

from __future__ import annotations

import datetime
import hashlib
from typing import Iterable, Optional, Sequence
from urllib.parse import quote

__all__ = ["ClientCertificate", "TrustStore", "dn_string", "normalise_dn", "thumbprint",
           "normalise_hex", "xfcc_element"]

_UTC = datetime.timezone.utc


def thumbprint(der: bytes) -> str:
    """APIM's thumbprint: SHA-1 of the DER certificate, upper-case hex."""
    return hashlib.sha1(der).hexdigest().upper()


def dn_string(name) -> str:
    """An x509.Name as .NET writes it: "CN=client, O=Org, C=US" (the most specific RDN
    first, RFC 4514 escaping within each)."""
    return ", ".join(rdn.rfc4514_string() for rdn in reversed(name.rdns))


def normalise_dn(text: str) -> str:
    """For comparing distinguished names as people write them: case-folded, no spaces
    around the `,` `=` `+` separators (escaped ones kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            out.append(text[i:i + 2])
            i += 2
            continue
        if c in ",=+":
            while out and out[-1] == " ":
                out.pop()
            out.append(c)
            i += 1
            while i < n and text[i] == " ":
                i += 1
            continue
        out.append(c)
        i += 1
    return "".join(out).strip().casefold()


def normalise_hex(text: str) -> str:
    """A thumbprint or serial number as written (any case, spaces or colons, leading
    zeros) in one form for comparing."""
    t = "".join(ch for ch in text if ch not in " :-").upper()
    return t.lstrip("0") or "0"


def _iso(t: datetime.datetime) -> str:
    return t.astimezone(_UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ClientCertificate:
    """The facts of one client certificate.  Attribute names are the expression fields
    (`request.certificate.<field>`, with `-` for `_`)."""

    __slots__ = ("der", "cert", "thumbprint", "subject", "issuer", "serial_number",
                 "not_before", "not_after", "not_before_dt", "not_after_dt", "common_name",
                 "dns_names", "uris", "trust", "xfcc", "_checked")

    def __init__(self, der: bytes, trust: Optional["TrustStore"] = None) -> None:
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        cert = x509.load_der_x509_certificate(der)
        self.der = der
        self.cert = cert
        self.thumbprint = thumbprint(der)
        self.subject = dn_string(cert.subject)
        self.issuer = dn_string(cert.issuer)
        serial = cert.serial_number
        hx = format(serial, "X")
        self.serial_number = hx if len(hx) % 2 == 0 else "0" + hx
        self.not_before_dt = cert.not_valid_before_utc
        self.not_after_dt = cert.not_valid_after_utc
        self.not_before = _iso(self.not_before_dt)
        self.not_after = _iso(self.not_after_dt)
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        self.common_name = str(cns[0].value) if cns else None
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            self.dns_names = tuple(san.get_values_for_type(x509.DNSName))
            self.uris = tuple(san.get_values_for_type(x509.UniformResourceIdentifier))
        except x509.ExtensionNotFound:
            self.dns_names, self.uris = (), ()
        self.trust = trust          # the listener's trust store (its client-certificate.ca)
        self.xfcc: Optional[bytes] = None   # our x-forwarded-client-cert element, when asked
        self._checked: dict = {}    # (store id) -> trust verdict, once per connection

    @classmethod
    def from_der(cls, der: bytes, trust: Optional["TrustStore"] = None) -> "ClientCertificate":
        return cls(der, trust)

    def trusted_by(self, stores: Sequence["TrustStore"], now: datetime.datetime
                   ) -> Optional[str]:
        """None when one of `stores` trusts this certificate, else why not.  The chain is
        the same for the whole connection, so the signature work is done once per store
        set; the CA validity periods are checked against `now` every time."""
        key = tuple(id(s) for s in stores)
        issuers = self._checked.get(key)
        if issuers is None:
            issuers = self._checked[key] = [ca for s in stores for ca in s.issuers_of(self)]
        if any(ca is None for ca in issuers):   # the certificate itself is in a store
            return None
        for ca in issuers:
            if ca.not_valid_before_utc <= now <= ca.not_valid_after_utc:
                return None
        if issuers:
            return "the issuing CA certificate is outside its validity period"
        return "the certificate does not chain to a trusted CA"


class TrustStore:
    """Trusted certificates and CRLs (see the module docstring)."""

    def __init__(self, certs: Iterable = (), crls: Iterable = ()) -> None:
        from cryptography import x509

        self.certs = list(certs)
        self._der = {c.public_bytes(_der()) for c in self.certs}
        self._by_subject: dict[bytes, list] = {}
        for c in self.certs:
            try:
                bc = c.extensions.get_extension_for_class(x509.BasicConstraints).value
                is_ca = bc.ca
            except x509.ExtensionNotFound:
                is_ca = c.subject == c.issuer          # an old-style self-signed root
            if is_ca:
                self._by_subject.setdefault(c.subject.public_bytes(), []).append(c)
        self._crls: dict[bytes, list] = {}
        for crl in crls:
            self._crls.setdefault(crl.issuer.public_bytes(), []).append(crl)

    def __bool__(self) -> bool:
        return bool(self.certs or self._crls)

    @property
    def has_crls(self) -> bool:
        return bool(self._crls)

    def issuers_of(self, cc: ClientCertificate) -> list:
        """The store's CA certificates that signed `cc` ([None] when `cc` itself is in the
        store: pinned)."""
        if cc.der in self._der:
            return [None]
        out = []
        for ca in self._by_subject.get(cc.cert.issuer.public_bytes(), ()):
            try:
                cc.cert.verify_directly_issued_by(ca)
            except Exception:   # InvalidSignature, ValueError, TypeError (key types)
                continue
            out.append(ca)
        return out

    def issuer_certificates(self, cc: ClientCertificate) -> list:
        return [c for c in self.issuers_of(cc) if c is not None]

    def revocation(self, cc: ClientCertificate, issuers: Sequence,
                   now: datetime.datetime) -> Optional[str]:
        """None when a CRL of the certificate's issuer says it is not revoked; else why
        the check fails (revoked, or no usable CRL: status unknown)."""
        crls = self._crls.get(cc.cert.issuer.public_bytes(), ())
        usable = False
        for crl in crls:
            if not any(_crl_signed_by(crl, ca) for ca in issuers):
                continue
            nxt = crl.next_update_utc
            if nxt is not None and nxt < now:
                continue
            usable = True
            if crl.get_revoked_certificate_by_serial_number(cc.cert.serial_number) is not None:
                return "the certificate is revoked"
        return None if usable else "the certificate's revocation status is unknown (no " \
                                   "current CRL of its issuer)"


def _crl_signed_by(crl, ca) -> bool:
    try:
        return bool(crl.is_signature_valid(ca.public_key()))
    except Exception:   # a key type that cannot sign CRLs
        return False


def _der():
    from cryptography.hazmat.primitives.serialization import Encoding
    return Encoding.DER


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _value(text: str) -> str:
    """Envoy quotes a value holding a separator (`,` `;` `=`) or a quote."""
    return _quoted(text) if any(c in text for c in ',;="') else text


def xfcc_element(cc: ClientCertificate, details: Sequence[str]) -> bytes:
    """Envoy's x-forwarded-client-cert element for `cc` (see the module docstring)."""
    parts = [f"Hash={hashlib.sha256(cc.der).hexdigest()}"]
    if "cert" in details:
        from cryptography.hazmat.primitives.serialization import Encoding
        pem = cc.cert.public_bytes(Encoding.PEM).decode("ascii")
        parts.append(f"Cert={_quoted(quote(pem, safe=''))}")
    if "subject" in details:
        parts.append(f"Subject={_quoted(cc.cert.subject.rfc4514_string())}")
    if "uri" in details:
        parts.extend(f"URI={_value(u)}" for u in cc.uris)
    if "dns" in details:
        parts.extend(f"DNS={_value(d)}" for d in cc.dns_names)
    # a SAN may hold anything; a field value may not hold CR, LF or NUL
    text = ";".join(parts)
    return "".join(ch for ch in text if ch not in "\r\n\x00").encode("utf-8")
