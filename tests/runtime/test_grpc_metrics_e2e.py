"""gRPC message counts on `/metrics`: a grpcio client through a running gateway to a
grpcio server, on the direct path and through a policy pipeline; the messages of each
direction are counted per API (client streaming: 4 up, 1 down; server streaming: 1 up,
4 down)."""

from __future__ import annotations

import sys
from concurrent import futures
from pathlib import Path

import httpx
import pytest

grpc = pytest.importorskip("grpc", reason="optional test dependency 'grpcio' missing")
pytest.importorskip("grpc_tools", reason="optional test dependency 'grpcio-tools' missing")
pytest.importorskip("google.protobuf", reason="optional test dependency 'protobuf' missing")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from support import wait_until  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "protocol"))
from grpc_test_pb import pb2, pb2_grpc  # noqa: E402
from test_grpc_e2e import InteropService  # noqa: E402

SERVICE = "apigw.test.TestService"


def test_messages_counted_each_way(gateway):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb2_grpc.add_TestServiceServicer_to_server(InteropService(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        url = f"http://127.0.0.1:{port}/{SERVICE}"
        gw = gateway({
            "listeners": [{"bind": "127.0.0.1:0", "protocols": ["http1", "h2c"]}],
            "backends": {"g": {"url": url, "http-version": "2", "timeout": 10}},
            "apis": [{"name": "direct", "path": f"/{SERVICE}", "backend": "g",
                      "protocols": ["grpc"]},
                     {"name": "piped", "host": "piped.test", "path": f"/{SERVICE}",
                      "backend": "g", "protocols": ["grpc"],
                      "policies": {"inbound": [
                          {"set-header": {"name": "x-p", "value": ["1"]}}]}}],
            "admin": {"bind": "127.0.0.1:0"}})
        for authority in (None, "piped.test"):
            opts = [("grpc.default_authority", authority)] if authority else []
            with grpc.insecure_channel(f"127.0.0.1:{gw.port}", options=opts) as ch:
                stub = pb2_grpc.TestServiceStub(ch)
                r = stub.StreamingInputCall(iter(
                    pb2.StreamingInputCallRequest(payload=pb2.Payload(body=b"\0" * n))
                    for n in (10, 20000, 3, 70000)), timeout=60)
                assert r.aggregated_payload_size == 90013
                got = [len(x.payload.body) for x in stub.StreamingOutputCall(
                    pb2.StreamingOutputCallRequest(response_parameters=[
                        pb2.ResponseParameters(size=n) for n in (5, 40000, 7, 1)]), timeout=60)]
                assert got == [5, 40000, 7, 1]

        def counts():
            text = httpx.get(f"http://127.0.0.1:{gw.admin_port}/metrics").text
            out = {(s.labels["api"], s.labels["direction"]): s.value
                   for fam in text_string_to_metric_families(text) for s in fam.samples
                   if s.name == "apigw_grpc_messages_total"}
            return out if len(out) == 4 else None
        assert wait_until(counts) == {("direct", "client_to_backend"): 5,
                                      ("direct", "backend_to_client"): 5,
                                      ("piped", "client_to_backend"): 5,
                                      ("piped", "backend_to_client"): 5}
    finally:
        server.stop(0)
