"""Hot reload against real gateway processes: SIGHUP, the admin `POST /reload`, `apigw
serve --watch`, refused files, requests in flight across a reload, `--workers 2` (every
worker reloads), and 50 reloads under load without one failed request.  The pure parts of
runtime/reload.py (what needs a restart, port pinning, the file watch, the status
document) are tested in memory at the end.

Each test rewrites the config file and polls `GET /config` until the version it expects;
with workers, until each worker (told apart by the `pid` in that document, reached over
fresh connections that the kernel spreads over them) reports it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
from pathlib import Path
from typing import Callable, Optional

import httpx
import trio

from apigw_core.gateway.config import parse_config
from apigw_core.runtime.reload import (FileWatch, ReloadStatus, pin_ports,
                                       restart_only_changes)
from backends import Backend
from procs import Proc, _start, write_config
from support import WAIT, wait_until

TIMEOUT = WAIT   # generous: the machine is shared; every wait polls


def _config(header: str, backends: dict[str, str], apis: Optional[list] = None,
            **extra) -> dict:
    """Listener and admin on port 0; APIs (default: one per backend, at /name) whose
    responses carry `x-cfg: header` (a global outbound set-header)."""
    cfg = {
        "listeners": [{"bind": "127.0.0.1:0"}],
        "backends": {n: {"url": u, "timeout": "10s"} for n, u in backends.items()},
        "apis": apis if apis is not None else
        [{"name": n, "path": f"/{n}", "backend": n} for n in backends],
        "policies": {"outbound": [{"set-header": {"name": "x-cfg", "value": [header]}}]},
        "admin": {"bind": "127.0.0.1:0"},
    }
    cfg.update(extra)
    return cfg


def _serve(tmp_path: Path, config: dict, *flags: str) -> tuple[Proc, Path]:
    path = write_config(tmp_path, config)
    return _start(["serve", str(path), *flags], 1, admin=True), path


def _rewrite(path: Path, config: dict | str) -> None:
    """Replace the file atomically (a new inode), as editors and deploy tools do."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(config if isinstance(config, str) else json.dumps(config))
    os.replace(tmp, path)


def _status(gw: Proc) -> dict:
    # a fresh connection each time: with workers, each may land on another one
    r = httpx.get(f"http://127.0.0.1:{gw.admin_port}/config", timeout=5,
                  headers={"connection": "close"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    return r.json()


def _wait(pred: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    wait_until(pred, timeout, step=0.05, message=what)


def _wait_version(gw: Proc, version: int, workers: int = 1) -> dict:
    """Poll /config until `workers` distinct processes report `version`; the last seen."""
    seen: dict[int, dict] = {}

    def done() -> bool:
        st = _status(gw)
        if st["version"] == version:
            seen[st["pid"]] = st
        return len(seen) >= workers

    _wait(done, f"config version {version} in {workers} process(es)")
    return next(iter(seen.values()))


def _post_reload(gw: Proc) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{gw.admin_port}/reload", timeout=TIMEOUT)


def _get(gw: Proc, path: str, client: Optional[httpx.Client] = None) -> httpx.Response:
    if client is not None:
        return client.get(gw.url + path)
    return httpx.get(gw.url + path, timeout=10, headers={"connection": "close"})


# -- the three triggers ----------------------------------------------------------------------

def test_sighup_reloads_the_file_an_added_api_and_a_changed_header(tmp_path):
    with Backend("ok") as a:
        gw, path = _serve(tmp_path, _config("one", {"a": a.url}))
        try:
            first = _status(gw)
            assert first["version"] == 1 and first["last-error"] is None
            assert first["source"] == str(path)
            assert _get(gw, "/a/x").headers["x-cfg"] == "one"
            assert _get(gw, "/b/x").status_code == 404

            cfg = _config("two", {"a": a.url}, apis=[
                {"name": "a", "path": "/a", "backend": "a"},
                {"name": "b", "path": "/b", "backend": "a"}])
            _rewrite(path, cfg)
            gw.proc.send_signal(signal.SIGHUP)
            st = _wait_version(gw, 2)
            assert st["last-error"] is None and st["loaded-at"] > first["loaded-at"]
            r = _get(gw, "/b/x")
            assert r.status_code == 200 and r.text == "/x\n" and r.headers["x-cfg"] == "two"
            assert _get(gw, "/a/x").headers["x-cfg"] == "two"
        finally:
            assert gw.stop() == 0


def test_post_reload_answers_once_applied_and_a_changed_backend_url_is_used(tmp_path):
    with Backend("ok", body=b"from A") as a, Backend("ok", body=b"from B") as b:
        gw, path = _serve(tmp_path, _config("one", {"svc": a.url}))
        try:
            with httpx.Client(timeout=10) as c:
                assert _get(gw, "/svc/", c).text == "from A"   # a pooled connection to A
            assert a.wait_connections(1)
            pooled = a.new_conns[0]

            _rewrite(path, _config("one", {"svc": b.url}))
            r = _post_reload(gw)
            assert r.status_code == 200, r.text
            assert r.json()["version"] == 2 and r.json()["last-error"] is None
            # no poll needed: the answer comes once this process runs the new config
            assert _get(gw, "/svc/").text == "from B"
            # the retired pool closed its idle connection to A
            assert pooled.done.wait(TIMEOUT) and pooled.end == "eof"

            assert httpx.get(f"http://127.0.0.1:{gw.admin_port}/reload").status_code == 405
        finally:
            assert gw.stop() == 0


def test_watch_reloads_when_the_file_changes(tmp_path):
    with Backend("ok") as a:
        gw, path = _serve(tmp_path, _config("one", {"a": a.url}), "--watch")
        try:
            assert _get(gw, "/a/").headers["x-cfg"] == "one"
            _rewrite(path, _config("two", {"a": a.url}))
            _wait_version(gw, 2)
            assert _get(gw, "/a/").headers["x-cfg"] == "two"
            # a change of content alone, in place (same inode)
            path.write_text(json.dumps(_config("three", {"a": a.url})))
            _wait_version(gw, 3)
            assert _get(gw, "/a/").headers["x-cfg"] == "three"
        finally:
            assert gw.stop() == 0


# -- refused reloads ---------------------------------------------------------------------------

def test_an_invalid_file_is_refused_and_the_old_config_keeps_serving(tmp_path):
    with Backend("ok") as a:
        good = _config("one", {"a": a.url}, **{"named-values": {"token": "s3cr3t-v4lue"}})
        gw, path = _serve(tmp_path, good)
        try:
            bad = _config("two", {"a": a.url}, **{"named-values": {"token": "s3cr3t-v4lue"}})
            bad["policies"]["outbound"][0]["set-header"]["exists-action"] = "sometimes"
            _rewrite(path, bad)
            r = _post_reload(gw)
            assert r.status_code == 400
            st = _status(gw)
            assert st["version"] == 1
            errors = st["last-error"]["errors"]
            assert len(errors) == 1 and errors[0].startswith(
                "policies.outbound[0].set-header.exists-action: expected one of "), errors
            assert _get(gw, "/a/").headers["x-cfg"] == "one"        # still the old config
            assert any("policies.outbound[0].set-header.exists-action" in line
                       for line in gw.output), "the errors are logged"

            bad["policies"]["outbound"][0]["set-header"]["exists-action"] = "override"
            bad["backends"]["a"]["url"] = "{{token}}"      # a bad value made of a secret
            _rewrite(path, bad)
            r = _post_reload(gw)
            assert r.status_code == 400
            errors = r.json()["last-error"]["errors"]
            assert [e.partition(": ")[0] for e in errors] == ["backends.a.url"], errors
            assert "s3cr3t" not in r.text and "s3cr3t" not in json.dumps(_status(gw))
            assert not any("s3cr3t" in line for line in gw.output)

            # not even parseable, then unreadable: refused alike
            _rewrite(path, "listeners: [")
            assert _post_reload(gw).status_code == 400
            path.unlink()
            gw.proc.send_signal(signal.SIGHUP)
            _wait(lambda: "cannot read" in json.dumps(_status(gw)["last-error"]),
                  "the unreadable file's error")
            assert _get(gw, "/a/").headers["x-cfg"] == "one"

            # a good file again: applied, and the error is cleared
            _rewrite(path, _config("three", {"a": a.url}))
            r = _post_reload(gw)
            assert r.status_code == 200 and r.json()["version"] == 2
            assert r.json()["last-error"] is None
            assert _get(gw, "/a/").headers["x-cfg"] == "three"
        finally:
            assert gw.stop() == 0     # refused reloads do not change the exit status


def test_what_needs_a_restart_is_refused_as_a_whole(tmp_path):
    with Backend("ok") as a:
        gw, path = _serve(tmp_path, _config("one", {"a": a.url}))
        try:
            changed = _config("two", {"a": a.url}, server={"max-connections": 5})
            changed["listeners"].append({"bind": "127.0.0.1:0"})
            _rewrite(path, changed)
            r = _post_reload(gw)
            assert r.status_code == 400
            assert r.json()["last-error"]["errors"] == [
                "listeners: changed; restart the gateway to apply",
                "server: changed; restart the gateway to apply"]
            assert _get(gw, "/a/").headers["x-cfg"] == "one"   # nothing half-applied
        finally:
            assert gw.stop() == 0


# -- requests in flight --------------------------------------------------------------------------

def test_a_request_in_flight_finishes_on_the_config_it_started_with(tmp_path):
    with Backend("slow", delay=3.0) as slow, Backend("ok") as fast:
        gw, path = _serve(tmp_path, _config("old", {"slow": slow.url, "fast": fast.url}))
        try:
            result: dict = {}

            def call() -> None:
                try:
                    result["r"] = _get(gw, "/slow/")
                except Exception as exc:  # noqa: BLE001 - reported by the assert below
                    result["error"] = exc

            t = threading.Thread(target=call)
            t.start()
            _wait(lambda: b"GET / " in slow.received, "the slow request at the backend")
            _rewrite(path, _config("new", {"slow": slow.url, "fast": fast.url}))
            gw.proc.send_signal(signal.SIGHUP)
            _wait_version(gw, 2)
            assert _get(gw, "/fast/").headers["x-cfg"] == "new"
            t.join(TIMEOUT)
            assert "error" not in result, result.get("error")
            r = result["r"]
            assert r.status_code == 200 and r.headers["x-cfg"] == "old"
        finally:
            assert gw.stop() == 0


# -- workers -----------------------------------------------------------------------------------

def _all_answer(gw: Proc, header: str, n: int = 12) -> bool:
    return all(_get(gw, "/a/").headers["x-cfg"] == header for _ in range(n))


def test_every_worker_reloads_on_post_reload_and_on_sighup(tmp_path):
    with Backend("ok") as a:
        gw, path = _serve(tmp_path, _config("one", {"a": a.url}), "--workers", "2")
        try:
            _wait_version(gw, 1, workers=2)     # both workers answer the admin port

            _rewrite(path, _config("two", {"a": a.url}))
            r = _post_reload(gw)                # lands in one worker; all must reload
            assert r.status_code == 200 and r.json()["version"] == 2
            _wait_version(gw, 2, workers=2)
            assert _all_answer(gw, "two")

            _rewrite(path, _config("three", {"a": a.url}))
            gw.proc.send_signal(signal.SIGHUP)  # to the supervisor, forwarded
            _wait_version(gw, 3, workers=2)
            assert _all_answer(gw, "three")

            # a worker started after the reloads serves the reloaded config too
            workers = _children(gw.pid)
            os.kill(min(workers), signal.SIGKILL)
            _wait(lambda: len(_children(gw.pid) - workers) == 1, "the restarted worker")
            new = (_children(gw.pid) - workers).pop()
            _wait(lambda: _status(gw)["pid"] == new, "the restarted worker's admin")
            assert _status_of(gw, new)["version"] == 3
            assert _all_answer(gw, "three", 20)
        finally:
            assert gw.stop() == 0


def test_workers_watch_the_file(tmp_path):
    with Backend("ok") as a:
        gw, path = _serve(tmp_path, _config("one", {"a": a.url}), "--workers", "2",
                          "--watch")
        try:
            _wait_version(gw, 1, workers=2)
            _rewrite(path, _config("two", {"a": a.url}))
            _wait_version(gw, 2, workers=2)
            assert _all_answer(gw, "two")
        finally:
            assert gw.stop() == 0


def _children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(p) for p in text.split()}


def _status_of(gw: Proc, pid: int) -> dict:
    found: dict = {}

    def hit() -> bool:
        st = _status(gw)
        if st["pid"] == pid:
            found.update(st)
        return bool(found)

    _wait(hit, f"/config from pid {pid}")
    return found


# -- under load ----------------------------------------------------------------------------------

def test_no_request_fails_across_50_reloads_under_load(tmp_path):
    """Two configs (header a + backend A, header b + backend B) alternate 50 times while
    client threads keep requests going: keep-alive clients, and one that opens a new
    connection per request.  Every answer is a 200 from one of the two configs whole
    (never header a with backend B); both configs are seen."""
    with Backend("ok", body=b"A") as a, Backend("ok", body=b"B") as b:
        configs = [_config("a", {"svc": a.url}), _config("b", {"svc": b.url})]
        gw, path = _serve(tmp_path, configs[0])
        stop = threading.Event()
        answers: dict[tuple, int] = {}
        failures: list[str] = []
        lock = threading.Lock()

        def client(keep_alive: bool) -> None:
            c = httpx.Client(timeout=20) if keep_alive else None
            try:
                while not stop.is_set():
                    try:
                        r = _get(gw, "/svc/", c)
                        key = (r.status_code, r.headers.get("x-cfg"), r.text)
                    except httpx.HTTPError as exc:
                        key = ("error", type(exc).__name__, str(exc))
                    with lock:
                        answers[key] = answers.get(key, 0) + 1
                        if key not in ((200, "a", "A"), (200, "b", "B")):
                            failures.append(repr(key))
            finally:
                if c is not None:
                    c.close()

        threads = [threading.Thread(target=client, args=(ka,)) for ka in (True, True, False)]
        for t in threads:
            t.start()
        try:
            for i in range(50):
                _rewrite(path, configs[(i + 1) % 2])
                r = _post_reload(gw)
                assert r.status_code == 200, r.text
                assert r.json()["version"] == i + 2
                before = sum(answers.values())
                # let requests run on this config before the next reload
                _wait(lambda: sum(answers.values()) >= before + 3, "requests after a reload")
        finally:
            stop.set()
            for t in threads:
                t.join(TIMEOUT)
            code = gw.stop()
        assert not failures, (failures[:5], answers)
        assert answers.get((200, "a", "A"), 0) > 0 and answers.get((200, "b", "B"), 0) > 0
        assert sum(answers.values()) >= 150
        assert code == 0


# -- runtime/reload.py in memory ---------------------------------------------------------------

def _parsed(cfg: dict):
    return parse_config(cfg, source="gw.json")


def test_restart_only_changes_name_each_section():
    base = _config("one", {"a": "http://127.0.0.1:9"})
    old = _parsed(base)
    assert restart_only_changes(old, _parsed(_config("two", {"b": "http://127.0.0.1:8"}))) == []
    admin = dict(base, admin={"bind": "127.0.0.1:9901"})
    assert restart_only_changes(old, _parsed(admin)) == [
        "admin: changed; restart the gateway to apply"]
    server = dict(base, server={"head-timeout": "3s"})
    assert restart_only_changes(old, _parsed(server)) == [
        "server: changed; restart the gateway to apply"]
    tls = dict(base, listeners=[{"bind": "127.0.0.1:0", "protocols": ["http1", "h2c"]}])
    assert restart_only_changes(old, _parsed(tls)) == [
        "listeners: changed; restart the gateway to apply"]


def test_pin_ports_gives_port_0_listeners_the_supervisors_ports():
    started = _parsed(dict(_config("x", {}), listeners=[
        {"bind": "127.0.0.1:0"}, {"bind": "127.0.0.1:8080"}]))
    pinned = dataclasses.replace(
        started,
        listeners=(dataclasses.replace(started.listeners[0], port=40001,
                                       bind="127.0.0.1:40001"), started.listeners[1]),
        admin=dataclasses.replace(started.admin, port=40002, bind="127.0.0.1:40002"))
    same = pin_ports(started, started, pinned)
    assert restart_only_changes(pinned, same) == []
    assert same.listeners[0].port == 40001 and same.admin.port == 40002
    moved = _parsed(dict(_config("x", {}), listeners=[
        {"bind": "127.0.0.1:7000"}, {"bind": "127.0.0.1:8080"}]))
    assert restart_only_changes(pinned, pin_ports(moved, started, pinned)) == [
        "listeners: changed; restart the gateway to apply"]


def test_file_watch_sees_content_size_and_replacement(tmp_path):
    p = tmp_path / "f"
    p.write_text("one")
    w = FileWatch(str(p))
    assert not w.changed()
    p.write_text("three")                  # size
    assert w.changed() and not w.changed()
    st = p.stat()
    p.write_text("four!")                  # same size: the mtime
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert w.changed()
    p.unlink()
    assert not w.changed()                 # missing: probably being replaced
    _rewrite(p, "four!")
    assert w.changed()


def test_status_document_shape():
    st = ReloadStatus(3, 0.0, "gw.yaml", (1.5, ["apis[0].path: expected string, got int"]))
    doc = json.loads(st.to_json())
    assert doc == {"version": 3, "loaded-at": "1970-01-01T00:00:00.000Z", "source": "gw.yaml",
                   "pid": os.getpid(), "last-error": {
                       "at": "1970-01-01T00:00:01.500Z",
                       "errors": ["apis[0].path: expected string, got int"]}}
    assert json.loads(ReloadStatus(1, 0.0, "g", None).to_json())["last-error"] is None


# -- Gateway.reload in process (the embedding API) ----------------------------------------------

def _gw_config(url: str, header: str):
    return parse_config({"listeners": [{"bind": "127.0.0.1:0"}],
                         "backends": {"b": {"url": url}},
                         "apis": [{"name": "b", "path": "/b", "backend": "b"}],
                         "policies": {"outbound": [
                             {"set-header": {"name": "x-cfg", "value": [header]}}]}},
                        source="in-process")


def _retire_tasks() -> list:
    found = []

    def walk(task) -> None:
        for nursery in task.child_nurseries:
            for t in nursery.child_tasks:
                if t.name.endswith("._retire"):
                    found.append(t)
                walk(t)

    walk(trio.lowlevel.current_root_task())
    return found


def test_gateway_reload_swaps_and_closes_the_retired_pools():
    from apigw_core.runtime import Gateway, serve_echo

    async def main() -> None:
        async with trio.open_nursery() as n:
            ports = []
            for _ in range(2):
                ports.append(await n.start(serve_echo, "127.0.0.1", 0))
            urls = [f"http://127.0.0.1:{p[1]}" for p in ports]
            gw = Gateway(_gw_config(urls[0], "a"))
            await n.start(gw.run)
            base = f"http://127.0.0.1:{gw.addresses[0][1]}/b/x"
            async with httpx.AsyncClient() as c:
                assert (await c.get(base)).headers["x-cfg"] == "a"
                old_pool = gw.state.pools["b"]
                assert old_pool.idle_connections == 1

                assert await gw.reload(_gw_config(urls[1], "b"))
                assert gw.state.version == 2 and gw.last_reload_error is None
                # no request holds the old state: its pool is closed at once
                assert old_pool.closed and old_pool.open_connections == 0
                assert (await c.get(base)).headers["x-cfg"] == "b"

                moved = dataclasses.replace(_gw_config(urls[0], "c"), listeners=(
                    dataclasses.replace(gw.config.listeners[0], port=1),))
                assert not await gw.reload(moved)
                assert gw.last_reload_error[1] == [
                    "listeners: changed; restart the gateway to apply"]
                assert gw.state.version == 2
                assert (await c.get(base)).headers["x-cfg"] == "b"
            with trio.fail_after(TIMEOUT):   # the retirement ends with the old state
                while _retire_tasks():
                    await trio.sleep(0.05)
            gw.shutdown()
            n.cancel_scope.cancel()

    trio.run(main)
