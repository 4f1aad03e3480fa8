"""``resilient-client demo``: the vendor clients against the simulator on a loopback port.

Each step scripts the simulator, makes one call with a vendor client, and prints what happened:
the attempts, the waits, the exception caught, and what the simulator received. The last steps show
the resilience strategies (circuit breaker, rate limiter, guard, retry budget) at work under the
simulator's habits, with real time and threads; the very last, random faults retried while an
outage is refused. Uses only public names; waits are shortened (the server's Retry-After is still
honoured in full), so the whole demo takes a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs
import httpx

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
            response = client.post("/api/journal", json={"AccountNo": 7, "Amount": 100})
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

        for scenario in (_breaker, _pause, _guard, _budget, _faults_and_outage, _capacity):
            sim.reset()
            scenario(sim, url, steps)
    out(f"\ndone in {time.monotonic() - started:.1f} s; the simulator has stopped")
    return 0


# -- the resilience strategies: real time, real threads, a few hundred ms each (the 429 pause: 1 s) --

Result = httpx.Response | rc.errors.ResilientClientError


def _hyper(**tables: Any) -> rc.RetryPolicy:
    """The shipped hyper policy, its backoff waits capped at 0.2 s, with the given tables replaced."""
    shipped = rc.load_policy("hyper")
    retry = attrs.evolve(shipped.retry, initial_wait=0.05, max_wait=0.2)
    return attrs.evolve(shipped, **{"retry": retry, **tables})


class _Watch(rc.Hook):
    """What the demo reads from the pipeline's events: circuit changes (printed), sends, 429 retries."""

    def __init__(self, out: Print) -> None:
        self.out = out
        self.lock = threading.Lock()
        self.sends: list[float] = []
        self.throttled = threading.Event()
        self.throttled_at = 0.0
        self.server_wait = 0.0

    def on_breaker(self, event: rc.BreakerEvent) -> None:
        self.out(f"   circuit of {event.vendor} at {event.host}: {event.state}")

    def on_attempt_start(self, call: object, number: int) -> None:
        with self.lock:
            self.sends.append(time.monotonic())

    def on_retry(self, call: object, event: rc.RetryEvent) -> object:
        # Heard once the limiter has recorded the 429: from here on its pause is in force.
        if event.category == "rate_limited" and not self.throttled.is_set():
            self.throttled_at, self.server_wait = time.monotonic(), event.wait
            self.throttled.set()
        return None

    def sent_after(self, moment: float) -> list[float]:
        """Seconds after ``moment`` at which requests were sent."""
        with self.lock:
            return [sent - moment for sent in self.sends if sent > moment]


def _at_once(calls: Sequence[Callable[[], httpx.Response]]) -> list[Result]:
    """Run the calls in threads released at the same moment: each one's response, or what it raised."""
    start = threading.Barrier(len(calls))

    def run(call: Callable[[], httpx.Response]) -> Result:
        start.wait()
        try:
            return call()
        except rc.errors.ResilientClientError as e:
            return e

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def _attempts(result: Result) -> int:
    if isinstance(result, httpx.Response):
        return int(result.extensions[rc.ATTEMPTS_EXTENSION])
    return getattr(result, "attempts", None) or 1


def _hyper_client(url: str, steps: _Steps, policy: rc.RetryPolicy, **kwargs: Any) -> rc.HyperClient:
    kwargs.setdefault("on_retry", steps.retry)
    return rc.HyperClient(base_url=f"{url}/hyper", token="demo-token", policy=policy, **kwargs)


def _received(sim: Simulator) -> int:
    """Requests the simulator received from Hyper clients, refused ones included."""
    return sum(count for (vendor, _), count in sim.requests.items() if vendor == "hyper")


def _breaker(sim: Simulator, url: str, steps: _Steps) -> None:
    steps.title("Hyper: an outage opens the circuit breaker; calls are then refused without a request")
    out, watch = steps.out, _Watch(steps.out)
    break_duration = 0.5
    policy = _hyper(
        breaker=rc.BreakerSettings(minimum_throughput=3, failure_ratio=0.5, break_duration=break_duration),
        rate_limit=rc.RateLimitSettings(enabled=False),
    )
    out("   [breaker] minimum_throughput = 3, failure_ratio = 0.5, break_duration = 0.5; outage: 503s")
    sim.outage("hyper", status=503)
    with _hyper_client(url, steps, policy, hooks=[watch]) as c:
        try:
            c.get("/api/clients")
        except rc.errors.ServiceUnavailableError as e:
            out(f"   caught {type(e).__name__} after {e.attempts} attempts: {e.reason}")
        before, began = _received(sim), time.monotonic()
        refused: list[rc.errors.CircuitOpenError] = []
        for _ in range(3):
            try:
                c.get("/api/clients")
            except rc.errors.CircuitOpenError as e:
                refused.append(e)
        took = time.monotonic() - began
        out(f"   {len(refused)} more calls: CircuitOpenError in {took * 1000:.0f} ms in all; requests the "
            f"simulator received for them: {_received(sim) - before}")  # fmt: skip
        out(f"   transport.breaker.state: {c.resilient_transport.breaker.state}")
        sim.outage("hyper", None)
        wait = max((e.retry_after or 0.0 for e in refused), default=break_duration)
        out(
            f"   the outage ends; a probe goes when the break ends, in {wait:.2f} s (the error's retry_after)"
        )
        time.sleep(wait)
        response = c.get("/api/clients")
        out(f"   -> probe answered HTTP {response.status_code}; "
            f"transport.breaker.state: {c.resilient_transport.breaker.state}")  # fmt: skip


def _pause(sim: Simulator, url: str, steps: _Steps) -> None:
    steps.title("Hyper: one 429's Retry-After pauses every call to the host, not only the one that got it")
    out, watch = steps.out, _Watch(steps.out)
    out("   the simulator lets 3 requests a second through; the shipped hyper [rate_limit] is on")
    sim.rate_limit("hyper", 3, period=1.0)
    with _hyper_client(url, steps, _hyper(), hooks=[watch]) as c:

        def call() -> httpx.Response:
            return c.get("/api/clients")

        began = time.monotonic()
        with ThreadPoolExecutor(2) as waves:
            first = waves.submit(_at_once, [call] * 4)
            if not watch.throttled.wait(10):
                raise RuntimeError("the simulator's rate limit answered no 429 in 10 s")
            paused_at, pause = watch.throttled_at, watch.server_wait
            time.sleep(0.1)  # lets any request of the first wave still on its way land first
            before = _received(sim)
            second = waves.submit(_at_once, [call] * 2)
            time.sleep(max(0.0, paused_at + pause - 0.1 - time.monotonic()))
            during = _received(sim) - before
            results = first.result() + second.result()
        throttled = sim.rate_limited["hyper"]
        out(f"   4 calls at once: {4 - throttled} answered, {throttled} got 429 with Retry-After: {pause:g}")
        out(f"   2 more calls start 0.1 s into the pause: the simulator received {during} requests "
            f"in the next {pause - 0.2:.1f} s")  # fmt: skip
        held = watch.sent_after(paused_at)
        succeeded = sum(isinstance(r, httpx.Response) and r.status_code == 200 for r in results)
        out(f"   -> {len(held)} requests went {min(held, default=0.0):.2f} s after the 429; {succeeded} of "
            f"{len(results)} calls succeeded in {time.monotonic() - began:.2f} s; 429s in all: "
            f"{sim.rate_limited['hyper']}")  # fmt: skip
    sim.rate_limit("hyper", None)


def _guard(sim: Simulator, url: str, steps: _Steps) -> None:
    steps.title("Hyper: two journal calls for one account at once are sent one after the other")
    out, fast = steps.out, _hyper()
    # Without the guard, code 50's retry waits 0.3 s: the other call (0.2 s) is done by then.
    unguarded = attrs.evolve(fast, guards={}, retry=attrs.evolve(fast.retry, max_wait=0.3, jitter="none"))
    out("   the simulator takes 0.2 s per journal call and answers code 50 to an overlapping one")
    for label, policy in (("guard on ([guards.journal], key AccountNo)", fast), ("guard off", unguarded)):
        sim.reset()
        sim.journal_latency = 0.2
        with _hyper_client(url, steps, policy) as c:

            def journal() -> httpx.Response:
                return c.post("/api/journal", json={"AccountNo": 7, "Amount": 100})

            results = _at_once([journal, journal])
        out(f"   {label}: {sim.side_effects['hyper', '/api/journal']} of 2 applied, attempts "
            f"{sorted(map(_attempts, results))}, at most {sim.max_in_flight['7']} at the server at once, "
            f"{sim.overlaps['7']} code 50 answers")  # fmt: skip
    sim.journal_latency = 0.0


def _budget(sim: Simulator, url: str, steps: _Steps) -> None:
    steps.title("Hyper: under an outage, the retry budget keeps attempts near 1 + ratio a request")
    requests = 10
    retry = attrs.evolve(_hyper().retry, initial_wait=0.01, max_wait=0.01)
    policy = _hyper(
        retry=retry,
        budget=rc.BudgetSettings(ratio=0.2, burst=1.0),
        breaker=rc.BreakerSettings(enabled=False),
        rate_limit=rc.RateLimitSettings(enabled=False),
    )
    out = steps.out
    out(f"   [budget] ratio = 0.2, burst = 1; [breaker] off; max_attempts = {retry.max_attempts}; 503s")
    sim.outage("hyper", status=503)
    reasons: set[str] = set()
    with _hyper_client(url, steps, policy, on_retry=None) as c:
        for _ in range(requests):
            try:
                c.get("/api/clients")
            except rc.errors.ApiError as e:
                reasons.add(str(e.reason))
    sent = sim.outage_answers["hyper"]
    out(f"   {requests} requests: the simulator received {sent} attempts, {sent / requests:.2f} a request "
        f"(without the budget: {requests * retry.max_attempts})")  # fmt: skip
    out(f"   reasons given: {'; '.join(sorted(reasons))}")
    sim.outage("hyper", None)


def _faults_and_outage(sim: Simulator, url: str, steps: _Steps) -> None:
    steps.title("USTA: 30 % random 503s are retried (calls succeed); an outage is refused (few attempts)")
    out, watch = steps.out, _Watch(steps.out)
    shipped = rc.load_policy("usta")
    # The shipped policy (budget, breaker), its backoff waits 100 times shorter: a few seconds in all.
    retry = attrs.evolve(shipped.retry, initial_wait=0.005, max_wait=0.08)
    policy = attrs.evolve(shipped, retry=retry)
    budget, breaker = policy.budget, policy.breaker
    out(f"   shipped usta policy: [budget] ratio = {budget.ratio:g}, burst = {budget.burst:g}, "
        f"refund = {budget.refund:g}; [breaker] failure_ratio = {breaker.failure_ratio:g}, "
        f"minimum_throughput = {breaker.minimum_throughput}, consecutive_failures = "
        f"{breaker.consecutive_failures}")  # fmt: skip
    calls = 200
    transport = rc.ResilientTransport("usta", policy=policy, hooks=[watch])
    with httpx.Client(base_url=f"{url}/usta", transport=transport) as c:
        for label in ("30 % random 503s", "an outage (every request a 503)"):
            if label.startswith("30"):
                sim.error_rate("usta", 0.3, seed=2026)
            else:
                sim.error_rate("usta", None)
                sim.outage("usta", status=503)
            before, began = sum(sim.snapshot()["requests"].get("usta", {}).values()), time.monotonic()
            endings: dict[str, int] = {}
            for _ in range(calls):
                try:
                    c.get("/api/v1/items")
                    ending = "succeeded"
                except rc.errors.ResilientClientError as e:
                    ending = type(e).__name__
                endings[ending] = endings.get(ending, 0) + 1
            attempts = sum(sim.snapshot()["requests"].get("usta", {}).values()) - before
            ended = ", ".join(f"{count} {ending}" for ending, count in sorted(endings.items()))
            out(f"   {label}: {calls} calls in {time.monotonic() - began:.2f} s, {attempts} attempts "
                f"({attempts / calls:.2f} a call); {ended}")  # fmt: skip
        out(f"   transport.breaker.state: {transport.breaker.state}")
    sim.outage("usta", None)


def _capacity(sim: Simulator, url: str, steps: _Steps) -> None:
    steps.title("USTA: the concurrency limit follows the vendor's capacity as it steps 8 -> 3 -> 6")
    out, tasks, seconds = steps.out, 24, 0.8
    out(f"   {tasks} asyncio tasks; the simulator serves C calls at once (50 ms each), a 503 beyond")
    sim.capacity("usta", 8, latency=0.05)

    async def drive() -> list[tuple[int, dict[str, Any]]]:
        seen = []
        async with rc.AsyncUstaClient(base_url=f"{url}/usta", token="demo-token", policy=_quick("usta")) as c:
            end = time.monotonic() + 3 * seconds

            async def calls() -> None:
                while time.monotonic() < end:
                    with contextlib.suppress(rc.errors.ResilientClientError):
                        await c.get("/v1/players")

            workers = [asyncio.create_task(calls()) for _ in range(tasks)]
            for capacity in (8, 3, 6):
                sim.capacity("usta", capacity)
                before = sim.snapshot()["capacity"]["usta"]
                await asyncio.sleep(seconds)
                after = sim.snapshot()["capacity"]["usta"]
                seen.append((capacity, {k: after[k] - before.get(k, 0) for k in ("served", "refused")}))
                seen[-1][1]["peak"] = after["peak"]
            await asyncio.gather(*workers)
        return seen

    for capacity, stats in asyncio.run(drive()):
        attempts = stats["served"] + stats["refused"]
        out(f"   C = {capacity}: at most {stats['peak']} at the server at once, {stats['served']} served, "
            f"{stats['refused'] / max(1, attempts):.0%} of attempts refused")  # fmt: skip
    sim.capacity("usta", None)
