"""Hooks: follow every call, attempt, retry, refusal, wait and circuit change of a client.

    python examples/hooks.py

A hook is a subclass of ``rc.Hook`` that overrides the methods it wants; each receives the call
(``rc.Call``) and a typed event. This one prints what it hears while a HyperClient, against the
simulator, makes a call the vendor answers with a 503 then a success (an attempt, a retry, an
attempt), then two calls paced by the rate limiter (a wait), then calls into an outage until the
circuit opens and refuses. A second hook raises on every event: the calls go on regardless, and
each of its failures is logged once. The clock is a fake one (``resilient_client.testing``), so the
waits take no real time.
"""

from __future__ import annotations

import logging

import attrs

import resilient_client as rc
from resilient_client.simulator import Fault, Simulator, serve
from resilient_client.testing import FakeClock


class Printer(rc.Hook):
    """Prints one line per event. Every method is optional; these are the signatures."""

    def on_call_start(self, call: rc.Call) -> None:
        print(f"call start   {call.request.method} {call.operation} (deadline in {call.time_left():.0f} s)")

    def on_attempt_start(self, call: rc.Call, number: int) -> None:
        print(f"attempt {number} sent")

    def on_attempt(self, call: rc.Call, event: rc.AttemptEvent) -> None:
        print(f"attempt {event.attempt} -> {event.category} (HTTP {event.status}): {event.decision}")

    def on_retry(self, call: rc.Call, event: rc.RetryEvent) -> None:
        print(f"retry after attempt {event.attempt}: waiting {event.wait:.2f} s ({event.cause})")

    def on_rejection(self, call: rc.Call, event: rc.RejectionEvent) -> None:
        print(f"attempt {event.attempt} not sent: {event.strategy} refused ({event.reason})")

    def on_wait(self, call: rc.Call, event: rc.WaitEvent) -> None:
        print(f"attempt {event.attempt} waited {event.seconds:.2f} s for {event.strategy}")

    def on_breaker(self, event: rc.BreakerEvent) -> None:
        print(f"circuit of {event.vendor} at {event.host}: {event.state}")

    def on_call_end(self, call: rc.Call, error: BaseException | None) -> None:
        print(f"call end     {'ok' if error is None else type(error).__name__}")


class Broken(rc.Hook):
    """A hook with a bug: it raises on every event it hears. It breaks nothing."""

    def on_attempt(self, call: rc.Call, event: rc.AttemptEvent) -> None:
        raise RuntimeError("a bug in a hook")

    def on_breaker(self, event: rc.BreakerEvent) -> None:
        raise RuntimeError("a bug in a hook")


def main(url: str, sim: Simulator) -> None:
    # The shipped hyper policy, paced at 2 requests a second with no burst: the second call waits.
    pace = rc.RateLimitSettings(enabled=True, requests=2, period=1.0, burst=1)
    policy = attrs.evolve(rc.load_policy("hyper"), rate_limit=pace)
    clock = FakeClock()
    with rc.HyperClient(
        base_url=f"{url}/hyper",
        token="t",
        policy=policy,
        hooks=[Printer(), Broken()],
        # A fake clock (the waits take no real time) and the jitter's middle draw (the same waits
        # on every run).
        transport_options={**clock.options(), "random": lambda: 0.5},
    ) as client:
        print("-- a 503, then a success")
        sim.script("hyper", "*", [Fault("hyper", 50, status=503)])
        client.get("/api/clients")
        print("-- the next call waits its turn")
        client.get("/api/clients")
        print("-- an outage: the circuit opens, then refuses")
        sim.outage("hyper", status=503)
        for _ in range(12):
            try:
                client.get("/api/clients")
            except rc.errors.CircuitOpenError as error:
                print(f"raised CircuitOpenError: a probe in {error.retry_after:.0f} s")
                break
            except rc.errors.ApiError as error:
                print(f"raised {type(error).__name__}")
        sim.outage("hyper", None)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="log: %(message)s")  # Broken's failures, once
    simulator = Simulator()
    with serve(simulator) as address:
        main(address, simulator)
