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

Operations are values. Each operation is a small frozen class (``TrySpend``, ``ReadCircuit``, ...)
carrying its arguments, generic in its result; a store runs one with ``store.run(op, now)`` or
``await store.arun(op, now)`` (as httpx's ``read``/``aread``). The in-process store runs each under
its one lock, and its ``arun`` never blocks; a Redis store runs each as one Lua script. A strategy
builds operations and never asks which store it has.
"""

from __future__ import annotations

from typing import Generic, Literal, Protocol, TypeVar
from urllib.parse import quote

import attrs

__all__ = [
    "Acquire",
    "Admission",
    "Circuit",
    "CircuitState",
    "CloseCircuit",
    "Deposit",
    "EndPause",
    "EnterSlot",
    "LeaveSlot",
    "LimiterAcquire",
    "LimiterAdmit",
    "LimiterLearn",
    "LimiterState",
    "OpenCircuit",
    "Operation",
    "Pause",
    "PausedFor",
    "RateTicket",
    "ReadCircuit",
    "RecordOutcome",
    "RecordSuccesses",
    "Release",
    "ReleaseProbe",
    "ResetCircuit",
    "SLOW_START_STEP",
    "StateStore",
    "TryProbe",
    "TrySpend",
    "Verdict",
    "concurrency_limit",
    "state_key",
]

CircuitState = Literal["closed", "open", "half_open"]
#: What an attempt's answer says of the endpoint's capacity (``LeaveSlot``).
Verdict = Literal["grow", "hold", "lower"]
_R = TypeVar("_R")
_R_co = TypeVar("_R_co", covariant=True)


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
    """The answer to ``LimiterAcquire`` (``LimiterAdmit``, ``LimiterState``): the wait, and the
    learned-rate record as it stood."""

    #: Seconds to wait before sending (0: at once). Reserved only when ``wait <= max_wait``.
    wait: float
    #: Changes only when the learned rate is lowered; ``LimiterLearn`` names it to be applied.
    version: int
    #: The learned rate in requests per second; 0 while nothing has been learned.
    rate: float
    #: The rate the key was sending at when it was last throttled (botocore's ``w_max``).
    max_rate: float
    #: Seconds since the learned rate was last lowered (0 while nothing has been learned).
    since_throttle: float
    #: Requests per second sent under the key over the last second (a two-slot sliding counter).
    sent_rate: float
    #: From ``LimiterAdmit``: seconds left of the key's pause; while it is above 0 nothing was
    #: reserved or counted (``wait`` is 0). Always 0 from the other operations.
    paused: float = 0.0
    #: Spare sends reserved beyond this one (``LimiterAcquire``'s ``spare``): the caller hands them
    #: out in process. Always 0 from ``LimiterState``.
    spare: int = 0


class Operation(Generic[_R_co]):
    """A store operation: a frozen value whose type says what ``run`` answers (``Operation[bool]``)."""

    __slots__ = ()


def _key_list(keys: object) -> tuple[str, ...]:
    """Lease keys as a tuple: a list or tuple of at least one str (a str alone is refused, as it
    would be taken one letter per key)."""
    if isinstance(keys, str) or not isinstance(keys, list | tuple) or not keys:
        raise ValueError(f"lease keys must be a non-empty list of str, not {keys!r}")
    return tuple(keys)


# -- token bucket (retry budget) -----------------------------------------------------------------------------


@attrs.frozen
class Deposit(Operation[float]):
    """Add ``amount`` tokens, never above ``cap`` (a new bucket starts full); answers the new level."""

    key: str
    amount: float
    cap: float


@attrs.frozen
class TrySpend(Operation[bool]):
    """Take ``cost`` tokens if the bucket holds that many (check and take in one step).

    ``earned`` tokens are deposited first, in the same step (a budget tallies its requests' shares
    in process and brings them along with the retry that asks). The level never goes below zero, so
    of many callers racing for the last tokens exactly as many succeed as there were tokens. A
    bucket above ``cap`` (its cap was lowered) is cut to it.
    """

    key: str
    cost: float
    cap: float
    earned: float = 0.0


# -- sliding window of outcomes (circuit breaker health) -----------------------------------------------------


@attrs.frozen
class RecordOutcome(Operation[tuple[int, int]]):
    """Count one outcome and answer (failures, total) over the last ``window`` seconds.

    The window is 10 buckets of ``window / 10`` seconds aligned on multiples of that width (as
    Polly's rolling health metrics), so the counts cover between 0.9 and 1 window of history.
    ``successes`` counted in process (the latest of them ``age`` seconds ago) are written first, in
    the same step, as ``RecordSuccesses`` writes them: a failure is weighed against them all.
    """

    key: str
    failed: bool
    window: float
    successes: int = 0
    age: float = 0.0


@attrs.frozen
class RecordSuccesses(Operation[None]):
    """Count ``count`` successes at once, in the bucket of ``age`` seconds ago (when the latest of
    them happened): a breaker tallies its successes in process and writes them in batches (see
    ``StateStore``'s ``batch_seconds``). Counts already outside the window are dropped."""

    key: str
    count: int
    age: float
    window: float


# -- circuit state -------------------------------------------------------------------------------------------


@attrs.frozen
class ReadCircuit(Operation[Circuit]):
    """The circuit as it is (a key never seen is closed)."""

    key: str


@attrs.frozen
class TryProbe(Operation[tuple[bool, Circuit]]):
    """Take a half-open probe slot for ``token``; answers (taken, the circuit after).

    An open circuit whose break has ended turns half-open (a new epoch). A half-open circuit admits
    at most ``probes`` tokens at a time; a slot is held until its outcome moves the circuit,
    ``ReleaseProbe`` frees it, or ``lease`` seconds pass (a probe that never reports, such as a
    crashed process, cannot keep the circuit half-open for ever). A closed or still open circuit
    takes no probe.
    """

    key: str
    token: str
    probes: int
    lease: float


@attrs.frozen
class ReleaseProbe(Operation[None]):
    """Free ``token``'s probe slot (its call sent nothing, or its outcome was no evidence)."""

    key: str
    token: str


@attrs.frozen
class OpenCircuit(Operation[bool]):
    """If the circuit is still at ``epoch``: open it for ``seconds`` (a new epoch, probe slots freed,
    ``break_duration = seconds``). False when another caller moved it first."""

    key: str
    epoch: int
    seconds: float


@attrs.frozen
class CloseCircuit(Operation[bool]):
    """If the circuit is still at ``epoch``: close it (a new epoch, ``break_duration = 0``) and clear
    its window of outcomes. False when another caller moved it first."""

    key: str
    epoch: int


@attrs.frozen
class ResetCircuit(Operation[None]):
    """Close the circuit whatever its epoch, and clear its window (a manual reset)."""

    key: str


# -- keyed semaphore with leases (guards) --------------------------------------------------------------------


@attrs.frozen
class Acquire(Operation[bool]):
    """Hold every key in ``keys`` for ``token``, or none of them; False while any is at its limit.

    A key admits ``limit`` holders at a time; a hold ends at ``Release`` or after ``lease`` seconds
    (a crashed holder frees its keys). All keys are taken in one atomic step, so no caller ever
    holds one key while waiting for another: no deadlock. A token that already holds a key keeps its
    place (its lease is renewed).
    """

    keys: tuple[str, ...] = attrs.field(converter=_key_list)
    limit: int
    lease: float
    token: str


@attrs.frozen
class Release(Operation[None]):
    """End ``token``'s holds on ``keys``; a hold of another token is left alone."""

    keys: tuple[str, ...] = attrs.field(converter=_key_list)
    token: str


# -- adaptive concurrency limit with leases (concurrency) ---------------------------------------------------


@attrs.frozen
class Admission:
    """The answer to ``EnterSlot``: whether the slot was taken, and the endpoint as it stood."""

    entered: bool
    #: The limit at that moment (fractional: ``floor(limit)`` slots are open).
    limit: float
    #: Slots held once the operation ran (this caller's included when ``entered``).
    in_flight: int
    #: Changes each time the limit is lowered; ``LeaveSlot`` names the one its attempt was admitted
    #: under, so of the answers to attempts sent under one limit only the first lowers it.
    epoch: int


#: How much a success raises the limit in slow start: a slot, so the limit doubles per round trip
#: (as TCP's). Half a slot kept 64 tasks queued behind a 16-slot vendor for six round trips, which
#: doubled their p99 (bench/capacity.py); a vendor refuses at once, so the overshoot is a slot or two.
SLOW_START_STEP = 1.0
#: The fewest slots ``concurrency_limit`` counts wins per: a vendor of one slot still sees a probe
#: only every ``4 * probe_after`` successes.
PROBE_SLOTS = 4


def concurrency_limit(
    base: float, wins: int, slow: bool, minimum: int, maximum: int, probe_after: int
) -> float:
    """The limit of a record (the arithmetic both stores mirror): in slow start its ``base``;
    after it, ``base`` plus the cubic climb of ``wins`` successes since it was last lowered (one
    slot more at ``probe_after`` wins per slot of the base, counting at least ``PROBE_SLOTS``,
    eight at twice that); within ``[minimum, maximum]``. Counted per slot, a probe comes after as
    many round trips whatever the vendor's capacity, so its refusal is as rare a share of the
    attempts at 16 slots as at 4 (counted per call, a 16-slot vendor refused one probe every 0.4 s
    and the refused calls' backoff doubled the p99 of bench/capacity.py)."""
    limit = base if slow else base + (wins / (probe_after * max(base, PROBE_SLOTS))) ** 3
    return float(max(minimum, min(maximum, limit)))


@attrs.frozen
class EnterSlot(Operation[Admission]):
    """Take one of the endpoint's slots for ``token`` if fewer than ``floor(limit)`` are held.

    A slot is a lease: it ends at ``LeaveSlot`` or after ``lease`` seconds (a crashed holder frees
    its slots). A new record starts at ``initial`` in slow start. A token that already holds a slot
    keeps it (its lease is renewed). Nothing changes when no slot is free.
    """

    key: str
    token: str
    lease: float
    initial: int
    minimum: int
    maximum: int
    probe_after: int


@attrs.frozen
class LeaveSlot(Operation[None]):
    """End ``token``'s slot, and learn from its attempt's answer (the ``verdict``):

    * ``"grow"``: a success at a limit in use. In slow start the base climbs by
      ``SLOW_START_STEP``. After it, the wins since the limit was last lowered count one more (the
      cubic climb of ``concurrency_limit``), and a success admitted under the current ``epoch``
      with two slots or more in flight (``in_flight``, counted when it was admitted) above the base
      proves the capacity grew: slow start again, from there. (One above is no proof: the vendor
      may have freed a slot its caller has not yet let go of.)
    * ``"lower"``: overload. If the record is still at ``epoch``: the base becomes ``target`` (never
      above the limit as it stands, within ``[minimum, maximum]``), slow start ends, the wins
      restart at 0 and the epoch changes. With ``capacity`` (the vendor refused the attempt for
      want of room) the target is at least the slots held as the answer came, this one aside (an
      attempt admitted early in a burst may reach the vendor late), and at most the limit less
      one; refused again before a success admitted under the new limit, the limit is halved and
      slow start takes it back up to that measure (a vendor whose capacity fell is found within
      a round trip or two, and an undershoot is undone as fast). Another epoch: the limit was
      lowered already by an answer to an attempt sent under that limit; only a refusal for want
      of room with fewer in flight than the limit allows lowers it further (to that count, less
      one), keeping the epoch.
    * ``"hold"``: nothing is learned.
    """

    key: str
    token: str
    verdict: Verdict
    epoch: int
    target: float
    in_flight: int
    capacity: bool
    initial: int
    minimum: int
    maximum: int
    probe_after: int


# -- pauses (a server's Retry-After for every request of a host) ---------------------------------------------


@attrs.frozen
class Pause(Operation[None]):
    """Pause ``key`` for ``seconds`` from now, unless it is already paused for longer."""

    key: str
    seconds: float


@attrs.frozen
class EndPause(Operation[None]):
    """End ``key``'s pause now, however long it had left (``transport.limiter.clear()``)."""

    key: str


@attrs.frozen
class PausedFor(Operation[float]):
    """Seconds left of the pause (0 when not paused)."""

    key: str


# -- rate limiter (fixed and learned rate) -------------------------------------------------------------------


@attrs.frozen
class LimiterAcquire(Operation[RateTicket]):
    """Reserve one send under ``key`` and say how long to wait for it.

    The pace is the lower of ``ceiling`` (a fixed rate, 0 for none) and the learned rate (0 while
    none); with neither, the send goes at once. Pacing is a token bucket of ``burst`` tokens refilled
    at the pace, full when pacing starts; a send takes a token, and may take it before it exists
    (the level goes negative: the send is queued), waiting ``-level / pace`` seconds. The
    reservation is made only when ``wait <= max_wait``; otherwise nothing changes and the caller
    learns how long it would have waited. A reserved send is counted in ``sent_rate`` (sends in the
    current one-second slot plus the previous slot's, weighted by how much of the last second it
    still covers).

    Spare sends (all default to 0). ``spare``: also reserve up to that many more sends that can go
    at once (whole tokens beyond this send's; all of them when nothing paces), only while nothing
    has been learned (a learned rate wants every send's answer); they are answered in the ticket's
    ``spare`` and not counted yet. ``spent`` and ``unspent``: the spares of earlier answers that were
    sent (counted in the slot of ``age`` seconds ago, when the latest of them was sent; dropped when
    that is before the previous slot) and that were not (their tokens go back), settled first,
    before this send is reserved, whatever the answer.
    """

    key: str
    ceiling: float
    burst: float
    max_wait: float
    spare: int = 0
    spent: int = 0
    unspent: int = 0
    age: float = 0.0


@attrs.frozen
class LimiterAdmit(Operation[RateTicket]):
    """``PausedFor`` and ``LimiterAcquire`` in one step: while ``key`` is paused, the ticket's
    ``paused`` is the time left and nothing is reserved or counted (its other fields are those of
    ``LimiterState``); otherwise the reservation of ``LimiterAcquire``.

    Why one operation: a limiter that honours pauses would otherwise make two round trips to a
    shared store before every send, and the pause check and the reservation belong together (a send
    reserved after a stale "not paused" would be counted though held back). ``spent`` and
    ``unspent`` are settled while paused too; ``spare`` is granted only when a send is reserved.
    """

    key: str
    ceiling: float
    burst: float
    max_wait: float
    spare: int = 0
    spent: int = 0
    unspent: int = 0
    age: float = 0.0


@attrs.frozen
class LimiterState(Operation[RateTicket]):
    """The learned-rate record as it stands, reserving nothing (``wait`` is 0), after settling
    ``spent`` and ``unspent`` spare sends as ``LimiterAcquire`` does (a 429 is weighed against every
    send made)."""

    key: str
    spent: int = 0
    unspent: int = 0
    age: float = 0.0


@attrs.frozen
class LimiterLearn(Operation[bool]):
    """If the record is still at ``version``: set the learned ``rate`` and ``max_rate``; when
    ``throttled``, also restart ``since_throttle`` and change the version (so the other answers to
    sends paced under the old rate lower it no further). The bucket is refilled at the old pace up
    to now first. False when the version had changed."""

    key: str
    version: int
    rate: float
    max_rate: float
    throttled: bool


class StateStore(Protocol):
    """Runs operations (see the module docstring for time, keys and the operations' values).

    A store may also say, as ``batch_seconds``, how long strategies may keep write-only counts (a
    budget's deposits, a breaker's successes) in process before writing them: ``math.inf`` for the
    in-process store (written when next read), a fraction of a second for a shared one (so the
    fleet sees them soon). A store without it gets every count written at once.
    """

    def run(self, op: Operation[_R], now: float) -> _R:
        """Run ``op`` atomically at ``now`` (the caller's monotonic clock) and answer its result."""
        ...

    async def arun(self, op: Operation[_R], now: float) -> _R:
        """``run`` for async callers (a store whose ``run`` never blocks may simply call it)."""
        ...
