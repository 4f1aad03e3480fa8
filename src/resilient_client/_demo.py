"""``resilient-client demo``: the vendor clients against the simulator on a loopback port.

Each step scripts the simulator, makes one call with a vendor client, and prints what happened:
the attempts, the waits, the exception caught, and what the simulator received. Uses only public
names; waits are shortened (the server's Retry-After is still honoured in full).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import attrs

import resilient_client as rc
from resilient_client.simulator import Fault, Reply, Simulator, serve

Print = Callable[[str], None]


def _quick(vendor: str) -> rc.RetryPolicy:
    shipped = rc.load_policy(vendor)
    return attrs.evolve(shipped, retry=attrs.evolve(shipped.retry, initial_wait=0.05, max_wait=0.2), codes={})


class _Steps:
    def __init__(self, out: Print) -> None:
        self.out = out
        self.number = 0

    def title(self, text: str) -> None:
        self.number += 1
        self.out(f"\n{self.number}. {text}")

    def retry(self, event: rc.RetryEvent) -> None:
        what = event.category or type(event.error).__name__
        code = "" if event.code is None else f" {event.code}"
        self.out(f"   attempt {event.attempt} failed ({what}{code}); retrying after {event.wait:.2f} s")

    def client(self, cls: Any, url: str, vendor: str, **kwargs: Any) -> Any:
        kwargs.setdefault("policy", _quick(vendor))
        return cls(base_url=f"{url}/{vendor}", on_retry=self.retry, **kwargs)


def run(out: Print = print) -> int:
    """Run every scenario and print a report; returns the exit status (0)."""
    sim = Simulator()
    steps = _Steps(out)
    started = time.monotonic()
    with serve(sim) as url:
        out(f"simulator listening on {url}")

        steps.title("Hyper: a locked account (code 10, twice) is retried to success, even for a POST")
        sim.script("hyper", "/api/journal", [Fault("hyper", 10), Fault("hyper", 10)])
        with steps.client(rc.HyperClient, url, "hyper", token="demo-token") as client:
            response = client.post("/api/journal", json={"Account": 7, "Amount": 100})
        out(f"   -> HTTP {response.status_code}, ResponseCode {response.json()['ResponseCode']}, "
            f"attempts {response.extensions[rc.ATTEMPTS_EXTENSION]}, "
            f"journal entries applied {sim.side_effects['hyper', '/api/journal']}")  # fmt: skip

        steps.title("USTA: a server error after a POST is not retried (the server may have saved it)")
        sim.script("usta", "/v1/players", [Fault("usta", 9001)])
        with steps.client(rc.UstaClient, url, "usta", token="demo-token") as client:
            try:
                client.post("/v1/players", json={"firstName": "Ann"})
            except rc.errors.ServerError as e:
                out(f"   caught {type(e).__name__}: {e}")
        out(f"   -> requests received by the server: {sim.requests['usta', '/v1/players']}")

        steps.title("Medable: kThrottled with Retry-After: 1 is waited in full, never less")
        sim.script("medable", "/c_visits", [Fault("medable", "kThrottled", retry_after=1)])
        with steps.client(rc.MedableClient, url, "medable", client_key="demo-key") as client:
            begin = time.monotonic()
            response = client.post("/c_visits", json={"c_date": "2026-11-22"})
        out(f"   -> HTTP {response.status_code} after {time.monotonic() - begin:.2f} s, "
            f"attempts {response.extensions[rc.ATTEMPTS_EXTENSION]}")  # fmt: skip

        steps.title("Hyper: 'No Results' (code 2) arrives under HTTP 200 and is a soft fault")
        sim.script("hyper", "/api/clients", [Fault("hyper", 2)])
        with steps.client(rc.HyperClient, url, "hyper", token="demo-token") as client:
            try:
                client.get("/api/clients", params={"q": "nobody"})
            except rc.errors.NoResults as e:
                out(f"   caught {type(e).__name__} (a SoftFault): code {e.code}, HTTP {e.http_status}")

        steps.title("Medable: a validation error with the faulty fields in its details")
        children = (
            {"code": "kRequired", "status": 400, "reason": "Required property", "path": "dob"},
            {"code": "kEnumValue", "status": 400, "reason": "One of: m, f", "path": "gender"},
        )
        sim.script("medable", "/patientfiles", [Fault("medable", "kValidationError", details=children)])
        with steps.client(rc.MedableClient, url, "medable", client_key="demo-key") as client:
            try:
                client.post("/patientfiles", json={"gender": "martian"})
            except rc.errors.ValidationError as e:
                out(
                    f"   caught {type(e).__name__}: "
                    + ", ".join(f"{d.path} ({d.message})" for d in e.details)
                )

        steps.title("Updox: a batch call answers 2000 while one item failed")
        items = (
            {"id": "26", "success": True},
            {"id": "27", "success": False, "message": "The appointment date is not valid"},
        )
        sim.script("updox", "/api/io/AppointmentsSync", [Fault("updox", 2000, details=items)])
        with steps.client(
            rc.UpdoxClient, url, "updox", application_id="demo", application_password="demo-pw"
        ) as c:
            try:
                c.call("AppointmentsSync", {"appointments": []})
            except rc.errors.PartialFailure as e:
                out(
                    f"   caught PartialFailure (code {e.code}): "
                    + ", ".join(f"item {d.item_id}: {d.message}" for d in e.details)
                )

        steps.title("USTA: a rate limit that never lifts runs out of attempts")
        sim.script("usta", "/v1/events", [Reply(429, {"message": "Too Many Requests"})], repeat=True)
        with steps.client(rc.UstaClient, url, "usta", token="demo-token") as client:
            try:
                client.get("/v1/events")
            except rc.errors.RateLimitedError as e:
                out(f"   caught {type(e).__name__} after {e.attempts} attempts")

        steps.title("Medable: a login from a new location needs verification; the CSRF token is echoed")
        sim.script("medable", "/accounts/login", [Fault("medable", "kNewLocation")])
        with steps.client(rc.MedableClient, url, "medable", client_key="demo-key") as client:
            try:
                client.login("ann@example.test", "correct horse")
            except rc.errors.VerificationRequired as e:
                out(f"   caught {type(e).__name__} ({e.code}); signing in again with the emailed token")
            client.login("ann@example.test", "correct horse", verification_token="123456")
            client.get("/accounts/me")
            echoed = sim.last_headers["medable", "/accounts/me"].get("medable-csrf-token") is not None
            out(f"   -> signed in; CSRF token echoed on the next request: {echoed}")
    out(f"\ndone in {time.monotonic() - started:.1f} s; the simulator has stopped")
    return 0
