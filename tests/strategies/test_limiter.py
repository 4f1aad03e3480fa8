"""The rate limiter: fixed pace, Retry-After pauses for the whole host, the learned (adaptive) rate,
and never a wait past the deadline."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from resilient_client._clock import Clock
from resilient_client._settings import RateLimitSettings
from resilient_client.stores import MemoryState, RateTicket
from resilient_client.strategies.limiter import (
    BETA,
    MIN_RATE,
    SCALE,
    Limiter,
    Throttled,
    Ticket,
    lowered,
    recovered,
)
from resilient_client.testing import FakeClock

pytestmark = pytest.mark.anyio

KEY = "limiter/hyper/api.hyper.test"


def make(**settings: Any) -> Limiter:
    return Limiter(RateLimitSettings(enabled=True, **settings), MemoryState(), KEY)


@pytest.fixture
def clock() -> Clock:
    return Clock.from_options(**FakeClock(start=5000.0).options())


async def waits(ops: Any, clock: Clock, count: int, time_left: float = 30.0) -> list[float]:
    tickets = [await ops.acquire(clock.monotonic(), time_left) for _ in range(count)]
    assert all(isinstance(t, Ticket) and t.granted for t in tickets), tickets
    return [t.wait for t in tickets]


def ticket(rate: float = 0.0, max_rate: float = 0.0, since: float = 0.0, sent: float = 0.0) -> RateTicket:
    return RateTicket(wait=0.0, version=1, rate=rate, max_rate=max_rate, since_throttle=since, sent_rate=sent)


# -- fixed pace and deadline --------------------------------------------------------------------------


async def test_with_nothing_to_pace_every_send_goes_at_once(
    twin: Callable[[object], Any], clock: Clock
) -> None:
    ops = twin(make(adaptive=False, pause_on_retry_after=False))
    assert await waits(ops, clock, 50) == [0.0] * 50


async def test_a_fixed_rate_spaces_sends_after_the_burst(twin: Callable[[object], Any], clock: Clock) -> None:
    ops = twin(make(requests=20, period=60.0, burst=2, adaptive=False))
    assert await waits(ops, clock, 4, time_left=60.0) == pytest.approx([0.0, 0.0, 3.0, 6.0])


async def test_a_wait_past_the_deadline_is_refused_at_once(
    twin: Callable[[object], Any], clock: Clock
) -> None:
    ops = twin(make(requests=1, period=2.0, adaptive=False))
    assert await waits(ops, clock, 1) == [0.0]
    refused = await ops.acquire(clock.monotonic(), 1.5)
    assert refused == Throttled(2.0)
    assert refused.reason == "rate limit wait would pass the deadline"
    assert await waits(ops, clock, 1, time_left=2.0) == [2.0]  # the refusal queued nothing


# -- Retry-After pauses ----------------------------------------------------------------------------


async def test_a_429_with_retry_after_pauses_every_request_of_the_host(
    twin: Callable[[object], Any], clock: Clock
) -> None:
    limiter = make(adaptive=False)
    ops = twin(limiter)
    first = await ops.acquire(clock.monotonic(), 30.0)
    await ops.record(first, rate_limited=True, retry_after=10.0, now=clock.monotonic())
    clock.sleep(1.0)
    other = await ops.acquire(clock.monotonic(), 30.0)  # another request of the same host
    assert other == Ticket(pytest.approx(9.0), granted=False)
    refused = await ops.acquire(clock.monotonic(), 5.0)
    assert refused == Throttled(pytest.approx(9.0), "the server's Retry-After pause would pass the deadline")
    clock.sleep(other.wait)
    assert await waits(ops, clock, 1) == [0.0]


@pytest.mark.parametrize(
    ("settings", "rate_limited", "retry_after"),
    [
        pytest.param({"pause_on_retry_after": False}, True, 10.0, id="pausing-turned-off"),
        pytest.param({}, False, 10.0, id="retry-after-on-another-fault"),
        pytest.param({}, True, 0.0, id="retry-after-zero"),
        pytest.param({}, True, -5.0, id="retry-after-negative"),
    ],
)
async def test_no_pause_without_a_429_or_with_pausing_off(
    twin: Callable[[object], Any],
    clock: Clock,
    settings: dict[str, Any],
    rate_limited: bool,
    retry_after: float,
) -> None:
    ops = twin(make(adaptive=False, **settings))
    first = await ops.acquire(clock.monotonic(), 30.0)
    await ops.record(first, rate_limited=rate_limited, retry_after=retry_after, now=clock.monotonic())
    assert await waits(ops, clock, 1) == [0.0]


# -- the learned rate -------------------------------------------------------------------------------


async def burst_of(ops: Any, clock: Clock, count: int) -> list[Ticket]:
    """``count`` sends spread evenly over one second (so the store measures ``count`` per second)."""
    tickets = []
    for _ in range(count):
        tickets.append(await ops.acquire(clock.monotonic(), 30.0))
        clock.sleep(1.0 / count)
    return tickets


async def test_a_429_lowers_the_rate_to_beta_of_the_rate_sent(
    twin: Callable[[object], Any], clock: Clock
) -> None:
    ops = twin(make())
    assert await waits(ops, clock, 20) == [0.0] * 20  # nothing learned yet: no pacing
    clock.sleep(1.0)
    sent = await burst_of(ops, clock, 10)
    await ops.record(sent[-1], rate_limited=True, retry_after=None, now=clock.monotonic())
    paced = await waits(ops, clock, 3)
    rate = BETA * 10  # 10 sent in the last second when the 429 came
    assert paced == pytest.approx([0.0, 1 / rate, 2 / rate])


async def test_many_429s_answering_the_same_rate_lower_it_once(
    twin: Callable[[object], Any], clock: Clock
) -> None:
    ops = twin(make())
    sent = await burst_of(ops, clock, 32)
    for each in sent:  # 32 sends in flight together, all answered 429
        await ops.record(each, rate_limited=True, retry_after=None, now=clock.monotonic())
    after = await ops.acquire(clock.monotonic(), 30.0)
    assert after.rate.rate == pytest.approx(BETA * 32)  # not BETA ** 32 times it


async def test_successes_after_a_429_raise_the_rate_along_the_cubic_curve(
    twin: Callable[[object], Any], clock: Clock
) -> None:
    ops = twin(make())
    sent = await burst_of(ops, clock, 10)
    await ops.record(sent[-1], rate_limited=True, retry_after=None, now=clock.monotonic())
    low = (await ops.acquire(clock.monotonic(), 30.0)).rate.rate
    clock.sleep(3.0)
    for _ in range(3):
        answered = await ops.acquire(clock.monotonic(), 30.0)
        clock.sleep(answered.wait)
        await ops.record(answered, rate_limited=False, retry_after=None, now=clock.monotonic())
    assert (await ops.acquire(clock.monotonic(), 30.0)).rate.rate > low


async def test_a_fixed_rate_stays_the_ceiling_of_the_learned_one(
    twin: Callable[[object], Any], clock: Clock
) -> None:
    ops = twin(make(requests=4, period=1.0, burst=1))
    sent = await burst_of(ops, clock, 4)
    await ops.record(sent[-1], rate_limited=True, retry_after=None, now=clock.monotonic())
    clock.sleep(1.0)
    assert await waits(ops, clock, 2) == pytest.approx([0.0, 1 / (BETA * 4)])


# -- the learned-rate arithmetic (botocore's CubicCalculator) ------------------------------------------


def test_lowered_takes_the_rate_sent_or_the_learned_one_if_lower() -> None:
    assert lowered(ticket(sent=10.0)) == (pytest.approx(7.0), 10.0)
    assert lowered(ticket(rate=4.0, max_rate=9.0, sent=10.0)) == (pytest.approx(2.8), 4.0)
    assert lowered(ticket(sent=0.1)) == (MIN_RATE, MIN_RATE)


@pytest.mark.parametrize("since", [0.0, 0.5, 1.0, 1.9574, 3.0, 5.0])
def test_recovered_follows_botocores_cubic_curve(since: float) -> None:
    # botocore: CubicCalculator(10, 0).error_received(10, 0) == 7; success_received(t) below.
    zero_point = (10 * (1 - BETA) / SCALE) ** (1 / 3)
    expected = SCALE * (since - zero_point) ** 3 + 10
    assert recovered(ticket(rate=7.0, max_rate=10.0, since=since, sent=100.0)) == pytest.approx(expected)


def test_recovered_starts_at_beta_of_max_rate_and_is_back_at_it_at_the_zero_point() -> None:
    zero_point = math.cbrt(10 * (1 - BETA) / SCALE)
    assert recovered(ticket(max_rate=10.0, since=0.0, sent=100.0)) == pytest.approx(7.0)
    assert recovered(ticket(max_rate=10.0, since=zero_point, sent=100.0)) == pytest.approx(10.0)


def test_recovered_is_capped_at_twice_the_rate_sent_but_not_below_max_rate() -> None:
    assert recovered(ticket(max_rate=10.0, since=60.0, sent=8.0)) == 16.0
    assert recovered(ticket(max_rate=10.0, since=60.0, sent=1.0)) == 10.0


def test_repr_names_the_key() -> None:
    assert repr(make()) == f"Limiter(key={KEY!r})"
