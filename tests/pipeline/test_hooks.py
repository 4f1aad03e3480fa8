"""Events through the transport: ``on_retry`` as in 0.1 (sync and async), a custom ``rc.Hook``
hearing every event in order with redacted URLs, the ``resilient_client`` logger's lines, and
``on_call_end`` for every call that leaves the pipeline, however it leaves."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
import attrs
import httpx
import pytest
from pipeline_kit import NO_BUDGET, OK, Caller, Recorder, Vendor, policy, transport

import resilient_client as rc
from resilient_client.strategies.retry import RetryStrategy
from resilient_client.testing import FakeClock

pytestmark = pytest.mark.anyio

SECRET_URL = "https://hyper.test/api/items?api_key=sekrit-key"
BREAK = 10.0
#: One failure opens the circuit: a call's retry is refused by the breaker.
TOUCHY = rc.BreakerSettings(minimum_throughput=1, failure_ratio=1.0, break_duration=BREAK)


def test_retry_event_keeps_its_01_fields() -> None:
    assert [field.name for field in attrs.fields(rc.RetryEvent)] == [
        "vendor",
        "method",
        "url",
        "attempt",
        "wait",
        "cause",
        "category",
        "code",
        "status",
        "error",
    ]


async def test_on_retry_hears_each_retry(mode: str, connect: Callable[[Any], Caller]) -> None:
    events: list[rc.RetryEvent] = []

    async def async_hook(event: rc.RetryEvent) -> None:
        await anyio.lowlevel.checkpoint()
        events.append(event)

    hook: Callable[[rc.RetryEvent], object] = async_hook if mode == "async" else events.append
    clock = FakeClock()
    vendor = Vendor(clock, httpx.Response(503), httpx.Response(429, headers={"Retry-After": "2"}), OK)
    client = connect(transport(vendor, on_retry=hook, random=lambda: 0.5))
    await client.get(SECRET_URL)
    assert [(e.attempt, e.status, e.category, e.wait) for e in events] == [
        (1, 503, "service_unavailable", 0.25),
        (2, 429, "rate_limited", 2.0),
    ]
    assert all(e.vendor == "hyper" and e.method == "GET" for e in events)
    assert all("sekrit" not in e.url and "api_key=" in e.url for e in events)
    assert clock.sleeps == [0.25, 2.0]


async def test_a_custom_hook_hears_every_event_in_order(connect: Callable[[Any], Caller]) -> None:
    clock = FakeClock()
    recorder = Recorder()
    vendor = Vendor(clock, httpx.Response(503), OK)
    client = connect(transport(vendor, policy=policy(breaker=TOUCHY, budget=NO_BUDGET), hooks=[recorder]))
    with pytest.raises(rc.errors.ServiceUnavailableError) as caught:
        await client.get(SECRET_URL)
    clock.sleep(BREAK)
    await client.get(SECRET_URL)
    assert recorder.events == [
        # The first call: its 503 opens the circuit, which refuses its retry.
        ("call_start", "GET"),
        ("attempt_start", 1),
        ("attempt", 1, "retry", "service_unavailable"),
        ("breaker", "open", "hyper", "hyper.test"),
        ("retry", 1),
        ("rejection", 2, "breaker"),
        ("call_end", type(caught.value).__name__),
        # The second, after the break: the probe, its success closing the circuit.
        ("call_start", "GET"),
        ("breaker", "half_open", "hyper", "hyper.test"),
        ("attempt_start", 1),
        ("attempt", 1, "return", "ok"),
        ("breaker", "closed", "hyper", "hyper.test"),
        ("call_end", None),
    ]
    assert len(recorder.urls) == 4
    assert all(url == "https://hyper.test/api/items?api_key=[REDACTED]" for url in recorder.urls)


async def test_a_vendor_clients_hooks_hear_its_calls() -> None:
    clock = FakeClock()
    recorder = Recorder()
    async with rc.AsyncHyperClient(
        base_url="https://hyper.test",
        token="tok",
        hooks=[recorder],
        transport_options=clock.options(),
        transport=httpx.MockTransport(Vendor(clock, httpx.Response(503), OK)),
    ) as client:
        await client.get("/x")
    assert recorder.names() == [
        "call_start",
        "attempt_start",
        "attempt",
        "retry",
        "attempt_start",
        "attempt",
        "call_end",
    ]


def test_the_loggers_retry_line_and_refusal_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="resilient_client")
    vendor = Vendor(FakeClock(), httpx.Response(503))
    resilient = transport(vendor, policy=policy(breaker=TOUCHY, budget=NO_BUDGET), random=lambda: 0.5)
    with httpx.Client(transport=resilient) as client:
        with pytest.raises(rc.errors.ServiceUnavailableError):
            client.get("https://hyper.test/api/items?page=2")
        resilient.breaker.reset()
        with pytest.raises(rc.errors.ServiceUnavailableError):
            client.get(SECRET_URL)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "resilient_client"]
    assert (
        logging.INFO,
        "retry hyper GET https://hyper.test/api/items?page=2: attempt 1/4 failed with service_unavailable; "
        "waiting 0.250 s",
    ) in lines
    assert (
        logging.DEBUG,
        "hyper GET https://hyper.test/api/items?page=2: attempt 2 not sent: circuit open (breaker)",
    ) in lines
    assert sum(level == logging.INFO for level, _ in lines) == 2
    assert "sekrit" not in caplog.text


# -- on_call_end, however the call leaves -------------------------------------------------------------


async def test_on_call_end_hears_an_error_that_is_not_httpxs(connect: Callable[[Any], Caller]) -> None:
    recorder = Recorder()
    vendor = Vendor(FakeClock(), RuntimeError("a bug in the inner transport"))
    client = connect(transport(vendor, hooks=[recorder]))
    with pytest.raises(RuntimeError):
        await client.get()
    assert recorder.names()[0] == "call_start"
    assert recorder.events[-1] == ("call_end", "RuntimeError")


async def test_on_call_end_hears_a_call_cancelled_while_it_waits_to_retry() -> None:
    recorder = Recorder()
    clock = FakeClock()
    vendor = Vendor(clock, httpx.Response(503), OK)

    async def cancelled_sleep(seconds: float) -> None:
        scope.cancel()
        await anyio.lowlevel.checkpoint()

    resilient = rc.ResilientTransport(
        "hyper",
        transport=httpx.MockTransport(vendor),
        clock=clock,
        async_sleep=cancelled_sleep,
        random=lambda: 0.5,
        hooks=[recorder],
    )
    async with httpx.AsyncClient(transport=resilient) as client:
        with anyio.CancelScope() as scope:
            await client.get("https://hyper.test/x")
    assert scope.cancelled_caught
    assert vendor.sent == 1
    assert recorder.names()[-1] == "call_end"
    assert recorder.events[-1][1] is not None  # the cancellation, not a response


# -- a retry event is built only for a hook that hears it ---------------------------------------------


class Deaf(rc.Hook):
    """A hook that does not hear retries now (as the logging hook while INFO is off)."""

    def __init__(self) -> None:
        self.heard: list[rc.RetryEvent] = []

    def hears_retries(self) -> bool:
        return False

    def on_retry(self, call: Any, event: rc.RetryEvent) -> None:
        self.heard.append(event)


async def test_a_hook_that_does_not_hear_retries_gets_no_event(
    mode: str, connect: Callable[[Any], Caller], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="resilient_client")  # the logging hook hears none either
    deaf, hearing = Deaf(), Recorder()
    vendor = Vendor(FakeClock(), httpx.Response(503), OK)
    client = connect(transport(vendor, hooks=[deaf, hearing], random=lambda: 0.5))
    await client.get(SECRET_URL)
    assert deaf.heard == []
    assert [event for event in hearing.events if event[0] == "retry"] == [("retry", 1)]


async def test_no_retry_event_is_built_when_no_hook_hears_it(
    mode: str,
    connect: Callable[[Any], Caller],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Building the event redacts the URL and the cause: nobody listening, nobody pays for it.
    caplog.set_level(logging.WARNING, logger="resilient_client")

    def never(*args: object) -> rc.RetryEvent:
        raise AssertionError("a retry event was built for nobody")

    monkeypatch.setattr(RetryStrategy, "_event", never)
    deaf = Deaf()
    vendor = Vendor(FakeClock(), httpx.Response(503), OK)
    client = connect(transport(vendor, hooks=[deaf], random=lambda: 0.5))
    response = await client.get(SECRET_URL)
    assert response.extensions[rc.ATTEMPTS_EXTENSION] == 2
    assert deaf.heard == []


@pytest.mark.parametrize(
    ("level", "hears"),
    [
        pytest.param(logging.INFO, True, id="info"),
        pytest.param(logging.DEBUG, True, id="debug"),
        pytest.param(logging.WARNING, False, id="warning"),
    ],
)
def test_the_logging_hook_hears_retries_while_info_is_on(
    level: int, hears: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(level, logger="resilient_client")
    assert rc.instrumentation.LoggingHook().hears_retries() is hears
