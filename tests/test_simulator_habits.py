"""The simulator's habits for the resilience strategies: Hyper's per-IP rate limit, code 50 on
overlapping journal calls of one account, vendor outages, the fleet view, and the command's options.

Time: the rate limit's windows follow an injected FakeClock, so nothing waits for it. An overlap
needs two requests inside the server at once, so the journal tests give the server a small real
processing time (each sleep says why); nothing else sleeps.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

import resilient_client as rc
from resilient_client.cli import _parser, _simulator_from, main
from resilient_client.simulator import (
    JOURNAL_ACCOUNT_FIELD,
    STATS_PATH,
    Fault,
    Simulator,
    serve,
)
from resilient_client.testing import FakeClock

#: Real processing time of a journal call where a test needs two of them at the server at once.
#: real-sleep: an overlap only exists while the server is inside a request; 50 ms is the brief's cap.
OVERLAP_LATENCY = 0.05


def client(sim: Simulator, ip: str = "127.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=sim, client=(ip, 5000)), base_url="http://sim")


class Swappable(Simulator):
    """The loopback server's app: it hands every request to ``self.sim``, so each sync test gets a
    fresh Simulator (with its own clock) behind one module-wide server."""

    def __init__(self) -> None:
        super().__init__()
        self.sim = Simulator()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.sim(scope, receive, send)


@pytest.fixture(scope="module")
def loopback() -> Iterator[tuple[Swappable, str]]:
    holder = Swappable()
    with serve(holder) as url:
        yield holder, url


def on_loopback(loopback: tuple[Swappable, str], sim: Simulator) -> str:
    holder, url = loopback
    holder.sim = sim
    return url


# -- the rate limit -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_past_the_limit_the_gateway_answers_429_with_retry_after_until_the_window_frees() -> None:
    clock = FakeClock(start=0.0)
    sim = Simulator(clock=clock)
    sim.rate_limit("hyper", 3, period=60.0)
    async with client(sim) as c:
        allowed = []
        for moment in (0.0, 1.0, 2.0):
            clock.now = moment
            allowed.append(await c.post("/hyper/api/clients", json={}))
        refused = await c.post("/hyper/api/clients", json={})
        clock.now = 30.0
        still = await c.get("/hyper/api/other")
        other_vendor = await c.post("/usta/v1/players", json={})
        clock.now = 60.0  # the first request leaves the window: exactly one slot frees
        freed = await c.post("/hyper/api/clients", json={})
        again = await c.post("/hyper/api/clients", json={})
    assert [a.status_code for a in allowed] == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "58"  # the request at 0 leaves the window at 60
    assert refused.json() == {"message": "API rate limit exceeded"}  # no ResponseCode: undocumented
    assert (still.status_code, still.headers["retry-after"]) == (429, "30")
    assert other_vendor.status_code == 200
    assert freed.status_code == 200
    assert (again.status_code, again.headers["retry-after"]) == (429, "1")
    assert sim.rate_limited == {"hyper": 3}
    assert sim.requests["hyper", "/api/clients"] == 6  # every request that reached the server
    assert sim.side_effects["hyper", "/api/clients"] == 4  # refused ones applied nothing


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("sent_at", "asked_at", "retry_after"),
    [
        pytest.param([0.0, 10.5], 20.0, 40, id="oldest-frees-first"),
        pytest.param([0.0, 10.5], 61.0, None, id="oldest-left"),
        pytest.param([0.5, 1.0], 20.0, 41, id="rounded-up-not-down"),
        pytest.param([0.0, 0.25], 59.75, 1, id="a-fraction-is-a-whole-second"),
        pytest.param([0.0, 10.5], 60.0, None, id="a-slot-frees-at-exactly-the-period"),
    ],
)
async def test_the_window_slides_and_retry_after_is_rounded_up(
    sent_at: list[float], asked_at: float, retry_after: int | None
) -> None:
    clock = FakeClock(start=0.0)
    sim = Simulator(clock=clock)
    sim.rate_limit("hyper", 2, period=60.0)
    async with client(sim) as c:
        for moment in sent_at:
            clock.now = moment
            assert (await c.get("/hyper/q")).status_code == 200
        clock.now = asked_at
        answer = await c.get("/hyper/q")
    if retry_after is None:
        assert answer.status_code == 200
    else:
        assert (answer.status_code, answer.headers["retry-after"]) == (429, str(retry_after))


@pytest.mark.anyio
async def test_each_client_ip_has_its_own_window_and_lifting_the_limit_frees_everyone() -> None:
    sim = Simulator(clock=FakeClock())
    sim.rate_limit("hyper", 1, period=60.0)
    async with client(sim, "10.0.0.1") as first, client(sim, "10.0.0.2") as second:
        assert (await first.get("/hyper/q")).status_code == 200
        assert (await first.get("/hyper/q")).status_code == 429
        assert (await second.get("/hyper/q")).status_code == 200
        sim.rate_limit("hyper", None)
        assert (await first.get("/hyper/q")).status_code == 200
    assert sim.rate_limited["hyper"] == 1
    assert sim.snapshot()["rate_limits"] == {}


def test_the_rate_limit_on_a_real_server_sync(loopback: tuple[Swappable, str]) -> None:
    clock = FakeClock(start=0.0)
    sim = Simulator(clock=clock)
    sim.rate_limit("hyper", 2, period=10.0)
    url = on_loopback(loopback, sim)
    with httpx.Client(base_url=url, trust_env=False) as c:
        statuses = [c.post("/hyper/api/x", json={}).status_code for _ in range(3)]
        refused = c.post("/hyper/api/x", json={})
    assert statuses == [200, 200, 429]
    assert refused.headers["retry-after"] == "10"
    assert sim.rate_limited["hyper"] == 2
    assert sim.side_effects["hyper", "/api/x"] == 2


def test_the_hyper_client_waits_out_the_gateway_sync(loopback: tuple[Swappable, str]) -> None:
    """The client and the simulator share one fake clock: the client's wait moves the window."""
    clock = FakeClock(start=0.0)
    sim = Simulator(clock=clock)
    sim.rate_limit("hyper", 2, period=10.0)
    url = on_loopback(loopback, sim)
    with rc.HyperClient(
        base_url=f"{url}/hyper", token="t", transport_options=clock.options(), trust_env=False
    ) as c:
        answers = [c.get("/api/clients") for _ in range(3)]
    assert all(a.json()["ResponseCode"] == 0 for a in answers)
    assert sim.rate_limited["hyper"] == 1
    assert sum(clock.sleeps) >= 10.0  # never before the gateway's Retry-After


@pytest.mark.anyio
async def test_the_hyper_client_waits_out_the_gateway_async() -> None:
    clock = FakeClock(start=0.0)
    sim = Simulator(clock=clock)
    sim.rate_limit("hyper", 2, period=10.0)
    async with rc.AsyncHyperClient(
        base_url="http://sim/hyper",
        token="t",
        transport=httpx.ASGITransport(app=sim),
        transport_options=clock.options(),
    ) as c:
        answers = [await c.get("/api/clients") for _ in range(3)]
    assert all(a.json()["ResponseCode"] == 0 for a in answers)
    assert sim.rate_limited["hyper"] == 1
    assert sum(clock.sleeps) >= 10.0


@pytest.mark.anyio
async def test_an_exhausted_window_is_a_rate_limited_error_with_the_servers_retry_after() -> None:
    sim = Simulator(clock=FakeClock())
    sim.rate_limit("hyper", 1, period=3600.0)  # a wait past every cap: the SDK raises at once
    async with rc.AsyncHyperClient(
        base_url="http://sim/hyper",
        token="t",
        transport=httpx.ASGITransport(app=sim),
        transport_options=FakeClock().options(),
    ) as c:
        await c.get("/api/clients")
        with pytest.raises(rc.errors.RateLimitedError) as caught:
            await c.get("/api/clients")
    assert caught.value.retry_after == 3600
    assert caught.value.http_status == 429


def test_many_threads_never_get_past_the_limit() -> None:
    """The window is checked and taken under the simulator's lock: 8 threads, 50 requests each,
    a limit of 100 lets exactly 100 through, and no count is lost. (Under the GIL this passes
    without the lock too, the race being a few bytecodes wide; it guards the counts' consistency.)"""
    sim = Simulator(clock=FakeClock())
    sim.rate_limit("hyper", 100, period=60.0)
    start = threading.Barrier(8)

    async def burst() -> None:
        async with client(sim) as c:
            for _ in range(50):
                await c.post("/hyper/api/x", json={})

    def worker() -> None:
        start.wait()
        anyio.run(burst)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sim.requests["hyper", "/api/x"] == 400
    assert sim.side_effects["hyper", "/api/x"] == 100
    assert sim.rate_limited["hyper"] == 300


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        pytest.param(lambda s: s.rate_limit("acme", 1), ValueError, "unknown vendor 'acme'", id="vendor"),
        pytest.param(lambda s: s.rate_limit("hyper", 0), ValueError, "requests must be 1 or more", id="zero"),
        pytest.param(lambda s: s.rate_limit("hyper", "20"), TypeError, "whole number or None", id="text"),
        pytest.param(lambda s: s.rate_limit("hyper", True), TypeError, "whole number or None", id="bool"),
        pytest.param(lambda s: s.rate_limit("hyper", 20, 0), ValueError, "more than 0 seconds", id="period-0"),
        pytest.param(lambda s: s.rate_limit("hyper", 20, -1.0), ValueError, "0 or more", id="period-negative"),
        pytest.param(lambda s: s.rate_limit("hyper", 20, float("inf")), ValueError, "finite", id="period-inf"),
        pytest.param(lambda s: s.rate_limit("hyper", 20, "60"), TypeError, "period: expected seconds", id="p-text"),
        pytest.param(lambda s: s.outage("acme"), ValueError, "unknown vendor 'acme'", id="outage-vendor"),
        pytest.param(lambda s: s.outage("hyper", 200), ValueError, "an error status, 400 to 599", id="outage-2xx"),
        pytest.param(lambda s: s.outage("hyper", "503"), TypeError, "an HTTP status or None", id="outage-text"),
        pytest.param(lambda s: setattr(s, "journal_latency", -0.1), ValueError, "0 or more", id="latency"),
        pytest.param(lambda s: setattr(s, "journal_latency", None), TypeError, "expected seconds", id="latency-none"),
        pytest.param(lambda s: Simulator(journal_latency=float("nan")), ValueError, "finite", id="latency-nan"),
        pytest.param(lambda s: Simulator(clock=5.0), TypeError, "expected a callable", id="clock"),
        pytest.param(lambda s: Simulator(asleep=0.1), TypeError, "an async sleep function", id="asleep"),
    ],
)  # fmt: skip
def test_bad_switches_are_refused_saying_what_and_where(
    call: Any, error: type[Exception], message: str
) -> None:
    sim = Simulator()
    with pytest.raises(error, match=message):
        call(sim)
    assert sim.snapshot()["rate_limits"] == {} and sim.snapshot()["outages"] == {}
    assert sim.journal_latency == 0.0


# -- code 50: one journal request at a time per account -------------------------------------------


class Gate:
    """The simulator's async sleep, held shut: the first journal call waits inside the server until
    the test opens the gate (whatever latency it was given); later ones pass straight through. So
    "a second call while the first is processed" needs no timing luck and no real sleep."""

    def __init__(self) -> None:
        self.entered = anyio.Event()
        self.opened = anyio.Event()
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if len(self.waits) == 1:
            self.entered.set()
            await self.opened.wait()


async def one_during_another(
    sim: Simulator,
    gate: Gate,
    first: dict[str, Any],
    second: dict[str, Any],
    path: str = "/hyper/api/Journal",
    during: Any = None,
) -> tuple[httpx.Response, httpx.Response]:
    """Send ``first``; once it is held in the server (or answered, when it is no journal call),
    send ``second`` and call ``during()``; then let the first finish."""
    answers: dict[str, httpx.Response] = {}
    async with client(sim) as c, anyio.create_task_group() as group:

        async def send_first() -> None:
            answers["first"] = await c.post(path, json=first)
            gate.entered.set()

        group.start_soon(send_first)
        await gate.entered.wait()
        answers["second"] = await c.post(path, json=second)
        if during is not None:
            during()
        gate.opened.set()
    return answers["first"], answers["second"]


@pytest.mark.anyio
async def test_a_second_journal_call_of_the_same_account_gets_code_50() -> None:
    gate = Gate()
    sim = Simulator(journal_latency=0.5, asleep=gate)
    seen: list[dict[str, Any]] = []
    body = {JOURNAL_ACCOUNT_FIELD: "A1", "Amount": 5}
    first, second = await one_during_another(
        sim, gate, body, body, during=lambda: seen.append(sim.snapshot())
    )
    assert (first.status_code, first.json()["ResponseCode"]) == (200, 0)
    assert second.status_code == 200  # Hyper sends code 50 under 200: the body code is the truth
    assert second.json() == {
        "ResponseCode": 50,
        "ResponseMsgEng": rc.catalog("hyper").lookup(50).message,  # type: ignore[union-attr]
    }
    assert gate.waits == [0.5]  # the refused call was not processed
    assert seen[0]["journal"]["in_flight"] == {"A1": 1}  # the first, still at the server
    assert sim.overlaps == {"A1": 1}
    assert sim.max_in_flight == {"A1": 2}
    assert sim.side_effects["hyper", "/api/Journal"] == 1
    assert sim.snapshot()["journal"]["in_flight"] == {}  # both released


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("first", "second", "path", "overlaps"),
    [
        pytest.param({"AccountNo": "A1"}, {"AccountNo": "B2"}, "/hyper/api/Journal", {}, id="two-accounts"),
        pytest.param({"AccountNo": 7}, {"AccountNo": "7"}, "/hyper/api/Journal", {"7": 1}, id="7-is-7"),
        pytest.param({"AccountNo": {"b": 1, "a": 2}}, {"AccountNo": {"a": 2, "b": 1}}, "/hyper/api/Journal",
                     {'{"a":2,"b":1}': 1}, id="json-value"),
        pytest.param({"AccountNo": "A1"}, {"AccountNo": "A1"}, "/hyper/v2/POSTJOURNALENTRY", {"A1": 1}, id="any-case"),
        pytest.param({"AccountNo": "A1"}, {"AccountNo": "A1"}, "/hyper/api/clients", {}, id="not-a-journal-path"),
        pytest.param({"Account": "A1"}, {"Account": "A1"}, "/hyper/api/Journal", {}, id="another-field"),
        pytest.param({"AccountNo": None}, {"AccountNo": None}, "/hyper/api/Journal", {}, id="null-account"),
        pytest.param({"AccountNo": "A1"}, {"AccountNo": "A1"}, "/usta/api/journal", {}, id="not-hyper"),
    ],
)  # fmt: skip
async def test_which_requests_are_one_accounts_journal_calls(
    first: dict[str, Any], second: dict[str, Any], path: str, overlaps: dict[str, int]
) -> None:
    gate = Gate()
    sim = Simulator(journal_latency=1.0, asleep=gate)
    await one_during_another(sim, gate, first, second, path)
    assert sim.overlaps == overlaps


@pytest.mark.anyio
async def test_without_a_journal_latency_calls_never_overlap() -> None:
    """The default (0) answers a journal call without pausing, as before this habit existed."""
    sim = Simulator()
    async with client(sim) as c, anyio.create_task_group() as group:
        for _ in range(8):
            group.start_soon(lambda: c.post("/hyper/api/Journal", json={JOURNAL_ACCOUNT_FIELD: "A1"}))
    assert sim.side_effects["hyper", "/api/Journal"] == 8
    assert sim.overlaps == {}
    assert sim.max_in_flight == {"A1": 1}


@pytest.mark.anyio
async def test_a_busy_answer_uses_up_no_scripted_step_and_a_body_that_is_not_json_names_no_account() -> None:
    gate = Gate()
    sim = Simulator(journal_latency=1.0, asleep=gate)
    sim.script("hyper", "/api/Journal", [Fault("hyper", 10)])
    body = {JOURNAL_ACCOUNT_FIELD: "A1"}
    first, second = await one_during_another(sim, gate, body, body)
    assert (first.status_code, first.json()["ResponseCode"]) == (423, 10)
    assert second.json()["ResponseCode"] == 50
    async with client(sim) as c:
        plain = await c.post("/hyper/api/Journal", content=b"AccountNo=A1")
        deep = await c.post("/hyper/api/Journal", content=b"[" * 100_000 + b"]" * 100_000)
    assert plain.json()["ResponseCode"] == 0
    assert deep.json()["ResponseCode"] == 0
    assert sim.max_in_flight == {"A1": 2}


def test_journal_calls_from_many_threads_overlap_unless_serialised_sync(
    loopback: tuple[Swappable, str],
) -> None:
    """Sync clients on a real server, the latency a real wait there: 6 threads post one account's
    journal at once and collide; the same threads taking turns (what the SDK's guard does) never
    have two at the server."""
    sim = Simulator(journal_latency=OVERLAP_LATENCY)
    url = on_loopback(loopback, sim)

    def run(turns: threading.Lock | None) -> list[int]:
        start = threading.Barrier(6)
        codes: list[int] = []

        def worker() -> None:
            with httpx.Client(base_url=url, trust_env=False) as c:
                start.wait()
                with turns or contextlib.nullcontext():
                    codes.append(
                        c.post("/hyper/api/Journal", json={"AccountNo": "A1"}).json()["ResponseCode"]
                    )

        threads = [threading.Thread(target=worker) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return codes

    codes = run(turns=None)
    assert 50 in codes and codes.count(0) >= 1
    assert sorted(set(codes)) == [0, 50]
    assert sim.overlaps["A1"] == codes.count(50)
    assert sim.max_in_flight["A1"] >= 2
    assert sim.side_effects["hyper", "/api/Journal"] == codes.count(0)
    sim.reset()
    assert run(turns=threading.Lock()) == [0] * 6
    assert sim.max_in_flight == {"A1": 1}
    assert sim.overlaps == {}


# -- outages --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_outage_answers_every_request_of_the_vendor_until_cleared() -> None:
    sim = Simulator(clock=FakeClock())
    sim.script("hyper", "/api/x", [Fault("hyper", 7)])
    sim.rate_limit("hyper", 1, period=60.0)
    sim.outage("hyper")
    async with client(sim) as c:
        down = [await c.post(f"/hyper/api/{name}", json={}) for name in ("x", "y", "Journal")]
        usta = await c.get("/usta/v1/players")
        sim.outage("hyper", 500)
        other_status = await c.get("/hyper/api/x")
        sim.outage("hyper", None)
        scripted = await c.post("/hyper/api/x", json={})  # the script waited for the outage to end
        limited = await c.post("/hyper/api/x", json={})  # the window was not used by the outage
    assert [d.status_code for d in down] == [503, 503, 503]
    assert down[0].headers["content-type"] == "text/html"
    assert b"503 Service Unavailable" in down[0].content
    assert usta.status_code == 200
    assert other_status.status_code == 500
    assert scripted.json()["ResponseCode"] == 7
    assert limited.status_code == 429
    assert sim.outage_answers == {"hyper": 4}
    assert sum(sim.side_effects.values()) == 0


def test_an_outage_on_a_real_server_is_a_service_unavailable_error_sync(
    loopback: tuple[Swappable, str],
) -> None:
    sim = Simulator()
    sim.outage("usta")
    url = on_loopback(loopback, sim)
    clock = FakeClock()
    with (
        rc.UstaClient(
            base_url=f"{url}/usta", token="t", transport_options=clock.options(), trust_env=False
        ) as c,
        pytest.raises(rc.errors.ServiceUnavailableError),
    ):
        c.get("/v1/players")
    assert sim.outage_answers["usta"] == sum(sim.requests.values()) >= 1


# -- the fleet view -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_stats_path_answers_the_snapshot_and_counts_nothing() -> None:
    gate = Gate()
    sim = Simulator(clock=FakeClock(), journal_latency=0.05, asleep=gate)
    sim.rate_limit("hyper", 2, period=60.0)
    body = {JOURNAL_ACCOUNT_FIELD: "A1"}
    await one_during_another(sim, gate, body, body)
    sim.outage("usta", 502)
    async with client(sim) as c:
        limited = await c.post("/hyper/api/Journal", json=body)
        await c.get("/usta/v1/players")
        stats = await c.get(STATS_PATH)
        refused = await c.post(STATS_PATH)
    assert limited.status_code == 429
    assert stats.status_code == 200
    assert (
        stats.json()
        == sim.snapshot()
        == {
            "requests": {"hyper": {"/api/Journal": 3}, "usta": {"/v1/players": 1}},
            "side_effects": {"hyper": {"/api/Journal": 1}},
            "rate_limited": {"hyper": 1},
            "outage_answers": {"usta": 1},
            "random_faults": {},
            "journal": {"overlaps": {"A1": 1}, "max_in_flight": {"A1": 2}, "in_flight": {}, "latency": 0.05},
            "rate_limits": {"hyper": {"requests": 2, "period": 60.0}},
            "outages": {"usta": 502},
            "error_rates": {},
            "capacity": {},
        }
    )
    assert (refused.status_code, refused.headers["allow"]) == (405, "GET")


def test_the_stats_path_on_a_real_server_sync(loopback: tuple[Swappable, str]) -> None:
    sim = Simulator()
    url = on_loopback(loopback, sim)
    with httpx.Client(base_url=url, trust_env=False) as c:
        c.post("/updox/api/io/Ping", json={})
        stats = c.get(STATS_PATH).json()
    assert stats["requests"] == {"updox": {"/api/io/Ping": 1}}
    assert json.dumps(stats)


def test_reset_forgets_switches_and_counters_but_keeps_the_clock_and_latency() -> None:
    clock = FakeClock(start=0.0)
    sim = Simulator(clock=clock, journal_latency=0.01)
    sim.rate_limit("hyper", 1)
    sim.outage("usta")
    with sim._lock:
        sim.rate_limited["hyper"] = 1
        sim.outage_answers["usta"] = 1
        sim.overlaps["A1"] = 1
        sim.max_in_flight["A1"] = 2
    sim.reset()
    snapshot = sim.snapshot()
    assert snapshot["rate_limits"] == snapshot["outages"] == snapshot["rate_limited"] == {}
    assert snapshot["journal"] == {"overlaps": {}, "max_in_flight": {}, "in_flight": {}, "latency": 0.01}
    assert sim._clock is clock


# -- resilient-client simulate --------------------------------------------------------------------


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("argv", "limits", "latency"),
    [
        pytest.param([], {}, 0.0, id="none"),
        pytest.param(["--rate-limit", "20/60"], {"hyper": {"requests": 20, "period": 60.0}}, 0.0, id="hyper"),
        pytest.param(
            ["--rate-limit", "USTA:5/1.5", "--rate-limit", "hyper:1/1"],
            {"usta": {"requests": 5, "period": 1.5}, "hyper": {"requests": 1, "period": 1.0}},
            0.0,
            id="vendors",
        ),
        pytest.param(["--journal-latency", "0.05"], {}, 0.05, id="latency"),
    ],
)
def test_simulate_options_switch_the_habits_on(
    argv: list[str], limits: dict[str, Any], latency: float
) -> None:
    sim = _simulator_from(_parser().parse_args(["simulate", *argv]))
    assert sim.snapshot()["rate_limits"] == limits
    assert sim.journal_latency == latency


def test_simulate_says_which_habits_are_on() -> None:
    status, out, err = run_cli(
        "simulate", "--port", "0", "--seconds", "0", "--rate-limit", "20/60", "--journal-latency", "0.05"
    )
    assert (status, err) == (0, "")
    assert "hyper: 20 requests per 60 s per client IP, then 429 with Retry-After" in out
    assert "hyper journal calls take 0.05 s; another of the same AccountNo meanwhile gets code 50" in out
    assert "/_simulator/stats" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--rate-limit", "20"], "--rate-limit '20': expected [VENDOR:]N/PERIOD", id="no-period"),
        pytest.param(["--rate-limit", "a/b"], "expected [VENDOR:]N/PERIOD", id="not-numbers"),
        pytest.param(["--rate-limit", "0/60"], "requests must be 1 or more", id="zero"),
        pytest.param(["--rate-limit", "20/0"], "period must be more than 0 seconds", id="zero-period"),
        pytest.param(["--rate-limit", "acme:20/60"], "unknown vendor 'acme'", id="vendor"),
        pytest.param(
            ["--journal-latency", "-1"], "--journal-latency -1: expected a finite number", id="latency"
        ),
        pytest.param(
            ["--journal-latency", "soon"], "--journal-latency 'soon': expected seconds", id="latency-text"
        ),
    ],
)
def test_simulate_refuses_bad_options_in_one_line(argv: list[str], message: str) -> None:
    status, out, err = run_cli("simulate", "--port", "0", "--seconds", "0", *argv)
    assert status == 2
    assert message in err
    assert "Traceback" not in err + out


def test_simulate_help_text(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["simulate", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for words in (
        "--rate-limit [VENDOR:]N/PERIOD",
        "429 with Retry-After",
        "--journal-latency SECONDS",
        "code 50",
        "AccountNo",
    ):
        assert words in text
