"""The retry budget: requests earn retries at ``ratio``, up to ``burst``; a retry takes one token."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

from resilient_client._settings import BudgetSettings
from resilient_client.stores import MemoryState
from resilient_client.strategies.budget import Budget

pytestmark = pytest.mark.anyio


def make(ratio: float = 0.2, burst: float = 10.0) -> Budget:
    return Budget(BudgetSettings(ratio=ratio, burst=burst), MemoryState(), "budget/hyper")


async def test_the_burst_is_there_from_the_start_then_requests_earn_retries(
    twin: Callable[[object], Any],
) -> None:
    budget = make(ratio=0.5, burst=2.0)
    ops = twin(budget)
    assert [await ops.try_spend(0.0) for _ in range(3)] == [True, True, False]
    await ops.deposit(0.0)
    assert not await ops.try_spend(0.0)  # half a retry earned
    await ops.deposit(0.0)
    assert await ops.try_spend(0.0)


async def test_requests_never_earn_more_than_the_burst(twin: Callable[[object], Any]) -> None:
    ops = twin(make(ratio=1.0, burst=3.0))
    for _ in range(10):
        await ops.deposit(0.0)
    assert [await ops.try_spend(0.0) for _ in range(4)] == [True, True, True, False]


async def test_a_zero_ratio_turns_the_budget_off(twin: Callable[[object], Any]) -> None:
    budget = make(ratio=0.0, burst=1.0)
    ops = twin(budget)
    await ops.deposit(0.0)
    assert all([await ops.try_spend(0.0) for _ in range(50)])
    assert not budget.enabled


async def test_under_total_outage_retries_stay_near_ratio_of_requests(twin: Callable[[object], Any]) -> None:
    # SPEC section 7: attempts per request <= 1.2 + burst / 1,000 over 1,000 failing requests.
    ops = twin(make())
    attempts = 0
    for _ in range(1000):
        await ops.deposit(0.0)
        attempts += 1
        for _retry in range(3):
            if not await ops.try_spend(0.0):
                break
            attempts += 1
    assert attempts / 1000 <= 1.2 + 10 / 1000


def test_racing_retries_never_overdraw_the_budget() -> None:
    budget = make(ratio=0.2, burst=10.0)
    start = threading.Barrier(32)
    granted: list[bool] = []

    def retry() -> None:
        start.wait()
        granted.append(budget.try_spend(0.0))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, to catch a check and a take that are two steps
    try:
        threads = [threading.Thread(target=retry) for _ in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        sys.setswitchinterval(interval)
    assert granted.count(True) == 10


def test_repr_names_its_numbers_and_key() -> None:
    assert repr(make()) == "Budget(ratio=0.2, burst=10.0, refund=2.5, key='budget/hyper')"
