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
retries: the fallback decides what a missing answer means), no health checks. A ``client=``/
``async_client=`` given is used as it is. redis.asyncio connections belong to the event loop that
opened them, so one async client is made per loop and closed when that loop shuts down.

Pool sizing. A process's own concurrency never looks like an outage. The sync pool has room for a
connection per thread (``SYNC_POOL_SIZE``: threads bound it). The async pool of each loop holds
``ASYNC_POOL_SIZE`` connections (Redis runs one script at a time, so more buy no throughput) and a
task past them waits for a free one (an asyncio.Semaphore of that many slots before the pool),
never failing at once as redis-py's default pool does past 100. What counts as Redis not answering
is silence: an operation that waited ``[state] timeout`` while Redis answered nobody (an error reply
is an answer), judged on a loop that keeps time (``_Watch``: a check that ran late starts
the silence afresh). One whose wait ran while Redis answered others (it was queued behind the
process's own tasks) waits on, up to ``BUSY_WAIT`` seconds (or the timeout, when longer), and is
then ``Busy``: it goes without the store, and the store is not taken as down. Connecting is timed
the same way, as part of the operation (redis-py's own connect timeout is off for the async client).

A new async client's pool opens its connections as a burst of tasks needs them, each a few round
trips: until Redis first answers it, silence counts only after ``FIRST_CONTACT`` seconds (a Redis
that refuses connections still fails at once).

Deadline. Every wait on Redis is bounded by the call's deadline (``_deadline.current``, which the
pipeline sets for the whole call): an operation with less time left than ``[state] timeout`` waits
only that long (the sync client then waits in a worker thread, as its socket timeout is fixed).
Cut short by the deadline after a silence shorter than the timeout, it is ``Busy``, not an outage.
With less than ``_DEADLINE_FLOOR`` (50 ms, the overrun the SPEC allows) left, which is the call's
bookkeeping once its attempts are over (outcomes, releases), the store's own timeout applies: a
refusal then would replace the call's real outcome, and a Redis that went silent earlier in the
call is known to be down already, so those operations do not wait at all.

Orphans. A lease acquire whose answer never came (timed out, cancelled) may still run in Redis later
(a hung Redis runs its buffered scripts when it wakes up); a release that could not reach Redis
leaves its hold there. Either way the hold's field is remembered, and released in Redis after the
next operation Redis answers: no account stays locked for the rest of its lease.

Unavailability (``stores/fallback.py``): when Redis does not answer, the operation runs on an
in-process MemoryState (``on_unavailable="local"``) or raises StateUnavailableError (``"raise"``);
an error reply (out of memory, a value of the wrong type) does the same for that operation alone.

This module imports redis only when a RedisState is built, so it costs nothing without the extra.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import math
import threading
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast
from urllib.parse import unquote, urlsplit

import anyio.to_thread
import attrs

from resilient_client import _deadline
from resilient_client._redact import REDACTED, Secrets, redact_url
from resilient_client.stores._lua import SCRIPTS
from resilient_client.stores._protocol import (
    Acquire,
    Admission,
    Circuit,
    CircuitState,
    CloseCircuit,
    Deposit,
    EndPause,
    EnterSlot,
    LeaveSlot,
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
from resilient_client.stores.fallback import Busy, Fallback, OnUnavailable

if TYPE_CHECKING:
    import redis
    import redis.asyncio
    import redis.commands.core

__all__ = ["ASYNC_POOL_SIZE", "BUSY_WAIT", "SYNC_POOL_SIZE", "RedisState"]

_T = TypeVar("_T")
_SCHEMES = ("redis", "rediss", "unix")
_URL_EXAMPLE = "redis://localhost:6379/0"

#: Connections of a store's async client per event loop; a task past them waits for a free one.
ASYNC_POOL_SIZE = 32
#: Connections of a store's sync client: room for every thread a process runs.
SYNC_POOL_SIZE = 100_000
#: How long an operation may wait while Redis answers others but not it yet (see the docstring).
BUSY_WAIT = 10.0
#: The second look before a silence is believed (see ``_Watch``).
_GRACE = 0.01
#: How long a new async client waits for Redis's first answer before taking silence for an outage.
FIRST_CONTACT = 1.0
#: A deadline's cut shorter than this (or than the timeout) says nothing of Redis: ``Busy``.
_SILENCE_FLOOR = 0.05
#: With less of the call's time left than this, its deadline no longer bounds a wait on Redis.
_DEADLINE_FLOOR = 0.05
#: A hold to let go of in Redis: the script that does it (``release``: a lease hold's field;
#: ``release_probe``: a probe slot's token), its keys and its one argument.
_Hold = tuple[str, tuple[str, ...], str]


#: Holds remembered for release at most; past them (a long outage), the rest end with their leases.
_MOST_ORPHANS = 10_000


class _UnreadableReply(Exception):
    """A reply this store cannot read (a script of another version of the SDK, say): refused."""


def _time_left() -> float | None:
    """Seconds to the running call's deadline that bound a wait on Redis; None outside a call, and
    once less than ``_DEADLINE_FLOOR`` is left (see the module docstring)."""
    deadline = _deadline.current.get()
    if deadline is None:
        return None
    left = deadline.at - deadline.clock()
    return left if left >= _DEADLINE_FLOOR else None


class _Script(NamedTuple):
    """An operation as Redis runs it: its script's name, keys and arguments, and how to read the reply."""

    name: str
    keys: list[str]
    args: list[str | int | float]
    read: Callable[[Any], Any]
    #: The lease hold to release when this script's answer never comes (it may have run anyway),
    #: or when it does not reach Redis (a release).
    orphan: _Hold | None = None
    #: The answer when Redis was ``Busy`` for it, instead of running it locally: an acquire is then
    #: not taken (the guard asks again), for a hold taken locally while others hold the key in
    #: Redis would let two callers in at once.
    busy: Callable[[], Any] | None = None
    #: True for a script that lets a hold go: when it cannot reach Redis (run locally instead), its
    #: ``orphan`` is remembered and released once Redis answers again.
    releases: bool = False


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
    #: The operations in flight on this client at once (its pool's connections); the others wait.
    slots: asyncio.Semaphore | None = None
    #: Whether Redis has answered this client yet: until then its pool is opening its connections
    #: (a burst of tasks opens them all at once), and silence is waited out for ``FIRST_CONTACT``.
    answered: bool = False


class _Slots:
    """The concurrency slots this store holds in Redis, by token: a slot entered in the in-process
    state (Redis down, or refusing the script) is let go there, not in Redis. Bounded: a token
    whose leave never came is forgotten after ``_MOST_SLOTS`` newer ones (its lease ends anyway)."""

    __slots__ = ("_lock", "_tokens")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, None] = {}

    def taken(self, token: str) -> None:
        with self._lock:
            if len(self._tokens) >= _MOST_SLOTS:
                del self._tokens[next(iter(self._tokens))]
            self._tokens[token] = None

    def released(self, token: str) -> bool:
        """Whether ``token`` held a slot in Redis (forgotten now)."""
        with self._lock:
            return self._tokens.pop(token, False) is None


_MOST_SLOTS = 100_000


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


def _not_taken() -> bool:
    return False


def _not_entered() -> Admission:
    return Admission(entered=False, limit=1.0, in_flight=0, epoch=0)


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


def _admission(reply: Any) -> Admission:
    return Admission(_flag(reply[0]), _float(reply[1]), int(reply[2]), int(reply[3]))


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


class _Watch:
    """Watches one operation's wait on Redis (``RedisState._within``): wakes up at each point where
    a verdict may be due, and ends the wait (``scope``) with its verdict.

    Silence is ``silence`` seconds in which the store heard no answer at all (``_answers`` did not
    move); a wait while answers come is a queue, waited out up to ``end``. A check that runs late
    (the process was busy or not scheduled: a burst of tasks starting, work that blocks the loop,
    a starved machine) judges nothing, as answers that arrived meanwhile are not read yet: silence
    is judged afresh on a loop that keeps time. Answers read from the sockets reach their tasks a
    few loop turns later, so a silence is believed after one more short look (``_GRACE``).
    """

    __slots__ = (
        "due", "end", "first", "graced", "handle", "loop", "scope", "seen", "silence", "start", "store",
        "verdict",
    )  # fmt: skip

    def __init__(
        self,
        store: RedisState,
        loop: asyncio.AbstractEventLoop,
        start: float,
        end: float,
        silence: float | None,
    ) -> None:
        self.store = store
        self.loop = loop
        self.start = start
        self.end = end
        self.silence = silence
        self.first = self.seen = store._answers
        self.graced = False
        self.due = 0.0
        self.verdict: BaseException | None = None
        self.scope: asyncio.Timeout | None = None
        self.handle: asyncio.TimerHandle

    def arm(self, when: float) -> None:
        self.due = when
        self.handle = self.loop.call_at(when, self.check)

    def expire(self, error: BaseException) -> None:
        self.verdict = error
        assert self.scope is not None
        self.scope.reschedule(self.loop.time())

    def check(self) -> None:
        at = self.loop.time()
        answers = self.store._answers
        silence, end = self.silence, self.end
        if at - self.due > _GRACE:  # late: judged afresh
            self.seen, self.graced = answers, False
            wait = silence if silence is not None else _GRACE
            self.end = max(end, at + wait)
            self.arm(at + wait)
        elif at < end and (silence is None or answers != self.seen):  # queued, not ignored
            self.seen, self.graced = answers, False
            self.arm(end if silence is None else min(at + silence, end))
        elif answers == self.seen and not self.graced and at < end:
            self.graced = True
            self.arm(min(at + _GRACE, end))
        elif answers == self.seen and (at < end or answers == self.first):
            waited = at - self.start
            if silence is None or waited >= min(silence, _SILENCE_FLOOR):
                self.expire(TimeoutError(f"Redis answered nothing for {waited:.3g} s"))
            else:
                self.expire(Busy(f"no answer in the {waited:.3g} s the call had left"))
        else:
            self.expire(Busy(f"Redis answered others but not this operation for {at - self.start:.3g} s"))


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
        self._slots = _Slots()
        #: Lease holds that may be left in Redis (see the module docstring), released when it answers.
        self._orphans: dict[_Hold, None] = {}
        #: Counts Redis's answers: an operation that saw it move while it waited was queued, not ignored.
        self._answers = 0
        self._waiter: concurrent.futures.ThreadPoolExecutor | None = None
        self._client = client
        self._scripts: dict[str, Any] | None = None if client is None else self._register(client)
        self._given_async = (
            None if async_client is None else _LoopClient(async_client, self._register(async_client), None)
        )
        self._loop_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = (
            weakref.WeakKeyDictionary()
        )
        exceptions = redis_module.exceptions
        #: What a wait that ran out raises (a connect, a read): silence only when nobody was answered.
        self._timed_out: tuple[type[BaseException], ...] = (exceptions.TimeoutError, TimeoutError)
        self._fallback = Fallback(
            name=self._name,
            unavailable=(
                exceptions.ConnectionError,  # pool exhausted past the timeout included
                exceptions.TimeoutError,
                exceptions.ReadOnlyError,  # READONLY: a failover made our server a replica
                OSError,
            ),
            refused=(exceptions.RedisError, _UnreadableReply),  # an error reply: out of memory, ...
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
            EnterSlot: self._enter_slot,
            LeaveSlot: self._leave_slot,
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
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.shutdown(wait=False)
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
                self._client = redis_module.Redis.from_url(
                    self._url, max_connections=SYNC_POOL_SIZE, **self._client_options(retry)
                )
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
            options = {
                **self._client_options(retry),
                "socket_timeout": None,
                # Connecting is timed with the rest of the operation (``_within``), which tells a
                # silent Redis from a loop too busy to notice its answer. A refused connection
                # still fails at once.
                "socket_connect_timeout": None,
            }
            # Room for the connections the slots allow, and for those being closed meanwhile.
            pool = redis_module.asyncio.ConnectionPool.from_url(
                self._url, max_connections=2 * ASYNC_POOL_SIZE, **options
            )
            client = redis_module.asyncio.Redis.from_pool(pool)
            closer = _close_with_loop(client)
            found = self._loop_clients[loop] = _LoopClient(
                client, self._register(client), closer, self._timeout, asyncio.Semaphore(ASYNC_POOL_SIZE)
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
            left = _time_left()
            if left is not None and left < self._timeout and self._url is not None:
                try:
                    return cast(_T, self._run_within(client, scripts, script, now, left))
                except Busy:
                    if script.busy is None:
                        raise
                    return cast(_T, script.busy())
            return cast(_T, self._answered(script, self._send(client, scripts, script, now)))

        return self._fallback.call(now, shared, self._without(script, lambda: local.run(op, now)))

    def _send(self, client: Any, scripts: dict[str, Any], script: _Script, now: float) -> Any:
        try:
            return scripts[script.name](keys=script.keys, args=self._args(script, now), client=client)
        except self._fallback.unavailable:
            client.connection_pool.disconnect(inuse_connections=False)
            self._orphan(script)
            raise

    def _run_within(
        self, client: Any, scripts: dict[str, Any], script: _Script, now: float, left: float
    ) -> Any:
        """The script, waited for at most ``left`` seconds (less than the sync client's socket
        timeout): sent from a worker thread, which is left to finish by itself when the time is up."""
        with self._lock:
            if self._waiter is None:
                self._waiter = concurrent.futures.ThreadPoolExecutor(4, "resilient-client-redis")
            waiter = self._waiter
        answers = self._answers
        future = waiter.submit(self._send, client, scripts, script, now)
        try:
            return self._answered(script, future.result(timeout=left))
        except concurrent.futures.TimeoutError:
            self._orphan(script)
            if self._answers == answers and left >= min(self._timeout, _SILENCE_FLOOR):
                raise TimeoutError(f"Redis did not answer within the call's {left:.3g} s left") from None
            raise Busy(f"no answer within the call's {left:.3g} s left") from None

    def _answered(self, script: _Script, reply: Any) -> Any:
        """The reply read (an unreadable one refused); lease holds left behind are released now."""
        self._answers += 1
        try:
            result = script.read(reply)
        except (ValueError, TypeError, IndexError, AttributeError) as exc:
            raise _UnreadableReply(f"the {script.name} script's reply could not be read") from exc
        if self._orphans:
            self._release_orphans()
        return result

    def _without(self, script: _Script, local: Callable[[], _T]) -> Callable[[], _T]:
        """``local``, remembering the hold the script would have released in Redis (a take that
        never went to Redis left nothing there)."""
        if script.orphan is None or not script.releases:
            return local

        def without_redis() -> _T:
            self._orphan(script)
            return local()

        return without_redis

    def _orphan(self, script: _Script) -> None:
        if script.orphan is not None:
            with self._lock:
                if len(self._orphans) < _MOST_ORPHANS:
                    self._orphans[script.orphan] = None

    def _take_orphans(self) -> list[_Hold]:
        with self._lock:
            orphans = list(self._orphans)
            self._orphans.clear()
        return orphans

    def _keep_orphans(self, orphans: list[_Hold]) -> None:
        with self._lock:
            self._orphans.update(dict.fromkeys(orphans))

    def _release_orphans(self) -> None:
        client, scripts = self._sync()
        orphans = self._take_orphans()
        for done, (name, keys, argument) in enumerate(orphans):
            release = _Script(name, list(keys), [argument], _nothing)
            try:
                scripts[name](keys=release.keys, args=self._args(release, 0.0), client=client)
            except (self._redis.exceptions.RedisError, OSError):
                self._keep_orphans(orphans[done:])
                return

    async def _arelease_orphans(self, loop_client: _LoopClient) -> None:
        orphans = self._take_orphans()
        for done, (name, keys, argument) in enumerate(orphans):
            release = _Script(name, list(keys), [argument], _nothing)
            try:
                async with asyncio.timeout(self._timeout):
                    await loop_client.scripts[name](
                        keys=release.keys, args=self._args(release, 0.0), client=loop_client.client
                    )
            except (self._redis.exceptions.RedisError, OSError):
                self._keep_orphans(orphans[done:])
                return

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
            answers = self._answers
            try:
                silence = loop_client.timeout
                if silence is not None and not loop_client.answered:
                    silence = max(silence, FIRST_CONTACT)
                pending = run(keys=script.keys, args=self._args(script, now), client=client)
                reply = await self._within(pending, silence, loop_client.slots)
                loop_client.answered = True
            except Busy:
                self._orphan(script)
                if script.busy is None:
                    raise
                return cast(_T, script.busy())
            except BaseException as exc:
                self._orphan(script)  # it may run in Redis still, or never reached it
                fallback = self._fallback
                if isinstance(exc, fallback.refused) and not isinstance(exc, fallback.unavailable):
                    self._answers += 1  # an error reply is an answer too
                if isinstance(exc, self._timed_out) and self._answers != answers:
                    # A connection that took too long to open while Redis answered others: the
                    # process's own load, not Redis's silence.
                    if script.busy is not None:
                        return cast(_T, script.busy())
                    raise Busy(f"no connection in time while Redis answered others ({exc})") from exc
                if isinstance(exc, self._fallback.unavailable):
                    with anyio.CancelScope(shield=True):
                        await client.connection_pool.disconnect(inuse_connections=False)
                raise
            orphans = bool(self._orphans)
            result = self._answered_async(script, reply)
            if orphans:
                with anyio.CancelScope(shield=True):
                    await self._arelease_orphans(loop_client)
            return cast(_T, result)

        return await self._fallback.acall(now, shared, self._without(script, lambda: local.run(op, now)))

    def _answered_async(self, script: _Script, reply: Any) -> Any:
        self._answers += 1
        try:
            return script.read(reply)
        except (ValueError, TypeError, IndexError, AttributeError) as exc:
            raise _UnreadableReply(f"the {script.name} script's reply could not be read") from exc

    async def _within(
        self, pending: Awaitable[Any], silence: float | None, slots: asyncio.Semaphore | None = None
    ) -> Any:
        """``pending``'s answer, sent once one of ``slots`` is free. Given up (TimeoutError: Redis
        did not answer) after ``silence`` seconds in which Redis answered nobody; waited for while
        it answers others, up to ``BUSY_WAIT`` (then ``Busy``); never past the call's deadline
        (``Busy``, unless Redis was silent the whole time, which is as long as the call could wait)."""
        left = _time_left()
        if silence is None and left is None:
            if slots is None:
                return await pending
            async with slots:
                return await pending
        loop = asyncio.get_running_loop()
        start = loop.time()
        # Never less than a silence: waiting for a queue is no reason to call Redis silent sooner.
        longest = BUSY_WAIT if silence is None else max(BUSY_WAIT, silence)
        watch = _Watch(self, loop, start, start + (longest if left is None else min(left, longest)), silence)
        try:
            async with asyncio.timeout(None) as scope:
                watch.scope = scope
                watch.arm(watch.end if silence is None else min(start + silence, watch.end))
                try:
                    if slots is None:
                        return await pending
                    async with slots:
                        return await pending
                finally:
                    watch.handle.cancel()
        except TimeoutError:
            if watch.verdict is not None:
                raise watch.verdict from None
            raise

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
        circuit = self._key("circuit", op.key)
        keys = [circuit, f"{self._prefix}:serial"]
        # A probe's token is new for each call: freeing its slot can never free a later probe's.
        freed = ("release_probe", (circuit,), op.token)
        return _Script("try_probe", keys, [op.token, op.probes, op.lease], _probe, freed)

    def _release_probe(self, op: ReleaseProbe) -> _Script:
        circuit = self._key("circuit", op.key)
        freed = ("release_probe", (circuit,), op.token)
        return _Script("release_probe", [circuit], [op.token], _nothing, freed)

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

        args: list[str | int | float] = [op.limit, op.lease, field]
        return _Script("acquire", ordered, args, read, ("release", tuple(ordered), field), _not_taken)

    def _release(self, op: Release) -> _Script | None:
        """The holder's own field deleted from each key; None when ``op.token`` holds none of them in
        Redis (taken while Redis was down, in the in-process state, which lets it go instead)."""
        field = self._holds.released(op.token, op.keys)
        if field is None:
            return None
        keys = [self._key("lease", key) for key in op.keys]
        return _Script("release", keys, [field], _nothing, ("release", tuple(keys), field), releases=True)

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

    def _enter_slot(self, op: EnterSlot) -> _Script:
        keys = [self._key("slots", op.key), self._key("slot_leases", op.key)]
        args: list[str | int | float] = [
            op.token,
            op.lease,
            op.initial,
            op.minimum,
            op.maximum,
            op.probe_after,
        ]

        def read(reply: Any) -> Admission:
            admission = _admission(reply)
            if admission.entered:
                self._slots.taken(op.token)
            return admission

        # A slot whose answer never came may be held in Redis: dropped by its token once Redis answers.
        orphan = ("drop_slot", (keys[1],), op.token)
        return _Script("enter_slot", keys, args, read, orphan, _not_entered)

    def _leave_slot(self, op: LeaveSlot) -> _Script | None:
        """The slot let go and the limit learned from its answer; None when ``op.token`` holds no
        slot in Redis (entered while Redis was down or refused it, in the in-process state, which
        lets it go instead)."""
        if not self._slots.released(op.token):
            return None
        keys = [self._key("slots", op.key), self._key("slot_leases", op.key), f"{self._prefix}:serial"]
        args: list[str | int | float] = [
            op.token,
            op.verdict,
            op.epoch,
            repr(float(op.target)),
            op.in_flight,
            int(op.capacity),
            op.initial,
            op.minimum,
            op.maximum,
            op.probe_after,
        ]
        orphan = ("drop_slot", (keys[1],), op.token)
        return _Script("leave_slot", keys, args, _nothing, orphan, releases=True)


if TYPE_CHECKING:  # mypy checks that RedisState runs operations as the protocol declares
    _conforms: StateStore = RedisState()
