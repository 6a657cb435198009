"""The built-in policies, registered by APIM name on import (`registry.register`).

- `flow`: choose, return-response, set-variable, set-backend-service, forward-request,
  send-request
- `access`: check-header, ip-filter, cors
- `transform`: set-header, set-query-parameter, rewrite-uri, set-method, set-status,
  set-body, find-and-replace
- `convert`: json-to-xml, xml-to-json
- `retry`: retry
- `limits`: rate-limit, rate-limit-by-key, quota, quota-by-key, limit-concurrency
- `llm`: llm-token-limit (azure-openai-token-limit)
- `llm_metric`: llm-emit-token-metric (azure-openai-emit-token-metric)
- `certificates`: validate-client-certificate; `credentials`: authentication-basic,
  authentication-certificate
- `telemetry`: trace, emit-metric
- `jwt`: validate-jwt
"""

from __future__ import annotations

# each registers its policies
from . import access, convert, flow, jwt, limits, llm, retry, telemetry, transform  # noqa: F401
from . import certificates, credentials  # noqa: F401
from . import llm_metric  # noqa: F401
