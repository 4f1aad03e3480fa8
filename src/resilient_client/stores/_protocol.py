"""The state store protocol: the semantic atomic operations every strategy's state needs.

Why semantic operations and not get/set: a Redis store runs each operation as one Lua script (atomic,
one round trip), so every read-modify-write a strategy needs must be one named operation with its
arithmetic fixed here. The strategies keep every decision that is not a read-modify-write (ratios,
doubling, deadlines, what counts as a failure), so the arithmetic a store must mirror stays small:
a token bucket, a bucketed counter, compare-and-set on versions, leases.

Time. Every operation takes ``now``, the caller's monotonic clock, and nothing crosses the protocol
as an absolute time: callers give durations (``seconds``, ``lease``, ``window``) and get durations back
(``retry_after``, ``paused_for``, ``wait``). So a store with its own clock (Redis's ``TIME``, shared
by a fleet whose monotonic clocks have nothing in common) ignores ``now`` and still means the same.
All callers of one in-process store must pass ``now`` from the same clock.

Keys. A key names a thing (``breaker/hyper/api.hyper.test``, see ``state_key``); each kind of state
(bucket, window, circuit, leases, pause, rate) lives in its own namespace, so a breaker and a limiter
may share a key. A key idle for longer than the store's idle time is forgotten, and forgetting it is
the same as it never having existed (a full bucket, a closed circuit, no pause), so memory stays
bounded by the keys in use.

Sync and async. Each operation has an ``a``-prefixed async twin (as httpx's ``read``/``aread``): the
in-process store's twins call the sync ones (they never block), a Redis store awaits its client.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol
from urllib.parse import quote

import attrs

__all__ = ["Circuit", "CircuitState", "RateTicket", "StateStore", "state_key"]

CircuitState = Literal["closed", "open", "half_open"]


def state_key(*parts: object) -> str:
    """A store key from its parts (strategy, vendor, host, ...), each percent-quoted so that no value
    (a guard's account number, say) can forge another key's namespace."""
    return "/".join(quote(str(part), safe="") for part in parts)


@attrs.frozen
class Circuit:
    """A circuit breaker's shared state, as one operation saw it."""

    state: CircuitState
    #: Changes on every transition; a caller's compare-and-set names the epoch it saw, so of many
    #: callers judging the same circuit only the first moves it.
    epoch: int
    #: Open: seconds until a probe may go. Half-open: seconds until the earliest probe's lease ends
    #: (when a refused caller may become a probe at the latest). Closed: 0.
    retry_after: float
    #: The length of the current (or last) break; 0 once the circuit has closed. The breaker doubles
    #: it while probes fail.
    break_duration: float


@attrs.frozen
class RateTicket:
    """The answer to ``limiter_acquire``: the wait, and the learned-rate record as it stood."""

    #: Seconds to wait before sending (0: at once). Reserved only when ``wait <= max_wait``.
    wait: float
    #: Changes only when the learned rate is lowered; ``limiter_learn`` names it to be applied.
    version: int
    #: The learned rate in requests per second; 0 while nothing has been learned.
    rate: float
    #: The rate the key was sending at when it was last throttled (botocore's ``w_max``).
    max_rate: float
    #: Seconds since the learned rate was last lowered (0 while nothing has been learned).
    since_throttle: float
    #: Requests per second sent under the key over the last second (a two-slot sliding counter).
    sent_rate: float
    #: From ``limiter_admit``: seconds left of the key's pause; while it is above 0 nothing was
    #: reserved or counted (``wait`` is 0). Always 0 from the other operations.
    paused: float = 0.0


class StateStore(Protocol):
    """Semantic atomic operations over shared state; see the module docstring for time and keys.

    A store may also say, as ``batch_seconds``, how long strategies may keep write-only counts (a
    budget's deposits, a breaker's successes) in process before writing them: ``math.inf`` for the
    in-process store (written when next read), a fraction of a second for a shared one (so the
    fleet sees them soon). A store without it gets every count written at once.
    """

    # -- token bucket (retry budget) -----------------------------------------------------------

    def deposit(self, key: str, amount: float, cap: float, now: float) -> float:
        """Add ``amount`` tokens, never above ``cap`` (a new bucket starts full); the new level."""
        ...

    def try_spend(self, key: str, cost: float, cap: float, now: float) -> bool:
        """Take ``cost`` tokens if the bucket holds that many (check and take in one step).

        The level never goes below zero, so of many callers racing for the last tokens exactly as
        many succeed as there were tokens. A bucket above ``cap`` (its cap was lowered) is cut to it.
        """
        ...

    # -- sliding window of outcomes (circuit breaker health) ------------------------------------

    def record_outcome(self, key: str, failed: bool, window: float, now: float) -> tuple[int, int]:
        """Count one outcome and return (failures, total) over the last ``window`` seconds.

        The window is 10 buckets of ``window / 10`` seconds aligned on multiples of that width (as
        Polly's rolling health metrics), so the counts cover between 0.9 and 1 window of history.
        """
        ...

    def record_successes(self, key: str, count: int, age: float, window: float, now: float) -> None:
        """Count ``count`` successes at once, as ``record_outcome`` counts one, in the bucket of
        ``age`` seconds ago (when the latest of them happened): a breaker tallies its successes in
        process and writes them in batches (see ``batch_seconds``). Counts already outside the
        window are dropped."""
        ...

    # -- circuit state ---------------------------------------------------------------------------

    def circuit(self, key: str, now: float) -> Circuit:
        """The circuit as it is (a key never seen is closed)."""
        ...

    def try_probe(self, key: str, token: str, probes: int, lease: float, now: float) -> tuple[bool, Circuit]:
        """Take a half-open probe slot for ``token``; (taken, the circuit after).

        An open circuit whose break has ended turns half-open (a new epoch). A half-open circuit
        admits at most ``probes`` tokens at a time; a slot is held until its outcome moves the
        circuit, ``release_probe`` frees it, or ``lease`` seconds pass (a probe that never reports,
        such as a crashed process, cannot keep the circuit half-open for ever). A closed or still
        open circuit takes no probe.
        """
        ...

    def release_probe(self, key: str, token: str, now: float) -> None:
        """Free ``token``'s probe slot (its call sent nothing, or its outcome was no evidence)."""
        ...

    def open_circuit(self, key: str, epoch: int, seconds: float, now: float) -> bool:
        """If the circuit is still at ``epoch``: open it for ``seconds`` (a new epoch, probe slots
        freed, ``break_duration = seconds``). False when another caller moved it first."""
        ...

    def close_circuit(self, key: str, epoch: int, now: float) -> bool:
        """If the circuit is still at ``epoch``: close it (a new epoch, ``break_duration = 0``) and
        clear its window of outcomes. False when another caller moved it first."""
        ...

    def reset_circuit(self, key: str, now: float) -> None:
        """Close the circuit whatever its epoch, and clear its window (a manual reset)."""
        ...

    # -- keyed semaphore with leases (guards) -----------------------------------------------------

    def try_acquire(self, keys: Sequence[str], limit: int, lease: float, token: str, now: float) -> bool:
        """Hold every key in ``keys`` for ``token``, or none of them.

        A key admits ``limit`` holders at a time; a hold ends at ``release`` or after ``lease``
        seconds (a crashed holder frees its keys). All keys are taken in one atomic step, in sorted
        order, so no caller ever holds one key while waiting for another: no deadlock. A token that
        already holds a key keeps its place (its lease is renewed).
        """
        ...

    def release(self, keys: Sequence[str], token: str, now: float) -> None:
        """End ``token``'s holds on ``keys``; a hold of another token is left alone."""
        ...

    # -- pauses (a server's Retry-After for every request of a host) ------------------------------

    def pause(self, key: str, seconds: float, now: float) -> None:
        """Pause ``key`` for ``seconds`` from now, unless it is already paused for longer."""
        ...

    def paused_for(self, key: str, now: float) -> float:
        """Seconds left of the pause (0 when not paused)."""
        ...

    # -- rate limiter (fixed and learned rate) -----------------------------------------------------

    def limiter_acquire(
        self, key: str, ceiling: float, burst: float, max_wait: float, now: float
    ) -> RateTicket:
        """Reserve one send under ``key`` and say how long to wait for it.

        The pace is the lower of ``ceiling`` (a fixed rate, 0 for none) and the learned rate (0 while
        none); with neither, the send goes at once. Pacing is a token bucket of ``burst`` tokens
        refilled at the pace, full when pacing starts; a send takes a token, and may take it before
        it exists (the level goes negative: the send is queued), waiting ``-level / pace`` seconds.
        The reservation is made only when ``wait <= max_wait``; otherwise nothing changes and the
        caller learns how long it would have waited. A reserved send is counted in ``sent_rate``
        (sends in the current one-second slot plus the previous slot's, weighted by how much of the
        last second it still covers).
        """
        ...

    def limiter_admit(
        self, key: str, ceiling: float, burst: float, max_wait: float, now: float
    ) -> RateTicket:
        """``paused_for`` and ``limiter_acquire`` in one step: while ``key`` is paused, the ticket's
        ``paused`` is the time left and nothing is reserved or counted (its other fields are those of
        ``limiter_state``); otherwise the reservation of ``limiter_acquire``.

        Why one operation: a limiter that honours pauses would otherwise make two round trips to a
        shared store before every send, and the pause check and the reservation belong together (a
        send reserved after a stale "not paused" would be counted though held back).
        """
        ...

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
        """``limiter_admit``, then, only when it admits a send at once (not paused, ``wait`` 0),
        ``try_acquire(keys, limit, lease, token)`` in the same step; whether the keys were taken.

        Why one operation: a guarded request (a journal call) would otherwise make two round trips
        to a shared store before it is sent, the rate limiter's and the guard's. A send that must
        wait (a pause, or its turn) takes no key, so no key is ever held across a wait.
        """
        ...

    def limiter_state(self, key: str, now: float) -> RateTicket:
        """The learned-rate record as it stands, reserving and counting nothing (``wait`` is 0)."""
        ...

    def limiter_learn(
        self, key: str, version: int, rate: float, max_rate: float, throttled: bool, now: float
    ) -> bool:
        """If the record is still at ``version``: set the learned ``rate`` and ``max_rate``; when
        ``throttled``, also restart ``since_throttle`` and change the version (so the other answers
        to sends paced under the old rate lower it no further). The bucket is refilled at the old
        pace up to now first. False when the version had changed.
        """
        ...

    # -- async twins -----------------------------------------------------------------------------

    async def adeposit(self, key: str, amount: float, cap: float, now: float) -> float: ...

    async def atry_spend(self, key: str, cost: float, cap: float, now: float) -> bool: ...

    async def arecord_outcome(self, key: str, failed: bool, window: float, now: float) -> tuple[int, int]: ...

    async def arecord_successes(
        self, key: str, count: int, age: float, window: float, now: float
    ) -> None: ...

    async def acircuit(self, key: str, now: float) -> Circuit: ...

    async def atry_probe(
        self, key: str, token: str, probes: int, lease: float, now: float
    ) -> tuple[bool, Circuit]: ...

    async def arelease_probe(self, key: str, token: str, now: float) -> None: ...

    async def aopen_circuit(self, key: str, epoch: int, seconds: float, now: float) -> bool: ...

    async def aclose_circuit(self, key: str, epoch: int, now: float) -> bool: ...

    async def areset_circuit(self, key: str, now: float) -> None: ...

    async def atry_acquire(
        self, keys: Sequence[str], limit: int, lease: float, token: str, now: float
    ) -> bool: ...

    async def arelease(self, keys: Sequence[str], token: str, now: float) -> None: ...

    async def apause(self, key: str, seconds: float, now: float) -> None: ...

    async def apaused_for(self, key: str, now: float) -> float: ...

    async def alimiter_acquire(
        self, key: str, ceiling: float, burst: float, max_wait: float, now: float
    ) -> RateTicket: ...

    async def alimiter_admit(
        self, key: str, ceiling: float, burst: float, max_wait: float, now: float
    ) -> RateTicket: ...

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
    ) -> tuple[RateTicket, bool]: ...

    async def alimiter_state(self, key: str, now: float) -> RateTicket: ...

    async def alimiter_learn(
        self, key: str, version: int, rate: float, max_rate: float, throttled: bool, now: float
    ) -> bool: ...
