"""The rate limiter and the guard of a journal call, together: the account's key is held while the
request is at the vendor and let go after, never across the limiter's wait or a Retry-After pause;
and what a journal call costs a shared store, in round trips to a real Redis.

The two strategies are sealed: the limiter admits the send (its pause check and its reservation, one
operation), then the guard takes its keys (one operation), and after any wait for a key it asks the
limiter, through its pause gate, whether a pause began meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pipeline_kit import JOURNAL, OK, URL, Caller, Vendor, policy, transport

import resilient_client as rc
from redis_process import RedisProcess, counted_store, reset_round_trips, round_trips
from resilient_client.stores import StateStore, state_key
from resilient_client.testing import FakeClock
from store_ops import Store

pytestmark = pytest.mark.anyio

ACCOUNT_KEY = "guard/hyper/hyper.test/" + state_key("journal", "AccountNo", "A1")


def held_by_someone(store: StateStore, now: float, key: str = ACCOUNT_KEY) -> bool:
    """Whether ``key`` is held (another holder is refused), leaving it as it was."""
    if Store(store).try_acquire([key], 1, 1.0, "peek", now):
        Store(store).release([key], "peek", now)
        return False
    return True


class WatchingClock(FakeClock):
    """A fake clock that runs ``before_sleep`` at each sleep (sync or async) before time moves on."""

    def __init__(self) -> None:
        super().__init__(start=1000.0)
        self.before_sleep: Callable[[], None] = lambda: None

    def sleep(self, seconds: float) -> None:
        self.before_sleep()
        super().sleep(seconds)


def paced(requests: int) -> rc.RetryPolicy:
    """The shipped hyper policy (adaptive limiter, Retry-After pauses, journal guard) at a fixed pace."""
    shipped = rc.load_policy("hyper")
    return policy(
        shipped,
        rate_limit=rc.RateLimitSettings(enabled=True, requests=requests, period=1.0, burst=requests),
    )


class Watched:
    """A hyper transport whose vendor notes, at each arrival, whether the account was held."""

    def __init__(self, requests: int = 100, store: StateStore | None = None) -> None:
        self.clock = WatchingClock()
        self.store = rc.MemoryState() if store is None else store
        self.held_at_vendor: list[bool] = []
        self.vendor = Vendor(self.clock, script=self.answer)
        self.transport = transport(self.vendor, policy=paced(requests), state=self.store)

    def answer(self, request: httpx.Request) -> httpx.Response:
        self.held_at_vendor.append(held_by_someone(self.store, self.clock.now))
        return OK


async def test_a_journal_call_holds_the_account_at_the_vendor_and_lets_it_go(
    connect: Callable[[Any], Caller],
) -> None:
    watched = Watched()
    client = connect(watched.transport)
    for _ in range(2):
        assert (await client.post(JOURNAL, json={"AccountNo": "A1"})).status_code == 200
    assert watched.held_at_vendor == [True, True]
    assert not held_by_someone(watched.store, watched.clock.now)


async def test_a_call_no_guard_covers_holds_nothing(connect: Callable[[Any], Caller]) -> None:
    watched = Watched()
    client = connect(watched.transport)
    assert (await client.get(URL)).status_code == 200
    assert (await client.post(JOURNAL, json={"Other": 1})).status_code == 200  # no key field: no hold
    assert watched.held_at_vendor == [False, False]


async def test_a_send_queued_by_the_limiter_takes_its_key_only_after_the_wait(
    connect: Callable[[Any], Caller],
) -> None:
    watched = Watched(requests=1)  # one a second: the second call waits 1 s for its turn
    held_while_waiting: list[bool] = []
    watched.clock.before_sleep = lambda: held_while_waiting.append(
        held_by_someone(watched.store, watched.clock.now)
    )
    client = connect(watched.transport)
    for _ in range(2):
        await client.post(JOURNAL, json={"AccountNo": "A1"})
    assert watched.clock.sleeps == [1.0]
    assert held_while_waiting == [False]
    assert watched.held_at_vendor == [True, True]
    assert watched.vendor.times == [1000.0, 1001.0]


async def test_a_busy_account_is_waited_for_then_held_at_the_vendor(connect: Callable[[Any], Caller]) -> None:
    watched = Watched()
    assert Store(watched.store).try_acquire([ACCOUNT_KEY], 1, 60.0, "another-call", 1000.0)
    watched.clock.before_sleep = lambda: Store(watched.store).release(
        [ACCOUNT_KEY], "another-call", watched.clock.now
    )  # the other call ends during the guard's first pause
    client = connect(watched.transport)
    assert (await client.post(JOURNAL, json={"AccountNo": "A1"})).status_code == 200
    assert len(watched.clock.sleeps) == 1  # one poll of the busy key, then it was free
    assert watched.held_at_vendor == [True]
    assert not held_by_someone(watched.store, watched.clock.now)


async def test_a_paused_host_holds_the_call_without_taking_its_key(connect: Callable[[Any], Caller]) -> None:
    watched = Watched()
    Store(watched.store).pause(state_key("limiter", "hyper", "hyper.test"), 3.0, watched.clock.now)
    held_while_waiting: list[bool] = []
    watched.clock.before_sleep = lambda: held_while_waiting.append(
        held_by_someone(watched.store, watched.clock.now)
    )
    client = connect(watched.transport)
    assert (await client.post(JOURNAL, json={"AccountNo": "A1"})).status_code == 200
    assert watched.clock.sleeps == [3.0]
    assert held_while_waiting == [False]
    assert watched.held_at_vendor == [True]
    assert watched.vendor.times == [1003.0]


async def test_with_two_guards_both_keys_are_held_at_the_vendor_and_let_go(
    connect: Callable[[Any], Caller],
) -> None:
    watched = Watched()
    shipped = watched.transport.policy
    second = rc.GuardSettings(operations=("*journal*",), key_fields=("PatientId",))
    two_guards = policy(shipped, guards={**shipped.guards, "patient": second})
    watched.transport = transport(watched.vendor, policy=two_guards, state=watched.store)
    patient_key = "guard/hyper/hyper.test/" + state_key("patient", "PatientId", "P9")
    at_vendor: list[bool] = []
    watched.vendor.script = lambda request: (
        at_vendor.append(held_by_someone(watched.store, watched.clock.now, patient_key))
        or watched.answer(request)
    )
    client = connect(watched.transport)
    assert (await client.post(JOURNAL, json={"AccountNo": "A1", "PatientId": "P9"})).status_code == 200
    assert watched.held_at_vendor == [True]
    assert at_vendor == [True]
    assert not held_by_someone(watched.store, watched.clock.now)
    assert not held_by_someone(watched.store, watched.clock.now, patient_key)


async def test_a_journal_call_over_redis_costs_at_most_three_round_trips_once_the_counts_are_batched(
    connect: Callable[[Any], Caller], redis_process: RedisProcess, redis_url: str
) -> None:
    """The limiter's admission, the guard's take and its release: the budget's deposits and the
    breaker's successes are counted in process and written once per batch, a closed circuit is
    believed for a batch (``RedisState.batch_seconds``), and the concurrency slot of one call at a
    time stays warm for the next within a batch, so the calls after the first cost no more. The
    admission is skipped by a send on a spare the admission before reserved."""
    vendor = Vendor(FakeClock(start=1000.0))
    client = connect(transport(vendor, policy=paced(100), state=counted_store(redis_process)))
    assert (await client.post(JOURNAL, json={"AccountNo": "A1"})).status_code == 200
    reset_round_trips(redis_process)
    for _ in range(3):
        assert (await client.post(JOURNAL, json={"AccountNo": "A1"})).status_code == 200
    # The second call asks one spare (a send soon after the last), the third sends on it.
    assert round_trips(redis_process) == 3 * 2 + 2
