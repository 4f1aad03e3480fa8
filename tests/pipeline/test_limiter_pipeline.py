"""The rate limiter through the transport: a fixed pace, a 429's pause for every request of the host,
refusals that send nothing, the learned rate, waits that never add up, and the testing switch."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from pipeline_kit import NO_BREAKER, NO_BUDGET, OK, URL, Caller, Vendor, policy, transport

import resilient_client as rc
from resilient_client.testing import FakeClock, fault_response, no_waits

pytestmark = pytest.mark.anyio

START = FakeClock().now


def limited(base: rc.RetryPolicy | str | None = None, **rate_limit: Any) -> rc.RetryPolicy:
    """A policy whose only strategy besides retry is a rate limiter with these keys."""
    return policy(
        base,
        rate_limit=rc.RateLimitSettings(enabled=True, **rate_limit),
        breaker=NO_BREAKER,
        budget=NO_BUDGET,
    )


def one_try(base: rc.RetryPolicy) -> rc.RetryPolicy:
    return policy(base, retry={"max_attempts": 1})


def throttled(after: float | None = None) -> httpx.Response:
    return httpx.Response(429, headers={} if after is None else {"Retry-After": f"{after:g}"})


class OnRetry(rc.Hook):
    def __init__(self, callback: Callable[[rc.RetryEvent], object]) -> None:
        self.callback = callback

    def on_retry(self, call: Any, event: rc.RetryEvent) -> object:
        return self.callback(event)


# -- pacing ----------------------------------------------------------------------------------------


async def test_a_fixed_rate_paces_the_sends(connect: Callable[[Any], Caller]) -> None:
    clock = FakeClock()
    vendor = Vendor(clock)
    client = connect(transport(vendor, policy=limited(requests=2, period=1.0, burst=1, adaptive=False)))
    for _ in range(5):
        await client.get()
    assert clock.sleeps == [0.5] * 4
    assert [t - START for t in vendor.times] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])


async def test_a_burst_goes_at_once_then_the_pace_applies(connect: Callable[[Any], Caller]) -> None:
    clock = FakeClock()
    vendor = Vendor(clock)
    # The shipped hyper numbers: 20 a minute, a minute's worth at once.
    client = connect(transport(vendor, policy=limited(requests=20, period=60.0, burst=20, adaptive=False)))
    for _ in range(22):
        await client.get()
    assert clock.sleeps == pytest.approx([3.0, 3.0])
    assert vendor.times[19] == START


async def test_each_host_has_its_own_pace(connect: Callable[[Any], Caller]) -> None:
    clock = FakeClock()
    client = connect(transport(Vendor(clock), policy=limited(requests=1, period=1.0, adaptive=False)))
    await client.get("https://a.test/x")
    await client.get("https://b.test/x")
    assert clock.sleeps == []
    await client.get("https://a.test/x")
    assert clock.sleeps == [1.0]


# -- a server's Retry-After pauses the host ----------------------------------------------------------


async def test_a_429s_retry_after_pauses_a_later_call_of_the_host(connect: Callable[[Any], Caller]) -> None:
    clock = FakeClock()
    vendor = Vendor(clock, throttled(5), OK)
    client = connect(transport(vendor, policy=one_try(limited(adaptive=False))))
    with pytest.raises(rc.errors.RateLimitedError):
        await client.get()
    assert (await client.get()).status_code == 200
    assert clock.sleeps == [5.0]
    assert vendor.times == [START, START + 5.0]
    await client.get("https://other.test/x")  # another host of the vendor is not paused
    assert clock.sleeps == [5.0]


def test_a_429s_retry_after_pauses_a_concurrent_call_of_the_host() -> None:
    clock = FakeClock()
    second: list[httpx.Response] = []
    shared: list[rc.ResilientTransport] = []

    def another_call_meanwhile(event: rc.RetryEvent) -> None:
        # The first call is about to wait out its Retry-After: a second one starts in another thread.
        def call() -> None:
            with httpx.Client(transport=shared[0]) as client:
                second.append(client.get(URL))

        thread = threading.Thread(target=call)
        thread.start()
        thread.join(10)

    vendor = Vendor(clock, throttled(5), OK)
    shared.append(transport(vendor, policy=limited(adaptive=False), hooks=[OnRetry(another_call_meanwhile)]))
    with httpx.Client(transport=shared[0]) as client:
        assert client.get(URL).status_code == 200
    assert [r.status_code for r in second] == [200]
    # Nothing reached the server during the pause: the second call waited for its end.
    assert vendor.times[0] == START
    assert vendor.sent == 3
    assert min(vendor.times[1:]) >= START + 5.0


async def test_an_async_429s_retry_after_pauses_a_concurrent_task() -> None:
    clock = FakeClock()
    second: list[httpx.Response] = []
    vendor = Vendor(clock, throttled(5), OK)
    async with anyio.create_task_group() as group:

        async def another_task_meanwhile(event: rc.RetryEvent) -> None:
            done = anyio.Event()

            async def call() -> None:
                second.append(await client.get(URL))
                done.set()

            group.start_soon(call)
            await done.wait()

        resilient = transport(vendor, policy=limited(adaptive=False), hooks=[OnRetry(another_task_meanwhile)])
        async with httpx.AsyncClient(transport=resilient) as client:
            assert (await client.get(URL)).status_code == 200
    assert [r.status_code for r in second] == [200]
    assert vendor.sent == 3
    assert min(vendor.times[1:]) >= START + 5.0


@pytest.mark.parametrize(
    ("name", "answer"),
    [
        pytest.param("hyper", throttled(5), id="gateway-429"),
        pytest.param(
            "medable", fault_response("medable", "kThrottled", retry_after=5), id="medable-kThrottled"
        ),
    ],
)
async def test_the_retrys_own_wait_and_the_pause_do_not_add_up(
    connect: Callable[[Any], Caller], name: str, answer: httpx.Response
) -> None:
    clock = FakeClock()
    vendor = Vendor(clock, answer, OK)
    # A fixed pace and the learned rate on, as the shipped hyper policy has them.
    client = connect(
        transport(vendor, name=name, policy=limited(requests=1, period=1.0, burst=1, adaptive=True))
    )
    assert (await client.post(json={})).extensions[rc.ATTEMPTS_EXTENSION] == 2
    assert sum(clock.sleeps) == 5.0
    assert vendor.times == [START, START + 5.0]


async def test_a_pause_past_the_deadline_refuses_at_once_sending_nothing(
    connect: Callable[[Any], Caller],
) -> None:
    clock = FakeClock()
    vendor = Vendor(clock, throttled(50))
    client = connect(transport(vendor, policy=limited(adaptive=False)))
    with pytest.raises(rc.errors.RateLimitedError) as first:
        await client.get()  # 50 s is more than the 30 s deadline: not retried
    assert first.value.retry_after == 50.0
    with pytest.raises(rc.errors.ThrottledError) as caught:
        await client.get()
    assert caught.value.retry_after == 50.0
    assert "Retry-After" in caught.value.reason
    assert isinstance(caught.value, httpx.HTTPError)
    assert vendor.sent == 1
    assert clock.sleeps == []


@pytest.mark.parametrize(
    "retry_after",
    [
        pytest.param("3601", id="an-hour"),
        pytest.param("1e400", id="overflows-to-inf"),
        pytest.param("inf", id="inf"),
        pytest.param("Fri, 31 Dec 9999 23:59:59 GMT", id="year-9999"),
    ],
)
async def test_a_pause_never_outlasts_retry_max_retry_after(
    connect: Callable[[Any], Caller], retry_after: str
) -> None:
    clock = FakeClock()
    vendor = Vendor(clock, httpx.Response(429, headers={"Retry-After": retry_after}), OK)
    capped = policy(limited(adaptive=False), retry={"max_retry_after": 20.0})
    client = connect(transport(vendor, policy=capped))
    with pytest.raises(rc.errors.RateLimitedError) as first:
        await client.get()  # longer than the cap: raised at once, not waited for
    assert first.value.retry_after is not None and first.value.retry_after > 20.0
    assert clock.sleeps == []
    # The endpoint is paused for the cap at most: a call after it is sent, whatever the server said.
    assert (await client.get()).status_code == 200
    assert clock.sleeps == [pytest.approx(20.0)]
    assert vendor.sent == 2


async def test_limiter_clear_ends_the_pause_of_every_host_the_transport_called(
    connect: Callable[[Any], Caller],
) -> None:
    clock = FakeClock()
    vendor = Vendor(clock, throttled(25), OK)
    resilient = transport(vendor, policy=one_try(limited(adaptive=False)))
    client = connect(resilient)
    with pytest.raises(rc.errors.RateLimitedError):
        await client.get()  # pauses the host for 25 s
    if client.asynchronous:
        await resilient.limiter.aclear()
    else:
        resilient.limiter.clear()
    assert (await client.get()).status_code == 200  # sent at once: no wait for the pause
    assert clock.sleeps == []
    assert vendor.times == [START, START]


async def test_a_pace_past_the_deadline_refuses_at_once_sending_nothing(
    connect: Callable[[Any], Caller],
) -> None:
    clock = FakeClock()
    vendor = Vendor(clock)
    client = connect(transport(vendor, policy=limited(requests=1, period=60.0, adaptive=False)))
    await client.get()
    with pytest.raises(rc.errors.ThrottledError) as caught:
        await client.get()
    assert caught.value.retry_after == pytest.approx(60.0)
    assert vendor.sent == 1
    assert clock.sleeps == []
    # The refused call reserved nothing: a minute later the next call goes at once.
    clock.sleep(60.0)
    await client.get()
    assert clock.sleeps == [60.0]


# -- the learned rate ---------------------------------------------------------------------------------


async def test_the_learned_rate_drops_on_a_429_and_climbs_back(connect: Callable[[Any], Caller]) -> None:
    clock = FakeClock()
    answers = iter([OK] * 10 + [throttled()])
    vendor = Vendor(clock, script=lambda request: next(answers, OK))
    client = connect(transport(vendor, name="medable", policy=one_try(limited(adaptive=True))))
    for _ in range(10):
        await client.get()
    assert clock.sleeps == []  # nothing learned yet: no pace
    with pytest.raises(rc.errors.RateLimitedError):
        await client.get()
    for _ in range(4):
        await client.get()
    # 11 sends in the last second when the 429 came: the rate drops to 0.7 of that (the first
    # send after it takes the one token of the bucket), and each success lets it climb.
    assert len(clock.sleeps) == 3
    assert clock.sleeps[0] == pytest.approx(1 / (0.7 * 11))
    assert clock.sleeps == sorted(clock.sleeps, reverse=True)
    assert clock.sleeps[-1] > 1 / 11
    clock.sleep(10.0)
    clock.sleeps.clear()
    for _ in range(4):
        await client.get()
    # Ten seconds later it is back at the rate it was throttled at (not above: the key sends little).
    assert clock.sleeps[1:] == pytest.approx([1 / 11] * 2)


# -- the testing switch --------------------------------------------------------------------------------


async def test_the_testing_switch_skips_the_limiters_waits(connect: Callable[[Any], Caller]) -> None:
    clock = FakeClock()
    vendor = Vendor(clock, throttled(5), OK)
    client = connect(transport(vendor, policy=limited(requests=1, period=1.0, adaptive=False)))
    with no_waits():
        for _ in range(5):
            await client.get()
    assert clock.sleeps == []
    assert vendor.sent == 6


async def test_under_the_testing_switch_a_busy_limiter_never_refuses(
    connect: Callable[[Any], Caller],
) -> None:
    # A user's test calling a hyper client 100 times: the shipped 20-a-minute pace must not make
    # the 31st call wait past the deadline (the waits are off) and refuse it.
    clock = FakeClock()
    vendor = Vendor(clock)
    client = connect(transport(vendor, policy=policy("hyper")))
    with no_waits():
        for _ in range(100):
            await client.get()
    assert vendor.sent == 100
    assert clock.sleeps == []


async def test_a_429_holds_the_next_call_of_another_transport_sending_on_spares(
    connect: Callable[[Any], Caller],
) -> None:
    clock = FakeClock()
    store = rc.MemoryState()
    adaptive = one_try(limited())
    calm = Vendor(clock, OK)
    other = connect(transport(calm, policy=adaptive, state=store))
    for _ in range(4):
        await other.get()
    throttled = Vendor(clock, httpx.Response(429, headers={"Retry-After": "5"}))
    first = connect(transport(throttled, policy=adaptive, state=store))
    with pytest.raises(rc.errors.RateLimitedError):
        await first.get()
    assert (await other.get(URL)).status_code == 200
    assert clock.sleeps == [5.0]  # the other transport waited the pause out
    assert calm.times[-1] == calm.times[0] + 5.0
