"""Every example in examples/ runs and does what its header comment promises.

Each example binds fixed ports (8080, 8081, 50051) so that its curl lines work as written;
here the listener and admin binds become port 0 and the backend URLs point at backends the
test starts (the echo backend, a helloworld Greeter), then the promised behaviour is checked
with the same requests.  The rewritten config is written beside copies of the example's
Python modules, so a custom policy is found the way `apigw serve examples/X.yaml` finds it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent import futures
from pathlib import Path

import grpc
import httpx
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "runtime"))
from procs import start_echo, start_gateway  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
KEY = "Ocp-Apim-Subscription-Key"


def _rewrite(config: dict, urls: dict[str, str]) -> dict:
    for listener in config["listeners"]:
        listener["bind"] = "127.0.0.1:0"
    if "admin" in config:
        config["admin"]["bind"] = "127.0.0.1:0"
    for backend in config["backends"].values():
        for old, new in urls.items():
            if "url" in backend:           # a pool has none
                backend["url"] = backend["url"].replace(old, new)
    return config


def _start(name: str, tmp_path: Path, urls: dict[str, str]):
    config = yaml.safe_load((EXAMPLES / name).read_text())
    for module in EXAMPLES.glob("*.py"):
        shutil.copy(module, tmp_path / module.name)
    return start_gateway(tmp_path, _rewrite(config, urls))


@pytest.fixture(scope="module")
def echo():
    p = start_echo()
    yield p
    p.stop()


def _echo_urls(echo) -> dict[str, str]:
    return {"127.0.0.1:8081": f"127.0.0.1:{echo.port}"}


def test_readme_lists_every_example():
    readme = (EXAMPLES / "README.md").read_text()
    for f in EXAMPLES.iterdir():
        if f.suffix in (".yaml", ".py", ".proto"):
            assert f.name in readme, f"examples/README.md does not mention {f.name}"


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_example_validates_and_says_how_to_run_it(name):
    lines = (EXAMPLES / name).read_text().splitlines()
    header = "\n".join(line for line in lines[:next(i for i, line in enumerate(lines)
                                                  if not line.startswith("#"))])
    assert f"apigw serve examples/{name}" in header
    assert "curl " in header
    out = subprocess.run([sys.executable, "-m", "apigw_core", "validate",
                          str(EXAMPLES / name)], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr


# -- public-api.yaml ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def public(tmp_path_factory, echo):
    p = _start("public-api.yaml", tmp_path_factory.mktemp("public"), _echo_urls(echo))
    yield p
    p.stop()


def test_public_api_keys(public):
    with httpx.Client(base_url=public.url, timeout=10) as c:
        r = c.get("/orders/42")
        assert r.status_code == 401
        assert r.json()["message"].startswith("Access denied due to missing subscription key")
        d = c.get("/orders/42", headers={KEY: "starter-key-1"}).json()
        assert d["path"] == "/api/42"
        assert (d["headers"]["x-plan"], d["headers"]["x-order-id"],
                d["headers"]["x-subscription"]) == ("starter", "42", "alice")
        assert c.get("/orders/42?subscription-key=starter-key-2").status_code == 200
        r = c.get("/orders/42", headers={KEY: "suspended-key"})
        assert r.status_code == 401 and "invalid subscription key" in r.json()["message"]
        r = c.delete("/orders/42", headers={KEY: "starter-key-1"})
        assert r.json() == {"statusCode": 404,
                            "message": "Unable to match incoming request to an operation."}
        r = c.get("/catalog/items")
        assert r.status_code == 200 and r.json()["headers"]["x-plan"] == "free"
        assert r.headers["x-powered-by"] == "apigw"


def test_public_api_cors(public):
    with httpx.Client(base_url=public.url, timeout=10) as c:
        r = c.options("/orders/42", headers={
            "Origin": "https://shop.example.com", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://shop.example.com"
        assert r.headers["access-control-max-age"] == "600"
        r = c.get("/orders/42", headers={"Origin": "https://shop.example.com",
                                         KEY: "starter-key-1"})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://shop.example.com"
        assert r.headers["access-control-expose-headers"] == "x-request-id"


# -- internal-api.yaml ------------------------------------------------------------------------

def test_internal_api(tmp_path, echo):
    p = _start("internal-api.yaml", tmp_path, _echo_urls(echo))
    try:
        d = httpx.get(p.url + "/internal/status", timeout=10).json()
        assert d["path"] == "/internal/status"
        assert d["headers"]["x-caller-ip"] == "127.0.0.1"
        r = httpx.get(p.url + "/partners/orders", timeout=10)
        assert r.status_code == 403
        assert r.json() == {"statusCode": 403, "message": "Caller IP address 127.0.0.1 is "
                                                          "not allowed. Access denied."}
        assert r.headers["x-error-reason"] == "CallerIpNotAllowed"
    finally:
        p.stop()


# -- grpc-api.yaml ------------------------------------------------------------------------------

def _helloworld(tmp_path: Path):
    from grpc_tools import protoc
    out = tmp_path / "pb"
    out.mkdir()
    rc = protoc.main(["protoc", f"-I{EXAMPLES}", f"--python_out={out}",
                      f"--grpc_python_out={out}", str(EXAMPLES / "helloworld.proto")])
    assert rc == 0
    sys.path.insert(0, str(out))
    import helloworld_pb2
    import helloworld_pb2_grpc
    return helloworld_pb2, helloworld_pb2_grpc


def test_grpc_api(tmp_path):
    pb2, pb2_grpc = _helloworld(tmp_path)
    seen: list = []

    class Greeter(pb2_grpc.GreeterServicer):
        def SayHello(self, request, context):
            seen.append(dict(context.invocation_metadata()))
            return pb2.HelloReply(message=f"Hello, {request.name}!")

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    p = _start("grpc-api.yaml", tmp_path, {"127.0.0.1:50051": f"127.0.0.1:{port}"})
    try:
        with grpc.insecure_channel(f"127.0.0.1:{p.port}") as channel:
            stub = pb2_grpc.GreeterStub(channel)
            reply = stub.SayHello(pb2.HelloRequest(name="world"), timeout=5,
                                  metadata=[("x-api-token", "s3cr3t")])
            assert reply.message == "Hello, world!"
            assert seen[-1]["x-caller"] == "127.0.0.1"
            with pytest.raises(grpc.RpcError) as info:
                stub.SayHello(pb2.HelloRequest(name="world"), timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert info.value.details() == ("Header x-api-token was not found in the "
                                            "request. Access denied.")
        # the header's curl line, byte for byte
        out = subprocess.run(
            ["curl", "-sS", "--http2-prior-knowledge", "-D", "-", "-o", "/dev/null",
             "-H", "content-type: application/grpc", "-H", "te: trailers",
             "-H", "x-api-token: s3cr3t", "--data-binary", "@-",
             f"{p.url}/helloworld.Greeter/SayHello"],
            input=b"\0\0\0\0\x07\n\x05world", capture_output=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert b"grpc-status: 0" in out.stdout
    finally:
        p.stop()
        server.stop(0)


# -- custom-policy.yaml ---------------------------------------------------------------------

def test_custom_policy(tmp_path, echo):
    p = _start("custom-policy.yaml", tmp_path, _echo_urls(echo))
    try:
        with httpx.Client(base_url=p.url, timeout=10) as c:
            for tenant in ("acme", "globex"):
                r = c.get("/orders/1", headers={"X-Tenant": tenant})
                assert r.status_code == 200
                assert r.json()["path"] == f"/{tenant}/1"
                assert r.headers["x-tenant"] == tenant
            r = c.get("/orders/1")
            assert r.status_code == 400
            assert r.json() == {"statusCode": 400,
                                "message": "Unknown or missing tenant in x-tenant."}
            assert r.headers["x-error-reason"] == "TenantNotFound"
    finally:
        p.stop()


def test_custom_policy_through_apigw_serve_from_another_directory(tmp_path, echo):
    """`apigw serve examples/custom-policy.yaml` from the repository root finds the module
    beside the config, not in the working directory."""
    config = _rewrite(yaml.safe_load((EXAMPLES / "custom-policy.yaml").read_text()),
                      _echo_urls(echo))
    where = tmp_path / "conf"
    where.mkdir()
    shutil.copy(EXAMPLES / "custom_policy.py", where / "custom_policy.py")
    path = where / "custom-policy.json"
    path.write_text(json.dumps(config))
    out = subprocess.run([sys.executable, "-m", "apigw_core", "validate", str(path)],
                         capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
