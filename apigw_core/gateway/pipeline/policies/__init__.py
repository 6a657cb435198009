"""The built-in policies, registered by APIM name on import (`registry.register`).

- `flow`: choose, return-response, set-variable, set-backend-service, forward-request,
  send-request
- `access`: check-header, ip-filter, cors
- `transform`: set-header, set-query-parameter, rewrite-uri, set-method, set-status,
  set-body, find-and-replace
- `convert`: json-to-xml, xml-to-json
- `jwt`: validate-jwt
"""

from __future__ import annotations

from . import access, convert, flow, jwt, transform  # noqa: F401  (each registers its policies)
