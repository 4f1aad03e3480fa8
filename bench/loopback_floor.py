"""What a success over a loopback server must cost at the least, beside what the SDK's costs.

SPEC section 7 asks that a success over loopback cost the SDK no more than 1.03x bare httpx, for a
small, a 48 KiB and a 1 MiB JSON body. Wall time over loopback swings by more than that margin on
a small machine, so this script counts machine instructions in the client process (valgrind's
callgrind, deterministic) and sets beside the SDK the least any implementation of the rest of SPEC
must do on that success:

- ``bare``: httpx's own transport.
- ``floor``: the total deadline handed to every network operation (``_deadline``: the bar on a
  server trickling its headers one byte at a time), the body read when it may carry a fault and
  fits the cap, and proved fault-free by the vendor's byte scan (SPEC section 4). No policy, no
  breaker, no budget, no check of anything else: what no implementation of those sections can get
  under.
- ``httpx-retries``: its ``RetryTransport``, which reads no body and keeps no deadline.
- ``resilient``: the SDK under ``overhead.py``'s policy (the default: budget and breaker on).

Each side runs in a child process under callgrind at two request counts, against one uvicorn
server on 127.0.0.1 started here; a request's cost is the difference divided. Needs valgrind
(``apt install valgrind``); the whole run (two sizes, two drivers) takes about 40 minutes on two
cores, ``--size`` and ``--driver`` pick one.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import sys
import time
from typing import Any

import anyio
import httpx
from httpx_retries import RetryTransport

import resilient_client as rc
from resilient_client import _deadline
from resilient_client._envelopes import no_fault_scanner

sys.path.insert(0, os.path.dirname(__file__))
import overhead  # the loopback server, the SDK's vendor and policy

SIDES = ("bare", "floor", "httpx-retries", "resilient")
SIZES = {"small": "/small", "48KiB": "/medium"}
DRIVERS = ("sync", "async")
#: The SDK's default ``[body] max_read_bytes``: a larger body passes through unread.
CAP = 65536
#: Requests counted: the cost of one is the difference divided by the difference of the counts.
COUNTS = (200, 1000)


class Floor(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """The least SPEC asks of a loopback success (see the module docstring)."""

    def __init__(self) -> None:
        self.inner = _deadline.bind(httpx.HTTPTransport())
        self.ainner = _deadline.bind(httpx.AsyncHTTPTransport())
        scan = no_fault_scanner(rc.catalog(overhead.VENDOR).envelope)
        assert scan is not None
        self.scan = scan

    @staticmethod
    def readable(response: httpx.Response) -> bool:
        length = response.headers.get("content-length")
        return length is not None and int(length) <= CAP

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        token = _deadline.current.set(_deadline.Deadline(time.monotonic() + 30.0, time.monotonic))
        try:
            response = self.inner.handle_request(request)
            if self.readable(response) and not self.scan(response.read()):
                raise AssertionError("the benchmark's body is a success")
        finally:
            _deadline.current.reset(token)
        return response

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        token = _deadline.current.set(_deadline.Deadline(time.monotonic() + 30.0, time.monotonic))
        try:
            response = await self.ainner.handle_async_request(request)
            if self.readable(response) and not self.scan(await response.aread()):
                raise AssertionError("the benchmark's body is a success")
        finally:
            _deadline.current.reset(token)
        return response


def transport(side: str, sync: bool) -> Any:
    if side == "floor":
        return Floor()
    if side == "httpx-retries":
        return RetryTransport()
    if side == "resilient":
        return rc.ResilientTransport(overhead.VENDOR, policy=overhead.POLICY)
    return httpx.HTTPTransport() if sync else httpx.AsyncHTTPTransport()


def child(url: str, side: str, driver: str, count: int) -> None:
    """``count`` requests (after three to warm up) through one side: run under callgrind."""
    target = transport(side, driver == "sync")
    if driver == "sync":
        client = httpx.Client(transport=target)
        for _ in range(3 + count):
            client.get(url).read()
        return

    async def run() -> None:
        aclient = httpx.AsyncClient(transport=target)
        for _ in range(3 + count):
            await (await aclient.get(url)).aread()

    anyio.run(run, backend="asyncio")


def collected(url: str, side: str, driver: str, count: int) -> int:
    return overhead.instructions_collected(__file__, "--child", url, side, driver, str(count))


def chosen(flag: str, choices: tuple[str, ...]) -> tuple[str, ...]:
    if flag not in sys.argv:
        return choices
    picked = sys.argv[sys.argv.index(flag) + 1]
    if picked not in choices:
        sys.exit(f"{flag}: {picked!r} is not one of {', '.join(choices)}")
    return (picked,)


def main() -> None:
    if "--child" in sys.argv:
        url, side, driver, count = sys.argv[sys.argv.index("--child") + 1 :]
        child(url, side, driver, int(count))
        return
    if shutil.which("valgrind") is None:
        sys.exit("loopback_floor.py needs valgrind (apt install valgrind)")
    sizes, drivers = chosen("--size", tuple(SIZES)), chosen("--driver", DRIVERS)
    runs = [
        (size, driver, side, count)
        for size in sizes
        for driver in drivers
        for side in SIDES
        for count in COUNTS
    ]
    with (
        overhead.LoopbackServer() as base,
        concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool,
    ):
        futures = {run: pool.submit(collected, base + SIZES[run[0]], run[2], run[1], run[3]) for run in runs}
        totals = {run: future.result() for run, future in futures.items()}
    for size in sizes:
        for driver in drivers:
            low, high = COUNTS
            cost = {
                side: (totals[size, driver, side, high] - totals[size, driver, side, low]) / (high - low)
                for side in SIDES
            }
            bare = cost["bare"]
            print(f"loopback {driver} {size}: instructions per request in the client (bare {bare:,.0f})")
            for side in SIDES[1:]:
                extra = cost[side] - bare
                print(f"  {side:14s} +{extra:10,.0f}  ({cost[side] / bare:.4f}x bare; bar <= 1.03x)")


if __name__ == "__main__":
    main()
