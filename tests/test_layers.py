"""The layering arrows of DESIGN.md, checked on the source: who may import whom.

protocol/  sans-IO: the stdlib (minus sockets, threads, clocks), h11/h2/hpack/hyperframe/
           wsproto, apigw_core.native and itself.
gateway/   decisions: no trio, no sockets, no protocol objects (policies see a neutral view).
runtime/   the only layer with trio and sockets.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "apigw_core"

FORBIDDEN = {
    "protocol": {"trio", "socket", "ssl", "asyncio", "threading", "time", "selectors",
                 "apigw_core.runtime", "apigw_core.gateway"},
    "gateway": {"trio", "socket", "ssl", "asyncio", "selectors", "apigw_core.runtime",
                "apigw_core.protocol"},
    "_purepy": {"trio", "socket", "apigw_core.runtime", "apigw_core.gateway",
                "apigw_core.protocol"},
}


def _imports(path: Path, root: Path = PKG) -> set[str]:
    """Absolute module names imported by a file (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    parts = path.relative_to(root.parent).with_suffix("").parts
    pkg = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(pkg[:len(pkg) - node.level + 1])
                mod = ".".join(base + ([node.module] if node.module else []))
                names.add(mod)
                names.update(f"{mod}.{a.name}" for a in node.names)
            else:
                names.add(node.module or "")
    return names


def _violations(layer: str, root: Path = PKG) -> list[str]:
    out = []
    for path in sorted((root / layer).rglob("*.py")):
        for name in _imports(path, root):
            for bad in FORBIDDEN[layer]:
                if name == bad or name.startswith(bad + "."):
                    out.append(f"{path.relative_to(root)} imports {name}")
    return out


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports(layer: str) -> None:
    assert _violations(layer) == []


def test_the_check_sees_relative_and_dotted_imports(tmp_path: Path) -> None:
    root = tmp_path / "apigw_core"
    (root / "protocol").mkdir(parents=True)
    (root / "protocol" / "a.py").write_text("from ..runtime import serve\n")
    (root / "protocol" / "b.py").write_text("import trio.lowlevel\n")
    (root / "protocol" / "c.py").write_text("from . import events\nimport h2.connection\n")
    assert sorted(_violations("protocol", root)) == [
        "protocol/a.py imports apigw_core.runtime",
        "protocol/a.py imports apigw_core.runtime.serve",
        "protocol/b.py imports trio.lowlevel",
    ]


def test_only_runtime_imports_trio() -> None:
    users = sorted(str(p.relative_to(PKG)) for p in PKG.rglob("*.py")
                   if any(n == "trio" or n.startswith("trio.") for n in _imports(p)))
    assert users and all(u.startswith("runtime/") for u in users), users
