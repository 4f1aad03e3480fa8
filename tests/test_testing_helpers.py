"""resilient_client.testing: the README's example test, fault bodies for every vendor, FakeClock."""

from __future__ import annotations

import httpx
import pytest
import respx

import resilient_client as rc
from resilient_client.testing import FakeClock, fault_body, fault_response, no_waits


@respx.mock
def test_my_code_survives_a_locked_account() -> None:
    route = respx.post("https://hyper.test/api/journal").mock(
        side_effect=[fault_response("hyper", 10), httpx.Response(200, json={"ResponseCode": 0})]
    )
    with no_waits(), rc.HyperClient(base_url="https://hyper.test", token="t") as client:
        assert client.post("/api/journal", json={}).json()["ResponseCode"] == 0
    assert route.call_count == 2


@respx.mock
@pytest.mark.anyio
async def test_async_respx_with_a_fake_clock() -> None:
    clock = FakeClock()
    respx.get("https://usta.test/v1/x").mock(
        side_effect=[fault_response("usta", 9001, retry_after=2), httpx.Response(200, json={"id": 1})]
    )
    async with rc.AsyncUstaClient(
        base_url="https://usta.test", token="t", transport_options=clock.options()
    ) as c:
        assert (await c.get("/v1/x")).json() == {"id": 1}
    assert clock.sleeps == [2.0]


@pytest.mark.parametrize(
    ("vendor", "code", "status"),
    [
        pytest.param("updox", 4010, 200, id="updox-under-200"),
        pytest.param("usta", 3001, 404, id="usta-by-category"),
        pytest.param("medable", "kMediaNotReady", 202, id="medable-documented"),
        pytest.param("hyper", 50, 503, id="hyper-documented"),
    ],
)
def test_fault_body_uses_the_documented_or_typical_status(vendor: str, code: int | str, status: int) -> None:
    found, body = fault_body(vendor, code)
    assert found == status
    catalog = rc.catalog(vendor)
    outcome = rc.classify(
        catalog, found, rc.read_envelope(catalog.envelope, httpx.Response(200, json=body).content)
    )
    assert outcome.code == code


def test_fault_body_refuses_an_unknown_code() -> None:
    with pytest.raises(ValueError, match="hyper has no code 99"):
        fault_body("hyper", 99)
