"""A retry of a call the fast lane began: the pipeline weighs the lane's first attempt as its own (a
503 that opens the circuit refuses the retry), and judges the retry's answer only when it must."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pipeline_kit import OK, Caller, Vendor, policy, transport

import resilient_client as rc
from resilient_client.testing import FakeClock

pytestmark = pytest.mark.anyio


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
