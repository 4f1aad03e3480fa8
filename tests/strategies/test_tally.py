"""Counts the success path keeps in process (``strategies/_tally.py``): exact under threads, and
written to the store when the strategy next reads it or after the store's ``batch_seconds``."""

from __future__ import annotations

import math
import threading

import pytest

from redis_process import RedisProcess, counted_store, round_trips
from resilient_client._settings import BreakerSettings, BudgetSettings
from resilient_client.stores import MemoryState
from resilient_client.strategies._tally import Tally, batch_seconds
from resilient_client.strategies.breaker import Breaker
from resilient_client.strategies.budget import Budget


def test_every_event_is_taken_exactly_once_whatever_the_threads() -> None:
    tally = Tally()
    taken: list[int] = []

    def add() -> None:
        for _ in range(20_000):
            tally.add()

    def take() -> None:
        for _ in range(500):
            taken.append(tally.take())

    threads = [threading.Thread(target=add) for _ in range(8)] + [threading.Thread(target=take)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(taken) + tally.take() == 8 * 20_000
    assert tally.take() == 0


@pytest.mark.parametrize(
    ("store", "expected"),
    [
        pytest.param(MemoryState(), math.inf, id="memory-writes-when-read"),
        pytest.param(object(), 0.0, id="a-store-that-does-not-say-writes-at-once"),
    ],
)
def test_batch_seconds_comes_from_the_store(store: object, expected: float) -> None:
    assert batch_seconds(store) == expected


def test_the_budget_brings_the_shares_earned_to_the_next_retry() -> None:
    budget = Budget(BudgetSettings(ratio=0.5, burst=2.0), MemoryState(), "budget/hyper")
    assert budget.try_spend(0.0) and budget.try_spend(0.0)  # the burst
    assert not budget.try_spend(0.5)
    for _ in range(4):
        budget.deposit(1.0)
    assert budget.try_spend(2.0) and budget.try_spend(2.0)  # 4 x 0.5 earned
    assert not budget.try_spend(2.0)


def test_the_budget_of_a_shared_store_writes_its_deposits_once_per_batch(
    redis_process: RedisProcess, redis_url: str
) -> None:
    budget = Budget(BudgetSettings(ratio=0.2, burst=10.0), counted_store(redis_process), "budget/hyper")
    for step in range(10):
        budget.deposit(step * 0.03)  # 0.00 .. 0.27
    # At 0 (the first), then at the first deposit 0.1 s after each write: 0.12 and 0.24.
    assert round_trips(redis_process) == 3


def breaker(store: MemoryState) -> Breaker:
    settings = BreakerSettings(minimum_throughput=4, failure_ratio=0.5, sampling_duration=30.0)
    return Breaker(settings, store, "breaker/hyper/h")


def test_the_breaker_weighs_a_failure_against_every_success_before_it() -> None:
    guarded = breaker(MemoryState())
    permit = guarded.admit(1.0, 30.0)
    for _ in range(5):
        guarded.record(permit, False, 1.0)
    # 5 successes, then failures: open at 5 of 10, not at 4 of 4.
    assert [guarded.record(permit, True, 1.0) for _ in range(5)] == [None, None, None, None, "open"]


def test_successes_long_before_an_outage_do_not_hold_the_breaker_closed() -> None:
    guarded = breaker(MemoryState())
    permit = guarded.admit(1.0, 30.0)
    for step in range(100):
        guarded.record(permit, False, 1.0 + step / 100)
    # 100 s later (a 30 s window) the vendor fails: 99 successes from 98 s ago count for nothing.
    assert [guarded.record(permit, True, 100.0) for _ in range(4)] == [None, None, None, "open"]
