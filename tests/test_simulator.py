"""The simulator in-process (httpx.ASGITransport): envelopes, scripts, counters, Medable sessions."""

from __future__ import annotations

import re

import httpx
import pytest

import resilient_client as rc
from resilient_client.simulator import SCENARIOS, Fault, Ok, Reply, Simulator


def client(sim: Simulator) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=sim), base_url="http://sim")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("vendor", "code", "status", "body_key"),
    [
        pytest.param("updox", 4010, 200, "responseCode", id="updox"),
        pytest.param("usta", 3001, 404, "errors", id="usta"),
        pytest.param("medable", "kNewLocation", 200, "object", id="medable"),
        pytest.param("hyper", 10, 423, "ResponseCode", id="hyper"),
    ],
)
async def test_scripted_faults_answer_as_the_vendor(
    vendor: str, code: int | str, status: int, body_key: str
) -> None:
    sim = Simulator()
    sim.script(vendor, "/x", [Fault(vendor, code)])
    async with client(sim) as c:
        fault = await c.post(f"/{vendor}/x", json={})
        after = await c.post(f"/{vendor}/x", json={})
    assert fault.status_code == status
    assert body_key in fault.json()
    assert after.status_code == 200
    assert sim.requests[vendor, "/x"] == 2
    assert sim.side_effects[vendor, "/x"] == 1


@pytest.mark.anyio
async def test_a_script_sequence_then_success_through_the_resilient_transport() -> None:
    sim = Simulator()
    sim.script(
        "usta", "/v1/players", [Reply(503), Reply(503, b"<html>proxy</html>", {"content-type": "text/html"})]
    )
    transport = rc.ResilientTransport("usta", transport=httpx.ASGITransport(app=sim), sleep=lambda s: None)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim/usta") as c:
        from resilient_client.testing import no_waits

        with no_waits():
            response = await c.put("/v1/players", json={"firstName": "Ann"})
    assert response.extensions[rc.ATTEMPTS_EXTENSION] == 3
    assert sim.requests["usta", "/v1/players"] == 3
    assert sim.side_effects["usta", "/v1/players"] == 1


@pytest.mark.anyio
async def test_retry_after_headers_and_repeat() -> None:
    sim = Simulator()
    sim.script("medable", "*", [Fault("medable", "kThrottled", retry_after=2)], repeat=True)
    async with client(sim) as c:
        answers = [await c.get("/medable/anything") for _ in range(3)]
    assert all(a.status_code == 429 for a in answers)
    assert answers[0].headers["retry-after"] == "2"
    assert answers[0].headers["x-rate-limit-remaining"] == "0"


@pytest.mark.anyio
async def test_medable_sessions_need_the_csrf_token_echoed() -> None:
    sim = Simulator()
    async with client(sim) as c:
        login = await c.post("/medable/accounts/login", json={"email": "a", "password": "b"})
        token = login.headers["medable-csrf-token"]
        refused = await c.get("/medable/accounts/me")
        accepted = await c.get("/medable/accounts/me", headers={"Medable-Csrf-Token": token})
    assert refused.json()["code"] == "kCSRFTokenMismatch"
    assert accepted.status_code == 200


@pytest.mark.anyio
async def test_ok_with_a_body_unknown_vendor_and_reset() -> None:
    sim = Simulator()
    sim.script("hyper", "/q", [Ok({"ResponseCode": 0, "Rows": [1]})])
    async with client(sim) as c:
        assert (await c.get("/hyper/q")).json() == {"ResponseCode": 0, "Rows": [1]}
        assert (await c.get("/nobody/q")).status_code == 404
    sim.reset()
    assert not sim.requests
    with pytest.raises(ValueError, match="unknown vendor"):
        sim.script("nobody", "/q", [])
    with pytest.raises(ValueError, match="unknown scenario"):
        sim.load_scenario("nope")
    for name in SCENARIOS:
        sim.load_scenario(name)


@pytest.mark.parametrize(
    ("vendor", "step", "error", "message"),
    [
        pytest.param(
            "hyper", Fault("hyper", 99), ValueError, "hyper step 1: hyper has no code 99", id="code"
        ),
        pytest.param(
            "usta", Fault("usta", 200699), ValueError, "usta has no code 200699 in its catalog", id="fallback"
        ),
        pytest.param(
            "medable",
            Fault("medable", "kthrottled"),
            ValueError,
            "medable has no code 'kthrottled'",
            id="case",
        ),
        pytest.param(
            "usta",
            Fault("hyper", 10),
            ValueError,
            "Fault('hyper', 10) is not a usta fault",
            id="other-vendor",
        ),
        pytest.param(
            "hyper",
            Fault("acme", "SLOW"),
            ValueError,
            "Fault('acme', 'SLOW') is not a hyper fault (the simulator serves",
            id="unknown-vendor",
        ),
        pytest.param(
            "hyper", {"ResponseCode": 10}, TypeError, "expected a Fault, Reply or Ok, got dict", id="dict"
        ),
    ],
)
def test_a_fault_the_catalog_cannot_produce_is_refused_when_scripted(
    vendor: str, step: object, error: type[Exception], message: str
) -> None:
    sim = Simulator()
    with pytest.raises(error, match=re.escape(message)):
        sim.script(vendor, "/x", [Ok(), step])  # type: ignore[list-item]
    assert not sim._scripts  # nothing half-scripted


def test_every_named_scenario_scripts_cleanly() -> None:
    sim = Simulator()
    for name in SCENARIOS:
        sim.load_scenario(name)
