"""The transformation policies through a running gateway (issue 9): set-header on request
and response (override / skip / append / delete), set-query-parameter, rewrite-uri,
set-method, set-status, set-body (Content-Length right on both sides, chunked uploads
too), set-variable, find-and-replace on request and response bodies, json-to-xml and
xml-to-json.  The echo backend shows what was forwarded; httpx over HTTP/1.1 and HTTP/2,
curl, and a raw socket where the exact bytes matter."""

from __future__ import annotations

import json
import socket
import subprocess

import httpx
import pytest

from pipeline_kit import doc, echo, gateway, scripted  # noqa: F401  (fixtures)


def _api(name: str, inbound=(), outbound=(), backend: str = "echo", **extra) -> dict:
    policies: dict = {}
    if inbound:
        policies["inbound"] = list(inbound)
    if outbound:
        policies["outbound"] = list(outbound)
    return {"name": name, "path": f"/{name}", "backend": backend, "policies": policies,
            **extra}


def _sh(name: str, *values: str, action: str = "override") -> dict:
    body: dict = {"name": name, "exists-action": action}
    if values:
        body["value"] = list(values)
    return {"set-header": body}


@pytest.fixture(scope="module")
def gw(tmp_path_factory, echo, scripted):  # noqa: F811
    cfg = {
        "listeners": [{"bind": "127.0.0.1:0", "protocols": ["http1", "h2c"]}],
        "backends": {"echo": {"url": f"http://127.0.0.1:{echo.port}", "timeout": "5s"},
                     "xml": {"url": f"{scripted.url}/xml", "timeout": "5s"}},
        "apis": [
            _api("hdr", inbound=[_sh("x-new", "a", "b"), _sh("x-over", "new"),
                                 _sh("x-skip", "ignored", action="skip"),
                                 _sh("x-skip-absent", "set", action="skip"),
                                 _sh("x-app", "two", action="append"),
                                 _sh("x-del", action="delete"),
                                 _sh("x-method", "{request.method} {request.path}")],
                 outbound=[_sh("x-resp", "r1"), _sh("content-type", action="delete"),
                           _sh("x-status", "{response.status}"),
                           _sh("set-cookie", "a=1", "b=2"),
                           _sh("via", "extra", action="append")]),
            _api("query", inbound=[
                {"set-query-parameter": {"name": "over", "value": ["new"]}},
                {"set-query-parameter": {"name": "multi", "exists-action": "append",
                                         "value": ["2"]}},
                {"set-query-parameter": {"name": "skip", "exists-action": "skip",
                                         "value": ["no"]}},
                {"set-query-parameter": {"name": "gone", "exists-action": "delete"}},
                {"set-query-parameter": {"name": "sp ace", "value": ["a&b=c"]}}]),
            {"name": "rw", "path": "/rw", "backend": "echo", "operations": [
                {"name": "get", "method": "GET", "url-template": "/get?a={b}",
                 "policies": {"inbound": [{"rewrite-uri": {"template": "/put"}}]}},
                {"name": "item", "method": "GET", "url-template": "/items/{id}",
                 "policies": {"inbound": [{"rewrite-uri": {
                     "template": "/v2/things/{id}?from={request.method}",
                     "copy-unmatched-params": False}}]}}]},
            _api("meth", inbound=[{"set-method": "POST"}]),
            _api("status", outbound=[{"set-status": {"code": 201, "reason": "Made It"}}]),
            _api("body", inbound=[{"set-body": "hello {request.headers.x-who}"}],
                 outbound=[{"set-body": "status {response.status}, é"}]),
            _api("var", inbound=[
                {"set-variable": {"name": "who", "value": "{request.headers.x-who}"}},
                {"set-variable": {"name": "method", "value": "{request.method}"}},
                _sh("x-var", "{variables.who}/{variables.method}")]),
            _api("far", inbound=[{"find-and-replace": {"from": "cat", "to": "dog"}}],
                 outbound=[{"find-and-replace": {"from": "\"method\"", "to": "\"verb\""}}]),
            _api("j2x-in", inbound=[{"json-to-xml": {"apply": "always",
                                                     "consider-accept-header": False}}]),
            _api("x2j-in", inbound=[{"xml-to-json": {"kind": "direct",
                                                     "apply": "content-type-xml",
                                                     "consider-accept-header": False}}]),
            _api("j2x-out", outbound=[{"json-to-xml": {"apply": "content-type-json"}}]),
            _api("x2j-out", backend="xml", outbound=[{"xml-to-json": {
                "kind": "javascript-friendly", "apply": "always",
                "consider-accept-header": False}}]),
        ],
    }
    p = gateway(tmp_path_factory, cfg)
    yield p
    p.stop()


@pytest.fixture(scope="module")
def client(gw):
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        yield c


@pytest.fixture(scope="module")
def h2(gw):
    with httpx.Client(base_url=gw.url, http1=False, http2=True, timeout=10) as c:
        yield c


def _raw(gw, request: bytes) -> tuple[bytes, dict, bytes]:
    """One request on a raw socket: (status line, lower-case headers, body by length)."""
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        fields = {}
        for line in lines[1:]:
            n, _, v = line.partition(b":")
            fields.setdefault(n.strip().lower().decode(), []).append(v.strip().decode())
        n = int(fields["content-length"][0])
        while len(body) < n:
            body += s.recv(65536)
        return lines[0], fields, body


# -- set-header --------------------------------------------------------------------------

def test_set_header_on_the_request(client):
    h = doc(client.get("/hdr/x", headers=[("x-over", "old"), ("x-skip", "kept"),
                                          ("x-app", "one"), ("x-del", "bye")]))["headers"]
    assert h["x-new"] == "a,b"                   # several values: one comma-joined field
    assert h["x-over"] == "new"
    assert h["x-skip"] == "kept" and h["x-skip-absent"] == "set"
    assert h["x-app"] == "one,two"
    assert "x-del" not in h
    assert h["x-method"] == "GET /hdr/x"


def test_set_header_on_the_response(client):
    r = client.get("/hdr/x")
    assert r.status_code == 200
    assert r.headers["x-resp"] == "r1"
    assert "content-type" not in r.headers       # the backend's, deleted
    assert r.headers["x-status"] == "200"
    assert r.headers.get_list("set-cookie") == ["a=1", "b=2"]   # kept as separate fields
    assert r.headers["via"] == "1.1 apigw,extra"
    assert r.json()["path"] == "/x"              # the body still streamed through


def test_set_header_on_the_response_over_http2(h2):
    r = h2.get("/hdr/x")
    assert r.http_version == "HTTP/2"
    assert r.headers["x-resp"] == "r1" and r.headers.get_list("set-cookie") == ["a=1", "b=2"]


# -- set-query-parameter, rewrite-uri, set-method -------------------------------------------

def test_set_query_parameter(client):
    d = doc(client.get("/query/x?over=old&multi=1&skip=kept&gone=1&gone=2&other=z"))
    assert d["query"] == "multi=1&skip=kept&other=z&over=new&multi=2&sp%20ace=a%26b%3Dc"


def test_rewrite_uri_copies_unmatched_params(client):
    d = doc(client.get("/rw/get?a=b&c=d"))
    assert (d["path"], d["query"]) == ("/put", "c=d")


def test_rewrite_uri_with_template_parameters_and_expressions(client):
    d = doc(client.get("/rw/items/7?dropped=1"))
    assert (d["path"], d["query"]) == ("/v2/things/7", "from=GET")


def test_set_method(client):
    d = doc(client.get("/meth/x"))
    assert d["method"] == "POST"


# -- set-status ------------------------------------------------------------------------------

def test_set_status_code_and_reason_on_the_wire(gw):
    status, fields, body = _raw(gw, b"GET /status/x HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status == b"HTTP/1.1 201 Made It"
    assert json.loads(body)["path"] == "/x"


def test_set_status_over_http2(h2):
    r = h2.get("/status/x")
    assert r.status_code == 201


# -- set-body --------------------------------------------------------------------------------

def test_set_body_on_request_and_response_frames_both(gw):
    status, fields, body = _raw(gw, b"POST /body/x HTTP/1.1\r\nHost: t\r\nX-Who: you\r\n"
                                    b"Content-Length: 12\r\n\r\nthe original")
    assert status.startswith(b"HTTP/1.1 200")
    assert body == "status 200, é".encode()
    assert fields["content-length"] == [str(len(body))]
    assert "transfer-encoding" not in fields


def test_set_body_answers_a_chunked_upload_with_a_framed_body(client):
    def gen():
        yield b"a" * 1000
        yield b"b" * 1000
    r = client.post("/body/x", content=gen(), headers={"x-who": "chunks"})
    assert r.status_code == 200 and r.text == "status 200, é"
    assert r.headers["content-length"] == str(len(r.content))


def test_set_body_with_curl(gw):
    out = subprocess.run(["curl", "-sS", "-H", "x-who: curl", "--data-binary", "xyz",
                          f"{gw.url}/body/x"], capture_output=True, timeout=30, check=True)
    assert out.stdout.decode() == "status 200, é"


@pytest.fixture(scope="module")
def body_gw(tmp_path_factory, echo):  # noqa: F811
    cfg = {
        "listeners": [{"bind": "127.0.0.1:0", "protocols": ["http1", "h2c"]}],
        "backends": {"echo": {"url": f"http://127.0.0.1:{echo.port}", "timeout": "5s"}},
        "apis": [_api("in", inbound=[{"set-body": "hello {request.headers.x-who}"}]),
                 _api("empty", inbound=[{"set-body": ""}])],
    }
    p = gateway(tmp_path_factory, cfg)
    yield p
    p.stop()


@pytest.mark.parametrize("http2", [False, True])
def test_set_body_request_only(body_gw, http2):
    with httpx.Client(base_url=body_gw.url, http1=not http2, http2=http2, timeout=10) as c:
        def gen():
            yield b"x" * 5000
            yield b"y" * 5000
        for content in (b"short", gen()):
            d = doc(c.post("/in/x", content=content, headers={"x-who": "world"}))
            assert d["body"] == "hello world"
            assert d["headers"]["content-length"] == "11"
            assert "transfer-encoding" not in d["headers"]
        d = doc(c.post("/empty/x", content=b"something"))
        assert d["body"] == "" and d["headers"]["content-length"] == "0"


# -- set-variable ------------------------------------------------------------------------------

def test_set_variable_read_back_in_a_template(client):
    d = doc(client.put("/var/x", headers={"x-who": "ann"}, content=b""))
    assert d["headers"]["x-var"] == "ann/PUT"


# -- find-and-replace --------------------------------------------------------------------------

def test_find_and_replace_request_and_response(client):
    r = client.post("/far/x", content=b"cat sat on the cat mat")
    assert r.status_code == 200
    assert r.headers["content-length"] == str(len(r.content))
    d = r.json()
    assert d["verb"] == "POST" and "method" not in d
    assert d["body"] == "dog sat on the dog mat"
    assert d["headers"]["content-length"] == "22"


# -- json-to-xml / xml-to-json -------------------------------------------------------------------

def test_json_to_xml_on_the_request(client):
    d = doc(client.post("/j2x-in/x", json={"order": {"id": 7, "items": ["a", "b"]}}))
    assert d["headers"]["content-type"] == "application/xml"
    assert d["body"] == "<order><id>7</id><items>a</items><items>b</items></order>"
    assert d["headers"]["content-length"] == str(len(d["body"]))


def test_json_to_xml_bad_json_is_400(client):
    r = client.post("/j2x-in/x", content=b"{not json", headers={"content-type":
                                                                "application/json"})
    assert r.status_code == 400
    assert r.json()["statusCode"] == 400


def test_xml_to_json_on_the_request(client):
    d = doc(client.post("/x2j-in/x", content=b'<a x="1"><b>t</b></a>',
                        headers={"content-type": "application/xml"}))
    assert d["headers"]["content-type"] == "application/json"
    assert json.loads(d["body"]) == {"a": {"@x": "1", "b": "t"}}
    # apply: content-type-xml leaves other bodies alone
    d = doc(client.post("/x2j-in/x", content=b"<a/>", headers={"content-type": "text/plain"}))
    assert d["body"] == "<a/>"


def test_json_to_xml_on_the_response_follows_accept(client):
    r = client.get("/j2x-out/x", headers={"accept": "application/xml"})
    assert r.headers["content-type"] == "application/xml"
    assert r.text.startswith("<Document><method>GET</method>")
    assert "<method>GET</method>" in r.text
    assert r.headers["content-length"] == str(len(r.content))
    # consider-accept-header (default true): a client that does not ask for XML gets JSON
    r = client.get("/j2x-out/x", headers={"accept": "application/json"})
    assert r.json()["method"] == "GET"


def test_xml_to_json_on_the_response(client):
    r = client.get("/x2j-out")
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"order": {"id": "7", "item": ["a", "b"]}}
    assert r.headers["content-length"] == str(len(r.content))
