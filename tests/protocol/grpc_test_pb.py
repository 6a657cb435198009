"""The Python modules of grpc_test.proto (package apigw.test, service TestService),
compiled by grpcio-tools at test time.

Why at test time and not committed: protoc's Python output is tied to the protobuf runtime
(it is stamped "NO CHECKED-IN PROTOBUF GENCODE" and checks the runtime's version when
imported) and the `_pb2_grpc` module to grpcio's; compiling with the grpcio-tools that pip
installed next to them keeps the three in step whatever versions pip picks.  The output is
cached in the temp directory, keyed by the .proto text and the tool versions, so only the
first run pays (~0.3 s).

    from grpc_test_pb import pb2, pb2_grpc        # tests/protocol is on sys.path
    # from another test directory:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "protocol"))
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from types import ModuleType

PROTO = Path(__file__).resolve().with_name("grpc_test.proto")
SERVICE = "apigw.test.TestService"


def _out_dir() -> Path:
    key = hashlib.sha256(PROTO.read_bytes())
    for dist in ("protobuf", "grpcio", "grpcio-tools"):
        key.update(metadata.version(dist).encode())
    key.update(sys.version.encode())
    return Path(tempfile.gettempdir()) / f"apigw-grpc-test-{key.hexdigest()[:16]}"


def _compile(out: Path) -> None:
    from grpc_tools import protoc

    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        rc = protoc.main(["protoc", f"-I{PROTO.parent}", f"--python_out={tmp}",
                          f"--grpc_python_out={tmp}", str(PROTO)])
        if rc != 0:
            raise RuntimeError(f"protoc failed on {PROTO} (exit {rc})")
        try:
            os.rename(tmp, out)  # atomic; a concurrent run may have won the race
        except OSError:
            if not (out / "grpc_test_pb2_grpc.py").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load() -> tuple[ModuleType, ModuleType]:
    """(grpc_test_pb2, grpc_test_pb2_grpc), compiled on first use."""
    out = _out_dir()
    if not (out / "grpc_test_pb2_grpc.py").exists():
        _compile(out)
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    return (importlib.import_module("grpc_test_pb2"),
            importlib.import_module("grpc_test_pb2_grpc"))


pb2, pb2_grpc = load()
