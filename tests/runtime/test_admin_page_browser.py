"""The live admin page (`GET /` on the admin listener) in a real headless Chromium, driven
over the DevTools protocol (the `websockets` library; no browser download): the page
loads with no console error and no uncaught exception, its numbers move as the test sends
traffic (total requests, the per-API table, errors by reason, the latest requests and
request traces), and a
screenshot is saved under the test's tmp dir (its path printed)."""

from __future__ import annotations

import base64
import itertools
import json
import re
import subprocess
import threading

import httpx
import pytest

from backends import Refused
from support import need_binary, wait_until

websockets_sync = pytest.importorskip("websockets.sync.client")


class DevTools:
    """One page target of a headless Chromium: `call(method, **params)`; console errors
    and exceptions collected in `errors` by a reader thread."""

    def __init__(self, url: str) -> None:
        self.ws = websockets_sync.connect(url, max_size=None, open_timeout=30).__enter__()
        self.ids = itertools.count(1)
        self.replies: dict[int, dict] = {}
        self.errors: list[str] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            while True:
                msg = json.loads(self.ws.recv())
                m = msg.get("method")
                if m == "Runtime.exceptionThrown":
                    self.errors.append(json.dumps(msg["params"]["exceptionDetails"])[:500])
                elif m == "Runtime.consoleAPICalled" and msg["params"]["type"] in (
                        "error", "assert"):
                    self.errors.append(json.dumps(msg["params"]["args"])[:500])
                elif m == "Log.entryAdded" and msg["params"]["entry"]["level"] == "error":
                    self.errors.append(msg["params"]["entry"].get("text", "")[:500])
                if "id" in msg:
                    with self.cond:
                        self.replies[msg["id"]] = msg
                        self.cond.notify_all()
        except Exception:  # noqa: BLE001 - the browser went away at the end of the test
            pass

    def call(self, method: str, **params) -> dict:
        i = next(self.ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        with self.cond:
            assert self.cond.wait_for(lambda: i in self.replies, timeout=60), method
            msg = self.replies.pop(i)
        assert "error" not in msg, msg
        return msg["result"]

    def eval(self, js: str):
        r = self.call("Runtime.evaluate", expression=js, returnByValue=True)
        return r["result"].get("value")


@pytest.fixture
def chromium(tmp_path):
    exe = need_binary("chromium")
    proc = subprocess.Popen([exe, "--headless=new", "--no-sandbox", "--disable-gpu",
                             "--remote-debugging-port=0", "--window-size=1200,1400",
                             f"--user-data-dir={tmp_path / 'profile'}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []

    def pump():
        for line in proc.stderr:   # type: ignore[union-attr]
            lines.append(line)
    threading.Thread(target=pump, daemon=True).start()
    try:
        m = wait_until(lambda: next((re.search(r"ws://127\.0\.0\.1:(\d+)/", x)
                                     for x in lines if "DevTools listening" in x), None),
                       message="chromium's DevTools port")
        port = int(m.group(1))

        def page():
            targets = httpx.get(f"http://127.0.0.1:{port}/json/list").json()
            return next((t for t in targets if t["type"] == "page"), None)
        target = wait_until(page, message="a page target")
        tools = DevTools(target["webSocketDebuggerUrl"])
        yield tools
        tools.ws.close()
    finally:
        proc.kill()
        proc.wait()


def test_page_loads_and_moves_with_traffic(tmp_path, gateway, echo, chromium):
    down = Refused()
    try:
        gw = gateway({"listeners": [{"bind": "127.0.0.1:0"}],
                      "backends": {"echo": {"url": echo.url,
                                            "health-check": {"path": "/", "interval": "1s"}},
                                   "down": {"url": down.url, "circuit-breaker": {
                                       "failure-condition": {"count": 1, "interval": "60s"},
                                       "trip-duration": "60s"}}},
                      "apis": [{"name": "orders", "path": "/orders", "backend": "echo"},
                               {"name": "down", "path": "/down", "backend": "down"}],
                      "admin": {"bind": "127.0.0.1:0"}})
        admin = f"http://127.0.0.1:{gw.admin_port}/"
        page = httpx.get(admin)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "http://" not in page.text and "https://" not in page.text   # no CDN
        t = chromium
        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            t.call(domain)
        t.call("Page.navigate", url=admin)
        wait_until(lambda: t.eval("document.getElementById('total').textContent") == "0",
                   message="the page's first poll")
        with httpx.Client(base_url=gw.url, timeout=10) as c:
            for i in range(12):
                assert c.get(f"/orders/{i}").status_code == 200
            assert c.get("/down/x").status_code == 502
        wait_until(lambda: t.eval("document.getElementById('total').textContent") == "13",
                   message="the total moved to 13")
        apis = wait_until(lambda: t.eval(
            "Array.from(document.querySelectorAll('#apis tbody tr'))"
            ".map(r => r.cells[0].textContent + '=' + r.cells[1].textContent).join(',')")
            or None)
        assert apis == "down=1,orders=12"
        assert "BackendConnectionFailure" in t.eval(
            "document.getElementById('reasons').textContent")
        # the backends' breaker and health state (state_metrics.py, read at flush time)
        def state_of(name):
            return t.eval("Array.from(document.querySelectorAll('#backends tbody tr'))"
                          f".filter(r => r.cells[0].textContent == '{name}')"
                          ".map(r => r.cells[4].textContent).join('')")
        wait_until(lambda: "breaker open" in state_of("down").split(" · "),
                   message="the down backend's breaker open on the page")
        wait_until(lambda: "healthy" in state_of("echo").split(" · "),
                   message="the echo backend healthy on the page")
        assert t.eval("document.querySelectorAll('#recent tbody tr').length") == 13
        assert t.eval("document.querySelector('#recent tbody tr').cells[2].textContent") \
            == "/down/x"
        # a traced request (APIM's debug trace) shows in the traces table, linked
        token = httpx.post(admin + "debug-credentials", json={"api": "orders"}).json()["token"]
        r = httpx.get(gw.url + "/orders/traced", headers={"Apim-Debug-Authorization": token})
        tid = r.headers["apim-trace-id"]
        wait_until(lambda: t.eval(
            "(document.querySelector('#traces tbody tr') || {textContent: ''}).textContent"
            ).startswith(tid), message="the trace in the traces table")
        assert t.eval("document.querySelector('#traces tbody tr a').getAttribute('href')") \
            == f"traces/{tid}"
        assert httpx.get(admin + f"traces/{tid}").json()["id"] == tid
        # a second burst: requests per second shows something, the p50 is a number
        with httpx.Client(base_url=gw.url, timeout=10) as c:
            for i in range(20):
                assert c.get(f"/orders/{i}").status_code == 200
        wait_until(lambda: t.eval("document.getElementById('total').textContent") == "34")
        assert float(t.eval("document.getElementById('p50').textContent")) > 0
        shot = tmp_path / "admin-page.png"
        data = t.call("Page.captureScreenshot", format="png")["data"]
        shot.write_bytes(base64.b64decode(data))
        print(f"admin page screenshot: {shot}")
        assert shot.stat().st_size > 10000
        assert t.errors == [], t.errors
    finally:
        down.close()
