"""An OpenID provider stand-in for the validate-jwt tests, and keys to sign tokens with.

`Provider()` is a real HTTP server on 127.0.0.1 (a thread): `/.well-known/openid-configuration`
names `/jwks`, which serves the public halves of `provider.keys` (set them to rotate);
`fetches` counts JWKS fetches and `discoveries` discovery fetches.  `down()` closes the
listening socket (connections are refused, as with a provider that is down) and `up()`
listens again on the same port.  `max_age` sets the JWKS response's Cache-Control.

`Key.rsa("k1")`, `Key.ec("k2", "P-256")`, `Key.ed25519(...)`, `Key.hmac(...)` make keys;
`key.sign(claims)` a token (kid in the header), `key.jwk()` the public JWK.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

__all__ = ["Key", "Provider", "claims"]

_CURVES = {"P-256": (ec.SECP256R1, "ES256"), "P-384": (ec.SECP384R1, "ES384"),
           "P-521": (ec.SECP521R1, "ES512")}


def claims(**extra: Any) -> dict:
    """Plausible claims: sub alice, exp in 10 min, plus `extra` (None drops one)."""
    now = int(time.time())
    c = {"sub": "alice", "iss": "https://idp.test", "aud": "api://orders", "iat": now,
         "exp": now + 600}
    c.update(extra)
    return {k: v for k, v in c.items() if v is not None}


class Key:
    def __init__(self, kid: Optional[str], private: Any, alg: str) -> None:
        self.kid, self.private, self.alg = kid, private, alg

    @classmethod
    def rsa(cls, kid: Optional[str] = "rsa1", alg: str = "RS256", bits: int = 2048) -> "Key":
        return cls(kid, rsa.generate_private_key(public_exponent=65537, key_size=bits), alg)

    @classmethod
    def ec(cls, kid: Optional[str] = "ec1", curve: str = "P-256") -> "Key":
        make, alg = _CURVES[curve]
        return cls(kid, ec.generate_private_key(make()), alg)

    @classmethod
    def ed25519(cls, kid: Optional[str] = "ed1") -> "Key":
        return cls(kid, ed25519.Ed25519PrivateKey.generate(), "EdDSA")

    @classmethod
    def hmac(cls, kid: Optional[str] = "hs1", size: int = 32, alg: str = "HS256") -> "Key":
        return cls(kid, os.urandom(size), alg)

    @property
    def public(self) -> Any:
        return self.private if isinstance(self.private, bytes) else self.private.public_key()

    def sign(self, payload: dict, alg: Optional[str] = None, **header: Any) -> str:
        h = dict(header)
        if self.kid is not None and "kid" not in h:
            h["kid"] = self.kid
        return jwt.encode(payload, self.private, algorithm=alg or self.alg, headers=h or None)

    def pem(self) -> str:
        return self.public.public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def secret_b64(self) -> str:
        return base64.b64encode(self.private).decode()

    def jwk(self) -> dict:
        if isinstance(self.private, bytes):
            d = json.loads(jwt.algorithms.HMACAlgorithm.to_jwk(self.private))
        elif isinstance(self.private, rsa.RSAPrivateKey):
            d = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.public))
        elif isinstance(self.private, ec.EllipticCurvePrivateKey):
            d = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.public))
        else:
            d = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(self.public))
        if self.kid is not None:
            d["kid"] = self.kid
        d["use"] = "sig"
        return d


class Provider:
    def __init__(self, keys: Optional[list[Key]] = None, max_age: Optional[int] = None,
                 start: bool = True) -> None:
        self.keys: list[Key] = list(keys or [])
        self.max_age = max_age
        self.fetches = 0
        self.discoveries = 0
        self.lock = threading.Lock()
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.url = f"http://127.0.0.1:{self.port}/.well-known/openid-configuration"
        self.issuer = f"http://127.0.0.1:{self.port}"
        self._server: Optional[ThreadingHTTPServer] = None
        if start:
            self.up()

    def jwks(self) -> dict:
        return {"keys": [k.jwk() for k in self.keys]}

    def up(self) -> None:
        if self._server is not None:
            return
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/.well-known/openid-configuration":
                    with provider.lock:
                        provider.discoveries += 1
                    body = json.dumps({"issuer": provider.issuer,
                                       "jwks_uri": f"{provider.issuer}/jwks"}).encode()
                elif self.path == "/jwks":
                    with provider.lock:
                        provider.fetches += 1
                        body = json.dumps(provider.jwks()).encode()
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                if provider.max_age is not None:
                    self.send_header("cache-control", f"public, max-age={provider.max_age}")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def close(self) -> None:
        self.down()
