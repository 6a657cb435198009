"""The config's certificate sections: client certificates on listeners (mTLS), trusted CAs
and revocation lists for `validate-client-certificate`, the `certificates:` store used by
`authentication-certificate` and backend `tls.client-certificate`, and secret named values.

Strategy.  The pydantic models here declare the file's shape (`_schema.py` adds one field
line per section that uses them); the frozen dataclasses are what the runtime and the
policies read (`_build.py` fills them).  Files are checked when the config is loaded, as
everywhere else: they must exist, a certificate or CA file must hold at least one PEM
certificate, a CRL file a PEM or DER CRL, and a key must load (with its password, which
is never printed: a wrong one is "cannot load the key (wrong password?)").  Parsing uses
`cryptography`, as the runtime will, so a file that validates also loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal, Optional

from pydantic import Field, StrictBool, StrictStr, ValidationInfo, model_validator

from ._values import _Invalid, _kind

__all__ = ["ClientCertificateConfig", "CertificateConfig", "XFCC_DETAILS",
           "ListenerClientCertificate", "CertificateEntry", "NamedValue", "ca_file",
           "crl_file", "read_certificates", "read_crls"]

XFCC_DETAILS = ("subject", "uri", "dns", "cert")
XFCC_MODES = ("sanitize", "sanitize-set", "append-forward", "forward-only")


# --- the runtime's shape ---------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ClientCertificateConfig:
    """A TLS listener's `client-certificate`: `none` (not asked for), `request` (asked for,
    any certificate accepted at the handshake; policies decide), `require` (the handshake
    fails without a certificate that chains to `ca` and is in its validity period)."""

    mode: str = "none"
    ca: Optional[str] = None          # PEM bundle: the trust for this listener
    crl: Optional[str] = None         # PEM/DER CRL file (require: checked at the handshake)


@dataclass(frozen=True, slots=True)
class CertificateConfig:
    """One entry of the top-level `certificates:` store (APIM's certificate-id)."""

    id: str
    cert: str
    key: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)   # a secret: never printed


# --- file checks (cryptography, imported when a file is checked) -------------------------

def read_certificates(path: str) -> list:
    """Every certificate of a PEM file (x509.Certificate objects); _Invalid when none."""
    from cryptography import x509

    with open(path, "rb") as f:
        data = f.read()
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        try:
            certs = [x509.load_der_x509_certificate(data)]
        except ValueError:
            raise _Invalid(f"no PEM certificate in {path}") from None
    return certs


def read_crls(path: str) -> list:
    """The CRLs of a file (PEM, one or more, or one DER); _Invalid when none."""
    from cryptography import x509

    with open(path, "rb") as f:
        data = f.read()
    if b"-----BEGIN X509 CRL-----" in data:
        out = []
        for chunk in data.split(b"-----END X509 CRL-----")[:-1]:
            pem = chunk[chunk.index(b"-----BEGIN X509 CRL-----"):] + b"-----END X509 CRL-----\n"
            try:
                out.append(x509.load_pem_x509_crl(pem))
            except ValueError:
                raise _Invalid(f"a CRL in {path} does not parse") from None
        return out
    try:
        return [x509.load_der_x509_crl(data)]
    except ValueError:
        raise _Invalid(f"no CRL (PEM or DER) in {path}") from None


def _path(v: object, info: ValidationInfo) -> str:
    from ._schema import _file
    return _file(v, info)


def ca_file(v: object, info: ValidationInfo) -> str:
    path = _path(v, info)
    read_certificates(path)
    return path


def crl_file(v: object, info: ValidationInfo) -> str:
    path = _path(v, info)
    read_crls(path)
    return path


# --- the file's shape -------------------------------------------------------------------

# _schema imports this module once _Section, _leaf and File exist (its listeners part).
from ._schema import File, _leaf, _Section   # noqa: E402

CaFile = _leaf(ca_file, {"type": "string", "minLength": 1}, str)
CrlFile = _leaf(crl_file, {"type": "string", "minLength": 1}, str)


class ListenerClientCertificate(_Section):
    """mTLS on a TLS listener"""

    mode: Literal["none", "request", "require"] = "none"
    """none | request (any certificate is taken; validate-client-certificate decides) |
    require (the handshake fails without a valid chain to `ca`)"""
    ca: Optional[CaFile] = None
    """PEM bundle of the CAs that issue client certificates"""
    crl: Optional[CrlFile] = None
    """certificate revocation list (PEM or DER)"""

    @model_validator(mode="after")
    def _ca_for_require(self) -> "ListenerClientCertificate":
        if self.mode == "require" and self.ca is None:
            raise _Invalid("mode require needs ca (the CAs whose certificates are accepted)",
                           at=("ca",))
        return self


class CertificateEntry(_Section):
    cert: CaFile
    """PEM certificate (chain)"""
    key: Optional[File] = None
    """PEM private key (needed to present the certificate: authentication-certificate)"""
    password: Optional[StrictStr] = None
    """the key's password; use a secret named value"""

    @model_validator(mode="after")
    def _key_loads(self) -> "CertificateEntry":
        if self.password is not None and self.key is None:
            raise _Invalid("password without key", at=("password",))
        if self.key is not None:
            from cryptography.hazmat.primitives.serialization import load_pem_private_key
            with open(self.key, "rb") as f:
                data = f.read()
            pw = self.password.encode("utf-8") if self.password is not None else None
            try:
                load_pem_private_key(data, pw)
            except TypeError:   # encrypted without a password, or a password for a plain key
                raise _Invalid("the key is encrypted: password required" if pw is None else
                               "the key is not encrypted: remove password", at=("key",)) from None
            except ValueError:
                raise _Invalid("cannot load the key (not a PEM private key, or wrong "
                               "password?)", at=("key",)) from None
        return self


class NamedValue(_Section):
    value: StrictStr
    secret: StrictBool = False
    """kept out of logs, GET /config and error messages"""


def _named_value(v: object) -> "str | NamedValue":
    """A named value: a string, or {value: string, secret: bool}."""
    if isinstance(v, str):
        return v
    if not isinstance(v, dict):
        raise _Invalid(f"expected string, got {_kind(v)}")  # or {value, secret}
    for k in v:
        if k not in ("value", "secret"):
            raise _Invalid("unknown key (expected one of: value, secret)", at=(k,))
    if "value" not in v:
        raise _Invalid("required", at=("value",))
    if not isinstance(v["value"], str):
        raise _Invalid(f"expected string, got {_kind(v['value'])}", at=("value",))
    if not isinstance(v.get("secret", False), bool):
        raise _Invalid(f"expected bool, got {_kind(v['secret'])}", at=("secret",))
    return NamedValue(value=v["value"], secret=v.get("secret", False))


NamedValueEntry = _leaf(_named_value, {"anyOf": [
    {"type": "string"}, {"type": "object", "required": ["value"], "additionalProperties": False,
                         "properties": {"value": {"type": "string"},
                                        "secret": {"type": "boolean"}}}]})


ForwardClientCert = Literal["sanitize", "sanitize-set", "append-forward", "forward-only"]
ClientCertDetails = Annotated[list[Literal["subject", "uri", "dns", "cert"]],
                              Field(max_length=4)]


def certificate_problems(raw: dict) -> list:
    """References to the `certificates:` store (backends' tls.client-certificate) that name
    nothing, or a certificate without a key (it cannot be presented)."""
    from ._errors import Problem

    certs = raw.get("certificates")
    certs = certs if isinstance(certs, dict) else {}
    backends = raw.get("backends")
    out = []
    for name, b in (backends.items() if isinstance(backends, dict) else ()):
        tls = b.get("tls") if isinstance(b, dict) else None
        cid = tls.get("client-certificate") if isinstance(tls, dict) else None
        if not isinstance(cid, str) or not cid:
            continue
        loc = ("backends", name, "tls", "client-certificate")
        if cid not in certs:
            known = ", ".join(sorted(map(str, certs))) or "none declared"
            out.append(Problem(loc, f"unknown certificate {cid!r} (certificates: {known})"))
        elif isinstance(certs[cid], dict) and "key" not in certs[cid]:
            out.append(Problem(loc, f"certificate {cid!r} has no key: it cannot be presented"))
    return out
