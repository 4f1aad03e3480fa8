"""What a retried call costs over the in-process store: its async shell calls the store's sync
operations itself (``MemoryState``'s async twins only call them), and awaits none; any other store,
a subclass of MemoryState included, is awaited as before."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pipeline_kit import OK, Caller, Vendor, policy, recorded_store_calls, transport

import resilient_client as rc
from resilient_client.stores import MemoryState
from resilient_client.testing import FakeClock

pytestmark = pytest.mark.anyio

#: The async twins the budget and the breaker use on a retried call (and when a circuit opens).
ASYNC_TWINS = ("adeposit", "atry_spend", "acircuit", "arecord_outcome", "arecord_successes", "aopen_circuit")

#: Every request fails once, and the breaker is at the edge of opening: it opens on the 503.
EDGY_BREAKER = rc.BreakerSettings(minimum_throughput=1, failure_ratio=1.0, break_duration=10.0)


@pytest.fixture
def awaited(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The async twins of MemoryState called during the test (the class is patched)."""
    calls: list[str] = []
    for name in ASYNC_TWINS:
        original = getattr(MemoryState, name)

        async def recorded(
            self: MemoryState, *args: Any, _name: str = name, _original: Any = original
        ) -> Any:
            calls.append(_name)
            return await _original(self, *args)

        monkeypatch.setattr(MemoryState, name, recorded)
    return calls


async def test_a_call_retried_over_the_in_process_store_awaits_no_store_operation(
    connect: Callable[[Any], Caller], awaited: list[str]
) -> None:
    vendor = Vendor(FakeClock(), httpx.Response(503), OK)
    client = connect(transport(vendor, policy=policy()))
    for _ in range(3):
        vendor.requests.clear()
        response = await client.get()
        assert response.extensions[rc.ATTEMPTS_EXTENSION] == vendor.sent == 2
    assert awaited == []
    assert client.transport.breaker.state == "closed"  # type: ignore[union-attr]


async def test_a_circuit_the_first_attempt_opens_refuses_the_retry_awaiting_no_store_operation(
    connect: Callable[[Any], Caller], awaited: list[str]
) -> None:
    vendor = Vendor(FakeClock(), httpx.Response(503), OK)
    client = connect(transport(vendor, policy=policy(breaker=EDGY_BREAKER)))
    with pytest.raises(rc.errors.ServiceUnavailableError, match="retry not sent: circuit open") as caught:
        await client.get()
    assert caught.value.attempts == vendor.sent == 1
    assert awaited == []
    assert client.transport.breaker.state == "open"  # type: ignore[union-attr]


class Subclass(MemoryState):
    """A store of its own: its async twins may do more than the sync operations."""

    def __init__(self) -> None:
        super().__init__()
        self.awaited: list[str] = []

    async def atry_spend(self, key: str, cost: float, cap: float, now: float) -> bool:
        self.awaited.append("atry_spend")
        return await super().atry_spend(key, cost, cap, now)

    async def acircuit(self, key: str, now: float) -> rc.stores.Circuit:
        self.awaited.append("acircuit")
        return await super().acircuit(key, now)

    async def arecord_outcome(self, key: str, failed: bool, window: float, now: float) -> tuple[int, int]:
        self.awaited.append("arecord_outcome")
        return await super().arecord_outcome(key, failed, window, now)


async def test_another_store_is_awaited(connect: Callable[[Any], Caller]) -> None:
    store = Subclass()
    vendor = Vendor(FakeClock(), httpx.Response(503), OK)
    client = connect(transport(vendor, policy=policy(), state=store))
    response = await client.get()
    assert response.extensions[rc.ATTEMPTS_EXTENSION] == 2
    expected = ["acircuit", "arecord_outcome", "atry_spend", "acircuit"] if client.asynchronous else []
    assert store.awaited == expected


#: The sync operations of MemoryState a retried call may make.
OPERATIONS = ("deposit", "try_spend", "record_outcome", "record_successes", "circuit")


@pytest.fixture
def operations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sync operations of MemoryState made during the test, by name."""
    return recorded_store_calls(monkeypatch, OPERATIONS)


async def test_a_retry_after_successes_writes_them_with_the_failure_and_the_earned_tokens_with_the_spend(
    connect: Callable[[Any], Caller], operations: list[str]
) -> None:
    vendor = Vendor(FakeClock(), OK, OK, OK, httpx.Response(503), OK)
    resilient = transport(vendor, policy=policy())
    client = connect(resilient)
    for _ in range(3):
        await client.get()
    operations.clear()
    response = await client.get()
    assert response.extensions[rc.ATTEMPTS_EXTENSION] == 2
    # The circuit read for the 503, the 503 counted after the successes before it (one step), the
    # retry's token spent after the tokens those requests earned (one step); the retry is sent
    # while the store says no circuit is open, as the lane sends (no circuit read to admit it).
    assert operations == ["circuit", "record_outcome", "try_spend"]
    # The window holds the 3 successes and the 503 (the retry's success is only counted so far),
    # and now one success more.
    key = resilient.breaker.for_host("hyper.test").key
    assert resilient.state.record_outcome(key, False, 30.0, vendor.clock.now) == (1, 5)


async def test_a_retry_of_a_call_the_lane_began_is_refused_once_its_503_opened_the_circuit(
    connect: Callable[[Any], Caller],
) -> None:
    vendor = Vendor(FakeClock(), OK, httpx.Response(503), OK)
    breaker = rc.BreakerSettings(minimum_throughput=2, failure_ratio=0.5, break_duration=10.0)
    resilient = transport(vendor, policy=policy(breaker=breaker))
    client = connect(resilient)
    await client.get()  # the host's first call makes its breaker: the next one takes the lane
    with pytest.raises(rc.errors.ServiceUnavailableError, match="retry not sent: circuit open") as caught:
        await client.get()  # 1 failure of 2: the circuit opens, and the retry is not sent
    assert caught.value.attempts == 1
    assert vendor.sent == 2
    assert resilient.breaker.state == "open"


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The status of every body the transport reads to judge it (read_sync / read_async)."""
    from resilient_client import _transport

    statuses: list[int] = []
    sync_read, async_read = _transport.read_sync, _transport.read_async

    def read_sync(response: httpx.Response, *args: Any, **kwargs: Any) -> Any:
        statuses.append(response.status_code)
        return sync_read(response, *args, **kwargs)

    async def read_async(response: httpx.Response, *args: Any, **kwargs: Any) -> Any:
        statuses.append(response.status_code)
        return await async_read(response, *args, **kwargs)

    monkeypatch.setattr(_transport, "read_sync", read_sync)
    monkeypatch.setattr(_transport, "read_async", read_async)
    return statuses


class HearsSuccesses(rc.Hook):
    def __init__(self) -> None:
        self.heard: list[tuple[int, str]] = []

    def on_attempt(self, call: Any, event: rc.AttemptEvent) -> None:
        self.heard.append((event.attempt, event.decision))


#: A clean success whose body the byte scan cannot prove clean (an escape): it is decoded.
ESCAPED = httpx.Response(
    200, content=b'{"ResponseCode": 0, "Name": "\\u0041"}', headers={"content-type": "application/json"}
)


@pytest.mark.parametrize(
    ("success", "heard", "read"),
    [
        pytest.param(OK, False, [503], id="a-clean-body-in-memory-is-returned-unread"),
        pytest.param(ESCAPED, False, [503, 200], id="a-body-the-scan-cannot-prove-clean-is-judged"),
        pytest.param(OK, True, [503, 200], id="a-hook-that-hears-successes-hears-it"),
    ],
)
async def test_a_retry_answered_from_memory_is_judged_only_when_it_must_be(
    connect: Callable[[Any], Caller],
    reads: list[int],
    success: httpx.Response,
    heard: bool,
    read: list[int],
) -> None:
    vendor = Vendor(FakeClock(), httpx.Response(503), success)
    hook = HearsSuccesses()
    client = connect(transport(vendor, policy=policy(), hooks=[hook] if heard else []))
    response = await client.get()
    assert response.extensions[rc.ATTEMPTS_EXTENSION] == 2
    assert response.json() == json.loads(success.content)
    # The lane reads the 503 (or, with a hook on successes, the pipeline's way does).
    assert reads == read
    assert hook.heard == ([(1, "retry"), (2, "return")] if heard else [])
