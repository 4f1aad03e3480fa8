"""What the limiter asks its store per send: each operation is a round trip on a shared store, so a send
costs one before it (the pause check and the reservation together) and, after a success, none while
nothing has been learned and at most one per RECOVERY_INTERVAL while the rate climbs back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from resilient_client._clock import Clock
from resilient_client._settings import RateLimitSettings
from resilient_client.stores import MemoryState
from resilient_client.strategies.limiter import RECOVERY_INTERVAL, Limiter, Ticket
from resilient_client.testing import FakeClock

pytestmark = pytest.mark.anyio

KEY = "limiter/hyper/api.hyper.test"
OPERATIONS = {"paused_for", "pause", "limiter_acquire", "limiter_admit", "limiter_state", "limiter_learn"}


class CountingState(MemoryState):
    """The in-process store, noting each limiter operation asked of it. Its async twins run the sync
    operations, so counting those counts each operation once, sync or async."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def __getattribute__(self, name: str) -> Any:
        found = super().__getattribute__(name)
        if name not in OPERATIONS:
            return found
        asked = super().__getattribute__("asked")

        def counted(*args: Any, **kwargs: Any) -> Any:
            asked.append(name)
            return found(*args, **kwargs)

        return counted

    def take(self) -> list[str]:
        asked, self.asked[:] = list(self.asked), []
        return asked


@pytest.fixture
def clock() -> Clock:
    return Clock.from_options(**FakeClock(start=5000.0).options())


@pytest.mark.parametrize(
    ("settings", "before"),
    [
        pytest.param({}, ["limiter_admit"], id="adaptive-and-pausing"),
        pytest.param({"adaptive": False, "requests": 5}, ["limiter_admit"], id="fixed-rate-and-pausing"),
        pytest.param({"pause_on_retry_after": False}, ["limiter_acquire"], id="pausing-off"),
        pytest.param({"adaptive": False}, ["paused_for"], id="nothing-to-pace"),
        pytest.param({"adaptive": False, "pause_on_retry_after": False}, [], id="nothing-at-all"),
    ],
)
async def test_a_send_costs_one_operation_before_it_and_none_after_its_success(
    twin: Callable[[object], Any], clock: Clock, settings: dict[str, Any], before: list[str]
) -> None:
    store = CountingState()
    ops = twin(Limiter(RateLimitSettings(enabled=True, **settings), store, KEY))
    for _ in range(3):
        ticket = await ops.acquire(clock.monotonic(), 30.0)
        assert isinstance(ticket, Ticket) and ticket.granted
        assert store.take() == before
        await ops.record(ticket, rate_limited=False, retry_after=None, now=clock.monotonic())
        assert store.take() == []
        clock.sleep(1.0)


async def test_a_pause_is_seen_by_the_one_operation_before_a_send(
    twin: Callable[[object], Any], clock: Clock
) -> None:
    store = CountingState()
    ops = twin(Limiter(RateLimitSettings(enabled=True), store, KEY))
    first = await ops.acquire(clock.monotonic(), 30.0)
    await ops.record(first, rate_limited=True, retry_after=10.0, now=clock.monotonic())
    store.take()
    assert await ops.acquire(clock.monotonic(), 30.0) == Ticket(10.0, granted=False)
    assert store.take() == ["limiter_admit"]


async def test_the_climb_back_after_a_429_is_written_at_most_once_per_interval(
    twin: Callable[[object], Any], clock: Clock
) -> None:
    store = CountingState()
    ops = twin(Limiter(RateLimitSettings(enabled=True), store, KEY))
    for _ in range(10):  # ten a second, then a 429: a rate is learned
        sent = await ops.acquire(clock.monotonic(), 30.0)
        clock.sleep(0.1)
    await ops.record(sent, rate_limited=True, retry_after=None, now=clock.monotonic())
    clock.sleep(2.0)
    store.take()

    steps = 20
    learned = []
    for _ in range(steps):  # successes every RECOVERY_INTERVAL / 10, all on the climbing curve
        ticket = await ops.acquire(clock.monotonic(), 30.0)
        clock.sleep(ticket.wait)
        await ops.record(ticket, rate_limited=False, retry_after=None, now=clock.monotonic())
        learned.append(store.take().count("limiter_learn"))
        clock.sleep(RECOVERY_INTERVAL / 10)
    assert learned[0] == 1
    assert 2 <= sum(learned) <= 1 + steps // 10 + 1  # about one write per interval, not one per success
    climbed = await ops.acquire(clock.monotonic(), 30.0)
    assert climbed.rate is not None and climbed.rate.rate > 0.7 * 10 * 0.99  # still climbing from BETA x 10
