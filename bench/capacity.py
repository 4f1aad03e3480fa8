"""A vendor of limited, unknown capacity (SPEC sections 7 and 10): goodput side by side.

The simulator runs under uvicorn on loopback (``simulator.serve``, in a process of its own so that
it does not share the clients' interpreter lock) with ``sim.capacity("usta", C,
latency=0.05)``: C calls at once, 50 ms each, and a 503 at once for any call beyond C. 64 asyncio
tasks call ``GET /usta/api/items`` back to back for a few seconds, for C = 4, C = 16, and C stepping
16 -> 4 -> 12, with each client in turn:

- ``oracle``: bare httpx under a semaphore of exactly C, resized at each step (the ideal);
- ``sdk``: ``rc.ResilientTransport("usta")`` with the shipped policy and a fresh ``MemoryState``;
- ``vegas``, ``gradient2``, ``aimd``: bare httpx under re-implementations of Netflix
  concurrency-limits' limits with their published defaults (a blocking limiter, as its
  ``BlockingLimiter``; no retries, as the library has none; a 503 is a drop);
- ``httpx``: bare httpx, no retries (a 503 is a failed call);
- ``httpx-retries``: ``httpx_retries.RetryTransport`` with its defaults.

Printed per client: goodput (successful calls per second, as a share of the oracle's), failed calls,
attempts per call, vendor refusals (share of the attempts the simulator answered 503), and p99
latency of the successful calls (ratio to the oracle's). Bars (SPEC section 7), for the SDK:
goodput >= 95 % of the oracle's (85 % while stepping), 0 failed calls, refusals <= 5 % of attempts
(10 % stepping), p99 <= 1.3 x the oracle's. The whole run takes about a minute and a half.

    .venv/bin/python bench/capacity.py [--seconds 3.0] [--clients sdk,oracle]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import attrs
import httpx
import httpx_retries

import resilient_client as rc
from resilient_client.simulator import STATS_PATH, Simulator, serve

VENDOR = "usta"
PATH = "/usta/api/items"
TASKS = 64
LATENCY = 0.05

Send = Callable[[httpx.AsyncClient], Awaitable[bool]]


# -- Netflix concurrency-limits, re-implemented with their defaults ---------------------------------


class AimdLimit:
    """``AIMDLimit``: initialLimit 20, minLimit 20, maxLimit 200, backoffRatio 0.9, timeout 5 s."""

    def __init__(self) -> None:
        self.limit = 20.0

    def sample(self, rtt: float, in_flight: int, dropped: bool) -> None:
        if dropped or rtt > 5.0:
            self.limit = max(20.0, math.floor(self.limit * 0.9))
        elif in_flight * 2 >= self.limit:
            self.limit = min(200.0, self.limit + 1)


def _log10(limit: float) -> int:
    return max(1, int(math.log10(max(limit, 1.0))))


class VegasLimit:
    """``VegasLimit``: initialLimit 20, maxConcurrency 1000, smoothing 1.0, alpha 3 log10(limit),
    beta 6 log10(limit), threshold log10(limit), increase/decrease by log10(limit), probeMultiplier 30."""

    def __init__(self) -> None:
        self.limit = 20.0
        self.rtt_noload = 0.0
        self.probes = 0
        self.jitter = 0.5 + 0.5 * 0.37  # a fixed draw of ThreadLocalRandom in [0.5, 1)

    def sample(self, rtt: float, in_flight: int, dropped: bool) -> None:
        self.probes += 1
        if self.jitter * 30 * self.limit <= self.probes:
            self.probes = 0
            self.rtt_noload = rtt
            return
        if self.rtt_noload == 0 or rtt < self.rtt_noload:
            self.rtt_noload = rtt
            return
        limit = self.limit
        queue = math.ceil(limit * (1 - self.rtt_noload / rtt))
        log = _log10(limit)
        if dropped:
            new = limit - log
        elif in_flight * 2 < limit:
            return
        elif queue <= log:
            new = limit + 6 * log
        elif queue < 3 * log:
            new = limit + log
        elif queue > 6 * log:
            new = limit - log
        else:
            return
        self.limit = max(1.0, min(1000.0, new))


class Gradient2Limit:
    """``Gradient2Limit``: initialLimit 20, minLimit 20, maxConcurrency 200, smoothing 0.2,
    rttTolerance 1.5, longWindow 600, queueSize 4 (drops are not a signal of its own)."""

    def __init__(self) -> None:
        self.limit = 20.0
        self.long_rtt = 0.0
        self.count = 0

    def sample(self, rtt: float, in_flight: int, dropped: bool) -> None:
        self.count += 1
        if self.count <= 10:  # ExpAvgMeasurement's warm-up: a plain average
            self.long_rtt += (rtt - self.long_rtt) / self.count
        else:
            factor = 2.0 / (600 + 1)
            self.long_rtt = self.long_rtt * (1 - factor) + rtt * factor
        if self.long_rtt / rtt > 2:
            self.long_rtt *= 0.95
        if in_flight < self.limit / 2:
            return
        gradient = max(0.5, min(1.0, 1.5 * self.long_rtt / rtt))
        new = self.limit * gradient + 4
        new = self.limit * 0.8 + new * 0.2
        self.limit = max(20.0, min(200.0, new))


class Gate:
    """A blocking limiter over a limit that changes, first come first served: an acquire waits
    while ``in_flight >= floor(limit)`` (or others wait before it)."""

    def __init__(self, limit: Any) -> None:
        self.algorithm = limit
        self.in_flight = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self) -> int:
        if self._waiters or self.in_flight >= math.floor(self.algorithm.limit):
            future = asyncio.get_running_loop().create_future()
            self._waiters.append(future)
            await future  # admitted by ``_admit``, which counted it in
        else:
            self.in_flight += 1
        return self.in_flight

    async def release(self) -> None:
        self.in_flight -= 1
        self._admit()

    async def poke(self) -> None:
        self._admit()

    def _admit(self) -> None:
        while self._waiters and self.in_flight < math.floor(self.algorithm.limit):
            future = self._waiters.popleft()
            if not future.done():
                self.in_flight += 1
                future.set_result(None)


@attrs.define
class Fixed:
    """The oracle's limit: C, set at each step."""

    limit: float


def limited(gate: Gate, learns: bool) -> Send:
    async def send(client: httpx.AsyncClient) -> bool:
        in_flight = await gate.acquire()
        start = time.monotonic()
        dropped = True
        try:
            response = await client.get(PATH)
            dropped = response.status_code >= 500
            return not dropped
        finally:
            if learns:
                gate.algorithm.sample(time.monotonic() - start, in_flight, dropped)
            await gate.release()

    return send


async def plain(client: httpx.AsyncClient) -> bool:
    response = await client.get(PATH)
    return response.status_code < 400


#: Why the SDK's failed calls failed (exception class names), printed under its table.
FAILURES: collections.Counter[str] = collections.Counter()


async def sdk(client: httpx.AsyncClient) -> bool:
    try:
        await client.get(PATH)
    except httpx.HTTPError as error:
        FAILURES[type(error).__name__] += 1
        return False
    return True


# -- one run --------------------------------------------------------------------------------------


@attrs.define
class Result:
    ok: int = 0
    failed: int = 0
    attempts: int = 0
    refused: int = 0
    seconds: float = 0.0
    latencies: list[float] = attrs.field(factory=list)

    @property
    def goodput(self) -> float:
        return self.ok / self.seconds

    @property
    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else math.inf


class Remote:
    """The simulator in its own process, driven through ``CONTROL`` (capacity, reset) and read
    through its stats path."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client = httpx.Client(base_url=url)

    def capacity(self, calls: int) -> None:
        self._client.post(CONTROL, json={"calls": calls}).raise_for_status()

    def reset(self) -> None:
        self._client.post(CONTROL, json={"reset": True}).raise_for_status()

    def settle(self, most: float = 5.0) -> None:
        """Wait until the server has answered what the last client left in flight (a client that
        hammered it may leave a backlog that would slow the next one down)."""
        end = time.monotonic() + most
        last = -1
        while time.monotonic() < end:
            requests = self._client.get(STATS_PATH).json()["requests"]
            total = sum(sum(paths.values()) for paths in requests.values())
            if total == last:
                time.sleep(1.0)  # and let its process catch its breath
                return
            last = total
            time.sleep(0.25)

    def capacity_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self._client.get(STATS_PATH).json()["capacity"].get(VENDOR, {})
        return stats


CONTROL = "/_bench/control"


class Controlled:
    """The simulator app with ``CONTROL``: ``{"calls": C}`` sets the capacity, ``{"reset": true}``
    forgets the counters."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == CONTROL:
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            order = json.loads(body)
            if order.get("reset"):
                self.sim.reset()
            else:
                self.sim.capacity(VENDOR, order["calls"], latency=LATENCY)
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await self.sim(scope, receive, send)


def serve_forever() -> None:
    """The child process: serve the simulator, print its URL, run until stdin closes."""
    with serve(Controlled(Simulator())) as url:  # type: ignore[arg-type]
        print(url, flush=True)
        sys.stdin.read()


@contextlib.contextmanager
def remote_simulator() -> Iterator[Remote]:
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        yield Remote(child.stdout.readline().strip())
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(15)


async def run(sim: Remote, client_name: str, steps: list[tuple[float, int]], seconds: float) -> Result:
    """64 tasks calling for ``seconds`` per step, the capacity set to each step's C in turn."""
    url = sim.url
    sim.settle()
    sim.reset()
    sim.capacity(steps[0][1])
    gate: Gate | None = None
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    transport: httpx.AsyncBaseTransport = httpx.AsyncHTTPTransport(limits=limits)
    send: Send = plain
    if client_name == "oracle":
        gate = Gate(Fixed(steps[0][1]))
        send = limited(gate, learns=False)
    elif client_name in ("vegas", "gradient2", "aimd"):
        algorithm = {"vegas": VegasLimit, "gradient2": Gradient2Limit, "aimd": AimdLimit}[client_name]()
        gate = Gate(algorithm)
        send = limited(gate, learns=True)
    elif client_name == "httpx-retries":
        transport = httpx_retries.RetryTransport(transport=transport)
    elif client_name == "sdk":
        inner = transport
        transport = rc.ResilientTransport(VENDOR, transport=inner, state=rc.MemoryState())
        send = sdk
    result = Result(seconds=seconds * len(steps))
    async with httpx.AsyncClient(transport=transport, base_url=url, timeout=30.0) as client:
        begin = time.monotonic()
        end = begin + result.seconds

        async def worker() -> None:
            while time.monotonic() < end:
                start = time.monotonic()
                try:
                    ok = await send(client)
                except httpx.HTTPError:
                    ok = False
                finished = time.monotonic()
                if finished > end:
                    return
                if ok:
                    result.ok += 1
                    result.latencies.append(finished - start)
                else:
                    result.failed += 1

        async def stepper() -> None:
            for index, (_, calls) in enumerate(steps):
                if index:
                    await asyncio.to_thread(sim.capacity, calls)
                    if gate is not None and isinstance(gate.algorithm, Fixed):
                        gate.algorithm.limit = calls
                        await gate.poke()
                await asyncio.sleep(max(0.0, begin + seconds * (index + 1) - time.monotonic()))

        tasks = [asyncio.create_task(worker()) for _ in range(TASKS)]
        await stepper()
        await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    stats = sim.capacity_stats()
    result.attempts = stats.get("served", 0) + stats.get("refused", 0)
    result.refused = stats.get("refused", 0)
    return result


SCENARIOS = {
    "C = 4": [(0.0, 4)],
    "C = 16": [(0.0, 16)],
    "C 16 -> 4 -> 12": [(0.0, 16), (1.0, 4), (2.0, 12)],
}
#: The clients that hammer the vendor (no limit) go last: what they leave the server to catch up on
#: would otherwise slow down whoever follows them.
CLIENTS = ["oracle", "sdk", "vegas", "gradient2", "aimd", "httpx", "httpx-retries"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per step (default 3)")
    parser.add_argument("--clients", default=",".join(CLIENTS), help="comma-separated, oracle first")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_forever()
        return
    clients = [c for c in args.clients.split(",") if c]
    if "oracle" not in clients:
        clients.insert(0, "oracle")
    print(f"{TASKS} asyncio tasks, loopback simulator, {LATENCY * 1000:.0f} ms per call, shipped usta policy")
    with remote_simulator() as sim:
        for scenario in args.scenarios.split(","):
            steps = SCENARIOS[scenario]
            stepping = len(steps) > 1
            print(f"\n{scenario} ({args.seconds:g} s per step)")
            print(
                f"  {'client':<14}{'goodput/s':>10}{'share':>8}{'failed':>8}{'att/call':>10}"
                f"{'refused':>9}{'p99 ms':>9}{'p99 x':>7}  bars"
            )
            oracle: Result | None = None
            FAILURES.clear()
            for name in clients:
                result = asyncio.run(run(sim, name, steps, args.seconds))
                if oracle is None:
                    oracle = result
                calls = result.ok + result.failed
                share = result.goodput / oracle.goodput
                per_call = result.attempts / calls if calls else math.inf
                refused = result.refused / result.attempts if result.attempts else 0.0
                p99 = result.p99 / oracle.p99
                verdict = ""
                if name == "sdk":
                    bars = (
                        share >= (0.85 if stepping else 0.95),
                        result.failed == 0,
                        refused <= (0.10 if stepping else 0.05),
                        p99 <= 1.3,
                    )
                    verdict = "hold" if all(bars) else "MISSED " + str(bars)
                print(
                    f"  {name:<14}{result.goodput:>10.1f}{share:>8.1%}{result.failed:>8}{per_call:>10.2f}"
                    f"{refused:>9.1%}{result.p99 * 1000:>9.0f}{p99:>7.2f}  {verdict}"
                )
            if FAILURES:
                print(f"  sdk failures: {dict(FAILURES)}")


if __name__ == "__main__":
    main()
