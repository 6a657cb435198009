"""Pools end to end: real backends the test steers (tests/runtime/controlled.py), a real
gateway process, httpx as the client.  Order and weights over 1,000 requests, priority
failover and fall-back, a connect failure moving to the next member, members' own base
paths and Host, cookie affinity, a pool named by set-backend-service, /backends."""

from __future__ import annotations

from collections import Counter

import pytest

from backends import refused_url
from controlled import Steered
from support import lazy_module, wait_until

httpx = lazy_module("httpx")


def pool_config(members: dict, pool: list, **extra) -> dict:
    backends = {name: {"url": url, "timeout": "5s", **extra.get(name, {})}
                for name, url in members.items()}
    backends["p"] = {"pool": pool, **extra.get("p", {})}
    return {"listeners": [{"bind": "127.0.0.1:0"}], "admin": {"bind": "127.0.0.1:0"},
            "backends": backends, "apis": [{"name": "root", "path": "", "backend": "p"}]}


@pytest.fixture
def steered():
    made: list[Steered] = []

    def make(name: str, **kw) -> Steered:
        s = Steered(name, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def backends_doc(gw) -> dict:
    return httpx.get(f"http://127.0.0.1:{gw.admin_port}/backends").json()["backends"]


def test_weights_interleave_and_split_within_3_percent_over_1000(gateway, steered):
    a, b, c = steered("a"), steered("b"), steered("c")
    gw = gateway(pool_config({"a": a.url, "b": b.url, "c": c.url},
                             [{"backend": "a", "weight": 3}, {"backend": "b", "weight": 1},
                              {"backend": "c", "priority": 2}]))
    with httpx.Client(base_url=gw.url) as client:
        first = [client.get("/").text for _ in range(8)]
        assert first == ["a", "a", "b", "a", "a", "a", "b", "a"]   # smooth, not a a a b
        got = Counter(client.get("/").text for _ in range(1000))
    assert abs(got["a"] / 1000 - 0.75) <= 0.03 and abs(got["b"] / 1000 - 0.25) <= 0.03, got
    assert c.hits == 0                      # the lower priority group stays idle


def test_round_robin_without_weights(gateway, steered):
    a, b = steered("a"), steered("b")
    gw = gateway(pool_config({"a": a.url, "b": b.url}, [{"backend": "a"}, {"backend": "b"}]))
    with httpx.Client(base_url=gw.url) as client:
        assert [client.get("/").text for _ in range(6)] == ["a", "b"] * 3


def test_priority_failover_and_fall_back(gateway, steered):
    a, b = steered("a"), steered("b")
    gw = gateway(pool_config({"a": a.url, "b": b.url},
                             [{"backend": "a", "priority": 1}, {"backend": "b", "priority": 2}],
                             a={"ejection-time": "300ms"}))
    with httpx.Client(base_url=gw.url) as client:
        assert {client.get("/").text for _ in range(5)} == {"a"}
        a.stop()
        # the first request after a went down moves to b at once: no error reaches the client
        answers = [client.get("/") for _ in range(5)]
        assert [(r.status_code, r.text) for r in answers] == [(200, "b")] * 5
        doc = backends_doc(gw)["p"]["pool"]
        assert doc["a"]["healthy"] is False and "connect failed" in doc["a"]["reason"]
        a.start()
        # once the ejection time passed, one request re-probes a; it answers: back to a
        wait_until(lambda: client.get("/").text == "a", message="fall-back to a")
        assert {client.get("/").text for _ in range(5)} == {"a"}
        assert backends_doc(gw)["p"]["pool"]["a"]["healthy"] is True


def test_connect_failure_moves_to_the_next_member_and_ejects_it(gateway, steered):
    b = steered("b")
    gw = gateway(pool_config({"a": refused_url(), "b": b.url},
                             [{"backend": "a"}, {"backend": "b"}]))
    with httpx.Client(base_url=gw.url) as client:
        answers = [client.get("/") for _ in range(10)]
    assert [(r.status_code, r.text) for r in answers] == [(200, "b")] * 10
    doc = backends_doc(gw)
    member = doc["p"]["pool"]["a"]
    assert member["healthy"] is False and "Connection refused" in member["reason"]
    assert "BackendConnectionFailure" in member["last-failure"]["error"]
    assert doc["p"]["healthy"] is True      # b still serves


def test_members_get_their_own_host_and_base_path(gateway, steered):
    a, b = steered("a"), steered("b")
    gw = gateway(pool_config({"a": a.url + "/v1", "b": b.url}, [{"backend": "a"}, {"backend": "b"}]))
    with httpx.Client(base_url=gw.url) as client:
        client.get("/orders/7?x=1")
        client.get("/orders/7?x=1")
    assert a.paths == ["/v1/orders/7?x=1"] and b.paths == ["/orders/7?x=1"]


def test_cookie_affinity_pins_a_client_to_its_member(gateway, steered):
    a, b = steered("a"), steered("b")
    gw = gateway(pool_config({"a": a.url, "b": b.url}, [{"backend": "a"}, {"backend": "b"}],
                             p={"session-affinity": {"cookie": "sticky"}}))
    with httpx.Client(base_url=gw.url) as one, httpx.Client(base_url=gw.url) as two:
        r1, r2 = one.get("/"), two.get("/")
        assert {r1.text, r2.text} == {"a", "b"}
        assert "sticky" in r1.cookies and r1.cookies["sticky"] not in ("a", "b")  # opaque
        for _ in range(5):                  # each client stays on its member
            assert one.get("/").text == r1.text and two.get("/").text == r2.text
        assert "set-cookie" not in one.get("/").headers   # set once, not on every answer
    # without the cookie: round-robin again
    assert {httpx.get(gw.url + "/").text for _ in range(4)} == {"a", "b"}


def test_cookie_of_an_unavailable_member_is_moved(gateway, steered):
    a, b = steered("a"), steered("b")
    gw = gateway(pool_config({"a": a.url, "b": b.url}, [{"backend": "a"}, {"backend": "b"}],
                             p={"session-affinity": {"cookie": "sticky"}}))
    with httpx.Client(base_url=gw.url) as client:
        first = client.get("/").text
        gone = a if first == "a" else b
        gone.stop()
        r = client.get("/")
        assert r.status_code == 200 and r.text != first
        assert client.get("/").text == r.text     # the new cookie pins the new member


def test_set_backend_service_names_a_pool(gateway, steered):
    a, b, plain = steered("a"), steered("b"), steered("plain")
    cfg = pool_config({"a": a.url, "b": b.url, "plain": plain.url},
                      [{"backend": "a"}, {"backend": "b"}])
    cfg["apis"] = [{"name": "api", "path": "/api", "backend": "plain", "policies": {
        "inbound": [{"choose": {"when": [{"condition": "request.headers.x-pool == 'yes'",
                                          "policies": [{"set-backend-service":
                                                        {"backend-id": "p"}}]}]}}]}}]
    gw = gateway(cfg)
    with httpx.Client(base_url=gw.url) as client:
        assert client.get("/api/x").text == "plain"
        got = [client.get("/api/x", headers={"x-pool": "yes"}).text for _ in range(4)]
    assert got == ["a", "b", "a", "b"]
    assert a.paths == ["/x", "/x"]


def test_pool_through_the_pipeline_fails_over_on_connect_failure(gateway, steered):
    b = steered("b")
    cfg = pool_config({"a": refused_url(), "b": b.url}, [{"backend": "a"}, {"backend": "b"}])
    cfg["apis"][0]["policies"] = {"outbound": [{"set-header": {"name": "x-via",
                                                               "value": ["pipeline"]}}]}
    gw = gateway(cfg)
    with httpx.Client(base_url=gw.url) as client:
        answers = [client.get("/") for _ in range(4)]
    assert [(r.status_code, r.text, r.headers["x-via"]) for r in answers] == \
        [(200, "b", "pipeline")] * 4


def test_every_member_down_is_a_503_naming_the_pool(gateway, steered):
    gw = gateway(pool_config({"a": refused_url(), "b": refused_url()},
                             [{"backend": "a"}, {"backend": "b"}]))
    with httpx.Client(base_url=gw.url) as client:
        first = client.get("/")
        assert first.status_code == 502    # tried both: the connect failure is the answer
        r = client.get("/")                # both ejected now: not tried at all
    assert r.status_code == 503
    assert r.json()["message"] == ("no backend of pool p is available (circuit breakers open, "
                                   "unhealthy or ejected)")
    assert "127.0.0.1" not in r.text       # never an address


def test_backends_document(gateway, steered):
    a, b = steered("a"), steered("b")
    cfg = pool_config({"a": a.url, "b": b.url},
                      [{"backend": "a", "weight": 2}, {"backend": "b", "priority": 3}],
                      a={"circuit-breaker": {"failure-condition": {"count": 2, "interval": "10s"},
                                             "trip-duration": "30s"}})
    cfg["backends"]["solo"] = {"url": b.url}
    gw = gateway(cfg)
    httpx.get(gw.url + "/")
    doc = backends_doc(gw)
    assert set(doc) == {"a", "b", "p", "solo"}
    member = doc["p"]["pool"]["a"]
    assert member == {"healthy": True, "breaker": "closed", "reason": None,
                      "last-failure": None, "in-flight": 0, "connections": 1,
                      "weight": 2, "priority": 1}
    assert doc["p"]["pool"]["b"]["priority"] == 3 and doc["p"]["healthy"] is True
    assert doc["solo"] == {"healthy": True, "breaker": "closed", "reason": None,
                           "last-failure": None, "in-flight": 0, "connections": 0}
    a.status = 500
    httpx.get(gw.url + "/")
    httpx.get(gw.url + "/")
    member = backends_doc(gw)["p"]["pool"]["a"]
    assert member["breaker"] == "open" and "2 failures within 10s" in member["reason"]
    assert member["last-failure"]["error"] == "status 500"
