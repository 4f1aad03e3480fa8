"""The retry loop, through the sync shell and the async one on asyncio and trio: it waits what each
decision says through the call's clock, makes the attempts the policy allows, tells the hooks of each
retry before its wait (an async hook awaited first), ends with the vendor's last answer when the
budget refuses a retry, stops at the deadline, lets an error that is not the vendor's answer through
as itself, and keeps each call's retries its own across threads, tasks and successive calls."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from pipeline_kit import NO_BREAKER, NO_BUDGET, OK, URL, Caller, Recorder, Vendor, policy, transport

import resilient_client as rc
from resilient_client.testing import FakeClock

pytestmark = pytest.mark.anyio

DOWN = httpx.Response(503)
#: The jitter's draw: the backoff before retry n is 0.5 * 2 ** (n - 1) s, halved.
HALF = 0.5


def retrying(vendor: Vendor, **kwargs: Any) -> rc.ResilientTransport:
    """The default policy, breaker and budget off (a test turns one on by giving its table)."""
    tables = {"breaker": NO_BREAKER, "budget": NO_BUDGET, **kwargs.pop("tables", {})}
    return transport(vendor, policy=policy(**tables), random=lambda: HALF, **kwargs)


def arrivals(vendor: Vendor) -> list[float]:
    """The fake time between one request's arrival at the vendor and the next."""
    return [later - earlier for earlier, later in zip(vendor.times, vendor.times[1:], strict=False)]


async def test_each_retry_waits_its_decided_wait_and_the_hooks_hear_that_wait(
    connect: Callable[[Any], Caller],
) -> None:
    clock = FakeClock()
    vendor = Vendor(clock, DOWN, DOWN, httpx.Response(503, headers={"Retry-After": "7"}), OK)
    events: list[rc.RetryEvent] = []
    client = connect(retrying(vendor, on_retry=events.append))
    response = await client.get()
    assert response.status_code == 200
    assert response.extensions[rc.ATTEMPTS_EXTENSION] == vendor.sent == 4
    # Two jittered backoffs, then the server's Retry-After, exactly.
    assert clock.sleeps == [0.25, 0.5, 7.0]
    assert [(e.attempt, e.wait, e.status) for e in events] == [(1, 0.25, 503), (2, 0.5, 503), (3, 7.0, 503)]
    assert arrivals(vendor) == clock.sleeps  # each retry was sent once its wait ended, not before


async def test_a_vendor_that_stays_down_gets_the_policys_attempts_and_its_last_error(
    connect: Callable[[Any], Caller],
) -> None:
    clock = FakeClock()
    vendor = Vendor(clock, DOWN)
    events: list[rc.RetryEvent] = []
    client = connect(retrying(vendor, on_retry=events.append))
    with pytest.raises(rc.errors.ServiceUnavailableError) as caught:
        await client.get()
    assert caught.value.attempts == vendor.sent == 4  # the default: 4 attempts, the first included
    assert [e.attempt for e in events] == [1, 2, 3]
    assert clock.sleeps == [0.25, 0.5, 1.0]


@pytest.mark.parametrize("attempts", [1, 2, 6])
async def test_max_attempts_bounds_the_attempts(connect: Callable[[Any], Caller], attempts: int) -> None:
    vendor = Vendor(FakeClock(), DOWN)
    client = connect(retrying(vendor, tables={"retry": {"max_attempts": attempts}}))
    with pytest.raises(rc.errors.ServiceUnavailableError) as caught:
        await client.get()
    assert caught.value.attempts == vendor.sent == attempts
    assert len(vendor.clock.sleeps) == attempts - 1


async def test_the_testing_switch_turns_the_waits_off_not_the_retries(
    connect: Callable[[Any], Caller],
) -> None:
    was = rc.is_testing()
    rc.set_testing(True)
    try:
        clock = FakeClock()
        vendor = Vendor(clock, DOWN, httpx.Response(503, headers={"Retry-After": "7"}), OK)
        events: list[rc.RetryEvent] = []
        client = connect(retrying(vendor, on_retry=events.append))
        response = await client.get()
    finally:
        rc.set_testing(was)
    assert response.extensions[rc.ATTEMPTS_EXTENSION] == vendor.sent == 3
    assert clock.sleeps == []
    assert [e.wait for e in events] == [0.25, 7.0]  # what the policy decided, still told


async def test_a_retry_the_budget_refuses_ends_with_the_vendors_last_answer(
    connect: Callable[[Any], Caller],
) -> None:
    clock = FakeClock()
    vendor = Vendor(clock, DOWN)
    recorder = Recorder()
    # One token to start with, and next to none earned: the first retry takes it, the second is refused.
    budget = rc.BudgetSettings(ratio=0.01, burst=1.0)
    client = connect(retrying(vendor, tables={"budget": budget}, hooks=[recorder]))
    with pytest.raises(rc.errors.ServiceUnavailableError) as caught:
        await client.get()
    error = caught.value
    assert not isinstance(error, rc.RejectedError)
    assert error.reason == "not retried: the retry budget is spent"
    assert error.response is not None and error.response.status_code == 503
    assert error.attempts == vendor.sent == 2
    assert recorder.of("retry") == [(1,)]  # the refused retry was never announced...
    assert recorder.of("rejection") == [(3, "budget")]  # ...but its refusal was
    assert clock.sleeps == [0.25]


async def test_no_attempt_starts_once_the_deadline_passed_during_the_wait(
    connect: Callable[[Any], Caller],
) -> None:
    clock = FakeClock()
    vendor = Vendor(clock, DOWN)

    def slow_hook(event: rc.RetryEvent) -> None:
        clock.now += 60.0  # past the 30 s deadline

    client = connect(retrying(vendor, on_retry=slow_hook))
    with pytest.raises(rc.errors.ServiceUnavailableError) as caught:
        await client.get()
    assert caught.value.attempts == vendor.sent == 1
    assert caught.value.reason == "the total deadline passed before attempt 2"


async def test_an_error_a_retry_hook_raises_is_logged_once_and_the_call_goes_on(
    connect: Callable[[Any], Caller], caplog: pytest.LogCaptureFixture
) -> None:
    vendor = Vendor(FakeClock(), DOWN, OK, DOWN, OK)

    def failing_hook(event: rc.RetryEvent) -> None:
        raise LookupError("the hook's own bug")

    client = connect(retrying(vendor, on_retry=failing_hook))
    with caplog.at_level(logging.WARNING, logger="resilient_client"):
        assert (await client.get()).status_code == 200
        assert (await client.get()).status_code == 200
    assert vendor.sent == 4
    failures = [r.getMessage() for r in caplog.records if "raised LookupError" in r.getMessage()]
    assert len(failures) == 1  # once per hook and event kind, not once per call
    assert "failing_hook raised LookupError" in failures[0]
    assert "the hook's own bug" not in failures[0]  # a hook's message may quote a secret


async def test_an_error_that_is_no_vendor_answer_in_a_retry_is_raised_as_itself(
    connect: Callable[[Any], Caller],
) -> None:
    vendor = Vendor(FakeClock(), DOWN, RuntimeError("the inner transport's own bug"))
    client = connect(retrying(vendor))
    with pytest.raises(RuntimeError, match="the inner transport's own bug"):
        await client.get()
    assert vendor.sent == 2


async def test_an_async_hook_is_awaited_before_the_wait_on_either_event_loop() -> None:
    clock = FakeClock()
    happened: list[tuple[str, float]] = []

    async def hook(event: rc.RetryEvent) -> None:
        await anyio.sleep(0)  # the running loop's own sleep: asyncio's or trio's
        happened.append(("hook", event.wait))

    async def sleep(seconds: float) -> None:
        await anyio.sleep(0)
        happened.append(("sleep", seconds))
        clock.sleep(seconds)

    vendor = Vendor(clock, DOWN, httpx.Response(503, headers={"Retry-After": "3"}), OK)
    resilient = rc.ResilientTransport(
        "hyper",
        transport=httpx.MockTransport(vendor),
        policy=policy(breaker=NO_BREAKER, budget=NO_BUDGET),
        on_retry=hook,
        clock=clock,
        async_sleep=sleep,
        random=lambda: HALF,
    )
    async with httpx.AsyncClient(transport=resilient) as client:
        response = await client.get(URL)
    assert response.extensions[rc.ATTEMPTS_EXTENSION] == 3
    assert happened == [("hook", 0.25), ("sleep", 0.25), ("hook", 3.0), ("sleep", 3.0)]
    assert arrivals(vendor) == [0.25, 3.0]


def _three_calls() -> Vendor:
    """503, 503, 200 | 503, 200 | 503, 503, 200: three calls of 3, 2 and 3 attempts, in turn."""
    answers = iter([DOWN, DOWN, OK, DOWN, OK, DOWN, DOWN, OK])
    return Vendor(FakeClock(), script=lambda request: next(answers))


async def test_successive_calls_count_their_attempts_apart(connect: Callable[[Any], Caller]) -> None:
    vendor = _three_calls()
    events: list[rc.RetryEvent] = []
    client = connect(retrying(vendor, on_retry=events.append))
    attempts = [(await client.get(f"{URL}/{i}")).extensions[rc.ATTEMPTS_EXTENSION] for i in range(3)]
    assert attempts == [3, 2, 3]
    assert [(e.attempt, e.url.rpartition("/")[2]) for e in events] == [
        (1, "0"),
        (2, "0"),
        (1, "1"),
        (1, "2"),
        (2, "2"),
    ]


# -- concurrent calls -------------------------------------------------------------------------------

CALLS = 16


def fails_once_each() -> Vendor:
    """Answers 503 to the first request of each call (told apart by its path), 200 after."""
    seen: set[str] = set()
    lock = threading.Lock()

    def script(request: httpx.Request) -> httpx.Response:
        with lock:
            first = request.url.path not in seen
            seen.add(request.url.path)
        return DOWN if first else OK

    return Vendor(FakeClock(), script=script)


def test_calls_in_threads_retry_each_on_their_own() -> None:
    events: list[rc.RetryEvent] = []
    attempts: dict[int, int] = {}
    with httpx.Client(transport=retrying(fails_once_each(), on_retry=events.append)) as client:

        def call(index: int) -> None:
            response = client.get(f"{URL}/{index}")
            attempts[index] = response.extensions[rc.ATTEMPTS_EXTENSION]

        threads = [threading.Thread(target=call, args=(i,)) for i in range(CALLS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert attempts == dict.fromkeys(range(CALLS), 2)
    assert sorted(e.url for e in events) == sorted(f"{URL}/{i}" for i in range(CALLS))
    assert all(e.attempt == 1 and e.status == 503 for e in events)


async def test_calls_in_tasks_retry_each_on_their_own() -> None:
    events: list[rc.RetryEvent] = []

    async def hook(event: rc.RetryEvent) -> None:
        await anyio.lowlevel.checkpoint()  # other calls step their loops meanwhile
        events.append(event)

    attempts: dict[int, int] = {}
    async with httpx.AsyncClient(transport=retrying(fails_once_each(), on_retry=hook)) as client:

        async def call(index: int) -> None:
            response = await client.get(f"{URL}/{index}")
            attempts[index] = response.extensions[rc.ATTEMPTS_EXTENSION]

        async with anyio.create_task_group() as group:
            for index in range(CALLS):
                group.start_soon(call, index)
    assert attempts == dict.fromkeys(range(CALLS), 2)
    assert sorted(e.url for e in events) == sorted(f"{URL}/{i}" for i in range(CALLS))
    assert all(e.attempt == 1 and e.status == 503 for e in events)
