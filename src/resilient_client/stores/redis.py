"""RedisState: the StateStore shared by every process that points at the same Redis (extra ``redis``).

Each operation is one Lua script (``_lua.py``), run with EVALSHA (EVAL once after the server forgot
it): the read-modify-write is atomic on the server and costs one round trip. The scripts are sent on
the client's connections directly (``_link.py`` says why: redis-py's command path costs more than the
round trip itself). The scripts read the time from
the server (``TIME``), so a fleet whose machines' clocks disagree still agrees on when a break or a
lease ends; the ``now`` each operation takes is used only by the in-process fallback.

Clients. The sync operations use a ``redis.Redis``; the async twins a ``redis.asyncio.Redis`` under
asyncio, and the sync client in a worker thread under any other event loop (trio), since
``redis.asyncio`` runs on asyncio only. Made from ``url``, the clients get the ``[state] timeout``
as their socket timeouts and no retries, so a dead Redis costs one timeout, not seconds of redis-py's
own retries; a ``client=``/``async_client=`` given is used as it is. redis.asyncio connections
belong to the event loop that opened them, so one async client is made per loop and closed when that
loop shuts down.

Unavailability (``stores/fallback.py``): when Redis does not answer, the operation runs on an
in-process MemoryState (``on_unavailable="local"``) or raises StateUnavailableError (``"raise"``).

This module imports redis only when a RedisState is built, so it costs nothing without the extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import threading
import weakref
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar, cast
from urllib.parse import unquote, urlsplit

import anyio.to_thread
import attrs

from resilient_client._redact import REDACTED, Secrets, redact_url
from resilient_client.stores._link import AsyncLink, Script, SyncLink
from resilient_client.stores._lua import SCRIPTS
from resilient_client.stores._protocol import Circuit, CircuitState, RateTicket, StateStore
from resilient_client.stores.fallback import Fallback, OnUnavailable
from resilient_client.stores.memory import MemoryState

if TYPE_CHECKING:
    import redis
    import redis.asyncio

__all__ = ["RedisState"]

_T = TypeVar("_T")
_SCHEMES = ("redis", "rediss", "unix")
_URL_EXAMPLE = "redis://localhost:6379/0"
_SCRIPTS = {name: Script(text) for name, text in SCRIPTS.items()}


class _Operation(NamedTuple, Generic[_T]):
    """One StateStore operation: its script, keys and arguments, how to read the reply, and the same
    operation on the in-process fallback. (A NamedTuple: one is made per call, and a tuple is made
    in a few hundred nanoseconds, a frozen attrs class in several times that.)"""

    script: str
    keys: list[str]
    args: list[str | int | float]
    read: Callable[[Any], _T]
    local: Callable[[MemoryState], _T]


class _Holds:
    """The lease fields this store holds in Redis: per token, its field and the keys it holds.

    Why a field per acquisition (``<token>#<n>``) and not the token itself: a release is sent without
    waiting (see ``RedisState.release``), and Redis orders commands per connection only. Were the
    field the token, a caller releasing and then taking the same keys again with the same token (a
    guard waiting out a pause does) could see its new hold deleted by its own release, processed
    late on another connection; then two callers would hold the key at once. With a field per
    acquisition a late release deletes only the old hold (the new one is at worst refused once and
    asked for again). A token holding a key keeps its field, so holding again renews the lease."""

    __slots__ = ("_fields", "_lock", "_serial")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fields: dict[str, tuple[str, set[str]]] = {}
        self._serial = itertools.count(1)

    def field(self, token: str) -> str:
        with self._lock:
            found = self._fields.get(token)
            return found[0] if found is not None else f"{token}#{next(self._serial)}"

    def taken(self, token: str, field: str, keys: Sequence[str]) -> None:
        with self._lock:
            self._fields.setdefault(token, (field, set()))[1].update(keys)

    def released(self, token: str, keys: Sequence[str]) -> str | None:
        """The field ``token`` holds ``keys`` under (None when it holds none of them in Redis)."""
        with self._lock:
            found = self._fields.get(token)
            if found is None:
                return None
            field, held = found
            if held.isdisjoint(keys):
                return None
            held.difference_update(keys)
            if not held:
                del self._fields[token]
            return field


@attrs.define
class _LoopClient:
    client: redis.asyncio.Redis
    link: AsyncLink
    #: Keeps the generator that closes ``client`` when its event loop shuts down (see _close_with_loop).
    closer: AsyncGenerator[None, None] | None


def _import_redis() -> Any:
    try:
        import redis
        import redis.asyncio
        import redis.asyncio.retry
        import redis.backoff
        import redis.connection
        import redis.exceptions
        import redis.retry
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "RedisState needs the redis package: pip install 'resilient-client[redis]'", name=exc.name
        ) from None
    return redis


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _float(reply: Any) -> float:
    return float(_text(reply))


def _flag(reply: Any) -> bool:
    return int(reply) == 1


def _nothing(reply: Any) -> None:
    return None


def _counts(reply: Any) -> tuple[int, int]:
    return int(reply[0]), int(reply[1])


def _circuit(reply: Any) -> Circuit:
    state = cast(CircuitState, _text(reply[0]))
    return Circuit(state, int(reply[1]), _float(reply[2]), _float(reply[3]))


def _probe(reply: Any) -> tuple[bool, Circuit]:
    return _flag(reply[0]), _circuit(reply[1:])


def _ticket(reply: Any) -> RateTicket:
    wait, version, rate, max_rate, since, sent, paused = reply.split()
    return RateTicket(
        float(wait), int(version), float(rate), float(max_rate), float(since), float(sent), float(paused)
    )


def _checked_url(url: object, parse_url: Callable[[str], object]) -> str:
    """``url`` if redis-py can connect with it; a TypeError or ValueError saying what is wrong (with
    the password masked) otherwise."""
    if not isinstance(url, str):
        raise TypeError(f"RedisState(url=...) takes a str such as {_URL_EXAMPLE!r}, not {type(url).__name__}")
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in _SCHEMES:  # not echoed: where a password would sit in it is anyone's guess
        raise ValueError("RedisState(url=...): the URL must start with redis://, rediss:// or unix://")
    shown = _shown(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (urllib checks the port only when it is read)
    except ValueError:
        raise ValueError(f"RedisState(url={shown!r}): not a valid URL (is the port a number?)") from None
    if scheme == "unix":
        if not parts.path:
            raise ValueError(f"RedisState(url={shown!r}): the URL names no socket path")
    elif not parts.hostname:
        raise ValueError(f"RedisState(url={shown!r}): the URL names no host, as in {_URL_EXAMPLE!r}")
    elif not (parts.path.strip("/") or "0").isdigit():
        raise ValueError(f"RedisState(url={shown!r}): the database must be a number, as in {_URL_EXAMPLE!r}")
    try:
        parse_url(url)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"RedisState(url={shown!r}): {Secrets(_passwords(url)).redact(str(exc))}") from None
    return url


def _shown(url: str) -> str:
    """``url`` fit for a message: its password masked even when the rest does not parse."""
    scheme, _, rest = url.partition("://")
    ends = [i for i in (rest.find(mark) for mark in "/?#") if i >= 0]
    netloc, tail = rest[: min(ends, default=len(rest))], rest[min(ends, default=len(rest)) :]
    userinfo, at, host = netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        userinfo = f"{user}:{REDACTED}" if colon else REDACTED
    return redact_url(f"{scheme}://{userinfo}{at}{host}{tail}")


def _passwords(url: str | None, *clients: Any) -> list[str]:
    """The passwords a store knows, to mask wherever Redis or the network might echo one."""
    found: list[object] = []
    if url is not None:
        password = urlsplit(url).password
        found += [password, unquote(password)] if password else []
    for client in clients:
        options = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
        found.append(options.get("password"))
    return [value for value in found if isinstance(value, str) and value]


def _describe_client(client: Any) -> str:
    """How logs and errors name a given client's server: ``redis://host:port/db``, no credentials."""
    try:
        options = client.connection_pool.connection_kwargs
    except AttributeError:
        return f"<{type(client).__name__}>"
    if "path" in options:
        return f"unix://{options['path']}"
    return f"redis://{options.get('host', '?')}:{options.get('port', '?')}/{options.get('db', 0)}"


async def _close_with_loop(client: redis.asyncio.Redis) -> AsyncGenerator[None, None]:
    """Parks until its event loop shuts down, then closes ``client``.

    An event loop closes the async generators started in it before it closes (``asyncio.run`` and
    anyio's runner call ``shutdown_asyncgens``): the last moment a client made for that loop can close
    its connections cleanly, so a RedisState used by several ``asyncio.run`` calls leaks none.
    """
    try:
        yield
    finally:
        await client.aclose()


class RedisState:
    """The StateStore in Redis: budget, circuits, limits and guards shared by a whole fleet.

    ``RedisState(url)`` makes its own clients (sync, and one async client per asyncio event loop);
    ``client=`` and ``async_client=`` take clients built elsewhere instead (without ``async_client``,
    the async twins run the sync client in a worker thread). Keys are ``<prefix>:<kind>:<key>`` and
    expire after ``idle_seconds`` without a write (longer while a lease, break or pause lasts).
    ``timeout`` and ``on_unavailable`` are those of the policy's ``[state]`` table.
    """

    #: Write-only counts (budget deposits, breaker successes) are written at most this long after
    #: they happen: the fleet sees them a tenth of a second late, and a busy process writes them
    #: once per batch instead of once per call (one round trip saved per call).
    batch_seconds = 0.1

    def __init__(
        self,
        url: str | None = None,
        *,
        client: redis.Redis | None = None,
        async_client: redis.asyncio.Redis | None = None,
        prefix: str = "resilient_client",
        timeout: float = 0.05,
        on_unavailable: OnUnavailable = "local",
        idle_seconds: float = 600.0,
    ) -> None:
        redis_module = _import_redis()
        if url is not None and (client is not None or async_client is not None):
            raise TypeError("RedisState takes url= or client=/async_client=, not both")
        if url is None and client is None and async_client is None:
            raise TypeError(f"RedisState needs url= (such as {_URL_EXAMPLE!r}) or client=")
        if client is not None and not isinstance(client, redis_module.Redis):
            raise TypeError(f"RedisState(client=...) takes a redis.Redis, not {type(client).__name__}")
        if async_client is not None and not isinstance(async_client, redis_module.asyncio.Redis):
            raise TypeError(
                f"RedisState(async_client=...) takes a redis.asyncio.Redis, not {type(async_client).__name__}"
            )
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"RedisState(prefix=...) must be a non-empty str, not {prefix!r}")
        for name, seconds in (("timeout", timeout), ("idle_seconds", idle_seconds)):
            if (
                isinstance(seconds, bool)
                or not isinstance(seconds, int | float)
                or not 0 < seconds < math.inf
            ):
                raise ValueError(
                    f"RedisState({name}=...) must be a positive number of seconds, not {seconds!r}"
                )
        if on_unavailable not in ("local", "raise"):
            raise ValueError(
                f"RedisState(on_unavailable=...) must be 'local' or 'raise', not {on_unavailable!r}"
            )
        self._url = None if url is None else _checked_url(url, redis_module.connection.parse_url)
        self._redis = redis_module
        self._prefix = prefix
        self._timeout = float(timeout)
        self._idle = float(idle_seconds)
        self._name = _shown(url) if url is not None else _describe_client(client or async_client)
        secrets = Secrets(_passwords(url, client, async_client))
        self._lock = threading.Lock()  # guards the lazy creation of clients and links
        self._holds = _Holds()
        self._unavailable: tuple[type[BaseException], ...] = (
            redis_module.exceptions.ConnectionError,
            redis_module.exceptions.TimeoutError,
            redis_module.exceptions.ReadOnlyError,  # READONLY: a failover made our server a replica
            OSError,
        )
        self._client = client
        self._link: SyncLink | None = None
        self._link_options: dict[str, Any] = {
            "no_script": redis_module.exceptions.NoScriptError,
            "refused": redis_module.exceptions.ResponseError,
            "stale": (redis_module.exceptions.ConnectionError, OSError),
        }
        self._given_async = (
            None
            if async_client is None
            else _LoopClient(async_client, AsyncLink(async_client, **self._link_options), None)
        )
        self._loop_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = (
            weakref.WeakKeyDictionary()
        )
        self._fallback = Fallback(
            name=self._name,
            unavailable=self._unavailable,
            on_unavailable=on_unavailable,
            idle_seconds=self._idle,
            redact=secrets.redact,
        )
        #: The scripts' first arguments (see _lua.py): the server's clock, and the idle time.
        self._server_clock = ("", "0", repr(self._idle))
        #: Internal, tests only: the scripts take the caller's ``now`` as the time instead of the
        #: server's ``TIME`` (the contract suite checks exact numbers on its own timeline).
        self._clock_from_caller = False
        #: Internal, tests only: seconds added to the server's ``TIME``, so a test lets a lease or a
        #: break end without waiting for it.
        self._clock_offset = 0.0

    def __repr__(self) -> str:
        return f"RedisState({self._name!r}, prefix={self._prefix!r})"

    def __reduce_ex__(self, protocol: object) -> Any:
        raise TypeError("a RedisState holds connections and cannot be pickled: build one in each process")

    def close(self) -> None:
        """Close the sync connections this store opened (a ``client=`` given is left open)."""
        with self._lock:
            client, self._link = self._client, None
            if self._url is not None:
                self._client = None
        if client is not None and self._url is not None:
            client.close()

    async def aclose(self) -> None:
        """Close the connections this store opened in the running event loop, and the sync ones."""
        with self._lock:
            try:
                found = self._loop_clients.pop(asyncio.get_running_loop(), None)
            except RuntimeError:  # not asyncio: no async client was made
                found = None
        if found is not None and found.closer is not None:
            await found.closer.aclose()
        self.close()

    # -- running the scripts ---------------------------------------------------------------------------

    def _key(self, kind: str, key: str) -> str:
        return f"{self._prefix}:{kind}:{key}"

    def _args(self, operation: _Operation[Any], now: float) -> list[str | int | float]:
        if not self._clock_from_caller and not self._clock_offset:  # always, outside the tests
            return [*self._server_clock, *operation.args]
        pinned = repr(float(now)) if self._clock_from_caller else ""
        return [pinned, repr(float(self._clock_offset)), repr(self._idle), *operation.args]

    def _client_options(self, retry_class: Any) -> dict[str, Any]:
        # No retries and no health checks: the fallback decides what a missing answer means, at once.
        return {
            "socket_timeout": self._timeout,
            "socket_connect_timeout": self._timeout,
            "retry": retry_class(self._redis.backoff.NoBackoff(), 0),
            "health_check_interval": 0,
        }

    def _sync_link(self) -> SyncLink:
        link = self._link
        if link is not None:
            return link
        with self._lock:
            if self._link is None:
                if self._client is None:
                    if self._url is None:
                        raise TypeError(
                            "this RedisState was given only async_client=: its sync operations "
                            "(and async ones outside asyncio) need client= or url="
                        )
                    options = self._client_options(self._redis.retry.Retry)
                    self._client = self._redis.Redis.from_url(self._url, **options)
                self._link = SyncLink(self._client, **self._link_options)
            return self._link

    async def _loop_link(self) -> AsyncLink | None:
        """The async link for the running asyncio loop; None outside asyncio or without an async client."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        with self._lock:
            given = self._given_async
            if given is not None:
                return given.link
            if self._url is None:
                return None
            found = self._loop_clients.get(loop)
            if found is not None:
                return found.link
            # Each operation is timed as a whole by the link (see AsyncLink._timeout), not each
            # send and read by redis.asyncio; connecting keeps its own timeout.
            options = {**self._client_options(self._redis.asyncio.retry.Retry), "socket_timeout": None}
            client = self._redis.asyncio.Redis.from_url(self._url, **options)
            closer = _close_with_loop(client)
            link = AsyncLink(client, **self._link_options, timeout=self._timeout)
            self._loop_clients[loop] = _LoopClient(client, link, closer)
        await closer.asend(None)  # started in this loop, so this loop's shutdown closes it
        return link

    # When Redis does not answer, the idle connections of the pool are dropped as well: they lead to
    # the same server, and redis.asyncio has been seen handing out, once Redis was back, a connection
    # to the server that had gone, without noticing it was closed (found by tests/test_fleet.py):
    # that call would fail and start a second outage, with a second warning. Dropped, they reconnect
    # when next used; the connections in use fail (or answer) by themselves.

    def _run(self, operation: _Operation[_T], now: float) -> _T:
        def shared() -> _T:
            link = self._sync_link()
            try:
                return operation.read(
                    link.run(_SCRIPTS[operation.script], operation.keys, self._args(operation, now))
                )
            except self._unavailable:
                with contextlib.suppress(*self._unavailable):
                    link.drop_idle()
                raise

        return self._fallback.call(now, shared, operation.local)

    async def _arun(self, operation: _Operation[_T], now: float) -> _T:
        link = await self._loop_link()
        if link is None:
            return await anyio.to_thread.run_sync(self._run, operation, now)

        async def shared() -> _T:
            try:
                return operation.read(
                    await link.run(_SCRIPTS[operation.script], operation.keys, self._args(operation, now))
                )
            except self._unavailable:
                with contextlib.suppress(*self._unavailable):
                    await link.drop_idle()
                raise

        return await self._fallback.acall(now, shared, operation.local)

    # -- the operations, each once for both twins ---------------------------------------------------------

    def _deposit(self, key: str, amount: float, cap: float, now: float) -> _Operation[float]:
        return _Operation(
            "deposit",
            [self._key("bucket", key)],
            [amount, cap],
            _float,
            lambda m: m.deposit(key, amount, cap, now),
        )

    def _try_spend(self, key: str, cost: float, cap: float, now: float) -> _Operation[bool]:
        return _Operation(
            "try_spend",
            [self._key("bucket", key)],
            [cost, cap],
            _flag,
            lambda m: m.try_spend(key, cost, cap, now),
        )

    def _record_outcome(
        self, key: str, failed: bool, window: float, now: float
    ) -> _Operation[tuple[int, int]]:
        return _Operation(
            "record_outcome",
            [self._key("window", key)],
            [int(failed), window],
            _counts,
            lambda m: m.record_outcome(key, failed, window, now),
        )

    def _record_successes(
        self, key: str, count: int, age: float, window: float, now: float
    ) -> _Operation[None]:
        return _Operation(
            "record_successes",
            [self._key("window", key)],
            [count, age, window],
            _nothing,
            lambda m: m.record_successes(key, count, age, window, now),
        )

    def _circuit(self, key: str, now: float) -> _Operation[Circuit]:
        return _Operation("circuit", [self._key("circuit", key)], [], _circuit, lambda m: m.circuit(key, now))

    def _try_probe(
        self, key: str, token: str, probes: int, lease: float, now: float
    ) -> _Operation[tuple[bool, Circuit]]:
        return _Operation(
            "try_probe",
            [self._key("circuit", key), f"{self._prefix}:serial"],
            [token, probes, lease],
            _probe,
            lambda m: m.try_probe(key, token, probes, lease, now),
        )

    def _release_probe(self, key: str, token: str, now: float) -> _Operation[None]:
        return _Operation(
            "release_probe",
            [self._key("circuit", key)],
            [token],
            _nothing,
            lambda m: m.release_probe(key, token, now),
        )

    def _open_circuit(self, key: str, epoch: int, seconds: float, now: float) -> _Operation[bool]:
        return _Operation(
            "open_circuit",
            [self._key("circuit", key), f"{self._prefix}:serial"],
            [epoch, seconds],
            _flag,
            lambda m: m.open_circuit(key, epoch, seconds, now),
        )

    def _close_circuit(self, key: str, epoch: int | None, now: float) -> _Operation[bool]:
        """Close at ``epoch``, or whatever the epoch when it is None (a reset)."""

        def local(m: MemoryState) -> bool:
            if epoch is None:
                m.reset_circuit(key, now)
                return True
            return m.close_circuit(key, epoch, now)

        keys = [self._key("circuit", key), f"{self._prefix}:serial", self._key("window", key)]
        return _Operation("close_circuit", keys, ["any" if epoch is None else epoch], _flag, local)

    def _try_acquire(
        self, keys: Sequence[str], limit: int, lease: float, token: str, now: float
    ) -> _Operation[bool]:
        if isinstance(keys, str) or not keys:
            raise ValueError("try_acquire needs at least one key, in a list")
        # Sorted and without duplicates, as MemoryState takes them (the script takes all or none anyway).
        ordered = [self._key("lease", key) for key in sorted(set(keys))]
        field = self._holds.field(token)

        def read(reply: Any) -> bool:
            taken = _flag(reply)
            if taken:
                self._holds.taken(token, field, keys)
            return taken

        return _Operation(
            "try_acquire",
            ordered,
            [limit, lease, field],
            read,
            lambda m: m.try_acquire(keys, limit, lease, token, now),
        )

    def _release(self, keys: Sequence[str], token: str) -> list[tuple[str, str, str]]:
        """A release is one HDEL per key, sent without waiting (see ``release``); none for keys this
        store does not hold in Redis for ``token`` (taken while Redis was down, or never)."""
        field = self._holds.released(token, keys)
        if field is None:
            return []
        return [("HDEL", self._key("lease", key), field) for key in keys]

    def _pause(self, key: str, seconds: float, now: float) -> _Operation[None]:
        return _Operation(
            "pause", [self._key("pause", key)], [seconds], _nothing, lambda m: m.pause(key, seconds, now)
        )

    def _paused_for(self, key: str, now: float) -> _Operation[float]:
        return _Operation(
            "paused_for", [self._key("pause", key)], [], _float, lambda m: m.paused_for(key, now)
        )

    def _limiter_acquire(
        self, key: str, ceiling: float, burst: float, max_wait: float, now: float
    ) -> _Operation[RateTicket]:
        return _Operation(
            "limiter_acquire",
            [self._key("rate", key)],
            [ceiling, burst, max_wait],
            _ticket,
            lambda m: m.limiter_acquire(key, ceiling, burst, max_wait, now),
        )

    def _limiter_admit(
        self, key: str, ceiling: float, burst: float, max_wait: float, now: float
    ) -> _Operation[RateTicket]:
        return _Operation(
            "limiter_admit",
            [self._key("pause", key), self._key("rate", key)],
            [ceiling, burst, max_wait],
            _ticket,
            lambda m: m.limiter_admit(key, ceiling, burst, max_wait, now),
        )

    def _limiter_admit_and_acquire(
        self,
        key: str,
        ceiling: float,
        burst: float,
        max_wait: float,
        keys: Sequence[str],
        limit: int,
        lease: float,
        token: str,
        now: float,
    ) -> _Operation[tuple[RateTicket, bool]]:
        if isinstance(keys, str) or not keys:
            raise ValueError("limiter_admit_and_acquire needs at least one key, in a list")
        leases = [self._key("lease", lease_key) for lease_key in sorted(set(keys))]
        field = self._holds.field(token)

        def read(reply: Any) -> tuple[RateTicket, bool]:
            text, _, flag = _text(reply).rpartition(" ")
            taken = flag == "1"
            if taken:
                self._holds.taken(token, field, keys)
            return _ticket(text), taken

        return _Operation(
            "limiter_admit_and_acquire",
            [self._key("pause", key), self._key("rate", key), *leases],
            [ceiling, burst, max_wait, limit, lease, field],
            read,
            lambda m: m.limiter_admit_and_acquire(
                key, ceiling, burst, max_wait, keys, limit, lease, token, now
            ),
        )

    def _limiter_state(self, key: str, now: float) -> _Operation[RateTicket]:
        return _Operation(
            "limiter_state", [self._key("rate", key)], [], _ticket, lambda m: m.limiter_state(key, now)
        )

    def _limiter_learn(
        self, key: str, version: int, rate: float, max_rate: float, throttled: bool, now: float
    ) -> _Operation[bool]:
        return _Operation(
            "limiter_learn",
            [self._key("rate", key), f"{self._prefix}:serial"],
            [version, rate, max_rate, int(throttled)],
            _flag,
            lambda m: m.limiter_learn(key, version, rate, max_rate, throttled, now),
        )

    # -- sync operations -------------------------------------------------------------------------------

    def deposit(self, key: str, amount: float, cap: float, now: float) -> float:
        return self._run(self._deposit(key, amount, cap, now), now)

    def try_spend(self, key: str, cost: float, cap: float, now: float) -> bool:
        return self._run(self._try_spend(key, cost, cap, now), now)

    def record_outcome(self, key: str, failed: bool, window: float, now: float) -> tuple[int, int]:
        return self._run(self._record_outcome(key, failed, window, now), now)

    def record_successes(self, key: str, count: int, age: float, window: float, now: float) -> None:
        self._run(self._record_successes(key, count, age, window, now), now)

    def circuit(self, key: str, now: float) -> Circuit:
        return self._run(self._circuit(key, now), now)

    def try_probe(self, key: str, token: str, probes: int, lease: float, now: float) -> tuple[bool, Circuit]:
        return self._run(self._try_probe(key, token, probes, lease, now), now)

    def release_probe(self, key: str, token: str, now: float) -> None:
        self._run(self._release_probe(key, token, now), now)

    def open_circuit(self, key: str, epoch: int, seconds: float, now: float) -> bool:
        return self._run(self._open_circuit(key, epoch, seconds, now), now)

    def close_circuit(self, key: str, epoch: int, now: float) -> bool:
        return self._run(self._close_circuit(key, epoch, now), now)

    def reset_circuit(self, key: str, now: float) -> None:
        self._run(self._close_circuit(key, None, now), now)

    def try_acquire(self, keys: Sequence[str], limit: int, lease: float, token: str, now: float) -> bool:
        return self._run(self._try_acquire(keys, limit, lease, token, now), now)

    def release(self, keys: Sequence[str], token: str, now: float) -> None:
        """End ``token``'s holds: HDEL of its own field only (no script needed, as nothing is read),
        written to Redis at once and not waited for: a released key must be free for other processes
        promptly, but nothing in this call needs the answer, so the round trip is saved (the reply is
        read before the connection is next used). The caller's next operation may run before it on
        another connection: at worst the key looks busy once more (each hold has a field of its own,
        see ``_Holds``, so a late release never ends a newer hold). One HDEL per key is no less
        atomic than the call needs: a hold ends with its lease anyway."""
        commands = self._release(keys, token)

        def shared() -> None:
            if not commands:
                # Not held in Redis: maybe taken while Redis was down, in the local state, which
                # must let it go too (a no-op when not held there either).
                self._fallback.local.release(keys, token, now)
                return
            link = self._sync_link()
            try:
                link.send(commands)
            except self._unavailable:
                with contextlib.suppress(*self._unavailable):
                    link.drop_idle()
                raise

        self._fallback.call(now, shared, lambda m: m.release(keys, token, now))

    def pause(self, key: str, seconds: float, now: float) -> None:
        self._run(self._pause(key, seconds, now), now)

    def paused_for(self, key: str, now: float) -> float:
        return self._run(self._paused_for(key, now), now)

    def limiter_acquire(
        self, key: str, ceiling: float, burst: float, max_wait: float, now: float
    ) -> RateTicket:
        return self._run(self._limiter_acquire(key, ceiling, burst, max_wait, now), now)

    def limiter_admit(
        self, key: str, ceiling: float, burst: float, max_wait: float, now: float
    ) -> RateTicket:
        return self._run(self._limiter_admit(key, ceiling, burst, max_wait, now), now)

    def limiter_admit_and_acquire(
        self,
        key: str,
        ceiling: float,
        burst: float,
        max_wait: float,
        keys: Sequence[str],
        limit: int,
        lease: float,
        token: str,
        now: float,
    ) -> tuple[RateTicket, bool]:
        operation = self._limiter_admit_and_acquire(
            key, ceiling, burst, max_wait, keys, limit, lease, token, now
        )
        return self._run(operation, now)

    def limiter_state(self, key: str, now: float) -> RateTicket:
        return self._run(self._limiter_state(key, now), now)

    def limiter_learn(
        self, key: str, version: int, rate: float, max_rate: float, throttled: bool, now: float
    ) -> bool:
        return self._run(self._limiter_learn(key, version, rate, max_rate, throttled, now), now)

    # -- async twins -------------------------------------------------------------------------------------

    async def adeposit(self, key: str, amount: float, cap: float, now: float) -> float:
        return await self._arun(self._deposit(key, amount, cap, now), now)

    async def atry_spend(self, key: str, cost: float, cap: float, now: float) -> bool:
        return await self._arun(self._try_spend(key, cost, cap, now), now)

    async def arecord_outcome(self, key: str, failed: bool, window: float, now: float) -> tuple[int, int]:
        return await self._arun(self._record_outcome(key, failed, window, now), now)

    async def arecord_successes(self, key: str, count: int, age: float, window: float, now: float) -> None:
        await self._arun(self._record_successes(key, count, age, window, now), now)

    async def acircuit(self, key: str, now: float) -> Circuit:
        return await self._arun(self._circuit(key, now), now)

    async def atry_probe(
        self, key: str, token: str, probes: int, lease: float, now: float
    ) -> tuple[bool, Circuit]:
        return await self._arun(self._try_probe(key, token, probes, lease, now), now)

    async def arelease_probe(self, key: str, token: str, now: float) -> None:
        await self._arun(self._release_probe(key, token, now), now)

    async def aopen_circuit(self, key: str, epoch: int, seconds: float, now: float) -> bool:
        return await self._arun(self._open_circuit(key, epoch, seconds, now), now)

    async def aclose_circuit(self, key: str, epoch: int, now: float) -> bool:
        return await self._arun(self._close_circuit(key, epoch, now), now)

    async def areset_circuit(self, key: str, now: float) -> None:
        await self._arun(self._close_circuit(key, None, now), now)

    async def atry_acquire(
        self, keys: Sequence[str], limit: int, lease: float, token: str, now: float
    ) -> bool:
        return await self._arun(self._try_acquire(keys, limit, lease, token, now), now)

    async def arelease(self, keys: Sequence[str], token: str, now: float) -> None:
        link = await self._loop_link()
        if link is None:
            await anyio.to_thread.run_sync(self.release, keys, token, now)
            return
        commands = self._release(keys, token)

        async def shared() -> None:
            if not commands:
                self._fallback.local.release(keys, token, now)  # see release
                return
            try:
                await link.send(commands)
            except self._unavailable:
                with contextlib.suppress(*self._unavailable):
                    await link.drop_idle()
                raise

        await self._fallback.acall(now, shared, lambda m: m.release(keys, token, now))

    async def apause(self, key: str, seconds: float, now: float) -> None:
        await self._arun(self._pause(key, seconds, now), now)

    async def apaused_for(self, key: str, now: float) -> float:
        return await self._arun(self._paused_for(key, now), now)

    async def alimiter_acquire(
        self, key: str, ceiling: float, burst: float, max_wait: float, now: float
    ) -> RateTicket:
        return await self._arun(self._limiter_acquire(key, ceiling, burst, max_wait, now), now)

    async def alimiter_admit(
        self, key: str, ceiling: float, burst: float, max_wait: float, now: float
    ) -> RateTicket:
        return await self._arun(self._limiter_admit(key, ceiling, burst, max_wait, now), now)

    async def alimiter_admit_and_acquire(
        self,
        key: str,
        ceiling: float,
        burst: float,
        max_wait: float,
        keys: Sequence[str],
        limit: int,
        lease: float,
        token: str,
        now: float,
    ) -> tuple[RateTicket, bool]:
        operation = self._limiter_admit_and_acquire(
            key, ceiling, burst, max_wait, keys, limit, lease, token, now
        )
        return await self._arun(operation, now)

    async def alimiter_state(self, key: str, now: float) -> RateTicket:
        return await self._arun(self._limiter_state(key, now), now)

    async def alimiter_learn(
        self, key: str, version: int, rate: float, max_rate: float, throttled: bool, now: float
    ) -> bool:
        return await self._arun(self._limiter_learn(key, version, rate, max_rate, throttled, now), now)


if TYPE_CHECKING:  # mypy checks that RedisState has every operation of the protocol, as declared
    _conforms: StateStore = RedisState()
