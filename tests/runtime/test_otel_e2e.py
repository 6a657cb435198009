"""OpenTelemetry through a running gateway, received by a real OTLP/HTTP receiver.

The receiver is a small HTTP server run by the test that decodes opentelemetry-proto's
ExportTraceServiceRequest (a second implementation of the wire format, not the SDK's
exporter).  Checked: a SERVER span per request (the client's span as parent) and a CLIENT
span per backend attempt whose id is the parent in the `traceparent` the backend saw;
a retry on a dead keep-alive connection gives two sibling CLIENT spans; the semantic
convention attributes; policy errors as span events; the sampler; a dead collector costs
only a counter (requests keep being answered, `apigw_otel_spans_failed` grows).
"""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

pytest.importorskip("opentelemetry.proto")
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest, ExportTraceServiceResponse)

from backends import Backend, refused_url  # noqa: E402
from support import wait_until  # noqa: E402

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
SERVER, CLIENT = 2, 3          # opentelemetry.proto.trace.v1.Span.SpanKind


class Receiver:
    """An OTLP/HTTP traces endpoint on 127.0.0.1: `spans` (decoded protobuf Spans, each
    with the resource's service.name as `.service`), `posts`."""

    def __init__(self) -> None:
        self.spans: list = []
        self.posts = 0
        self.lock = threading.Lock()
        owner = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                assert self.path == "/v1/traces"
                assert self.headers["Content-Type"] == "application/x-protobuf"
                req = ExportTraceServiceRequest.FromString(body)
                with owner.lock:
                    owner.posts += 1
                    for rs in req.resource_spans:
                        svc = {a.key: a.value.string_value
                               for a in rs.resource.attributes}.get("service.name")
                        for ss in rs.scope_spans:
                            for s in ss.spans:
                                owner.spans.append((svc, s))
                out = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of_trace(self, trace_hex: str) -> list:
        with self.lock:
            return [s for _, s in self.spans if s.trace_id.hex() == trace_hex]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def attrs(span) -> dict:
    out = {}
    for a in span.attributes:
        v = a.value
        out[a.key] = v.int_value if v.HasField("int_value") else v.string_value
    return out


def config(backend_url: str, endpoint: str, **otel) -> dict:
    return {"listeners": [{"bind": "127.0.0.1:0"}],
            "backends": {"b": {"url": backend_url}},
            "apis": [{"name": "plain", "path": "/plain", "backend": "b"},
                     {"name": "pol", "path": "/pol", "backend": "b", "policies": {
                         "inbound": [{"set-header": {"name": "x-p", "value": ["1"]}}]}},
                     {"name": "bad", "path": "/bad", "backend": "b", "policies": {
                         "inbound": [{"check-header": {
                             "name": "x-need", "failed-check-httpcode": 401,
                             "failed-check-error-message": "need x-need"}}]}}],
            "admin": {"bind": "127.0.0.1:0"},
            "telemetry": {"otel": {"endpoint": endpoint, "sampler": "parentbased_always_on",
                                   "service-name": "gw-test", **otel}}}


def backend_parents(backend: Backend) -> list[str]:
    """The parent ids of the `traceparent`s the backend received, in order."""
    return re.findall(rb"traceparent: 00-[0-9a-f]{32}-([0-9a-f]{16})-0[01]",
                      backend.received.lower())


@pytest.mark.parametrize("path", ["/plain/x?subscription-key=s3cret", "/pol/x"])
def test_server_and_client_spans(gateway, receiver, path):
    with Backend("ok") as be:
        gw = gateway(config(be.url, receiver.url))
        r = httpx.get(gw.url + path, headers={"traceparent": f"00-{TRACE}-{CLIENT_SPAN}-01"})
        assert r.status_code == 200
        wait_until(lambda: len(receiver.of_trace(TRACE)) >= 2, timeout=15)
        spans = receiver.of_trace(TRACE)
        server = [s for s in spans if s.kind == SERVER]
        client = [s for s in spans if s.kind == CLIENT]
        assert len(server) == 1 and len(client) == 1
        s, c = server[0], client[0]
        assert s.parent_span_id.hex() == CLIENT_SPAN
        assert c.parent_span_id == s.span_id
        # the backend saw the CLIENT span as its parent
        assert backend_parents(be) == [c.span_id.hex().encode()]
        a = attrs(s)
        assert a["http.request.method"] == "GET"
        assert a["url.path"] == path.split("?")[0]
        assert a["http.response.status_code"] == 200
        assert a["server.address"] == "127.0.0.1"
        assert a["apim.api"] in ("plain", "pol")
        assert "s3cret" not in str(a)
        ca = attrs(c)
        assert ca["server.address"] == "127.0.0.1" and ca["server.port"] == be.port
        assert ca["http.response.status_code"] == 200
        assert s.start_time_unix_nano <= c.start_time_unix_nano <= c.end_time_unix_nano \
            <= s.end_time_unix_nano
        assert {svc for svc, _ in receiver.spans} == {"gw-test"}


def test_retry_gives_sibling_client_spans(gateway, receiver):
    # "once": the second request on a kept-alive connection finds it closed: the gateway
    # retries on a new connection
    with Backend("once") as be:
        gw = gateway(config(be.url, receiver.url))
        with httpx.Client(base_url=gw.url, timeout=10) as c:
            assert c.get("/plain/1").status_code == 200
            tp = f"00-{TRACE}-{CLIENT_SPAN}-01"
            wait_until(lambda: be.connections >= 1)
            assert c.get("/plain/2", headers={"traceparent": tp}).status_code == 200
        wait_until(lambda: len([s for s in receiver.of_trace(TRACE) if s.kind == CLIENT]) >= 2,
                   timeout=15)
        spans = receiver.of_trace(TRACE)
        (server,) = [s for s in spans if s.kind == SERVER]
        client = sorted((s for s in spans if s.kind == CLIENT),
                        key=lambda s: s.start_time_unix_nano)
        assert len(client) == 2
        assert all(c.parent_span_id == server.span_id for c in client)   # siblings
        assert client[0].span_id != client[1].span_id
        assert attrs(client[1])["http.request.resend_count"] == 1
        assert attrs(client[0])["error.type"] == "retried"
        assert client[0].status.code == 2          # STATUS_CODE_ERROR
        assert attrs(client[1])["http.response.status_code"] == 200
        # the answered attempt's head named its own CLIENT span (the head the retry sent
        # had its traceparent rewritten, also when the head was written in C)
        assert backend_parents(be)[-1] == client[1].span_id.hex().encode()


def test_policy_error_is_a_span_event(gateway, receiver):
    with Backend("ok") as be:
        gw = gateway(config(be.url, receiver.url))
        r = httpx.get(gw.url + "/bad/x", headers={"traceparent": f"00-{TRACE}-{CLIENT_SPAN}-01"})
        assert r.status_code == 401
        wait_until(lambda: receiver.of_trace(TRACE), timeout=15)
        (s,) = receiver.of_trace(TRACE)          # no backend attempt: no CLIENT span
        assert s.kind == SERVER and attrs(s)["http.response.status_code"] == 401
        (ev,) = [e for e in s.events if e.name == "policy.error"]
        ea = attrs(ev)
        assert ea["apim.policy"] == "check-header" and ea["apim.section"] == "inbound"
        assert ea["apim.message"] == "need x-need"


def test_sampler(gateway, receiver):
    with Backend("ok") as be:
        gw = gateway(config(be.url, receiver.url, sampler="parentbased_traceidratio",
                            ratio=0.0))
        # a sampled parent is followed; an unsampled one and a new trace (ratio 0) are not
        other = "5bf92f3577b34da6a3ce929d0e0e4736"
        fresh = httpx.get(gw.url + "/plain/a")
        assert fresh.status_code == 200
        assert httpx.get(gw.url + "/plain/a", headers={
            "traceparent": f"00-{other}-{CLIENT_SPAN}-00"}).status_code == 200
        assert httpx.get(gw.url + "/plain/a", headers={
            "traceparent": f"00-{TRACE}-{CLIENT_SPAN}-01"}).status_code == 200
        wait_until(lambda: len(receiver.of_trace(TRACE)) >= 2, timeout=15)
        # the sampled one was exported in the same batch as anything else finished before
        wait_until(lambda: receiver.posts >= 1)
        assert {s.trace_id.hex() for _, s in receiver.spans} == {TRACE}


def test_new_trace_sampled_marks_the_backend_hop(gateway, receiver):
    with Backend("ok") as be:
        gw = gateway(config(be.url, receiver.url))
        assert httpx.get(gw.url + "/plain/a").status_code == 200
        wait_until(lambda: len(receiver.spans) >= 2, timeout=15)
        flags = re.findall(rb"traceparent: 00-[0-9a-f]{32}-[0-9a-f]{16}-(0[01])",
                           be.received.lower())
        assert flags == [b"01"]


def test_dead_collector_costs_a_counter(gateway):
    dead = refused_url() + "/v1/traces"
    with Backend("ok") as be:
        gw = gateway(config(be.url, dead))
        with httpx.Client(base_url=gw.url, timeout=10) as c:
            for i in range(50):
                assert c.get(f"/plain/{i}").status_code == 200

        def failed() -> float:
            text = httpx.get(f"http://127.0.0.1:{gw.admin_port}/metrics").text
            m = re.search(r"^apigw_otel_spans_failed_total (\S+)$", text, re.M)
            return float(m.group(1)) if m else 0.0
        wait_until(lambda: failed() >= 100, timeout=30)   # 50 SERVER + 50 CLIENT spans
        assert httpx.get(gw.url + "/plain/after").status_code == 200
