"""A Retry-After pause that begins while a paced send waits its turn holds that send too.

Found by bench/fleet.py: four processes sharing Redis sent requests inside a pause another process
had written, because a send that had reserved its turn slept through the pacing wait and went out
without looking at the pause again.
"""

from __future__ import annotations

from typing import Any

import attrs
import httpx
import pytest

import resilient_client as rc
from resilient_client.stores import state_key
from resilient_client.testing import FakeClock
from store_ops import Store

KEY = state_key("limiter", "hyper", "hyper.test")
URL = "https://hyper.test/api/clients"


def one_a_second() -> rc.RetryPolicy:
    default = rc.load_policy("default")
    pacing = rc.RateLimitSettings(enabled=True, requests=1, period=1.0, burst=1, adaptive=False)
    return attrs.evolve(default, rate_limit=pacing)


class Fleet:
    """One client's transport, and "another process" that writes a 5 s pause into the shared store
    the first time this one sleeps (while its second send waits its 1 s turn)."""

    def __init__(self, pause_on_retry_after: bool = True) -> None:
        self.clock = FakeClock(start=1000.0)
        self.store = rc.MemoryState()
        self.sent: list[float] = []
        policy = one_a_second()
        policy = attrs.evolve(
            policy, rate_limit=attrs.evolve(policy.rate_limit, pause_on_retry_after=pause_on_retry_after)
        )
        self.transport = rc.ResilientTransport(
            "hyper",
            policy=policy,
            state=self.store,
            transport=httpx.MockTransport(self.answer),
            clock=self.clock,
            sleep=self.sleep,
            async_sleep=self.async_sleep,
        )

    def answer(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(self.clock.now)
        return httpx.Response(200, json={"ResponseCode": 0})

    def sleep(self, seconds: float) -> None:
        if not self.clock.sleeps:
            Store(self.store).pause(KEY, 5.0, self.clock.now)  # another process got a 429, Retry-After: 5
        self.clock.sleep(seconds)

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)


@pytest.mark.parametrize(
    ("pause_on_retry_after", "sent"),
    [
        pytest.param(True, [1000.0, 1005.0], id="held-until-the-pause-ends"),
        pytest.param(False, [1000.0, 1001.0], id="pausing-off-only-paced"),
    ],
)
def test_a_pause_begun_during_a_paced_wait_holds_the_send(
    pause_on_retry_after: bool, sent: list[float]
) -> None:
    fleet = Fleet(pause_on_retry_after)
    with httpx.Client(transport=fleet.transport) as client:
        client.get(URL)
        client.get(URL)
    assert fleet.sent == sent


@pytest.mark.anyio
async def test_a_pause_begun_during_a_paced_wait_holds_the_send_async(anyio_backend: Any) -> None:
    fleet = Fleet()
    async with httpx.AsyncClient(transport=fleet.transport) as client:
        await client.get(URL)
        await client.get(URL)
    assert fleet.sent == [1000.0, 1005.0]
    assert fleet.clock.sleeps == [1.0, 4.0]  # its turn, then the rest of the pause
