"""User task 2: configure a retry policy file and use it.

    python examples/configure_policy.py

Loads examples/my_policy.toml (which extends the shipped hyper policy), shows what it changed, and
uses it: a locked account is retried up to 6 times, and "No Results" comes back as a response.
The waits are real: my_policy.toml's ``max_wait = 0.2`` caps every backoff wait, so five retries
of hyper code 10 wait at most a second in all (the shipped hyper policy alone starts code 10 at 1 s).
"""

from __future__ import annotations

from pathlib import Path

import resilient_client as rc
from resilient_client.simulator import Fault, Simulator, serve

POLICY = Path(__file__).with_name("my_policy.toml")


def main(url: str, sim: Simulator) -> None:
    policy = rc.load_policy(POLICY)  # a bad file raises rc.PolicyError: file, key path, problem
    print(f"max_attempts={policy.retry.max_attempts} total_timeout={policy.retry.total_timeout}")
    locked = next(w for w in policy.effective_waits() if w.code == 10)
    waits = ", ".join(f"{w:g}" for w in locked.waits)
    print(f"hyper 10 ({locked.category}): retried for {locked.retried} method, waits at most {waits} s")
    sim.script("hyper", "/api/journal", [Fault("hyper", 10)] * 5)
    sim.script("hyper", "/api/clients", [Fault("hyper", 2)])
    with rc.HyperClient(base_url=f"{url}/hyper", token="t", policy=policy) as client:
        response = client.post("/api/journal", json={"AccountNo": 7})
        print("journal attempts:", response.extensions[rc.ATTEMPTS_EXTENSION])
        print("clients ResponseCode:", client.get("/api/clients").json()["ResponseCode"])


if __name__ == "__main__":
    simulator = Simulator()  # the example scripts the faults, so it starts its own simulator
    with serve(simulator) as base:
        main(base, simulator)
