"""A guarded call's keys ride with the rate limiter's admission: one store operation before the send.

With a shared store each operation is a round trip, and a journal call asked two before it was sent
(the limiter's admission, then the guard's keys). When the limiter admits the send at once, its
admission takes the guard's first hold in the same step (``limiter_admit_and_acquire``); a send
that must wait (its turn, or a pause) takes no key, and the guard takes the keys itself after the
wait, as before. Either way the key is held while the request is at the vendor and let go after.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pipeline_kit import JOURNAL, OK, URL, Caller, Vendor, policy, transport

import resilient_client as rc
from resilient_client.stores import state_key
from resilient_client.testing import FakeClock

pytestmark = pytest.mark.anyio

ACCOUNT_KEY = "guard/hyper/" + state_key("journal", "AccountNo", "A1")
#: The guard's and the limiter's operations (the breaker's and the budget's are not followed here).
WATCHED = {
    "try_acquire",
    "release",
    "limiter_admit",
    "limiter_acquire",
    "paused_for",
    "limiter_admit_and_acquire",
}


class AskedState(rc.MemoryState):
    """The in-process store, noting each guard and limiter operation asked of it (once, sync or async:
    the async twins run the sync operations)."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def __getattribute__(self, name: str) -> Any:
        found = super().__getattribute__(name)
        if name not in WATCHED:
            return found
        asked = super().__getattribute__("asked")

        def noted(*args: Any, **kwargs: Any) -> Any:
            asked.append(name)
            return found(*args, **kwargs)

        return noted


def held_by_someone(store: rc.MemoryState, now: float) -> bool:
    """Whether the account's key is held (another holder is refused), leaving it as it was and
    unnoted (the class's own methods, past AskedState's notes)."""
    if rc.MemoryState.try_acquire(store, [ACCOUNT_KEY], 1, 1.0, "peek", now):
        rc.MemoryState.release(store, [ACCOUNT_KEY], "peek", now)
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
    """A hyper transport over AskedState whose vendor notes, at each arrival, whether the account was held."""

    def __init__(self, requests: int = 100) -> None:
        self.clock = WatchingClock()
        self.store = AskedState()
        self.held_at_vendor: list[bool] = []
        self.vendor = Vendor(self.clock, script=self.answer)
        self.transport = transport(self.vendor, policy=paced(requests), state=self.store)

    def answer(self, request: httpx.Request) -> httpx.Response:
        self.held_at_vendor.append(held_by_someone(self.store, self.clock.now))
        self.store.asked.append("sent")
        return OK


async def test_a_journal_call_asks_the_store_once_before_it_is_sent(connect: Callable[[Any], Caller]) -> None:
    watched = Watched()
    client = connect(watched.transport)
    for _ in range(2):
        assert (await client.post(JOURNAL, json={"AccountNo": "A1"})).status_code == 200
    assert watched.store.asked == ["limiter_admit_and_acquire", "sent", "release"] * 2
    assert watched.held_at_vendor == [True, True]
    assert not held_by_someone(watched.store, watched.clock.now)


async def test_a_call_no_guard_covers_asks_only_the_limiter(connect: Callable[[Any], Caller]) -> None:
    watched = Watched()
    client = connect(watched.transport)
    assert (await client.get(URL)).status_code == 200
    assert (await client.post(JOURNAL, json={"Other": 1})).status_code == 200  # no key field: no hold
    assert watched.store.asked == ["limiter_admit", "sent"] * 2


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
    queued = ["limiter_admit_and_acquire", "paused_for", "try_acquire", "sent", "release"]
    assert watched.store.asked == ["limiter_admit_and_acquire", "sent", "release", *queued]
    assert watched.held_at_vendor == [True, True]


async def test_a_busy_account_is_waited_for_by_the_guard_after_the_admission(
    connect: Callable[[Any], Caller],
) -> None:
    watched = Watched()
    assert rc.MemoryState.try_acquire(watched.store, [ACCOUNT_KEY], 1, 60.0, "another-call", 1000.0)
    watched.clock.before_sleep = lambda: rc.MemoryState.release(
        watched.store, [ACCOUNT_KEY], "another-call", watched.clock.now
    )  # the other call ends during the guard's first pause
    client = connect(watched.transport)
    assert (await client.post(JOURNAL, json={"AccountNo": "A1"})).status_code == 200
    # Admitted (and counted by the limiter) but the key was busy: the guard polled, then the limiter
    # was asked whether a pause began meanwhile, as after any wait for a key.
    assert watched.store.asked == [
        "limiter_admit_and_acquire",
        "try_acquire",
        "try_acquire",
        "paused_for",
        "sent",
        "release",
    ]
    assert watched.held_at_vendor == [True]


async def test_a_paused_host_holds_the_call_without_taking_its_key(connect: Callable[[Any], Caller]) -> None:
    watched = Watched()
    watched.store.pause(state_key("limiter", "hyper", "hyper.test"), 3.0, watched.clock.now)
    held_while_waiting: list[bool] = []
    watched.clock.before_sleep = lambda: held_while_waiting.append(
        held_by_someone(watched.store, watched.clock.now)
    )
    client = connect(watched.transport)
    assert (await client.post(JOURNAL, json={"AccountNo": "A1"})).status_code == 200
    assert watched.clock.sleeps == [3.0]
    assert held_while_waiting == [False]
    assert watched.store.asked[:3] == ["limiter_admit_and_acquire", "limiter_admit_and_acquire", "sent"]
    assert watched.held_at_vendor == [True]


async def test_with_two_guards_the_first_rides_and_the_second_is_taken_after(
    connect: Callable[[Any], Caller],
) -> None:
    watched = Watched()
    shipped = watched.transport.policy
    second = rc.GuardSettings(operations=("*journal*",), key_fields=("PatientId",))
    two_guards = policy(shipped, guards={**shipped.guards, "patient": second})
    watched.transport = transport(watched.vendor, policy=two_guards, state=watched.store)
    patient_key = "guard/hyper/" + state_key("patient", "PatientId", "P9")
    at_vendor: list[bool] = []
    watched.vendor.script = lambda request: (
        at_vendor.append(not rc.MemoryState.try_acquire(watched.store, [patient_key], 1, 1.0, "peek", 0.0))
        or watched.answer(request)
    )
    client = connect(watched.transport)
    assert (await client.post(JOURNAL, json={"AccountNo": "A1", "PatientId": "P9"})).status_code == 200
    assert watched.store.asked == ["limiter_admit_and_acquire", "try_acquire", "sent", "release", "release"]
    assert watched.held_at_vendor == [True]
    assert at_vendor == [True]
    assert not held_by_someone(watched.store, watched.clock.now)
    assert rc.MemoryState.try_acquire(watched.store, [patient_key], 1, 1.0, "after", watched.clock.now)
