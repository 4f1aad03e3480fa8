"""RedisState: the StateStore shared by every process that points at the same Redis (extra ``redis``).

Each operation is one Lua script (``_lua.py``), run through redis-py's public script API
(``register_script``: EVALSHA, and EVAL once after the server forgot the script): the
read-modify-write is atomic on the server and costs one round trip. The scripts read the time from
the server (``TIME``), so a fleet whose machines' clocks disagree still agrees on when a break or a
lease ends; the ``now`` each operation takes is used only by the in-process fallback.

Clients. ``run`` uses a ``redis.Redis``; ``arun`` a ``redis.asyncio.Redis`` under asyncio, and the
sync client in a worker thread under any other event loop (trio), since ``redis.asyncio`` runs on
asyncio only. Made from ``url``, the clients are this store's: the ``[state] timeout`` as their
socket timeouts, no retries of redis-py's own (a dead Redis costs one timeout, not seconds of
retries: the fallback decides what a missing answer means), no health checks, and a pool that opens
a connection for each caller at once (redis-py's default): a process's own concurrency never waits
for a connection, so it never looks like an outage. A ``client=``/``async_client=`` given is used
as it is. redis.asyncio connections belong to the event
loop that opened them, so one async client is made per loop and closed when that loop shuts down.

Unavailability (``stores/fallback.py``): when Redis does not answer, the operation runs on an
in-process MemoryState (``on_unavailable="local"``) or raises StateUnavailableError (``"raise"``);
an error reply (out of memory, a value of the wrong type) does the same for that operation alone.

This module imports redis only when a RedisState is built, so it costs nothing without the extra.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import weakref
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast
from urllib.parse import unquote, urlsplit

import anyio.to_thread
import attrs

from resilient_client._redact import REDACTED, Secrets, redact_url
from resilient_client.stores._lua import SCRIPTS
from resilient_client.stores._protocol import (
    Acquire,
    Circuit,
    CircuitState,
    CloseCircuit,
    Deposit,
    EndPause,
    LimiterAcquire,
    LimiterAdmit,
    LimiterLearn,
    LimiterState,
    OpenCircuit,
    Operation,
    Pause,
    PausedFor,
    RateTicket,
    ReadCircuit,
    RecordOutcome,
    RecordSuccesses,
    Release,
    ReleaseProbe,
    ResetCircuit,
    StateStore,
    TryProbe,
    TrySpend,
)
from resilient_client.stores.fallback import Fallback, OnUnavailable

if TYPE_CHECKING:
    import redis
    import redis.asyncio
    import redis.commands.core

__all__ = ["RedisState"]

_T = TypeVar("_T")
_SCHEMES = ("redis", "rediss", "unix")
_URL_EXAMPLE = "redis://localhost:6379/0"


class _Script(NamedTuple):
    """An operation as Redis runs it: its script's name, keys and arguments, and how to read the reply."""

    name: str
    keys: list[str]
    args: list[str | int | float]
    read: Callable[[Any], Any]


class _Holds:
    """The lease fields this store holds in Redis: per token, its field and the keys it holds.

    Why this is tracked: a hold taken while Redis was down is in the in-process state, and must be
    released there; only the keys held in Redis are released in Redis. Why a field per acquisition
    (``<token>#<n>``) and not the token itself: a release that reaches Redis late (its answer timed
    out, or it was cancelled mid-flight) then deletes only the old hold, never a newer one taken with
    the same token. A token holding a key keeps its field, so holding again renews the lease."""

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
    scripts: dict[str, Any]
    #: Keeps the generator that closes ``client`` when its event loop shuts down (see _close_with_loop).
    closer: AsyncGenerator[None, None] | None
    #: Each operation's time limit, as a whole (a client this store made: see ``_loop_client``).
    timeout: float | None = None


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
    wait, version, rate, max_rate, since, sent, paused, spare = _text(reply).split()
    return RateTicket(
        float(wait),
        int(version),
        float(rate),
        float(max_rate),
        float(since),
        float(sent),
        float(paused),
        int(spare),
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
    ``arun`` runs the sync client in a worker thread). Keys are ``<prefix>:<kind>:<key>`` and
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
        self._lock = threading.Lock()  # guards the lazy creation of clients
        self._holds = _Holds()
        self._client = client
        self._scripts: dict[str, Any] | None = None if client is None else self._register(client)
        self._given_async = (
            None if async_client is None else _LoopClient(async_client, self._register(async_client), None)
        )
        self._loop_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = (
            weakref.WeakKeyDictionary()
        )
        exceptions = redis_module.exceptions
        self._fallback = Fallback(
            name=self._name,
            unavailable=(
                exceptions.ConnectionError,  # pool exhausted past the timeout included
                exceptions.TimeoutError,
                exceptions.ReadOnlyError,  # READONLY: a failover made our server a replica
                OSError,
            ),
            refused=(exceptions.RedisError,),  # an error reply: out of memory, a wrong type, ...
            on_unavailable=on_unavailable,
            idle_seconds=self._idle,
            redact=secrets.redact,
        )
        #: Each operation type -> how it runs as a script (None: on the in-process state only).
        self._plans: dict[type[Any], Callable[[Any], _Script | None]] = {
            Deposit: self._deposit,
            TrySpend: self._try_spend,
            RecordOutcome: self._record_outcome,
            RecordSuccesses: self._record_successes,
            ReadCircuit: self._read_circuit,
            TryProbe: self._try_probe,
            ReleaseProbe: self._release_probe,
            OpenCircuit: self._open_circuit,
            CloseCircuit: self._close_circuit,
            ResetCircuit: self._reset_circuit,
            Acquire: self._acquire,
            Release: self._release,
            Pause: self._pause,
            PausedFor: self._paused_for,
            EndPause: self._end_pause,
            LimiterAcquire: self._limiter_acquire,
            LimiterAdmit: self._limiter_admit,
            LimiterState: self._limiter_state,
            LimiterLearn: self._limiter_learn,
        }
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
            client = self._client
            if self._url is not None:
                self._client, self._scripts = None, None
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

    # -- clients -----------------------------------------------------------------------------------------

    @staticmethod
    def _register(client: Any) -> dict[str, Any]:
        """Every script, registered with ``client`` (redis-py's ``Script``: EVALSHA, then EVAL once
        when the server does not know it)."""
        return {name: client.register_script(text) for name, text in SCRIPTS.items()}

    def _client_options(self, retry: Any) -> dict[str, Any]:
        return {
            "socket_timeout": self._timeout,
            "socket_connect_timeout": self._timeout,
            "retry": retry,
            "health_check_interval": 0,
        }

    def _sync(self) -> tuple[Any, dict[str, Any]]:
        """The sync client and its scripts, made on first use from ``url``."""
        client, scripts = self._client, self._scripts
        if client is not None and scripts is not None:
            return client, scripts
        with self._lock:
            if self._client is None:
                if self._url is None:
                    raise TypeError(
                        "this RedisState was given only async_client=: its run (and arun outside "
                        "asyncio) needs client= or url="
                    )
                redis_module = self._redis
                retry = redis_module.retry.Retry(redis_module.backoff.NoBackoff(), 0)
                self._client = redis_module.Redis.from_url(self._url, **self._client_options(retry))
            if self._scripts is None:
                self._scripts = self._register(self._client)
            return self._client, self._scripts

    async def _loop_client(self) -> _LoopClient | None:
        """The async client of the running asyncio loop; None outside asyncio or without one."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        with self._lock:
            if self._given_async is not None:
                return self._given_async
            if self._url is None:
                return None
            found = self._loop_clients.get(loop)
            if found is not None:
                return found
            redis_module = self._redis
            retry = redis_module.asyncio.retry.Retry(redis_module.backoff.NoBackoff(), 0)
            # Each operation is timed as a whole (``arun``), not each send and read: redis.asyncio
            # bounds a send by its socket timeout with ``asyncio.wait_for``, which cost ~20 us of
            # a ~80 us operation on loopback (bench/redis_store.py); connecting keeps its timeout.
            options = {**self._client_options(retry), "socket_timeout": None}
            client = redis_module.asyncio.Redis.from_url(self._url, **options)
            closer = _close_with_loop(client)
            found = self._loop_clients[loop] = _LoopClient(
                client, self._register(client), closer, self._timeout
            )
        await closer.asend(None)  # started in this loop, so this loop's shutdown closes it
        return found

    # -- running the scripts ---------------------------------------------------------------------------

    def _key(self, kind: str, key: str) -> str:
        return f"{self._prefix}:{kind}:{key}"

    def _args(self, script: _Script, now: float) -> list[str | int | float]:
        if not self._clock_from_caller and not self._clock_offset:  # always, outside the tests
            return [*self._server_clock, *script.args]
        pinned = repr(float(now)) if self._clock_from_caller else ""
        return [pinned, repr(float(self._clock_offset)), repr(self._idle), *script.args]

    def _plan(self, op: Operation[Any]) -> _Script | None:
        try:
            plan = self._plans[type(op)]
        except KeyError:
            raise TypeError(f"RedisState cannot run {op!r}: not a store operation") from None
        return plan(op)

    # When Redis does not answer, the idle connections of the pool are dropped as well: they lead to
    # the same server, and redis.asyncio has been seen handing out, once Redis was back, a connection
    # to the server that had gone, without noticing it was closed (found by tests/test_fleet.py):
    # that call would fail and start a second outage, with a second warning. Dropped, they reconnect
    # when next used; the connections in use fail (or answer) by themselves.

    def run(self, op: Operation[_T], now: float) -> _T:
        """Run ``op`` as its script (see ``StateStore``); on the in-process state while Redis is down."""
        script = self._plan(op)
        local = self._fallback.local
        if script is None:
            return local.run(op, now)

        def shared() -> _T:
            client, scripts = self._sync()
            try:
                reply = scripts[script.name](keys=script.keys, args=self._args(script, now), client=client)
            except self._fallback.unavailable:
                client.connection_pool.disconnect(inuse_connections=False)
                raise
            return cast(_T, script.read(reply))

        return self._fallback.call(now, shared, lambda: local.run(op, now))

    async def arun(self, op: Operation[_T], now: float) -> _T:
        """``run`` for async callers: redis.asyncio under asyncio, else the sync client in a thread."""
        loop_client = await self._loop_client()
        if loop_client is None:
            return await anyio.to_thread.run_sync(self.run, op, now)
        script = self._plan(op)
        local = self._fallback.local
        if script is None:
            return local.run(op, now)

        async def shared() -> _T:
            client = loop_client.client
            run = loop_client.scripts[script.name]
            try:
                # TimeoutError past the limit: an OSError, so Redis did not answer (the fallback's).
                async with asyncio.timeout(loop_client.timeout):
                    reply = await run(keys=script.keys, args=self._args(script, now), client=client)
            except self._fallback.unavailable:
                with anyio.CancelScope(shield=True):
                    await client.connection_pool.disconnect(inuse_connections=False)
                raise
            return cast(_T, script.read(reply))

        return await self._fallback.acall(now, shared, lambda: local.run(op, now))

    # -- each operation as its script -------------------------------------------------------------------

    def _deposit(self, op: Deposit) -> _Script:
        return _Script("deposit", [self._key("bucket", op.key)], [op.amount, op.cap], _float)

    def _try_spend(self, op: TrySpend) -> _Script:
        return _Script("try_spend", [self._key("bucket", op.key)], [op.cost, op.cap, op.earned], _flag)

    def _record_outcome(self, op: RecordOutcome) -> _Script:
        args: list[str | int | float] = [int(op.failed), op.window, op.successes, op.age]
        return _Script("record_outcome", [self._key("window", op.key)], args, _counts)

    def _record_successes(self, op: RecordSuccesses) -> _Script:
        args: list[str | int | float] = [op.count, op.age, op.window]
        return _Script("record_successes", [self._key("window", op.key)], args, _nothing)

    def _read_circuit(self, op: ReadCircuit) -> _Script:
        return _Script("circuit", [self._key("circuit", op.key)], [], _circuit)

    def _try_probe(self, op: TryProbe) -> _Script:
        keys = [self._key("circuit", op.key), f"{self._prefix}:serial"]
        return _Script("try_probe", keys, [op.token, op.probes, op.lease], _probe)

    def _release_probe(self, op: ReleaseProbe) -> _Script:
        return _Script("release_probe", [self._key("circuit", op.key)], [op.token], _nothing)

    def _open_circuit(self, op: OpenCircuit) -> _Script:
        keys = [self._key("circuit", op.key), f"{self._prefix}:serial"]
        return _Script("open_circuit", keys, [op.epoch, op.seconds], _flag)

    def _close_circuit(self, op: CloseCircuit | ResetCircuit) -> _Script:
        """Close at the operation's epoch, or whatever the epoch (a reset)."""
        keys = [self._key("circuit", op.key), f"{self._prefix}:serial", self._key("window", op.key)]
        epoch = op.epoch if isinstance(op, CloseCircuit) else "any"
        return _Script("close_circuit", keys, [epoch], _flag)

    def _reset_circuit(self, op: ResetCircuit) -> _Script:
        return self._close_circuit(op)._replace(read=_nothing)

    def _acquire(self, op: Acquire) -> _Script:
        # Sorted and without duplicates, as MemoryState takes them (the script takes all or none anyway).
        ordered = [self._key("lease", key) for key in sorted(set(op.keys))]
        field = self._holds.field(op.token)

        def read(reply: Any) -> bool:
            taken = _flag(reply)
            if taken:
                self._holds.taken(op.token, field, op.keys)
            return taken

        return _Script("acquire", ordered, [op.limit, op.lease, field], read)

    def _release(self, op: Release) -> _Script | None:
        """The holder's own field deleted from each key; None when ``op.token`` holds none of them in
        Redis (taken while Redis was down, in the in-process state, which lets it go instead)."""
        field = self._holds.released(op.token, op.keys)
        if field is None:
            return None
        return _Script("release", [self._key("lease", key) for key in op.keys], [field], _nothing)

    def _pause(self, op: Pause) -> _Script:
        return _Script("pause", [self._key("pause", op.key)], [op.seconds], _nothing)

    def _end_pause(self, op: EndPause) -> _Script:
        return _Script("end_pause", [self._key("pause", op.key)], [], _nothing)

    def _paused_for(self, op: PausedFor) -> _Script:
        return _Script("paused_for", [self._key("pause", op.key)], [], _float)

    def _limiter_acquire(self, op: LimiterAcquire) -> _Script:
        args: list[str | int | float] = [
            op.ceiling,
            op.burst,
            op.max_wait,
            op.spare,
            op.spent,
            op.unspent,
            op.age,
        ]
        return _Script("limiter_acquire", [self._key("rate", op.key)], args, _ticket)

    def _limiter_admit(self, op: LimiterAdmit) -> _Script:
        keys = [self._key("pause", op.key), self._key("rate", op.key)]
        args: list[str | int | float] = [
            op.ceiling,
            op.burst,
            op.max_wait,
            op.spare,
            op.spent,
            op.unspent,
            op.age,
        ]
        return _Script("limiter_admit", keys, args, _ticket)

    def _limiter_state(self, op: LimiterState) -> _Script:
        return _Script("limiter_state", [self._key("rate", op.key)], [op.spent, op.unspent, op.age], _ticket)

    def _limiter_learn(self, op: LimiterLearn) -> _Script:
        keys = [self._key("rate", op.key), f"{self._prefix}:serial"]
        args: list[str | int | float] = [op.version, op.rate, op.max_rate, int(op.throttled)]
        return _Script("limiter_learn", keys, args, _flag)


if TYPE_CHECKING:  # mypy checks that RedisState runs operations as the protocol declares
    _conforms: StateStore = RedisState()
