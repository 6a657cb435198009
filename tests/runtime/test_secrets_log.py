"""runtime/secrets.py: a secret named value never reaches a log handler, in a message, its
arguments or a traceback; other text is left alone."""

from __future__ import annotations

import io
import logging
from types import SimpleNamespace

from apigw_core.runtime import secrets

SECRET = "s3cr3t-ab12cd"


def test_secret_values_are_rewritten_in_every_record():
    root = logging.getLogger()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    root.addHandler(handler)
    try:
        secrets.remember(SimpleNamespace(secret_values={"tok", "tiny"},
                                         named_values={"tok": SECRET, "tiny": "ab",
                                                       "open": "visible-value"}))
        log = logging.getLogger("apigw_core.runtime.test")
        log.warning("backend said %s", f"bad token {SECRET}")
        log.warning("plain visible-value and ab stay")
        try:
            raise ValueError(f"carrying {SECRET}")
        except ValueError:
            log.exception("failed")
    finally:
        root.removeHandler(handler)
    text = out.getvalue()
    assert SECRET not in text
    assert "bad token {{tok}}" in text and "ValueError: carrying {{tok}}" in text
    assert "plain visible-value and ab stay" in text
