"""Retry budgets (Envoy's): active requests and retries in progress, per backend.

Strategy.  A retry may start only while the backend's retries in progress stay under
`max(min_concurrency, percent % of its active requests)` (`allows`, pure arithmetic), so
when a backend fails for everybody, retries add at most that share to its load instead of
multiplying it by `count`.  The executor counts a request as active on its backend from
its first forward until it is over (`start` / `done`); a request holds one retry slot from
its first admitted retry until it is over (`admit` / `done`), so a request waiting out
its backoff counts as retrying, as in Envoy.  Counts are per worker process (workers share
nothing: each sees about 1/N of the active requests, so the share holds, but
`min_concurrency` applies per worker) and by backend name, so a reload keeps them; the direct path of plain APIs (no policies)
does not count, since it never retries: a backend shared with one only gets a stricter
budget.
"""

from __future__ import annotations

from typing import Any, Optional

__all__ = ["allows", "RetryBudgets", "BUDGETS"]


def allows(active: int, retrying: int, percent: float, min_concurrency: int) -> bool:
    """May one more retry start?  `active` counts the requests on the backend (the one
    asking included), `retrying` the retries already in progress."""
    limit = max(min_concurrency, int(active * percent / 100.0))
    return retrying < limit


class RetryBudgets:
    """The counters of one worker process."""

    __slots__ = ("active", "retrying")

    def __init__(self) -> None:
        self.active: dict[str, int] = {}
        self.retrying: dict[str, int] = {}

    def start(self, backend: str) -> None:
        self.active[backend] = self.active.get(backend, 0) + 1

    def admit(self, backend: str, budget: Any) -> bool:
        """Take a retry slot when the budget (a RetryBudgetConfig) allows one."""
        retrying = self.retrying.get(backend, 0)
        if not allows(self.active.get(backend, 0), retrying, budget.percent,
                      budget.min_concurrency):
            return False
        self.retrying[backend] = retrying + 1
        return True

    def done(self, backend: str, retried: bool) -> None:
        """The request is over: it leaves the active count (and its retry slot)."""
        active = self.active   # _dec inline: this runs for every forwarded request
        n = active.get(backend)
        if n is not None:
            if n <= 1:
                del active[backend]
            else:
                active[backend] = n - 1
        if retried:
            _dec(self.retrying, backend)

    def snapshot(self, backend: str) -> tuple[int, int]:
        return self.active.get(backend, 0), self.retrying.get(backend, 0)


def _dec(d: dict[str, int], key: str) -> None:
    n: Optional[int] = d.get(key)
    if n is None:
        return
    if n <= 1:
        del d[key]
    else:
        d[key] = n - 1


BUDGETS = RetryBudgets()
