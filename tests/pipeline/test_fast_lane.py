"""The transport's fast lane (``_transport``'s module docstring): a call of a budget-and-breaker
pipeline over the in-process store that simply succeeds makes no store operation and builds no
pipeline object; every other answer is handed to the pipeline as its first attempt, already sent,
so nothing is sent twice and every strategy and hook sees what it would have seen."""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pipeline_kit import OK, URL, Caller, Recorder, Vendor, policy, recorded_store_calls, transport

import resilient_client as rc
from resilient_client._pipeline import Call
from resilient_client.testing import FakeClock

pytestmark = pytest.mark.anyio

OPERATIONS = ("deposit", "try_spend", "record_outcome", "record_successes", "circuit", "try_probe")


@pytest.fixture
def store_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every MemoryState operation of the test, by name."""
    return recorded_store_calls(monkeypatch, OPERATIONS)


def default(vendor: Vendor, **kwargs: Any) -> rc.ResilientTransport:
    return transport(vendor, policy=rc.load_policy("default"), **kwargs)


async def test_successes_make_no_store_operation_after_the_hosts_first_call(
    connect: Callable[[Any], Caller], store_calls: list[str]
) -> None:
    resilient = default(Vendor(FakeClock(), OK))
    client = connect(resilient)
    await client.get()  # the host's first call takes the pipeline's way (it makes the breaker)
    store_calls.clear()
    for _ in range(20):
        response = await client.get()
        assert response.extensions[rc.ATTEMPTS_EXTENSION] == 1
    assert store_calls == []
    # Still counted: the budget earned 20 requests' shares, the breaker saw 20 successes.
    budget = resilient._pipeline.retry.budget(resilient.policy)
    assert budget.earned.take() == 20


async def test_a_fault_after_the_lane_continues_in_the_pipeline_without_sending_again(
    connect: Callable[[Any], Caller], store_calls: list[str]
) -> None:
    vendor = Vendor(FakeClock(), OK, httpx.Response(500), OK)
    client = connect(default(vendor))
    await client.get()
    store_calls.clear()
    response = await client.get()  # 500 (retried: GET is idempotent), then 200
    assert response.extensions[rc.ATTEMPTS_EXTENSION] == 2
    assert vendor.sent == 3
    assert "record_outcome" in store_calls  # the breaker weighed the 500


async def test_a_post_answered_500_by_the_lane_is_sent_once_and_raised(
    connect: Callable[[Any], Caller],
) -> None:
    vendor = Vendor(FakeClock(), OK, httpx.Response(500, json={"ResponseCode": 99}))
    client = connect(default(vendor))
    await client.get()
    with pytest.raises(rc.errors.ApiError) as caught:
        await client.post(json={"AccountNo": 1})
    assert caught.value.attempts == 1
    assert "may have been processed" in caught.value.reason
    assert vendor.sent == 2


async def test_a_transport_error_in_the_lane_is_the_pipelines_first_attempt(
    connect: Callable[[Any], Caller],
) -> None:
    vendor = Vendor(FakeClock(), OK, httpx.ConnectError("refused"), OK)
    client = connect(default(vendor))
    await client.get()
    response = await client.get()
    assert response.extensions[rc.ATTEMPTS_EXTENSION] == 2
    assert vendor.sent == 3


async def test_an_open_circuit_takes_the_pipelines_way_and_refuses(connect: Callable[[Any], Caller]) -> None:
    breaker = rc.BreakerSettings(minimum_throughput=2, failure_ratio=0.5, break_duration=60.0)
    vendor = Vendor(FakeClock(), OK, httpx.Response(503), httpx.Response(503), httpx.Response(503), OK)
    client = connect(transport(vendor, policy=policy(breaker=breaker, retry={"max_attempts": 1})))
    await client.get()
    with pytest.raises(rc.errors.ServiceUnavailableError):
        await client.get()  # one failure of two: the circuit opens
    sent = vendor.sent
    with pytest.raises(rc.errors.CircuitOpenError):
        await client.get()
    assert vendor.sent == sent


async def test_a_hook_that_hears_successes_turns_the_lane_off(connect: Callable[[Any], Caller]) -> None:
    recorder = Recorder()
    client = connect(default(Vendor(FakeClock(), OK), hooks=[recorder]))
    for _ in range(3):
        await client.get()
    assert recorder.names().count("call_start") == 3
    assert recorder.names().count("call_end") == 3


def hyper(body: bytes, content_type: str = "application/json") -> httpx.Response:
    return httpx.Response(200, content=body, headers={"content-type": content_type})


SUCCESS = {"ResponseCode": 0, "ResponseMsgEng": "Success", "Items": [1, 2, 3]}


@pytest.mark.parametrize(
    ("body", "fault_code"),
    [
        pytest.param(json.dumps(SUCCESS).encode(), None, id="hyper-writes-its-code-first"),
        pytest.param(json.dumps(SUCCESS, separators=(",", ":")).encode(), None, id="compact"),
        pytest.param(b'{"Items": [], "ResponseCode": 0}', None, id="code-last"),
        pytest.param(b' \n{"ResponseCode": 0, "x": 1}', None, id="leading-whitespace"),
        pytest.param(b'{"ResponseCode": 0, "x": 1, "ResponseCode": 7}', 7, id="key-twice-last-wins"),
        pytest.param(b'{"ResponseCode": 0, "Respons\\u0065Code": 7}', 7, id="escape-spells-the-key"),
        pytest.param(json.dumps({"ResponseCode": 7}).encode("utf-16"), 7, id="utf-16"),
        pytest.param(
            codecs.BOM_UTF8 + json.dumps({"ResponseCode": 7, "m": '"ResponseCode": 0,'}).encode(),
            7,
            id="the-success-spelled-inside-a-string",
        ),
        pytest.param(b'{"ResponseCode": 10, "ResponseMsgEng": "locked"}', 10, id="a-fault"),
    ],
)
async def test_the_lane_classifies_every_body_as_the_pipeline_does(
    connect: Callable[[Any], Caller], body: bytes, fault_code: int | None
) -> None:
    results = []
    for hooks in ([], [Recorder()]):  # the lane, and the pipeline's way (a hook hears successes)
        vendor = Vendor(FakeClock(), OK, hyper(body))
        client = connect(transport(vendor, policy=policy(retry={"max_attempts": 1}), hooks=hooks))
        await client.get()
        try:
            await client.get()
            results.append(None)
        except rc.errors.HyperError as error:
            results.append(error.code)
    assert results == [fault_code, fault_code]


async def test_a_body_past_the_read_cap_passes_unclassified(connect: Callable[[Any], Caller]) -> None:
    big = json.dumps({"ResponseCode": 7, "Items": ["x" * 100] * 20}).encode()
    capped = policy(body=rc.BodySettings(max_read_bytes=1000))
    vendor = Vendor(FakeClock(), OK, hyper(big))
    client = connect(transport(vendor, policy=capped))
    await client.get()
    response = await client.get()
    assert response.content == big


def test_the_lane_reads_the_url_host_as_httpx_keeps_it() -> None:
    url = httpx.URL(URL)
    assert url._uri_reference.host == url.host


@pytest.mark.parametrize(
    ("url", "host"),
    [
        pytest.param("https://hyper.test/items", "hyper.test", id="ascii"),
        pytest.param("https://b\u00fccher.example/items", "b\u00fccher.example", id="idna"),
    ],
)
def test_a_call_the_lane_resumed_has_the_host_a_pipeline_call_has(url: str, host: str) -> None:
    # The resumed call takes its host from the breaker the lane found, not from the URL again.
    seen: list[tuple[str, bool]] = []

    class Hosts(rc.Hook):
        def on_retry(self, call: Call, event: rc.RetryEvent) -> None:
            seen.append((call.host, retried.breaker.state == "closed"))

    answers = iter([503, 200] * 3)

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(answers)
        body = b'{"ResponseCode": 0}' if status == 200 else b""
        return httpx.Response(status, content=body, headers={"content-type": "application/json"})

    retried = rc.ResilientTransport(
        "hyper",
        transport=httpx.MockTransport(handler),
        policy=policy(budget=rc.BudgetSettings(ratio=1.0)),
        hooks=[Hosts()],
        random=lambda: 0.5,
        **FakeClock().options(),
    )
    with httpx.Client(transport=retried) as client:
        for _ in range(3):  # the first call makes the host's breaker, the lane begins the others
            assert client.get(url).extensions[rc.ATTEMPTS_EXTENSION] == 2
    assert seen == [(host, True)] * 3
