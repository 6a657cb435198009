"""The limit policies through a running gateway, with real requests (issue 10): status,
exact APIM bodies, Retry-After and the optional headers and variables, recovery at the
refill rate (polled, never a fixed sleep), a refused call taking nothing, quota windows and
their 403 with hh:mm:ss, bandwidth counted after the response, per-subscription rate-limit
with api / operation children, limit-concurrency holding slots while a slow backend keeps
them and freeing one when its client goes away, and a gRPC caller's RESOURCE_EXHAUSTED."""

from __future__ import annotations

import time

import httpx
import pytest

from backends import Backend, refused_url
from h2raw import H2Client
from pipeline_kit import echo, gateway  # noqa: F401  (fixtures)
from support import wait_until

KEY = "ocp-apim-subscription-key"


def rl_message(n: int) -> dict:
    return {"statusCode": 429, "message": f"Rate limit is exceeded. Try again in {n} seconds."}


@pytest.fixture(scope="module")
def held():
    b = Backend("held")
    yield b
    b.release.set()
    b.close()


@pytest.fixture(scope="module")
def gw(tmp_path_factory, echo, held):  # noqa: F811
    e = f"http://127.0.0.1:{echo.port}"
    show = [{"set-header": {"name": "x-left", "value": ["{variables.left}"]}}]
    cfg = {
        "listeners": [{"bind": "127.0.0.1:0", "protocols": ["http1", "h2c"]}],
        "backends": {"echo": {"url": e, "timeout": "5s"},
                     "held": {"url": held.url, "timeout": "60s"},
                     "gone": {"url": refused_url(), "timeout": "2s", "http-version": "2"}},
        "products": {"starter": {"apis": ["sub"], "policies": {"inbound": [
            "base", {"quota": {"calls": 100, "renewal-period": 3600}}]}}},
        "subscriptions": [{"id": "alice", "product": "starter", "primary-key": "k-alice"},
                          {"id": "bob", "product": "starter", "primary-key": "k-bob"}],
        "apis": [
            # 3 calls, one more every 20 s: the 429 says 20 (or less) seconds
            {"name": "rl", "path": "/rl", "backend": "echo", "policies": {
                "inbound": [{"rate-limit-by-key": {
                    "calls": 3, "renewal-period": 60, "counter-key": "{request.headers.x-client}",
                    "remaining-calls-header-name": "x-remaining",
                    "total-calls-header-name": "x-total",
                    "remaining-calls-variable-name": "left"}}],
                "outbound": show}},
            # refills one token every 0.5 s: recovery is observable quickly
            {"name": "fast", "path": "/fast", "backend": "echo", "policies": {
                "inbound": [{"rate-limit-by-key": {
                    "calls": 2, "renewal-period": 1, "counter-key": "{request.headers.x-client}",
                    "retry-after-header-name": "x-retry-in",
                    "retry-after-variable-name": "retry"}}],
                "on-error": [{"set-header": {"name": "x-retry-var",
                                             "value": ["{variables.retry}"]}}]}},
            # only successful calls count (the condition reads the response)
            {"name": "cond", "path": "/cond", "backend": "echo", "operations": [
                {"name": "ok", "method": "GET", "url-template": "/ok"},
                {"name": "fail", "method": "GET", "url-template": "/fail", "policies": {
                    "inbound": ["base"],
                    "outbound": [{"set-status": {"code": 500}}]}}],
                "policies": {"inbound": [{"rate-limit-by-key": {
                    "calls": 2, "renewal-period": 60, "counter-key": "{request.headers.x-client}",
                    "increment-condition": "response.status == 200"}}]}},
            {"name": "quota", "path": "/quota", "backend": "echo", "policies": {
                "inbound": [{"quota-by-key": {
                    "calls": 2, "renewal-period": 3, "counter-key": "{request.headers.x-client}"}}]}},
            {"name": "longquota", "path": "/longquota", "backend": "echo", "policies": {
                "inbound": [{"quota-by-key": {
                    "calls": 1, "renewal-period": 90061, "counter-key": "{request.headers.x-client}",
                    "first-period-start": "2020-01-01T00:00:00Z"}}]}},
            {"name": "bw", "path": "/bw", "backend": "echo", "policies": {
                "inbound": [{"quota-by-key": {
                    "bandwidth": 4, "renewal-period": 3600,
                    "counter-key": "{request.headers.x-client}"}}]}},
            {"name": "sub", "path": "/sub", "backend": "echo",
             "operations": [{"name": "get", "method": "GET", "url-template": "/get"},
                            {"name": "put", "method": "PUT", "url-template": "/put"}],
             "policies": {"inbound": ["base", {"rate-limit": {
                 "calls": 10, "renewal-period": 300, "api": [{
                     "name": "sub", "calls": 3, "renewal-period": 300,
                     "operation": [{"name": "get", "calls": 2, "renewal-period": 300}]}]}}]}},
            {"name": "lc", "path": "/lc", "backend": "held", "policies": {
                "backend": [{"limit-concurrency": {
                    "key": "{request.headers.x-client}", "max-count": 2,
                    "policies": ["forward-request"]}}]}},
            {"name": "grpc", "path": "/pkg.Svc", "backend": "gone", "protocols": ["grpc"],
             "policies": {"inbound": [{"rate-limit-by-key": {
                 "calls": 1, "renewal-period": 60, "counter-key": "grpc-callers"}}]}},
            {"name": "grpcq", "path": "/pkg.Quota", "backend": "gone", "protocols": ["grpc"],
             "policies": {"inbound": [{"quota-by-key": {
                 "calls": 1, "renewal-period": 600, "counter-key": "grpc-callers"}}]}},
        ],
    }
    p = gateway(tmp_path_factory, cfg)
    yield p
    p.stop()


@pytest.fixture()
def client(gw):
    with httpx.Client(base_url=gw.url, timeout=20) as c:
        yield c


def test_rate_limit_429_body_retry_after_and_headers(client):
    who = {"x-client": "rl-1"}
    seen = []
    for _ in range(3):
        r = client.get("/rl/a", headers=who)
        assert r.status_code == 200
        assert r.headers["x-total"] == "3"
        seen.append((r.headers["x-remaining"], r.headers["x-left"]))
    assert seen == [("2", "2"), ("1", "1"), ("0", "0")]
    r = client.get("/rl/a", headers=who)
    assert r.status_code == 429
    retry = int(r.headers["retry-after"])
    assert 1 <= retry <= 20
    assert r.json() == rl_message(retry)
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-remaining"] == "0" and r.headers["x-total"] == "3"
    # another key is another counter
    assert client.get("/rl/a", headers={"x-client": "rl-2"}).status_code == 200


def test_recovery_at_the_refill_rate_and_refusals_take_nothing(client):
    who = {"x-client": "fast-1"}
    # 2 calls per second: a token every 0.5 s, so a slow run may see one more admitted
    statuses = []
    while 429 not in statuses:
        statuses.append(client.get("/fast/", headers=who).status_code)
        assert len(statuses) < 50
    assert statuses.count(200) >= 2
    r = client.get("/fast/", headers=who)
    if r.status_code == 429:
        assert r.json() == rl_message(1)
        assert r.headers["x-retry-in"] == "1" and "retry-after" not in r.headers
        assert r.headers["x-retry-var"] == "1"
    # hammer while refused: the tokens still come back, no lock-out
    wait_until(lambda: client.get("/fast/", headers=who).status_code == 200, step=0.02,
               message="a token refilled while hammering")
    # the refill rate holds: at most 2 (a full bucket) + one per 0.5 s are admitted
    t0 = time.monotonic()
    admitted = 0
    while admitted < 6:
        if client.get("/fast/", headers=who).status_code == 200:
            admitted += 1
        else:
            time.sleep(0.02)
    assert time.monotonic() - t0 >= (6 - 2) * 0.5 - 0.05


def test_increment_condition_on_the_response(client):
    who = {"x-client": "cond-1"}
    for _ in range(5):     # failed calls (500 set by outbound) give their token back
        assert client.get("/cond/fail", headers=who).status_code == 500
    assert [client.get("/cond/ok", headers=who).status_code for _ in range(3)] == \
        [200, 200, 429]


def test_quota_window_403_and_renewal(client):
    who = {"x-client": "q-1"}
    # 2 calls per 3 s window (windows aligned on the epoch: the first may be cut short)
    statuses = []
    while 403 not in statuses:
        r = client.get("/quota/", headers=who)
        statuses.append(r.status_code)
        assert len(statuses) < 20
    assert statuses.count(200) >= 2
    retry = int(r.headers["retry-after"])
    assert 1 <= retry <= 3
    assert r.json() == {"statusCode": 403, "message": "Out of call volume quota. Quota will "
                                                      f"be replenished in 00:00:0{retry}."}
    wait_until(lambda: client.get("/quota/", headers=who).status_code == 200, step=0.1,
               message="the quota window renewed")


def test_quota_message_past_a_day(client):
    who = {"x-client": "lq-1"}
    assert client.get("/longquota/", headers=who).status_code == 200
    r = client.get("/longquota/", headers=who)
    assert r.status_code == 403
    # period 1 day 1 h 1 min 1 s: "d.hh:mm:ss" (or hh:mm:ss inside the last day)
    msg = r.json()["message"]
    assert msg.startswith("Out of call volume quota. Quota will be replenished in ")
    left = msg.rsplit(" ", 1)[1].rstrip(".")
    days, _, hms = left.rpartition(".")
    h, m, s = (int(x) for x in hms.split(":"))
    total = int(days or 0) * 86400 + h * 3600 + m * 60 + s
    assert total == int(r.headers["retry-after"]) and 0 < total <= 90061


def test_bandwidth_quota_counted_after_the_response(client):
    who = {"x-client": "bw-1"}
    body = b"x" * 900
    # 900 bytes up + the echo's report of them (more than 900) down: the first call is
    # under 4 KiB, the second admitted (under when it starts) puts the key over
    r1 = client.post("/bw/", headers=who, content=body)
    assert r1.status_code == 200
    assert len(body) + len(r1.content) < 4096 < 2 * (len(body) + len(r1.content))
    r2 = client.post("/bw/", headers=who, content=body)
    assert r2.status_code == 200
    r3 = client.post("/bw/", headers=who, content=body)
    assert r3.status_code == 403
    assert r3.json()["message"].startswith("Out of bandwidth quota. Quota will be "
                                           "replenished in 00:")


def test_rate_limit_per_subscription_and_children(client):
    a, b = {KEY: "k-alice"}, {KEY: "k-bob"}
    assert [client.get("/sub/get", headers=a).status_code for _ in range(3)] == [200, 200, 429]
    r = client.get("/sub/get", headers=a)
    assert r.status_code == 429 and r.json() == rl_message(int(r.headers["retry-after"]))
    assert int(r.headers["retry-after"]) == 150     # operation: 2 per 300 s
    # the API's 3: two gets and now one put (the refused gets took nothing)
    assert [client.put("/sub/put", headers=a).status_code for _ in range(2)] == [200, 429]
    assert client.get("/sub/get", headers=b).status_code == 200


def _held(gw, held, n: int):
    """n requests of client lc-1 on one HTTP/2 connection, each held by the backend."""
    h2 = H2Client.h2c(gw.port)
    before = sum(c.requests for c in held.conns)
    sids = [h2.request("/lc/x", headers=[("x-client", "lc-1")]) for _ in range(n)]
    wait_until(lambda: sum(c.requests for c in held.conns) >= before + n,
               message=f"{n} requests held by the backend")
    return h2, sids


def test_limit_concurrency_429_while_held_released_at_the_end(gw, held, client):
    h2, sids = _held(gw, held, 2)
    r = client.get("/lc/x", headers={"x-client": "lc-1"})
    assert r.status_code == 429 and r.json() == {"statusCode": 429,
                                                 "message": "Too many concurrent requests."}
    held.release.set()
    assert h2.run_until(lambda: all(h2.replies[s].ended for s in sids))
    assert [h2.replies[s].status for s in sids] == [200, 200]
    # both responses over: both slots free again
    assert client.get("/lc/x", headers={"x-client": "lc-1"}).status_code == 200
    held.release.clear()
    h2.close()


def test_limit_concurrency_slot_freed_when_the_client_goes(gw, held, client):
    h2, sids = _held(gw, held, 2)
    assert client.get("/lc/x", headers={"x-client": "lc-1"}).status_code == 429
    h2.conn.reset_stream(sids[0])        # the client gives up on one of them
    h2.flush()

    def admitted() -> bool:
        before = sum(c.requests for c in held.conns)
        sid = h2.request("/lc/x", headers=[("x-client", "lc-1")])
        r = h2.replies[sid]
        h2.run_until(lambda: r.ended or r.reset is not None
                     or sum(c.requests for c in held.conns) > before, timeout=10)
        if r.status == 429:
            return False
        sids.append(sid)
        return True
    wait_until(admitted, step=0.1, message="the slot of the reset stream is free")
    assert client.get("/lc/x", headers={"x-client": "lc-1"}).status_code == 429
    held.release.set()
    assert h2.run_until(lambda: all(h2.replies[s].ended for s in sids[1:]))
    held.release.clear()
    h2.close()


def test_limit_concurrency_slots_freed_when_the_connection_closes(gw, held, client):
    h2, sids = _held(gw, held, 2)
    assert client.get("/lc/x", headers={"x-client": "lc-1"}).status_code == 429
    h2.close()                           # both held requests' client is gone

    def both_free() -> bool:
        h2b = H2Client.h2c(gw.port)
        before = sum(c.requests for c in held.conns)
        sids = [h2b.request("/lc/x", headers=[("x-client", "lc-1")]) for _ in range(2)]
        h2b.run_until(lambda: sum(c.requests for c in held.conns) >= before + 2
                      or any(h2b.replies[s].status for s in sids), timeout=10)
        admitted = not any(h2b.replies[s].status for s in sids)   # held, not refused
        refused = admitted and client.get("/lc/x", headers={"x-client": "lc-1"}).status_code \
            == 429                       # ... and a third is refused again
        h2b.close()
        return refused
    wait_until(both_free, step=0.2, message="the closed connection's slots are free")
    held.release.set()
    wait_until(lambda: client.get("/lc/x", headers={"x-client": "lc-1"}).status_code == 200)
    held.release.clear()


def test_grpc_caller_gets_resource_exhausted_with_the_hint(gw):
    grpc = pytest.importorskip("grpc", reason="optional test dependency 'grpcio' missing")
    with grpc.insecure_channel(f"127.0.0.1:{gw.port}") as channel:
        method = channel.unary_unary("/pkg.Svc/Call")
        with pytest.raises(grpc.RpcError) as first:    # counted (the backend is down)
            method(b"", timeout=10)
        assert first.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.RpcError) as second:
            method(b"", timeout=10)
        err = second.value
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        retry = dict(err.trailing_metadata() or ())
        assert 1 <= int(retry["retry-after"]) <= 60
        assert int(retry["grpc-retry-pushback-ms"]) == int(retry["retry-after"]) * 1000
        assert err.details() == f"Rate limit is exceeded. Try again in " \
                                f"{retry['retry-after']} seconds."


def test_grpc_quota_refusal_is_resource_exhausted_too(gw):
    grpc = pytest.importorskip("grpc", reason="optional test dependency 'grpcio' missing")
    with grpc.insecure_channel(f"127.0.0.1:{gw.port}") as channel:
        method = channel.unary_unary("/pkg.Quota/Call")
        with pytest.raises(grpc.RpcError):
            method(b"", timeout=10)
        with pytest.raises(grpc.RpcError) as second:
            method(b"", timeout=10)
        err = second.value
        # HTTP's 403 would read PERMISSION_DENIED; a quota is an exhausted resource
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert err.details().startswith("Out of call volume quota. Quota will be replenished")
        assert 1 <= int(dict(err.trailing_metadata())["retry-after"]) <= 600
