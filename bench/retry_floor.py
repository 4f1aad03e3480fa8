"""What one retry must cost at the least, beside what httpx-retries' and the SDK's retries cost.

SPEC section 7 asks that one retry (a GET answered 503, then 200; waits off) cost the SDK no more
than it costs httpx-retries' ``RetryTransport``. This script splits that cost, to show how much of
it any retry pays, how much tenacity pays (SPEC section 4 makes tenacity's ``Retrying`` the retry
loop), and how much the least that sections 4 and 8 ask of a retry adds, written out by hand with no
structure at all. Every side is a transport over the same ``httpx.MockTransport`` (503 then 200, or
200 alone), sent through an ``httpx.Client`` / ``httpx.AsyncClient``; a retry's own cost is a
503-then-200 request less a 200 one.

Sides:
- ``second send``: on a 503, close it and send again; nothing else. What every retry pays: the
  vendor's second answer (the mock builds a Response) and the discarded first.
- ``+ tenacity``: the same, with tenacity's loop deciding, as the SDK drives it (``_Retrying``, the
  SDK's lighter outcome, the first answer its first outcome, two ``iter`` steps).
- ``sketch``: the least SPEC sections 4 and 8 ask of this retry, inlined in one method with the
  SDK's own parts: the 200 proved fault-free by the vendor's scan, the 503 classified by the
  catalog, the Retry-After headers looked for, method safety, attempts, a jittered backoff under
  the deadline, the breaker's failure counted and the budget spent in the in-process store,
  tenacity's two steps, the logger asked whether it logs the retry, the second answer proved
  fault-free and counted, the attempt count set. No Call, no Attempt, no event, no strategy
  objects: what no implementation that keeps the SDK's structure can get under.
- ``httpx-retries``: its ``RetryTransport`` (backoff 0: its async retry awaits ``asyncio.sleep(0)``,
  its sync one calls ``time.sleep(0)``).
- ``resilient``: the SDK, under the benchmark policy of ``overhead.py`` (default policy; a budget
  that earns a token per request and a breaker that opens only above 90 % failures).

Times are CPU time of this thread, short batches of each side in turn (``overhead.py``'s rounds).
``--instructions`` counts machine instructions instead (valgrind's callgrind, deterministic: each
side run alone in a child process, at two request counts, the difference divided).
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import tenacity
from httpx_retries import RetryTransport

import resilient_client as rc
from resilient_client._classify import classify
from resilient_client._envelopes import no_fault_scanner
from resilient_client._pipeline import Hooks
from resilient_client.stores import MemoryState, RecordOutcome, TrySpend
from resilient_client.strategies.retry import RetryStrategy, _CallState, _Retrying

sys.path.insert(0, os.path.dirname(__file__))
import overhead  # the measuring rounds and the transports of the retry bar

SIDES = ("second send", "+ tenacity", "sketch", "httpx-retries", "resilient")
KINDS = ("200", "503+200")  # a request answered 200; one answered 503, then 200
RETRY_HEADERS = frozenset({b"retry-after", b"retry-after-ms", b"x-rate-limit-reset"})
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def _controller() -> _Retrying:
    """A tenacity controller as the SDK builds one (its call state kept on it, reused per call)."""

    def wants_retry(state: tenacity.RetryCallState) -> bool:
        return bool(state.result[0] == "retry")  # type: ignore[attr-defined]

    strategy = RetryStrategy(MemoryState(), overhead.VENDOR, Hooks([]))
    return _Retrying(
        strategy,
        retry=wants_retry,
        wait=lambda state: 0.0,
        stop=tenacity.stop_never,
        after=None,
        reraise=True,
    )


def _retry_decided(retrying: _Retrying, first: httpx.Response) -> _CallState:
    """tenacity's first step: the first answer its first outcome, a retry after a wait of 0."""
    retrying.begin()
    state = retrying.state
    state.start(None, ("retry", first))  # type: ignore[arg-type]
    retrying.iter(state)
    state.prepare_for_next_attempt()
    return state


def _return_decided(retrying: _Retrying, state: _CallState, second: httpx.Response) -> None:
    """tenacity's second step: the second answer returned; the controller free for the next call."""
    state.settle(("return", second))  # type: ignore[arg-type]
    retrying.iter(state)
    state.end()


class SecondSend(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """On a 503, send again: nothing else (``tenacity=True``: with tenacity's loop deciding)."""

    def __init__(self, inner: httpx.MockTransport, tenacity_loop: bool = False) -> None:
        self.inner = inner
        self.retrying = _controller() if tenacity_loop else None

    def _begin(self, first: httpx.Response) -> _CallState | None:
        return None if self.retrying is None else _retry_decided(self.retrying, first)

    def _end(self, state: _CallState | None, second: httpx.Response) -> None:
        if state is not None:
            assert self.retrying is not None
            _return_decided(self.retrying, state, second)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if response.status_code == 503:
            state = self._begin(response)
            response.close()
            response = self.inner.handle_request(request)
            self._end(state, response)
        return response

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if response.status_code == 503:
            state = self._begin(response)
            await response.aclose()
            response = await self.inner.handle_async_request(request)
            self._end(state, response)
        return response


class Sketch(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """The least SPEC sections 4 and 8 ask of this retry, written out (see the module docstring)."""

    def __init__(self, inner: httpx.MockTransport) -> None:
        self.inner = inner
        self.catalog = rc.catalog(overhead.VENDOR)
        scan = no_fault_scanner(self.catalog.envelope)
        assert scan is not None
        self.scan = scan
        self.store = MemoryState()
        self.successes = itertools.count()
        self.earned = itertools.count()
        self.retrying = _controller()
        self.log = logging.getLogger("resilient_client")
        self.policy = overhead.retry_policy().retry

    def _first(self, request: httpx.Request, response: httpx.Response, started: float) -> _CallState | None:
        """None: ``response`` is the call's answer; else tenacity's state, a retry decided."""
        if response.status_code < 300 and self.scan(response.content):
            next(self.successes)  # counted, written to the store in batches (as the SDK's lane)
            next(self.earned)
            response.extensions["resilient_client.attempts"] = 1
            return None
        outcome = classify(self.catalog, response.status_code, None)  # an empty body: its status
        retry_after = None
        for name, value in response.headers.raw:
            if name.lower() in RETRY_HEADERS:
                retry_after = float(value)
        policy = self.policy
        if (
            outcome.category not in policy.categories
            or request.method not in IDEMPOTENT
            or policy.max_attempts < 2
        ):
            return None
        wait = retry_after if retry_after is not None else policy.initial_wait * 0.5  # a jitter draw
        if wait >= started + policy.total_timeout - time.monotonic():
            return None
        self.store.run(RecordOutcome("breaker", True, 30.0), started)
        if not self.store.run(TrySpend("budget", 1.0, 10.0, earned=1.0), started):
            return None
        state = _retry_decided(self.retrying, response)
        if self.log.isEnabledFor(logging.INFO):
            self.log.info("retrying")
        return state

    def _second(self, state: _CallState, response: httpx.Response, started: float) -> httpx.Response:
        if response.status_code < 300 and self.scan(response.content):
            next(self.successes)
        _return_decided(self.retrying, state, response)
        response.extensions["resilient_client.attempts"] = 2
        return response

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        started = time.monotonic()
        response = self.inner.handle_request(request)
        state = self._first(request, response, started)
        if state is None:
            return response
        response.close()
        return self._second(state, self.inner.handle_request(request), started)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = time.monotonic()
        response = await self.inner.handle_async_request(request)
        state = self._first(request, response, started)
        if state is None:
            return response
        await response.aclose()
        return self._second(state, await self.inner.handle_async_request(request), started)


def transport(side: str, retried: bool) -> Any:
    inner = (overhead.flaky(503) if retried else overhead.mock(overhead.SMALL))()
    if side == "second send":
        return SecondSend(inner)
    if side == "+ tenacity":
        return SecondSend(inner, tenacity_loop=True)
    if side == "sketch":
        return Sketch(inner)
    if side == "httpx-retries":
        return RetryTransport(transport=inner)
    return rc.ResilientTransport(overhead.VENDOR, policy=overhead.retry_policy(), transport=inner)


def timed_case(sync: bool, count: int, rounds: int) -> dict[str, list[float]]:
    transports = {f"{side} {kind}": transport(side, kind != "200") for side in SIDES for kind in KINDS}
    return overhead.retried_rounds(transports, sync, count, rounds)


# -- instructions ---------------------------------------------------------------------------------


def child(side: str, kind: str, driver: str, count: int) -> None:
    """Run ``count`` requests through one side (under callgrind, see ``instructions``)."""
    target = transport(side, kind != "200")
    if driver == "sync":
        client = httpx.Client(transport=target)
        for _ in range(count):
            client.get("http://x/").read()
        return

    async def run() -> None:
        aclient = httpx.AsyncClient(transport=target)
        for _ in range(count):
            await (await aclient.get("http://x/")).aread()

    anyio.run(run, backend="asyncio")


def instructions(side: str, kind: str, driver: str) -> int:
    """Machine instructions per request: two runs of the child, the difference divided."""

    def collected(count: int) -> int:
        return overhead.instructions_collected(__file__, "--child", side, kind, driver, str(count))

    return (collected(2500) - collected(500)) // 2000


def report(driver: str, cost: Callable[[str], float], unit: str) -> None:
    own = {side: cost(f"{side} 503+200") - cost(f"{side} 200") for side in SIDES}
    peer = own["httpx-retries"]
    print(f"one retry's own cost, {driver} ({unit}; a 503+200 request less a 200 one):")
    for side in SIDES:
        print(f"  {side:14s} {own[side]:12,.1f}  ({own[side] / peer:5.2f}x httpx-retries)")
    print(
        f"  of httpx-retries' retry, the second send is {own['second send'] / peer:.0%} and tenacity's "
        f"loop adds {(own['+ tenacity'] - own['second send']) / peer:.0%}; the sketch of the least "
        f"SPEC 4 and 8 ask is {own['sketch'] / peer:.2f}x, the SDK {own['resilient'] / peer:.2f}x"
    )


def main() -> None:
    if "--child" in sys.argv:
        side, kind, driver, count = sys.argv[sys.argv.index("--child") + 1 :]
        rc.set_testing(True)
        child(side, kind, driver, int(count))
        return
    rc.set_testing(True)
    drivers = ("sync", "async")
    if "--instructions" in sys.argv:
        if shutil.which("valgrind") is None:
            sys.exit("--instructions needs valgrind (apt install valgrind)")
        for driver in drivers:
            counts = {f"{s} {k}": float(instructions(s, k, driver)) for s in SIDES for k in KINDS}
            report(driver, counts.__getitem__, "instructions")
        return
    count, rounds = (10, 4) if "--quick" in sys.argv else (50, 60)
    for driver in drivers:
        times = timed_case(driver == "sync", count, rounds)
        medians = {name: statistics.median(batches) / count * 1e6 for name, batches in times.items()}
        report(driver, medians.__getitem__, "us")


if __name__ == "__main__":
    main()
