"""RedisState under its own faults, on real redis-servers: corrupt values in every key kind, a hung
server inside a call's deadline, a lease taken after the client gave up, a FLUSHALL mid-run, a full
server, and a burst of 200 tasks on a healthy one (run on Redis, not locally)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import attrs
import httpx
import pytest

import resilient_client as rc
from redis_process import RedisProcess
from resilient_client import _deadline
from resilient_client.errors import CircuitOpenError
from resilient_client.stores import (
    Acquire,
    CloseCircuit,
    Deposit,
    LimiterAcquire,
    LimiterAdmit,
    LimiterLearn,
    LimiterState,
    OpenCircuit,
    Pause,
    PausedFor,
    ReadCircuit,
    RecordOutcome,
    RecordSuccesses,
    Release,
    ReleaseProbe,
    TryProbe,
    TrySpend,
)
from resilient_client.stores.redis import RedisState

pytestmark = pytest.mark.anyio
#: The async client under test is redis.asyncio's (under trio a RedisState runs its sync one in threads).
ASYNCIO_ONLY = pytest.mark.parametrize("anyio_backend", ["asyncio"])


@pytest.fixture
def server() -> Iterator[RedisProcess]:
    process = RedisProcess().start()
    yield process
    process.close()


#: Values the SDK cannot read, written in every kind of key: text, a hash, a list, a set, bad numbers.
CORRUPT: dict[str, Any] = {
    "text": "not a number",
    "nan": "nan",
    "short-record": "\x00\x01",
    "hash": {"state": "melted", "epoch": "x", "probe:t": "soon"},
    "list": ["a", "b"],
    "set": {"a"},
}
#: Each kind of key and one operation of each script that reads it.
OPERATIONS: list[tuple[str, str, Any]] = [
    ("bucket", "k", Deposit("k", 1.0, 2.0)),
    ("bucket", "k", TrySpend("k", 1.0, 2.0)),
    ("window", "k", RecordOutcome("k", True, 30.0)),
    ("window", "k", RecordSuccesses("k", 2, 0.0, 30.0)),
    ("circuit", "k", ReadCircuit("k")),
    ("circuit", "k", TryProbe("k", "t", 1, 5.0)),
    ("circuit", "k", ReleaseProbe("k", "t")),
    ("circuit", "k", OpenCircuit("k", 0, 5.0)),
    ("circuit", "k", CloseCircuit("k", 0)),
    ("lease", "a", Acquire(["a"], 1, 5.0, "t")),
    ("pause", "k", Pause("k", 5.0)),
    ("pause", "k", PausedFor("k")),
    ("pause", "k", LimiterAdmit("k", 10.0, 1.0, 1.0)),
    ("rate", "k", LimiterAcquire("k", 10.0, 1.0, 1.0)),
    ("rate", "k", LimiterAdmit("k", 10.0, 1.0, 1.0)),
    ("rate", "k", LimiterState("k")),
    ("rate", "k", LimiterLearn("k", 0, 5.0, 10.0, True)),
    ("serial", "", OpenCircuit("k", 0, 5.0)),
]


def _plant(admin: Any, key: str, value: Any) -> None:
    admin.delete(key)
    if isinstance(value, str):
        admin.set(key, value)
    elif isinstance(value, dict):
        admin.hset(key, mapping=value)
    elif isinstance(value, list):
        admin.rpush(key, *value)
    else:
        admin.sadd(key, *value)


@pytest.mark.parametrize("corruption", sorted(CORRUPT))
def test_a_corrupt_value_in_any_key_reads_as_absent_and_never_outlives_its_ttl(
    redis_process: RedisProcess, corruption: str
) -> None:
    redis_process.flush()
    store = RedisState(redis_process.url, timeout=5.0, on_unavailable="raise")
    with redis_process.admin() as admin:
        for kind, key, op in OPERATIONS:
            name = "resilient_client:serial" if kind == "serial" else f"resilient_client:{kind}:{key}"
            _plant(admin, name, CORRUPT[corruption])
            store.run(op, 0.0)  # "raise": an error reply would be a StateUnavailableError here
            assert store._fallback.local.run(ReadCircuit("never"), 0.0).state == "closed"
            if kind == "serial":
                assert int(admin.get(name)) > 0
            elif admin.exists(name):
                assert admin.pttl(name) > 0, (kind, op)
            admin.delete(name)
    assert not store._fallback.down
    store.close()


def test_corrupt_values_read_as_what_an_absent_key_answers(redis_process: RedisProcess) -> None:
    redis_process.flush()
    store = RedisState(redis_process.url, timeout=5.0, on_unavailable="raise")
    with redis_process.admin() as admin:
        admin.set("resilient_client:circuit:k", "open")
        assert store.run(ReadCircuit("k"), 0.0).state == "closed"
        admin.hset("resilient_client:pause:k", "x", "1")
        assert store.run(PausedFor("k"), 0.0) == 0.0
        admin.set("resilient_client:bucket:k", "nan")
        assert store.run(Deposit("k", 1.0, 2.0), 0.0) == 2.0
        admin.hset("resilient_client:lease:a", "someone#1", "forever")
        assert store.run(Acquire(["a"], 1, 5.0, "t"), 0.0) is True
    store.close()


@ASYNCIO_ONLY
async def test_a_hung_store_inside_a_half_second_deadline_ends_within_50_ms_of_it(
    server: RedisProcess,
) -> None:
    store = RedisState(server.url, timeout=2.0)
    assert await store.arun(PausedFor("k"), 0.0) == 0.0  # connected, scripts known
    assert store.run(PausedFor("k"), 0.0) == 0.0
    server.freeze()
    try:
        for run in ("async", "sync"):
            store._fallback._down = False  # each shell meets the hung server afresh
            bound = _deadline.current.set(_deadline.Deadline(time.monotonic() + 0.5, time.monotonic))
            try:
                start = time.monotonic()
                if run == "async":
                    taken = await store.arun(Acquire(["a"], 1, 5.0, "t"), 0.0)
                else:
                    taken = store.run(Acquire(["a"], 1, 5.0, "t"), 0.0)
                took = time.monotonic() - start
            finally:
                _deadline.current.reset(bound)
            assert taken in (True, False)  # no error
            assert 0.45 < took < 0.55, (run, took)
    finally:
        server.thaw()


@ASYNCIO_ONLY
async def test_a_lease_taken_after_the_client_gave_up_is_released_once_redis_answers(
    server: RedisProcess,
) -> None:
    store = RedisState(server.url, timeout=0.2)
    assert await store.arun(PausedFor("k"), 0.0) == 0.0
    assert await store.arun(Acquire(["warm"], 1, 5.0, "warm"), 0.0)  # Redis knows the script
    server.freeze()
    try:
        # Sent to a hung server: the client gives up, and the script stays in Redis's buffer.
        assert await store.arun(Acquire(["account"], 1, 60.0, "late"), 0.0) in (True, False)
    finally:
        server.thaw()
    with server.admin() as admin:
        for _ in range(100):  # Redis runs the buffered script as it wakes up
            if admin.exists("resilient_client:lease:account"):
                break
            await asyncio.sleep(0.01)  # real-sleep: a real process waking up
        assert admin.exists("resilient_client:lease:account")
        store._fallback._next_probe = 0.0  # the next operation probes Redis at once
        await store.arun(PausedFor("k"), 10.0)
        await store.arun(PausedFor("k"), 10.0)
        assert not admin.exists("resilient_client:lease:account")  # released by its token
        assert await store.arun(Acquire(["account"], 1, 5.0, "next"), 10.0) is True
    await store.aclose()


@ASYNCIO_ONLY
async def test_a_flushall_mid_run_fails_nothing_and_state_is_shared_again(
    redis_process: RedisProcess,
) -> None:
    redis_process.flush()
    store = RedisState(redis_process.url, timeout=5.0, on_unavailable="raise")
    assert await store.arun(Acquire(["a"], 1, 5.0, "t1"), 0.0) is True
    await store.arun(Pause("k", 30.0), 0.0)
    redis_process.flush()
    assert await store.arun(PausedFor("k"), 0.0) == 0.0
    await store.arun(Release(["a"], "t1"), 0.0)  # its hold is gone: no error
    assert await store.arun(Acquire(["a"], 1, 5.0, "t2"), 0.0) is True
    assert await store.arun(OpenCircuit("k", 0, 5.0), 0.0) is True  # the serial starts again
    await store.aclose()


@ASYNCIO_ONLY
async def test_200_tasks_on_a_healthy_redis_run_every_operation_there(redis_process: RedisProcess) -> None:
    redis_process.flush()
    store = RedisState(redis_process.url)  # the default 50 ms timeout
    ran_locally = 0
    local_run = store._fallback.local.run

    def counting(op: Any, now: float) -> Any:
        nonlocal ran_locally
        ran_locally += 1
        return local_run(op, now)

    store._fallback.local.run = counting  # type: ignore[method-assign]

    async def task(number: int) -> None:
        for _ in range(5):
            await store.arun(ReadCircuit("k"), 0.0)
            assert await store.arun(Acquire(["shared"], 1000, 5.0, f"t{number}"), 0.0)
            await store.arun(Release(["shared"], f"t{number}"), 0.0)

    await asyncio.gather(*(task(number) for number in range(200)))
    assert ran_locally == 0
    assert not store._fallback.down
    await store.aclose()


@ASYNCIO_ONLY
async def test_200_tasks_against_an_open_circuit_in_redis_send_one_probe(redis_process: RedisProcess) -> None:
    redis_process.flush()
    state = RedisState(redis_process.url)  # the default 50 ms timeout
    release = asyncio.Event()
    sent = 0

    async def vendor(request: httpx.Request) -> httpx.Response:
        nonlocal sent
        sent += 1
        await release.wait()  # the probe stays in flight while the others arrive
        return httpx.Response(200, json={"ResponseCode": 0})

    shipped = rc.load_policy("hyper")
    quiet = attrs.evolve(
        shipped, budget=rc.BudgetSettings(ratio=0.0), rate_limit=rc.RateLimitSettings(enabled=False)
    )
    resilient = rc.ResilientTransport(
        "hyper", transport=httpx.MockTransport(vendor), state=state, policy=quiet
    )
    assert state.run(OpenCircuit("breaker/hyper/hyper.test", 0, 1.0), 0.0)
    state._clock_offset = 2.0  # the break has ended by the server's clock: the next call is a probe
    async with httpx.AsyncClient(transport=resilient) as client:
        tasks = [asyncio.create_task(client.get("https://hyper.test/api/items")) for _ in range(200)]
        for _ in range(100_000):
            if sum(task.done() for task in tasks) >= 199:
                break
            await asyncio.sleep(0)
        release.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    assert sent == 1
    assert sum(isinstance(result, CircuitOpenError) for result in results) == 199
    assert not state._fallback.down
    await state.aclose()


def test_a_full_redis_fails_no_call(server: RedisProcess) -> None:
    """maxmemory with noeviction: every script that writes is refused (OOM); calls go on locally."""
    state = RedisState(server.url)
    answers = []

    def vendor(request: httpx.Request) -> httpx.Response:
        answers.append(request)
        return httpx.Response(200, json={"ResponseCode": 0})

    quiet = attrs.evolve(rc.load_policy("hyper"), rate_limit=rc.RateLimitSettings(enabled=False))
    resilient = rc.ResilientTransport(
        "hyper", transport=httpx.MockTransport(vendor), state=state, policy=quiet
    )
    with server.admin() as admin:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)
    with httpx.Client(transport=resilient) as client:
        for number in range(50):
            assert (
                client.post("https://hyper.test/api/journal", json={"AccountNo": number % 3}).status_code
                == 200
            )
            assert client.get("https://hyper.test/api/items").status_code == 200
    assert len(answers) == 100
    assert not state._fallback.down
    state.close()


@ASYNCIO_ONLY
async def test_a_probe_slot_taken_after_the_client_gave_up_is_freed_once_redis_answers(
    server: RedisProcess,
) -> None:
    store = RedisState(server.url, timeout=0.2)
    assert await store.arun(OpenCircuit("k", 0, 1.0), 0.0)
    store._clock_offset = 2.0  # the break has ended: the next TryProbe takes the one slot
    taken, _ = await store.arun(TryProbe("warm", "warm", 1, 60.0), 0.0)  # Redis knows the script
    server.freeze()
    try:
        await store.arun(TryProbe("k", "late", 1, 60.0), 0.0)  # given up; buffered in Redis
    finally:
        server.thaw()
    with server.admin() as admin:
        for _ in range(100):
            if admin.hexists("resilient_client:circuit:k", "probe:late"):
                break
            await asyncio.sleep(0.01)  # real-sleep: a real process waking up
        assert admin.hexists("resilient_client:circuit:k", "probe:late")
        store._fallback._next_probe = 0.0
        await store.arun(PausedFor("x"), 10.0)
        await store.arun(PausedFor("x"), 10.0)
        assert not admin.hexists("resilient_client:circuit:k", "probe:late")
    taken, circuit = await store.arun(TryProbe("k", "next", 1, 60.0), 10.0)
    assert taken and circuit.state == "half_open"
    await store.aclose()


@ASYNCIO_ONLY
async def test_a_call_with_a_half_second_deadline_on_a_hung_store_ends_within_50_ms_of_it(
    server: RedisProcess,
) -> None:
    """Through the transport: the pipeline's deadline bounds the store's waits ([state] timeout 2 s)."""
    store = RedisState(server.url, timeout=2.0)
    shipped = rc.load_policy("hyper")
    policy = attrs.evolve(
        shipped,
        retry=attrs.evolve(shipped.retry, total_timeout=0.5),
        rate_limit=rc.RateLimitSettings(enabled=False),
    )
    answered = httpx.MockTransport(lambda request: httpx.Response(200, json={"ResponseCode": 0}))
    resilient = rc.ResilientTransport("hyper", transport=answered, state=store, policy=policy)
    async with httpx.AsyncClient(transport=resilient) as client:
        await client.get("https://hyper.test/api/items")  # connected, scripts known
    with httpx.Client(transport=resilient) as client:
        client.get("https://hyper.test/api/items")
    server.freeze()
    try:
        for run in ("async", "sync"):
            store._fallback._down = False  # each shell meets the hung server afresh
            start = time.monotonic()
            try:
                if run == "async":
                    async with httpx.AsyncClient(transport=resilient) as client:
                        await client.get("https://hyper.test/api/items")
                else:
                    with httpx.Client(transport=resilient) as client:
                        client.get("https://hyper.test/api/items")
            except httpx.HTTPError:
                pass  # what the call ends with is the strategies' to say; when it ends is the bar
            took = time.monotonic() - start
            assert store._fallback.down  # the call did wait on the hung store, and gave up on it
            assert 0.4 < took < 0.55, (run, took)
    finally:
        server.thaw()
    store.close()
