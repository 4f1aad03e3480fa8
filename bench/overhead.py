"""Success-path overhead and the cost of one retry, against bare httpx and httpx-retries.

SPEC section 7: the success path of ``ResilientTransport`` under the default policy (retry budget
and circuit breaker on) costs <= 1.05x bare httpx on the same in-process transport and no more than
httpx-retries' ``RetryTransport`` measured in the same run; <= 1.03x over a loopback server; and
one retry (503 then 200, waits off) costs no more than httpx-retries' retry.

Cases: in-process (``httpx.MockTransport``) and over a loopback server (uvicorn on 127.0.0.1, in a
separate process so it does not share this one's GIL), sync and async (asyncio: httpx-retries
sleeps with ``asyncio.sleep``), a small JSON body, a 48 KiB one (read and scanned for a fault) and a
1 MiB one (over the read cap, passed through). Every side wraps an inner transport of the same kind
(``MockTransport`` with the same handler, or httpx's own ``HTTPTransport``) and sends the same
requests through an ``httpx.Client``.

How it measures. Each case runs many short batches, one per side in turn (the order rotating each
round), so drift in the machine's speed hits every side alike. The ratio reported is the median of
the per-round ratios (each side against the bare batch of the same round), beside the ratio of the
fastest batches (the least disturbed) and the cost per request in microseconds. In-process batches
are timed in CPU time of this thread (``time.thread_time``: everything runs in it, and other
processes on a shared machine disturb it far less than wall time); loopback batches in wall time,
since there the server's and the kernel's work is part of a request.

Prints one line per case and a verdict per bar. ``--quick`` for a smoke run, ``--retry-only`` for
the one-retry cases alone, ``--loopback-only`` / ``--in-process-only`` for the loopback / in-process success-path cases alone.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import attrs
import httpx
from httpx_retries import RetryTransport

import resilient_client as rc

SMALL = json.dumps({"ResponseCode": 0, "ResponseMsgEng": "Success", "Items": [1, 2, 3]}).encode()
MEDIUM = json.dumps({"ResponseCode": 0, "Items": ["x" * 1000] * 48}).encode()  # ~48 KiB: read, scanned
LARGE = json.dumps({"ResponseCode": 0, "Items": ["x" * 1000] * 1040}).encode()  # ~1 MiB: over the cap
JSON = {"content-type": "application/json"}
#: The SDK's side: the vendor whose success body SMALL is, under the default policy (budget and
#: breaker on, no rate limiter: the shipped hyper policy paces 20 requests a minute).
VENDOR, POLICY = "hyper", "default"

SIDES = ("bare", "resilient", "httpx-retries")
PEER = "httpx-retries"
Timer = Callable[[], float]


async def asgi_app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    body = {"/large": LARGE, "/medium": MEDIUM}.get(scope["path"], SMALL)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class LoopbackServer:
    """uvicorn on 127.0.0.1 and a free port, in a child process running this file with --serve."""

    def __enter__(self) -> str:
        import subprocess

        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(10)


def serve_forever() -> None:
    import socket

    import uvicorn

    with socket.socket() as probe:  # a free port; uvicorn binds it itself, with its socket options
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(asgi_app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)

    async def announce_when_started() -> None:
        while not server.started:
            await anyio.sleep(0.01)
        print(f"http://127.0.0.1:{port}", flush=True)

    async def run() -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(announce_when_started)
            await server.serve()

    anyio.run(run)


# -- measuring ------------------------------------------------------------------------------------


@attrs.frozen
class Ratio:
    """One side against a reference side, over the rounds of one case."""

    paired: float  # median of the per-round ratios
    fastest: float  # fastest batch against fastest batch
    per_request_us: float  # median extra microseconds per request

    @classmethod
    def of(cls, side: list[float], reference: list[float], count: int) -> Ratio:
        return cls(
            paired=statistics.median(s / r for s, r in zip(side, reference, strict=True)),
            fastest=min(side) / min(reference),
            per_request_us=(statistics.median(side) - statistics.median(reference)) / count * 1e6,
        )

    def __str__(self) -> str:
        return f"x{self.paired:.3f} ({self.per_request_us:+6.1f} us/req; fastest x{self.fastest:.3f})"


def rotations(names: tuple[str, ...], rounds: int) -> Iterator[tuple[str, ...]]:
    """Each round's order: the sides in turn, starting one further each round, forwards on even
    rounds and backwards on odd ones. Forwards alone, each side would always run right after the same
    other side (in bare, resilient, httpx-retries: resilient after bare, httpx-retries after
    resilient), and whatever a batch leaves behind (garbage for the collector, a cold cache) would
    always be charged to the same side; both ways, each side follows each of its two neighbours
    equally often, and with three sides every order is run."""
    backwards = names[::-1]
    for index in range(rounds):
        order = names if index % 2 == 0 else backwards
        shift = (index // 2) % len(order)
        yield order[shift:] + order[:shift]


def run_rounds(timed: Callable[[str], float], names: tuple[str, ...], rounds: int) -> dict[str, list[float]]:
    for name in names:
        timed(name)  # warm-up: connections, caches
    times: dict[str, list[float]] = {name: [] for name in names}
    for order in rotations(names, rounds):
        for name in order:
            times[name].append(timed(name))
    return times


async def arun_rounds(
    timed: Callable[[str], Awaitable[float]], names: tuple[str, ...], rounds: int
) -> dict[str, list[float]]:
    for name in names:
        await timed(name)
    times: dict[str, list[float]] = {name: [] for name in names}
    for order in rotations(names, rounds):
        for name in order:
            times[name].append(await timed(name))
    return times


def instructions_collected(script: str, *args: str) -> int:
    """Machine instructions valgrind's callgrind counts in one run of ``script`` with ``args``
    (a fixed hash seed, so two runs differ only by what they were asked to do)."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        script,
        *args,
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stderr
    return int(next(line for line in out.splitlines() if "Collected" in line).split()[-1])


# -- success path -----------------------------------------------------------------------------------


def sync_transports(inner: Callable[[], httpx.BaseTransport]) -> dict[str, httpx.BaseTransport]:
    return {
        "bare": inner(),
        "resilient": rc.ResilientTransport(VENDOR, policy=POLICY, transport=inner()),
        "httpx-retries": RetryTransport(transport=inner()),
    }


def async_transports(inner: Callable[[], httpx.AsyncBaseTransport]) -> dict[str, httpx.AsyncBaseTransport]:
    return {
        "bare": inner(),
        "resilient": rc.ResilientTransport(VENDOR, policy=POLICY, transport=inner()),
        "httpx-retries": RetryTransport(transport=inner()),
    }


def sync_case(
    inner: Callable[[], httpx.BaseTransport], url: str, count: int, rounds: int, clock: Timer
) -> dict[str, list[float]]:
    clients = {name: httpx.Client(transport=t) for name, t in sync_transports(inner).items()}

    def timed(name: str) -> float:
        client = clients[name]
        start = clock()
        for _ in range(count):
            client.get(url).read()
        return clock() - start

    try:
        return run_rounds(timed, SIDES, rounds)
    finally:
        for client in clients.values():
            client.close()


def async_case(
    inner: Callable[[], httpx.AsyncBaseTransport], url: str, count: int, rounds: int, clock: Timer
) -> dict[str, list[float]]:
    async def run_case() -> dict[str, list[float]]:
        clients = {name: httpx.AsyncClient(transport=t) for name, t in async_transports(inner).items()}

        async def timed(name: str) -> float:
            client = clients[name]
            start = clock()
            for _ in range(count):
                await (await client.get(url)).aread()
            return clock() - start

        try:
            return await arun_rounds(timed, SIDES, rounds)
        finally:
            for client in clients.values():
                await client.aclose()

    return anyio.run(run_case, backend="asyncio")


def mock(body: bytes) -> Callable[[], httpx.MockTransport]:
    return lambda: httpx.MockTransport(lambda request: httpx.Response(200, content=body, headers=JSON))


@attrs.frozen
class Verdict:
    case: str
    bare_us: float
    resilient: Ratio
    peer: Ratio
    #: None: no bar (SPEC section 7 sets the in-process bar for small bodies only).
    bar: float | None
    against_peer: bool

    @property
    def met(self) -> bool:
        if self.bar is None:
            return True
        within = self.resilient.paired <= self.bar
        return within and (not self.against_peer or self.resilient.paired <= self.peer.paired)

    def line(self) -> str:
        peer_bar = " and <= httpx-retries" if self.against_peer else ""
        verdict = (
            "(no bar)"
            if self.bar is None
            else f"bar <= {self.bar:.2f}x{peer_bar}: {'met' if self.met else 'NOT met'}"
        )
        return (
            f"{self.case:26s} bare {self.bare_us:8.1f} us/req | resilient {self.resilient} | "
            f"httpx-retries {self.peer} | {verdict}"
        )


def judged(
    case: str, times: dict[str, list[float]], count: int, bar: float | None, against_peer: bool
) -> Verdict:
    bare = times["bare"]
    return Verdict(
        case,
        statistics.median(bare) / count * 1e6,
        Ratio.of(times["resilient"], bare, count),
        Ratio.of(times[PEER], bare, count),
        bar,
        against_peer,
    )


# -- one retry ------------------------------------------------------------------------------------


def flaky(first: int) -> Callable[[], httpx.MockTransport]:
    """A MockTransport answering ``first`` then 200, over and over (every request takes two
    attempts when ``first`` is retried)."""

    def build() -> httpx.MockTransport:
        statuses = itertools.cycle((first, 200))

        def handler(request: httpx.Request) -> httpx.Response:
            status = next(statuses)
            return httpx.Response(status, content=SMALL if status == 200 else b"", headers=JSON)

        return httpx.MockTransport(handler)

    return build


def retry_policy() -> rc.RetryPolicy:
    """The default policy, where every request failing once must not make the budget or the breaker
    refuse the retry (their bookkeeping still runs): a budget that earns a token per request, a
    breaker that opens only above 90 % failures."""
    policy = rc.load_policy(POLICY)
    return attrs.evolve(
        policy,
        budget=attrs.evolve(policy.budget, ratio=1.0),
        breaker=attrs.evolve(policy.breaker, failure_ratio=0.9),
    )


RETRY_SIDES = ("resilient 200", "resilient 503+200", "httpx-retries 200", "httpx-retries 503+200")


def retry_transports(sync: bool) -> dict[str, Any]:
    policy = retry_policy()
    out: dict[str, Any] = {}
    for label, inner in (("200", mock(SMALL)), ("503+200", flaky(503))):
        out[f"resilient {label}"] = rc.ResilientTransport(VENDOR, policy=policy, transport=inner())
        out[f"httpx-retries {label}"] = RetryTransport(transport=inner())  # backoff_factor 0: no waits
    return out


def retried_rounds(transports: dict[str, Any], sync: bool, count: int, rounds: int) -> dict[str, list[float]]:
    """Rounds of ``count`` GETs through each transport (each request must end in a 200), waits off."""
    clock = time.thread_time
    names = tuple(transports)
    rc.set_testing(True)  # the SDK's waits off (httpx-retries' default backoff is 0 s)
    try:
        if sync:
            clients = {name: httpx.Client(transport=t) for name, t in transports.items()}

            def timed(name: str) -> float:
                client = clients[name]
                start = clock()
                for _ in range(count):
                    response = client.get("http://x/")
                    response.read()
                    assert response.status_code == 200
                return clock() - start

            return run_rounds(timed, names, rounds)

        async def run_case() -> dict[str, list[float]]:
            aclients = {name: httpx.AsyncClient(transport=t) for name, t in transports.items()}

            async def atimed(name: str) -> float:
                client = aclients[name]
                start = clock()
                for _ in range(count):
                    response = await client.get("http://x/")
                    await response.aread()
                    assert response.status_code == 200
                return clock() - start

            return await arun_rounds(atimed, names, rounds)

        return anyio.run(run_case, backend="asyncio")
    finally:
        rc.set_testing(False)


def retry_case(sync: bool, count: int, rounds: int) -> dict[str, list[float]]:
    transports = retry_transports(sync)
    return retried_rounds({name: transports[name] for name in RETRY_SIDES}, sync, count, rounds)


def retry_line(driver: str, times: dict[str, list[float]], count: int) -> tuple[str, bool]:
    def us(name: str) -> float:
        return statistics.median(times[name]) / count * 1e6

    def own(side: str) -> float:
        """The retry's own cost: a 503-then-200 request less a 200 one (one attempt less)."""
        return us(f"{side} 503+200") - us(f"{side} 200")

    ours, theirs = own("resilient"), own("httpx-retries")
    met = ours <= theirs
    return (
        f"one retry, in-process {driver:5s}  request 503+200: resilient {us('resilient 503+200'):7.1f} us, "
        f"httpx-retries {us('httpx-retries 503+200'):7.1f} us | the retry's own cost: resilient "
        f"{ours:6.1f} us, httpx-retries {theirs:6.1f} us (bench/retry_floor.py splits it) | "
        f"bar <= httpx-retries: {'met' if met else 'NOT met'}"
    ), met


def retry_lines(count: int, rounds: int) -> list[str]:
    """Print the one-retry line of each driver; returns the bars missed."""
    missed = []
    for sync, driver in ((True, "sync"), (False, "async")):
        line, met = retry_line(driver, retry_case(sync, count, rounds // 2 or 1), count)
        print(line, flush=True)
        if not met:
            missed.append(f"one retry ({driver})")
    return missed


# -- main -------------------------------------------------------------------------------------------


def main() -> None:
    if "--serve" in sys.argv:
        serve_forever()
        return
    quick = "--quick" in sys.argv
    # (requests per batch for small and 48 KiB bodies, for 1 MiB bodies, rounds)
    small, large, rounds = (10, 2, 4) if quick else (50, 4, 120)
    if "--retry-only" in sys.argv:
        retries = retry_lines(small, rounds)
        print("bars not met: " + (", ".join(retries) if retries else "none"))
        return
    sizes = (
        ("small", SMALL, "/small", small),
        ("48 KiB", MEDIUM, "/medium", small),
        ("1 MiB", LARGE, "/large", large),
    )
    verdicts: list[Verdict] = []
    print(
        f"success path: {VENDOR} under the {POLICY!r} policy; ratios to bare httpx (median of per-round ratios)"
    )
    loopback_only = "--loopback-only" in sys.argv
    in_process_only = "--in-process-only" in sys.argv
    for label, body, _, count in () if loopback_only else sizes:
        bar = 1.05 if body is SMALL else None
        times = sync_case(mock(body), "http://x/", count, rounds, time.thread_time)
        verdicts.append(judged(f"in-process sync  {label}", times, count, bar, True))
        print(verdicts[-1].line(), flush=True)
        atimes = async_case(mock(body), "http://x/", count, rounds, time.thread_time)
        verdicts.append(judged(f"in-process async {label}", atimes, count, bar, True))
        print(verdicts[-1].line(), flush=True)
    with LoopbackServer() as base:
        for label, _, path, count in () if in_process_only else sizes:
            times = sync_case(httpx.HTTPTransport, base + path, count, rounds, time.perf_counter)
            verdicts.append(judged(f"loopback sync    {label}", times, count, 1.03, False))
            print(verdicts[-1].line(), flush=True)
            atimes = async_case(httpx.AsyncHTTPTransport, base + path, count, rounds, time.perf_counter)
            verdicts.append(judged(f"loopback async   {label}", atimes, count, 1.03, False))
            print(verdicts[-1].line(), flush=True)
    missed = [v.case for v in verdicts if not v.met] + (
        [] if loopback_only or in_process_only else retry_lines(small, rounds)
    )
    print("bars not met: " + (", ".join(missed) if missed else "none"))


if __name__ == "__main__":
    main()
