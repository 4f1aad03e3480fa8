"""Random transient 503s, swept: the SPEC section 7 bar on calls that succeed and attempts per call.

The simulator runs on a real loopback server (``simulator.serve``, uvicorn in a thread) and answers a
random share of usta requests with a 503 (``sim.error_rate("usta", rate, seed=...)``): 0, 10, 30, 50,
70 and 100 %. At each rate, four clients make the same number of GETs from 16 asyncio tasks, one
after the other, each against a fresh client (a fresh budget and circuit):

- **bare httpx**: one attempt a call, no retries;
- **httpx-retries**: ``RetryTransport`` retrying 503 up to the same 4 attempts (``total=3``), its
  exponential backoff with jitter;
- **SDK**: ``ResilientTransport("usta")`` with the shipped usta policy (budget, breaker, retries);
- **oracle**: a client that knows which attempts would fail. For each call it draws the fate of up
  to 4 attempts at the same rate the simulator uses, and sends only the attempt that succeeds (with
  the simulator's faults off, since it knows that one is answered); a call whose 4 draws all fail
  fails at once, sending nothing. So it bounds what any client with 4 attempts can reach: calls that
  succeed ``1 - rate ** 4``, attempts per call ``<= 1``, no vendor refusal.

Columns: calls that succeed, failed calls, attempts per call (requests the server received, divided
by calls), vendor refusals (503s the server sent) and the p99 of a call's time.

Waits are shortened, not faked: every backoff wait of httpx-retries and of the SDK is divided by
``WAIT_DIVISOR`` (the SDK through its ``async_sleep``, httpx-retries through a ``backoff_factor``
divided as much), so a run of 6 rates x 4 clients x ``CALLS`` calls takes a minute or two. What
the bars count (calls and attempts) does not depend on the waits; p99 does, and is shown for the
shortened waits. The breaker's windows and breaks keep real time: a run lasts a few seconds, so an
opened circuit stays open to its end (the fast refusal of the 100 % row).

Prints one table, and the bars (SPEC section 7) with "met" or "NOT met". With 4 attempts no client
beats ``1 - rate ** 4`` in expectation: 99.19 % at 30 %, 0.19 % above the bar, while one run of
1,000 calls varies by about 0.3 % (the oracle's too); ``--calls 5000 --rates 0.3,0.5`` narrows it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable

import attrs
import httpx
import httpx_retries

import resilient_client as rc
from resilient_client.simulator import Simulator, serve

VENDOR = "usta"
PATH = "/usta/api/v1/items"
RATES = (0.0, 0.1, 0.3, 0.5, 0.7, 1.0)
CALLS = 1000
TASKS = 16
MAX_ATTEMPTS = 4
#: Every backoff wait is this many times shorter than the policy's (see the docstring).
WAIT_DIVISOR = 100.0
#: (rate, share of calls that must succeed) and (rate, attempts per call at most): SPEC section 7.
SUCCESS_BARS = {0.1: 0.999, 0.3: 0.99, 0.5: 0.90}
ATTEMPT_BARS = {0.7: 1.5, 1.0: 1.1}


@attrs.frozen
class Row:
    client: str
    rate: float
    calls: int
    succeeded: int
    attempts: int
    refusals: int
    p99: float

    @property
    def success(self) -> float:
        return self.succeeded / self.calls

    @property
    def per_call(self) -> float:
        return self.attempts / self.calls


#: One call: True when it succeeded.
Call = Callable[[], Awaitable[bool]]


async def _shortened(seconds: float) -> None:
    await asyncio.sleep(seconds / WAIT_DIVISOR)


def _ok(response: httpx.Response) -> bool:
    return response.status_code == 200


async def _drive(call: Call, calls: int, tasks: int) -> tuple[int, list[float]]:
    """``calls`` calls from ``tasks`` tasks; the calls that succeeded and every call's seconds."""
    left = calls
    succeeded = 0
    times: list[float] = []

    async def worker() -> None:
        nonlocal left, succeeded
        while left > 0:
            left -= 1
            start = time.perf_counter()
            ok = await call()
            times.append(time.perf_counter() - start)
            succeeded += ok

    await asyncio.gather(*(worker() for _ in range(tasks)))
    return succeeded, times


def _p99(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


async def bare(url: str, calls: int, rate: float) -> tuple[int, list[float]]:
    async with httpx.AsyncClient(base_url=url) as client:

        async def call() -> bool:
            return _ok(await client.get(PATH))

        return await _drive(call, calls, TASKS)


async def with_httpx_retries(url: str, calls: int, rate: float) -> tuple[int, list[float]]:
    policy = rc.load_policy(VENDOR).retry
    retry = httpx_retries.Retry(
        total=MAX_ATTEMPTS - 1,
        status_forcelist=[503],
        backoff_factor=policy.initial_wait / WAIT_DIVISOR,
        max_backoff_wait=policy.max_wait / WAIT_DIVISOR,
    )
    async with httpx.AsyncClient(base_url=url, transport=httpx_retries.RetryTransport(retry=retry)) as client:

        async def call() -> bool:
            return _ok(await client.get(PATH))

        return await _drive(call, calls, TASKS)


async def sdk(url: str, calls: int, rate: float) -> tuple[int, list[float]]:
    transport = rc.ResilientTransport(VENDOR, transport=httpx.AsyncHTTPTransport(), async_sleep=_shortened)
    async with httpx.AsyncClient(base_url=url, transport=transport) as client:

        async def call() -> bool:
            try:
                return _ok(await client.get(PATH))
            except httpx.HTTPError:
                return False

        return await _drive(call, calls, TASKS)


async def oracle(url: str, calls: int, rate: float) -> tuple[int, list[float]]:
    fates = random.Random(2026)
    async with httpx.AsyncClient(base_url=url) as client:

        async def call() -> bool:
            if all(fates.random() < rate for _ in range(MAX_ATTEMPTS)):
                return False  # it knows every attempt would fail: it sends none
            return _ok(await client.get(PATH))

        return await _drive(call, calls, TASKS)


CLIENTS: dict[str, Callable[[str, int, float], Awaitable[tuple[int, list[float]]]]] = {
    "bare httpx": bare,
    "httpx-retries": with_httpx_retries,
    "SDK (usta policy)": sdk,
    "oracle": oracle,
}


def measure(sim: Simulator, url: str, name: str, rate: float, calls: int, seed: int) -> Row:
    sim.reset()
    # The oracle's one attempt is the one it knows succeeds: the simulator draws no fault for it.
    sim.error_rate(VENDOR, None if name == "oracle" else rate, seed=seed)
    succeeded, times = asyncio.run(CLIENTS[name](url, calls, rate))
    snapshot = sim.snapshot()
    attempts = sum(snapshot["requests"].get(VENDOR, {}).values())
    refusals = snapshot["random_faults"].get(VENDOR, 0)
    return Row(name, rate, calls, succeeded, attempts, refusals, _p99(times))


def table(rows: list[Row]) -> str:
    lines = [
        "| 503 rate | client | calls that succeed | failed calls | attempts per call | vendor refusals | p99 (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.rate:.0%} | {row.client} | {row.success:.2%} | {row.calls - row.succeeded} | "
            f"{row.per_call:.3f} | {row.refusals} | {1000 * row.p99:.1f} |"
        )
    return "\n".join(lines)


def bars(rows: list[Row]) -> list[str]:
    found = {row.rate: row for row in rows if row.client.startswith("SDK")}
    lines = []
    for rate, floor in SUCCESS_BARS.items():
        row = found[rate]
        verdict = "met" if row.success >= floor else "NOT met"
        lines.append(
            f"SDK at {rate:.0%}: calls that succeed {row.success:.2%} (bar >= {floor:.1%}: {verdict})"
        )
    for rate, ceiling in ATTEMPT_BARS.items():
        row = found[rate]
        verdict = "met" if row.per_call <= ceiling else "NOT met"
        lines.append(f"SDK at {rate:.0%}: attempts per call {row.per_call:.3f} (bar <= {ceiling}: {verdict})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=CALLS, help="calls per client and rate")
    parser.add_argument("--seed", type=int, default=1, help="the simulator's draws")
    parser.add_argument("--rates", default=",".join(f"{r:g}" for r in RATES), help="comma-separated shares")
    args = parser.parse_args()
    rates = [float(part) for part in args.rates.split(",")]
    sim = Simulator()
    rows = []
    started = time.perf_counter()
    with serve(sim) as url:
        for rate in rates:
            for name in CLIENTS:
                rows.append(measure(sim, url, name, rate, args.calls, args.seed))
    print(
        f"random transient 503s, {args.calls} calls per client and rate, {TASKS} asyncio tasks, loopback, "
        f"backoff waits / {WAIT_DIVISOR:g} ({time.perf_counter() - started:.0f} s)"
    )
    print(table(rows))
    if set(SUCCESS_BARS) | set(ATTEMPT_BARS) <= set(rates):
        for line in bars(rows):
            print(line)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
