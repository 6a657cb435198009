"""The built-in policies, registered by APIM name on import (`registry.register`).

- `flow`: choose, return-response, set-variable, set-backend-service, forward-request,
  send-request
- `access`: check-header, ip-filter, cors
- `transform`: set-header, set-query-parameter, rewrite-uri, set-method, set-status,
  set-body, find-and-replace
- `convert`: json-to-xml, xml-to-json
"""

from __future__ import annotations

import importlib

from . import flow  # noqa: F401

# The other modules are written alongside (another helper); a module not there yet is
# skipped, any error inside one is not.
for _name in ("access", "transform", "convert"):
    try:
        importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as _e:
        if _e.name != f"{__name__}.{_name}":
            raise
