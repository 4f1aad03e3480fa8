"""A Retry-After pause that begins while an attempt waits for a guarded key holds that attempt too.

Found by bench/fleet.py: the rate limiter (which checks pauses) is outside the guard, so a journal
call that passed it and then waited for its account was sent as soon as the account was free, inside
a pause another process had written meanwhile.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import resilient_client as rc
from resilient_client.stores import state_key
from resilient_client.testing import FakeClock
from store_ops import Store

PAUSE_KEY = state_key("limiter", "hyper", "hyper.test")
ACCOUNT_KEY = "guard/hyper/hyper.test/" + state_key("journal", "AccountNo", "A1")
URL = "https://hyper.test/api/journal"


class Fleet:
    """This process's transport, and another process that holds account A1 when the call starts; at
    this one's first sleep (waiting for A1), the other gets a 429 (``pause`` seconds of
    Retry-After) and lets A1 go."""

    def __init__(self, pause: float) -> None:
        self.pause = pause
        self.clock = FakeClock(start=1000.0)
        self.store = rc.MemoryState()
        self.sent: list[float] = []
        assert Store(self.store).try_acquire([ACCOUNT_KEY], 1, 60.0, "other-process", self.clock.now)
        self.transport = rc.ResilientTransport(
            "hyper",
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
            Store(self.store).pause(PAUSE_KEY, self.pause, self.clock.now)
            Store(self.store).release([ACCOUNT_KEY], "other-process", self.clock.now)
        self.clock.sleep(seconds)

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)


def test_a_pause_begun_during_a_guard_wait_holds_the_send() -> None:
    fleet = Fleet(pause=5.0)
    with httpx.Client(transport=fleet.transport) as client:
        client.post(URL, json={"AccountNo": "A1"})
    assert fleet.sent == [pytest.approx(1005.0)]
    # The account was let go while the pause lasted (another call could take it meanwhile).
    assert Store(fleet.store).try_acquire([ACCOUNT_KEY], 1, 60.0, "someone", fleet.clock.now)


def test_a_pause_past_the_deadline_after_a_guard_wait_sends_nothing() -> None:
    fleet = Fleet(pause=100.0)  # the shipped policy's total_timeout is 30 s
    with httpx.Client(transport=fleet.transport) as client, pytest.raises(rc.errors.ThrottledError) as caught:
        client.post(URL, json={"AccountNo": "A1"})
    assert fleet.sent == []
    assert "Retry-After pause would pass the deadline" in caught.value.reason


@pytest.mark.anyio
async def test_a_pause_begun_during_a_guard_wait_holds_the_send_async(anyio_backend: Any) -> None:
    fleet = Fleet(pause=5.0)
    async with httpx.AsyncClient(transport=fleet.transport) as client:
        await client.post(URL, json={"AccountNo": "A1"})
    assert fleet.sent == [pytest.approx(1005.0)]


def test_without_a_wait_for_the_key_the_pause_is_not_asked_again() -> None:
    fleet = Fleet(pause=5.0)
    Store(fleet.store).release([ACCOUNT_KEY], "other-process", fleet.clock.now)
    with httpx.Client(transport=fleet.transport) as client:
        client.post(URL, json={"AccountNo": "A1"})
    assert fleet.sent == [1000.0]
    assert fleet.clock.sleeps == []
