"""Per-endpoint state keyed by vendor, host and port, and bounded; guard keys naming the host with
numbers canonicalised; a refusing store's StateUnavailableError naming its call."""

from __future__ import annotations

import contextlib

import httpx
import pytest
from pipeline_kit import NO_BUDGET, OK, Vendor, policy, transport

import resilient_client as rc
from resilient_client.errors import StateUnavailableError
from resilient_client.stores import MemoryState
from resilient_client.stores.redis import RedisState
from resilient_client.strategies._endpoints import Endpoints
from resilient_client.strategies.guard import Guard
from resilient_client.testing import FakeClock

BREAKER = rc.BreakerSettings(minimum_throughput=2, failure_ratio=0.5)


def test_a_failing_service_on_one_port_does_not_open_the_circuit_of_another_on_the_same_host() -> None:
    clock = FakeClock()

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503) if request.url.port == 8001 else OK

    vendor = Vendor(clock, script=answer)
    state = MemoryState()
    resilient = transport(vendor, state=state, policy=policy("hyper", breaker=BREAKER, budget=NO_BUDGET))
    with httpx.Client(transport=resilient) as client:
        for _ in range(5):
            with contextlib.suppress(httpx.HTTPError):
                client.get("https://hyper.test:8001/api/items")
        assert resilient.breaker.for_host("hyper.test:8001").state(clock.now) == "open"
        for _ in range(20):
            assert client.get("https://hyper.test:8002/api/items").status_code == 200
    assert sum(request.url.port == 8002 for request in vendor.requests) == 20


def test_the_default_port_keys_as_the_bare_host() -> None:
    clock = FakeClock()
    resilient = transport(Vendor(clock), policy=policy("hyper", budget=NO_BUDGET))
    with httpx.Client(transport=resilient) as client:
        client.get("https://hyper.test:443/api/items")
        client.get("https://hyper.test/api/items")
        keys = [breaker.key for breaker in resilient.breaker._hosts.breakers.values()]
    assert keys == ["breaker/hyper/hyper.test"]


@pytest.mark.parametrize(
    ("one", "other"),
    [(b"7", b"7.0"), (b"7", b'"7"'), (b"[7, 1.0]", b"[7.0, 1]"), (b'{"a": 2}', b'{"a": 2.0}')],
)
def test_guard_keys_canonicalise_numbers(one: bytes, other: bytes) -> None:
    guard = Guard(
        "journal", rc.GuardSettings(operations=["journal"], key_fields=["AccountNo"]), MemoryState(), "g"
    )
    first = guard.keys_for("journal", b'{"AccountNo": %s}' % one, host="hyper.test")
    second = guard.keys_for("journal", b'{"AccountNo": %s}' % other, host="hyper.test")
    assert first == second


def test_guard_keys_name_the_host() -> None:
    guard = Guard(
        "journal", rc.GuardSettings(operations=["journal"], key_fields=["AccountNo"]), MemoryState(), "g"
    )
    here = guard.keys_for("journal", b'{"AccountNo": 7}', host="a.test")
    there = guard.keys_for("journal", b'{"AccountNo": 7}', host="b.test")
    assert here == ("g/a.test/journal/AccountNo/7",)
    assert here != there
    assert guard.keys_for("journal", b'{"AccountNo": 7.5}', host="a.test") == (
        "g/a.test/journal/AccountNo/7.5",
    )


def test_endpoints_unused_for_two_turns_are_dropped() -> None:
    endpoints: Endpoints[int] = Endpoints(10.0)
    assert endpoints.get("a", 0.0) is None
    endpoints.put("a", 1)
    endpoints.put("b", 2)
    assert endpoints.get("a", 12.0) == 1  # a turn: "a" kept (used), "b" in the previous generation
    assert endpoints.get("a", 25.0) == 1  # another turn: "b" unused for two turns is gone
    assert len(endpoints) == 1
    assert endpoints.get("b", 25.0) is None


def test_breakers_of_many_endpoints_stay_bounded_and_go_on_close() -> None:
    clock = FakeClock()
    settings = rc.BreakerSettings(sampling_duration=30.0, break_duration=15.0, max_break_duration=120.0)
    resilient = transport(Vendor(clock), policy=policy("hyper", breaker=settings, budget=NO_BUDGET))
    with httpx.Client(transport=resilient) as client:
        for number in range(3000):
            client.get(f"https://hyper.test:{10000 + number}/api/items")
            clock.now += 0.5  # 1500 s in all: many turns of the 120 s window
        held = len(resilient.breaker._hosts.breakers)
        assert held <= 2 * 120 / 0.5 + 1  # the endpoints of the last two turns at most, not 3000
    assert len(resilient.breaker._hosts.breakers) == 0  # closed: let go


def test_a_refusing_store_names_the_vendor_and_the_request(redis_process: object) -> None:
    # A store that cannot be reached, under "raise": the refusal says whose call it refused.
    state = RedisState("redis://127.0.0.1:1/0", on_unavailable="raise")
    clock = FakeClock()
    resilient = transport(Vendor(clock), state=state, policy=policy("hyper", budget=NO_BUDGET))
    with httpx.Client(transport=resilient) as client, pytest.raises(StateUnavailableError) as caught:
        client.get("https://hyper.test/api/items")
    assert caught.value.vendor == "hyper"
    assert caught.value.request is not None
    assert caught.value.request.url.host == "hyper.test"
    assert isinstance(caught.value, httpx.HTTPError)
    state.close()


@pytest.mark.anyio
async def test_a_refusing_store_names_the_vendor_and_the_request_of_an_async_call(
    redis_process: object,
) -> None:
    state = RedisState("redis://127.0.0.1:1/0", on_unavailable="raise")
    clock = FakeClock()
    resilient = transport(Vendor(clock), state=state, policy=policy("hyper", budget=NO_BUDGET))
    async with httpx.AsyncClient(transport=resilient) as client:
        with pytest.raises(StateUnavailableError) as caught:
            await client.get("https://hyper.test/api/items")
    assert caught.value.vendor == "hyper"
    assert caught.value.request is not None
    assert caught.value.request.url.host == "hyper.test"
    await state.aclose()
