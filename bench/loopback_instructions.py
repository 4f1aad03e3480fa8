"""SPEC section 7's loopback bars in machine instructions: deterministic where wall time is not.

``overhead.py`` times a small-JSON success over loopback per shipped policy; on a shared 2-core
machine its wall-time ratios swing by more than the bar's 5 % margin. This script counts what the
client process executes instead (valgrind's callgrind): each side runs in a child process under
callgrind at two request counts against one uvicorn server (``overhead.LoopbackServer``, each
vendor's path answered with a real success of that vendor), and a request's cost is the difference
divided. The server's work is not counted, so a ratio here is the client's cost, a little above what
a user feels (the server and the kernel add to both sides alike).

Sides: bare httpx and the SDK under each vendor's shipped policy (``overhead.shipped_policy``:
hyper's fixed rate raised so it does not pace), sync and async (asyncio); with ``--otel``, the SDK
under ``resilient_client.otel.instrument`` against bare httpx under
``opentelemetry-instrumentation-httpx``, on one set of SDK providers (``overhead.Telemetry``).

Both sides freeze the heap they start with (``gc.freeze()`` after five requests to warm up), so the
garbage collector's rare full collections pass over what each request leaves, not over every module
the process imported. Without it one full collection, which falls inside the counted 400 requests or
outside them by chance, decides the ratio: with the SDK imported (and unused), a bare httpx request
counted 1,587,457 instructions instead of 1,546,565, 42 k more, all of it that one pass over the
larger heap (with the heap frozen: 1,546,329). In a process that runs for long, the full collections
come when a quarter of the heap is new (CPython's ``long_lived_pending`` rule), so their cost per
request does not grow with the modules imported; the frozen count is that steady state.

Usage: ``python bench/loopback_instructions.py [--otel] [--vendor V] [--driver sync|async]``;
needs valgrind (``apt install valgrind``). About 10 minutes for every vendor and driver on two cores.
"""

from __future__ import annotations

import concurrent.futures
import gc
import os
import shutil
import sys

import anyio
import httpx

import resilient_client as rc

sys.path.insert(0, os.path.dirname(__file__))
import overhead  # the loopback server, the vendors' successes and policies, the instruction count
from loopback_floor import chosen  # a --flag's one value, checked

VENDORS = ("usta", "updox", "medable", "hyper")
DRIVERS = ("sync", "async")
SIDES = ("bare", "SDK")
#: Requests counted: the cost of one is the difference divided by the difference of the counts.
COUNTS = (100, 500)


def child(url: str, side: str, vendor: str, driver: str, count: int, otel: bool) -> None:
    """``count`` requests (after five to warm up, and the heap frozen) through one side: run under
    callgrind."""
    telemetry = overhead.Telemetry() if otel else None
    if telemetry is not None and side == "SDK":
        telemetry.__enter__()
    sync = driver == "sync"
    if side == "bare":
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport = (
            httpx.HTTPTransport() if sync else httpx.AsyncHTTPTransport()
        )
    else:
        transport = rc.ResilientTransport(vendor, policy=overhead.shipped_policy(vendor))
    target = url + overhead.PATHS[vendor]
    body = overhead.BODIES[vendor]
    if sync:
        with httpx.Client(transport=transport) as client:  # type: ignore[arg-type]
            if telemetry is not None and side == "bare":
                telemetry.instrument_httpx(client)
            for _ in range(5):
                assert client.get(target).read() == body
            gc.freeze()
            for _ in range(count):
                assert client.get(target).read() == body
        return

    async def run() -> None:
        async with httpx.AsyncClient(transport=transport) as aclient:  # type: ignore[arg-type]
            if telemetry is not None and side == "bare":
                telemetry.instrument_httpx(aclient)
            for _ in range(5):
                assert await (await aclient.get(target)).aread() == body
            gc.freeze()
            for _ in range(count):
                assert await (await aclient.get(target)).aread() == body

    anyio.run(run, backend="asyncio")


def main() -> None:
    if "--child" in sys.argv:
        url, side, vendor, driver, count, otel = sys.argv[sys.argv.index("--child") + 1 :]
        child(url, side, vendor, driver, int(count), otel == "otel")
        return
    if shutil.which("valgrind") is None:
        sys.exit("loopback_instructions.py needs valgrind (apt install valgrind)")
    otel = "otel" if "--otel" in sys.argv else "plain"
    vendors, drivers = chosen("--vendor", VENDORS), chosen("--driver", DRIVERS)
    runs = [
        (vendor, driver, side, count)
        for driver in drivers
        for vendor in vendors
        for side in SIDES
        for count in COUNTS
    ]
    with (
        overhead.LoopbackServer() as url,
        concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool,
    ):
        futures = {
            run: pool.submit(
                overhead.instructions_collected,
                __file__,
                "--child",
                url,
                run[2],
                run[0],
                run[1],
                str(run[3]),
                otel,
            )
            for run in runs
        }
        totals = {run: future.result() for run, future in futures.items()}
    low, high = COUNTS
    label = "OpenTelemetry on" if otel == "otel" else "OpenTelemetry off"
    print(f"| policy | driver | bare httpx ({label}) | SDK | ratio | bar <= {overhead.BAR}x |")
    print("|---|---|---|---|---|---|")
    for driver in drivers:
        for vendor in vendors:
            cost = {
                side: (totals[vendor, driver, side, high] - totals[vendor, driver, side, low]) / (high - low)
                for side in SIDES
            }
            ratio = cost["SDK"] / cost["bare"]
            verdict = "met" if ratio <= overhead.BAR else "**NOT met**"
            print(
                f"| {overhead.policy_label(vendor)} | {driver} | {cost['bare']:,.0f} | "
                f"{cost['SDK'] - cost['bare']:+,.0f} | {ratio:.4f}x | {verdict} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
