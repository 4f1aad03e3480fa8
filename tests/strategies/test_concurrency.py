"""The adaptive concurrency limit: its judgement of answers (pure), its waits (first come, first
served, bounded by the deadline; sync and async on a fake clock), its refusal through a transport,
the fleet bound over one redis-server, and its policy table."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import anyio
import attrs
import httpx
import pytest

import resilient_client as rc
from resilient_client._classify import OK, Outcome
from resilient_client._decision import RETURN, Decision
from resilient_client._pipeline import Attempt, Call
from resilient_client._redact import Secrets
from resilient_client.errors import RateLimitedError, ServerError, ServiceUnavailableError
from resilient_client.stores import Admission, EnterSlot, LeaveSlot, state_key
from resilient_client.strategies.concurrency import ConcurrencyStrategy, Latency, judge
from resilient_client.testing import FakeClock

SETTINGS = rc.ConcurrencySettings(enabled=True)
RETRY = Decision("retry", reason="test")


def attempt(category: str = "ok", error: Exception | None = None) -> Attempt:
    if error is not None:
        return Attempt(1, RETRY, error=error)
    if category == "ok":
        return Attempt(1, RETURN, httpx.Response(200), OK)
    classes = {
        "service_unavailable": ServiceUnavailableError,
        "rate_limited": RateLimitedError,
        "server_error": ServerError,
    }
    return Attempt(1, RETRY, httpx.Response(503), Outcome(category, error_class=classes[category]))


def admitted(in_flight: int, limit: float = 8.0) -> Admission:
    return Admission(True, limit, in_flight, 3)


def usual(seconds: float) -> Latency:
    return Latency(usual=seconds)


# -- the judgement of one answer (no I/O) ---------------------------------------------------------


def test_a_refusal_for_want_of_room_lowers_to_the_attempts_in_flight_less_itself() -> None:
    assert judge(attempt("service_unavailable"), admitted(6), 0.01, usual(0.05), SETTINGS) == ("lower", 5.0)
    # never below min
    assert judge(attempt("service_unavailable"), admitted(1), 0.01, usual(0.05), SETTINGS) == ("lower", 1.0)


def test_a_429_or_a_timeout_keeps_backoff_ratio_of_the_limit() -> None:
    lowered = ("lower", pytest.approx(8.0 * SETTINGS.backoff_ratio))
    assert judge(attempt("rate_limited"), admitted(6), 0.05, usual(0.05), SETTINGS) == lowered
    timeout = attempt(error=httpx.ReadTimeout("slow"))
    assert judge(timeout, admitted(6), 5.0, usual(0.05), SETTINGS) == lowered


def test_other_faults_and_transport_errors_teach_nothing() -> None:
    assert judge(attempt("server_error"), admitted(6), 0.05, usual(0.05), SETTINGS) == ("hold", 0.0)
    refused = attempt(error=httpx.ConnectError("refused"))
    assert judge(refused, admitted(6), 0.05, usual(0.05), SETTINGS) == ("hold", 0.0)


def test_a_success_grows_the_limit_only_while_half_of_it_is_in_use() -> None:
    assert judge(attempt(), admitted(4), 0.05, usual(0.05), SETTINGS) == ("grow", 0.0)
    assert judge(attempt(), admitted(3), 0.05, usual(0.05), SETTINGS) == ("hold", 0.0)


def test_recent_successes_slower_than_the_tolerance_count_as_overload() -> None:
    slow = 0.05 * SETTINGS.latency_tolerance * 1.1
    latency = Latency(usual=0.05, recent=slow)
    assert judge(attempt(), admitted(6), slow, latency, SETTINGS)[0] == "lower"


def test_a_limit_does_not_grow_while_successes_are_slower_than_usual() -> None:
    elevated = Latency(usual=0.05, recent=0.05 * 2.0)  # 2x: above sqrt(3), below 3
    assert judge(attempt(), admitted(6), 0.1, elevated, SETTINGS) == ("hold", 0.0)


def test_one_stall_is_not_overload_a_run_of_slow_answers_is_and_the_usual_follows() -> None:
    latency = Latency()
    assert not latency.slow(0.05, 3.0)
    assert latency.usual == 0.05
    assert not any(latency.slow(0.25, 3.0) for _ in range(3))  # 5x, but one stall of the caller
    assert not any(latency.slow(0.05, 3.0) for _ in range(40))
    verdicts = [latency.slow(0.2, 3.0) for _ in range(2000)]
    assert not verdicts[0] and any(verdicts) and not verdicts[-1]  # 4x for good: overload, then the usual
    assert not latency.slow(0.01, 3.0) and latency.usual == 0.01  # a faster one is the new usual


# -- waits ----------------------------------------------------------------------------------------

URL = "https://usta.test/api/items"
KEY = state_key("concurrency", "usta", "usta.test")  # Call.endpoint: no default port
ONE_SLOT = attrs.evolve(rc.RetryPolicy(), concurrency=rc.ConcurrencySettings(enabled=True, initial=1, max=1))


class YieldingClock(FakeClock):
    """A FakeClock whose async sleep lets the other tasks run (FakeClock's own never yields)."""

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)
        await anyio.sleep(0)


def make_call(clock: FakeClock, policy: rc.RetryPolicy = ONE_SLOT) -> Call:
    return Call(
        httpx.Request("GET", URL),
        policy,
        rc.Clock(monotonic=clock, sleep=clock.sleep, asleep=clock.async_sleep),
        "usta",
        True,
        Secrets(),
    )


def success(call: Call, number: int) -> Attempt:
    return Attempt(number, RETURN, httpx.Response(200), OK)


def test_an_attempt_past_the_deadline_is_refused_sync_sending_nothing() -> None:
    clock = FakeClock()
    store = rc.MemoryState()
    strategy = ConcurrencyStrategy(ONE_SLOT.concurrency, store, "usta")
    assert store.run(EnterSlot(KEY, "holder", 100.0, 1, 1, 1, 120), clock()).entered
    sent: list[int] = []
    call = make_call(clock, attrs.evolve(ONE_SLOT, retry=rc.RetrySettings(total_timeout=2.0)))
    result = strategy.handle(lambda c, n: sent.append(n) or success(c, n), call, 1)
    assert sent == []
    assert isinstance(result.rejection, rc.ConcurrencyLimitError)
    assert result.rejected_by == "concurrency"
    assert 2.0 <= clock() - 1000.0 <= 2.01  # waited until the deadline, no longer
    assert "concurrency limit" in str(result.rejection)


@pytest.mark.anyio
async def test_an_attempt_past_the_deadline_is_refused_async_sending_nothing() -> None:
    clock = YieldingClock()
    store = rc.MemoryState()
    strategy = ConcurrencyStrategy(ONE_SLOT.concurrency, store, "usta")
    assert store.run(EnterSlot(KEY, "holder", 100.0, 1, 1, 1, 120), clock()).entered
    call = make_call(clock, attrs.evolve(ONE_SLOT, retry=rc.RetrySettings(total_timeout=2.0)))

    async def never(call: Call, number: int) -> Attempt:
        raise AssertionError("sent past the limit")

    result = await strategy.ahandle(never, call, 1)
    assert isinstance(result.rejection, rc.ConcurrencyLimitError)
    assert 2.0 <= clock() - 1000.0 <= 2.01


@pytest.mark.anyio
async def test_waiters_are_served_first_come_first_served_by_their_calls_start_async() -> None:
    clock = YieldingClock()
    strategy = ConcurrencyStrategy(ONE_SLOT.concurrency, rc.MemoryState(), "usta")
    patient = attrs.evolve(ONE_SLOT, retry=rc.RetrySettings(total_timeout=10.0**6))
    # A retry's call began first: it keeps its place ahead of the calls that began after it.
    oldest = make_call(clock, patient)
    clock.now += 0.001
    calls = {"oldest": oldest}
    order: list[str] = []
    holding = anyio.Event()
    release = anyio.Event()

    async def holder_next(call: Call, number: int) -> Attempt:
        holding.set()
        await release.wait()
        return success(call, number)

    def recorder(name: str) -> Any:
        async def next_(call: Call, number: int) -> Attempt:
            order.append(name)
            await anyio.sleep(0)
            return success(call, number)

        return next_

    async with anyio.create_task_group() as group:
        group.start_soon(strategy.ahandle, holder_next, make_call(clock, patient), 1)
        await holding.wait()
        for name in ("b", "c", "d"):
            calls[name] = make_call(clock, patient)
            clock.now += 0.001
        for name in ("b", "c", "d", "oldest"):  # "oldest" joins last
            group.start_soon(strategy.ahandle, recorder(name), calls[name], 2)
            for _ in range(5):
                await anyio.sleep(0)
        release.set()
    assert order == ["oldest", "b", "c", "d"]


def test_waiters_are_served_first_come_first_served_sync() -> None:
    clock = FakeClock()
    strategy = ConcurrencyStrategy(ONE_SLOT.concurrency, rc.MemoryState(), "usta")
    patient = attrs.evolve(ONE_SLOT, retry=rc.RetrySettings(total_timeout=10.0**6))
    endpoint = strategy.endpoint(make_call(clock, patient))
    order: list[str] = []
    holding, release = threading.Event(), threading.Event()

    def holder_next(call: Call, number: int) -> Attempt:
        holding.set()
        release.wait(30)
        return success(call, number)

    def recorder(name: str) -> Any:
        def next_(call: Call, number: int) -> Attempt:
            order.append(name)
            return success(call, number)

        return next_

    threads = [threading.Thread(target=strategy.handle, args=(holder_next, make_call(clock, patient), 1))]
    threads[0].start()
    assert holding.wait(30)
    for index, name in enumerate(("b", "c", "d")):
        call = make_call(clock, patient)
        clock.now += 0.001
        thread = threading.Thread(target=strategy.handle, args=(recorder(name), call, 1))
        thread.start()
        threads.append(thread)
        # the next waiter starts once this one has queued (the order is the calls' start anyway)
        while len(endpoint.queue(0).waiters) < index + 1:
            threading.Event().wait(0.0005)
    release.set()
    for thread in threads:
        thread.join(30)
    assert order == ["b", "c", "d"]


# -- through a transport ----------------------------------------------------------------------------


def test_a_transport_raises_concurrency_limit_error_and_sends_nothing() -> None:
    clock = FakeClock()
    store = rc.MemoryState()
    sent: list[httpx.Request] = []
    policy = attrs.evolve(ONE_SLOT, retry=rc.RetrySettings(total_timeout=1.0))
    transport = rc.ResilientTransport(
        "usta",
        policy=policy,
        state=store,
        transport=httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(200, json={})),
        **clock.options(),
    )
    assert store.run(EnterSlot(KEY, "another process", 100.0, 1, 1, 1, 120), clock()).entered
    with httpx.Client(transport=transport) as client, pytest.raises(rc.ConcurrencyLimitError) as raised:
        client.get(URL)
    assert sent == []
    assert isinstance(raised.value, rc.errors.RejectedError)
    store.run(LeaveSlot(KEY, "another process", "hold", 0, 0.0, 0, False, 1, 1, 1, 120), clock())
    with httpx.Client(transport=transport) as client:
        assert client.get(URL).status_code == 200
    assert len(sent) == 1


THREE_SLOTS = attrs.evolve(
    rc.RetryPolicy(), concurrency=rc.ConcurrencySettings(enabled=True, initial=3, min=3, max=3)
)


def free_slots(store: rc.MemoryState, clock: FakeClock, who: str) -> int:
    """How many of the endpoint's three slots another process (``who``) can take now (taken)."""
    return sum(store.run(EnterSlot(KEY, f"{who}{n}", 100.0, 3, 3, 3, 120), clock()).entered for n in range(3))


def counting_transport(
    clock: FakeClock, store: rc.MemoryState, sent: list[httpx.Request]
) -> rc.ResilientTransport:
    return rc.ResilientTransport(
        "usta",
        policy=THREE_SLOTS,
        state=store,
        transport=httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(200, json={})),
        **clock.options(),
    )


def test_a_success_keeps_its_slot_warm_for_the_next_call_and_close_lets_it_go() -> None:
    """One call at a time: the slot of a success that teaches the limit nothing stays held for the
    next call (no store round trip to let it go and take it again); ``close()`` lets it go."""
    clock = FakeClock()
    store = rc.MemoryState()
    sent: list[httpx.Request] = []
    transport = counting_transport(clock, store, sent)
    client = httpx.Client(transport=transport)
    for _ in range(5):
        assert client.get(URL).status_code == 200
    assert len(sent) == 5
    assert free_slots(store, clock, "other") == 2  # one slot is still this process's, warm
    for n in range(3):
        store.run(LeaveSlot(KEY, f"other{n}", "hold", 0, 0.0, 0, False, 3, 3, 3, 120), clock())
    client.close()
    assert free_slots(store, clock, "after close") == 3


def test_a_warm_slot_is_trusted_for_warm_seconds_then_the_store_is_asked_again() -> None:
    """Within ``WARM_SECONDS`` of its admission a warm slot carries the next call without asking the
    store (a limit lowered meanwhile is heard that late); older, it is let go and the call asks the
    store like any other: over a lowered, full limit it waits, and is refused at its deadline."""
    from resilient_client.strategies.concurrency import WARM_SECONDS

    clock = FakeClock()
    store = rc.MemoryState()
    sent: list[httpx.Request] = []
    policy = attrs.evolve(
        THREE_SLOTS,
        concurrency=rc.ConcurrencySettings(enabled=True, initial=3, min=1, max=3),
        retry=rc.RetrySettings(total_timeout=1.0),
    )
    transport = rc.ResilientTransport(
        "usta",
        policy=policy,
        state=store,
        transport=httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(200, json={})),
        **clock.options(),
    )
    with httpx.Client(transport=transport) as client:
        assert client.get(URL).status_code == 200
        # Another process takes two slots, and a timeout of one of them lowers the limit to 1.
        for n in range(2):
            assert store.run(EnterSlot(KEY, f"other{n}", 100.0, 3, 1, 3, 120), clock()).entered
        store.run(LeaveSlot(KEY, "other1", "lower", 0, 1.0, 3, False, 3, 1, 3, 120), clock())
        assert client.get(URL).status_code == 200  # the warm slot, not yet stale
        clock.sleep(WARM_SECONDS * 1.5)
        with pytest.raises(rc.ConcurrencyLimitError):
            client.get(URL)  # let go, and the store refuses: "other0" holds the one slot
    assert len(sent) == 2


def test_a_refusal_for_want_of_room_never_keeps_its_slot_warm() -> None:
    """A 503 lets its slot go (the limit learns from it) rather than keeping it for the next call."""
    clock = FakeClock()
    store = rc.MemoryState()
    answers = iter([httpx.Response(503), httpx.Response(200, json={})])
    transport = rc.ResilientTransport(
        "usta",
        policy=attrs.evolve(THREE_SLOTS, retry=rc.RetrySettings(max_attempts=1)),
        state=store,
        transport=httpx.MockTransport(lambda r: next(answers)),
        **clock.options(),
    )
    with httpx.Client(transport=transport) as client, pytest.raises(ServiceUnavailableError):
        client.get(URL)
    assert free_slots(store, clock, "other") == 3


def test_the_limit_is_per_endpoint_port_included() -> None:
    clock = FakeClock()
    store = rc.MemoryState()
    strategy = ConcurrencyStrategy(ONE_SLOT.concurrency, store, "usta")
    a = Call(
        httpx.Request("GET", "http://h.test:8001/x"),
        ONE_SLOT,
        rc.Clock(monotonic=clock),
        "usta",
        True,
        Secrets(),
    )
    b = Call(
        httpx.Request("GET", "http://h.test:8002/x"),
        ONE_SLOT,
        rc.Clock(monotonic=clock),
        "usta",
        True,
        Secrets(),
    )
    assert strategy.endpoint(a).key != strategy.endpoint(b).key
    inner: list[str] = []

    def nested(call: Call, number: int) -> Attempt:  # while port 8001's one slot is held
        inner.append(strategy.handle(success, b, 1).decision.action)
        return success(call, number)

    strategy.handle(nested, a, 1)
    assert inner == ["return"]


def test_a_strategy_forgets_idle_endpoints_past_its_bound() -> None:
    from resilient_client.strategies import concurrency

    clock = FakeClock()
    strategy = ConcurrencyStrategy(ONE_SLOT.concurrency, rc.MemoryState(), "usta")
    for port in range(concurrency.MAX_ENDPOINTS + 10):
        call = Call(
            httpx.Request("GET", f"http://h.test:{port + 1}/x"),
            ONE_SLOT,
            rc.Clock(monotonic=clock),
            "usta",
            True,
            Secrets(),
        )
        strategy.handle(success, call, 1)
    assert len(strategy._endpoints) <= concurrency.MAX_ENDPOINTS


# -- the fleet over one redis-server ------------------------------------------------------------------


def test_two_stores_on_one_redis_share_one_limit(redis_url: str) -> None:
    first, second = rc.RedisState(redis_url), rc.RedisState(redis_url)
    key = state_key("concurrency", "usta", "fleet.test", 443)
    try:
        enter = [EnterSlot(key, f"t{i}", 30.0, 3, 1, 10, 120) for i in range(4)]
        taken = [
            first.run(enter[0], 0.0).entered,
            second.run(enter[1], 0.0).entered,
            first.run(enter[2], 0.0).entered,
            second.run(enter[3], 0.0).entered,  # the fleet holds 3: the limit
        ]
        assert taken == [True, True, True, False]
        first.run(LeaveSlot(key, "t0", "hold", 0, 0.0, 0, False, 3, 1, 10, 120), 0.0)
        assert second.run(enter[3], 0.0).entered  # freed by the other process's store
        import redis

        with redis.Redis.from_url(redis_url) as admin:
            keys = admin.keys("resilient_client:slot*")
            assert keys and all(admin.pttl(k) > 0 for k in keys)  # every key expires
    finally:
        first.close()
        second.close()


# -- the policy table -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "path"),
    [
        ("min = 0", "concurrency.min"),
        ("max = 0", "concurrency.max"),
        ("initial = -1", "concurrency.initial"),
        ("backoff_ratio = 1.0", "concurrency.backoff_ratio"),
        ("latency_tolerance = 0.5", "concurrency.latency_tolerance"),
        ("probe_after = 0", "concurrency.probe_after"),
        ('enabled = "yes"', "concurrency.enabled"),
        ("min = 5\nmax = 3", "concurrency.min"),
        ("probe_afer = 10", "concurrency"),
    ],
)
def test_bad_concurrency_keys_name_their_path(tmp_path: Path, table: str, path: str) -> None:
    file = tmp_path / "policy.toml"
    file.write_text(f'extends = "default"\n[concurrency]\n{table}\n')
    with pytest.raises(rc.PolicyError) as raised:
        rc.load_policy(file)
    assert path in str(raised.value)


def test_the_default_policy_turns_concurrency_on() -> None:
    shipped = rc.load_policy(Path(rc.__file__).parents[2] / "policies" / "usta.toml")
    assert shipped.concurrency.enabled
    assert shipped.concurrency.min == 1
    with pytest.raises(rc.PolicyError):
        rc.ConcurrencySettings(max=0)
