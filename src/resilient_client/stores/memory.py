"""MemoryState: the in-process state store, the default.

One ``threading.Lock`` guards everything. It is held for a few dictionary operations per call, never
across I/O or a wait (no operation blocks: waiting is the caller's job, with its own clock), so the
same store serves threads, asyncio and trio; the async twins simply call the sync operations.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar

import attrs

from resilient_client.stores._protocol import Circuit, CircuitState, RateTicket, StateStore

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
    __slots__ = ("break_duration", "closed_view", "epoch", "probes", "state", "until")

    def __init__(self) -> None:
        super().__init__()
        self.state: CircuitState = "closed"
        self.epoch = 0
        self.until = 0.0
        self.break_duration = 0.0
        #: probe token -> end of its lease
        self.probes: dict[str, float] = {}
        #: The view of this circuit while closed, made once per epoch: every call of a healthy
        #: vendor asks for it, and a closed circuit's view does not depend on the time.
        self.closed_view: Circuit | None = None


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
        paces = [p for p in (self.ceiling, self.rate) if p > 0]
        return min(paces) if paces else 0.0

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


_R = TypeVar("_R", bound=_Record)

#: The view of a circuit the store holds nothing for (never opened, or forgotten): the usual answer
#: for a healthy vendor, so it is made once.
_NEVER_OPENED = Circuit("closed", 0, 0.0, 0.0)
#: The rate record of a key never paced (or forgotten).
_NOTHING_LEARNED = RateTicket(0.0, 0, 0.0, 0.0, 0.0, 0.0)


def _drop_expired(records: dict[str, _R], now: float) -> None:
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
        #: True while no circuit is open or half-open: a breaker may then let a call through on
        #: this attribute alone, with no operation (read without the lock: a bool is read whole,
        #: and a call that reads it just before a circuit opens is one the opening did not stop).
        self.circuits_closed = True

    def __repr__(self) -> str:
        return f"MemoryState(idle_seconds={self._idle!r})"

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
        self._recount_circuits()
        _drop_expired(self._leases, now)
        _drop_expired(self._pauses, now)
        _drop_expired(self._rates, now)

    # -- token bucket ---------------------------------------------------------------------------

    def deposit(self, key: str, amount: float, cap: float, now: float) -> float:
        # Every request deposits: ``_bucket`` written out here, and no min() calls.
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(cap)
            tokens = bucket.tokens
            tokens = (cap if tokens > cap else tokens) + amount
            bucket.tokens = cap if tokens > cap else tokens
            self._touch(bucket, now)
            return bucket.tokens

    def try_spend(self, key: str, cost: float, cap: float, now: float, earned: float = 0.0) -> bool:
        """The protocol's ``try_spend``; ``earned`` (this store's own extension) is a ``deposit`` of
        that many tokens made first, in the same step: a budget's retry, one lock instead of two."""
        # Every retry spends: the bucket's lookup written out here, as in ``deposit``.
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(cap)
            tokens = bucket.tokens
            if tokens > cap:
                tokens = cap
            if earned > 0:
                tokens += earned
                if tokens > cap:
                    tokens = cap
            bucket.tokens = tokens
            self._touch(bucket, now)
            if bucket.tokens < cost:
                return False
            bucket.tokens -= cost
            return True

    # -- sliding window of outcomes ----------------------------------------------------------------

    def _window(self, key: str, window: float, now: float) -> tuple[_Window, int]:
        """The window of ``key`` slid to now, and now's bucket index (call with the lock held)."""
        width = window / _WINDOW_BUCKETS
        found = self._windows.get(key)
        if found is None or found.width != width:
            found = self._windows[key] = _Window(width)
        current = math.floor(now / width)
        if current != found.current:
            found.slide(current)
        return found, current

    def record_outcome(
        self, key: str, failed: bool, window: float, now: float, successes: int = 0, age: float = 0.0
    ) -> tuple[int, int]:
        """The protocol's ``record_outcome``; ``successes`` and ``age`` (this store's own extension)
        are a ``record_successes`` made first, in the same step: a breaker's failure, one lock
        instead of two."""
        with self._lock:
            found, current = self._window(key, window, now)
            if successes:
                self._count_successes(found, current, successes, age, now)
            # Every call counts an outcome, so the usual case (same bucket as the last outcome) is
            # a few additions: the bucket is at hand and the sums are kept, not recounted.
            bucket = found.bucket
            if failed:
                bucket[0] += 1
                found.failures += 1
            bucket[1] += 1
            found.total += 1
            self._touch(found, now)
            return found.failures, found.total

    def record_successes(self, key: str, count: int, age: float, window: float, now: float) -> None:
        with self._lock:
            found, current = self._window(key, window, now)
            self._count_successes(found, current, count, age, now)
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
        if circuit.state == "closed":
            view = circuit.closed_view
            if view is None or view.epoch != circuit.epoch or view.break_duration != circuit.break_duration:
                view = circuit.closed_view = Circuit("closed", circuit.epoch, 0.0, circuit.break_duration)
            return view
        if circuit.state == "open":
            retry_after = max(0.0, circuit.until - now)
        elif circuit.state == "half_open" and circuit.probes:
            retry_after = max(0.0, min(circuit.probes.values()) - now)
        else:
            retry_after = 0.0
        return Circuit(circuit.state, circuit.epoch, retry_after, circuit.break_duration)

    def circuit(self, key: str, now: float) -> Circuit:
        with self._lock:
            found = self._circuits.get(key)
            if found is None:
                return _NEVER_OPENED
            view = found.closed_view  # every call of a healthy vendor asks: no _view() call for it
            if view is not None and view.epoch == found.epoch and found.state == "closed":
                return view
            return self._view(found, now)

    def try_probe(self, key: str, token: str, probes: int, lease: float, now: float) -> tuple[bool, Circuit]:
        with self._lock:
            circuit = self._circuit(key)
            if circuit.state == "open" and now >= circuit.until:
                circuit.state = "half_open"
                circuit.epoch = next(self._serials)
                circuit.probes = {}
                self._recount_circuits()
            taken = False
            if circuit.state == "half_open":
                live = {t: end for t, end in circuit.probes.items() if end > now}
                if token in live or len(live) < probes:
                    live[token] = now + lease
                    taken = True
                circuit.probes = live
            self._touch(circuit, now, max(circuit.until, *circuit.probes.values(), 0.0))
            return taken, self._view(circuit, now)

    def release_probe(self, key: str, token: str, now: float) -> None:
        with self._lock:
            found = self._circuits.get(key)
            if found is not None:
                found.probes.pop(token, None)

    def _move(self, circuit: _Circuit, state: CircuitState, until: float, break_duration: float) -> None:
        circuit.state = state
        circuit.epoch = next(self._serials)
        circuit.until = until
        circuit.break_duration = break_duration
        circuit.probes = {}
        self._recount_circuits()

    def _recount_circuits(self) -> None:
        # Only on transitions (rare): one pass over the circuits, never on the success path.
        self.circuits_closed = all(c.state == "closed" for c in self._circuits.values())

    def open_circuit(self, key: str, epoch: int, seconds: float, now: float) -> bool:
        with self._lock:
            circuit = self._circuit(key)
            if circuit.epoch != epoch:
                return False
            self._move(circuit, "open", now + seconds, seconds)
            self._touch(circuit, now, circuit.until)
            return True

    def close_circuit(self, key: str, epoch: int, now: float) -> bool:
        with self._lock:
            circuit = self._circuit(key)
            if circuit.epoch != epoch:
                return False
            self._move(circuit, "closed", 0.0, 0.0)
            self._windows.pop(key, None)
            self._touch(circuit, now)
            return True

    def reset_circuit(self, key: str, now: float) -> None:
        with self._lock:
            circuit = self._circuit(key)
            self._move(circuit, "closed", 0.0, 0.0)
            self._windows.pop(key, None)
            self._touch(circuit, now)

    # -- keyed semaphore with leases -------------------------------------------------------------------

    def try_acquire(self, keys: Sequence[str], limit: int, lease: float, token: str, now: float) -> bool:
        if not keys:
            raise ValueError("try_acquire needs at least one key")
        with self._lock:
            return self._try_acquire(keys, limit, lease, token, now)

    def _try_acquire(self, keys: Sequence[str], limit: int, lease: float, token: str, now: float) -> bool:
        """try_acquire's step, the lock held."""
        held = []
        for key in sorted(set(keys)):
            leases = self._leases.get(key)
            if leases is None:
                leases = self._leases[key] = _Leases()
            leases.holders = {t: end for t, end in leases.holders.items() if end > now}
            if token not in leases.holders and len(leases.holders) >= limit:
                return False
            held.append(leases)
        ends = now + lease
        for leases in held:
            leases.holders[token] = ends
            # Every record kept before any is touched: a touch may sweep, and a new record not yet
            # kept (expiry 0) would be swept away, its hold with it, while this call still holds it.
            leases.expires = max(leases.expires, ends)
        for leases in held:
            # Kept until the last of its holders' leases ends, not just this one's (a shorter lease
            # taken after a longer one must not let a sweep drop the longer hold).
            self._touch(leases, now, max(leases.holders.values()))
        return True

    def release(self, keys: Sequence[str], token: str, now: float) -> None:
        with self._lock:
            for key in keys:
                leases = self._leases.get(key)
                if leases is not None and leases.holders.pop(token, None) is not None and not leases.holders:
                    del self._leases[key]

    # -- pauses ------------------------------------------------------------------------------------------

    def pause(self, key: str, seconds: float, now: float) -> None:
        with self._lock:
            found = self._pauses.get(key)
            if found is None:
                found = self._pauses[key] = _Pause()
            found.until = max(found.until, now + seconds)
            self._touch(found, now, found.until)

    def paused_for(self, key: str, now: float) -> float:
        with self._lock:
            found = self._pauses.get(key)
            return 0.0 if found is None else max(0.0, found.until - now)

    # -- rate limiter --------------------------------------------------------------------------------------

    def _rate(self, key: str, now: float) -> _Rate:
        found = self._rates.get(key)
        if found is None:
            found = self._rates[key] = _Rate(now)
        found.roll(now)
        return found

    def _ticket(self, record: _Rate, wait: float, now: float) -> RateTicket:
        since = now - record.throttled_at if record.rate > 0 else 0.0
        return RateTicket(wait, record.version, record.rate, record.max_rate, since, record.sent_rate(now))

    def limiter_acquire(
        self, key: str, ceiling: float, burst: float, max_wait: float, now: float
    ) -> RateTicket:
        with self._lock:
            return self._reserve(key, ceiling, burst, max_wait, now)

    def limiter_admit(
        self, key: str, ceiling: float, burst: float, max_wait: float, now: float
    ) -> RateTicket:
        with self._lock:
            return self._admit(key, ceiling, burst, max_wait, now)

    def _admit(self, key: str, ceiling: float, burst: float, max_wait: float, now: float) -> RateTicket:
        """limiter_admit's step, the lock held."""
        pause = self._pauses.get(key)
        if pause is not None and pause.until > now:
            return attrs.evolve(self._state(key, now), paused=pause.until - now)
        return self._reserve(key, ceiling, burst, max_wait, now)

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
        if not keys:
            raise ValueError("limiter_admit_and_acquire needs at least one key")
        with self._lock:
            ticket = self._admit(key, ceiling, burst, max_wait, now)
            if ticket.paused > 0 or ticket.wait > 0:
                return ticket, False
            return ticket, self._try_acquire(keys, limit, lease, token, now)

    def _reserve(self, key: str, ceiling: float, burst: float, max_wait: float, now: float) -> RateTicket:
        """limiter_acquire's step, the lock held."""
        record = self._rate(key, now)
        record.refill(burst, now)
        record.ceiling = ceiling
        pace = record.pace()
        wait = 0.0
        if pace > 0:
            tokens = min(burst, record.tokens) - 1
            wait = -tokens / pace if tokens < 0 else 0.0
            if wait > max_wait:
                return self._ticket(record, wait, now)
            record.tokens = tokens
        record.count += 1
        self._touch(record, now)
        return self._ticket(record, wait, now)

    def limiter_state(self, key: str, now: float) -> RateTicket:
        with self._lock:
            return self._state(key, now)

    def _state(self, key: str, now: float) -> RateTicket:
        """limiter_state's step, the lock held."""
        found = self._rates.get(key)
        if found is None:
            return _NOTHING_LEARNED
        found.roll(now)
        return self._ticket(found, 0.0, now)

    def limiter_learn(
        self, key: str, version: int, rate: float, max_rate: float, throttled: bool, now: float
    ) -> bool:
        with self._lock:
            record = self._rate(key, now)
            if record.version != version:
                return False
            if record.pace() > 0:
                record.tokens += (now - record.refilled_at) * record.pace()
            record.refilled_at = now
            record.rate = rate
            record.max_rate = max_rate
            if throttled:
                record.throttled_at = now
                record.version = next(self._serials)
            self._touch(record, now)
            return True

    # -- async twins: nothing here blocks, so each is its sync operation --------------------------------

    async def adeposit(self, key: str, amount: float, cap: float, now: float) -> float:
        return self.deposit(key, amount, cap, now)

    async def atry_spend(self, key: str, cost: float, cap: float, now: float) -> bool:
        return self.try_spend(key, cost, cap, now)

    async def arecord_outcome(self, key: str, failed: bool, window: float, now: float) -> tuple[int, int]:
        return self.record_outcome(key, failed, window, now)

    async def arecord_successes(self, key: str, count: int, age: float, window: float, now: float) -> None:
        self.record_successes(key, count, age, window, now)

    async def acircuit(self, key: str, now: float) -> Circuit:
        return self.circuit(key, now)

    async def atry_probe(
        self, key: str, token: str, probes: int, lease: float, now: float
    ) -> tuple[bool, Circuit]:
        return self.try_probe(key, token, probes, lease, now)

    async def arelease_probe(self, key: str, token: str, now: float) -> None:
        self.release_probe(key, token, now)

    async def aopen_circuit(self, key: str, epoch: int, seconds: float, now: float) -> bool:
        return self.open_circuit(key, epoch, seconds, now)

    async def aclose_circuit(self, key: str, epoch: int, now: float) -> bool:
        return self.close_circuit(key, epoch, now)

    async def areset_circuit(self, key: str, now: float) -> None:
        self.reset_circuit(key, now)

    async def atry_acquire(
        self, keys: Sequence[str], limit: int, lease: float, token: str, now: float
    ) -> bool:
        return self.try_acquire(keys, limit, lease, token, now)

    async def arelease(self, keys: Sequence[str], token: str, now: float) -> None:
        self.release(keys, token, now)

    async def apause(self, key: str, seconds: float, now: float) -> None:
        self.pause(key, seconds, now)

    async def apaused_for(self, key: str, now: float) -> float:
        return self.paused_for(key, now)

    async def alimiter_acquire(
        self, key: str, ceiling: float, burst: float, max_wait: float, now: float
    ) -> RateTicket:
        return self.limiter_acquire(key, ceiling, burst, max_wait, now)

    async def alimiter_admit(
        self, key: str, ceiling: float, burst: float, max_wait: float, now: float
    ) -> RateTicket:
        return self.limiter_admit(key, ceiling, burst, max_wait, now)

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
        return self.limiter_admit_and_acquire(key, ceiling, burst, max_wait, keys, limit, lease, token, now)

    async def alimiter_state(self, key: str, now: float) -> RateTicket:
        return self.limiter_state(key, now)

    async def alimiter_learn(
        self, key: str, version: int, rate: float, max_rate: float, throttled: bool, now: float
    ) -> bool:
        return self.limiter_learn(key, version, rate, max_rate, throttled, now)


if TYPE_CHECKING:  # mypy checks that MemoryState has every operation of the protocol, as declared
    _conforms: StateStore = MemoryState()
