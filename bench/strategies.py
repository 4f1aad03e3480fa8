"""The resilience strategies' bars (SPEC sections 7 and 8), measured against the simulator.

- attempts per request under a total outage at 2 requests a second for 10 simulated minutes,
  default policy: once the circuit breaker has opened (bar <= 0.1)
- attempts per request under a total outage, 1,000 requests, the retry budget alone (breaker off):
  bar <= 1.2 + burst / 1,000
- a Hyper-like gateway limit of 20 requests a minute (``sim.rate_limit("hyper", 20, period=60.0)``),
  8 threads, 200 calls: the share of calls answered 429 with the shipped hyper policy (fixed rate
  and adaptive), with the adaptive limiter alone, and with ``[rate_limit] enabled = false``

The simulator runs in process (``httpx.ASGITransport``, driven from sync clients by ``SyncASGI``)
and everything runs on simulated time (``VirtualClock``), so ten minutes take about a second.
Prints one line per bar.
"""

from __future__ import annotations

import contextlib
import heapq
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio
import attrs
import httpx

import resilient_client as rc
from resilient_client.simulator import Simulator

VENDOR = "hyper"
URL = "http://hyper.test/hyper/api/items"


class VirtualClock:
    """Simulated time shared by ``workers`` threads: time stands still while any of them runs, and
    when all of them sleep it jumps to the earliest wake-up (trio's ``MockClock`` autojump, for
    threads). So threads that wait concurrently overlap their waits, as they would in real time,
    and a limiter's pacing or a Retry-After costs nothing real."""

    def __init__(self, workers: int = 1, start: float = 1000.0, wall_start: float = 1_700_000_000.0) -> None:
        self.now = start
        self._wall_offset = wall_start - start
        self._running = workers
        self._wakes: list[float] = []
        self._changed = threading.Condition()

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now + self._wall_offset

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._changed:
            wake = self.now + seconds
            heapq.heappush(self._wakes, wake)
            self._running -= 1
            self._advance()
            while self.now < wake:
                self._changed.wait()

    def advance_to(self, when: float) -> None:
        """Sleep until ``when`` (a single worker's pacing between its requests)."""
        self.sleep(when - self.now)

    def done(self) -> None:
        """A worker has finished: it no longer holds time still."""
        with self._changed:
            self._running -= 1
            self._advance()

    def _advance(self) -> None:
        if self._running > 0 or not self._wakes:
            return
        self.now = max(self.now, self._wakes[0])
        while self._wakes and self._wakes[0] <= self.now:
            heapq.heappop(self._wakes)
            self._running += 1  # counted here, so no other sleeper can jump time before it wakes
        self._changed.notify_all()

    def options(self) -> dict[str, Any]:
        return {"clock": self, "wall_clock": self.wall, "sleep": self.sleep}


class SyncASGI(httpx.BaseTransport):
    """An ASGI app (the simulator) for a sync client: each request runs the app in an event loop of
    its own, so threads may share it."""

    def __init__(self, app: Simulator) -> None:
        self._asgi = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def send() -> httpx.Response:
            response = await self._asgi.handle_async_request(request)
            content = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=content)

        return anyio.run(send)


def transport(
    policy: rc.RetryPolicy, sim: Simulator, clock: VirtualClock, **more: Any
) -> rc.ResilientTransport:
    return rc.ResilientTransport(VENDOR, policy=policy, transport=SyncASGI(sim), **clock.options(), **more)


def outcome(call: Callable[[], httpx.Response]) -> str:
    """What a call ended with: ``"ok"``, a vendor fault's category (``"rate_limited"``: answered
    429), or the class of the refusal or transport error it raised (``"ThrottledError"``: the
    limiter sent nothing)."""
    try:
        call()
    except rc.errors.ApiError as error:
        return error.category
    except httpx.HTTPError as error:
        return type(error).__name__
    return "ok"


# -- outage -----------------------------------------------------------------------------------------


class BreakerWatch(rc.Hook):
    def __init__(self) -> None:
        self.opened_at: float | None = None
        self.changes: Counter[str] = Counter()
        self.clock: VirtualClock | None = None

    def on_breaker(self, event: rc.BreakerEvent) -> None:
        self.changes[event.state] += 1
        if event.state == "open" and self.opened_at is None and self.clock is not None:
            self.opened_at = self.clock.now


@attrs.frozen
class OutageRun:
    requests: int
    attempts: int
    #: Requests sent from the moment the breaker first opened, and the attempts they made.
    requests_after_open: int
    attempts_after_open: int
    endings: Counter[str]
    breaker_changes: Counter[str]


def outage(policy: rc.RetryPolicy, requests: int, per_second: float = 2.0) -> OutageRun:
    """``requests`` GETs at ``per_second`` during a total outage (every answer a 503 page)."""
    clock = VirtualClock()
    sim = Simulator(clock=clock)
    sim.outage(VENDOR, status=503)
    watch = BreakerWatch()
    watch.clock = clock
    endings: Counter[str] = Counter()
    after_open = attempts_after_open = 0
    start = clock.now
    with httpx.Client(transport=transport(policy, sim, clock, hooks=[watch])) as client:
        for index in range(requests):
            clock.advance_to(start + index / per_second)
            opened = watch.opened_at is not None
            before = sim.outage_answers[VENDOR]
            endings[outcome(lambda: client.get(URL))] += 1
            if opened:
                after_open += 1
                attempts_after_open += sim.outage_answers[VENDOR] - before
    clock.done()
    return OutageRun(
        requests, sim.outage_answers[VENDOR], after_open, attempts_after_open, endings, watch.changes
    )


def default_policy() -> rc.RetryPolicy:
    return rc.load_policy("default")


# -- rate limit -------------------------------------------------------------------------------------


@attrs.frozen
class RateRun:
    calls: int
    endings: Counter[str]
    requests: int
    answered_429: int
    minutes: float


def rate_limited(policy: rc.RetryPolicy, threads: int = 8, calls: int = 200) -> RateRun:
    """``calls`` GETs from ``threads`` threads through one transport, against a gateway that lets
    20 requests a minute through and answers 429 with Retry-After past that."""
    clock = VirtualClock(workers=threads)
    sim = Simulator(clock=clock)
    sim.rate_limit(VENDOR, 20, period=60.0)
    endings: Counter[str] = Counter()
    lock = threading.Lock()
    start = clock.now
    with httpx.Client(transport=transport(policy, sim, clock)) as client:

        def worker(share: int) -> None:
            try:
                for _ in range(share):
                    ending = outcome(lambda: client.get(URL))
                    with lock:
                        endings[ending] += 1
            finally:
                clock.done()

        shares = [calls // threads + (index < calls % threads) for index in range(threads)]
        workers = [threading.Thread(target=worker, args=(share,)) for share in shares]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
    return RateRun(
        calls,
        endings,
        sum(sim.requests.values()),
        sim.rate_limited[VENDOR],
        (clock.now - start) / 60,
    )


def rate_limit_policies() -> dict[str, rc.RetryPolicy]:
    hyper = rc.load_policy("hyper")
    adaptive_only = attrs.evolve(hyper.rate_limit, enabled=True, requests=0, burst=1, adaptive=True)
    return {
        "shipped hyper policy (20/min, burst 20, adaptive)": hyper,
        "adaptive limiter alone (no fixed rate)": attrs.evolve(hyper, rate_limit=adaptive_only),
        "[rate_limit] enabled = false": attrs.evolve(
            hyper, rate_limit=attrs.evolve(hyper.rate_limit, enabled=False)
        ),
    }


def share(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100 * part / whole:.1f} %)"


def main() -> None:
    run = outage(default_policy(), requests=1200)
    per_request = run.attempts_after_open / run.requests_after_open
    print(
        f"total outage, default policy, 2 req/s for 10 min: {run.attempts_after_open} attempts for the "
        f"{run.requests_after_open} requests after the breaker opened = {per_request:.3f} per request "
        f"(bar <= 0.1: {'met' if per_request <= 0.1 else 'NOT met'}); all {run.requests} requests: "
        f"{run.attempts / run.requests:.3f}; breaker {dict(run.breaker_changes)}; endings {dict(run.endings)}"
    )
    policy = default_policy()
    budget_only = attrs.evolve(policy, breaker=attrs.evolve(policy.breaker, enabled=False))
    run = outage(budget_only, requests=1000)
    bar = 1.2 + policy.budget.burst / 1000
    per_request = run.attempts / run.requests
    print(
        f"total outage, budget alone (ratio {policy.budget.ratio:g}, burst {policy.budget.burst:g}, breaker off), "
        f"1,000 requests: {per_request:.3f} attempts per request "
        f"(bar <= {bar:.3f}: {'met' if per_request <= bar else 'NOT met'})"
    )
    for name, limited in rate_limit_policies().items():
        result = rate_limited(limited)
        print(
            f"Hyper gateway 20/min, 8 threads, 200 calls, {name}: calls ending in 429 "
            f"{share(result.endings['rate_limited'], result.calls)}; requests answered 429 "
            f"{share(result.answered_429, result.requests)}; endings {dict(result.endings)}; "
            f"{result.minutes:.1f} simulated minutes"
        )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
