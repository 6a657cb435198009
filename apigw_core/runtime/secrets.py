"""Secret named values kept out of the logs.

Strategy.  Config errors already print `{{name}}` instead of any named value
(gateway/config/_named.py), and the admin `GET /config` shows only those errors.  What is
left is a log line that happens to carry a secret (a backend's error text, an exception
message, a custom policy's log call).  `remember(config)` adds the config's secret values
(`named-values: {name: {value, secret: true}}`) to one `logging.Filter` on every handler
of the root logger, which rewrites a record's message and traceback text with `{{name}}`
in place of each value before any handler formats it.  Secrets stay remembered across
reloads (a value that was a secret once is never printed).  Values shorter than 3
characters are not rewritten: they would mangle every line and hide nothing.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["remember", "redact"]

_MIN = 3


class _Redact(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}    # secret value -> "{{name}}"

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.values:
            return True
        msg = record.getMessage()
        clean = redact(msg, self.values)
        if clean != msg:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.values)
        return True


_filter = _Redact()


def redact(text: str, values: dict[str, str]) -> str:
    for value in sorted(values, key=len, reverse=True):    # the longest first
        if value in text:
            text = text.replace(value, values[value])
    return text


def remember(config: Any) -> None:
    """Add `config`'s secret values to the log filter (and put the filter on the root
    logger's handlers that lack it)."""
    names = getattr(config, "secret_values", ())
    values = getattr(config, "named_values", {})
    for name in names:
        v = values.get(name)
        if v is not None and len(v) >= _MIN:
            _filter.values[v] = "{{" + name + "}}"
    if _filter.values:
        for h in logging.getLogger().handlers:
            if _filter not in h.filters:
                h.addFilter(_filter)
