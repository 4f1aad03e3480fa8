"""The limiter's spare sends: sends soon after one another go on spares reserved by the send before
(no store operation), every send is still counted in the rate a 429 lowers, a spare never sent
gives its token back, and a pause ends the spares at once in process and within an allowance
(``ALLOWANCE_SECONDS``, the store's ``batch_seconds`` over Redis) anywhere else."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from redis_process import RedisProcess, counted_store, reset_round_trips, round_trips
from resilient_client._clock import Clock
from resilient_client._settings import RateLimitSettings
from resilient_client.stores import MemoryState, StateStore
from resilient_client.strategies.limiter import ALLOWANCE_SECONDS, BETA, Limiter, Ticket
from resilient_client.testing import FakeClock
from store_ops import Store

pytestmark = pytest.mark.anyio

KEY = "limiter/hyper/api.hyper.test"


@pytest.fixture
def clock() -> Clock:
    return Clock.from_options(**FakeClock(start=5000.0).options())


def limiter(store: StateStore, **settings: Any) -> Limiter:
    return Limiter(RateLimitSettings(enabled=True, **settings), store, KEY)


async def test_sends_close_together_cost_few_round_trips_and_are_all_counted(
    twin: Callable[[object], Any], clock: Clock, redis_process: RedisProcess, redis_url: str
) -> None:
    ops = twin(limiter(counted_store(redis_process)))
    tickets = [await ops.acquire(clock.monotonic(), 30.0) for _ in range(20)]
    assert all(isinstance(t, Ticket) and t.granted and t.wait == 0.0 for t in tickets)
    # One send asks the store, the next one spare, then twice as many as were sent on: 1+2+3+5+9.
    assert round_trips(redis_process) == 5
    reset_round_trips(redis_process)
    await ops.record(tickets[-1], rate_limited=True, retry_after=None, now=clock.monotonic())
    after = await ops.acquire(clock.monotonic(), 30.0)
    assert after.rate is not None and after.rate.rate == pytest.approx(BETA * 20)  # all 20 were counted


async def test_a_429_of_another_limiter_of_the_key_ends_the_spares_at_once(
    twin: Callable[[object], Any], clock: Clock
) -> None:
    store = MemoryState()
    first, second = twin(limiter(store)), twin(limiter(store))  # two transports of one vendor
    for _ in range(4):  # the spares of sends close together: some are left
        await first.acquire(clock.monotonic(), 30.0)
    throttled = await second.acquire(clock.monotonic(), 30.0)
    await second.record(throttled, rate_limited=True, retry_after=10.0, now=clock.monotonic())
    assert await first.acquire(clock.monotonic(), 30.0) == Ticket(10.0, granted=False)


@pytest.mark.parametrize("shared", [False, True], ids=["memory", "redis"])
async def test_a_pause_written_elsewhere_holds_sends_within_an_allowance(
    twin: Callable[[object], Any], clock: Clock, shared: bool, redis_process: RedisProcess, redis_url: str
) -> None:
    store: StateStore = counted_store(redis_process) if shared else MemoryState()
    lasts = min(getattr(store, "batch_seconds", 0.0), ALLOWANCE_SECONDS)
    ops = twin(limiter(store))
    for _ in range(4):
        await ops.acquire(clock.monotonic(), 30.0)
    Store(store).pause(KEY, 10.0, clock.monotonic())  # another process got a 429
    clock.sleep(lasts)
    held = await ops.acquire(clock.monotonic(), 30.0)
    assert held == Ticket(pytest.approx(10.0 - lasts), granted=False)


async def test_a_spare_never_sent_gives_its_token_back(twin: Callable[[object], Any], clock: Clock) -> None:
    ops = twin(limiter(MemoryState(), requests=1, period=10.0, burst=4, adaptive=False))
    # The second send, close after the first, reserves one spare; nobody sends on it.
    assert [(await ops.acquire(clock.monotonic(), 60.0)).wait for _ in range(2)] == [0.0, 0.0]
    clock.sleep(2.0)  # the allowance is over: its spare goes back (and 0.2 tokens came meanwhile)
    waits = [(await ops.acquire(clock.monotonic(), 60.0)).wait for _ in range(3)]
    assert waits == pytest.approx([0.0, 0.0, 8.0])  # 4 sent at once, as the bucket of 4 allows


async def test_spares_sent_over_seconds_count_as_the_last_seconds_share_of_them(
    twin: Callable[[object], Any], clock: Clock
) -> None:
    ops = twin(limiter(MemoryState()))
    for _ in range(20):  # four a second for five seconds, most of them on spares
        sent = await ops.acquire(clock.monotonic(), 30.0)
        clock.sleep(0.25)
    await ops.record(sent, rate_limited=True, retry_after=None, now=clock.monotonic())
    after = await ops.acquire(clock.monotonic(), 30.0)
    assert after.rate is not None
    assert after.rate.rate == pytest.approx(BETA * 4, rel=0.25)  # four a second, not the spares' sum
