"""Client certificates at the TLS listener: the handshake's side of mTLS, and what a
connection hands its requests.

Strategy.  `tls.py` builds the SSL contexts; this module adds the client-certificate part
and, after a handshake, turns the connection's certificate into `ConnectionTLS` (once per
connection, so a request only reads attributes):

- `require`: OpenSSL verifies (CERT_REQUIRED against the listener's `ca`, its CRL checked
  for the leaf when `crl` is set): no certificate, an expired one or one of another CA
  fails the handshake.
- `request`: the certificate is asked for and any one is taken (CERT_OPTIONAL with a
  verify callback that accepts): `validate-client-certificate` decides, with its own
  trust, time and revocation rules, and can answer 403 in APIM's way.  Python's ssl module
  has no verify-callback API, so the callback is set with ctypes on the context's
  SSL_CTX (the same libssl the ssl module uses); before touching it, the pointer is
  checked against the context (its verify mode and options read back through libssl
  must be the context's own), and a mismatch is a startup error, never a guess.

`ConnectionTLS` carries the parsed certificate (`gateway.certificates.ClientCertificate`,
with the listener's trust store attached) and the listener's x-forwarded-client-cert
mode; plain-HTTP connections get one only when their listener trusts the client's XFCC
header (`forward-only`, `append-forward`), so the usual connection carries None.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import ssl
import tempfile
from typing import Any, Optional

from ..gateway.certificates import ClientCertificate, TrustStore, xfcc_element
from ..gateway.config import ListenerConfig

__all__ = ["ListenerCerts", "ConnectionTLS", "configure_client_auth"]

log = logging.getLogger("apigw_core.runtime")

_SSL_VERIFY_PEER = 0x01
_SSL_VERIFY_FAIL_IF_NO_PEER_CERT = 0x02
_VERIFY_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


@_VERIFY_CB
def _accept_any(preverify_ok: int, store_ctx: Any) -> int:
    return 1   # `request` mode: any certificate; validate-client-certificate decides


_libssl: Any = None


def _lib() -> Any:
    """The libssl the ssl module is linked with (found in this process's mappings)."""
    global _libssl
    if _libssl is None:
        path = None
        try:
            with open("/proc/self/maps") as f:
                for line in f:
                    name = line.rsplit(None, 1)[-1]
                    if "/libssl" in name and ".so" in name:
                        path = name
                        break
        except OSError:
            pass
        if path is None:
            path = ctypes.util.find_library("ssl")
        if path is None:
            raise OSError("libssl not found (client-certificate mode request needs it)")
        lib = ctypes.CDLL(path)
        lib.SSL_CTX_get_verify_mode.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_get_verify_mode.restype = ctypes.c_int
        lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_get_options.restype = ctypes.c_uint64
        lib.SSL_CTX_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VERIFY_CB]
        lib.SSL_CTX_set_verify.restype = None
        _libssl = lib
    return _libssl


def _accept_any_certificate(ctx: ssl.SSLContext) -> None:
    """Install `_accept_any` on the context's SSL_CTX (see the module docstring)."""
    lib = _lib()
    ptr = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not ptr or lib.SSL_CTX_get_verify_mode(ptr) != _SSL_VERIFY_PEER \
            or lib.SSL_CTX_get_options(ptr) != int(ctx.options):
        raise OSError("cannot install the client-certificate callback on this Python "
                      "build (use mode require)")
    lib.SSL_CTX_set_verify(ptr, _SSL_VERIFY_PEER, _accept_any)
    if lib.SSL_CTX_get_verify_mode(ptr) != _SSL_VERIFY_PEER:
        raise OSError("the client-certificate callback did not take")


def _load_crl(ctx: ssl.SSLContext, path: str) -> None:
    """A CRL file (PEM or DER) into the context's store: OpenSSL reads CRLs from a PEM
    cafile only, so the CRLs are written out as PEM first."""
    from cryptography.hazmat.primitives.serialization import Encoding
    from ..gateway.config._certs import read_crls

    pem = b"".join(c.public_bytes(Encoding.PEM) for c in read_crls(path))
    fd, tmp = tempfile.mkstemp(suffix=".pem")
    try:
        os.write(fd, pem)
        os.close(fd)
        ctx.load_verify_locations(cafile=tmp)
    finally:
        os.unlink(tmp)
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF


def configure_client_auth(ctx: ssl.SSLContext, lc: ListenerConfig) -> None:
    """The listener's client-certificate settings on one of its SSL contexts (the default
    one and each SNI one: OpenSSL verifies with the context SNI selected)."""
    cc = lc.tls.client_certificate if lc.tls is not None else None
    if cc is None:
        return
    if cc.ca:
        ctx.load_verify_locations(cafile=cc.ca)
    if cc.mode == "require":
        ctx.verify_mode = ssl.CERT_REQUIRED
        if cc.crl:
            _load_crl(ctx, cc.crl)
    else:
        ctx.verify_mode = ssl.CERT_OPTIONAL
        _accept_any_certificate(ctx)


class ConnectionTLS:
    """What one connection tells its requests (see the module docstring)."""

    __slots__ = ("cert", "keep_xfcc", "xfcc")

    def __init__(self, cert: Optional[ClientCertificate], keep_xfcc: bool,
                 xfcc: Optional[bytes]) -> None:
        self.cert = cert              # the client's certificate, parsed; None: none sent
        self.keep_xfcc = keep_xfcc    # the client's own x-forwarded-client-cert goes on
        self.xfcc = xfcc              # our element for it, or None


class ListenerCerts:
    """One listener's client-certificate state: its trust store and XFCC mode."""

    def __init__(self, lc: ListenerConfig) -> None:
        from ..gateway.config._certs import read_certificates, read_crls

        cc = lc.tls.client_certificate if lc.tls is not None else None
        self.asks = cc is not None
        self.store = TrustStore(read_certificates(cc.ca) if cc is not None and cc.ca else (),
                                read_crls(cc.crl) if cc is not None and cc.crl else ())
        mode = lc.forward_client_cert
        self.keep = mode in ("append-forward", "forward-only")
        self.add = mode in ("append-forward", "sanitize-set")
        self.details = lc.client_cert_details
        self._plain = ConnectionTLS(None, True, None) if self.keep else None

    def for_connection(self, ssl_stream: Any) -> Optional[ConnectionTLS]:
        """After the handshake (`ssl_stream`: trio.SSLStream), or None for cleartext."""
        if ssl_stream is None or not self.asks:
            return self._plain
        try:
            der = ssl_stream.getpeercert(binary_form=True)
        except (ValueError, ssl.SSLError):
            der = None
        if not der:
            return self._plain
        try:
            cert = ClientCertificate.from_der(der, self.store)
        except ValueError as exc:   # `request` takes anything, a broken DER too
            log.info("client certificate does not parse: %s", exc)
            return self._plain
        xfcc = xfcc_element(cert, self.details) if self.add else None
        return ConnectionTLS(cert, self.keep, xfcc)
