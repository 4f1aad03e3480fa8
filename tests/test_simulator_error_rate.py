"""The simulator's random transient faults (``sim.error_rate``): a share of a vendor's requests,
drawn one by one (repeatably with a seed), answered with a 503 page, or for Medable its kTooBusy
body; counted in ``random_faults`` and the snapshot; refused when the switch is bad."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from resilient_client.simulator import Simulator

pytestmark = pytest.mark.anyio


def client(sim: Simulator) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=sim), base_url="http://sim")


async def statuses(sim: Simulator, path: str, count: int) -> list[int]:
    async with client(sim) as c:
        return [(await c.get(path)).status_code for _ in range(count)]


async def test_a_share_of_the_requests_answers_503_and_is_counted() -> None:
    sim = Simulator()
    sim.error_rate("usta", 0.3, seed=1)
    answered = await statuses(sim, "/usta/v1/players", 1000)
    faults = answered.count(503)
    assert set(answered) == {200, 503}
    assert 250 <= faults <= 350
    assert sim.random_faults["usta"] == faults == sim.snapshot()["random_faults"]["usta"]
    assert sim.snapshot()["error_rates"] == {"usta": 0.3}


async def test_a_seed_makes_the_draws_repeatable_and_other_vendors_are_untouched() -> None:
    runs = []
    for _ in range(2):
        sim = Simulator()
        sim.error_rate("usta", 0.5, seed=7)
        runs.append(await statuses(sim, "/usta/v1/players", 50))
        assert await statuses(sim, "/updox/api/io/Ping", 20) == [200] * 20
    assert runs[0] == runs[1]


async def test_medable_answers_its_own_transient_fault() -> None:
    sim = Simulator()
    sim.error_rate("medable", 1.0)
    async with client(sim) as c:
        answer = await c.get("/medable/accounts/me")
    assert answer.status_code == 503
    assert answer.json()["code"] == "kTooBusy"


async def test_a_status_of_choice_and_none_or_zero_turn_it_off() -> None:
    sim = Simulator()
    sim.error_rate("usta", 1.0, status=502)
    assert await statuses(sim, "/usta/v1/players", 3) == [502] * 3
    sim.error_rate("usta", None)
    assert await statuses(sim, "/usta/v1/players", 3) == [200] * 3
    sim.error_rate("usta", 1.0)
    sim.error_rate("usta", 0)
    assert await statuses(sim, "/usta/v1/players", 3) == [200] * 3
    sim.error_rate("usta", 1.0)
    sim.reset()
    assert await statuses(sim, "/usta/v1/players", 3) == [200] * 3
    assert sim.snapshot()["error_rates"] == {} and sim.random_faults["usta"] == 0


async def test_an_outage_answers_before_the_error_rate() -> None:
    sim = Simulator()
    sim.error_rate("usta", 1.0, status=502)
    sim.outage("usta", 503)
    assert await statuses(sim, "/usta/v1/players", 2) == [503, 503]
    assert sim.random_faults["usta"] == 0 and sim.outage_answers["usta"] == 2


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param(
            ("usta", 1.5), r"error_rate\('usta', ...\): rate must be a share from 0 to 1", id="rate"
        ),
        pytest.param(("usta", "0.3"), "rate must be a share", id="rate-type"),
        pytest.param(("usta", True), "rate must be a share", id="rate-bool"),
        pytest.param(("usta", 0.3, 404), "status must be a server error status", id="status"),
        pytest.param(("acme", 0.3), "unknown vendor 'acme'", id="vendor"),
    ],
)
def test_bad_switches_are_refused_saying_what(arguments: tuple[Any, ...], message: str) -> None:
    sim = Simulator()
    with pytest.raises(ValueError, match=message):
        sim.error_rate(*arguments)
    assert sim.snapshot()["error_rates"] == {}
