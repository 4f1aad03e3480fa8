"""User task 3: catch typed exceptions, by category, by vendor, or by one exact code.

python examples/catch_errors.py
"""

from __future__ import annotations

import resilient_client as rc
from resilient_client.simulator import Fault, Reply, Simulator, serve

# The class of one exact code, for an `except` clause (resilient_client.errors.Hyper12Error).
EntityLockedByAnotherUser = rc.catalog("hyper").lookup(12).exception  # type: ignore[union-attr]


def main(url: str, sim: Simulator) -> None:
    sim.script("hyper", "/api/cases/7", [Fault("hyper", 12)])
    sim.script("usta", "/v1/players", [Reply(429, {"message": "slow down"}, {"Retry-After": "3600"})])
    sim.script(
        "medable",
        "/c_visits",
        [Fault("medable", "kValidationError", details=({"code": "kRequired", "path": "c_date"},))],
    )
    sim.script("updox", "/api/io/MessageList", [Fault("updox", 4010)])

    with rc.HyperClient(base_url=f"{url}/hyper", token="t") as hyper:
        try:
            hyper.put("/api/cases/7", json={"Status": "closed"})
        except EntityLockedByAnotherUser as e:  # exact code
            print(f"exact code: {e.code} {e.message!r} ({e.category}, retryable={e.retryable})")

    with rc.UstaClient(base_url=f"{url}/usta", token="t") as usta:
        try:
            usta.post("/v1/players", json={})
        except rc.errors.RateLimitedError as e:  # by category, any vendor
            print(
                f"by category: rate limited, the server asked for {e.retry_after:g} s; attempts={e.attempts}"
            )

    with rc.MedableClient(base_url=f"{url}/medable", client_key="k") as medable:
        try:
            medable.post("/c_visits", json={})
        except rc.errors.ValidationError as e:
            print("by category: invalid fields", [d.path for d in e.details])

    with rc.UpdoxClient(base_url=f"{url}/updox", application_id="a", application_password="p") as updox:
        try:
            updox.call("MessageList")
        except rc.errors.UpdoxError as e:  # by vendor
            print(f"by vendor: {type(e).__name__} code {e.code} under HTTP {e.http_status}: {e}")


if __name__ == "__main__":
    simulator = Simulator()
    with serve(simulator) as base:
        main(base, simulator)
