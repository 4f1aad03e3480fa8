"""``RESILIENT_CLIENT_REDIS_URL``: a transport or client given no ``state=`` keeps its state in Redis.

One RedisState per URL (and ``[state]`` settings) per process, shared by every transport and client
that resolves it, configured by the policy's ``[state]``; a store passed as ``state=`` is used as it
was built. A bad URL fails when the client is built, naming the variable, its password masked.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import attrs
import httpx
import pytest
import redis

import resilient_client as rc
import resilient_client.stores.redis as redis_store
from resilient_client.stores.environment import REDIS_URL_ENV

pytestmark = pytest.mark.anyio

HYPER_OK = {"ResponseCode": 0, "ResponseMsgEng": "Success"}


def closed_port_url() -> str:
    """A Redis URL nothing listens on: connections are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def counting() -> tuple[list[httpx.Request], httpx.MockTransport]:
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json=HYPER_OK)

    return sent, httpx.MockTransport(answer)


def hyper_with_state(**state: Any) -> rc.RetryPolicy:
    return attrs.evolve(rc.load_policy("hyper"), state=rc.StateSettings(**state))


async def call(transport: rc.ResilientTransport, asynchronous: bool) -> httpx.Response:
    if asynchronous:
        async with httpx.AsyncClient(transport=transport, base_url="https://hyper.test") as client:
            return await client.get("/api/customers")
    with httpx.Client(transport=transport, base_url="https://hyper.test") as client:
        return client.get("/api/customers")


@pytest.fixture(params=[False, True], ids=["sync", "async"])
def asynchronous(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_without_the_variable_each_transport_keeps_its_own_memory_state(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv(REDIS_URL_ENV, raising=False)
    else:
        monkeypatch.setenv(REDIS_URL_ENV, value)
    first, second = rc.ResilientTransport("hyper"), rc.ResilientTransport("hyper")
    assert isinstance(first.state, rc.MemoryState)
    assert first.state is not second.state


async def test_the_variable_gives_every_transport_and_client_one_redis_state(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, asynchronous: bool
) -> None:
    monkeypatch.setenv(REDIS_URL_ENV, redis_url)
    sent, inner = counting()
    transport = rc.ResilientTransport("hyper", transport=inner)
    store = transport.state
    assert isinstance(store, rc.RedisState)
    assert rc.ResilientTransport("usta").state is store
    mounted = httpx.MockTransport(lambda request: httpx.Response(200, json=HYPER_OK))
    with rc.HyperClient(token="t", mounts={"https://other.test": mounted}) as client:
        other = client._transport_for_url(httpx.URL("https://other.test/x"))
        assert isinstance(other, rc.ResilientTransport)
        assert client.resilient_transport.state is other.state is store
    async with rc.AsyncHyperClient(token="t") as aclient:
        assert aclient.resilient_transport.state is store

    assert (await call(transport, asynchronous)).status_code == 200
    assert len(sent) == 1
    with redis.Redis.from_url(redis_url) as admin:
        assert admin.keys("resilient_client:*")  # the call's budget and limiter live in Redis


def test_each_state_table_gets_its_store_and_the_same_table_shares_one(
    monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    monkeypatch.setenv(REDIS_URL_ENV, redis_url)
    shipped = rc.ResilientTransport("hyper").state
    same = rc.ResilientTransport("hyper", policy=hyper_with_state()).state
    slower = rc.ResilientTransport("hyper", policy=hyper_with_state(timeout=0.5)).state
    refusing = rc.ResilientTransport("hyper", policy=hyper_with_state(on_unavailable="raise")).state
    assert same is shipped
    assert len({id(shipped), id(slower), id(refusing)}) == 3
    assert isinstance(slower, rc.RedisState) and slower._timeout == 0.5


@pytest.mark.parametrize(
    ("on_unavailable", "sent_count"),
    [pytest.param("local", 1, id="local-sends"), pytest.param("raise", 0, id="raise-refuses")],
)
async def test_the_state_table_configures_the_store_the_variable_selects(
    monkeypatch: pytest.MonkeyPatch, asynchronous: bool, on_unavailable: str, sent_count: int
) -> None:
    monkeypatch.setenv(REDIS_URL_ENV, closed_port_url())
    sent, inner = counting()
    policy = hyper_with_state(on_unavailable=on_unavailable)
    transport = rc.ResilientTransport("hyper", policy=policy, transport=inner)
    if sent_count:
        assert (await call(transport, asynchronous)).status_code == 200
    else:
        with pytest.raises(rc.errors.StateUnavailableError):
            await call(transport, asynchronous)
    assert len(sent) == sent_count


async def test_a_store_passed_in_keeps_its_own_settings_whatever_the_state_table(
    monkeypatch: pytest.MonkeyPatch, asynchronous: bool
) -> None:
    monkeypatch.setenv(REDIS_URL_ENV, "redis://127.0.0.1:notaport/0")  # never read: state= is given
    sent, inner = counting()
    mine = rc.RedisState(closed_port_url())  # on_unavailable="local", its default
    policy = hyper_with_state(on_unavailable="raise")
    transport = rc.ResilientTransport("hyper", policy=policy, transport=inner, state=mine)
    assert transport.state is mine
    assert (await call(transport, asynchronous)).status_code == 200
    assert len(sent) == 1


BUILDERS: list[Any] = [
    pytest.param(lambda: rc.ResilientTransport("hyper"), id="transport"),
    pytest.param(lambda: rc.HyperClient(token="t"), id="client"),
    pytest.param(lambda: rc.AsyncHyperClient(token="t"), id="async-client"),
]


@pytest.mark.parametrize("build", BUILDERS)
@pytest.mark.parametrize(
    ("url", "problem"),
    [
        pytest.param("http://:pw-secret-1@cache:6379/0", "must start with redis://", id="scheme"),
        pytest.param("redis://:pw-secret-1@cache:port/0", "is the port a number?", id="port"),
        pytest.param("redis://:pw-secret-1@/0", "names no host", id="host"),
        pytest.param("redis://:pw-secret-1@cache:6379/zero", "database must be a number", id="db"),
    ],
)
def test_a_bad_url_fails_at_construction_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, build: Callable[[], object], url: str, problem: str
) -> None:
    monkeypatch.setenv(REDIS_URL_ENV, url)
    with pytest.raises(ValueError, match=REDIS_URL_ENV) as caught:
        build()
    assert problem in str(caught.value)
    assert "pw-secret-1" not in str(caught.value)


def test_without_the_redis_package_the_error_names_the_variable_and_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing() -> None:
        raise ModuleNotFoundError("RedisState needs the redis package", name="redis")

    monkeypatch.setattr(redis_store, "_import_redis", missing)
    monkeypatch.setenv(REDIS_URL_ENV, "redis://127.0.0.1:6390/3")  # a URL no other test resolves
    with pytest.raises(ModuleNotFoundError, match=REDIS_URL_ENV) as caught:
        rc.HyperClient(token="t")
    assert "resilient-client[redis]" in str(caught.value)
    assert caught.value.name == "redis"
