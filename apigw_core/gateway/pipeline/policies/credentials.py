"""Backend credentials: `authentication-basic` and `authentication-certificate` (APIM).

Strategy.  `authentication-basic` sets the request's `Authorization` to `Basic
base64(username:password)` (RFC 7617) for the backend; both attributes are templates
(named values, often secret ones, are substituted at load), so a constant pair is encoded
once at compile time.  A username with ":" is refused (RFC 7617 §2: the password would
swallow the rest), at load when it is constant, else with a 500 at run time.

`authentication-certificate` names a client certificate for the backend's TLS handshake
(backend mTLS): `certificate-id` (an entry of the top-level `certificates:` store) or
`thumbprint` (the entry whose certificate has it).  The policy only records the choice in
`ctx.backend_certificate`; the runtime picks (or opens) a pool of connections that present
that certificate, one per (backend, certificate).  APIM's `body` / `password` attributes
(a certificate from bytes at run time) are not supported: they are refused at load.
"""

from __future__ import annotations

import base64
from typing import Any, Optional

from ..contract import Context, Policy, PolicyError, Site
from ..registry import register
from ._spec import Spec, header_value

__all__ = ["AuthenticationBasic", "AuthenticationCertificate"]


def _basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode("utf-8"))


@register
class AuthenticationBasic(Policy):
    """`authentication-basic: {username, password}`"""

    name = "authentication-basic"
    sections = frozenset({"inbound"})

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        s = Spec(spec, site, ("username", "password"))
        self._user = s.template("username", required=True)
        self._password = s.template("password", required=True)
        self._const: Optional[bytes] = None
        u, p = self._user, self._password
        if u is not None and u.constant is not None and ":" in u.constant:
            s.error("a username cannot contain ':' (RFC 7617)", "username")
        elif u is not None and p is not None and u.constant is not None \
                and p.constant is not None:
            self._const = _basic(u.constant, p.constant)
        self.reads_request_body = any(getattr(t, "reads_request_body", False) for t in (u, p))

    def apply(self, ctx: Context) -> None:
        value = self._const
        if value is None:
            if self._user is None or self._password is None:
                return None
            user = self._user.render(ctx)
            if ":" in user:
                raise PolicyError(500, "ExpressionValueEvaluationFailure",
                                  "The username of authentication-basic contains ':'.")
            value = header_value(_basic(user, self._password.render(ctx)).decode("ascii"))
        ctx.request.headers.set(b"authorization", (value,))
        return None


@register
class AuthenticationCertificate(Policy):
    """`authentication-certificate: {certificate-id | thumbprint}`"""

    name = "authentication-certificate"
    sections = frozenset({"inbound"})

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        s = Spec(spec, site, ("certificate-id", "thumbprint", "body", "password"))
        config = getattr(site, "config", None)
        certs = getattr(config, "certificates", None) or {}
        for key in ("body", "password"):
            if s.has(key):
                s.error("not supported: name a certificates: entry with certificate-id "
                        "(a certificate from bytes at run time is not)", key)
        cid = s.text("certificate-id")
        thumb = s.text("thumbprint")
        self.certificate_id: Optional[str] = None
        if (cid is None) == (thumb is None):
            if not (s.has("body") or s.has("password")):
                s.error("exactly one of certificate-id and thumbprint is required")
            return
        known = ", ".join(sorted(certs)) or "none declared"
        if cid is not None:
            entry = certs.get(cid)
            if entry is None:
                s.error(f"unknown certificate {cid!r} (certificates: {known})", "certificate-id")
                return
        else:
            from ...certificates import normalise_hex, thumbprint
            from ...config._certs import read_certificates
            from cryptography.hazmat.primitives.serialization import Encoding
            want = normalise_hex(thumb or "")
            entry = next((e for e in certs.values() if normalise_hex(thumbprint(
                read_certificates(e.cert)[0].public_bytes(Encoding.DER))) == want), None)
            if entry is None:
                s.error(f"no certificates: entry has thumbprint {thumb!r}", "thumbprint")
                return
        if entry.key is None:
            s.error(f"certificate {entry.id!r} has no key: it cannot be presented",
                    "certificate-id" if cid is not None else "thumbprint")
            return
        self.certificate_id = entry.id

    def apply(self, ctx: Context) -> None:
        ctx.backend_certificate = self.certificate_id
        return None
