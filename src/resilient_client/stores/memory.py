"""MemoryState: the in-process state store, the default.

One ``threading.Lock`` guards everything: ``run`` takes it and runs the operation's step (one method
per operation class, found by the operation's type). It is held for a few dictionary operations per
call, never across I/O or a wait (no operation blocks: waiting is the caller's job, with its own
clock), so the same store serves threads, asyncio and trio; ``arun`` simply calls ``run``.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from resilient_client.stores._protocol import (
    SLOW_START_STEP,
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
    concurrency_limit,
)

__all__ = ["MemoryState"]

_WINDOW_BUCKETS = 10
# Sweeping idle keys costs one pass over the dictionaries; once per this many operations keeps that
# pass a small fraction of the work while bounding what idle keys can hold.
_SWEEP_EVERY = 1024


class _Record:
    __slots__ = ("expires",)

    def __init__(self) -> None:
        self.expires = 0.0


class _Bucket(_Record):
    __slots__ = ("tokens",)

    def __init__(self, tokens: float) -> None:
        super().__init__()
        self.tokens = tokens


class _Window(_Record):
    __slots__ = ("bucket", "counts", "current", "failures", "total", "width")

    def __init__(self, width: float) -> None:
        super().__init__()
        self.width = width
        #: bucket index (``floor(now / width)``) -> [failures, total]
        self.counts: dict[int, list[int]] = {}
        #: The bucket index of the last outcome, and its counts: old buckets are dropped only when
        #: it changes (the last outcome, in the same bucket, dropped all this one would).
        self.current: int | None = None
        self.bucket = [0, 0]
        #: Sums over ``counts``, kept as outcomes come and buckets go (every success is counted:
        #: summing the buckets each time would cost the success path more than the rest of it).
        self.failures = 0
        self.total = 0

    def slide(self, current: int) -> None:
        """Make ``current`` the bucket outcomes go to, dropping the buckets the window left behind."""
        counts = self.counts
        for index in [i for i in counts if i <= current - _WINDOW_BUCKETS]:
            failures, total = counts.pop(index)
            self.failures -= failures
            self.total -= total
        bucket = counts.get(current)
        if bucket is None:
            bucket = counts[current] = [0, 0]
        self.current = current
        self.bucket = bucket


class _Circuit(_Record):
    __slots__ = ("break_duration", "epoch", "probes", "state", "until")

    def __init__(self) -> None:
        super().__init__()
        self.state: CircuitState = "closed"
        self.epoch = 0
        self.until = 0.0
        self.break_duration = 0.0
        #: probe token -> end of its lease
        self.probes: dict[str, float] = {}


class _Leases(_Record):
    __slots__ = ("holders",)

    def __init__(self) -> None:
        super().__init__()
        #: token -> end of its lease
        self.holders: dict[str, float] = {}


class _Pause(_Record):
    __slots__ = ("until",)

    def __init__(self) -> None:
        super().__init__()
        self.until = 0.0


class _Rate(_Record):
    __slots__ = (
        "ceiling",
        "count",
        "max_rate",
        "previous",
        "rate",
        "refilled_at",
        "slot",
        "throttled_at",
        "tokens",
        "version",
    )

    def __init__(self, now: float) -> None:
        super().__init__()
        self.tokens = math.inf  # full, whatever the burst
        self.refilled_at = now
        self.ceiling = 0.0
        self.rate = 0.0
        self.max_rate = 0.0
        self.throttled_at = now
        self.version = 0
        self.slot = math.floor(now)
        self.count = 0
        self.previous = 0

    def pace(self) -> float:
        """The lower of the fixed and the learned rate that are set (0: neither)."""
        ceiling, rate = self.ceiling, self.rate
        if ceiling > 0:
            return min(ceiling, rate) if rate > 0 else ceiling
        return rate if rate > 0 else 0.0

    def refill(self, burst: float, now: float) -> None:
        pace = self.pace()
        if pace > 0:
            self.tokens = min(burst, self.tokens + (now - self.refilled_at) * pace)
        else:
            self.tokens = burst
        self.refilled_at = now

    def roll(self, now: float) -> None:
        slot = math.floor(now)
        if slot != self.slot:
            self.previous = self.count if slot == self.slot + 1 else 0
            self.count = 0
            self.slot = slot

    def sent_rate(self, now: float) -> float:
        return self.previous * max(0.0, 1.0 - (now - self.slot)) + self.count

    def settle(self, spent: int, unspent: int, age: float, now: float) -> None:
        """Count the spare sends made in the slot of the latest (``age`` seconds ago; rolled to
        ``now`` first); give back the tokens of those not made."""
        if spent:
            slot = math.floor(now - max(0.0, age))
            if slot >= self.slot:
                self.count += spent
            elif slot == self.slot - 1:
                self.previous += spent
        self.tokens += unspent


class _Slots(_Record):
    """An endpoint's concurrency limit and the leases of its slots (``EnterSlot``, ``LeaveSlot``)."""

    __slots__ = ("base", "ceiling", "epoch", "holders", "slow", "streak", "wins")

    def __init__(self, base: float) -> None:
        super().__init__()
        self.base = base
        self.slow = True
        self.wins = 0
        self.epoch = 0
        #: Where slow start stops (0: at the maximum).
        self.ceiling = 0.0
        #: Lowerings for want of room since a success admitted under the current limit.
        self.streak = 0
        #: token -> the end of its lease
        self.holders: dict[str, float] = {}


_Kept = TypeVar("_Kept", bound=_Record)
_T = TypeVar("_T")

#: The view of a circuit the store holds nothing for (never opened, or forgotten).
_NEVER_OPENED = Circuit("closed", 0, 0.0, 0.0)
#: The rate record of a key never paced (or forgotten).
_NOTHING_LEARNED = RateTicket(0.0, 0, 0.0, 0.0, 0.0, 0.0)


def _drop_expired(records: dict[str, _Kept], now: float) -> None:
    for key in [k for k, r in records.items() if r.expires <= now]:
        del records[key]


class MemoryState:
    """The in-process StateStore: thread-safe, never blocking, idle keys forgotten after ``idle_seconds``."""

    #: Write-only counts (budget deposits, breaker successes) may stay with the strategy until it
    #: reads the state again: in one process nobody else reads them meanwhile.
    batch_seconds = math.inf

    def __init__(self, idle_seconds: float = 600.0) -> None:
        if not 0 < idle_seconds < math.inf:
            raise ValueError(f"idle_seconds must be a positive number of seconds, not {idle_seconds!r}")
        self._idle = idle_seconds
        self._lock = threading.Lock()
        self._serials = itertools.count(1)
        self._operations = 0
        self._buckets: dict[str, _Bucket] = {}
        self._windows: dict[str, _Window] = {}
        self._circuits: dict[str, _Circuit] = {}
        self._leases: dict[str, _Leases] = {}
        self._pauses: dict[str, _Pause] = {}
        self._rates: dict[str, _Rate] = {}
        self._slots: dict[str, _Slots] = {}

    def __repr__(self) -> str:
        return f"MemoryState(idle_seconds={self._idle!r})"

    def run(self, op: Operation[_T], now: float) -> _T:
        """Run ``op`` under the store's lock (see ``StateStore``)."""
        try:
            step = _STEPS[type(op)]
        except KeyError:
            raise TypeError(f"MemoryState cannot run {op!r}: not a store operation") from None
        with self._lock:
            return step(self, op, now)  # type: ignore[return-value]  # _STEPS pairs each op with its step

    async def arun(self, op: Operation[_T], now: float) -> _T:
        """``run``: it never blocks, so there is nothing to await."""
        return self.run(op, now)

    def _touch(self, record: _Record, now: float, until: float = 0.0) -> None:
        """Keep ``record`` for the idle time from now, and at least until ``until``; sweep now and then."""
        expires = now + self._idle
        record.expires = until if until > expires else expires
        self._operations += 1
        if self._operations % _SWEEP_EVERY == 0:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        _drop_expired(self._buckets, now)
        _drop_expired(self._windows, now)
        _drop_expired(self._circuits, now)
        _drop_expired(self._leases, now)
        _drop_expired(self._pauses, now)
        _drop_expired(self._rates, now)
        _drop_expired(self._slots, now)

    # Each step below runs one operation with the lock held (see ``run``).

    # -- token bucket ---------------------------------------------------------------------------

    def _bucket(self, key: str, cap: float) -> _Bucket:
        """The bucket of ``key``, cut to ``cap`` (a new one is full)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(cap)
        bucket.tokens = min(bucket.tokens, cap)
        return bucket

    def _deposit(self, op: Deposit, now: float) -> float:
        bucket = self._bucket(op.key, op.cap)
        bucket.tokens = min(op.cap, bucket.tokens + op.amount)
        self._touch(bucket, now)
        return bucket.tokens

    def _try_spend(self, op: TrySpend, now: float) -> bool:
        bucket = self._bucket(op.key, op.cap)
        if op.earned > 0:
            bucket.tokens = min(op.cap, bucket.tokens + op.earned)
        self._touch(bucket, now)
        if bucket.tokens < op.cost:
            return False
        bucket.tokens -= op.cost
        return True

    # -- sliding window of outcomes ----------------------------------------------------------------

    def _window(self, key: str, window: float, now: float) -> tuple[_Window, int]:
        """The window of ``key`` slid to now, and now's bucket index."""
        width = window / _WINDOW_BUCKETS
        found = self._windows.get(key)
        if found is None or found.width != width:
            found = self._windows[key] = _Window(width)
        current = math.floor(now / width)
        if current != found.current:
            found.slide(current)
        return found, current

    def _record_outcome(self, op: RecordOutcome, now: float) -> tuple[int, int]:
        found, current = self._window(op.key, op.window, now)
        if op.successes:
            self._count_successes(found, current, op.successes, op.age, now)
        bucket = found.bucket
        if op.failed:
            bucket[0] += 1
            found.failures += 1
        bucket[1] += 1
        found.total += 1
        self._touch(found, now)
        return found.failures, found.total

    def _record_successes(self, op: RecordSuccesses, now: float) -> None:
        found, current = self._window(op.key, op.window, now)
        self._count_successes(found, current, op.count, op.age, now)
        self._touch(found, now)

    @staticmethod
    def _count_successes(found: _Window, current: int, count: int, age: float, now: float) -> None:
        index = min(current, math.floor((now - max(0.0, age)) / found.width))
        if index > current - _WINDOW_BUCKETS:
            bucket = found.counts.get(index)
            if bucket is None:
                bucket = found.counts[index] = [0, 0]
            bucket[1] += count
            found.total += count

    # -- circuit state -------------------------------------------------------------------------------

    def _circuit(self, key: str) -> _Circuit:
        found = self._circuits.get(key)
        if found is None:
            found = self._circuits[key] = _Circuit()
        return found

    @staticmethod
    def _view(circuit: _Circuit, now: float) -> Circuit:
        if circuit.state == "open":
            retry_after = max(0.0, circuit.until - now)
        elif circuit.state == "half_open" and circuit.probes:
            retry_after = max(0.0, min(circuit.probes.values()) - now)
        else:
            retry_after = 0.0
        return Circuit(circuit.state, circuit.epoch, retry_after, circuit.break_duration)

    def _read_circuit(self, op: ReadCircuit, now: float) -> Circuit:
        found = self._circuits.get(op.key)
        return _NEVER_OPENED if found is None else self._view(found, now)

    def _try_probe(self, op: TryProbe, now: float) -> tuple[bool, Circuit]:
        circuit = self._circuit(op.key)
        if circuit.state == "open" and now >= circuit.until:
            circuit.state = "half_open"
            circuit.epoch = next(self._serials)
            circuit.probes = {}
        taken = False
        if circuit.state == "half_open":
            live = {t: end for t, end in circuit.probes.items() if end > now}
            if op.token in live or len(live) < op.probes:
                live[op.token] = now + op.lease
                taken = True
            circuit.probes = live
        self._touch(circuit, now, max(circuit.until, *circuit.probes.values(), 0.0))
        return taken, self._view(circuit, now)

    def _release_probe(self, op: ReleaseProbe, now: float) -> None:
        found = self._circuits.get(op.key)
        if found is not None:
            found.probes.pop(op.token, None)

    def _move(self, circuit: _Circuit, state: CircuitState, until: float, break_duration: float) -> None:
        circuit.state = state
        circuit.epoch = next(self._serials)
        circuit.until = until
        circuit.break_duration = break_duration
        circuit.probes = {}

    def _open_circuit(self, op: OpenCircuit, now: float) -> bool:
        circuit = self._circuit(op.key)
        if circuit.epoch != op.epoch:
            return False
        self._move(circuit, "open", now + op.seconds, op.seconds)
        self._touch(circuit, now, circuit.until)
        return True

    def _close_circuit(self, op: CloseCircuit, now: float) -> bool:
        circuit = self._circuit(op.key)
        if circuit.epoch != op.epoch:
            return False
        self._closed(op.key, circuit, now)
        return True

    def _reset_circuit(self, op: ResetCircuit, now: float) -> None:
        self._closed(op.key, self._circuit(op.key), now)

    def _closed(self, key: str, circuit: _Circuit, now: float) -> None:
        self._move(circuit, "closed", 0.0, 0.0)
        self._windows.pop(key, None)
        self._touch(circuit, now)

    # -- keyed semaphore with leases -------------------------------------------------------------------

    def _acquire(self, op: Acquire, now: float) -> bool:
        held = []
        for key in sorted(set(op.keys)):
            leases = self._leases.get(key)
            if leases is None:
                leases = self._leases[key] = _Leases()
            leases.holders = {t: end for t, end in leases.holders.items() if end > now}
            if op.token not in leases.holders and len(leases.holders) >= op.limit:
                return False
            held.append(leases)
        ends = now + op.lease
        for leases in held:
            leases.holders[op.token] = ends
            # Every record kept before any is touched: a touch may sweep, and a new record not yet
            # kept (expiry 0) would be swept away, its hold with it, while this call still holds it.
            leases.expires = max(leases.expires, ends)
        for leases in held:
            # Kept until the last of its holders' leases ends, not just this one's (a shorter lease
            # taken after a longer one must not let a sweep drop the longer hold).
            self._touch(leases, now, max(leases.holders.values()))
        return True

    def _release(self, op: Release, now: float) -> None:
        for key in op.keys:
            leases = self._leases.get(key)
            if leases is not None and leases.holders.pop(op.token, None) is not None and not leases.holders:
                del self._leases[key]

    # -- adaptive concurrency limit --------------------------------------------------------------------

    def _enter_slot(self, op: EnterSlot, now: float) -> Admission:
        record = self._slots.get(op.key)
        if record is None:
            record = self._slots[op.key] = _Slots(float(op.initial))
        holders = record.holders
        if any(end <= now for end in holders.values()):
            record.holders = holders = {t: end for t, end in holders.items() if end > now}
        limit = concurrency_limit(
            record.base, record.wins, record.slow, op.minimum, op.maximum, op.probe_after
        )
        entered = op.token in holders or len(holders) < math.floor(limit)
        if entered:
            holders[op.token] = now + op.lease
        # Kept until the last lease ends (a sweep must not drop a record whose slots are held).
        self._touch(record, now, max(holders.values(), default=0.0))
        return Admission(entered, limit, len(holders), record.epoch)

    def _leave_slot(self, op: LeaveSlot, now: float) -> None:
        record = self._slots.get(op.key)
        if record is None:
            return
        held = len(record.holders)
        record.holders.pop(op.token, None)
        if op.verdict == "grow":
            record.streak = 0  # any success between two refusals: the second is a probe's, not a fall
            if record.slow:
                ceiling = record.ceiling or float(op.maximum)
                record.base = min(ceiling, record.base + SLOW_START_STEP)
                if record.base >= ceiling:
                    record.slow, record.wins, record.ceiling = False, 0, 0.0
            elif op.epoch == record.epoch and op.in_flight > math.floor(record.base) + 1:
                record.slow, record.ceiling = True, 0.0
                record.base = min(float(op.maximum), float(op.in_flight))
            else:
                record.wins += 1
        elif op.verdict == "lower":
            limit = concurrency_limit(
                record.base, record.wins, record.slow, op.minimum, op.maximum, op.probe_after
            )
            if op.epoch == record.epoch:
                base, slow, ceiling = min(op.target, limit), False, 0.0
                if op.capacity:
                    measured = min(max(op.target, held - 1.0), limit - 1.0)
                    base = measured
                    if record.streak:  # refused again: halve, then slow start back to the measure
                        base, slow, ceiling = min(measured, limit / 2.0), True, measured
                    record.streak = min(record.streak + 1, 30)
                record.base = max(float(op.minimum), base)
                record.slow, record.ceiling, record.wins = slow, ceiling, 0
                record.epoch = next(self._serials)
            elif op.capacity and max(op.target, held - 1.0) < limit:
                # Sent under an older limit, yet refused with fewer in flight than this one allows.
                record.base = max(float(op.minimum), op.target, held - 1.0)
                record.slow, record.ceiling, record.wins = False, 0.0, 0
        self._touch(record, now, max(record.holders.values(), default=0.0))

    # -- pauses ------------------------------------------------------------------------------------------

    def _pause(self, op: Pause, now: float) -> None:
        found = self._pauses.get(op.key)
        if found is None:
            found = self._pauses[op.key] = _Pause()
        found.until = max(found.until, now + op.seconds)
        self._touch(found, now, found.until)

    def _end_pause(self, op: EndPause, now: float) -> None:
        self._pauses.pop(op.key, None)

    def _paused_for(self, op: PausedFor, now: float) -> float:
        found = self._pauses.get(op.key)
        return 0.0 if found is None else max(0.0, found.until - now)

    # -- rate limiter --------------------------------------------------------------------------------------

    def _rate(self, key: str, now: float) -> _Rate:
        found = self._rates.get(key)
        if found is None:
            found = self._rates[key] = _Rate(now)
        found.roll(now)
        return found

    @staticmethod
    def _ticket(record: _Rate, wait: float, now: float, spare: int = 0) -> RateTicket:
        since = now - record.throttled_at if record.rate > 0 else 0.0
        sent = record.sent_rate(now)
        return RateTicket(wait, record.version, record.rate, record.max_rate, since, sent, 0.0, spare)

    def _limiter_acquire(self, op: LimiterAcquire | LimiterAdmit, now: float) -> RateTicket:
        record = self._rate(op.key, now)
        record.refill(op.burst, now)
        record.ceiling = op.ceiling
        if op.spent or op.unspent:
            record.settle(op.spent, op.unspent, op.age, now)
        pace = record.pace()
        wait = 0.0
        spare = 0
        if pace > 0:
            tokens = min(op.burst, record.tokens) - 1
            wait = -tokens / pace if tokens < 0 else 0.0
            if wait > op.max_wait:
                return self._ticket(record, wait, now)
            if record.rate <= 0 and tokens >= 1:
                spare = min(op.spare, int(tokens))
            record.tokens = tokens - spare
        elif record.rate <= 0:
            spare = op.spare
        record.count += 1
        self._touch(record, now)
        return self._ticket(record, wait, now, spare)

    def _limiter_admit(self, op: LimiterAdmit, now: float) -> RateTicket:
        pause = self._pauses.get(op.key)
        if pause is not None and pause.until > now:
            state = self._limiter_state(LimiterState(op.key, op.spent, op.unspent, op.age), now)
            return attrs.evolve(state, paused=pause.until - now)
        return self._limiter_acquire(op, now)

    def _limiter_state(self, op: LimiterState, now: float) -> RateTicket:
        settling = op.spent or op.unspent
        found = self._rate(op.key, now) if settling else self._rates.get(op.key)
        if found is None:
            return _NOTHING_LEARNED
        found.roll(now)
        if settling:
            found.settle(op.spent, op.unspent, op.age, now)
            self._touch(found, now)
        return self._ticket(found, 0.0, now)

    def _limiter_learn(self, op: LimiterLearn, now: float) -> bool:
        record = self._rate(op.key, now)
        if record.version != op.version:
            return False
        if record.pace() > 0:
            record.tokens += (now - record.refilled_at) * record.pace()
        record.refilled_at = now
        record.rate = op.rate
        record.max_rate = op.max_rate
        if op.throttled:
            record.throttled_at = now
            record.version = next(self._serials)
        self._touch(record, now)
        return True


#: operation type -> the MemoryState step that runs it (``run`` holds the lock around it)
_STEPS: dict[type[Any], Callable[[MemoryState, Any, float], object]] = {
    Deposit: MemoryState._deposit,
    TrySpend: MemoryState._try_spend,
    RecordOutcome: MemoryState._record_outcome,
    RecordSuccesses: MemoryState._record_successes,
    ReadCircuit: MemoryState._read_circuit,
    TryProbe: MemoryState._try_probe,
    ReleaseProbe: MemoryState._release_probe,
    OpenCircuit: MemoryState._open_circuit,
    CloseCircuit: MemoryState._close_circuit,
    ResetCircuit: MemoryState._reset_circuit,
    Acquire: MemoryState._acquire,
    Release: MemoryState._release,
    Pause: MemoryState._pause,
    PausedFor: MemoryState._paused_for,
    EndPause: MemoryState._end_pause,
    LimiterAcquire: MemoryState._limiter_acquire,
    LimiterAdmit: MemoryState._limiter_admit,
    LimiterState: MemoryState._limiter_state,
    LimiterLearn: MemoryState._limiter_learn,
    EnterSlot: MemoryState._enter_slot,
    LeaveSlot: MemoryState._leave_slot,
}


if TYPE_CHECKING:  # mypy checks that MemoryState runs operations as the protocol declares
    _conforms: StateStore = MemoryState()
