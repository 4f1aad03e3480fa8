"""Hooks cannot hurt a call: one that raises is logged once (per hook and event kind) while the call
and every strategy's state go on as if it had not; one whose methods take the wrong arguments is
refused when it is installed; and the waits of the rate limiter and the guards are events
(``on_wait``) and DEBUG log lines."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pipeline_kit import JOURNAL, NO_BREAKER, NO_BUDGET, OK, URL, Caller, Vendor, policy, transport
from test_guard_pipeline import guarded, journal_keys

import resilient_client as rc
from resilient_client.testing import FakeClock
from store_ops import Store

pytestmark = pytest.mark.anyio

DOWN = httpx.Response(503)
BREAK = 10.0
SMALL = rc.BreakerSettings(minimum_throughput=4, failure_ratio=0.5, break_duration=BREAK)
#: One request a second, no learned rate: the second call of a second waits for its turn.
ONE_A_SECOND = rc.RateLimitSettings(enabled=True, requests=1, period=1.0, burst=1, adaptive=False)


class Raising(rc.Hook):
    """Raises from every hook method; counts how often each was called."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def _fail(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        raise RuntimeError(f"{name} broke (sekrit-token)")

    def on_call_start(self, call: rc.Call) -> None:
        self._fail("on_call_start")

    def on_attempt_start(self, call: rc.Call, number: int) -> None:
        self._fail("on_attempt_start")

    def on_attempt(self, call: rc.Call, event: rc.AttemptEvent) -> None:
        self._fail("on_attempt")

    def on_retry(self, call: rc.Call, event: rc.RetryEvent) -> None:
        self._fail("on_retry")

    def on_rejection(self, call: rc.Call, event: rc.RejectionEvent) -> None:
        self._fail("on_rejection")

    def on_breaker(self, event: rc.BreakerEvent) -> None:
        self._fail(f"on_breaker:{event.state}")

    def on_wait(self, call: rc.Call, event: rc.WaitEvent) -> None:
        self._fail("on_wait")

    def on_call_end(self, call: rc.Call, error: BaseException | None) -> None:
        self._fail("on_call_end")


def failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "raised RuntimeError" in r.getMessage()]


async def test_a_hook_raising_on_every_event_breaks_no_call_and_is_logged_once_per_kind(
    connect: Callable[[Any], Caller], caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    vendor = Vendor(clock, DOWN, OK)
    hook = Raising()
    client = connect(transport(vendor, policy=policy(budget=NO_BUDGET), hooks=[hook], random=lambda: 0.5))
    with caplog.at_level(logging.WARNING, logger="resilient_client"):
        for _ in range(3):
            assert (await client.get(URL)).status_code == 200
    assert vendor.sent == 4  # a retry, then successes: every attempt as without the hook
    assert hook.calls["on_call_start"] == hook.calls["on_call_end"] == 3
    assert hook.calls["on_retry"] == 1
    logged = failures(caplog)
    kinds = ["on_call_start", "on_attempt_start", "on_attempt", "on_retry", "on_call_end"]
    assert len(logged) == len(kinds)
    for kind in kinds:
        assert sum(f"Raising.{kind} raised" in line for line in logged) == 1, kind
    assert not any("sekrit" in line for line in logged)


async def test_a_hook_raising_on_half_open_leaves_the_probe_and_the_circuit_alone(
    connect: Callable[[Any], Caller], caplog: pytest.LogCaptureFixture
) -> None:
    # It used to lock the circuit for the call's time left plus 5 s: the probe's permit was lost.
    clock = FakeClock()
    vendor = Vendor(clock, DOWN, DOWN, DOWN, DOWN, OK)
    hook = Raising()
    resilient = transport(
        vendor, policy=policy(breaker=SMALL, budget=NO_BUDGET, retry={"max_attempts": 1}), hooks=[hook]
    )
    client = connect(resilient)
    with caplog.at_level(logging.WARNING, logger="resilient_client"):
        for _ in range(4):
            with pytest.raises(rc.errors.ServiceUnavailableError):
                await client.get(URL)
        assert resilient.breaker.state == "open"
        clock.sleep(BREAK)
        assert (await client.get(URL)).status_code == 200  # the probe went, and closed the circuit
    assert resilient.breaker.state == "closed"
    assert hook.calls["on_breaker:half_open"] == 1 and hook.calls["on_breaker:closed"] == 1
    assert (await client.get(URL)).status_code == 200
    assert vendor.sent == 6


def test_an_async_retry_hook_on_a_sync_client_is_logged_and_the_call_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def async_hook(event: rc.RetryEvent) -> None:
        raise AssertionError("never awaited")

    vendor = Vendor(FakeClock(), DOWN, OK)
    resilient = transport(vendor, policy=policy(budget=NO_BUDGET), on_retry=async_hook)
    with caplog.at_level(logging.WARNING, logger="resilient_client"), httpx.Client(transport=resilient) as c:
        assert c.get(URL).status_code == 200
    assert vendor.sent == 2
    assert any("async_hook raised TypeError" in r.getMessage() for r in caplog.records)


async def test_an_async_retry_hook_that_raises_when_awaited_breaks_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def async_hook(event: rc.RetryEvent) -> None:
        raise LookupError("awaited and broken")

    vendor = Vendor(FakeClock(), DOWN, OK)
    resilient = transport(vendor, policy=policy(budget=NO_BUDGET), on_retry=async_hook)
    with caplog.at_level(logging.WARNING, logger="resilient_client"):
        async with httpx.AsyncClient(transport=resilient) as c:
            assert (await c.get(URL)).status_code == 200
    assert vendor.sent == 2
    assert any("async_hook raised LookupError" in r.getMessage() for r in caplog.records)


# -- signatures checked when a hook is installed -----------------------------------------------------


class OneArgumentRejection(rc.Hook):
    def on_rejection(self, event: rc.RejectionEvent) -> None:  # type: ignore[override]
        pass


class NoArgumentBreaker(rc.Hook):
    def on_breaker(self) -> None:  # type: ignore[override]
        pass


class FlexibleHook(rc.Hook):
    """Signatures that accept the pipeline's arguments in other shapes are fine."""

    def on_rejection(self, *args: Any) -> None:
        pass

    def on_attempt(self, call: rc.Call, event: rc.AttemptEvent, extra: int = 0) -> None:
        pass


def test_a_hook_with_a_wrong_signature_is_refused_when_the_transport_is_built() -> None:
    with pytest.raises(
        TypeError, match=r"OneArgumentRejection\.on_rejection must take \(self, call, event\)"
    ):
        rc.ResilientTransport(
            "hyper", transport=httpx.MockTransport(lambda r: OK), hooks=[OneArgumentRejection()]
        )
    with pytest.raises(TypeError, match=r"NoArgumentBreaker\.on_breaker must take \(self, event\)"):
        rc.ResilientTransport(
            "hyper", transport=httpx.MockTransport(lambda r: OK), hooks=[NoArgumentBreaker()]
        )
    rc.ResilientTransport("hyper", transport=httpx.MockTransport(lambda r: OK), hooks=[FlexibleHook()])


def test_a_client_refuses_a_hook_with_a_wrong_signature_before_any_request() -> None:
    with pytest.raises(TypeError, match=r"on_rejection must take \(self, call, event\)"):
        rc.HyperClient(
            base_url="https://hyper.test",
            token="t",
            transport=httpx.MockTransport(lambda r: OK),
            hooks=[OneArgumentRejection()],
        )


def test_a_global_hook_with_a_wrong_signature_is_refused() -> None:
    from resilient_client._pipeline import add_global_hook

    with pytest.raises(TypeError, match="on_rejection must take"):
        add_global_hook(OneArgumentRejection())


def test_something_that_is_no_hook_is_refused() -> None:
    with pytest.raises(TypeError, match=r"must be a resilient_client\.Hook"):
        rc.ResilientTransport("hyper", transport=httpx.MockTransport(lambda r: OK), hooks=[print])  # type: ignore[list-item]


# -- waits are events and DEBUG lines ----------------------------------------------------------------


class Waits(rc.Hook):
    def __init__(self) -> None:
        self.events: list[rc.WaitEvent] = []

    def on_wait(self, call: rc.Call, event: rc.WaitEvent) -> None:
        assert call.vendor == event.vendor
        self.events.append(event)


async def test_a_rate_limit_wait_is_an_event_and_a_debug_line(
    connect: Callable[[Any], Caller], caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    vendor = Vendor(clock)
    waits = Waits()
    resilient = transport(
        vendor, policy=policy(rate_limit=ONE_A_SECOND, breaker=NO_BREAKER, budget=NO_BUDGET), hooks=[waits]
    )
    client = connect(resilient)
    with caplog.at_level(logging.DEBUG, logger="resilient_client"):
        for _ in range(3):
            await client.get(URL + "?api_key=sekrit-key")
    assert vendor.sent == 3
    assert [(e.strategy, e.attempt, e.method) for e in waits.events] == [("rate_limit", 1, "GET")] * 2
    assert [e.seconds for e in waits.events] == pytest.approx([1.0, 1.0])
    assert sum(clock.sleeps) == pytest.approx(2.0)
    assert all("sekrit" not in e.url for e in waits.events)
    lines = [r.getMessage() for r in caplog.records if "waited" in r.getMessage()]
    assert len(lines) == 2
    assert "attempt 1 waited 1.000 s for rate_limit" in lines[0]
    assert "sekrit" not in lines[0]


async def test_a_rate_limit_wait_that_passes_the_deadline_is_refused_without_an_event(
    connect: Callable[[Any], Caller],
) -> None:
    clock = FakeClock()
    vendor = Vendor(clock)
    waits = Waits()
    slow = rc.RateLimitSettings(enabled=True, requests=1, period=100.0, burst=1, adaptive=False)
    resilient = transport(
        vendor,
        policy=policy(rate_limit=slow, breaker=NO_BREAKER, budget=NO_BUDGET, retry={"total_timeout": 5.0}),
        hooks=[waits],
    )
    client = connect(resilient)
    await client.get(URL)
    with pytest.raises(rc.errors.ThrottledError):
        await client.get(URL)
    assert waits.events == []  # refused at once: nobody waited


async def test_a_guard_wait_is_an_event_whether_the_key_came_free_or_not(
    connect: Callable[[Any], Caller], caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    vendor = Vendor(clock)
    waits = Waits()
    resilient = transport(vendor, policy=guarded(max_wait=2.0), hooks=[waits])
    keys = journal_keys(7, resilient)
    client = connect(resilient)
    # Another process holds the account for 0.5 s more (its lease ends): this call waits, then goes.
    assert Store(resilient.state).try_acquire(keys, 1, 0.5, "another-process", clock.now)
    with caplog.at_level(logging.DEBUG, logger="resilient_client"):
        await client.post(JOURNAL, json={"AccountNo": 7})
    assert vendor.sent == 1
    assert [(e.strategy, e.attempt, e.method) for e in waits.events] == [("guard", 1, "POST")]
    assert 0.5 <= waits.events[0].seconds <= 0.7
    assert any("for guard" in r.getMessage() for r in caplog.records)
    # Held past max_wait: refused, and the wait it made is told too.
    assert Store(resilient.state).try_acquire(keys, 1, 1000.0, "another-process", clock.now)
    with pytest.raises(rc.errors.GuardTimeoutError):
        await client.post(JOURNAL, json={"AccountNo": 7})
    assert [e.strategy for e in waits.events] == ["guard", "guard"]
    assert waits.events[1].seconds == pytest.approx(2.0, abs=0.11)


async def test_a_pause_that_began_while_a_guard_waited_is_a_rate_limit_wait_after_the_guards(
    connect: Callable[[Any], Caller],
) -> None:
    # The guard waits for a busy account; meanwhile a 429 elsewhere pauses the host for 3 s: the
    # guard lets go and the limiter's gate holds the call (both waits are told, in their order).
    from test_guard_and_limiter import ACCOUNT_KEY, Watched

    from resilient_client.stores import state_key

    watched = Watched()
    waits = Waits()
    watched.transport = transport(
        watched.vendor, policy=watched.transport.policy, state=watched.store, hooks=[waits]
    )
    assert Store(watched.store).try_acquire([ACCOUNT_KEY], 1, 60.0, "another-call", watched.clock.now)

    def the_other_call_ends_with_a_429() -> None:
        watched.clock.before_sleep = lambda: None
        Store(watched.store).release([ACCOUNT_KEY], "another-call", watched.clock.now)
        Store(watched.store).pause(state_key("limiter", "hyper", "hyper.test"), 3.0, watched.clock.now)

    watched.clock.before_sleep = the_other_call_ends_with_a_429
    client = connect(watched.transport)
    assert (await client.post(JOURNAL, json={"AccountNo": "A1"})).status_code == 200
    assert [e.strategy for e in waits.events] == ["guard", "rate_limit"]
    assert waits.events[1].seconds == pytest.approx(3.0 - waits.events[0].seconds, abs=0.01)
