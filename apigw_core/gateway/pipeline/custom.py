"""Custom policies: a user's Python class, named in the config, on the same contract as the
built-in ones.

Two spellings, both resolved when the config is compiled:

    - custom: {class: "mypkg.policies:AddTenant", tenant-header: x-tenant}
    - "mypkg.policies:AddTenant": {tenant-header: x-tenant}

The class path is `module:Class` or `module.Class`; the class must subclass
`apigw_core.gateway.pipeline.Policy`.  It is built as `Class(spec, site)` with the entry's
other keys as `spec` (a read-only mapping) and a `Site` for reporting mistakes and compiling
templates; its `sections` say where it may go (all four by default).  A module that does
not import, a missing class or one that is not a Policy is a config error at the entry's
path, never a crash.  The module is imported through `sys.path` as usual, and when it is
not found there, from the config file's directory (so `custom_policy.py` next to
`gateway.yaml` just works); its code is trusted like any plugin.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Mapping, Optional

from .contract import Policy, Site

__all__ = ["is_custom", "load_custom", "load_class"]


def is_custom(name: str) -> bool:
    """True for `custom` and for a name that is a class path (contains "." or ":")."""
    return name == "custom" or "." in name or ":" in name


def _import(module: str, search_dir: Optional[str]) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        top = module.partition(".")[0]
        if search_dir is None or e.name != top or not (
                os.path.isfile(os.path.join(search_dir, top + ".py"))
                or os.path.isdir(os.path.join(search_dir, top))):
            raise
    sys.path.insert(0, search_dir)
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(search_dir)


def load_class(path: str, search_dir: Optional[str] = None) -> type[Policy]:
    """Import `module:Class` / `module.Class` (from sys.path, else from `search_dir`);
    ValueError with a readable message."""
    if ":" in path:
        module, _, attr = path.partition(":")
    else:
        module, _, attr = path.rpartition(".")
    if not module or not attr:
        raise ValueError(f"expected module:Class or module.Class, got {path!r}")
    try:
        mod = _import(module, search_dir)
    except Exception as e:   # ImportError, or an error raised by the module's own code
        raise ValueError(f"cannot import {module} ({type(e).__name__}: {e})") from None
    cls = mod
    for part in attr.split("."):
        cls = getattr(cls, part, None)
        if cls is None:
            raise ValueError(f"module {module} has no {attr}")
    if not (isinstance(cls, type) and issubclass(cls, Policy)):
        raise ValueError(f"{path} is not a subclass of apigw_core.gateway.pipeline.Policy")
    return cls


def load_custom(name: str, body: Any, site: Site, search_dir: Optional[str] = None
                ) -> Optional[tuple[type[Policy], Any]]:
    """(class, spec) for a custom entry, or None after recording the error at its path."""
    key = ""
    if name == "custom":
        if not isinstance(body, Mapping) or not isinstance(body.get("class"), str):
            site.error("expected a mapping with class: \"module:Class\"", "class")
            return None
        path, key = body["class"], "class"
        spec: Any = {k: v for k, v in body.items() if k != "class"}
    else:
        path, spec = name, body
    try:
        return load_class(path, search_dir), spec
    except ValueError as e:
        site.error(str(e), key)
        return None
