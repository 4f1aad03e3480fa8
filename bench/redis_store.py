"""Round-trip latency of RedisState's operations on a successful call, against a local redis-server.

A successful Hyper journal call asks the store three operations: the rate limiter's ``LimiterAdmit``
(the Retry-After pause checked and the send reserved, one script) before it is sent, the guard's
``Acquire`` (the account's lease), and ``Release`` after. The breaker reads ``ReadCircuit`` at most
once per 0.1 s while calls succeed, and the budget's ``Deposit`` and the breaker's successes are
written in batches, not per call: those are shown alone. Each operation is one Lua script run through
redis-py's ``Script`` (EVALSHA), one round trip. This prints the median and p99 of each, sync
(redis.Redis) and async (redis.asyncio under asyncio), the journal call's three together, a bare
PING for the floor of one round trip with redis-py, and MemoryState for comparison.

The script starts its own redis-server on a free loopback port (nothing saved) and stops it after.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import redis

import resilient_client as rc
from resilient_client.stores import (
    Acquire,
    Deposit,
    LimiterAdmit,
    Operation,
    ReadCircuit,
    RecordOutcome,
    Release,
)

CALLS = 5000
WARM_UP = 200


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit("redis-server is missing: sudo apt-get install -y redis-server")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        process = subprocess.Popen(
            [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", directory, "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            client = redis.Redis(port=port)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.exceptions.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            client.close()
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait()


def percentiles(samples: list[float]) -> tuple[float, float]:
    """Median and p99, in microseconds."""
    ordered = sorted(samples)
    return statistics.median(ordered) * 1e6, ordered[int(len(ordered) * 0.99)] * 1e6


def timed(call: Callable[[int], object]) -> list[float]:
    for n in range(WARM_UP):
        call(n)
    samples = []
    for n in range(CALLS):
        started = time.perf_counter()
        call(n)
        samples.append(time.perf_counter() - started)
    return samples


async def atimed(call: Callable[[int], Awaitable[object]]) -> list[float]:
    for n in range(WARM_UP):
        await call(n)
    samples = []
    for n in range(CALLS):
        started = time.perf_counter()
        await call(n)
        samples.append(time.perf_counter() - started)
    return samples


KEY = "breaker/hyper/api.hyper.test"
LIMITER = "limiter/hyper/api.hyper.test"
ACCOUNT = ["guard/hyper/journal/AccountNo/A1"]
JOURNAL = "journal call (LimiterAdmit, Acquire, Release)"

OPERATIONS: dict[str, Operation[Any]] = {
    "ReadCircuit": ReadCircuit(KEY),
    "LimiterAdmit": LimiterAdmit(LIMITER, 1e9, 1e6, 30.0),
    "Acquire": Acquire(ACCOUNT, 1, 35.0, "token"),
    "Deposit": Deposit(KEY, 0.2, 10.0),
    "RecordOutcome": RecordOutcome(KEY, False, 30.0),
}
#: A release is timed only after its take: a token holding nothing in Redis has nothing to release there.
JOURNAL_OPERATIONS = [OPERATIONS["LimiterAdmit"], OPERATIONS["Acquire"], Release(ACCOUNT, "token")]


def sync_figures(store: rc.RedisState | rc.MemoryState) -> dict[str, list[float]]:
    def journal(n: int) -> None:
        for op in JOURNAL_OPERATIONS:
            store.run(op, n)

    figures = {name: timed(lambda n, op=op: store.run(op, n)) for name, op in OPERATIONS.items()}
    return {**figures, JOURNAL: timed(journal)}


async def async_figures(store: rc.RedisState) -> dict[str, list[float]]:
    async def journal(n: int) -> None:
        for op in JOURNAL_OPERATIONS:
            await store.arun(op, n)

    figures = {name: await atimed(lambda n, op=op: store.arun(op, n)) for name, op in OPERATIONS.items()}
    figures[JOURNAL] = await atimed(journal)
    await store.aclose()
    return figures


def main() -> None:
    with redis_server() as url:
        with redis.Redis.from_url(url) as client:
            ping = timed(lambda n: client.ping())
            version = client.info("server")["redis_version"]
        store = rc.RedisState(url)
        sync = {**sync_figures(store), "PING (one round trip, redis-py)": ping}
        asynchronous = asyncio.run(async_figures(store))
        store.close()
    memory = sync_figures(rc.MemoryState())

    print(f"RedisState, redis-server {version} on 127.0.0.1, {CALLS} calls each (microseconds)")
    print(f"{'operation':62} {'sync median':>12} {'p99':>8} {'async median':>13} {'p99':>8}")
    for name, samples in sync.items():
        median, p99 = percentiles(samples)
        line = f"{name:62} {median:12.0f} {p99:8.0f}"
        if name in asynchronous:
            amedian, ap99 = percentiles(asynchronous[name])
            line += f" {amedian:13.0f} {ap99:8.0f}"
        print(line)
    median, p99 = percentiles(memory[JOURNAL])
    print(f"{'MemoryState, ' + JOURNAL:62} {median:12.1f} {p99:8.1f}")


if __name__ == "__main__":
    main()
