"""The simulator's capacity habit: C calls at once, the vendor's overload reply at once beyond C."""

from __future__ import annotations

import anyio
import httpx
import pytest

from resilient_client.simulator import Simulator

pytestmark = pytest.mark.anyio


class Held:
    """An ``asleep`` for the simulator that holds every served call until ``release``."""

    def __init__(self) -> None:
        self.entered = 0
        self._go = anyio.Event()

    async def __call__(self, seconds: float) -> None:
        self.entered += 1
        await self._go.wait()

    def release(self) -> None:
        self._go.set()


async def burst(sim: Simulator, held: Held, vendor: str, path: str, calls: int) -> list[httpx.Response]:
    """``calls`` requests at once; the served ones held until every one has been answered or held."""
    transport = httpx.ASGITransport(app=sim)
    responses: list[httpx.Response] = []
    async with httpx.AsyncClient(transport=transport, base_url="http://sim.test") as client:

        async def one() -> None:
            responses.append(await client.get(f"/{vendor}{path}"))

        async with anyio.create_task_group() as group:
            for _ in range(calls):
                group.start_soon(one)
            while held.entered + len(responses) < calls:
                await anyio.sleep(0)
            held.release()
    return responses


async def test_calls_beyond_the_capacity_are_answered_503_at_once() -> None:
    held = Held()
    sim = Simulator(asleep=held)
    sim.capacity("usta", 2, latency=0.05)
    responses = await burst(sim, held, "usta", "/v1/players", 5)
    assert sorted(r.status_code for r in responses) == [200, 200, 503, 503, 503]
    stats = sim.snapshot()["capacity"]["usta"]
    assert (stats["served"], stats["refused"], stats["peak"], stats["in_flight"]) == (2, 3, 2, 0)


async def test_medable_says_ktoobusy() -> None:
    held = Held()
    sim = Simulator(asleep=held)
    sim.capacity("medable", 1, latency=0.05)
    responses = await burst(sim, held, "medable", "/c_visits", 2)
    refused = [r for r in responses if r.status_code == 503]
    assert len(refused) == 1 and refused[0].json()["code"] == "kTooBusy"


async def test_the_capacity_steps_and_switches_off() -> None:
    held = Held()
    sim = Simulator(asleep=held)
    sim.capacity("usta", 1, latency=0.05)
    sim.capacity("usta", 3)  # the latency stays
    assert sim.snapshot()["capacity"]["usta"]["calls"] == 3
    assert sim.snapshot()["capacity"]["usta"]["latency"] == 0.05
    responses = await burst(sim, held, "usta", "/v1/players", 4)
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 503]
    sim.capacity("usta", None)
    assert sim.snapshot()["capacity"] == {}
    held2 = Held()
    sim2 = Simulator(asleep=held2)
    held2.release()
    responses = await burst(sim2, held2, "usta", "/v1/players", 4)
    assert [r.status_code for r in responses] == [200] * 4


def test_bad_capacities_are_refused() -> None:
    sim = Simulator()
    with pytest.raises(ValueError, match="calls"):
        sim.capacity("usta", 0)
    with pytest.raises(ValueError, match="status"):
        sim.capacity("usta", 2, status=200)
    with pytest.raises(ValueError, match="vendor"):
        sim.capacity("nobody", 2)
