"""`validate-client-certificate`: the client's TLS certificate against APIM's rules.

Strategy.  Everything the config fixes is prepared at compile time: the trust store of
the top-level `ca-certificates` and `certificate-revocation-lists` (parsed once), the
identities with their values normalised (thumbprints and serial numbers as upper-case hex
without separators or leading zeros, distinguished names case-folded without spaces
around separators), the issuer certificates named by `issuer-certificate-id`.  A request
reads the certificate facts its connection parsed once (`gateway/certificates.py`); the
signature work of the trust check is cached on those facts, so it is done once per
connection, while the time checks run on every request.

Rules (APIM's attributes and defaults): the certificate must be there; `validate-not-before`
and `validate-not-after` (true) check its validity period against now; `validate-trust`
(true) wants a chain to the listener's `client-certificate.ca` or a `ca-certificates`
entry; `validate-revocation` (true) wants a current CRL of the issuer saying it is not
revoked — CRL files only (no online fetching), so a config that leaves it true without
any CRL file is refused rather than silently not checking; then at least one identity
(when listed) must match in every claim it names.  A failure is 403 with the reason in
`last-error` (on-error runs), unless `ignore-error` is true (the request goes on).
"""

from __future__ import annotations

import datetime
from typing import Any, Callable, Optional

from ...certificates import ClientCertificate, TrustStore, normalise_dn, normalise_hex, thumbprint
from ..contract import Context, Policy, PolicyError, Site
from ..registry import register
from ._spec import Spec, describe

__all__ = ["ValidateClientCertificate"]

_CLAIMS = ("thumbprint", "serial-number", "common-name", "subject", "dns-name",
           "issuer-subject", "issuer-thumbprint", "issuer-certificate-id")
_MAX_IDENTITIES = 10    # APIM's limit


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _load_store(config: Any, site: Site) -> TrustStore:
    """The top-level trust: ca-certificates and certificate-revocation-lists (the files
    were checked when the config loaded; read here once per compile)."""
    from ...config._certs import read_certificates, read_crls

    certs, crls = [], []
    for path in getattr(config, "ca_certificates", ()):
        certs += read_certificates(path)
    for path in getattr(config, "certificate_revocation_lists", ()):
        crls += read_crls(path)
    return TrustStore(certs, crls)


def _listeners_have(config: Any, what: str) -> bool:
    for lc in getattr(config, "listeners", ()):
        cc = lc.tls.client_certificate if lc.tls is not None else None
        if cc is not None and getattr(cc, what):
            return True
    return False


class _Identity:
    """One identity: every claim it names must match."""

    __slots__ = ("checks",)

    def __init__(self, checks: list[Callable[[ClientCertificate, list], bool]]) -> None:
        self.checks = checks

    def matches(self, cc: ClientCertificate, issuers: list) -> bool:
        return all(check(cc, issuers) for check in self.checks)


def _claim(name: str, value: str, issuer_cert: Any) -> Callable[[ClientCertificate, list], bool]:
    if name == "thumbprint":
        want = normalise_hex(value)
        return lambda cc, _: normalise_hex(cc.thumbprint) == want
    if name == "serial-number":
        want = normalise_hex(value)
        return lambda cc, _: normalise_hex(cc.serial_number) == want
    if name == "common-name":
        want = value.casefold()
        return lambda cc, _: cc.common_name is not None and cc.common_name.casefold() == want
    if name == "subject":
        want = normalise_dn(value)
        return lambda cc, _: normalise_dn(cc.subject) == want
    if name == "issuer-subject":
        want = normalise_dn(value)
        return lambda cc, _: normalise_dn(cc.issuer) == want
    if name == "dns-name":
        want = value.casefold().rstrip(".")
        return lambda cc, _: any(d.casefold().rstrip(".") == want for d in cc.dns_names)
    if name == "issuer-thumbprint":
        want = normalise_hex(value)
        return lambda cc, issuers: any(normalise_hex(t) == want for t in issuers)
    # issuer-certificate-id: the certificates: entry signed this certificate

    def issued_by(cc: ClientCertificate, _: list) -> bool:
        try:
            cc.cert.verify_directly_issued_by(issuer_cert)
        except Exception:   # InvalidSignature, ValueError (names differ), TypeError
            return False
        return True
    return issued_by


@register
class ValidateClientCertificate(Policy):
    """`validate-client-certificate: {validate-revocation, validate-trust,
    validate-not-before, validate-not-after, ignore-error, identities: [{thumbprint,
    serial-number, common-name, subject, dns-name, issuer-subject, issuer-thumbprint,
    issuer-certificate-id}]}` (APIM's `{identity: [...]}` element shape works too)."""

    name = "validate-client-certificate"
    sections = frozenset({"inbound"})
    now: Callable[[], datetime.datetime] = staticmethod(_utcnow)   # tests may replace it

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        s = Spec(spec, site, ("validate-revocation", "validate-trust", "validate-not-before",
                              "validate-not-after", "ignore-error", "identities"))
        config = getattr(site, "config", None)
        self.revocation = s.flag("validate-revocation", True)
        self.trust = s.flag("validate-trust", True)
        self.not_before = s.flag("validate-not-before", True)
        self.not_after = s.flag("validate-not-after", True)
        self.ignore_error = s.flag("ignore-error", False)
        self.store = _load_store(config, site) if config is not None else TrustStore()
        if self.trust and not self.store.certs and not _listeners_have(config, "ca"):
            s.error("validate-trust is true (APIM's default) but no CA is configured: add "
                    "ca-certificates or a listener's client-certificate.ca, or set "
                    "validate-trust: false", "validate-trust")
        if self.revocation and not self.store.has_crls and not _listeners_have(config, "crl"):
            s.error("validate-revocation is true (APIM's default) and is checked against CRL "
                    "files only (no online CRL or OCSP fetching): add "
                    "certificate-revocation-lists (or a listener's client-certificate.crl), "
                    "or set validate-revocation: false", "validate-revocation")
        self.identities = self._identities(s, site, config)

    def _identities(self, s: Spec, site: Site, config: Any) -> list[_Identity]:
        raw = s.raw("identities")
        if isinstance(raw, dict) or hasattr(raw, "keys"):     # APIM's {identity: [...]}
            extra = [k for k in raw if k != "identity"]
            for k in extra:
                s.error("unknown attribute (expected identity)", f"identities.{k}")
            raw = raw.get("identity")
            prefix = "identities.identity"
        else:
            prefix = "identities"
        items = () if raw is None else (tuple(raw) if isinstance(raw, (list, tuple)) else (raw,))
        if len(items) > _MAX_IDENTITIES:
            s.error(f"at most {_MAX_IDENTITIES} identities (APIM's limit)", prefix)
        certs = getattr(config, "certificates", None) or {}
        out = []
        for i, ident in enumerate(items):
            key = f"{prefix}[{i}]"
            if not hasattr(ident, "items"):
                s.error(f"expected a mapping of {', '.join(_CLAIMS)}, got {describe(ident)}", key)
                continue
            checks = []
            for name, value in ident.items():
                if name not in _CLAIMS:
                    s.error(f"unknown attribute (expected one of {', '.join(_CLAIMS)})",
                            f"{key}.{name}")
                    continue
                if not isinstance(value, (str, int)) or isinstance(value, bool) or value == "":
                    s.error(f"expected a non-empty string, got {describe(value)}", f"{key}.{name}")
                    continue
                issuer = None
                if name == "issuer-certificate-id":
                    entry = certs.get(str(value))
                    if entry is None:
                        known = ", ".join(sorted(certs)) or "none declared"
                        s.error(f"unknown certificate {str(value)!r} (certificates: {known})",
                                f"{key}.{name}")
                        continue
                    from ...config._certs import read_certificates
                    issuer = read_certificates(entry.cert)[0]
                checks.append(_claim(name, str(value), issuer))
            if not ident:
                s.error("an identity names at least one claim", key)
            elif checks:
                out.append(_Identity(checks))
        return out

    def _fail(self, reason: str, message: str) -> None:
        if not self.ignore_error:
            raise PolicyError(403, reason, message + " Access denied.")

    def apply(self, ctx: Context) -> None:
        cc: Optional[ClientCertificate] = ctx.request.tls
        if cc is None:
            return self._fail("ClientCertificateNotPresent", "Client certificate not present.")
        now = self.now()
        if self.not_before and now < cc.not_before_dt:
            return self._fail("ClientCertificateNotYetValid",
                              f"Client certificate is not valid before {cc.not_before}.")
        if self.not_after and now > cc.not_after_dt:
            return self._fail("ClientCertificateExpired",
                              f"Client certificate expired at {cc.not_after}.")
        stores = [st for st in (cc.trust, self.store) if st]
        if self.trust:
            why = cc.trusted_by(stores, now)
            if why is not None:
                return self._fail("ClientCertificateNotTrusted",
                                  f"Client certificate is not trusted: {why}.")
        issuers = self._issuers(cc, stores)
        if self.revocation:
            verdicts = [st.revocation(cc, issuers, now) for st in stores if st.has_crls]
            revoked = [v for v in verdicts if v is not None and "revoked" in v.split()]
            if revoked or not any(v is None for v in verdicts):
                why = revoked[0] if revoked else (verdicts[0] if verdicts else
                                                  "no CRL configured")
                return self._fail("ClientCertificateRevoked" if revoked else
                                  "ClientCertificateRevocationUnknown",
                                  f"Client certificate failed the revocation check: {why}.")
        if self.identities:
            thumbs = [thumbprint(c.public_bytes(_der())) for c in issuers]
            if not any(ident.matches(cc, thumbs) for ident in self.identities):
                return self._fail("ClientCertificateIdentityMismatch",
                                  "Client certificate does not match any allowed identity.")
        return None

    def _issuers(self, cc: ClientCertificate, stores: list) -> list:
        key = ("issuers",) + tuple(id(st) for st in stores)
        found = cc._checked.get(key)
        if found is None:
            found = cc._checked[key] = [c for st in stores for c in st.issuer_certificates(cc)]
        return found


def _der():
    from cryptography.hazmat.primitives.serialization import Encoding
    return Encoding.DER
