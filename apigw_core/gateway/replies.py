"""Local replies: the answers the gateway makes itself (no route, backend down, ...).

A small JSON body in APIM's shape (`{"statusCode": 404, "message": "..."}`), so a client
of APIM parses ours the same way.  The status codes follow APIM and Envoy:
404 no API matches, 502 backend refused/unreachable or sent a bad response, 503 over
capacity, 504 backend timeout, 408 client too slow, 4xx for a bad request.
"""

from __future__ import annotations

import json
from typing import Optional

__all__ = ["json_error"]


def json_error(status: int, message: str, request_id: Optional[bytes] = None,
               ) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers and body of a local error reply."""
    doc: dict = {"statusCode": status, "message": message}
    if request_id:
        doc["requestId"] = request_id.decode("latin-1")
    body = json.dumps(doc, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", b"%d" % len(body))]
    if request_id:
        headers.append((b"x-request-id", request_id))
    return headers, body
