"""The fleet bars of SPEC section 7, measured with a real redis-server and worker processes.

(a) Redis-backed pipeline overhead per successful call, on loopback: the same client with
    ``state=RedisState`` and with ``MemoryState``, against an in-process ``httpx.MockTransport``
    (no I/O but Redis's), runs interleaved in blocks so load on the machine hits both alike. The
    added cost per call, median and p99 (bars <= 1 ms, <= 3 ms), and per call the store round trips
    (each operation is one script), counted by the server. ``--overhead-only`` (or ``--only a``)
    runs this part alone.
(b) 4 processes x 4 threads sharing Redis against the simulator with Hyper's habits (a rate limit
    that answers 429 + Retry-After, journal calls that answer code 50 to an overlapping call of
    the same account): journal overlaps per account (bar 0), and requests sent before a shared
    Retry-After ended although its pause was in Redis before their last look at it or their last
    wait (a send that waited must look again) (bar 0); those let through, with no wait since, just
    before the pause reached Redis are in flight and counted apart. Times come from hooks, the
    store and the transport's sleep in each process; all processes read one monotonic clock.
(c) Redis SIGKILLed while 4 processes x 2 threads call, restarted 2 s later on the same port:
    calls that failed (bar 0), and seconds from the restart until every process that lost Redis
    uses it again (bar <= 5 s), from the store's own "did not answer" / "answers again" log lines.

The script starts its own redis-server (``resilient_client._redis_server``) and simulator on
127.0.0.1, and its workers from a fork server (or spawned), never a fork of this process.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import queue
import random
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar, cast

import anyio
import attrs
import httpx

import resilient_client as rc
from resilient_client._redis_server import RedisServer
from resilient_client.simulator import Simulator, serve
from resilient_client.stores import (
    Acquire,
    LimiterAcquire,
    LimiterAdmit,
    Operation,
    Pause,
    PausedFor,
    RateTicket,
)

BLOCK = 250
BLOCKS = 12
WARM_UP = 200
PROCESSES = 4
_T = TypeVar("_T")


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def store_commands(server: RedisServer) -> int:
    """Round trips so far: every RedisState operation is one script (EVALSHA, or EVAL once the
    server forgot it), read from INFO commandstats."""
    import redis

    with redis.Redis(host="127.0.0.1", port=server.port) as admin:
        stats = admin.info("commandstats")

    def calls(name: str) -> int:
        return int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))

    return calls("evalsha") + calls("eval")


# -- (a) overhead per successful call -------------------------------------------------------------


def unpaced_hyper() -> rc.RetryPolicy:
    """Hyper's shipped policy with a rate limit so high it never waits: the limiter still runs its
    store operations on every call, as under the shipped 20 a minute, but the loop is not paced."""
    shipped = rc.load_policy("hyper")
    return attrs.evolve(
        shipped,
        rate_limit=attrs.evolve(shipped.rate_limit, requests=10**9, period=1.0, burst=10**6),
    )


def success(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"ResponseCode": 0, "ResponseMsgEng": "Success", "Data": []})


@attrs.frozen
class Case:
    name: str
    make: Callable[[rc.StateStore], httpx.Client]
    method: str
    path: str
    body: dict[str, Any] | None
    #: The same client for ``httpx.AsyncClient`` (asyncio).
    amake: Callable[[rc.StateStore], httpx.AsyncClient]


def default_client(state: rc.StateStore) -> httpx.Client:
    transport = rc.ResilientTransport(
        "hyper", policy="default", state=state, transport=httpx.MockTransport(success)
    )
    return httpx.Client(base_url="http://hyper.test", transport=transport)


def default_async_client(state: rc.StateStore) -> httpx.AsyncClient:
    transport = rc.ResilientTransport(
        "hyper", policy="default", state=state, transport=httpx.MockTransport(success)
    )
    return httpx.AsyncClient(base_url="http://hyper.test", transport=transport)


def hyper_async_client(state: rc.StateStore) -> rc.AsyncHyperClient:
    return rc.AsyncHyperClient(
        base_url="http://hyper.test",
        token="t",
        policy=unpaced_hyper(),
        state=state,
        transport=httpx.MockTransport(success),
    )


def hyper_client(state: rc.StateStore) -> rc.HyperClient:
    """A HyperClient under the paced-off hyper policy, answering every request at once."""
    return rc.HyperClient(
        base_url="http://hyper.test",
        token="t",
        policy=unpaced_hyper(),
        state=state,
        transport=httpx.MockTransport(success),
    )


CASES = [
    Case(
        "ResilientTransport, default policy (budget, breaker), GET",
        default_client,
        "GET",
        "/api/clients",
        None,
        default_async_client,
    ),
    Case(
        "HyperClient, hyper policy (+ rate limiter), GET",
        hyper_client,
        "GET",
        "/api/clients",
        None,
        hyper_async_client,
    ),
    Case(
        "HyperClient, hyper policy (+ rate limiter, guard), journal POST",
        hyper_client,
        "POST",
        "/api/journal",
        {"AccountNo": "A1", "Amount": 1},
        hyper_async_client,
    ),
]


def timed_block(client: httpx.Client, case: Case, calls: int) -> list[float]:
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        client.request(case.method, case.path, json=case.body)
        samples.append(time.perf_counter() - started)
    return samples


async def atimed_block(client: httpx.AsyncClient, case: Case, calls: int) -> list[float]:
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        await client.request(case.method, case.path, json=case.body)
        samples.append(time.perf_counter() - started)
    return samples


def async_samples(
    case: Case, memory_state: rc.StateStore, redis_state: rc.StateStore
) -> tuple[list[float], list[float]]:
    """``timed_block``'s interleaved blocks, through the async clients under asyncio."""

    async def run() -> tuple[list[float], list[float]]:
        async with case.amake(memory_state) as memory, case.amake(redis_state) as shared:
            await atimed_block(memory, case, WARM_UP)
            await atimed_block(shared, case, WARM_UP)
            on_memory: list[float] = []
            on_redis: list[float] = []
            for _ in range(BLOCKS):
                on_memory += await atimed_block(memory, case, BLOCK)
                on_redis += await atimed_block(shared, case, BLOCK)
            return on_memory, on_redis

    return anyio.run(run, backend="asyncio")


def overhead(server: RedisServer) -> None:
    print("(a) Redis-backed pipeline overhead per successful call, in-process MockTransport, "
          f"{BLOCKS} interleaved blocks of {BLOCK} calls each (microseconds)")  # fmt: skip
    print(f"    {'client and call':66} {'memory':>14} {'redis':>14} {'added':>14} {'trips':>5}")
    print(f"    {'':66} {'median':>7}{'p99':>7} {'median':>7}{'p99':>7} {'median':>7}{'p99':>7}")
    for case in CASES:
        redis_state = rc.RedisState(server.url)
        memory, shared = case.make(rc.MemoryState()), case.make(redis_state)
        with memory, shared:
            timed_block(memory, case, WARM_UP)
            timed_block(shared, case, WARM_UP)
            trips_before = store_commands(server)
            on_memory: list[float] = []
            on_redis: list[float] = []
            for _ in range(BLOCKS):
                on_memory += timed_block(memory, case, BLOCK)
                on_redis += timed_block(shared, case, BLOCK)
            trips = (store_commands(server) - trips_before) / (BLOCKS * BLOCK)
        m50, m99 = statistics.median(on_memory) * 1e6, percentile(on_memory, 0.99) * 1e6
        r50, r99 = statistics.median(on_redis) * 1e6, percentile(on_redis, 0.99) * 1e6
        print(f"    {case.name:66} {m50:7.0f}{m99:7.0f} {r50:7.0f}{r99:7.0f} "
              f"{r50 - m50:7.0f}{r99 - m99:7.0f} {trips:5.1f}")  # fmt: skip
        on_memory, on_redis = async_samples(case, rc.MemoryState(), redis_state)
        redis_state.close()
        m50, m99 = statistics.median(on_memory) * 1e6, percentile(on_memory, 0.99) * 1e6
        r50, r99 = statistics.median(on_redis) * 1e6, percentile(on_redis, 0.99) * 1e6
        name = "  the same, httpx.AsyncClient under asyncio"
        print(f"    {name:66} {m50:7.0f}{m99:7.0f} {r50:7.0f}{r99:7.0f} "
              f"{r50 - m50:7.0f}{r99 - m99:7.0f}")  # fmt: skip
    import redis

    with redis.Redis(host="127.0.0.1", port=server.port) as client:
        for _ in range(WARM_UP):
            client.ping()
        pings = []
        for _ in range(BLOCKS * BLOCK):
            started = time.perf_counter()
            client.ping()
            pings.append(time.perf_counter() - started)
    print(f"    one round trip on this machine (redis-py PING): median {statistics.median(pings) * 1e6:.0f} us, "
          f"p99 {percentile(pings, 0.99) * 1e6:.0f} us")  # fmt: skip
    print("    bars: added <= 1000 us median, <= 3000 us p99")


# -- worker processes (b) and (c) --------------------------------------------------------------------


def share_policy() -> rc.RetryPolicy:
    """(b): Hyper's policy with short backoff waits (a server's Retry-After is still waited in full)
    and no fixed rate, so only the learned rate and the shared pauses hold sends back."""
    shipped = rc.load_policy("hyper")
    return attrs.evolve(
        shipped,
        retry=attrs.evolve(shipped.retry, initial_wait=0.05, max_wait=0.2),
        rate_limit=attrs.evolve(shipped.rate_limit, requests=0, burst=1),
    )


def restart_policy() -> rc.RetryPolicy:
    """(c): Hyper's shipped policy (its code 50 waits too: while Redis is gone each process guards
    its accounts alone, and the overlaps it cannot see are retried), never paced by a fixed rate."""
    return unpaced_hyper()


class Record(rc.Hook):
    """Per process: when each attempt went out, and each 429 this thread received (kept per thread
    until its pause is written to the store)."""

    def __init__(self) -> None:
        #: (time, how the attempt was held before it went out: "paced", "guard", "paced+guard" or "",
        #: when its last look at the pause began)
        self.sent: list[tuple[float, str, float]] = []
        self.local = threading.local()

    def held(self, how: str) -> None:
        self.local.held = getattr(self.local, "held", set()) | {how}

    def sleep(self, seconds: float) -> None:
        """The transport's sleep: notes when each wait ended."""
        time.sleep(seconds)
        self.local.woke = time.monotonic()

    def on_attempt_start(self, call: Any, number: int) -> None:
        held = "+".join(sorted(getattr(self.local, "held", ())))
        # The last moment the attempt could have seen a pause: its last look, or the end of a
        # wait after it (a send that slept must look again before it goes).
        decided = max(getattr(self.local, "checked", 0.0), getattr(self.local, "woke", 0.0))
        self.sent.append((time.monotonic(), held, decided))
        self.local.held = set()

    def on_attempt(self, call: Any, event: rc.AttemptEvent) -> None:
        if event.status == 429:
            self.local.received = time.monotonic()


class PauseWatch(rc.RedisState):
    """Notes (429 received, pause written, seconds) for every pause this process writes."""

    def __init__(self, url: str, record: Record) -> None:
        super().__init__(url)
        self.record = record
        self.pauses: list[tuple[float, float, float]] = []

    def run(self, op: Operation[_T], now: float) -> _T:
        if isinstance(op, PausedFor | LimiterAdmit):
            self.record.local.checked = time.monotonic()  # LimiterAdmit: the pause check and the reservation
        result = super().run(op, now)
        if isinstance(op, Pause):
            received = getattr(self.record.local, "received", time.monotonic())
            self.pauses.append((received, time.monotonic(), op.seconds))
        elif isinstance(op, LimiterAcquire | LimiterAdmit) and cast(RateTicket, result).wait > 0:
            self.record.held("paced")
        elif isinstance(op, Acquire) and not result:
            self.record.held("guard")
        return result


class Outages(logging.Handler):
    """The times of the store's "did not answer" and "answers again" lines in this process."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if "did not answer" in text:
            self.lines.append((time.monotonic(), "down"))
        elif "answers again" in text:
            self.lines.append((time.monotonic(), "back"))


def worker(task: str, redis_url: str, base_url: str, threads: int, go: Any, stop: Any, results: Any) -> None:
    try:
        record = Record()
        outages = Outages()
        logger = logging.getLogger("resilient_client")
        logger.addHandler(outages)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        state = PauseWatch(redis_url, record)
        client = rc.HyperClient(
            base_url=base_url,
            token="bench-token",
            policy=restart_policy() if task == "restart" else share_policy(),
            state=state,
            hooks=[record],
            transport_options={"sleep": record.sleep},
            timeout=30.0,
        )
        failures: Counter[str] = Counter()
        calls = Counter[str]()
        accounts = [f"A{i}" for i in range(5 if task == "share" else 16)]

        def loop(seed: int) -> None:
            chance = random.Random(seed)
            go.wait()
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    if n % 2:
                        client.post("/api/journal", json={"AccountNo": chance.choice(accounts), "Amount": 1})
                    else:
                        client.get("/api/clients")
                    calls["ok"] += 1
                except Exception as error:  # every failure is counted, whatever it is
                    failures[f"{type(error).__name__}: {getattr(error, 'reason', error)}"] += 1
                time.sleep(chance.uniform(0, 0.01))

        def heartbeat() -> None:
            # (c) A store operation every 20 ms, whatever the callers do (a caller may sit in a
            # backoff wait): the store goes back to Redis at its first operation after Redis returns.
            go.wait()
            while not stop.is_set():
                state.run(PausedFor("heartbeat"), time.monotonic())
                time.sleep(0.02)

        pool = [threading.Thread(target=loop, args=(random.randrange(2**32),)) for _ in range(threads)]
        if task == "restart":
            pool.append(threading.Thread(target=heartbeat))
        for thread in pool:
            thread.start()
        results.put(("ready", None))
        for thread in pool:
            thread.join()
        client.close()
        results.put(("done", {
            "sent": record.sent, "pauses": state.pauses, "outages": outages.lines,
            "calls": sum(calls.values()), "failures": dict(failures),
        }))  # fmt: skip
    except BaseException as error:
        results.put(("error", f"{type(error).__name__}: {error}"))


@contextlib.contextmanager
def fleet(
    task: str, redis_url: str, base_url: str, threads: int
) -> Iterator[tuple[Any, Any, list[dict[str, Any]]]]:
    """Start PROCESSES workers (all ready before this yields (go, stop, reports)); after the block,
    the workers stop and ``reports`` holds what each sent back."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context: Any = multiprocessing.get_context("forkserver")
    else:
        context = multiprocessing.get_context("spawn")
    go, stop, results = context.Event(), context.Event(), context.Queue()
    processes = [
        context.Process(
            target=worker, args=(task, redis_url, base_url, threads, go, stop, results), daemon=True
        )
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    reports: list[dict[str, Any]] = []
    try:
        for _ in processes:
            kind, value = results.get(timeout=120)
            if kind != "ready":
                raise RuntimeError(f"a worker failed: {value}")
        yield go, stop, reports
    finally:
        stop.set()
        go.set()
        for _ in processes:
            try:
                kind, value = results.get(timeout=120)
            except queue.Empty:
                break
            if kind != "done":
                raise RuntimeError(f"a worker failed: {value}")
            reports.append(value)
        for process in processes:
            process.join(timeout=10)


# -- (b) shared guard and shared Retry-After -----------------------------------------------------------


def sharing(server: RedisServer, seconds: float = 6.0, threads: int = 4) -> None:
    sim = Simulator(journal_latency=0.02)
    sim.rate_limit("hyper", 40, period=1.0)
    with serve(sim) as url, fleet("share", server.url, f"{url}/hyper", threads) as (go, stop, reports):
        go.set()
        time.sleep(seconds)
        stop.set()
    stats = sim.snapshot()
    sent = sorted(tuple(s) for report in reports for s in report["sent"])
    pauses = [p for report in reports for p in report["pauses"]]
    early: Counter[str] = Counter()
    in_flight = 0
    for t, held, checked in sent:
        inside = [
            (received, written) for received, written, lasts in pauses if received < t < received + lasts
        ]
        if any(written < checked for _, written in inside):
            early[held or "not held"] += 1  # the pause was in Redis when this attempt last looked
        elif inside:
            in_flight += 1  # it had looked (and was let through) before the pause was written
    calls = sum(report["calls"] for report in reports)
    failures = Counter[str]()
    for report in reports:
        failures.update(report["failures"])
    journal = stats["journal"]
    print(f"\n(b) {PROCESSES} processes x {threads} threads sharing Redis for {seconds:g} s against the "
          f"simulator (40 requests per 1 s, journal calls of 20 ms)")  # fmt: skip
    print(f"    calls {calls}, attempts sent {len(sent)}, failed {sum(failures.values())}"
          + (f" {dict(failures)}" if failures else ""))  # fmt: skip
    print(f"    journal overlaps per account (code 50 answers): {sum(journal['overlaps'].values())}  (bar 0); "
          f"max in flight per account: {max(journal['max_in_flight'].values(), default=0)}")  # fmt: skip
    print(f"    429s {stats['rate_limited'].get('hyper', 0)}, shared pauses written {len(pauses)}; requests "
          f"sent before a shared Retry-After ended, its pause in Redis before their last look or wait: "
          f"{sum(early.values())}  (bar 0)"
          + (f", by how they were held just before: {dict(early)}" if early else ""))  # fmt: skip
    print(f"    (sent inside a Retry-After, let through with no wait since before its pause reached Redis: "
          f"{in_flight})")  # fmt: skip


# -- (c) Redis killed mid-run -------------------------------------------------------------------------------


def restart(server: RedisServer, threads: int = 4) -> None:
    sim = Simulator(journal_latency=0.02)
    marks: dict[str, float] = {}
    overlaps: list[tuple[float, int]] = []

    def watch() -> None:
        while "end" not in marks:
            overlaps.append((time.monotonic(), sum(sim.snapshot()["journal"]["overlaps"].values())))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    with serve(sim) as url, fleet("restart", server.url, f"{url}/hyper", threads) as (go, stop, reports):
        go.set()
        watcher.start()
        time.sleep(1.5)
        marks["killed"] = time.monotonic()
        server.kill()
        time.sleep(2.0)
        marks["restarted"] = time.monotonic()  # from the moment it is launched: a probe may beat our PING
        server.start()
        time.sleep(4.0)
        stop.set()
    marks["end"] = time.monotonic()
    watcher.join()
    calls = sum(report["calls"] for report in reports)
    failures = Counter[str]()
    for report in reports:
        failures.update(report["failures"])
    resumed = []
    for report in reports:
        backs = [t for t, what in report["outages"] if what == "back" and t >= marks["restarted"]]
        if any(what == "down" for _, what in report["outages"]):
            resumed.append(min(backs) - marks["restarted"] if backs else float("inf"))
    lost_early = sum(
        1 for report in reports for t, what in report["outages"] if what == "down" and t < marks["killed"]
    )
    marks["shared"] = marks["restarted"] + max(resumed, default=0.0)

    def overlaps_at(moment: float) -> int:
        return max((count for t, count in overlaps if t <= moment), default=0)

    phases = [("before the kill", "killed"), ("while Redis was down", "restarted"),
              ("from the restart until all shared again", "shared"), ("after", "end")]  # fmt: skip
    counts, previous = [], 0
    for name, mark in phases:
        now = overlaps_at(marks[mark])
        counts.append(f"{name} {now - previous}")
        previous = now
    print(f"\n(c) {PROCESSES} processes x {threads} threads calling; redis-server SIGKILLed after 1.5 s, "
          f"restarted on the same port 2 s later, 4 s more")  # fmt: skip
    print(f"    calls {calls}, failed {sum(failures.values())}  (bar 0)"
          + (f" {dict(failures)}" if failures else ""))  # fmt: skip
    shown = ", ".join(f"{s:.2f}" for s in sorted(resumed)) or "none lost it"
    print(f"    seconds from the restart until each process used Redis again: {shown}; all shared again "
          f"after {max(resumed, default=0.0):.2f} s  (bar <= 5)")  # fmt: skip
    print(f"    journal overlaps (code 50 answers, retried): {', '.join(counts)}; "
          f"fallbacks before the kill (Redis too slow): {lost_early}")  # fmt: skip


def parts_to_run(argv: Sequence[str]) -> set[str]:
    """``--overhead-only`` runs (a) alone; ``--only a c`` the parts named; nothing, all three."""
    if "--overhead-only" in argv:
        return {"a"}
    if "--only" in argv:
        return {part for part in argv[argv.index("--only") + 1 :] if part in ("a", "b", "c")}
    return {"a", "b", "c"}


def main() -> None:
    parts = parts_to_run(sys.argv[1:])
    server = RedisServer().start()
    try:
        print(f"redis-server {server.version()} on 127.0.0.1:{server.port}; {time.strftime('%Y-%m-%d')}")
        if "a" in parts:
            overhead(server)
        server.flush()
        if "b" in parts:
            sharing(server)
        server.flush()
        if "c" in parts:
            restart(server)
    finally:
        server.close()


if __name__ == "__main__":
    main()
