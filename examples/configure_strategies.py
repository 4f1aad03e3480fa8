"""User task 2, the resilience strategies: configure them in a policy file and see what each one does.

    python examples/configure_strategies.py

Loads examples/strategies_policy.toml (which extends the shipped hyper policy and sets ``[budget]``,
``[breaker]``, ``[rate_limit]`` and ``[guards.journal]``), and uses it with one HyperClient against
the simulator: the rate limiter paces calls made at once, the guard sends two journal calls of one
account one after the other, and under an outage the budget stops the retries and the breaker opens,
refuses calls without sending them, and closes again after one probe. The waits are real, under two
seconds in all: the file's 0.5 s break, its pace of 5 requests a second, backoff waits of 0.2 s at most.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

import resilient_client as rc
from resilient_client.simulator import Simulator, serve

POLICY = Path(__file__).with_name("strategies_policy.toml")


class SendTimes(rc.Hook):
    """Notes when each request is sent, i.e. after every strategy let it through."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.times: list[float] = []

    def on_attempt_start(self, call: object, number: int) -> None:
        with self.lock:
            self.times.append(time.monotonic())


def at_once(call: Callable[[], httpx.Response], times: int) -> list[httpx.Response]:
    with ThreadPoolExecutor(times) as pool:
        return list(pool.map(lambda _: call(), range(times)))


def main(url: str, sim: Simulator) -> None:
    policy = rc.load_policy(POLICY)  # a bad file raises rc.PolicyError: file, key path, problem
    limit, guard = policy.rate_limit, policy.guards["journal"]
    print(f"budget: ratio {policy.budget.ratio:g}, burst {policy.budget.burst:g}")
    print(f"breaker: opens at {policy.breaker.failure_ratio:.0%} of {policy.breaker.minimum_throughput} "
          f"attempts, break {policy.breaker.break_duration:g} s")  # fmt: skip
    print(f"rate_limit: {limit.requests} per {limit.period:g} s, burst {limit.burst}")
    keys = ", ".join(guard.key_fields)
    print(f"guards.journal: {guard.limit} at a time per {keys}, waiting {guard.max_wait:g} s at most")

    sends = SendTimes()
    with rc.HyperClient(base_url=f"{url}/hyper", token="t", policy=policy, hooks=[sends]) as client:
        # Budget and breaker: the vendor answers 503 to everything.
        sim.outage("hyper", status=503)
        try:
            failed = 0
            for number in (1, 2):
                try:
                    client.get("/api/clients")
                except rc.errors.ServiceUnavailableError as e:
                    failed += e.attempts or 0
                    print(f"budget: call {number} made {e.attempts} attempt(s): {e.reason}")
            print(f"breaker: {client.resilient_transport.breaker.state} after {failed} failed attempts")
            before, probe_in = sim.outage_answers["hyper"], 0.0
            try:
                client.get("/api/clients")
            except rc.errors.CircuitOpenError as e:
                probe_in = e.retry_after or 0.0
                sent = sim.outage_answers["hyper"] - before
                print(f"breaker: call 3 raised {type(e).__name__} at once, {sent} requests sent")
        finally:
            sim.outage("hyper", None)
        time.sleep(probe_in)  # the rest of the break
        response = client.get("/api/clients")
        print(f"breaker: the probe got HTTP {response.status_code}, the circuit is "
              f"{client.resilient_transport.breaker.state}")  # fmt: skip

        # Rate limiter: 4 calls at once; 2 go at once (burst), the others at 5 a second.
        sends.times.clear()
        at_once(lambda: client.get("/api/clients"), 4)
        first, *_, last = sorted(sends.times)
        print(f"rate_limit: 4 calls at once, sent over {last - first:.2f} s")

        # Guard: two journal calls of account 7 at once, while the server takes 0.1 s for each.
        sim.journal_latency = 0.1
        try:
            post = lambda: client.post("/api/journal", json={"AccountNo": 7, "Amount": 10})  # noqa: E731
            codes = [r.json()["ResponseCode"] for r in at_once(post, 2)]
        finally:
            sim.journal_latency = 0.0
        print(f"guard: 2 journal calls for account 7 at once -> ResponseCode {codes}, "
              f"at most {sim.max_in_flight['7']} at the server at once")  # fmt: skip


if __name__ == "__main__":
    simulator = Simulator()  # the example switches the simulator's habits, so it starts its own
    with serve(simulator) as base:
        main(base, simulator)
