"""Server-side TLS contexts: certificate and key from files, SNI, ALPN.

ALPN offers what the listener's `protocols` allow, `h2` first (the client's choice among
them decides; RFC 7301); a client that offers nothing we speak, or no ALPN at all, gets
HTTP/1.1 (when the listener speaks it).  SNI picks the
certificate configured for the name the client asked for, else the listener's default; a
`*.suffix` entry covers any name under the suffix (not the suffix itself), the longest
matching suffix winning over shorter ones and an exact entry over any wildcard, as the
router does for API hosts and Envoy for `server_names`.
"""

from __future__ import annotations

import ssl
from typing import Callable, Optional, Sequence

from ..gateway.config import TLSConfig

__all__ = ["server_ssl_context", "ALPN_PROTOCOLS"]

ALPN_PROTOCOLS = ["http/1.1"]


def server_ssl_context(tls: TLSConfig, alpn: Sequence[str] = ALPN_PROTOCOLS,
                       configure: Optional[Callable[[ssl.SSLContext], None]] = None
                       ) -> ssl.SSLContext:
    """`configure` is applied to every context made (the default one and each SNI one):
    the listener's client-certificate settings (runtime/clientcert.py)."""
    def _context(cert: str, key: str, alpn: Sequence[str]) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert, key)
        ctx.set_alpn_protocols(list(alpn))
        if configure is not None:
            configure(ctx)
        return ctx

    ctx = _context(tls.cert, tls.key, alpn)
    if tls.sni:
        exact: dict[str, ssl.SSLContext] = {}
        wild: list[tuple[str, ssl.SSLContext]] = []     # (".suffix", context)
        for name, (c, k) in tls.sni.items():
            name = name.lower().rstrip(".")
            if name.startswith("*."):
                wild.append((name[1:], _context(c, k, alpn)))
            else:
                exact[name] = _context(c, k, alpn)
        wild.sort(key=lambda w: len(w[0]), reverse=True)

        def pick(sslobj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            if not name:
                return
            name = name.lower().rstrip(".")
            other = exact.get(name)
            if other is None:
                for suffix, wctx in wild:
                    if name.endswith(suffix) and len(name) > len(suffix):
                        other = wctx
                        break
            if other is not None:
                sslobj.context = other
        ctx.sni_callback = pick  # type: ignore[assignment]
    return ctx
