"""End to end over TLS: certificates made here (a private CA signing one certificate per
name, with the `cryptography` package), a gateway with a TLS listener in front of the echo,
clients curl, httpx and Python's ssl; and the gateway's own TLS client to an https backend
(run here: http.server over ssl, reporting the SNI, ALPN and connection it saw).
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pki import CA
from procs import start_gateway
from support import lazy_module, need_binary, wait_until

httpx = lazy_module("httpx")
x509 = lazy_module("cryptography.x509")
oid = lazy_module("cryptography.x509.oid")


def _curl() -> list[str]:
    return [need_binary("curl"), "-sS", "--max-time", "60"]


# ---------------------------------------------------------------------------------------
# certificates
# ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = CA(d)
    return {
        "ca": ca,
        "default": ca.issue("localhost", "localhost", "127.0.0.1"),
        "api": ca.issue("api.example"),
        "wild": ca.issue("*.wild.example"),
        # an IP-only certificate: valid for 127.0.0.1, not for the name "localhost"
        "ip-only": ca.issue("ip-only", "127.0.0.1"),
        "other-ca": CA(d, "other CA"),
    }


# ---------------------------------------------------------------------------------------
# gateway with a TLS listener
# ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_gw(tmp_path_factory, pki, echo):
    cert, key = pki["default"]
    api_cert, api_key = pki["api"]
    wild_cert, wild_key = pki["wild"]
    cfg = {
        "listeners": [{"bind": "127.0.0.1:0", "tls": {
            "cert": cert, "key": key,
            "sni": {"api.example": {"cert": api_cert, "key": api_key},
                    "*.wild.example": {"cert": wild_cert, "key": wild_key}}}}],
        "backends": {"echo": {"url": f"http://127.0.0.1:{echo.port}/e"}},
        "apis": [{"name": "root", "path": "", "backend": "echo"}],
    }
    p = start_gateway(tmp_path_factory.mktemp("tls"), cfg)
    yield p
    p.stop()


def https(gw, host: str = "localhost") -> str:
    return f"https://{host}:{gw.port}"


def test_listener_announces_https(tls_gw):
    assert any(line.startswith(f"apigw: listening on https://127.0.0.1:{tls_gw.port}/")
               for line in tls_gw.output)


def test_curl_with_cacert_and_alpn(tls_gw, pki):
    out = subprocess.run([*_curl(), "-v", "--cacert", str(pki["ca"].pem),
                          f"{https(tls_gw)}/x?y=1"], capture_output=True, check=True)
    err = out.stderr.decode()
    assert "ALPN: server accepted http/1.1" in err, err
    assert "< HTTP/1.1 200" in err
    doc = json.loads(out.stdout)
    assert (doc["path"], doc["query"]) == ("/e/x", "y=1")
    h = doc["headers"]
    assert h["x-forwarded-proto"] == "https"
    assert h["forwarded"] == f'for=127.0.0.1;proto=https;host="localhost:{tls_gw.port}"'


def test_curl_refuses_the_certificate_without_the_ca(tls_gw):
    out = subprocess.run([*_curl(), f"{https(tls_gw)}/"], capture_output=True)
    assert out.returncode == 60, out  # "SSL certificate problem: unable to get local issuer"


def test_curl_h2_offer_gets_http11(tls_gw, pki):
    out = subprocess.run([*_curl(), "-v", "--http2", "--cacert", str(pki["ca"].pem),
                          f"{https(tls_gw)}/h2"], capture_output=True, check=True)
    err = out.stderr.decode()
    assert "ALPN: offers h2" in err and "ALPN: server accepted http/1.1" in err
    assert json.loads(out.stdout)["http_version"] == "1.1"


def test_httpx_verify_ca_keepalive_and_bodies(tls_gw, pki):
    ctx = ssl.create_default_context(cafile=str(pki["ca"].pem))
    body = hashlib.sha256(b"x").digest() * 32768                       # 1 MiB
    ports = set()
    with httpx.Client(base_url=https(tls_gw), verify=ctx, timeout=60) as c:
        for i in range(3):
            r = c.get(f"/ka/{i}")
            assert r.status_code == 200 and r.http_version == "HTTP/1.1"
            assert r.json()["path"] == f"/e/ka/{i}"
            ports.add(r.extensions["network_stream"].get_extra_info("client_addr")[1])
        doc = c.post("/up", content=body).json()
        assert (doc["body_length"], doc["body_sha256"]) == (
            len(body), hashlib.sha256(body).hexdigest())
        doc = c.post("/chunked", content=iter([body[:100], body[100:]])).json()
        assert doc["headers"]["transfer-encoding"] == "chunked"
        assert doc["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert len(ports) == 1                                             # one TLS connection


def _handshake(port: int, server_name: str, alpn: list[str] | None = None,
               cafile: str | None = None) -> tuple[str, str | None, str]:
    """(subject CN of the served certificate, ALPN chosen, first line of a response)."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE if cafile is None else ssl.CERT_REQUIRED
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as s:
            der = s.getpeercert(binary_form=True)
            cert = x509.load_der_x509_certificate(der)
            cn = cert.subject.get_attributes_for_oid(oid.NameOID.COMMON_NAME)[0].value
            chosen = s.selected_alpn_protocol()
            s.sendall(b"GET /hs HTTP/1.1\r\nHost: %b\r\nConnection: close\r\n\r\n"
                      % server_name.encode())
            first = s.makefile("rb").readline().decode().rstrip()
    return cn, chosen, first


@pytest.mark.parametrize("offer, chosen", [
    (["h2", "http/1.1"], "http/1.1"),
    (["http/1.1"], "http/1.1"),
    (["h2"], None),               # nothing we speak: no ALPN, and HTTP/1.1 still works
    (None, None),                 # no ALPN extension at all
])
def test_alpn(tls_gw, offer, chosen):
    cn, got, first = _handshake(tls_gw.port, "localhost", offer)
    assert (got, first) == (chosen, "HTTP/1.1 200 OK")


@pytest.mark.parametrize("server_name, cn", [
    ("localhost", "localhost"),
    ("api.example", "api.example"),
    ("API.Example", "api.example"),          # server names are case-insensitive
    ("unknown.example", "localhost"),        # no entry: the listener's default
])
def test_sni_picks_the_certificate(tls_gw, pki, server_name, cn):
    got, _, first = _handshake(tls_gw.port, server_name, cafile=str(pki["ca"].pem))
    assert (got, first) == (cn, "HTTP/1.1 200 OK")


@pytest.mark.parametrize("server_name", ["a.wild.example", "b.a.wild.example"])
def test_sni_wildcard_entry(tls_gw, server_name):
    """`tls.sni` accepts "*.suffix" names (config.py); they pick their certificate as the
    router's wildcard hosts do (any subdomain, not the suffix itself)."""
    assert _handshake(tls_gw.port, server_name)[0] == "*.wild.example"
    assert _handshake(tls_gw.port, "wild.example")[0] == "localhost"


def test_sni_with_curl_resolve(tls_gw, pki):
    # curl checks the name: only the api.example certificate passes for this URL
    out = subprocess.run([*_curl(), "--cacert", str(pki["ca"].pem), "--resolve",
                          f"api.example:{tls_gw.port}:127.0.0.1",
                          f"https://api.example:{tls_gw.port}/sni"],
                         capture_output=True, check=True)
    doc = json.loads(out.stdout)
    assert doc["headers"]["x-forwarded-host"] == f"api.example:{tls_gw.port}"


def test_plaintext_on_tls_port_does_not_break_the_listener(tls_gw, pki):
    with socket.create_connection(("127.0.0.1", tls_gw.port), timeout=60) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(10)
        try:
            while s.recv(4096):       # the handshake fails: an alert or nothing, then EOF
                pass
        except ConnectionResetError:
            pass
    assert _handshake(tls_gw.port, "localhost")[2] == "HTTP/1.1 200 OK"


# ---------------------------------------------------------------------------------------
# https backends
# ---------------------------------------------------------------------------------------

class TLSBackend:
    """An https backend (http.server over ssl) that answers with what it saw: the SNI the
    client sent, the ALPN chosen, the client's port (one per connection) and the request."""

    def __init__(self, cert: str, key: str, sni: dict[str, tuple[str, str]] | None = None,
                 idle_close: float | None = None, close_notify: bool = False) -> None:
        """`idle_close`: close a keep-alive connection after that many idle seconds (with
        a TLS close_notify first if `close_notify`, as nginx and Node do; else FIN only)."""
        def context(c: str, k: str) -> ssl.SSLContext:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(c, k)
            ctx.set_alpn_protocols(["http/1.1"])
            return ctx

        ctx = context(cert, key)
        others = {n: context(c, k) for n, (c, k) in (sni or {}).items()}

        def pick(sslsock, name, _ctx):
            sslsock.sni_seen = name
            if name in others:
                sslsock.context = others[name]
        ctx.sni_callback = pick

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = idle_close

            def finish(self) -> None:
                super().finish()
                if close_notify:
                    try:   # sends close_notify, then waits (in vain) for the peer's
                        self.connection.unwrap()
                    except (OSError, ValueError):
                        pass

            def log_message(self, *args) -> None:
                pass

            def _answer(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n) if n else b""
                doc = {"path": self.path, "method": self.command,
                       "client_port": self.client_address[1],
                       "sni": getattr(self.connection, "sni_seen", None),
                       "alpn": self.connection.selected_alpn_protocol(),
                       "headers": {k.lower(): v for k, v in self.headers.items()},
                       "body_sha256": hashlib.sha256(body).hexdigest()}
                out = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = _answer

        self.closed: list[int] = []   # client ports of the connections we closed
        closed = self.closed

        class Server(ThreadingHTTPServer):
            def shutdown_request(self, request) -> None:
                try:
                    port = request.getpeername()[1]
                except OSError:
                    port = None
                super().shutdown_request(request)
                closed.append(port)   # after the close: the FIN is on its way

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def tls_backend(pki):
    # The default certificate is valid for 127.0.0.1 only: a client that does not send
    # SNI "localhost" gets it and fails the name check for "localhost".
    b = TLSBackend(*pki["ip-only"], sni={"localhost": pki["default"]})
    yield b
    b.close()


@pytest.fixture(scope="module")
def gw_to_https(tmp_path_factory, pki, tls_backend):
    port = tls_backend.port
    cfg = {
        "listeners": [{"bind": "127.0.0.1:0"}],
        "backends": {
            "verified": {"url": f"https://localhost:{port}/v",
                         "tls": {"verify": True, "ca": str(pki["ca"].pem)}},
            "unverified": {"url": f"https://localhost:{port}/u", "tls": {"verify": False}},
            "system-store": {"url": f"https://localhost:{port}/s"},
            "wrong-ca": {"url": f"https://localhost:{port}/w",
                         "tls": {"ca": str(pki["other-ca"].pem)}},
        },
        "apis": [{"name": n, "path": f"/{n}", "backend": n}
                 for n in ("verified", "unverified", "system-store", "wrong-ca")],
    }
    p = start_gateway(tmp_path_factory.mktemp("gw-https"), cfg)
    yield p
    p.stop()


def test_https_backend_verified_with_ca(gw_to_https, tls_backend):
    with httpx.Client(base_url=gw_to_https.url, timeout=60) as c:
        docs = [c.get(f"/verified/x/{i}?q=1").json() for i in range(3)]
        body = b"over tls" * 1000
        posted = c.post("/verified/post", content=body).json()
    d = docs[0]
    assert d["path"] == "/v/x/0?q=1"
    assert d["sni"] == "localhost"                 # SNI = the backend URL's host
    assert d["alpn"] == "http/1.1"
    assert d["headers"]["host"] == f"localhost:{tls_backend.port}"
    assert d["headers"]["x-forwarded-proto"] == "http"
    assert posted["body_sha256"] == hashlib.sha256(body).hexdigest()
    # the pooled TLS connection is reused
    assert len({d["client_port"] for d in docs} | {posted["client_port"]}) == 1


def test_https_backend_verify_false(gw_to_https):
    r = httpx.get(f"{gw_to_https.url}/unverified/y", timeout=60)
    assert r.status_code == 200 and r.json()["path"] == "/u/y"


@pytest.mark.parametrize("api", ["system-store", "wrong-ca"])
def test_https_backend_untrusted_certificate_is_502(gw_to_https, api):
    r = httpx.get(f"{gw_to_https.url}/{api}/z", timeout=60)
    assert r.status_code == 502
    assert r.headers["content-type"] == "application/json"
    assert r.json()["statusCode"] == 502


def test_tls_gateway_chain(tmp_path, pki, tls_gw):
    """A gateway whose https backend is the TLS gateway (→ echo): both hops' headers."""
    cfg = {"listeners": [{"bind": "127.0.0.1:0"}],
           "backends": {"tls-gw": {"url": f"https://localhost:{tls_gw.port}/chain",
                                   "tls": {"ca": str(pki["ca"].pem)}}},
           "apis": [{"name": "r", "path": "", "backend": "tls-gw"}]}
    p = start_gateway(tmp_path, cfg)
    try:
        doc = httpx.get(f"{p.url}/a?b=c", headers={"X-Request-Id": "chain-1"},
                        timeout=60).json()
    finally:
        p.stop()
    h = doc["headers"]
    assert (doc["path"], doc["query"]) == ("/e/chain/a", "b=c")
    assert h["x-forwarded-for"] == "127.0.0.1, 127.0.0.1"
    assert h["x-forwarded-proto"] == "https"       # the last hop was TLS
    assert h["via"] == "1.1 apigw, 1.1 apigw"
    assert h["x-request-id"] == "chain-1"


@pytest.mark.parametrize("close_notify", [
    False,
    True,
])
def test_pooled_tls_connection_closed_by_backend_is_replaced(tmp_path, pki, close_notify):
    """An https backend closes idle keep-alive connections after 0.2 s (FIN only, or a
    TLS close_notify then FIN): the next request, a POST (never retried), must get a new
    connection, not the dead one."""
    b = TLSBackend(*pki["default"], idle_close=0.2, close_notify=close_notify)
    cfg = {"listeners": [{"bind": "127.0.0.1:0"}],
           "backends": {"b": {"url": f"https://localhost:{b.port}",
                              "tls": {"ca": str(pki["ca"].pem)}}},
           "apis": [{"name": "r", "path": "", "backend": "b"}]}
    p = start_gateway(tmp_path, cfg)
    try:
        with httpx.Client(base_url=p.url, timeout=60) as c:
            first = c.post("/one", content=b"1")
            assert first.status_code == 200
            wait_until(lambda: first.json()["client_port"] in b.closed,
                       message="the backend closed the idle connection")
            second = c.post("/two", content=b"2")
            assert second.status_code == 200, second.text
            assert second.json()["client_port"] != first.json()["client_port"]
    finally:
        p.stop()
        b.close()


# ---------------------------------------------------------------------------------------
# 100 MiB over TLS, both ways (the TLS transport's own backpressure)
# ---------------------------------------------------------------------------------------

MiB = 1024 * 1024
BIG = 100 * MiB
BLOCK = hashlib.sha256(b"tls").digest() * (MiB // 32)


def _serve_bytes(lsock: socket.socket) -> None:
    """A plain backend: every request gets BIG bytes with Content-Length, then close."""
    while True:
        try:
            conn, _ = lsock.accept()
        except OSError:
            return
        with conn:
            buf = b""
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    break
                buf += data
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nconnection: close\r\n"
                             b"content-length: %d\r\n\r\n" % BIG)
                for _ in range(BIG // MiB):
                    conn.sendall(BLOCK)
            except OSError:
                pass


def test_100mib_both_ways_over_tls(tmp_path, pki, echo):
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    threading.Thread(target=_serve_bytes, args=(lsock,), daemon=True).start()
    cert, key = pki["default"]
    cfg = {"listeners": [{"bind": "127.0.0.1:0", "tls": {"cert": cert, "key": key}}],
           "backends": {"bytes": {"url": f"http://127.0.0.1:{lsock.getsockname()[1]}"},
                        "echo": {"url": f"http://127.0.0.1:{echo.port}"}},
           "apis": [{"name": "down", "path": "/down", "backend": "bytes"},
                    {"name": "up", "path": "/up", "backend": "echo"}]}
    p = start_gateway(tmp_path, cfg)
    ctx = ssl.create_default_context(cafile=str(pki["ca"].pem))
    expected = hashlib.sha256(BLOCK * 100).hexdigest()
    try:
        base = (p.rss_kib(), p.hwm_kib())
        h = hashlib.sha256()
        with httpx.stream("GET", f"{https(p)}/down", verify=ctx, timeout=60) as r:
            assert r.headers["content-length"] == str(BIG)
            for piece in r.iter_raw():
                h.update(piece)
        down = (p.rss_kib(), p.hwm_kib())
        r = httpx.post(f"{https(p)}/up", content=(BLOCK for _ in range(100)), verify=ctx,
                       timeout=60)
        up = (p.rss_kib(), p.hwm_kib())
    finally:
        p.stop()
        lsock.close()
    print(f"\n[100 MiB over TLS] gateway RSS {base[0] / 1024:.1f} MiB; peak "
          f"{base[1] / 1024:.1f} -> {down[1] / 1024:.1f} (download) -> "
          f"{up[1] / 1024:.1f} MiB (chunked upload)")
    assert h.hexdigest() == expected
    assert (r.json()["body_length"], r.json()["body_sha256"]) == (BIG, expected)
    assert up[1] - base[1] < 40 * 1024
