"""Memory held per endpoint (SPEC section 8: per-endpoint state is bounded, flat across many endpoints).

One ``ResilientTransport`` under the shipped usta policy (budget, breaker, concurrency; the in-process
store) calls ever new hosts through an in-process ``MockTransport``, on a fake clock that moves
one second every 100 calls, so the strategies' idle windows pass as they would in a long-running
process that meets new hosts all the time. Python's traced memory (``tracemalloc``) is printed after
every step: flat means the breakers, limiters, concurrency endpoints and store records of idle hosts
are dropped, not kept for good.

    .venv/bin/python bench/endpoint_memory.py [--hosts 200000] [--step 20000]
"""

from __future__ import annotations

import argparse
import gc
import tracemalloc

import httpx

import resilient_client as rc
from resilient_client.testing import FakeClock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=200_000, help="distinct hosts called (default 200,000)")
    parser.add_argument("--step", type=int, default=20_000, help="hosts between two readings")
    args = parser.parse_args()
    clock = FakeClock()
    body = b'{"id": 7}'
    vendor = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
    transport = rc.ResilientTransport("usta", transport=vendor, **clock.options())
    print(f"{args.hosts:,} hosts, one call each, the clock moving 1 s every 100 calls")
    print(f"{'hosts':>9}  {'traced MB':>9}")
    tracemalloc.start()
    with httpx.Client(transport=transport) as client:
        for number in range(1, args.hosts + 1):
            client.get(f"https://h{number}.vendor.test/items").read()
            if number % 100 == 0:
                clock.now += 1.0
            if number % args.step == 0:
                gc.collect()
                print(f"{number:>9,}  {tracemalloc.get_traced_memory()[0] / 1e6:>9.1f}", flush=True)
    tracemalloc.stop()


if __name__ == "__main__":
    main()
