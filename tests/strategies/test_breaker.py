"""The circuit breaker: what counts as a failure, when it opens, how it probes, under threads too."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

from resilient_client._clock import Clock
from resilient_client._settings import BreakerSettings
from resilient_client.stores import MemoryState
from resilient_client.strategies.breaker import PROBE_LEASE_MARGIN, Breaker, CircuitOpen, Permit
from resilient_client.testing import FakeClock

pytestmark = pytest.mark.anyio

KEY = "breaker/hyper/api.hyper.test"


def make(**settings: Any) -> Breaker:
    return Breaker(
        BreakerSettings(**settings), MemoryState(), KEY, overrides={"50": "ignore", "4010": "failure"}
    )


@pytest.fixture
def clock() -> Clock:
    return Clock.from_options(**FakeClock().options())


async def attempt(ops: Any, clock: Clock, failed: bool | None) -> Permit:
    """One attempt let through and recorded; fails the test if the breaker refused it."""
    permit = await ops.admit(clock.monotonic(), 30.0)
    assert isinstance(permit, Permit), permit
    await ops.record(permit, failed, clock.monotonic())
    return permit


async def break_it(ops: Any, clock: Clock, breaker: Breaker) -> None:
    for _ in range(breaker.settings.minimum_throughput):
        await attempt(ops, clock, True)
    assert await ops.state(clock.monotonic()) == "open"


# -- what counts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("category", "code", "transport_error", "expected"),
    [
        pytest.param("server_error", 500, False, True, id="server-error"),
        pytest.param("service_unavailable", "kTooBusy", False, True, id="service-unavailable"),
        pytest.param("request_timeout", None, False, True, id="request-timeout"),
        pytest.param(None, None, True, True, id="transport-error"),
        pytest.param("rate_limited", 429, False, False, id="rate-limited-is-an-answer"),
        pytest.param("locked", 10, False, False, id="locked"),
        pytest.param("not_ready", "kMediaNotReady", False, False, id="not-ready"),
        pytest.param("validation", 5000, False, False, id="a-4xx"),
        pytest.param("incomplete_success", 1, False, False, id="soft-fault"),
        pytest.param("ok", 0, False, False, id="success"),
        pytest.param("service_unavailable", 50, False, None, id="code-overridden-to-ignore"),
        pytest.param("service_unavailable", "50", False, None, id="override-matches-a-string-code"),
        pytest.param("authentication", 4010, False, True, id="code-overridden-to-failure"),
    ],
)
def test_what_counts_as_a_failure(
    category: str | None, code: object, transport_error: bool, expected: bool | None
) -> None:
    assert make().failed(category, code, transport_error=transport_error) is expected


# -- closed -> open ---------------------------------------------------------------------------------


async def test_it_opens_only_once_the_minimum_throughput_is_seen(
    twin: Callable[[object], Any], clock: Clock
) -> None:
    ops = twin(make(minimum_throughput=10))
    for _ in range(9):
        await attempt(ops, clock, True)
    assert await ops.state(clock.monotonic()) == "closed"
    await attempt(ops, clock, True)
    assert await ops.state(clock.monotonic()) == "open"


async def test_it_opens_when_the_failure_ratio_is_reached(
    twin: Callable[[object], Any], clock: Clock
) -> None:
    ops = twin(make(failure_ratio=0.5, minimum_throughput=10))
    for failed in [False] * 6 + [True] * 5:  # 5 of 11
        await attempt(ops, clock, failed)
    assert await ops.state(clock.monotonic()) == "closed"
    await attempt(ops, clock, True)  # 6 of 12
    assert await ops.state(clock.monotonic()) == "open"


async def test_failures_older_than_the_sampling_duration_do_not_count(
    twin: Callable[[object], Any], clock: Clock
) -> None:
    ops = twin(make(minimum_throughput=4, sampling_duration=10.0))
    for _ in range(3):
        await attempt(ops, clock, True)
    clock.sleep(11.0)
    await attempt(ops, clock, True)
    assert await ops.state(clock.monotonic()) == "closed"


async def test_ignored_outcomes_are_not_counted(twin: Callable[[object], Any], clock: Clock) -> None:
    ops = twin(make(minimum_throughput=10))
    for _ in range(20):
        await attempt(ops, clock, None)
    for _ in range(9):
        await attempt(ops, clock, True)
    assert await ops.state(clock.monotonic()) == "closed"


# -- open ---------------------------------------------------------------------------------------------


async def test_an_open_circuit_refuses_until_its_break_ends(
    twin: Callable[[object], Any], clock: Clock
) -> None:
    breaker = make(break_duration=15.0)
    ops = twin(breaker)
    await break_it(ops, clock, breaker)
    clock.sleep(5.0)
    refused = await ops.admit(clock.monotonic(), 30.0)
    assert refused == CircuitOpen(pytest.approx(10.0))
    assert refused.reason == "circuit open"


async def test_a_late_outcome_from_before_the_break_changes_nothing(
    twin: Callable[[object], Any], clock: Clock
) -> None:
    breaker = make(break_duration=15.0)
    ops = twin(breaker)
    early = [await ops.admit(clock.monotonic(), 30.0) for _ in range(2)]
    await break_it(ops, clock, breaker)
    clock.sleep(5.0)
    await ops.record(early[0], True, clock.monotonic())  # would extend the break if it reopened
    await ops.record(early[1], False, clock.monotonic())  # would close it
    assert await ops.admit(clock.monotonic(), 30.0) == CircuitOpen(pytest.approx(10.0))


# -- half-open ----------------------------------------------------------------------------------------


async def test_after_the_break_one_probe_goes_and_its_success_closes(
    twin: Callable[[object], Any], clock: Clock
) -> None:
    breaker = make(break_duration=15.0)
    ops = twin(breaker)
    await break_it(ops, clock, breaker)
    clock.sleep(15.0)
    probe = await ops.admit(clock.monotonic(), 30.0)
    assert isinstance(probe, Permit) and probe.probe is not None
    assert await ops.state(clock.monotonic()) == "half_open"
    refused = await ops.admit(clock.monotonic(), 30.0)
    assert refused == CircuitOpen(pytest.approx(30.0 + PROBE_LEASE_MARGIN))  # when the probe's lease ends
    await ops.record(probe, False, clock.monotonic())
    assert await ops.state(clock.monotonic()) == "closed"
    for _ in range(9):  # the failures before the break were forgotten
        await attempt(ops, clock, True)
    assert await ops.state(clock.monotonic()) == "closed"


async def test_failed_probes_double_the_break_up_to_the_maximum(
    twin: Callable[[object], Any], clock: Clock
) -> None:
    breaker = make(break_duration=15.0, max_break_duration=100.0)
    ops = twin(breaker)
    await break_it(ops, clock, breaker)
    breaks = []
    for _ in range(5):
        refused = await ops.admit(clock.monotonic(), 30.0)
        assert isinstance(refused, CircuitOpen)
        breaks.append(refused.retry_after)
        clock.sleep(refused.retry_after)
        await attempt(ops, clock, True)  # the probe fails
    assert breaks == [15.0, 30.0, 60.0, 100.0, 100.0]
    clock.sleep(100.0)
    await attempt(ops, clock, False)  # a probe succeeds: closed, and the next break starts over
    await break_it(ops, clock, breaker)
    assert await ops.admit(clock.monotonic(), 30.0) == CircuitOpen(15.0)


async def test_a_probe_with_no_evidence_frees_its_slot(twin: Callable[[object], Any], clock: Clock) -> None:
    breaker = make()
    ops = twin(breaker)
    await break_it(ops, clock, breaker)
    clock.sleep(15.0)
    probe = await attempt(ops, clock, None)  # e.g. hyper 50, or the limiter refused: nothing sent
    assert probe.probe is not None
    assert await ops.state(clock.monotonic()) == "half_open"
    second = await ops.admit(clock.monotonic(), 30.0)
    assert isinstance(second, Permit) and second.probe is not None


async def test_a_probe_that_never_reports_frees_its_slot_after_its_lease(
    twin: Callable[[object], Any], clock: Clock
) -> None:
    breaker = make()
    ops = twin(breaker)
    await break_it(ops, clock, breaker)
    clock.sleep(15.0)
    assert isinstance(await ops.admit(clock.monotonic(), 2.0), Permit)  # and then its process dies
    clock.sleep(2.0 + PROBE_LEASE_MARGIN - 0.5)
    assert isinstance(await ops.admit(clock.monotonic(), 30.0), CircuitOpen)
    clock.sleep(0.5)
    assert isinstance(await ops.admit(clock.monotonic(), 30.0), Permit)


async def test_reset_closes_an_open_circuit(twin: Callable[[object], Any], clock: Clock) -> None:
    breaker = make()
    ops = twin(breaker)
    await break_it(ops, clock, breaker)
    await ops.reset(clock.monotonic())
    assert await ops.state(clock.monotonic()) == "closed"
    assert isinstance(await ops.admit(clock.monotonic(), 30.0), Permit)


@pytest.mark.parametrize("probes", [1, 3])
def test_exactly_the_allowed_probes_go_when_32_threads_ask_at_once(clock: Clock, probes: int) -> None:
    breaker = make(half_open_probes=probes)
    for _ in range(breaker.settings.minimum_throughput):
        breaker.record(breaker.admit(clock.monotonic(), 30.0), True, clock.monotonic())  # type: ignore[arg-type]
    clock.sleep(15.0)
    start = threading.Barrier(32)
    answers: list[Permit | CircuitOpen] = []

    def ask() -> None:
        start.wait()
        answers.append(breaker.admit(clock.monotonic(), 30.0))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so a non-atomic probe slot would be caught
    try:
        threads = [threading.Thread(target=ask) for _ in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        sys.setswitchinterval(interval)
    permits = [a for a in answers if isinstance(a, Permit)]
    assert len(answers) == 32
    assert len(permits) == probes
    assert all(p.probe is not None for p in permits)


def test_repr_names_the_key() -> None:
    assert repr(make()) == f"Breaker(key={KEY!r})"
