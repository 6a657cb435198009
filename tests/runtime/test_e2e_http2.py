"""End to end over HTTP/2 from clients: real clients (curl, httpx, h2load, h2's own client
connection) -> a gateway process with a TLS listener (ALPN h2) and a cleartext one (h2c by
prior knowledge and by Upgrade) -> HTTP/1.1 backends (the echo, and `h1special.Special` for
trailers, 204, big bodies and slow answers).

What is checked: the protocol each client ends up speaking, request heads mapped
(`:authority` -> X-Forwarded-Host, the backend's own authority as Host), bodies both ways
with their sha256, trailers relayed, many streams on one connection, the header list limit,
h2load with 100 streams per connection and no failure, 100 MiB each way with the gateway's
memory bounded, a client that stops reading, and graceful shutdown (GOAWAY, in-flight
streams finish, exit 0).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import time

import pytest

from h1special import BLOCK, MiB, Special, pattern_sha256
from hpack import Decoder, Encoder
from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame

from h2raw import FrameReader, H2Client, h2c_socket, req_block
from pki import CA
from procs import start_gateway
from support import lazy_module, need_binary, wait_until

httpx = lazy_module("httpx")

CURL = ["curl", "-sS", "--max-time", "30"]
NO_ERROR, ENHANCE_YOUR_CALM = 0, 0xB


# ---------------------------------------------------------------------------------------
# fixtures: one gateway, TLS (h2 + http1) and cleartext (http1 + h2c) listeners
# ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    ca = CA(tmp_path_factory.mktemp("pki2"))
    return {"ca": ca, "default": ca.issue("localhost", "localhost", "127.0.0.1")}


@pytest.fixture(scope="module")
def special():
    s = Special()
    yield s
    s.close()


def _config(pki, echo, special, **server) -> dict:
    cert, key = pki["default"]
    cfg = {
        "listeners": [
            {"bind": "127.0.0.1:0", "tls": {"cert": cert, "key": key},
             "protocols": ["http1", "h2"]},
            {"bind": "127.0.0.1:0", "protocols": ["http1", "h2c"]},
        ],
        "backends": {"echo": {"url": f"http://127.0.0.1:{echo.port}/e"},
                     "special": {"url": special.url}},
        "apis": [{"name": "special", "path": "/s", "backend": "special"},
                 {"name": "root", "path": "", "backend": "echo"}],
    }
    if server:
        cfg["server"] = server
    return cfg


@pytest.fixture(scope="module")
def gw(tmp_path_factory, pki, echo, special):
    p = start_gateway(tmp_path_factory.mktemp("h2gw"), _config(pki, echo, special))
    yield p
    p.stop()


def tls_port(gw) -> int:
    return gw.ports[0]


def h2c_port(gw) -> int:
    return gw.ports[1]


def cafile(pki) -> str:
    return str(pki["ca"].pem)


def curl(*args: str) -> subprocess.CompletedProcess:
    need_binary("curl")
    return subprocess.run([*CURL, *args], capture_output=True, check=True, timeout=120)


def curl_json_version(*args: str) -> tuple[dict, str, str]:
    """(the echo's JSON, curl's %{http_version}, curl's stderr)."""
    out = curl("-w", "\n%{http_version}", *args)
    body, _, version = out.stdout.decode().rpartition("\n")
    return json.loads(body), version, out.stderr.decode()


# ---------------------------------------------------------------------------------------
# curl
# ---------------------------------------------------------------------------------------

def test_curl_http2_over_tls(gw, pki):
    doc, version, err = curl_json_version(
        "-v", "--http2", "--cacert", cafile(pki),
        f"https://localhost:{tls_port(gw)}/tls?q=1")
    assert version == "2"
    assert "ALPN: server accepted h2" in err, err
    assert (doc["method"], doc["path"], doc["query"]) == ("GET", "/e/tls", "q=1")
    h = doc["headers"]
    assert h["x-forwarded-proto"] == "https"
    assert h["x-forwarded-host"] == f"localhost:{tls_port(gw)}"
    assert h["via"] == "2 apigw"


def test_curl_prior_knowledge_on_h2c_listener(gw):
    doc, version, _ = curl_json_version("--http2-prior-knowledge",
                                        f"http://127.0.0.1:{h2c_port(gw)}/pk")
    assert version == "2"
    assert doc["path"] == "/e/pk"
    assert doc["headers"]["x-forwarded-proto"] == "http"
    assert doc["headers"]["via"] == "2 apigw"


def test_curl_h2c_upgrade_with_post_body(gw):
    body = "upgrade me " * 1000
    doc, version, err = curl_json_version(
        "-v", "--http2", "-H", "content-type: text/plain", "--data-binary", body,
        f"http://127.0.0.1:{h2c_port(gw)}/up")
    assert version == "2"
    assert "HTTP/1.1 101" in err, err
    assert (doc["method"], doc["body"], doc["body_length"]) == ("POST", body, len(body))
    h = doc["headers"]
    # the upgrade request itself is stream 1 of the HTTP/2 connection: no h2c leftovers
    assert not {"upgrade", "http2-settings", "connection"} & set(h)
    assert h["via"] == "2 apigw"


def test_curl_http1_still_served_on_both_listeners(gw, pki):
    _, v1, _ = curl_json_version("--http1.1", "--cacert", cafile(pki),
                                 f"https://localhost:{tls_port(gw)}/h1")
    _, v2, _ = curl_json_version(f"http://127.0.0.1:{h2c_port(gw)}/h1")
    assert (v1, v2) == ("1.1", "1.1")


# ---------------------------------------------------------------------------------------
# httpx (http2=True) over TLS
# ---------------------------------------------------------------------------------------

def test_httpx_concurrent_streams_share_one_connection(gw, pki, special):
    """20 requests at once on one TCP connection (the same client port, 20 stream ids),
    all in flight at the backend together: it holds each until all 20 are there."""
    ctx = ssl.create_default_context(cafile=cafile(pki))
    special.release.clear()

    async def main():
        async with httpx.AsyncClient(http2=True, verify=ctx, timeout=60,
                                     base_url=f"https://localhost:{tls_port(gw)}") as c:
            await c.get("/warm")
            calls = asyncio.gather(*[c.get(f"/s/hold?i={i}") for i in range(20)])
            deadline = time.monotonic() + 30
            while special.holding < 20 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            together = special.holding
            special.release.set()
            rs = await calls
            ports = {r.extensions["network_stream"].get_extra_info("client_addr")[1]
                     for r in rs}
            return rs, together, ports

    rs, together, ports = asyncio.run(main())
    assert together == 20, "the requests were not all in flight at once"
    assert [r.status_code for r in rs] == [200] * 20
    assert {r.http_version for r in rs} == {"HTTP/2"}
    assert all(r.content == b"held" for r in rs)
    assert len(ports) == 1
    assert len({r.extensions["stream_id"] for r in rs}) == 20


def test_httpx_get_post_head_204(gw, pki):
    ctx = ssl.create_default_context(cafile=cafile(pki))
    body = hashlib.sha256(b"p").digest() * 8192                      # 256 KiB
    with httpx.Client(http2=True, verify=ctx, timeout=60,
                      base_url=f"https://localhost:{tls_port(gw)}") as c:
        r = c.get("/g", params={"a": "b"})
        assert (r.status_code, r.http_version) == (200, "HTTP/2")
        assert r.json()["query"] == "a=b"
        r = c.post("/p", content=body)
        doc = r.json()
        assert (doc["method"], doc["body_length"], doc["body_sha256"]) == (
            "POST", len(body), hashlib.sha256(body).hexdigest())
        r = c.head("/s/head")
        assert r.status_code == 200 and r.content == b""
        assert r.headers["content-length"] == str(len(b"/head"))   # the GET's length
        r = c.get("/s/204")
        assert (r.status_code, r.content, r.headers["x-n"]) == (204, b"", "1")
        r = c.get("/s/trailers")
        assert r.content == b"helloworld"


# ---------------------------------------------------------------------------------------
# h2's client connection: trailers, head mapping, header list limit
# ---------------------------------------------------------------------------------------

def test_trailers_relayed_to_http2_client(gw, pki):
    c = H2Client.tls(tls_port(gw), cafile(pki))
    try:
        r = c.get("/s/trailers", headers=[("te", "trailers")], scheme="https")
    finally:
        c.close()
    assert r.status == 200 and bytes(r.body) == b"helloworld"
    assert r.trailers == [(b"x-checksum", b"sha-abc"), (b"x-count", b"2")]
    assert r.header(b"transfer-encoding") is None     # connection-specific: not in HTTP/2


def test_request_head_mapping(gw, echo):
    c = H2Client.h2c(h2c_port(gw))
    try:
        r = c.get("/map/x?y=1", authority="api.example:8443",
                  headers=[("x-forwarded-host", "evil.example"), ("x-custom", "v"),
                           ("cookie", "a=1"), ("cookie", "b=2")])
    finally:
        c.close()
    assert r.status == 200
    doc = json.loads(bytes(r.body))
    assert (doc["path"], doc["query"], doc["http_version"]) == ("/e/map/x", "y=1", "1.1")
    h = doc["headers"]
    assert h["host"] == f"127.0.0.1:{echo.port}"          # the backend's authority
    assert h["x-forwarded-host"] == "api.example:8443"    # the :authority, not the client's
    assert h["forwarded"] == 'for=127.0.0.1;proto=http;host="api.example:8443"'
    assert h["x-custom"] == "v"
    assert h["cookie"] in ("a=1; b=2", "a=1, b=2")        # RFC 9113 §8.2.3 crumbs
    assert h["via"] == "2 apigw"


def _header_fields(total: int) -> list[tuple[str, str]]:
    n, rest = divmod(total, 8000)
    return [(f"x-big-{i}", "v" * 8000) for i in range(n)] + [("x-rest", "w" * rest)]


def test_large_header_list_near_the_limit(gw):
    """60 KB of fields (the limit is 64 KiB): all reach the backend."""
    c = H2Client.h2c(h2c_port(gw))
    try:
        r = c.get("/hdr", headers=_header_fields(60000))
    finally:
        c.close()
    assert r.status == 200
    h = json.loads(bytes(r.body))["headers"]
    assert sum(len(v) for k, v in h.items() if k.startswith("x-big-") or k == "x-rest") \
        == 60000


def test_header_list_over_the_limit_is_431_on_its_stream(gw):
    """80 KB of fields (over max-head, 64 KiB): 431 on that stream, and the connection goes
    on (RFC 9113 §10.5.1)."""
    c = H2Client.h2c(h2c_port(gw))
    try:
        r = c.get("/hdr", headers=_header_fields(80000))
        assert r.status == 431 and json.loads(bytes(r.body))["statusCode"] == 431
        assert c.get("/after").status == 200 and c.goaway is None
    finally:
        c.close()


def test_header_list_flood_closes_only_that_connection(gw):
    """200 KB of fields (over twice max-head): a flood, GOAWAY(ENHANCE_YOUR_CALM)."""
    c = H2Client.h2c(h2c_port(gw))
    try:
        sid = c.request("/hdr", headers=_header_fields(200000))
        c.run_until(lambda: c.goaway is not None, 60)
        assert c.replies[sid].status is None
        assert c.goaway is not None and c.goaway.error_code == ENHANCE_YOUR_CALM
    finally:
        c.close()
    assert H2Client.h2c(h2c_port(gw)).get("/after").status == 200


def test_gateway_answer_to_an_upload_still_arriving_reaches_the_client(gw):
    """The backend reads 64 KiB of a 1 MiB upload and hangs up: the client gets the 502,
    then RST_STREAM(NO_ERROR) to stop sending (RFC 9113 §8.1), not a bare reset."""
    c = H2Client.h2c(h2c_port(gw))
    try:
        sid = c.request("/s/drop", method="POST", body=b"x" * MiB,
                        headers=[("content-length", str(MiB))])
        r = c.replies[sid]
        assert c.run_until(lambda: r.ended or r.reset is not None, 60)
        c.run_until(lambda: r.reset is not None, 2)
    finally:
        c.close()
    assert r.status == 502, r
    assert json.loads(bytes(r.body))["statusCode"] == 502
    assert r.reset in (None, NO_ERROR)


def test_post_without_content_length_to_http1_backend(gw):
    c = H2Client.h2c(h2c_port(gw))
    try:
        sid = c.request("/nocl", method="POST", body=b"x" * 100_000)
        r = c.replies[sid]
        assert c.run_until(lambda: r.ended or r.reset is not None, 60)
    finally:
        c.close()
    assert r.status == 200
    assert json.loads(bytes(r.body))["body_length"] == 100_000


# ---------------------------------------------------------------------------------------
# h2load: 100 streams per connection
# ---------------------------------------------------------------------------------------

def _h2load(*args: str) -> str:
    if shutil.which("h2load") is None:
        if os.environ.get("CI"):
            pytest.fail("h2load missing (apt-get install nghttp2-client)")
        pytest.skip("h2load missing (apt-get install nghttp2-client)")
    out = subprocess.run(["h2load", *args], capture_output=True, text=True, timeout=300)
    return out.stdout + out.stderr


_REQS = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                   r"(\d+) failed, (\d+) errored, (\d+) timeout")
_CODES = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


@pytest.mark.parametrize("listener", ["h2c", "tls"])
def test_h2load_100_streams_per_connection(gw, listener):
    url = (f"http://127.0.0.1:{h2c_port(gw)}/s/load" if listener == "h2c"
           else f"https://127.0.0.1:{tls_port(gw)}/s/load")
    out = _h2load("-n", "2000", "-c", "4", "-m", "100", url)
    print("\n" + "\n".join(line for line in out.splitlines()
                           if line.startswith(("finished", "requests", "status"))))
    m = _REQS.search(out)
    assert m, out
    assert tuple(map(int, m.groups())) == (2000, 2000, 2000, 2000, 0, 0, 0), out
    assert tuple(map(int, _CODES.search(out).groups())) == (2000, 0, 0, 0), out  # type: ignore
    if listener == "tls":
        assert "Application protocol: h2" in out, out


# ---------------------------------------------------------------------------------------
# 100 MiB each way, memory bounded
# ---------------------------------------------------------------------------------------

BIG = 100 * MiB


def test_100mib_down_and_up_over_http2_tls(gw, pki):
    c = H2Client.tls(tls_port(gw), cafile(pki))      # bodies hashed, 1 MiB kept
    try:
        base = (gw.rss_kib(), gw.hwm_kib())
        t0 = time.monotonic()
        down = c.get(f"/s/bytes/{BIG}", timeout=60, scheme="https")
        t1 = time.monotonic()
        after_down = gw.hwm_kib()
        body = BLOCK * 100
        sid = c.request("/up", method="POST", scheme="https", body=body,
                        headers=[("content-length", str(BIG))])
        up = c.replies[sid]
        assert c.run_until(lambda: up.ended, 60)
        t2 = time.monotonic()
        after_up = gw.hwm_kib()
    finally:
        c.close()
    print(f"\n[100 MiB over HTTP/2 + TLS] down {t1 - t0:.2f} s, up {t2 - t1:.2f} s; gateway "
          f"RSS {base[0] / 1024:.1f} MiB; peak {base[1] / 1024:.1f} -> "
          f"{after_down / 1024:.1f} (download) -> {after_up / 1024:.1f} MiB (upload)")
    assert (down.status, down.size) == (200, BIG)
    assert down.sha256.hexdigest() == pattern_sha256(BIG)
    doc = json.loads(bytes(up.body))
    assert (doc["body_length"], doc["body_sha256"]) == (
        BIG, hashlib.sha256(body).hexdigest())
    assert after_up - base[1] < 40 * 1024


def test_client_that_stops_reading_bounds_gateway_memory(tmp_path, pki, echo):
    """A small INITIAL_WINDOW_SIZE and no WINDOW_UPDATE ever: the gateway sends what the
    windows allow, reads no further from the backend than its socket buffers, and gives up
    on the stream after write-timeout (RST_STREAM), closing the backend connection."""
    sp = Special()
    p = start_gateway(tmp_path, _config(pki, echo, sp, **{"write-timeout": "2s"}))
    try:
        base = p.rss_kib()
        c = H2Client.h2c(p.ports[1], settings={4: 1024}, auto_ack=False, keep_body=0)
        sid = c.request(f"/s/bytes/{BIG}")
        r = c.replies[sid]
        t0 = time.monotonic()
        deadline = t0 + 1.5
        while time.monotonic() < deadline:   # pacing: the client reads, never acks
            c.pump(0.1)
        stalled = (r.size, sp.sent, p.rss_kib())
        other = H2Client.h2c(p.ports[1]).get("/meanwhile")     # others are still served
        assert c.run_until(lambda: r.reset is not None, 60)
        t_reset = time.monotonic() - t0
        wait_until(lambda: sp.closed, message="the backend fetch was abandoned")
        c.close()
    finally:
        p.stop()
        sp.close()
    print(f"\n[stalled HTTP/2 reader] client got {stalled[0]} B, backend sent "
          f"{stalled[1] / MiB:.1f} MiB, gateway RSS {base / 1024:.1f} -> "
          f"{stalled[2] / 1024:.1f} MiB; stream reset after {t_reset:.1f} s")
    assert r.status == 200
    assert stalled[0] <= 1024                        # the client's stream window
    assert stalled[1] < 16 * MiB                     # socket buffers, not the whole body
    assert stalled[2] - base < 40 * 1024
    assert other.status == 200
    assert r.reset == 2                              # INTERNAL_ERROR: we gave up
    assert t_reset >= 1.5                            # (write-timeout 2 s, from the stall)
    assert sp.closed == 1                            # the backend fetch was abandoned


# ---------------------------------------------------------------------------------------
# idle timeout
# ---------------------------------------------------------------------------------------

def test_idle_timeout_after_requests_and_after_a_reset_stream(tmp_path, pki, echo, special):
    """idle-timeout 1 s: a connection whose streams are all done (one answered, one reset
    for a window never opened) gets GOAWAY(NO_ERROR) and is closed about 1 s later."""
    p = start_gateway(tmp_path, _config(pki, echo, special,
                                        **{"idle-timeout": "1s", "write-timeout": "1s"}))
    try:
        c = H2Client.h2c(p.ports[1])
        assert c.get("/one").status == 200
        t0 = time.monotonic()
        c.run_until(lambda: c.closed, 60)
        served_idle = (c.closed, c.goaway, time.monotonic() - t0)
        c.close()
        c = H2Client.h2c(p.ports[1], settings={4: 0}, auto_ack=False)   # no window at all
        r = c.replies[c.request("/s/bytes/100000")]
        t0 = time.monotonic()
        c.run_until(lambda: c.closed, 60)
        reset_idle = (r.reset, c.closed, c.goaway, time.monotonic() - t0)
        c.close()
    finally:
        p.stop()
    closed, goaway, after = served_idle
    assert closed and goaway is not None, served_idle
    assert (goaway.error_code, goaway.last_stream_id) == (NO_ERROR, 1)
    assert after > 0.8                                # not before idle-timeout
    reset, closed, goaway, after = reset_idle
    assert reset == 2 and closed and goaway is not None, reset_idle    # INTERNAL_ERROR
    assert goaway.error_code == NO_ERROR
    assert after > 1.8                                # write-timeout, then idle-timeout


# ---------------------------------------------------------------------------------------
# graceful shutdown
# ---------------------------------------------------------------------------------------

def test_sigterm_goaway_and_inflight_streams_finish(tmp_path, pki, echo):
    """SIGTERM with three streams held at the backend: GOAWAY(NO_ERROR, last stream 5)
    comes first, while they are still in flight; released, all three finish with their
    200, then the connection closes and the gateway exits 0.  Raw frames here: h2's client
    connection refuses every frame after a GOAWAY, even a graceful one, so it cannot
    watch the streams finish."""
    sp = Special()
    p = start_gateway(tmp_path, _config(pki, echo, sp))
    s = h2c_socket(p.ports[1])
    enc, dec = Encoder(), Decoder()
    reader = FrameReader(s)
    status: dict[int, int] = {}
    body: dict[int, bytes] = {}
    ended: set[int] = set()
    ended_before_goaway: set[int] = set()
    goaway = None
    try:
        sids = [1, 3, 5]
        s.sendall(b"".join(HeadersFrame(sid, req_block(enc, f"/s/hold?i={sid}"),
                                        flags=["END_HEADERS", "END_STREAM"]).serialize()
                           for sid in sids))
        wait_until(lambda: sp.holding == 3, message="the three streams reached the backend")
        p.proc.send_signal(signal.SIGTERM)
        while True:
            f = reader.next(60)
            if f is None:
                break
            if isinstance(f, HeadersFrame):
                status[f.stream_id] = int(dict(dec.decode(f.data))[":status"])
            elif isinstance(f, DataFrame):
                body[f.stream_id] = body.get(f.stream_id, b"") + f.data
            elif isinstance(f, GoAwayFrame):
                goaway = (f.error_code, f.last_stream_id)
                ended_before_goaway = set(ended)
                sp.release.set()   # the GOAWAY is out: now let the streams finish
            if "END_STREAM" in getattr(f, "flags", ()):
                ended.add(f.stream_id)
        code = p.proc.wait(60)
    finally:
        s.close()
        p.stop()
        sp.close()
    assert goaway == (NO_ERROR, 5)
    assert ended_before_goaway == set()              # at once, before the streams end
    assert ended == set(sids)
    assert status == {1: 200, 3: 200, 5: 200}
    assert body == {1: b"held", 3: b"held", 5: b"held"}
    assert code == 0
