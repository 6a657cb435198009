"""A real OTLP/HTTP traces receiver for tests: opentelemetry-proto decodes every POST."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest, ExportTraceServiceResponse)


class KeepAliveReceiver:
    """An HTTP/1.1 (keep-alive) OTLP traces endpoint on 127.0.0.1:`port`: `spans`,
    `posts`, `peers` (the client address of every POST: one per exporter connection)."""

    def __init__(self, port: int = 0) -> None:
        self.spans: list = []
        self.posts = 0
        self.peers: set = set()
        self.lock = threading.Lock()
        owner = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                req = ExportTraceServiceRequest.FromString(body)
                with owner.lock:
                    owner.posts += 1
                    owner.peers.add(self.client_address)
                    for rs in req.resource_spans:
                        for ss in rs.scope_spans:
                            owner.spans.extend(ss.spans)
                out = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of_trace(self, trace_hex: str) -> list:
        with self.lock:
            return [s for s in self.spans if s.trace_id.hex() == trace_hex]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
