"""Every vendor client, sync and async, over a real loopback socket to the simulator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import resilient_client as rc
from resilient_client.simulator import Fault, Reply, Simulator, serve
from resilient_client.testing import FakeClock

SYNC = {"updox": rc.UpdoxClient, "usta": rc.UstaClient, "medable": rc.MedableClient, "hyper": rc.HyperClient}
ASYNC = {
    "updox": rc.AsyncUpdoxClient,
    "usta": rc.AsyncUstaClient,
    "medable": rc.AsyncMedableClient,
    "hyper": rc.AsyncHyperClient,
}
CREDENTIALS: dict[str, dict[str, str]] = {
    "updox": {"application_id": "a", "application_password": "p"},
    "usta": {"token": "t"},
    "medable": {"client_key": "k"},
    "hyper": {"token": "t"},
}
TRANSIENT = {
    "updox": Fault("updox", 4010),  # not transient: checked separately below
    "usta": Reply(503),
    "medable": Fault("medable", "kTooBusy"),
    "hyper": Fault("hyper", 10),
}
HARD = {
    "updox": (Fault("updox", 4060), rc.errors.ValidationError),
    "usta": (Fault("usta", 3001), rc.errors.NotFoundError),
    "medable": (Fault("medable", "kNotFound"), rc.errors.NotFoundError),
    "hyper": (Fault("hyper", 8), rc.errors.PermissionDeniedError),
}


@pytest.fixture(scope="module")
def loopback() -> Iterator[tuple[str, Simulator]]:
    sim = Simulator()
    with serve(sim) as url:
        yield url, sim


def make(table: dict[str, Any], vendor: str, url: str) -> Any:
    return table[vendor](
        base_url=f"{url}/{vendor}", transport_options=FakeClock().options(), **CREDENTIALS[vendor]
    )


@pytest.mark.parametrize("vendor", ["usta", "medable", "hyper"])
def test_sync_retry_to_success_and_typed_error(loopback: tuple[str, Simulator], vendor: str) -> None:
    url, sim = loopback
    sim.reset()
    sim.script(vendor, "/things", [TRANSIENT[vendor], TRANSIENT[vendor]])
    fault, error = HARD[vendor]
    sim.script(vendor, "/other", [fault])
    with make(SYNC, vendor, url) as client:
        assert client.put("/things", json={"a": 1}).extensions[rc.ATTEMPTS_EXTENSION] == 3
        with pytest.raises(error) as caught:
            client.post("/other", json={})
    assert caught.value.vendor == vendor
    assert sim.requests[vendor, "/things"] == 3
    assert sim.side_effects[vendor, "/things"] == 1
    assert sim.side_effects[vendor, "/other"] == 0


@pytest.mark.anyio
@pytest.mark.parametrize("vendor", ["usta", "medable", "hyper"])
async def test_async_retry_to_success_and_typed_error(loopback: tuple[str, Simulator], vendor: str) -> None:
    url, sim = loopback
    sim.script(vendor, "/async-things", [TRANSIENT[vendor]])
    fault, error = HARD[vendor]
    sim.script(vendor, "/async-other", [fault])
    async with make(ASYNC, vendor, url) as client:
        response = await client.put("/async-things", json={"a": 1})
        assert response.extensions[rc.ATTEMPTS_EXTENSION] == 2
        with pytest.raises(error):
            await client.post("/async-other", json={})


def test_updox_over_loopback(loopback: tuple[str, Simulator]) -> None:
    url, sim = loopback
    sim.script("updox", "/api/io/MessageList", [Fault("updox", 4650)])
    sim.script("updox", "/api/io/PatientsSync", [Fault("updox", 4060)])
    with make(SYNC, "updox", url) as client:
        assert client.ping()["responseCode"] == 2000
        with pytest.raises(rc.errors.Updox4650Error):  # the shipped policy never retries 4650
            client.call("MessageList")
        with pytest.raises(rc.errors.ValidationError) as caught:
            client.call("PatientsSync", {"patients": []})
    assert caught.value.http_status == 200
    assert sim.last_headers["updox", "/api/io/Ping"]["content-type"] == "application/json"


@pytest.mark.anyio
async def test_async_updox_over_loopback(loopback: tuple[str, Simulator]) -> None:
    url, sim = loopback
    before = sim.requests["updox", "/api/io/UserGet"]
    failed, ok = {"successful": False, "responseCode": 5999}, {"successful": True, "responseCode": 2000}
    sim.script("updox", "/api/io/UserGet", [Reply(200, failed), Reply(200, ok)])
    async with make(ASYNC, "updox", url) as client:
        assert (await client.call("UserGet"))["responseCode"] == 2000  # a read call: retried
    assert sim.requests["updox", "/api/io/UserGet"] - before == 2


def test_a_connection_refused_is_retried_then_raised_as_httpx(loopback: tuple[str, Simulator]) -> None:
    clock = FakeClock()
    with rc.HyperClient(
        base_url="http://127.0.0.1:9/hyper", token="t", transport_options=clock.options()
    ) as client:
        with pytest.raises(httpx.ConnectError) as caught:
            client.post("/api/x", json={})
    assert caught.value.attempts == 4  # type: ignore[attr-defined]
    assert len(clock.sleeps) == 3
