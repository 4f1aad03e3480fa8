"""The retry loop under concurrency: each call keeps its own tenacity controller and state, whether
calls run in threads or interleave as tasks of one thread (their async retry hooks awaited between
tenacity's steps), with asyncio and trio."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest

import resilient_client as rc
from resilient_client.strategies import retry as retry_module
from resilient_client.testing import FakeClock

CALLS = 16
OK = b'{"ResponseCode": 0, "ResponseMsgEng": "Success"}'


class FailsOnceEach:
    """Answers 503 to the first request of each call (told apart by its path), 200 after."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            first = request.url.path not in self.seen
            self.seen.add(request.url.path)
        if first:
            return httpx.Response(503)
        return httpx.Response(200, content=OK, headers={"content-type": "application/json"})


def transport(on_retry: Any, handler: Any = None) -> rc.ResilientTransport:
    return rc.ResilientTransport(
        "hyper",
        transport=httpx.MockTransport(handler or FailsOnceEach()),
        # Every call fails once: neither the budget nor the breaker may refuse a retry here.
        policy=rc.RetryPolicy(budget=rc.BudgetSettings(ratio=1.0), breaker=rc.BreakerSettings(enabled=False)),
        on_retry=on_retry,
        random=lambda: 0.5,
        **FakeClock().options(),
    )


def test_calls_in_threads_retry_each_on_their_own() -> None:
    events: list[rc.RetryEvent] = []
    attempts: dict[int, int] = {}
    with httpx.Client(transport=transport(events.append)) as client:

        def call(index: int) -> None:
            response = client.get(f"https://hyper.test/items/{index}")
            attempts[index] = response.extensions[rc.ATTEMPTS_EXTENSION]

        threads = [threading.Thread(target=call, args=(i,)) for i in range(CALLS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert attempts == dict.fromkeys(range(CALLS), 2)
    assert sorted(e.url for e in events) == sorted(f"https://hyper.test/items/{i}" for i in range(CALLS))
    assert all(e.attempt == 1 and e.status == 503 for e in events)


@pytest.mark.anyio
async def test_calls_in_tasks_retry_each_on_their_own() -> None:
    events: list[rc.RetryEvent] = []

    async def hook(event: rc.RetryEvent) -> None:
        await anyio.lowlevel.checkpoint()  # other calls step their loops meanwhile
        events.append(event)

    attempts: dict[int, int] = {}
    async with httpx.AsyncClient(transport=transport(hook)) as client:

        async def call(index: int) -> None:
            response = await client.get(f"https://hyper.test/items/{index}")
            attempts[index] = response.extensions[rc.ATTEMPTS_EXTENSION]

        async with anyio.create_task_group() as group:
            for index in range(CALLS):
                group.start_soon(call, index)
    assert attempts == dict.fromkeys(range(CALLS), 2)
    assert sorted(e.url for e in events) == sorted(f"https://hyper.test/items/{i}" for i in range(CALLS))
    assert all(e.attempt == 1 and e.status == 503 for e in events)


def _three_calls_answers() -> Callable[[httpx.Request], httpx.Response]:
    """503, 503, 200 | 503, 200 | 503, 503, 200: three calls of 3, 2 and 3 attempts."""
    answers = iter([503, 503, 200, 503, 200, 503, 503, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        if next(answers) == 503:
            return httpx.Response(503)
        return httpx.Response(200, content=OK, headers={"content-type": "application/json"})

    return handler


def test_a_controller_serves_one_call_after_another() -> None:
    # Controllers of ended calls are kept for the next retried call: none may carry a count over.
    handler = _three_calls_answers()

    events: list[rc.RetryEvent] = []
    with httpx.Client(transport=transport(events.append, handler)) as client:
        attempts = [
            client.get("https://hyper.test/items").extensions[rc.ATTEMPTS_EXTENSION] for _ in range(3)
        ]
    assert attempts == [3, 2, 3]
    assert [e.attempt for e in events] == [1, 2, 1, 1, 2]


@pytest.mark.anyio
async def test_a_controller_serves_one_async_call_after_another() -> None:
    # The async shell reuses the controllers and their call states as the sync one does.
    handler = _three_calls_answers()

    events: list[rc.RetryEvent] = []
    async with httpx.AsyncClient(transport=transport(events.append, handler)) as client:
        attempts = [
            (await client.get(f"https://hyper.test/items/{i}")).extensions[rc.ATTEMPTS_EXTENSION]
            for i in range(3)
        ]
    assert attempts == [3, 2, 3]
    assert [(e.attempt, e.url) for e in events] == [
        (1, "https://hyper.test/items/0"),
        (2, "https://hyper.test/items/0"),
        (1, "https://hyper.test/items/1"),
        (1, "https://hyper.test/items/2"),
        (2, "https://hyper.test/items/2"),
    ]


def test_an_idle_controller_keeps_nothing_of_the_call_it_served() -> None:
    # A controller waits in the pool with its call state: the ended call's request and responses
    # must not live on in it.
    retried = transport(None)
    with httpx.Client(transport=retried) as client:
        response = client.get("https://hyper.test/items/once")
    assert response.extensions[rc.ATTEMPTS_EXTENSION] == 2
    (controller,) = retried._pipeline.retry._idle
    state = controller.state
    assert (state.call, state.result, state.outcome) == (None, None, None)
    assert state.awaiting == []


def test_tenacity_state_has_the_fields_a_reused_state_sets_again() -> None:
    # Should tenacity add one, each retried call gets a new state (as below): this says so.
    assert retry_module._REUSES_STATE


def test_with_a_new_state_per_call_a_controller_still_serves_one_call_after_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(retry_module, "_REUSES_STATE", False)
    test_a_controller_serves_one_call_after_another()
