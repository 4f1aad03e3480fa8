"""Success-path overhead over loopback, on every shipped policy, against bare httpx and httpx-retries.

SPEC section 7's bars: a successful small-JSON call over loopback through httpx's own transport
costs <= 1.05x bare httpx, sync and async, on every shipped policy; and, with OpenTelemetry on,
<= 1.05x bare httpx instrumented by ``opentelemetry-instrumentation-httpx`` on the same providers.

The server is uvicorn on 127.0.0.1 in a child process (it does not share this one's GIL); it answers
each vendor's path with a real success of that vendor (hyper ``{"ResponseCode": 0, ...}``, updox
``{"successful": true, "responseCode": 2000, ...}``, usta a plain object, medable
``{"object": "list", ...}``). Per vendor, its shipped policy (usta and updox: the default's
strategies, budget and breaker on; medable and hyper: a rate limiter too, hyper's raised so that
it does not pace, medable's has no fixed rate to raise). Sides, each an ``httpx.Client`` /
``httpx.AsyncClient`` over httpx's own ``HTTPTransport``:

- ``bare``: httpx alone;
- ``SDK``: ``ResilientTransport(vendor, policy=...)`` over it;
- ``httpx-retries``: its ``RetryTransport`` over it (the peer, no bar).

With OpenTelemetry on, one ``TracerProvider`` (spans to an in-memory exporter, emptied between
batches) and one ``MeterProvider`` (an in-memory reader) serve every side: the SDK through
``resilient_client.otel.instrument(tracer_provider=..., meter_provider=...)``, the bare and the
httpx-retries clients through ``HTTPXClientInstrumentor.instrument_client``. Each side's spans are
checked before it is timed (the SDK's and httpx's, and not both on one side).

How it measures. Each case runs many short batches, one per side in turn, the order rotating each
round, so drift in the machine's speed hits every side alike. The ratio reported is the median of
the per-round ratios (each side against the bare batch of the same round), beside the cost per
request in microseconds. Loopback batches are timed in wall time (the server's and the kernel's
work is part of a request).

Information, no bar (SPEC section 7: in-process ratios are printed, not judged): the same small
success in-process over ``httpx.MockTransport`` (CPU time of this thread), and the cost of one
retry (503 then 200, waits off) beside httpx-retries'. ``--loopback-only`` skips them;
``--quick`` is a smoke run (few rounds: its figures mean nothing); ``--retry-only`` runs the
one-retry lines alone. Prints a Markdown table the README can take, then the bars not met.
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

#: Each vendor's small success, as the server sends it for a path under /<vendor>/.
SUCCESS = {
    "usta": {"id": 1, "name": "Player One", "section": "Texas", "rating": 4.5},
    "updox": {"successful": True, "responseCode": 2000, "responseMessage": "OK", "practiceId": "p-1"},
    "medable": {"object": "list", "data": [{"_id": "5f1e", "object": "account"}], "hasMore": False},
    "hyper": {"ResponseCode": 0, "ResponseMsgEng": "Success", "Items": [1, 2, 3]},
}
BODIES = {vendor: json.dumps(body).encode() for vendor, body in SUCCESS.items()}
#: The path each vendor's calls go to (the first segment picks the body).
PATHS = {
    "usta": "/usta/v1/players/1",
    "updox": "/updox/api/io/PracticeGet",
    "medable": "/medable/v2/accounts",
    "hyper": "/hyper/api/items",
}
SMALL = BODIES["hyper"]
MEDIUM = json.dumps({"ResponseCode": 0, "Items": ["x" * 1000] * 48}).encode()  # ~48 KiB: read, scanned
LARGE = json.dumps({"ResponseCode": 0, "Items": ["x" * 1000] * 1040}).encode()  # ~1 MiB: over the cap
JSON = {"content-type": "application/json"}
#: The vendor and policy of the one-retry lines and of bench/loopback_floor.py
#: (their /small and /medium paths are hyper successes).
VENDOR, POLICY = "hyper", "default"

SIDES = ("bare", "SDK", "httpx-retries")
PEER = "httpx-retries"
BAR = 1.05
Timer = Callable[[], float]


async def asgi_app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    path = scope["path"]
    vendor = path.split("/")[1]
    body = BODIES.get(vendor) or {"/large": LARGE, "/medium": MEDIUM}.get(path, SMALL)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class LoopbackServer:
    """uvicorn on 127.0.0.1 and a free port, in a child process running this file with --serve."""

    def __enter__(self) -> str:
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


# -- policies -------------------------------------------------------------------------------------


def unpaced(policy: rc.RetryPolicy) -> rc.RetryPolicy:
    """The policy with its fixed rate (if any) raised beyond what the bench sends: the limiter stays
    on and does its bookkeeping, but never makes a call wait (hyper's 20 a minute would)."""
    limit = policy.rate_limit
    if not limit.enabled or limit.requests == 0:
        return policy  # no limiter, or no fixed rate (medable: adaptive only, learned from 429s)
    raised = attrs.evolve(limit, requests=1_000_000, period=1.0, burst=1_000_000)
    return attrs.evolve(policy, rate_limit=raised)


def shipped_policy(vendor: str) -> rc.RetryPolicy:
    return unpaced(rc.load_policy(vendor))


def policy_label(vendor: str) -> str:
    """The vendor and what its shipped policy switches on (hyper's journal guard left out: it
    covers journal calls only, not the bench's GET)."""
    policy = rc.load_policy(vendor)
    on = ["budget" if policy.budget.ratio > 0 else "", "breaker" if policy.breaker.enabled else ""]
    if policy.concurrency.enabled:
        on.append("concurrency")
    if policy.rate_limit.enabled:
        on.append("limiter raised" if policy.rate_limit.requests else "limiter")
    return f"{vendor} ({', '.join(part for part in on if part)})"


# -- measuring ------------------------------------------------------------------------------------


@attrs.frozen
class Ratio:
    """One side against a reference side, over the rounds of one case."""

    paired: float  # median of the per-round ratios
    per_request_us: float  # median of the per-round differences, per request, in microseconds

    @classmethod
    def of(cls, side: list[float], reference: list[float], count: int) -> Ratio:
        pairs = list(zip(side, reference, strict=True))
        return cls(
            paired=statistics.median(s / r for s, r in pairs),
            per_request_us=statistics.median(s - r for s, r in pairs) / count * 1e6,
        )

    def __str__(self) -> str:
        return f"{self.paired:.3f}x ({self.per_request_us:+.1f} us)"


def rotations(names: tuple[str, ...], rounds: int) -> Iterator[tuple[str, ...]]:
    """Each round's order: the sides in turn, starting one further each round, forwards on even
    rounds and backwards on odd ones. Forwards alone, each side would always run right after the same
    other side, and whatever a batch leaves behind (garbage for the collector, a cold cache) would
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


# -- OpenTelemetry ----------------------------------------------------------------------------------


class Telemetry:
    """One tracer provider (spans kept in memory, emptied between batches) and one meter provider
    (an in-memory reader) for every side; the SDK instrumented while it is entered."""

    SDK_SCOPE = "resilient_client"
    HTTPX_SCOPE = "opentelemetry.instrumentation.httpx"

    def __init__(self) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def __enter__(self) -> Telemetry:
        from resilient_client import otel

        otel.instrument(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider)
        return self

    def __exit__(self, *exc: object) -> None:
        from resilient_client import otel

        otel.uninstrument()
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()

    def instrument_httpx(self, client: httpx.Client | httpx.AsyncClient) -> None:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor.instrument_client(
            client, tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )

    def scopes_seen(self) -> set[str]:
        """The instrumentation scopes of the spans kept since the last call (then forgets them)."""
        spans = self.exporter.get_finished_spans()
        self.exporter.clear()
        return {span.instrumentation_scope.name for span in spans if span.instrumentation_scope}

    def check(self, side: str) -> None:
        """The side just called produced the spans of its instrumentation, and only those."""
        expected = {self.SDK_SCOPE} if side == "SDK" else {self.HTTPX_SCOPE}
        seen = self.scopes_seen()
        if seen != expected:
            raise AssertionError(
                f"OpenTelemetry on, side {side!r}: spans of {sorted(seen)}, expected {expected}"
            )


# -- loopback success -------------------------------------------------------------------------------


def sync_clients(vendor: str, telemetry: Telemetry | None) -> dict[str, httpx.Client]:
    clients = {
        "bare": httpx.Client(transport=httpx.HTTPTransport()),
        "SDK": httpx.Client(
            transport=rc.ResilientTransport(
                vendor, policy=shipped_policy(vendor), transport=httpx.HTTPTransport()
            )
        ),
        "httpx-retries": httpx.Client(transport=RetryTransport(transport=httpx.HTTPTransport())),
    }
    if telemetry is not None:
        telemetry.instrument_httpx(clients["bare"])
        telemetry.instrument_httpx(clients["httpx-retries"])
    return clients


def async_clients(vendor: str, telemetry: Telemetry | None) -> dict[str, httpx.AsyncClient]:
    clients = {
        "bare": httpx.AsyncClient(transport=httpx.AsyncHTTPTransport()),
        "SDK": httpx.AsyncClient(
            transport=rc.ResilientTransport(
                vendor, policy=shipped_policy(vendor), transport=httpx.AsyncHTTPTransport()
            )
        ),
        "httpx-retries": httpx.AsyncClient(transport=RetryTransport(transport=httpx.AsyncHTTPTransport())),
    }
    if telemetry is not None:
        telemetry.instrument_httpx(clients["bare"])
        telemetry.instrument_httpx(clients["httpx-retries"])
    return clients


def checked(side: str, response: httpx.Response, body: bytes) -> None:
    if response.status_code != 200 or response.content != body:
        raise AssertionError(
            f"side {side!r}: {response.status_code} {response.content[:80]!r}, not the success"
        )


def loopback_sync(vendor: str, url: str, count: int, rounds: int, otel: bool) -> dict[str, list[float]]:
    telemetry = Telemetry().__enter__() if otel else None
    clients = sync_clients(vendor, telemetry)
    clock = time.perf_counter
    try:
        for side, client in clients.items():
            checked(side, client.get(url), BODIES[vendor])
            if telemetry is not None:
                telemetry.check(side)

        def timed(side: str) -> float:
            client = clients[side]
            start = clock()
            for _ in range(count):
                client.get(url).read()
            elapsed = clock() - start
            if telemetry is not None:
                telemetry.exporter.clear()
            return elapsed

        return run_rounds(timed, SIDES, rounds)
    finally:
        for client in clients.values():
            client.close()
        if telemetry is not None:
            telemetry.__exit__()


def loopback_async(vendor: str, url: str, count: int, rounds: int, otel: bool) -> dict[str, list[float]]:
    async def run_case() -> dict[str, list[float]]:
        telemetry = Telemetry().__enter__() if otel else None
        clients = async_clients(vendor, telemetry)
        clock = time.perf_counter
        try:
            for side, client in clients.items():
                checked(side, await client.get(url), BODIES[vendor])
                if telemetry is not None:
                    telemetry.check(side)

            async def timed(side: str) -> float:
                client = clients[side]
                start = clock()
                for _ in range(count):
                    await (await client.get(url)).aread()
                elapsed = clock() - start
                if telemetry is not None:
                    telemetry.exporter.clear()
                return elapsed

            return await arun_rounds(timed, SIDES, rounds)
        finally:
            for client in clients.values():
                await client.aclose()
            if telemetry is not None:
                telemetry.__exit__()

    return anyio.run(run_case, backend="asyncio")


@attrs.frozen
class Row:
    """One policy and driver: the SDK and httpx-retries against bare httpx, OpenTelemetry off and on."""

    vendor: str
    driver: str
    bare_us: float
    sdk: Ratio
    peer: Ratio
    otel_bare_us: float
    otel_sdk: Ratio
    otel_peer: Ratio

    @property
    def met(self) -> bool:
        return self.sdk.paired <= BAR and self.otel_sdk.paired <= BAR

    @staticmethod
    def header() -> str:
        return (
            "| policy | driver | bare httpx | SDK | httpx-retries | bare httpx + its OTel | SDK, OTel on "
            f"| httpx-retries + httpx OTel | bar <= {BAR:.2f}x |\n|---|---|---|---|---|---|---|---|---|"
        )

    def line(self) -> str:
        verdict = "met" if self.met else "**NOT met**"
        return (
            f"| {policy_label(self.vendor)} | {self.driver} | {self.bare_us:.0f} us | {self.sdk} | {self.peer} "
            f"| {self.otel_bare_us:.0f} us | {self.otel_sdk} | {self.otel_peer} | {verdict} |"
        )


def loopback_row(vendor: str, driver: str, base: str, count: int, rounds: int) -> Row:
    measure = loopback_sync if driver == "sync" else loopback_async
    url = base + PATHS[vendor]
    plain = measure(vendor, url, count, rounds, False)
    traced = measure(vendor, url, count, rounds, True)

    def us(times: list[float]) -> float:
        return statistics.median(times) / count * 1e6

    return Row(
        vendor,
        driver,
        us(plain["bare"]),
        Ratio.of(plain["SDK"], plain["bare"], count),
        Ratio.of(plain[PEER], plain["bare"], count),
        us(traced["bare"]),
        Ratio.of(traced["SDK"], traced["bare"], count),
        Ratio.of(traced[PEER], traced["bare"], count),
    )


# -- information: in-process, one retry -------------------------------------------------------------


def mock(body: bytes) -> Callable[[], httpx.MockTransport]:
    return lambda: httpx.MockTransport(lambda request: httpx.Response(200, content=body, headers=JSON))


def in_process_case(vendor: str, sync: bool, count: int, rounds: int) -> dict[str, list[float]]:
    """The loopback case's sides over ``MockTransport`` (CPU time of this thread), OpenTelemetry off."""
    inner = mock(BODIES[vendor])
    transports: dict[str, Any] = {
        "bare": inner(),
        "SDK": rc.ResilientTransport(vendor, policy=shipped_policy(vendor), transport=inner()),
        "httpx-retries": RetryTransport(transport=inner()),
    }
    url = "http://x" + PATHS[vendor]
    clock = time.thread_time
    if sync:
        clients = {side: httpx.Client(transport=t) for side, t in transports.items()}

        def timed(side: str) -> float:
            client = clients[side]
            start = clock()
            for _ in range(count):
                client.get(url).read()
            return clock() - start

        return run_rounds(timed, SIDES, rounds)

    async def run_case() -> dict[str, list[float]]:
        aclients = {side: httpx.AsyncClient(transport=t) for side, t in transports.items()}

        async def atimed(side: str) -> float:
            client = aclients[side]
            start = clock()
            for _ in range(count):
                await (await client.get(url)).aread()
            return clock() - start

        return await arun_rounds(atimed, SIDES, rounds)

    return anyio.run(run_case, backend="asyncio")


def in_process_lines(count: int, rounds: int) -> None:
    print("\nIn-process, httpx.MockTransport, small JSON, OpenTelemetry off (information, no bar):\n")
    print("| policy | driver | bare httpx | SDK | httpx-retries |\n|---|---|---|---|---|")
    for vendor in SUCCESS:
        for sync, driver in ((True, "sync"), (False, "async")):
            times = in_process_case(vendor, sync, count, rounds)
            bare = times["bare"]
            sdk, peer = Ratio.of(times["SDK"], bare, count), Ratio.of(times[PEER], bare, count)
            bare_us = statistics.median(bare) / count * 1e6
            print(f"| {policy_label(vendor)} | {driver} | {bare_us:.1f} us | {sdk} | {peer} |", flush=True)


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


def retry_transports() -> dict[str, Any]:
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


def retry_lines(count: int, rounds: int) -> None:
    """One retry's own cost (a 503-then-200 request less a 200 one), in-process, waits off: the
    SDK (default policy, as ``retry_policy`` says) beside httpx-retries. Information, no bar."""
    print("\nOne retry (503 then 200), in-process, waits off (information, no bar):")
    for sync, driver in ((True, "sync"), (False, "async")):
        transports = retry_transports()
        times = retried_rounds({name: transports[name] for name in RETRY_SIDES}, sync, count, rounds)

        def us(name: str, times: dict[str, list[float]] = times) -> float:
            return statistics.median(times[name]) / count * 1e6

        ours = us("resilient 503+200") - us("resilient 200")
        theirs = us("httpx-retries 503+200") - us("httpx-retries 200")
        print(
            f"  {driver:5s} the retry's own cost: SDK {ours:6.1f} us, httpx-retries {theirs:6.1f} us",
            flush=True,
        )


# -- main -------------------------------------------------------------------------------------------


def main() -> None:
    if "--serve" in sys.argv:
        serve_forever()
        return
    quick = "--quick" in sys.argv
    # requests per batch, rounds (loopback), rounds (in-process information)
    count, rounds, info_rounds = (10, 4, 4) if quick else (30, 50, 40)
    if "--retry-only" in sys.argv:
        retry_lines(count, info_rounds)
        return
    started = time.monotonic()
    load = ", ".join(f"{average:.1f}" for average in os.getloadavg())
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, load average {load}"
    )
    print(
        "Success over loopback (uvicorn on 127.0.0.1, a child process), small JSON, httpx's own transport: "
        f"ratios to bare httpx, median of {rounds} per-round ratios of {count} requests (extra us per request)"
        + (" [--quick: a smoke run, the figures mean nothing]" if quick else "")
        + "\n"
    )
    print(Row.header(), flush=True)
    rows: list[Row] = []
    with LoopbackServer() as base:
        for vendor in SUCCESS:
            for driver in ("sync", "async"):
                rows.append(loopback_row(vendor, driver, base, count, rounds))
                print(rows[-1].line(), flush=True)
    if "--loopback-only" not in sys.argv:
        in_process_lines(count, info_rounds)
        retry_lines(count, info_rounds)
    missed = [f"{row.vendor} {row.driver}" for row in rows if not row.met]
    print(f"\nbars not met: {', '.join(missed) if missed else 'none'} ({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
