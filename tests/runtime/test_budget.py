"""Retry-budget arithmetic and counters (runtime/budget.py), in memory."""

from __future__ import annotations

import pytest

from apigw_core.gateway.config import RetryBudgetConfig
from apigw_core.runtime.budget import RetryBudgets, allows


@pytest.mark.parametrize("active,retrying,percent,minimum,ok", [
    (10, 2, 20.0, 3, True),      # the floor: 3 at once whatever the share
    (10, 3, 20.0, 3, False),
    (100, 19, 20.0, 3, True),    # 20 % of 100 = 20
    (100, 20, 20.0, 3, False),
    (1000, 199, 20.0, 3, True),
    (7, 0, 0.0, 0, False),       # no budget at all
    (7, 6, 100.0, 0, True),
    (7, 7, 100.0, 0, False),
    (9, 1, 25.0, 1, True),       # int(9 * 25 %) = 2
    (9, 2, 25.0, 1, False),
])
def test_allows(active, retrying, percent, minimum, ok):
    assert allows(active, retrying, percent, minimum) is ok


def test_counters_take_and_give_back_slots():
    b = RetryBudgets()
    budget = RetryBudgetConfig(percent=0, min_concurrency=2)
    for _ in range(5):
        b.start("x")
    assert [b.admit("x", budget) for _ in range(3)] == [True, True, False]
    assert b.snapshot("x") == (5, 2)
    b.done("x", True)             # a retrying request ends: its slot is free again
    assert b.snapshot("x") == (4, 1)
    assert b.admit("x", budget) is True
    b.done("x", False)
    assert b.snapshot("x") == (3, 2)
    for _ in range(3):
        b.done("x", False)
    b.done("x", True)
    b.done("x", True)
    assert b.snapshot("x") == (0, 0) and b.active == {} and b.retrying == {}
    assert b.snapshot("other") == (0, 0)
