"""validate-jwt through a running gateway, with httpx and grpcio, against an OpenID
provider stand-in run by the test (tests/runtime/oidc.py: a real HTTP server on 127.0.0.1
serving discovery and the JWKS, counting fetches, rotating keys, going down and coming
back).  Cases: accepted tokens and `{jwt.claims.sub}` in a set-header; refusals on the
wire (APIM JSON, WWW-Authenticate, last-error in on-error); key rotation under load (no
401 for the new key once published, one JWKS fetch for the rotation); the provider down
(old keys keep serving; a gateway started without any key answers 503 with the clear
message, then recovers when the provider comes up); a gRPC caller gets UNAUTHENTICATED."""

from __future__ import annotations

import sys
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import httpx
import pytest

from oidc import Key, Provider, claims
from support import wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "protocol"))
from grpc_test_pb import pb2, pb2_grpc  # noqa: E402

from apigw_core.gateway.pipeline.policies.jwt import NO_KEYS_MESSAGE  # noqa: E402

AUD = "api://orders"
SVC = "/apigw.test.TestService"


class Service(pb2_grpc.TestServiceServicer):
    def EmptyCall(self, request, context):
        return pb2.Empty()


def jwt_api(provider: Provider, name: str = "orders", **extra) -> dict:
    return {"name": name, "path": f"/{name}", "backend": "echo", "policies": {
        "inbound": [
            {"validate-jwt": dict({"openid-config": {"url": provider.url},
                                   "audiences": [AUD], "require-scheme": "Bearer"}, **extra)},
            {"set-header": {"name": "x-user", "value": ["{jwt.claims.sub}"]}}],
        "on-error": [{"set-header": {"name": "x-error", "value": ["{last-error.reason}"]}}]}}


def config(echo, *apis: dict, **top) -> dict:
    return dict({"listeners": [{"bind": "127.0.0.1:0", "protocols": ["http1", "h2c"]}],
                 "backends": {"echo": {"url": f"http://127.0.0.1:{echo.port}",
                                       "timeout": "10s"}},
                 "apis": list(apis)}, **top)


def get(gw, token: str | None, path: str = "/orders/x", client=httpx) -> httpx.Response:
    headers = {} if token is None else {"authorization": f"Bearer {token}"}
    return client.get(gw.url + path, headers=headers, timeout=20)


@pytest.fixture
def idp():
    p = Provider([Key.rsa("k1")])
    yield p
    p.close()


def test_accepted_token_and_its_claims_in_a_set_header(gateway, echo, idp):
    gw = gateway(config(echo, jwt_api(idp)))
    r = get(gw, idp.keys[0].sign(claims(sub="bob")))
    assert r.status_code == 200, r.text
    assert r.json()["headers"]["x-user"] == "bob"
    assert "authorization" in r.json()["headers"]      # the token goes on to the backend
    assert idp.fetches == 1 and idp.discoveries == 1   # fetched at load, not per request


def test_refusals_on_the_wire(gateway, echo, idp):
    gw = gateway(config(echo, jwt_api(idp, **{"required-claims": [{"name": "scp"},
                                                                  {"name": "tid"}]})))
    k = idp.keys[0]
    r = get(gw, None)
    assert r.status_code == 401
    assert r.json() == {"statusCode": 401, "message": "JWT not present."}
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.headers["x-error"] == "TokenNotPresent"
    r = get(gw, k.sign(claims(exp=int(time.time()) - 60, scp="x", tid="t")))
    assert (r.status_code, r.headers["x-error"]) == (401, "TokenExpired")
    assert r.headers["www-authenticate"] == \
        'Bearer error="invalid_token", error_description="The token is expired"'
    r = get(gw, k.sign(claims()))
    assert r.json()["message"] == \
        "JWT is missing the following claims: scp, tid. Access denied."
    r = get(gw, k.sign(claims(aud="api://other", scp="x", tid="t")))
    assert r.headers["x-error"] == "TokenAudienceNotAllowed"
    r = httpx.get(gw.url + "/orders/x", headers={"authorization": k.sign(claims())})
    assert r.headers["x-error"] == "TokenNotPresent"   # require-scheme: Bearer


def test_static_keys_of_every_type(gateway, echo):
    keys = [Key.ec("p256", "P-256"), Key.ec("p384", "P-384"), Key.ec("p521", "P-521"),
            Key.ed25519("ed"), Key.rsa("ps", alg="PS384"), Key.hmac("hs", 32)]
    specs = [{"id": k.kid, "public-key": k.pem()} for k in keys[:-1]]
    specs.append({"id": "hs", "value": keys[-1].secret_b64()})
    gw = gateway(config(echo, {"name": "s", "path": "/s", "backend": "echo", "policies": {
        "inbound": [{"validate-jwt": {"issuer-signing-keys": specs}}]}}))
    with httpx.Client() as c:
        for k in keys:
            r = get(gw, k.sign(claims()), "/s/x", c)
            assert r.status_code == 200, (k.kid, r.text)
        r = get(gw, Key.hmac("hs", 32).sign(claims()), "/s/x", c)   # same kid, other secret
        assert r.status_code == 401
        assert r.json()["message"] == "Signature validation failed. Access denied."


def test_key_rotation_under_load(gateway, echo, idp):
    gw = gateway(config(echo, jwt_api(idp)))
    k1, k2 = idp.keys[0], Key.ec("k2")
    assert get(gw, k1.sign(claims())).status_code == 200
    before = idp.fetches
    published = threading.Event()
    stop = threading.Event()
    results: list[tuple[str, int]] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        with httpx.Client() as c:
            i = 0
            while not stop.is_set():
                i += 1
                new = published.is_set()
                key = k2 if new else k1
                tok = key.sign(claims(sub=f"u{n}-{i}"))   # distinct: no cache hits
                status = get(gw, tok, client=c).status_code
                with lock:
                    results.append(("new" if new else "old", status))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    wait_until(lambda: len(results) >= 30, message="load before the rotation")
    idp.keys = [k1, k2]                                  # the provider publishes k2
    published.set()
    wait_until(lambda: sum(1 for w, _ in results if w == "new") >= 100,
               message="requests with the new key")
    stop.set()
    for t in threads:
        t.join(30)
    new = [s for w, s in results if w == "new"]
    old = [s for w, s in results if w == "old"]
    assert set(old) == {200} and set(new) == {200}, (
        sorted(set(old)), {s: new.count(s) for s in set(new)})
    assert idp.fetches - before == 1                    # one fetch for the whole rotation


def test_unknown_kids_do_not_hammer_the_provider(gateway, echo, idp):
    gw = gateway(config(echo, jwt_api(idp)))
    wait_until(lambda: idp.fetches == 1, message="the load fetch")
    with httpx.Client() as c:
        for i in range(20):
            r = get(gw, Key.ec(f"random-{i}").sign(claims()), client=c)
            assert r.status_code == 401 and r.headers["x-error"] == "TokenSignatureKeyNotFound"
    assert idp.fetches == 2                             # one refetch, then the 5-min rule


def test_provider_down_keeps_the_last_good_keys(gateway, echo, idp):
    gw = gateway(config(echo, jwt_api(idp)))
    k1 = idp.keys[0]
    assert get(gw, k1.sign(claims())).status_code == 200
    idp.down()
    with httpx.Client() as c:
        for i in range(5):
            assert get(gw, k1.sign(claims(sub=f"n{i}")), client=c).status_code == 200
        # an unknown kid while it is down: the refetch fails, the answer is 401, not 503
        r = get(gw, Key.rsa("k9").sign(claims()), client=c)
        assert (r.status_code, r.headers["x-error"]) == (401, "TokenSignatureKeyNotFound")
        assert get(gw, k1.sign(claims(sub="after"))).status_code == 200
    assert "keep serving" in "".join(gw.output)


def test_started_with_the_provider_down_503_then_recovers(gateway, echo):
    idp = Provider([Key.rsa("k1")], start=False)
    try:
        gw = gateway(config(echo, jwt_api(idp)))
        tok = idp.keys[0].sign(claims())
        r = get(gw, tok)
        assert r.status_code == 503
        assert r.json() == {"statusCode": 503, "message": NO_KEYS_MESSAGE}
        assert r.headers["x-error"] == "OpenIdConfigurationUnavailable"
        idp.up()
        wait_until(lambda: get(gw, tok).status_code == 200,
                   message="the gateway recovering once the provider is up")
        assert idp.fetches == 1
    finally:
        idp.close()


def test_reload_while_the_provider_is_down_keeps_the_keys(gateway, echo, idp):
    cfg = config(echo, jwt_api(idp), admin={"bind": "127.0.0.1:0"})
    gw = gateway(cfg)
    k1 = idp.keys[0]
    assert get(gw, k1.sign(claims())).status_code == 200
    idp.down()                                          # the reload's fetch fails
    r = httpx.post(f"http://127.0.0.1:{gw.admin_port}/reload", timeout=30)
    assert r.status_code == 200, r.text
    wait_until(lambda: "keys from before keep serving" in "".join(gw.output),
               message="the reload's fetch attempt")
    assert get(gw, k1.sign(claims(sub="after-reload"))).status_code == 200


@pytest.fixture
def grpc_backend():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb2_grpc.add_TestServiceServicer_to_server(Service(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port
    server.stop(0)


def test_grpc_caller_gets_unauthenticated(gateway, echo, idp, grpc_backend):
    cfg = config(echo, {"name": "g", "path": SVC, "backend": "grpc", "protocols": ["grpc"],
                        "policies": {"inbound": [{"validate-jwt": {
                            "openid-config": {"url": idp.url}}}]}})
    cfg["backends"]["grpc"] = {"url": f"http://127.0.0.1:{grpc_backend}{SVC}",
                               "http-version": "2"}
    gw = gateway(cfg)
    with grpc.insecure_channel(f"127.0.0.1:{gw.port}") as channel:
        stub = pb2_grpc.TestServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.EmptyCall(pb2.Empty(), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert info.value.details() == "JWT not present."
        md = (("authorization", "Bearer " + idp.keys[0].sign(claims())),)
        _, call = stub.EmptyCall.with_call(pb2.Empty(), metadata=md, timeout=10)
        assert call.code() == grpc.StatusCode.OK
