"""The order of the pipeline, outermost first: retry (the budget) -> breaker -> limiter -> guard ->
send. Proved twice: by the store operations each strategy makes, in the order they are made, and
by what an outer strategy's refusal spares the inner ones (no limiter wait, no guard taken)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import pytest
from pipeline_kit import JOURNAL, OK, Caller, Recorder, Vendor, policy, transport

import resilient_client as rc
from resilient_client import stores
from resilient_client.stores import state_key
from resilient_client.strategies.guard import Guard
from resilient_client.testing import FakeClock
from store_ops import Store

pytestmark = pytest.mark.anyio

_T = TypeVar("_T")

#: Which strategy each store operation belongs to.
OWNER: dict[type[Any], str] = {
    stores.Deposit: "budget",
    stores.TrySpend: "budget",
    stores.ReadCircuit: "breaker",
    stores.TryProbe: "breaker",
    stores.RecordOutcome: "breaker",
    stores.RecordSuccesses: "breaker",
    stores.OpenCircuit: "breaker",
    stores.PausedFor: "limiter",
    stores.LimiterAcquire: "limiter",
    stores.LimiterAdmit: "limiter",
    stores.Pause: "limiter",
    stores.Acquire: "guard",
    stores.Release: "guard",
}


class RecordingState(rc.MemoryState):
    """The in-process store, recording which strategy asked it for what, in order."""

    #: Every count written when it happens (no batching): each step shows up in the log.
    batch_seconds = 0.0

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    def run(self, op: stores.Operation[_T], now: float) -> _T:
        owner = OWNER.get(type(op))
        if owner is not None:
            self.log.append(owner)
        return super().run(op, now)


class Sends(rc.Hook):
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def on_attempt_start(self, call: Any, number: int) -> None:
        self.log.append("send")


def every_strategy(**changes: Any) -> rc.RetryPolicy:
    """The shipped hyper policy, every strategy on: budget, breaker, fixed-rate limiter, journal guard."""
    tables: dict[str, Any] = {
        "rate_limit": rc.RateLimitSettings(enabled=True, requests=1, period=1.0, adaptive=False),
        "breaker": rc.BreakerSettings(minimum_throughput=1, failure_ratio=1.0, break_duration=10.0),
        "guards": {
            "journal": rc.GuardSettings(operations=("*journal*",), key_fields=("AccountNo",), max_wait=5.0)
        },
    }
    return policy("hyper", **{**tables, **changes})


def collapse(log: list[str]) -> list[str]:
    """The log with repeats of one strategy in a row folded into one."""
    return [entry for i, entry in enumerate(log) if i == 0 or log[i - 1] != entry]


async def test_each_attempt_passes_retry_breaker_limiter_guard_then_is_sent(
    connect: Callable[[Any], Caller],
) -> None:
    log: list[str] = []
    vendor = Vendor(FakeClock(), httpx.Response(423), OK)
    resilient = transport(vendor, policy=every_strategy(), state=RecordingState(log), hooks=[Sends(log)])
    client = connect(resilient)
    assert (await client.post(JOURNAL, json={"AccountNo": 7})).status_code == 200
    # In: outermost first; out (each strategy learning the attempt's outcome): innermost first.
    one_attempt = ["breaker", "limiter", "guard", "send", "guard", "breaker"]
    assert collapse(log) == ["budget", *one_attempt, "budget", *one_attempt]


def journal_keys(resilient: rc.ResilientTransport) -> tuple[str, ...]:
    guard = Guard("journal", resilient.policy.guards["journal"], resilient.state, state_key("guard", "hyper"))
    keys = guard.keys_for("journal", b'{"AccountNo": 7}', host="hyper.test")
    assert keys is not None
    return keys


async def test_an_outer_refusal_spares_the_inner_strategies(connect: Callable[[Any], Caller]) -> None:
    clock = FakeClock()
    vendor = Vendor(clock, httpx.Response(503), OK)
    resilient = transport(vendor, policy=every_strategy(retry={"max_attempts": 1}))
    client = connect(resilient)
    with pytest.raises(rc.errors.ServiceUnavailableError):
        await client.post(JOURNAL, json={"AccountNo": 7})  # opens the circuit, empties the limiter
    # The account's key is busy too: each inner strategy would wait, then refuse.
    assert Store(resilient.state).try_acquire(
        journal_keys(resilient), 1, 1000.0, "another-process", clock.now
    )

    # The breaker refuses first: no limiter wait, no guard polling.
    with pytest.raises(rc.errors.CircuitOpenError):
        await client.post(JOURNAL, json={"AccountNo": 7})
    assert clock.sleeps == []

    # The circuit closed, the limiter comes next: its wait (1 s) comes before any guard polling,
    # and the guard, busy, refuses only after it.
    resilient.breaker.reset()
    with pytest.raises(rc.errors.GuardTimeoutError):
        await client.post(JOURNAL, json={"AccountNo": 7})
    assert clock.sleeps[0] == pytest.approx(1.0)
    assert sum(clock.sleeps[1:]) == pytest.approx(5.0, abs=0.11)  # then the guard's max_wait
    assert vendor.sent == 1


async def test_the_limiters_wait_is_made_before_the_guard_is_taken(connect: Callable[[Any], Caller]) -> None:
    held_while_waiting: list[bool] = []
    box: list[rc.ResilientTransport] = []

    class Watching(FakeClock):
        def sleep(self, seconds: float) -> None:
            keys = journal_keys(box[0])
            free = Store(box[0].state).try_acquire(keys, 1, 1.0, "peek", self.now)
            if free:
                Store(box[0].state).release(keys, "peek", self.now)
            held_while_waiting.append(not free)
            super().sleep(seconds)

    clock = Watching()
    vendor = Vendor(clock)
    box.append(transport(vendor, policy=every_strategy()))
    client = connect(box[0])
    for _ in range(3):
        await client.post(JOURNAL, json={"AccountNo": 7})
    assert clock.sleeps == [1.0, 1.0]  # paced by the limiter...
    assert held_while_waiting == [False, False]  # ...while the account stayed free


async def test_a_breaker_refusal_reaches_the_hooks_before_any_send(connect: Callable[[Any], Caller]) -> None:
    recorder = Recorder()
    vendor = Vendor(FakeClock(), httpx.Response(503))
    client = connect(transport(vendor, policy=every_strategy(), hooks=[recorder]))
    with pytest.raises(rc.errors.ServiceUnavailableError):
        await client.get()
    with pytest.raises(rc.errors.CircuitOpenError):
        await client.get()
    second_call = recorder.names()[recorder.names().index("call_end") + 1 :]
    assert second_call == ["call_start", "rejection", "call_end"]
