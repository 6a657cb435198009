"""Health checks end to end: active checks ejecting and restoring a pool member, a single
backend whose checks fail answering 503, passive ejection recovering on its own, a
flapping backend, and the check task following a reload."""

from __future__ import annotations

import json

import pytest

from controlled import Steered
from support import lazy_module, wait_until

httpx = lazy_module("httpx")

FAST = {"path": "/healthz", "interval": "100ms", "timeout": "1s", "healthy-threshold": 2,
        "unhealthy-threshold": 2}


@pytest.fixture
def steered():
    made: list[Steered] = []

    def make(name: str) -> Steered:
        made.append(Steered(name))
        return made[-1]

    yield make
    for s in made:
        s.stop()


def config(backends: dict, api_backend: str) -> dict:
    return {"listeners": [{"bind": "127.0.0.1:0"}], "admin": {"bind": "127.0.0.1:0"},
            "backends": backends, "apis": [{"name": "root", "path": "", "backend": api_backend}]}


def doc(gw) -> dict:
    return httpx.get(f"http://127.0.0.1:{gw.admin_port}/backends").json()["backends"]


def test_active_checks_eject_and_restore_a_member(gateway, steered):
    a, b = steered("a"), steered("b")
    gw = gateway(config({"a": {"url": a.url, "health-check": FAST}, "b": {"url": b.url},
                         "p": {"pool": [{"backend": "a"}, {"backend": "b"}]}}, "p"))
    wait_until(lambda: a.checks >= 2, message="checks running")
    assert b.checks == 0                                   # b has no health-check
    with httpx.Client(base_url=gw.url) as client:
        assert {client.get("/").text for _ in range(4)} == {"a", "b"}
        a.health = 503
        wait_until(lambda: doc(gw)["a"]["healthy"] is False, message="a unhealthy")
        assert "health checks failed (last: status 503)" in doc(gw)["a"]["reason"]
        hits = a.hits
        assert {client.get("/").text for _ in range(6)} == {"b"}
        assert a.hits == hits                              # no live request went to a
        a.health = 200
        wait_until(lambda: doc(gw)["a"]["healthy"] is True, message="a healthy again")
        assert {client.get("/").text for _ in range(4)} == {"a", "b"}


def test_a_single_backend_failing_its_checks_answers_503(gateway, steered):
    a = steered("a")
    a.health = 500
    gw = gateway(config({"a": {"url": a.url, "health-check": FAST}}, "a"))
    wait_until(lambda: doc(gw)["a"]["healthy"] is False, message="a unhealthy")
    r = httpx.get(gw.url + "/")
    assert r.status_code == 503
    assert r.json()["message"] == "backend a is unavailable: its health checks fail"
    a.health = 200
    wait_until(lambda: httpx.get(gw.url + "/").status_code == 200, message="a back")


def test_a_check_that_times_out_or_is_refused_fails(gateway, steered):
    a = steered("a")
    gw = gateway(config({"a": {"url": a.url, "health-check": FAST}}, "a"))
    wait_until(lambda: a.checks >= 1, message="a checked")
    a.stop()
    wait_until(lambda: doc(gw)["a"]["healthy"] is False, message="a unhealthy")
    assert "refused" in doc(gw)["a"]["reason"].lower()
    a.start()
    wait_until(lambda: doc(gw)["a"]["healthy"] is True, message="a healthy again")


def test_passive_ejection_recovers_without_active_checks(gateway, steered):
    a, b = steered("a"), steered("b")
    gw = gateway(config({"a": {"url": a.url, "ejection-time": "300ms"}, "b": {"url": b.url},
                         "p": {"pool": [{"backend": "a"}, {"backend": "b"}]}}, "p"))
    with httpx.Client(base_url=gw.url) as client:
        a.stop()
        assert [client.get("/").text for _ in range(4)] == ["b"] * 4
        assert doc(gw)["p"]["pool"]["a"]["healthy"] is False
        a.start()
        wait_until(lambda: client.get("/").text == "a", message="a re-probed")
        assert doc(gw)["p"]["pool"]["a"]["healthy"] is True
        assert {client.get("/").text for _ in range(4)} == {"a", "b"}


def test_a_flapping_member_is_skipped_while_down_and_always_comes_back(gateway, steered):
    a, b = steered("a"), steered("b")
    gw = gateway(config({"a": {"url": a.url, "ejection-time": "200ms", "health-check": FAST},
                         "b": {"url": b.url},
                         "p": {"pool": [{"backend": "a"}, {"backend": "b"}]}}, "p"))
    with httpx.Client(base_url=gw.url) as client:
        for _ in range(3):
            a.stop()
            answers = [client.get("/") for _ in range(4)]
            assert all(r.status_code == 200 for r in answers)   # never an error
            a.start()
            wait_until(lambda: doc(gw)["p"]["pool"]["a"]["healthy"] is True,
                       message="a back")
        wait_until(lambda: client.get("/").text == "a", message="a serves again")


def test_reload_keeps_checks_of_unchanged_backends_and_stops_removed_ones(gateway, steered,
                                                                          tmp_path):
    a, b = steered("a"), steered("b")
    cfg = config({"a": {"url": a.url, "health-check": FAST},
                  "b": {"url": b.url, "health-check": FAST}}, "a")
    gw = gateway(cfg)
    wait_until(lambda: a.checks >= 1 and b.checks >= 1, message="both checked")
    a.health = 500
    wait_until(lambda: doc(gw)["a"]["healthy"] is False, message="a unhealthy")
    del cfg["backends"]["b"]
    (tmp_path / "gw0" / "gw.json").write_text(json.dumps(cfg))
    assert httpx.post(f"http://127.0.0.1:{gw.admin_port}/reload", timeout=30).status_code == 200
    assert doc(gw)["a"]["healthy"] is False               # its state was kept
    seen = b.checks
    wait_until(lambda: a.checks >= seen + 5, message="a still checked")
    assert b.checks <= seen + 1                           # b's task was stopped
