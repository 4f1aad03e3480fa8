"""RedisState beyond the shared contract: the server's clock, keys and their expiry, one round trip per
operation, construction errors, the clients it makes or is given, and a killed process's lease.

Every test runs against the real redis-server of the session (conftest's ``redis_url``, flushed for
each test). The contract suite (test_store_contract.py) checks the operations' numbers.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import re
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
import redis.asyncio

import resilient_client as rc
from redis_process import RedisProcess
from resilient_client.stores import Deposit, TrySpend
from resilient_client.stores.redis import RedisState
from store_ops import Store

FLEET_PAGE = (Path(__file__).resolve().parents[2] / "docs" / "guide" / "fleet.md").read_text()


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisState]:
    # A generous timeout and "raise": on a busy machine a slow answer must fail, not go local.
    made = RedisState(redis_url, timeout=5.0, on_unavailable="raise")
    yield made
    made.close()


@pytest.fixture
def admin(redis_process: RedisProcess) -> Iterator[redis.Redis]:
    with redis_process.admin() as client:
        yield client


# -- the server's clock ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_lease_ends_on_the_server_clock_though_its_holder_never_releases(
    store: RedisState, twin: Callable[[object], Any]
) -> None:
    ops = twin(store)
    assert await ops.try_acquire(["account/1"], 1, 30.0, "crashed", 0.0)
    store._clock_offset = 29.0  # the server's clock, 29 s later: no real wait
    assert not await ops.try_acquire(["account/1"], 1, 30.0, "other", 0.0)
    store._clock_offset = 30.001
    assert await ops.try_acquire(["account/1"], 1, 30.0, "other", 0.0)


@pytest.mark.anyio
async def test_the_callers_now_is_ignored_for_the_servers_time(
    store: RedisState, twin: Callable[[object], Any]
) -> None:
    # MemoryState would count these down by the callers' clocks (here 1e9 s apart): Redis does not.
    ops = twin(store)
    await ops.pause("host", 10.0, 0.0)
    assert await ops.paused_for("host", 1e9) == pytest.approx(10.0, abs=1.0)
    epoch = (await ops.circuit("breaker", 5e8)).epoch
    assert await ops.open_circuit("breaker", epoch, 15.0, 1e9)
    opened = await ops.circuit("breaker", 0.0)
    assert opened.state == "open"
    assert opened.retry_after == pytest.approx(15.0, abs=1.0)
    assert 0 < opened.retry_after <= 15.0


@pytest.mark.anyio
async def test_breaks_and_pauses_end_on_the_server_clock(
    store: RedisState, twin: Callable[[object], Any]
) -> None:
    ops = twin(store)
    await ops.open_circuit("breaker", 0, 15.0, 0.0)
    await ops.pause("host", 10.0, 0.0)
    assert not (await ops.try_probe("breaker", "p", 1, 10.0, 0.0))[0]
    store._clock_offset = 15.001
    assert await ops.paused_for("host", 0.0) == 0.0
    taken, circuit = await ops.try_probe("breaker", "p", 1, 10.0, 0.0)
    assert taken and circuit.state == "half_open"


def test_the_server_clock_has_microseconds(store: RedisState) -> None:
    Store(store).pause("host", 1000.0, 0.0)
    left = [Store(store).paused_for("host", 0.0) for _ in range(3)]
    assert left == sorted(left, reverse=True)
    assert any(value != round(value) for value in left)  # not whole seconds


# -- keys, their types and their expiry ---------------------------------------------------------------

#: kind -> the Redis type of its key, as the docs' table of keys says (docs/guide/fleet.md).
KINDS = {
    "bucket": "string",
    "window": "hash",
    "circuit": "hash",
    "lease": "hash",
    "pause": "string",
    "rate": "string",
}


def every_write(store: RedisState, key: str) -> None:
    Store(store).deposit(key, 1.0, 10.0, 0.0)
    Store(store).record_outcome(key, True, 60.0, 0.0)
    Store(store).open_circuit(key, 0, 5.0, 0.0)
    Store(store).try_acquire([key], 1, 30.0, "t", 0.0)
    Store(store).pause(key, 3.0, 0.0)
    Store(store).limiter_acquire(key, 2.0, 1.0, 60.0, 0.0)
    first = Store(store).limiter_state(key, 0.0)
    Store(store).limiter_learn(key, first.version, 1.0, 2.0, True, 0.0)


def test_keys_are_named_by_prefix_kind_and_key_and_all_expire(redis_url: str, admin: redis.Redis) -> None:
    store = RedisState(redis_url, prefix="myapp", idle_seconds=60.0)
    every_write(store, "breaker/hyper/api.hyper.test")
    found = {name.decode(): admin.type(name).decode() for name in admin.scan_iter("*")}
    expected = {f"myapp:{kind}:breaker/hyper/api.hyper.test": kind_type for kind, kind_type in KINDS.items()}
    assert found == {**expected, "myapp:serial": "string"}
    for name in expected:
        assert 0 < admin.pttl(name) <= 60_000, name
    assert admin.pttl("myapp:serial") == -1  # epochs must never repeat: the counter is kept


def test_the_fleet_page_documents_every_key() -> None:
    table = FLEET_PAGE[FLEET_PAGE.index("| Key pattern |") :]
    table = table[: table.index("\n\n")]
    rows = [[cell.strip(" `") for cell in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    documented = {row[0]: row[1] for row in rows}
    assert documented == {
        **{f"<prefix>:{kind}:<key>": kind_type for kind, kind_type in KINDS.items()},
        "<prefix>:serial": "string",
    }


WRITES = [
    pytest.param("bucket", lambda s, k: Store(s).deposit(k, 1.0, 10.0, 0.0), id="deposit"),
    pytest.param("bucket", lambda s, k: Store(s).try_spend(k, 1.0, 10.0, 0.0), id="try_spend"),
    pytest.param("window", lambda s, k: Store(s).record_outcome(k, False, 60.0, 0.0), id="record_outcome"),
    pytest.param("circuit", lambda s, k: Store(s).reset_circuit(k, 0.0), id="reset_circuit"),
    pytest.param("lease", lambda s, k: Store(s).try_acquire([k], 5, 30.0, "t", 0.0), id="try_acquire"),
    pytest.param("pause", lambda s, k: Store(s).pause(k, 1.0, 0.0), id="pause"),
    pytest.param("rate", lambda s, k: Store(s).limiter_acquire(k, 0.0, 1.0, 0.0, 0.0), id="limiter_acquire"),
]


@pytest.mark.parametrize(("kind", "write"), WRITES)
def test_every_write_renews_the_idle_expiry(
    redis_url: str, admin: redis.Redis, kind: str, write: Callable[[RedisState, str], object]
) -> None:
    store = RedisState(redis_url, idle_seconds=60.0)
    write(store, "k")
    name = f"resilient_client:{kind}:k"
    admin.pexpire(name, 1000)
    write(store, "k")
    assert 59_000 < admin.pttl(name) <= 60_000


@pytest.mark.parametrize(
    ("kind", "write"),
    [
        pytest.param("lease", lambda s: Store(s).try_acquire(["k"], 1, 3600.0, "t", 0.0), id="lease"),
        pytest.param("pause", lambda s: Store(s).pause("k", 3600.0, 0.0), id="pause"),
        pytest.param("circuit", lambda s: Store(s).open_circuit("k", 0, 3600.0, 0.0), id="break"),
    ],
)
def test_a_key_outlives_the_idle_time_while_its_lease_break_or_pause_lasts(
    redis_url: str, admin: redis.Redis, kind: str, write: Callable[[RedisState], object]
) -> None:
    write(RedisState(redis_url, idle_seconds=60.0))
    assert 3_590_000 < admin.pttl(f"resilient_client:{kind}:k") <= 3_600_000


def test_a_short_lease_does_not_cut_a_longer_one_held_on_the_same_key(
    redis_url: str, admin: redis.Redis
) -> None:
    store = RedisState(redis_url, idle_seconds=60.0)
    assert Store(store).try_acquire(["k"], 2, 3600.0, "long", 0.0)
    assert Store(store).try_acquire(["k"], 2, 1.0, "short", 0.0)
    assert admin.pttl("resilient_client:lease:k") > 3_590_000


def test_stores_of_one_prefix_share_state_and_other_prefixes_do_not(redis_url: str) -> None:
    one, same, other = RedisState(redis_url), RedisState(redis_url), RedisState(redis_url, prefix="other")
    assert Store(one).try_acquire(["account"], 1, 30.0, "process-1", 0.0)
    assert not Store(same).try_acquire(["account"], 1, 30.0, "process-2", 0.0)
    assert Store(other).try_acquire(["account"], 1, 30.0, "process-2", 0.0)


# -- one script, one round trip -------------------------------------------------------------------------


def commands_sent(admin: redis.Redis) -> Counter[str]:
    """The commands clients sent, by name (INFO commandstats counts the scripts' own calls too: those
    are left out, as are the admin's)."""
    stats = admin.info("commandstats")
    ran = Counter({name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()})
    return Counter({name: ran[name] for name in ("evalsha", "eval", "script|load", "ping") if ran[name]})


def test_each_operation_is_one_evalsha(redis_url: str, admin: redis.Redis) -> None:
    store = RedisState(redis_url)

    def every_operation(key: str) -> None:
        every_write(store, key)
        assert Store(store).try_probe(key, "p", 1, 10.0, 0.0)[1].state == "open"
        Store(store).release([key], "t", 0.0)
        Store(store).paused_for(key, 0.0)

    every_operation("warm-up")  # the first call of each script loads it (NOSCRIPT, then EVAL)
    admin.config_resetstat()
    every_operation("k")
    assert commands_sent(admin) == {"evalsha": 11}


@pytest.mark.anyio
async def test_a_release_is_one_script_for_all_its_keys_and_frees_them_for_the_next_operation(
    store: RedisState, admin: redis.Redis, twin: Callable[[object], Any]
) -> None:
    ops = twin(store)
    assert await ops.try_acquire(["a", "b"], 1, 30.0, "holder", 0.0)
    await ops.release(["a", "b"], "holder", 0.0)  # loads the script
    assert await ops.try_acquire(["a", "b"], 1, 30.0, "holder", 0.0)
    admin.config_resetstat()
    await ops.release(["a", "b"], "holder", 0.0)
    assert await ops.try_acquire(["a", "b"], 1, 30.0, "next", 0.0)
    assert commands_sent(admin) == {"evalsha": 2}


def test_a_connection_the_server_closed_is_replaced_before_it_is_used(
    store: RedisState, admin: redis.Redis
) -> None:
    Store(store).deposit("k", 1.0, 10.0, 0.0)
    admin.client_kill_filter(_type="normal", skipme=True)  # every connection but the admin's
    assert Store(store).deposit("k", 0.0, 10.0, 0.0) == 10.0
    assert not store._fallback.down


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_opens_its_own_connections(
    store: RedisState, admin: redis.Redis, redis_url: str
) -> None:
    url = redis_url
    Store(store).deposit("k", 1.0, 10.0, 0.0)  # the parent holds an idle connection now
    parent_ids = {int(client["id"]) for client in admin.client_list()}
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through its exit code
        code = 1
        try:
            Store(store).deposit("k", 0.0, 10.0, 0.0)
            with redis.Redis.from_url(url) as look:
                mine = [
                    c for c in look.client_list() if int(c["id"]) not in parent_ids and c["cmd"] == "evalsha"
                ]
            code = 0 if mine else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert Store(store).deposit("k", 0.0, 10.0, 0.0) == 10.0  # the parent's connection is still its own


def test_a_late_release_never_ends_a_newer_hold_of_the_same_token(
    store: RedisState, admin: redis.Redis
) -> None:
    # A release may reach Redis late (its answer timed out, or it was cancelled on the way), after
    # the same caller took the key again with the same token (a guard waiting out a pause). Each
    # hold is its own field, so the late release ends only its own.
    assert Store(store).try_acquire(["account"], 1, 30.0, "caller", 0.0)
    (first,) = admin.hkeys("resilient_client:lease:account")
    assert Store(store).try_acquire(["account"], 1, 30.0, "caller", 0.0)  # holding: renewed, same field
    assert admin.hkeys("resilient_client:lease:account") == [first]
    Store(store).release(["account"], "caller", 0.0)
    admin.hset("resilient_client:lease:account", first, "1e18")  # as if the release had not run yet
    assert not Store(store).try_acquire(["account"], 1, 30.0, "caller", 0.0)  # refused once, not merged
    admin.hdel("resilient_client:lease:account", first)  # the late release arrives
    assert Store(store).try_acquire(["account"], 1, 30.0, "caller", 0.0)
    (second,) = admin.hkeys("resilient_client:lease:account")
    assert second != first
    admin.hdel("resilient_client:lease:account", first)  # a second late release of the old hold
    assert not Store(store).try_acquire(["account"], 1, 30.0, "other", 0.0)  # the new hold stands
    Store(store).release(["account"], "caller", 0.0)
    assert Store(store).try_acquire(["account"], 1, 30.0, "other", 0.0)


def test_scripts_are_loaded_again_after_the_server_forgets_them(
    store: RedisState, admin: redis.Redis
) -> None:
    Store(store).deposit("k", 1.0, 10.0, 0.0)
    admin.script_flush()
    assert Store(store).deposit("k", 0.0, 10.0, 0.0) == 10.0


# -- the clients ----------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("decode_responses", [False, True])
async def test_given_clients_are_used_as_they_are(
    redis_url: str, twin: Callable[[object], Any], decode_responses: bool
) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=decode_responses)
    async_client = redis.asyncio.Redis.from_url(redis_url, decode_responses=decode_responses)
    store = RedisState(client=client, async_client=async_client)
    ops = twin(store)
    try:
        circuit = await ops.circuit("k", 0.0)
        assert await ops.open_circuit("k", circuit.epoch, 5.0, 0.0)
        assert (await ops.circuit("k", 0.0)).state == "open"
        assert await ops.deposit("k", 1.0, 2.0, 0.0) == 2.0
    finally:
        if _in_asyncio():
            await async_client.aclose()
    assert client.exists("resilient_client:circuit:k")


def _in_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@pytest.mark.anyio
async def test_with_only_a_sync_client_arun_runs_it_in_a_thread(redis_url: str) -> None:
    store = RedisState(client=redis.Redis.from_url(redis_url))
    assert await store.arun(Deposit("k", 1.0, 2.0), 0.0) == 2.0
    assert await store.arun(TrySpend("k", 2.0, 2.0), 0.0)


def test_with_only_an_async_client_the_sync_operations_say_what_is_missing(redis_url: str) -> None:
    store = RedisState(async_client=redis.asyncio.Redis.from_url(redis_url))
    with pytest.raises(TypeError, match=r"only async_client=.*needs client= or url="):
        Store(store).deposit("k", 1.0, 2.0, 0.0)


def client_ids(admin: redis.Redis) -> set[int]:
    """The ids of the connections Redis has now. Tests compare sets, not counts: another test's
    connection may close (or a pool open one) while this one runs, which a count would take for
    this store's."""
    return {int(client["id"]) for client in admin.client_list()}


def wait_until_closed(admin: redis.Redis, ids: set[int]) -> None:
    deadline = time.monotonic() + 2.0
    while ids & client_ids(admin) and time.monotonic() < deadline:
        time.sleep(0.01)  # real-sleep: the server notices a closed socket on its own event loop
    assert not ids & client_ids(admin)


def test_each_asyncio_loop_gets_its_own_client_closed_when_the_loop_ends(
    store: RedisState, admin: redis.Redis
) -> None:
    before = client_ids(admin)
    for _ in range(3):  # a client bound to an earlier loop would fail here ("attached to a different loop")
        assert asyncio.run(store.arun(Deposit("k", 0.0, 2.0), 0.0)) == 2.0
    deadline = time.monotonic() + 2.0
    while client_ids(admin) - before and time.monotonic() < deadline:
        time.sleep(0.01)  # real-sleep: as below
    assert not client_ids(admin) - before  # each loop's client was closed when its loop ended


def test_close_closes_the_connections_the_store_opened(store: RedisState, admin: redis.Redis) -> None:
    before = client_ids(admin)
    Store(store).deposit("k", 0.0, 2.0, 0.0)
    opened = client_ids(admin) - before
    assert len(opened) == 1
    store.close()
    wait_until_closed(admin, opened)
    assert Store(store).deposit("k", 0.0, 2.0, 0.0) == 2.0  # and opens them again when used


@pytest.mark.anyio
async def test_aclose_closes_the_loops_connections(store: RedisState, admin: redis.Redis) -> None:
    before = client_ids(admin)
    await store.arun(Deposit("k", 0.0, 2.0), 0.0)
    opened = client_ids(admin) - before
    assert len(opened) == 1
    await store.aclose()
    deadline = time.monotonic() + 2.0
    while opened & client_ids(admin) and time.monotonic() < deadline:
        await anyio.sleep(0.01)  # real-sleep: as above
    assert not opened & client_ids(admin)


# -- construction -----------------------------------------------------------------------------------------

SECRET = "hunter2hunter2"


@pytest.mark.parametrize(
    ("url", "error", "message"),
    [
        pytest.param(
            6379, TypeError, r"takes a str such as 'redis://localhost:6379/0', not int", id="not-a-str"
        ),
        pytest.param(f"http://:{SECRET}@cache:6379", ValueError, r"must start with redis://", id="scheme"),
        pytest.param(f"cache:{SECRET}@6379", ValueError, r"must start with redis://", id="no-scheme"),
        pytest.param(f"redis://:{SECRET}@", ValueError, r"names no host", id="no-host"),
        pytest.param(f"redis://:{SECRET}@cache:port", ValueError, r"is the port a number", id="port"),
        pytest.param(f"redis://:{SECRET}@cache:99999", ValueError, r"is the port a number", id="port-range"),
        pytest.param(f"redis://:{SECRET}@cache:6379/db", ValueError, r"database must be a number", id="db"),
        pytest.param(f"redis://:{SECRET}@[::1:6379", ValueError, r"not a valid URL", id="ipv6"),
        pytest.param("unix://", ValueError, r"names no socket path", id="unix"),
        pytest.param(
            f"redis://:{SECRET}@cache:6379/0?socket_timeout=soon", ValueError, r"socket_timeout", id="query"
        ),
    ],
)
def test_a_bad_url_is_refused_at_construction_without_its_password(
    url: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as caught:
        RedisState(url)  # type: ignore[arg-type]
    assert SECRET not in str(caught.value)
    # No chained error either, whose text might hold the URL.
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        pytest.param({}, TypeError, r"needs url=", id="nothing"),
        pytest.param(
            {"url": "redis://h", "client": redis.Redis()},
            TypeError,
            r"url= or client=/async_client=, not both",
            id="both",
        ),
        pytest.param(
            {"client": "redis://h"}, TypeError, r"client=\.\.\.\) takes a redis.Redis, not str", id="client"
        ),
        pytest.param(
            {"async_client": redis.Redis()}, TypeError, r"takes a redis.asyncio.Redis, not Redis", id="async"
        ),
        pytest.param(
            {"url": "redis://h", "prefix": ""},
            ValueError,
            r"prefix=\.\.\.\) must be a non-empty str",
            id="prefix",
        ),
        pytest.param(
            {"url": "redis://h", "timeout": 0},
            ValueError,
            r"timeout=\.\.\.\) must be a positive",
            id="timeout",
        ),
        pytest.param(
            {"url": "redis://h", "idle_seconds": float("inf")},
            ValueError,
            r"idle_seconds=.*positive",
            id="idle",
        ),
        pytest.param(
            {"url": "redis://h", "on_unavailable": "ignore"}, ValueError, r"'local' or 'raise'", id="mode"
        ),
    ],
)
def test_bad_arguments_are_refused_with_what_was_wrong(
    arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        RedisState(**arguments)


def test_repr_and_pickle_keep_the_password_out() -> None:
    store = RedisState(f"redis://user:{SECRET}@cache:6379/0", prefix="app")
    assert repr(store) == "RedisState('redis://user:[REDACTED]@cache:6379/0', prefix='app')"
    with pytest.raises(TypeError, match="cannot be pickled") as caught:
        pickle.dumps(store)
    assert SECRET not in str(caught.value)


def test_importing_the_package_does_not_import_redis() -> None:
    code = textwrap.dedent(
        """
        import sys
        import resilient_client as rc
        assert "redis" not in sys.modules, "redis imported by resilient_client"
        assert rc.RedisState.__name__ == "RedisState"
        assert "redis" not in sys.modules, "redis imported by naming RedisState"
        rc.RedisState("redis://localhost:6379/0")
        assert "redis" in sys.modules
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_without_the_redis_package_construction_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ModuleNotFoundError, match=re.escape("pip install 'resilient-client[redis]'")):
        rc.RedisState("redis://localhost:6379/0")


# -- a process that dies holding a lease ------------------------------------------------------------------


def test_a_killed_process_holds_its_account_no_longer_than_its_lease(redis_url: str) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from resilient_client.stores import Acquire\n"
            "from resilient_client.stores.redis import RedisState\n"
            f"assert RedisState({redis_url!r}).run(Acquire(['hyper/account/42'], 1, 30.0, 'doomed'), 0.0)\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n",  # real-sleep: stands for a call in flight when the process is killed
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    finally:
        holder.kill()
        holder.wait()
    store = RedisState(redis_url)
    assert not Store(store).try_acquire(["hyper/account/42"], 1, 30.0, "survivor", 0.0)
    store._clock_offset = 30.001  # the lease's 30 s, on the server's clock
    assert Store(store).try_acquire(["hyper/account/42"], 1, 30.0, "survivor", 0.0)
