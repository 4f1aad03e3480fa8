"""Guards through the transport: one Hyper journal call per account at a time, other accounts in
parallel, a key given in the request's extensions, a hold that lasts one attempt (never a backoff
wait), a refusal that sends nothing, several keys without deadlock, 32 threads on one key."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from pipeline_kit import (
    JOURNAL,
    NO_BREAKER,
    NO_BUDGET,
    OK,
    Caller,
    FrozenClock,
    Vendor,
    body_of,
    policy,
    run_threads,
    transport,
)

import resilient_client as rc
from resilient_client.simulator import Simulator
from resilient_client.stores import state_key
from resilient_client.strategies.guard import GUARD_KEY_EXTENSION, Guard
from resilient_client.testing import FakeClock, fault_response
from store_ops import Store

pytestmark = pytest.mark.anyio

NO_RATE_LIMIT = rc.RateLimitSettings(enabled=False)


def guarded(
    *, max_wait: float = 30.0, limit: int = 1, key_fields: tuple[str, ...] = ("AccountNo",), **tables: Any
) -> rc.RetryPolicy:
    """The shipped hyper policy with its journal guard (numbers changed), and no other strategy."""
    journal = rc.GuardSettings(
        operations=("*journal*", "*Journal*", "*JOURNAL*"),
        key_fields=key_fields,
        limit=limit,
        max_wait=max_wait,
    )
    tables.setdefault("guards", {"journal": journal})
    return policy("hyper", breaker=NO_BREAKER, budget=NO_BUDGET, rate_limit=NO_RATE_LIMIT, **tables)


def journal_keys(account: object, resilient: rc.ResilientTransport) -> tuple[str, ...]:
    """The store keys the journal guard holds for an account (to hold or peek at them in a test)."""
    guard = Guard("journal", resilient.policy.guards["journal"], resilient.state, state_key("guard", "hyper"))
    keys = guard.keys_for("journal", b'{"AccountNo": %s}' % str(account).encode(), host="hyper.test")
    assert keys is not None
    return keys


def held(resilient: rc.ResilientTransport, keys: tuple[str, ...], now: float) -> bool:
    """Whether another call holds ``keys`` now (asked by taking them, and letting go at once)."""
    if Store(resilient.state).try_acquire(keys, 1, 1.0, "peek", now):
        Store(resilient.state).release(keys, "peek", now)
        return False
    return True


class InFlight:
    """Counts the calls at the server at once, by key; the most ever seen."""

    def __init__(self) -> None:
        self.now: dict[object, int] = {}
        self.most: dict[object, int] = {}
        self.lock = threading.Lock()

    def enter(self, key: object) -> None:
        with self.lock:
            self.now[key] = self.now.get(key, 0) + 1
            self.most[key] = max(self.most.get(key, 0), self.now[key])

    def leave(self, key: object) -> None:
        with self.lock:
            self.now[key] -= 1


# -- one journal call per account at a time ----------------------------------------------------------


def test_two_journal_calls_of_one_account_never_overlap_at_the_server() -> None:
    clock = FrozenClock()
    flight = InFlight()

    def journal(request: httpx.Request) -> httpx.Response:
        account = body_of(request)["AccountNo"]
        flight.enter(account)
        threading.Event().wait(0.002)  # real-sleep: the call is at the server long enough to overlap
        flight.leave(account)
        return OK

    shared = transport(Vendor(clock, script=journal), policy=guarded())

    def call(index: int) -> None:
        with httpx.Client(transport=shared) as client:
            for _ in range(5):
                client.post(JOURNAL, json={"AccountNo": 7, "Amount": index})

    assert run_threads(2, call) == []
    assert flight.most == {7: 1}


@pytest.mark.parametrize("guards", [pytest.param(None, id="shipped-guard"), pytest.param({}, id="no-guard")])
async def test_the_simulated_hyper_sees_one_journal_call_per_account_at_a_time(
    guards: dict[str, Any] | None,
) -> None:
    clock = FrozenClock()

    async def processing(seconds: float) -> None:
        for _ in range(20):  # long enough for another task's call to reach the server meanwhile
            await anyio.lowlevel.checkpoint()

    sim = Simulator(clock=clock, journal_latency=0.05, asleep=processing)
    chosen = guarded() if guards is None else guarded(guards=guards)
    resilient = rc.ResilientTransport(
        "hyper", policy=chosen, transport=httpx.ASGITransport(app=sim), **clock.options()
    )
    answers: list[httpx.Response] = []
    async with httpx.AsyncClient(transport=resilient, base_url="http://sim/hyper") as client:

        async def post() -> None:
            try:
                answers.append(await client.post("/api/journal", json={"AccountNo": 7}))
            except rc.errors.Hyper50Error as error:
                answers.append(error.response)

        async with anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(post)
    if guards is None:
        assert sim.max_in_flight == {"7": 1}
        assert sim.overlaps == {}
        assert [a.status_code for a in answers] == [200] * 4
    else:  # the simulator does catch overlaps: without the guard they happen
        assert sim.max_in_flight["7"] > 1
        assert sim.overlaps["7"] > 0


def test_journal_calls_of_different_accounts_run_at_once() -> None:
    clock = FrozenClock()
    arrived = {1: threading.Event(), 2: threading.Event()}

    def journal(request: httpx.Request) -> httpx.Response:
        account = body_of(request)["AccountNo"]
        arrived[account].set()
        # Each waits at the server for the other: only calls running at once both finish.
        other = arrived[3 - account]
        return OK if other.wait(10) else httpx.Response(500)

    shared = transport(Vendor(clock, script=journal), policy=guarded())

    def call(index: int) -> None:
        with httpx.Client(transport=shared) as client:
            assert client.post(JOURNAL, json={"AccountNo": index + 1}).status_code == 200

    assert run_threads(2, call) == []


async def test_async_journal_calls_of_different_accounts_run_at_once() -> None:
    clock = FrozenClock()
    arrived = {1: anyio.Event(), 2: anyio.Event()}

    async def journal(request: httpx.Request) -> httpx.Response:
        account = body_of(request)["AccountNo"]
        arrived[account].set()
        await arrived[3 - account].wait()
        return OK

    resilient = rc.ResilientTransport(
        "hyper", policy=guarded(), transport=httpx.MockTransport(journal), **clock.options()
    )
    statuses = []
    async with httpx.AsyncClient(transport=resilient) as client:

        async def post(account: int) -> None:
            statuses.append((await client.post(JOURNAL, json={"AccountNo": account})).status_code)

        with anyio.fail_after(10):  # a hang (the two serialised) fails instead
            async with anyio.create_task_group() as group:
                for account in (1, 2):
                    group.start_soon(post, account)
    assert statuses == [200, 200]


@pytest.mark.parametrize(
    ("extensions", "overlap"),
    [
        pytest.param(["k", "k"], False, id="same-key"),
        pytest.param(["k", "other"], True, id="different-keys"),
        pytest.param([["a", "b"], ["b", "a"]], False, id="same-keys-in-another-order"),
    ],
)
def test_a_guard_key_given_in_the_extensions(extensions: list[Any], overlap: bool) -> None:
    clock = FrozenClock()
    both_in = threading.Barrier(2, timeout=0.2)
    overlapped = []

    def journal(request: httpx.Request) -> httpx.Response:
        assert body_of(request) == {}  # no AccountNo: the extension names the key
        try:
            both_in.wait()  # real-sleep: waits up to 0.2 s for the other call to be at the server too
            overlapped.append(True)
        except threading.BrokenBarrierError:
            pass
        return OK

    shared = transport(Vendor(clock, script=journal), policy=guarded())

    def call(index: int) -> None:
        with httpx.Client(transport=shared) as client:
            client.post(JOURNAL, json={}, extensions={GUARD_KEY_EXTENSION: extensions[index]})

    assert run_threads(2, call) == []
    assert bool(overlapped) == overlap


# -- the hold lasts one attempt ---------------------------------------------------------------------


async def test_the_hold_lasts_until_the_attempt_is_classified_and_not_across_the_wait(
    connect: Callable[[Any], Caller],
) -> None:
    clock = FakeClock()
    seen: list[tuple[str, bool]] = []
    box: list[rc.ResilientTransport] = []

    class Peek(rc.Hook):
        def on_attempt(self, call: Any, event: rc.AttemptEvent) -> None:
            seen.append(("classified", held(box[0], journal_keys(7, box[0]), clock.now)))

        def on_retry(self, call: Any, event: rc.RetryEvent) -> None:
            seen.append(("waiting", held(box[0], journal_keys(7, box[0]), clock.now)))

    vendor = Vendor(clock, fault_response("hyper", 10), OK)
    box.append(transport(vendor, policy=guarded(), hooks=[Peek()]))
    client = connect(box[0])
    assert (await client.post(JOURNAL, json={"AccountNo": 7})).status_code == 200
    assert seen == [("classified", True), ("waiting", False), ("classified", True)]
    assert not held(box[0], journal_keys(7, box[0]), clock.now)


def test_another_call_of_the_account_goes_between_a_calls_attempts() -> None:
    clock = FakeClock()
    order: list[str] = []
    box: list[rc.ResilientTransport] = []

    class Meanwhile(rc.Hook):
        def on_retry(self, call: Any, event: rc.RetryEvent) -> None:
            with httpx.Client(transport=box[0]) as other:
                other.post(JOURNAL, json={"AccountNo": 7, "Who": "B"})

    def journal(request: httpx.Request) -> httpx.Response:
        who = body_of(request)["Who"]
        order.append(who)
        return fault_response("hyper", 10) if order == ["A"] else OK

    # The guard's wait would run out at once (fake time) if the first call kept its hold.
    box.append(transport(Vendor(clock, script=journal), policy=guarded(max_wait=1.0), hooks=[Meanwhile()]))
    with httpx.Client(transport=box[0]) as client:
        assert client.post(JOURNAL, json={"AccountNo": 7, "Who": "A"}).status_code == 200
    assert order == ["A", "B", "A"]


# -- a busy key: GuardTimeoutError, nothing sent ----------------------------------------------------


@pytest.mark.parametrize(
    ("max_wait", "total", "waited"),
    [pytest.param(1.0, 30.0, 1.0, id="max_wait"), pytest.param(30.0, 2.0, 2.0, id="deadline")],
)
async def test_a_key_busy_too_long_raises_guard_timeout_sending_nothing(
    connect: Callable[[Any], Caller], max_wait: float, total: float, waited: float
) -> None:
    clock = FakeClock()
    vendor = Vendor(clock)
    resilient = transport(vendor, policy=guarded(max_wait=max_wait, retry={"total_timeout": total}))
    keys = journal_keys(7, resilient)
    assert Store(resilient.state).try_acquire(keys, 1, 1000.0, "another-process", clock.now)
    client = connect(resilient)
    with pytest.raises(rc.errors.GuardTimeoutError) as caught:
        await client.post(JOURNAL, json={"AccountNo": 7})
    assert vendor.sent == 0
    assert sum(clock.sleeps) == pytest.approx(waited, abs=0.11)
    assert caught.value.key is not None and "AccountNo" in caught.value.key
    assert "journal" in caught.value.reason
    assert isinstance(caught.value, httpx.HTTPError)
    # Another account is not held up.
    await client.post(JOURNAL, json={"AccountNo": 8})
    assert vendor.sent == 1


# -- several keys, many threads ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "guards",
    [
        pytest.param({"pair": ("a", "b")}, id="one-guard-two-fields"),
        pytest.param({"first": ("a",), "second": ("b",)}, id="two-guards"),
        pytest.param({"zeta": ("a",), "alpha": ("b",)}, id="two-guards-named-against-field-order"),
    ],
)
def test_two_threads_taking_two_keys_in_either_order_never_deadlock(
    guards: dict[str, tuple[str, ...]],
) -> None:
    clock = FrozenClock()
    flight = InFlight()

    def journal(request: httpx.Request) -> httpx.Response:
        flight.enter("pair")
        threading.Event().wait(0.0005)  # real-sleep: long enough for the other thread to try its keys
        flight.leave("pair")
        return OK

    tables = {
        name: rc.GuardSettings(operations=("*journal*",), key_fields=fields, max_wait=30.0)
        for name, fields in guards.items()
    }
    shared = transport(Vendor(clock, script=journal), policy=guarded(guards=tables))
    bodies = [b'{"a": 1, "b": 2}', b'{"b": 2, "a": 1}']

    def call(index: int) -> None:
        with httpx.Client(transport=shared) as client:
            for _ in range(30):
                client.post(JOURNAL, content=bodies[index], headers={"content-type": "application/json"})

    assert run_threads(2, call, timeout=30) == []
    assert flight.most == {"pair": 1}


@pytest.mark.parametrize("limit", [1, 3])
def test_32_threads_on_one_key_never_exceed_its_limit(limit: int) -> None:
    clock = FrozenClock()
    flight = InFlight()

    def journal(request: httpx.Request) -> httpx.Response:
        flight.enter(7)
        threading.Event().wait(0.001)  # real-sleep: each call stays at the server a moment
        flight.leave(7)
        return OK

    shared = transport(Vendor(clock, script=journal), policy=guarded(limit=limit))

    def call(_: int) -> None:
        with httpx.Client(transport=shared) as client:
            client.post(JOURNAL, json={"AccountNo": 7})

    assert run_threads(32, call) == []
    assert 1 <= flight.most[7] <= limit


def test_calls_the_guard_does_not_cover_are_not_held() -> None:
    clock = FakeClock()
    resilient = transport(Vendor(clock), policy=guarded(max_wait=1.0))
    keys = journal_keys(7, resilient)
    assert Store(resilient.state).try_acquire(keys, 1, 1000.0, "another-process", clock.now)
    with httpx.Client(transport=resilient) as client:
        assert client.post("https://hyper.test/api/items", json={"AccountNo": 7}).status_code == 200
        assert client.post(JOURNAL, json={"Other": 7}).status_code == 200  # no key field: no key
    assert clock.sleeps == []
