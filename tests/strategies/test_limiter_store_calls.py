"""What the limiter costs a shared store per send, counted in round trips to a real Redis: one before
it (the pause check and the reservation together) and, after a success, none while nothing has been
learned and at most one per RECOVERY_INTERVAL while the rate climbs back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from redis_process import RedisProcess, counted_store, reset_round_trips, round_trips
from resilient_client._clock import Clock
from resilient_client._settings import RateLimitSettings
from resilient_client.stores.redis import RedisState
from resilient_client.strategies.limiter import RECOVERY_INTERVAL, Limiter, Ticket
from resilient_client.testing import FakeClock

pytestmark = pytest.mark.anyio

KEY = "limiter/hyper/api.hyper.test"


@pytest.fixture
def store(redis_process: RedisProcess, redis_url: str) -> RedisState:
    return counted_store(redis_process)


def taken(process: RedisProcess) -> int:
    """The round trips since the last ``taken``."""
    count = round_trips(process)
    reset_round_trips(process)
    return count


@pytest.fixture
def clock() -> Clock:
    return Clock.from_options(**FakeClock(start=5000.0).options())


@pytest.mark.parametrize(
    ("settings", "before"),
    [
        pytest.param({}, 1, id="adaptive-and-pausing"),
        pytest.param({"adaptive": False, "requests": 5}, 1, id="fixed-rate-and-pausing"),
        pytest.param({"pause_on_retry_after": False}, 1, id="pausing-off"),
        pytest.param({"adaptive": False}, 1, id="nothing-to-pace"),
        pytest.param({"adaptive": False, "pause_on_retry_after": False}, 0, id="nothing-at-all"),
    ],
)
async def test_a_send_costs_one_operation_before_it_and_none_after_its_success(
    twin: Callable[[object], Any],
    clock: Clock,
    settings: dict[str, Any],
    before: int,
    store: RedisState,
    redis_process: RedisProcess,
) -> None:
    ops = twin(Limiter(RateLimitSettings(enabled=True, **settings), store, KEY))
    for _ in range(3):
        ticket = await ops.acquire(clock.monotonic(), 30.0)
        assert isinstance(ticket, Ticket) and ticket.granted
        assert taken(redis_process) == before
        await ops.record(ticket, rate_limited=False, retry_after=None, now=clock.monotonic())
        assert taken(redis_process) == 0
        clock.sleep(1.0)


async def test_a_pause_is_seen_by_the_one_operation_before_a_send(
    twin: Callable[[object], Any], clock: Clock, store: RedisState, redis_process: RedisProcess
) -> None:
    ops = twin(Limiter(RateLimitSettings(enabled=True), store, KEY))
    first = await ops.acquire(clock.monotonic(), 30.0)
    await ops.record(first, rate_limited=True, retry_after=10.0, now=clock.monotonic())
    taken(redis_process)
    assert await ops.acquire(clock.monotonic(), 30.0) == Ticket(10.0, granted=False)
    assert taken(redis_process) == 1


async def test_the_climb_back_after_a_429_is_written_at_most_once_per_interval(
    twin: Callable[[object], Any], clock: Clock, store: RedisState, redis_process: RedisProcess
) -> None:
    ops = twin(Limiter(RateLimitSettings(enabled=True), store, KEY))
    for _ in range(10):  # ten a second, then a 429: a rate is learned
        sent = await ops.acquire(clock.monotonic(), 30.0)
        clock.sleep(0.1)
    await ops.record(sent, rate_limited=True, retry_after=None, now=clock.monotonic())
    clock.sleep(2.0)
    taken(redis_process)

    steps = 20
    learned = []
    for _ in range(steps):  # successes every RECOVERY_INTERVAL / 10, all on the climbing curve
        ticket = await ops.acquire(clock.monotonic(), 30.0)
        assert taken(redis_process) == 1
        clock.sleep(ticket.wait)
        await ops.record(ticket, rate_limited=False, retry_after=None, now=clock.monotonic())
        learned.append(taken(redis_process))  # the writes of the climb back
        clock.sleep(RECOVERY_INTERVAL / 10)
    assert learned[0] == 1
    assert 2 <= sum(learned) <= 1 + steps // 10 + 1  # about one write per interval, not one per success
    climbed = await ops.acquire(clock.monotonic(), 30.0)
    assert climbed.rate is not None and climbed.rate.rate > 0.7 * 10 * 0.99  # still climbing from BETA x 10
