"""WebSocket message counts on `/metrics`: the messages relayed each way through a running
gateway, counted per API when the connection ends (a real `websockets` client and echo
backend)."""

from __future__ import annotations

import httpx
import pytest

pytest.importorskip("websockets", reason="optional test dependency 'websockets' missing")
from websockets.sync.client import connect as ws_connect  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from support import wait_until  # noqa: E402
from test_websocket_e2e import WSBackend  # noqa: E402


def test_messages_counted_each_way(gateway):
    b = WSBackend()
    gw = gateway({"listeners": [{"bind": "127.0.0.1:0"}],
                  "backends": {"ws": {"url": f"http://127.0.0.1:{b.port}"}},
                  "apis": [{"name": "chat", "path": "/chat", "backend": "ws",
                            "protocols": ["http", "websocket"]}],
                  "admin": {"bind": "127.0.0.1:0"}})
    with ws_connect(f"ws://127.0.0.1:{gw.port}/chat/room") as c:
        for i in range(4):
            c.send(f"m{i}")
            assert c.recv(timeout=30) == f"m{i}"

    def counts():
        text = httpx.get(f"http://127.0.0.1:{gw.admin_port}/metrics").text
        out = {s.labels["direction"]: s.value
               for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.name == "apigw_websocket_messages_total" and s.labels["api"] == "chat"}
        return out if len(out) == 2 else None
    assert wait_until(counts) == {"client_to_backend": 4, "backend_to_client": 4}
