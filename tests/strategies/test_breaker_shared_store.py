"""A breaker believes a closed circuit for its store's ``batch_seconds`` (0.1 s for Redis), at most
``CLOSED_BELIEF``, while it sees no failure, so a healthy vendor's calls skip the store's round trip; a circuit
opened elsewhere stops its calls at most that late. Round trips are counted on a real Redis."""

from __future__ import annotations

import pytest

from redis_process import RedisProcess, counted_store, round_trips
from resilient_client._settings import BreakerSettings
from resilient_client.stores import MemoryState, StateStore
from resilient_client.strategies.breaker import CLOSED_BELIEF, Breaker, CircuitOpen, Permit

SETTINGS = BreakerSettings(minimum_throughput=2, failure_ratio=0.5, break_duration=30.0)


class Shared(MemoryState):
    """The in-process store, writing counts as a shared one does (every 0.1 s)."""

    batch_seconds = 0.1


def test_successful_calls_cost_two_round_trips_per_batch_not_per_call(
    redis_process: RedisProcess, redis_url: str
) -> None:
    breaker = Breaker(SETTINGS, counted_store(redis_process), "breaker/hyper/h")
    for step in range(10):
        permit = breaker.admit(1.0 + step * 0.03, 30.0)  # 1.00 .. 1.27
        assert isinstance(permit, Permit)
        breaker.record(permit, False, 1.0 + step * 0.03)
    # At 1.00, 1.12 and 1.24: the circuit read, and the successes counted since written.
    assert round_trips(redis_process) == 6


@pytest.mark.parametrize("store", [Shared(), MemoryState()], ids=["shared", "in-process"])
def test_after_a_failure_a_circuit_opened_elsewhere_refuses_at_once(store: StateStore) -> None:
    here = Breaker(SETTINGS, store, "breaker/hyper/h")
    there = Breaker(SETTINGS, store, "breaker/hyper/h")  # another process's breaker, same key
    permit = here.admit(1.0, 30.0)
    assert isinstance(permit, Permit)
    here.record(permit, True, 1.0)  # no belief in "closed" after a failure
    other = there.admit(1.0, 30.0)
    assert isinstance(other, Permit)
    assert there.record(other, True, 1.0) == "open"
    assert isinstance(here.admit(1.01, 30.0), CircuitOpen)


def test_a_circuit_opened_by_another_process_refuses_here_within_the_batch() -> None:
    store = Shared()
    here = Breaker(SETTINGS, store, "breaker/hyper/h")
    there = Breaker(SETTINGS, store, "breaker/hyper/h")
    assert isinstance(here.admit(1.0, 30.0), Permit)
    permit = there.admit(1.0, 30.0)
    there.record(permit, True, 1.0)
    assert there.record(permit, True, 1.0) == "open"
    assert isinstance(here.admit(1.05, 30.0), Permit)  # still believed closed: 0.05 s later
    assert isinstance(here.admit(1.11, 30.0), CircuitOpen)


class Unbatched(MemoryState):
    """A store that batches nothing: every admission asks it."""

    batch_seconds = 0.0


@pytest.mark.parametrize("store", [Shared(), MemoryState()], ids=["shared", "in-process"])
def test_a_circuit_opened_by_another_breaker_refuses_here_within_the_belief(store: StateStore) -> None:
    """A closed circuit is believed for ``CLOSED_BELIEF`` (the in-process store too: a vendor
    client's mounts on one store see each other's circuits at most that late, as a fleet's do)."""
    here = Breaker(SETTINGS, store, "breaker/hyper/h")
    there = Breaker(SETTINGS, store, "breaker/hyper/h")
    assert isinstance(here.admit(1.0, 30.0), Permit)
    permit = there.admit(1.0, 30.0)
    there.record(permit, True, 1.0)
    assert there.record(permit, True, 1.0) == "open"
    assert isinstance(here.admit(1.0 + CLOSED_BELIEF / 2, 30.0), Permit)  # still believed closed
    assert isinstance(here.admit(1.0 + CLOSED_BELIEF * 1.1, 30.0), CircuitOpen)


def test_over_a_store_that_batches_nothing_a_circuit_opened_elsewhere_refuses_at_once() -> None:
    store = Unbatched()
    here = Breaker(SETTINGS, store, "breaker/hyper/h")
    there = Breaker(SETTINGS, store, "breaker/hyper/h")
    assert isinstance(here.admit(1.0, 30.0), Permit)
    permit = there.admit(1.0, 30.0)
    there.record(permit, True, 1.0)
    assert there.record(permit, True, 1.0) == "open"
    assert isinstance(here.admit(1.0, 30.0), CircuitOpen)
