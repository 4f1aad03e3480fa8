"""RedisState when Redis does not answer: in-process state with one warning, or StateUnavailableError;
back to Redis once it answers, tried at most once a second.

Each test stops and starts (or freezes) a redis-server of its own, so the session's server is left
alone. ``now`` drives the probe interval, so the tests move it instead of waiting a second.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

from redis_process import RedisProcess
from resilient_client.errors import RejectedError, StateUnavailableError
from resilient_client.stores.redis import RedisState
from store_ops import Store

pytestmark = pytest.mark.anyio

PASSWORD = "fallback-secret-pw"


@pytest.fixture
def server() -> Iterator[RedisProcess]:
    process = RedisProcess(password=PASSWORD).start()
    yield process
    process.close()


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "resilient_client" and r.levelno == logging.WARNING
    ]


def retries_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "still does not answer" in r.getMessage()]


async def timed(call: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = await call
    return result, time.perf_counter() - started


async def test_an_outage_moves_to_local_state_with_one_warning_and_back_when_redis_answers(
    server: RedisProcess, twin: Callable[[object], Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="resilient_client")
    ops = twin(RedisState(server.url))
    assert await ops.try_spend("budget", 2.0, 3.0, 0.0)
    assert await ops.deposit("budget", 0.0, 3.0, 0.0) == 1.0  # in Redis

    server.stop()
    level, took = await timed(ops.try_spend("budget", 1.0, 3.0, 10.0))
    assert level is True and took < 0.5  # refused at once by the closed port: no retries, no backoff
    assert await ops.deposit("budget", 0.0, 3.0, 10.2) == 2.0  # in-process: a new bucket, full, spent once
    assert await ops.try_spend("budget", 1.0, 3.0, 10.5)
    assert await ops.deposit("budget", 0.0, 3.0, 11.0) == 1.0  # 1 s later: tried Redis again, still gone
    assert await ops.deposit("budget", 0.0, 3.0, 11.9) == 1.0
    assert len(retries_of(caplog)) == 1  # the calls between two tries went local at once

    server.start()
    assert await ops.deposit("budget", 0.0, 3.0, 11.95) == 1.0  # not tried before the next second
    assert await ops.deposit("budget", 0.0, 3.0, 12.0) == 3.0  # Redis again (restarted empty: full)
    assert await ops.try_spend("budget", 1.0, 3.0, 12.1)
    assert await ops.deposit("budget", 0.0, 3.0, 12.2) == 2.0

    warnings = warnings_of(caplog)
    assert len(warnings) == 1, warnings
    assert "redis://:[REDACTED]@127.0.0.1" in warnings[0]
    assert "using in-process state" in warnings[0]
    assert any("answers again" in r.getMessage() for r in caplog.records)
    assert PASSWORD not in caplog.text


async def test_a_hold_taken_while_redis_was_down_is_released_after_it_is_back(
    server: RedisProcess, twin: Callable[[object], Any]
) -> None:
    store = RedisState(server.url)
    ops = twin(store)
    server.stop()
    assert await ops.try_acquire(["account"], 1, 60.0, "caller", 0.0)  # in-process: Redis is gone
    server.start()
    assert await ops.try_acquire(["other"], 1, 60.0, "someone", 2.0)  # Redis answers again
    await ops.release(["account"], "caller", 2.5)
    # The local hold ended with its release, not with its lease: were Redis to go again, the
    # account would not stay busy for a minute in this process.
    assert Store(store._fallback.local).try_acquire(["account"], 1, 60.0, "next", 3.0)


async def test_every_outage_warns_once(
    server: RedisProcess, twin: Callable[[object], Any], caplog: pytest.LogCaptureFixture
) -> None:
    ops = twin(RedisState(server.url))
    for outage in range(2):
        server.stop()
        for step in range(5):
            await ops.deposit("k", 0.0, 1.0, outage * 100 + step * 0.5)
        server.start()
        await ops.deposit("k", 0.0, 1.0, outage * 100 + 50)
    assert len(warnings_of(caplog)) == 2


async def test_raise_refuses_while_redis_is_gone_and_says_when_it_is_tried_again(
    server: RedisProcess, twin: Callable[[object], Any]
) -> None:
    ops = twin(RedisState(server.url, on_unavailable="raise"))
    assert await ops.try_spend("budget", 1.0, 3.0, 0.0)
    server.stop()
    with pytest.raises(StateUnavailableError) as caught:
        await ops.try_spend("budget", 1.0, 3.0, 5.0)
    assert isinstance(caught.value, RejectedError)
    assert caught.value.retry_after == 1.0
    assert "the shared state store redis://:[REDACTED]@127.0.0.1" in str(caught.value)
    assert PASSWORD not in str(caught.value) and PASSWORD not in repr(caught.value)
    with pytest.raises(StateUnavailableError) as again:
        await ops.try_spend("budget", 1.0, 3.0, 5.75)
    assert again.value.retry_after == pytest.approx(0.25)
    assert again.value.__cause__ is None  # refused without trying Redis
    server.start()
    assert await ops.try_spend("budget", 1.0, 3.0, 6.0)


async def test_a_hung_redis_costs_one_timeout_then_the_call_goes_on_locally(
    server: RedisProcess, twin: Callable[[object], Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="resilient_client")
    ops = twin(RedisState(server.url, timeout=0.05))
    await ops.pause("host", 30.0, 0.0)
    server.freeze()  # the port stays open and connections are accepted, but nothing answers
    try:
        left, took = await timed(ops.paused_for("host", 1.0))  # real-sleep: waits out the 50 ms timeout
        assert left == 0.0  # in-process state knows no pause
        assert 0.04 < took < 0.5
        assert await ops.paused_for("host", 1.5) == 0.0
        assert retries_of(caplog) == []  # the next calls went local without waiting for it again
    finally:
        server.thaw()
    assert await ops.paused_for("host", 2.0) == pytest.approx(30.0, abs=2.0)  # Redis again, pause kept
    assert "TimeoutError" in warnings_of(caplog)[0]


def _fill(server: RedisProcess) -> None:
    """A full Redis: every write is refused with OOM (``maxmemory`` below what it holds, noeviction)."""
    with server.admin() as admin:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)


async def test_an_error_reply_goes_local_for_that_operation_only_and_warns_once(
    server: RedisProcess, twin: Callable[[object], Any], caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisState(server.url)
    ops = twin(store)
    _fill(server)
    assert await ops.deposit("k", 1.0, 2.0, 0.0) == 2.0  # the in-process bucket, new and full
    assert await ops.try_spend("k", 2.0, 2.0, 0.0) is True
    assert await ops.deposit("k", 1.0, 2.0, 0.0) == 1.0
    assert not store._fallback.down  # Redis answered: no outage
    [warning] = warnings_of(caplog)
    assert "refused an operation" in warning and "OutOfMemoryError" in warning
    assert PASSWORD not in warning


async def test_an_error_reply_under_raise_is_a_state_unavailable_error(
    server: RedisProcess, twin: Callable[[object], Any]
) -> None:
    ops = twin(RedisState(server.url, on_unavailable="raise"))
    _fill(server)
    with pytest.raises(StateUnavailableError, match="refused the operation") as caught:
        await ops.deposit("k", 1.0, 2.0, 0.0)
    assert isinstance(caught.value, RejectedError)


def _connected(connection: Any) -> bool:
    # redis-py's sync Connection has is_connected from 8.0 only; before, its socket is the sign.
    is_connected = getattr(connection, "is_connected", None)
    return bool(is_connected) if is_connected is not None else connection._sock is not None


async def test_an_outage_drops_the_idle_connections_so_none_to_the_old_server_is_used_again(
    server: RedisProcess, twin: Callable[[object], Any], anyio_backend: str
) -> None:
    # redis.asyncio was seen handing out, once Redis was back, an idle connection to the server that
    # had gone (tests/test_fleet.py): that call failed and started a second outage, a second warning.
    store = RedisState(server.url)
    ops = twin(store)
    await ops.deposit("budget", 1.0, 3.0, 0.0)
    loop_client = None
    if ops._asynchronous and anyio_backend == "asyncio":
        import asyncio

        loop_client = store._loop_clients[asyncio.get_running_loop()].client
    client = loop_client or store._client
    assert client is not None
    pool: Any = client.connection_pool
    if loop_client is not None:
        idle = [await pool.get_connection() for _ in range(3)]
        for connection in idle:
            await pool.release(connection)
    else:
        idle = [pool.get_connection() for _ in range(3)]
        for connection in idle:
            pool.release(connection)
    assert all(_connected(connection) for connection in idle)

    server.stop()
    assert await ops.try_spend("budget", 1.0, 3.0, 1.0)  # in-process
    assert not any(_connected(connection) for connection in idle)

    server.start()
    assert await ops.deposit("budget", 0.0, 3.0, 2.0) == 3.0  # Redis again, on new connections
    await (store.aclose() if loop_client is not None else anyio.to_thread.run_sync(store.close))
