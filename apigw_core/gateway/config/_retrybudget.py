"""The file format of a backend's `retry-budget` (Envoy's retry budget, beyond APIM).

`retry-budget: {percent: 20, min-concurrency: 3}`: at most `percent` % of the backend's
active requests may be retries at once, and never fewer than `min-concurrency` (Envoy's
`budget_percent` and `min_retry_concurrency`, same defaults).  A separate module so that
the sections other features add to the backend stay apart in the shared files.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from . import _model as m

__all__ = ["RetryBudget", "build_retry_budget"]

_DEFAULT = m.RetryBudgetConfig()


class RetryBudget(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=lambda s: s.replace("_", "-"),
                              use_attribute_docstrings=True)

    percent: Annotated[float, Field(strict=True, ge=0, le=100)] = _DEFAULT.percent
    """share of the backend's active requests that may be retries at once"""
    min_concurrency: Annotated[int, Field(strict=True, ge=0, le=2**31 - 1)] = \
        _DEFAULT.min_concurrency
    """retries always allowed at once, whatever the share"""


def build_retry_budget(b: RetryBudget | None) -> m.RetryBudgetConfig:
    if b is None:
        return _DEFAULT
    return m.RetryBudgetConfig(**{n: getattr(b, n) for n in b.model_fields_set})
