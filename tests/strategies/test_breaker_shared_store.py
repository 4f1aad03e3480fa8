"""A breaker over a shared store (``batch_seconds`` > 0, as Redis) believes a closed circuit for that
long while it sees no failure, so a healthy vendor's calls skip the store's round trip; a circuit
opened elsewhere stops its calls at most that late."""

from __future__ import annotations

import pytest

from resilient_client._settings import BreakerSettings
from resilient_client.stores import MemoryState
from resilient_client.strategies.breaker import Breaker, CircuitOpen, Permit

pytestmark = pytest.mark.anyio

SETTINGS = BreakerSettings(minimum_throughput=2, failure_ratio=0.5, break_duration=30.0)


class Shared(MemoryState):
    """The in-process store posing as a shared one, counting circuit reads."""

    batch_seconds = 0.1

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def circuit(self, key: str, now: float) -> object:  # type: ignore[override]
        self.reads += 1
        return super().circuit(key, now)


def test_a_closed_circuit_is_read_once_per_batch_while_calls_succeed() -> None:
    store = Shared()
    breaker = Breaker(SETTINGS, store, "breaker/hyper/h")
    for step in range(10):
        permit = breaker.admit(1.0 + step * 0.03, 30.0)  # 1.00 .. 1.27
        assert isinstance(permit, Permit)
        breaker.record(permit, False, 1.0 + step * 0.03)
    assert store.reads == 3  # at 1.00, 1.12 and 1.24


def test_a_failure_makes_the_next_call_ask_the_store() -> None:
    store = Shared()
    breaker = Breaker(SETTINGS, store, "breaker/hyper/h")
    permit = breaker.admit(1.0, 30.0)
    breaker.record(permit, True, 1.0)
    breaker.admit(1.01, 30.0)
    assert store.reads == 2


def test_a_circuit_opened_by_another_process_refuses_here_within_the_batch() -> None:
    store = Shared()
    here = Breaker(SETTINGS, store, "breaker/hyper/h")
    there = Breaker(SETTINGS, store, "breaker/hyper/h")  # another process's breaker, same key
    assert isinstance(here.admit(1.0, 30.0), Permit)
    permit = there.admit(1.0, 30.0)
    there.record(permit, True, 1.0)
    assert there.record(permit, True, 1.0) == "open"
    assert isinstance(here.admit(1.05, 30.0), Permit)  # still believed closed: 0.05 s later
    assert isinstance(here.admit(1.11, 30.0), CircuitOpen)


def test_the_in_process_store_is_asked_every_time() -> None:
    store = Shared()
    store.batch_seconds = float("inf")
    breaker = Breaker(SETTINGS, store, "breaker/hyper/h")
    for _ in range(3):
        breaker.admit(1.0, 30.0)
    assert store.reads == 3
