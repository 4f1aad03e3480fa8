"""What the pipeline tests share: a scripted vendor, policies with small numbers, a recording hook.

Every test here runs a strategy end to end through ``ResilientTransport`` (or a vendor client) on a
fake clock; the scripted vendor is an ``httpx.MockTransport`` handler, so it serves sync and async
clients alike.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import attrs
import httpx

import resilient_client as rc
from resilient_client.testing import FakeClock

Answer = httpx.Response | Exception
Script = Callable[[httpx.Request], Answer]

OK = httpx.Response(200, json={"ResponseCode": 0})
URL = "https://hyper.test/api/items"
JOURNAL = "https://hyper.test/api/journal"


def fresh(answer: httpx.Response) -> httpx.Response:
    """A copy of a canned response (httpx reads a response once)."""
    return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


class Vendor:
    """A scripted vendor: answers in order (the last answer repeats) or by a function of the
    request; records every request that reached it, with the fake time it arrived."""

    def __init__(self, clock: FakeClock, *answers: Answer, script: Script | None = None) -> None:
        self.clock = clock
        self.answers = answers or (OK,)
        self.script = script
        self.requests: list[httpx.Request] = []
        self.times: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
            self.times.append(self.clock.now)
            count = len(self.requests)
        answer = self.script(request) if self.script else self.answers[min(count, len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return fresh(answer)

    @property
    def sent(self) -> int:
        return len(self.requests)


def policy(base: rc.RetryPolicy | str | None = None, **tables: Any) -> rc.RetryPolicy:
    """``base`` (a RetryPolicy, a shipped policy's name, or the default) with whole tables replaced;
    ``retry=`` may be a dict of RetrySettings keys to change."""
    start = rc.RetryPolicy() if base is None else rc.load_policy(base) if isinstance(base, str) else base
    retry = tables.pop("retry", None)
    if isinstance(retry, Mapping):
        tables["retry"] = attrs.evolve(start.retry, **retry)
    elif retry is not None:
        tables["retry"] = retry
    return attrs.evolve(start, **tables)


#: Tables that keep a test about one strategy free of the others.
NO_BUDGET = rc.BudgetSettings(ratio=0.0)
NO_BREAKER = rc.BreakerSettings(enabled=False)


def transport(
    vendor: Vendor | httpx.MockTransport,
    *,
    name: str = "hyper",
    clock: FakeClock | None = None,
    **kwargs: Any,
) -> rc.ResilientTransport:
    inner = vendor if isinstance(vendor, httpx.MockTransport) else httpx.MockTransport(vendor)
    if clock is None:
        assert isinstance(vendor, Vendor)
        clock = vendor.clock
    return rc.ResilientTransport(name, transport=inner, **clock.options(), **kwargs)


class FrozenClock(FakeClock):
    """Time stands still; a sleep only lets other threads and tasks run. For waits that end when
    another call ends (a guard's), so that no fake time runs out while the holder works."""

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        time.sleep(0.0002)  # real-sleep: a poll for a busy key lets the thread holding it run

    async def async_sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await anyio.lowlevel.checkpoint()


def body_of(request: httpx.Request) -> dict[str, Any]:
    loaded = json.loads(request.content or b"{}")
    assert isinstance(loaded, dict)
    return loaded


class Recorder(rc.Hook):
    """Records every event as ``(name, details...)`` in the order the pipeline sends them."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.urls: list[str] = []
        self._lock = threading.Lock()

    def _add(self, *event: Any) -> None:
        with self._lock:
            self.events.append(event)

    def on_call_start(self, call: Any) -> None:
        self._add("call_start", call.request.method)

    def on_attempt_start(self, call: Any, number: int) -> None:
        self._add("attempt_start", number)

    def on_attempt(self, call: Any, event: rc.AttemptEvent) -> None:
        self.urls.append(event.url)
        self._add("attempt", event.attempt, event.decision, event.category)

    def on_retry(self, call: Any, event: rc.RetryEvent) -> None:
        self.urls.append(event.url)
        self._add("retry", event.attempt)

    def on_rejection(self, call: Any, event: rc.RejectionEvent) -> None:
        self.urls.append(event.url)
        self._add("rejection", event.attempt, event.strategy)

    def on_breaker(self, event: rc.BreakerEvent) -> None:
        self._add("breaker", event.state, event.vendor, event.host)

    def on_call_end(self, call: Any, error: BaseException | None) -> None:
        self._add("call_end", None if error is None else type(error).__name__)

    def names(self) -> list[str]:
        return [event[0] for event in self.events]

    def of(self, name: str) -> list[tuple[Any, ...]]:
        return [event[1:] for event in self.events if event[0] == name]


def run_threads(count: int, target: Callable[[int], None], *, timeout: float = 30.0) -> list[BaseException]:
    """Run ``target(i)`` in ``count`` threads released together; the exceptions they raised.

    A thread still running after ``timeout`` is a hang (a deadlock): that fails the test.
    """
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(index: int) -> None:
        barrier.wait()
        try:
            target(index)
        except BaseException as error:
            with lock:
                errors.append(error)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    hung = [t for t in threads if t.is_alive()]
    assert not hung, f"{len(hung)} thread(s) still running after {timeout} s: a deadlock"
    return errors


class Caller:
    """One awaitable request API over an ``httpx.Client`` or an ``httpx.AsyncClient`` of the same
    transport, so one async test body checks the sync and the async shells alike."""

    def __init__(self, transport: httpx.BaseTransport | httpx.AsyncBaseTransport, asynchronous: bool) -> None:
        self.asynchronous = asynchronous
        self.transport = transport
        self._sync = None if asynchronous else httpx.Client(transport=transport)
        self._async = httpx.AsyncClient(transport=transport) if asynchronous else None

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        if self._async is not None:
            return await self._async.request(method, url, **kwargs)
        assert self._sync is not None
        return self._sync.request(method, url, **kwargs)

    async def get(self, url: str = URL, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str = URL, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", url, **kwargs)

    async def close(self) -> None:
        if self._async is not None:
            await self._async.aclose()
        if self._sync is not None:
            self._sync.close()
