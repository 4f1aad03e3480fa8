"""Overload told from outage through the transport, shipped usta policy, fake clock (SPEC sections 7
and 10): random transient 503s are retried while retries succeed and the circuit stays closed; a
vendor that fails everything is refused fast, within the outage bar."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pipeline_kit import OK, Caller, Vendor, transport

import resilient_client as rc
from resilient_client.testing import FakeClock

pytestmark = pytest.mark.anyio

URL = "https://usta.test/api/items"
DOWN = httpx.Response(503, text="<html>503 Service Unavailable</html>")


class Watch(rc.Hook):
    """The breaker's moves."""

    def __init__(self) -> None:
        self.moves: list[str] = []

    def on_breaker(self, event: rc.BreakerEvent) -> None:
        self.moves.append(event.state)


def flaky(clock: FakeClock, fault_rate: float, seed: int) -> Vendor:
    chance = random.Random(seed)
    return Vendor(clock, script=lambda request: DOWN if chance.random() < fault_rate else OK)


async def calls(client: Caller, clock: FakeClock, count: int, every: float) -> tuple[int, int]:
    """``count`` GETs, one each ``every`` seconds of fake time: (succeeded, refused by the breaker)."""
    succeeded = refused = 0
    start = clock.now
    for index in range(count):
        clock.now = max(clock.now, start + index * every)
        try:
            await client.get(URL)
            succeeded += 1
        except rc.errors.CircuitOpenError:
            refused += 1
        except rc.errors.ApiError:
            pass
    return succeeded, refused


@pytest.mark.parametrize(("fault_rate", "floor"), [(0.3, 0.99), (0.5, 0.9)])
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_503s_are_retried_with_the_circuit_closed(
    connect: Callable[[Any], Caller], fault_rate: float, floor: float, seed: int
) -> None:
    clock = FakeClock()
    vendor = flaky(clock, fault_rate, seed)
    watch = Watch()
    client = connect(transport(vendor, name="usta", hooks=[watch]))
    succeeded, refused = await calls(client, clock, 400, every=0.5)
    assert watch.moves == []
    assert refused == 0
    assert succeeded / 400 >= floor


async def test_at_70_percent_retries_are_held_to_half_a_call(connect: Callable[[Any], Caller]) -> None:
    clock = FakeClock()
    vendor = flaky(clock, 0.7, 1)
    client = connect(transport(vendor, name="usta"))
    await calls(client, clock, 1000, every=0.5)
    assert vendor.sent / 1000 <= 1.5


async def test_a_total_outage_is_refused_fast_within_the_bar(connect: Callable[[Any], Caller]) -> None:
    # SPEC section 7: 2 requests a second for 10 simulated minutes, attempts per request <= 0.1 once
    # the circuit has opened; and <= 1.1 over the whole run.
    clock = FakeClock()
    vendor = Vendor(clock, DOWN)
    watch = Watch()
    client = connect(transport(vendor, name="usta", hooks=[watch]))
    await calls(client, clock, 20, every=0.5)
    assert watch.moves[:1] == ["open"]
    before = vendor.sent
    _, refused = await calls(client, clock, 1180, every=0.5)
    assert (vendor.sent - before) / 1180 <= 0.1
    assert refused >= 1150
    assert vendor.sent / 1200 <= 1.1
    # A refusal sends nothing and waits for nothing.
    sent, now = vendor.sent, clock.now
    with pytest.raises(rc.errors.CircuitOpenError):
        await client.get(URL)
    assert (vendor.sent, clock.now) == (sent, now)
