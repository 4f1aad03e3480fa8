"""Adaptive concurrency: a learned limit on the attempts in flight per vendor endpoint (SPEC 10).

A vendor at its capacity answers the calls beyond it with 503 (Medable: kTooBusy) at once. Sending
more than it can serve earns only refusals, retries and, with a breaker that counts them, an open
circuit. So each endpoint (vendor, host and port) has a limit on the attempts in flight, learned
from the answers, and an attempt beyond it waits its turn instead of being sent to be refused.

The limit, in the spirit of TCP congestion control and of Netflix concurrency-limits' AIMD, with
the defaults chosen for small vendors:

* **Slow start.** A new endpoint starts at ``initial`` and climbs by a slot per success (doubling
  per round trip) until the first overload, so 64 tasks against a 4-slot vendor start at 8, not at
  64, and overshoot by a slot or two.
* **Overload lowers it.** A 503 or kTooBusy (``service_unavailable``) says the vendor refused the
  attempt that made ``n`` in flight: the limit becomes ``n - 1``, the capacity it just measured
  (``n`` is the larger of the counts when the attempt was admitted and when its answer came: in a
  burst an attempt admitted early may reach the vendor late). Refused again before a success, it
  is halved and slow start takes it back up to that measure; and a refusal of an attempt sent
  under an older limit lowers it again when it met fewer in flight than the limit allows. So a
  vendor whose capacity fell is found within a round trip or two. A
  429, a request timeout, a transport timeout, or recent successes slower than ``latency_tolerance``
  times the endpoint's usual latency say the vendor is struggling without saying how much: the limit
  keeps ``backoff_ratio`` of itself. Only the first such answer to the attempts sent under one limit
  lowers it (an epoch, as the rate limiter's version): the others say nothing new. Slower than
  usual by less (the square root of the tolerance), the limit does not grow: a vendor may queue
  what it cannot serve at once instead of refusing it.
* **Probing climbs back.** After it was lowered, the limit grows with the successes: one slot more
  after ``probe_after`` successes, then on a cubic curve (eight more after twice as many), so a
  vendor that kept its capacity costs one refused probe per ``probe_after`` calls. A success with
  more attempts in flight than the limit had settled at proves the vendor grew: slow start again.
* It never goes below ``min`` nor above ``max``; successes grow it only while at least half of it is
  in use (an idle limit does not bank slots it never tried).

The limit and the slots live in the store (``EnterSlot``, ``LeaveSlot``: one operation before the
attempt, one after), so over ``RedisState`` the fleet's attempts in flight stay under one shared
limit; each slot is a lease (the call's time left plus a margin, as the guards' holds) so a crashed
process never keeps one. The latency an endpoint usually answers in is judged per process (a local
estimate, no store traffic).

Waiting: an attempt beyond the limit joins the endpoint's queue, ordered by when its call began
(first come, first served within the process: a retry keeps its call's place). The head of the
queue asks the store again after a short pause (``POLL_FIRST`` doubling to ``POLL_MAX``: another
process's release is not announced) and the others wait to become the head; one whose deadline
would pass is refused with ``ConcurrencyLimitError``, sending nothing. Waiting happens in one place,
``_pause`` / ``_apause``. Sync callers and the async callers of each event loop have their own queue
(a thread's event cannot wake a task, nor a task's a thread), so first come, first served holds
within each.

Warm slots: a success that teaches the limit nothing (``"hold"``: fewer than half the slots in use,
so the limit does not grow) keeps its slot for the process's next attempt at that endpoint instead of
letting it go and taking one again, two store operations (two Redis round trips) that would leave
the store as it was. A slot stays warm for ``WARM_SECONDS`` after the store last admitted it (the
store's ``batch_seconds`` when shorter: 0.1 s for Redis; none for a store that batches nothing), at
most ``MAX_WARM`` per endpoint and only while nobody in the process waits for a slot; older, it is
let go and the next attempt asks the store. A waiter at the head of the queue lets go of the warm
slots first, so no slot idles while a caller waits. ``transport.close()`` lets them go; a process
that stops calling without closing keeps its warm slots until their leases end, as a crashed one.

The strategy is the innermost: a slot is held only while its attempt is at the vendor (or warm
between two of the process's attempts), released once the attempt is classified, never across a
backoff wait.
"""

from __future__ import annotations

import bisect
import itertools
import math
import threading
import uuid
from collections.abc import Callable

import anyio
import attrs
import httpx

from resilient_client._clock import Clock
from resilient_client._decision import RETURN
from resilient_client._pipeline import AsyncNext, Attempt, Call, Hooks, Next, rejected
from resilient_client._settings import ConcurrencySettings
from resilient_client.errors import ConcurrencyLimitError, StateUnavailableError
from resilient_client.stores import (
    Admission,
    EnterSlot,
    LeaveSlot,
    StateStore,
    Verdict,
    state_key,
)
from resilient_client.strategies._tally import batch_seconds

__all__ = [
    "CAPACITY_CATEGORIES",
    "LEASE_MARGIN",
    "PRESSURE_CATEGORIES",
    "ConcurrencyStrategy",
    "Endpoint",
    "Latency",
    "judge",
]

#: Answers that measure the capacity: the vendor refused the attempt that made ``n`` in flight.
CAPACITY_CATEGORIES = frozenset({"service_unavailable"})
#: Answers that say the vendor is struggling, without saying at what concurrency.
PRESSURE_CATEGORIES = frozenset({"rate_limited", "request_timeout"})
#: A slot outlives the time left to its call by this much, then frees itself (as a guard's hold).
LEASE_MARGIN = 5.0
#: The head of a queue asks the store again after this pause, doubled after each refusal up to
#: ``POLL_MAX``: short, because a slot idle while its next holder sleeps is capacity lost. (An
#: async head is also woken at once when a task of its event loop lets go of a slot; a slot freed
#: by another process is seen at the next poll.)
POLL_FIRST = 0.0005
POLL_MAX = 0.004
#: Less time left than this is none: the attempt cannot be sent in time.
POLL_MIN = 1e-6
#: How far the usual latency moves toward a slower success (a share of the gap): it follows a
#: vendor that got slower for good within some hundreds of calls (as Gradient2's long window).
LATENCY_DRIFT = 0.002
#: The weight of the latest success in the moving average of recent latencies.
RECENT_WEIGHT = 0.1
#: Endpoints a strategy keeps in process before it forgets the idle ones.
MAX_ENDPOINTS = 1024
#: How long a slot stays warm (see the module docstring) after the store last admitted it.
WARM_SECONDS = 1.0
#: The most warm slots an endpoint keeps in process.
MAX_WARM = 4
#: The longest a waiter that is not the head sleeps before looking again on its own (a safety
#: net: it is woken when it becomes the head or when its deadline passed).
NAP_MAX = 1.0


@attrs.define
class Latency:
    """The latency an endpoint answers in (per process): ``usual``, the fastest success seen,
    drifting toward slower ones by ``LATENCY_DRIFT``; and ``recent``, a moving average of the
    latest successes (``RECENT_WEIGHT`` each), so one stall of the caller's own process (a pause
    that delays every answer in flight at once) is not taken for a vendor queueing its calls."""

    usual: float = math.inf
    recent: float = 0.0

    def slow(self, seconds: float, tolerance: float) -> bool:
        """Whether the recent successes, this one of ``seconds`` included, are slower than
        ``tolerance`` times the usual (then learned from: a vendor that stays slower becomes the
        usual)."""
        return self.observe(seconds) > tolerance

    def observe(self, seconds: float) -> float:
        """Learn from a success of ``seconds``: how many times the usual the recent ones took."""
        usual = self.usual
        if seconds < usual:
            # The fastest yet: nothing is queueing now (and the first, cold connections are forgotten).
            self.usual = self.recent = seconds
            return 1.0
        self.usual = usual + (seconds - usual) * LATENCY_DRIFT
        self.recent += (seconds - self.recent) * RECENT_WEIGHT
        return self.recent / usual if usual > 0 else 1.0


def judge(
    attempt: Attempt, admission: Admission, seconds: float, latency: Latency, settings: ConcurrencySettings
) -> tuple[Verdict, float]:
    """What an attempt's answer says of the endpoint's capacity (no I/O): the ``LeaveSlot``
    verdict, and the target of a ``"lower"`` (for a refusal for want of room, the slots in flight
    when it was admitted, itself aside; the store raises that to the slots held as it came back)."""
    pressure = admission.limit * settings.backoff_ratio
    if attempt.rejection is not None:
        return "hold", 0.0
    error = attempt.error
    if error is not None:
        return ("lower", pressure) if isinstance(error, httpx.TimeoutException) else ("hold", 0.0)
    category = attempt.outcome.category
    if category in CAPACITY_CATEGORIES:
        return "lower", float(max(settings.min, admission.in_flight - 1))
    if category in PRESSURE_CATEGORIES:
        return "lower", pressure
    if attempt.decision is not RETURN and not attempt.outcome.ok:
        return "hold", 0.0  # another fault: nothing about the capacity
    ratio = latency.observe(seconds)
    if ratio > settings.latency_tolerance:
        return "lower", pressure
    # Slower than usual, not yet overload: the vendor may be queueing what it cannot serve at once,
    # so the limit does not grow (a success that had more in flight would otherwise "prove" room).
    if ratio <= math.sqrt(settings.latency_tolerance) and 2 * admission.in_flight >= math.floor(
        admission.limit
    ):
        return "grow", 0.0
    return "hold", 0.0


class _Waiter:
    """One attempt waiting its turn: where it stands (its call's start), and how it is woken."""

    __slots__ = ("deadline", "order", "wake", "woken")

    def __init__(self, order: tuple[float, int], deadline: float, wake: Callable[[], None]) -> None:
        self.order = order
        self.deadline = deadline
        self.wake = wake
        #: Set by ``wake`` callers' side: the waiter was woken since it last looked.
        self.woken = False


class _Queue:
    """The waiters of one endpoint of one kind (sync threads, or one event loop's tasks), in
    order of their calls' start; only the head asks the store."""

    __slots__ = ("_lock", "waiters")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: In order; read without the lock to see whether anyone waits (a list's length is atomic).
        self.waiters: list[_Waiter] = []

    def __bool__(self) -> bool:
        return bool(self.waiters)

    def join(self, waiter: _Waiter) -> None:
        with self._lock:
            bisect.insort(self.waiters, waiter, key=lambda w: w.order)

    def head(self, waiter: _Waiter) -> bool:
        with self._lock:
            return bool(self.waiters) and self.waiters[0] is waiter

    def leave(self, waiter: _Waiter) -> None:
        """Take ``waiter`` out; the new head (if it changed) is woken to ask the store."""
        with self._lock:
            waiters = self.waiters
            was_head = bool(waiters) and waiters[0] is waiter
            if waiter in waiters:
                waiters.remove(waiter)
            successor = waiters[0] if was_head and waiters else None
        if successor is not None:
            successor.wake()

    def wake_head(self) -> None:
        """Wake the head to ask the store now (a slot was let go in this process)."""
        with self._lock:
            head = self.waiters[0] if self.waiters else None
        if head is not None:
            head.wake()

    def expire(self, now: float) -> None:
        """Wake every waiter whose deadline has passed (the head sweeps for them: the others sleep
        until woken)."""
        with self._lock:
            late = [w for w in self.waiters[1:] if w.deadline <= now]
        for waiter in late:
            waiter.wake()


class _Held:
    """A slot held by this process: its token, the store's admission, until when its lease covers
    an attempt (the admitted call's deadline plus ``LEASE_MARGIN``), and until when it may be kept
    warm (``WARM_SECONDS`` after the admission)."""

    __slots__ = ("admission", "covers", "fresh", "token")

    def __init__(self, token: str, admission: Admission, covers: float, fresh: float) -> None:
        self.token = token
        self.admission = admission
        self.covers = covers
        self.fresh = fresh


class Endpoint:
    """One vendor endpoint's slots: its store key, its usual latency, its waiting queues, its warm
    slots."""

    __slots__ = ("_queues", "key", "latency", "sync_queue", "warm")

    def __init__(self, key: str) -> None:
        self.key = key
        self.latency = Latency()
        #: thread id of an event loop (async), or 0 (every sync thread) -> its queue
        self._queues: dict[int, _Queue] = {}
        #: The queue of every sync thread (``queue(0)``).
        self.sync_queue = self._queues[0] = _Queue()
        #: Slots kept between two attempts (``pop`` and ``append``: one C call each, atomic under
        #: the GIL, so two threads never take one).
        self.warm: list[_Held] = []

    def idle(self) -> bool:
        """Whether nobody waits here (the endpoint may be forgotten: its limit lives in the store,
        and its warm slots' leases end on their own)."""
        return not any(self._queues.values())

    def take_all_warm(self) -> list[_Held]:
        """Every warm slot, taken out (a thread that pops one meanwhile has it instead)."""
        taken = []
        while True:
            try:
                taken.append(self.warm.pop())
            except IndexError:
                return taken

    def queue(self, kind: int) -> _Queue:
        found = self._queues.get(kind)
        if found is None:
            found = self._queues.setdefault(kind, _Queue())
        return found


class ConcurrencyStrategy:
    """The adaptive concurrency limit in the pipeline: one ``Endpoint`` per host and port of the
    vendor, thin sync and async shells (see the module docstring)."""

    __slots__ = (
        "_clock",
        "_endpoints",
        "_hooks",
        "_serial",
        "_tokens",
        "_warm_for",
        "settings",
        "store",
        "vendor",
    )

    def __init__(
        self,
        settings: ConcurrencySettings,
        store: StateStore,
        vendor: str,
        hooks: Hooks | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        #: Dates ``close``'s operations (attempts use their call's clock).
        self._clock = Clock() if clock is None else clock
        self.store = store
        self.vendor = vendor
        #: Told of every wait for a slot (``Hooks.waited``), as ``"concurrency"``.
        self._hooks = Hooks() if hooks is None else hooks
        self._endpoints: dict[str, Endpoint] = {}
        # Tokens unique across a fleet, made cheaply: a random prefix per strategy and a counter.
        self._tokens = f"{uuid.uuid4().hex[:16]}:"
        self._serial = itertools.count(1)
        #: How long a slot may stay warm (0: never; a store that batches nothing sees every slot).
        self._warm_for = min(batch_seconds(store), WARM_SECONDS)

    def __repr__(self) -> str:
        return f"ConcurrencyStrategy(vendor={self.vendor!r})"

    def endpoint(self, call: Call) -> Endpoint:
        """The endpoint of ``call`` (vendor, host and port: ``Call.endpoint``, as the breaker and
        the limiter key theirs)."""
        where = call.endpoint
        found = self._endpoints.get(where)
        if found is None:
            if len(self._endpoints) >= MAX_ENDPOINTS:
                self._forget_idle()
            found = self._endpoints.setdefault(where, Endpoint(state_key("concurrency", self.vendor, where)))
        return found

    def _forget_idle(self) -> None:
        """Drop the endpoints nobody waits at (a transport calling ever new hosts keeps no more
        than ``MAX_ENDPOINTS``; a dropped one forgets its usual latency, and its warm slots are
        held in the store until their leases end, at most their calls' deadlines plus
        ``LEASE_MARGIN``, as a crashed process's)."""
        for where, endpoint in list(self._endpoints.items()):
            if endpoint.idle():
                self._endpoints.pop(where, None)

    # -- no I/O ---------------------------------------------------------------------------------

    def _enter(self, endpoint: Endpoint, token: str, time_left: float) -> EnterSlot:
        s = self.settings
        lease = max(0.0, time_left) + LEASE_MARGIN
        return EnterSlot(endpoint.key, token, lease, s.initial, s.min, s.max, s.probe_after)

    def _held(self, call: Call, token: str, admission: Admission, now: float) -> _Held:
        """The slot ``admission`` gave ``token`` (its lease: the time left to ``call``, plus the margin)."""
        return _Held(token, admission, max(call.deadline, now) + LEASE_MARGIN, now + self._warm_for)

    def _after(
        self,
        endpoint: Endpoint,
        held: _Held,
        attempt: Attempt | None,
        seconds: float,
        now: float,
        waiting: bool,
    ) -> LeaveSlot | None:
        """What ends an attempt's hold: the ``LeaveSlot`` that lets the slot go (learning from the
        answer), or None when the slot is kept warm (a ``"hold"`` answer with the limit less than
        half used, nobody waiting, the slot fresh)."""
        if attempt is None:  # raised: nothing learned
            return self._let_go(endpoint, held.token)
        admission = held.admission
        verdict, target = judge(attempt, admission, seconds, endpoint.latency, self.settings)
        if (
            verdict == "hold"
            and attempt.response is not None
            and now < held.fresh
            and 2 * admission.in_flight < admission.limit
            and not waiting
            and len(endpoint.warm) < MAX_WARM
        ):
            endpoint.warm.append(held)
            return None
        s = self.settings
        capacity = verdict == "lower" and attempt.outcome.category in CAPACITY_CATEGORIES
        return LeaveSlot(
            endpoint.key,
            held.token,
            verdict,
            admission.epoch,
            target,
            admission.in_flight,
            capacity,
            s.initial,
            s.min,
            s.max,
            s.probe_after,
        )

    @staticmethod
    def _let_go(endpoint: Endpoint, token: str) -> LeaveSlot:
        """End ``token``'s slot, learning nothing (its attempt was not sent, or raised; or it was warm)."""
        return LeaveSlot(endpoint.key, token, "hold", 0, 0.0, 0, False, 1, 1, 1, 1)

    def _new_token(self) -> str:
        return f"{self._tokens}{next_serial(self._serial)}"

    def _refused(self, call: Call, number: int, waited: float) -> Attempt:
        reason = f"the concurrency limit stayed full for {waited:.3g} s, until the deadline"
        error = ConcurrencyLimitError(reason, vendor=self.vendor, request=call.request, secrets=call.secrets)
        return rejected(number, error, "concurrency")

    @staticmethod
    def _order(call: Call, serial: int) -> tuple[float, int]:
        """A waiter's place: when its call began (a retry keeps its call's place), then arrival."""
        return (call.deadline - call.policy.retry.total_timeout, serial)

    @staticmethod
    def _next_poll(tries: int, time_left: float) -> float | None:
        if time_left < POLL_MIN:
            return None
        return min(POLL_FIRST * 2.0 ** min(tries, 30), POLL_MAX, time_left)

    # -- the one place an attempt waits for a slot ------------------------------------------------

    @staticmethod
    def _pause(call: Call, waiter: _Waiter, event: threading.Event, head: bool, pause: float) -> None:
        """Wait for a slot: the head sleeps ``pause`` on the call's clock before asking the store
        again; the others sleep until woken (they became the head, or their deadline passed)."""
        if head:
            call.clock.sleep(pause)
        else:
            event.wait(min(NAP_MAX, max(0.0, call.time_left())))
            event.clear()

    @staticmethod
    async def _apause(call: Call, waiter: _Waiter, box: list[anyio.Event], head: bool, pause: float) -> None:
        """The async twin of ``_pause``; the head's sleep also ends when a task of its event loop
        lets go of a slot (it wakes the head), so no slot idles while its next holder sleeps."""
        if head:
            async with anyio.create_task_group() as group:

                async def sleep() -> None:
                    await call.clock.asleep(pause)
                    group.cancel_scope.cancel()

                group.start_soon(sleep)
                await box[0].wait()
                group.cancel_scope.cancel()
        else:
            with anyio.move_on_after(min(NAP_MAX, max(0.0, call.time_left()))):
                await box[0].wait()
        box[0] = anyio.Event()

    # -- shells ---------------------------------------------------------------------------------

    def _wait(self, call: Call, number: int, endpoint: Endpoint, token: str) -> Admission | Attempt:
        """Queue for a slot: the admission, or the refusal at the deadline."""
        clock = call.clock
        event = threading.Event()
        waiter = _Waiter(self._order(call, next(self._serial)), call.deadline, event.set)
        queue = endpoint.sync_queue
        queue.join(waiter)
        start = clock.monotonic()
        tries = 0
        try:
            while True:
                now = clock.monotonic()
                head = queue.head(waiter)
                if head:
                    for held in endpoint.take_all_warm():  # no slot idles while a caller waits
                        self.store.run(self._let_go(endpoint, held.token), now)
                    admission = self.store.run(self._enter(endpoint, token, call.deadline - now), now)
                    if admission.entered:
                        self._hooks.waited(call, number, "concurrency", now - start)
                        return admission
                    queue.expire(now)
                pause = self._next_poll(tries, call.deadline - now)
                if pause is None:
                    self._hooks.waited(call, number, "concurrency", now - start)
                    return self._refused(call, number, now - start)
                self._pause(call, waiter, event, head, pause)
                tries = tries + 1 if head else 0
        finally:
            queue.leave(waiter)

    def _admit(self, call: Call, number: int, endpoint: Endpoint, now: float) -> _Held | Attempt:
        """A slot from the store, waiting for it if it must: the slot, or the refusal."""
        token = self._new_token()
        admission: Admission | Attempt
        admission = self.store.run(self._enter(endpoint, token, call.deadline - now), now)
        if not admission.entered or endpoint.sync_queue.waiters:
            if admission.entered:  # others wait already: first come, first served
                self.store.run(self._let_go(endpoint, token), now)
            admission = self._wait(call, number, endpoint, token)
            if isinstance(admission, Attempt):
                return admission
            now = call.clock.monotonic()
        return self._held(call, token, admission, now)

    def handle(self, next: Next, call: Call, number: int) -> Attempt:
        endpoint = self._endpoints.get(call.endpoint) or self.endpoint(call)
        clock = call.clock
        now = clock.monotonic()
        waiters = endpoint.sync_queue.waiters
        warm = endpoint.warm
        try:
            held = warm.pop() if warm else None
        except IndexError:  # another thread took the last one meanwhile
            held = None
        if held is None or waiters or now >= held.fresh or call.deadline > held.covers:
            if held is not None:  # stale, or others wait: it goes back to the store
                self.store.run(self._let_go(endpoint, held.token), now)
            admitted = self._admit(call, number, endpoint, now)
            if isinstance(admitted, Attempt):
                return admitted
            held = admitted
        started = clock.monotonic()
        attempt: Attempt | None = None
        try:
            attempt = next(call, number)
            return attempt
        finally:
            ended = clock.monotonic()
            op = self._after(endpoint, held, attempt, ended - started, ended, bool(waiters))
            if op is not None:
                self.store.run(op, ended)

    async def _await(self, call: Call, number: int, endpoint: Endpoint, token: str) -> Admission | Attempt:
        clock = call.clock
        box = [anyio.Event()]

        def wake() -> None:
            box[0].set()

        waiter = _Waiter(self._order(call, next(self._serial)), call.deadline, wake)
        queue = endpoint.queue(threading.get_ident())
        queue.join(waiter)
        start = clock.monotonic()
        tries = 0
        try:
            while True:
                now = clock.monotonic()
                head = queue.head(waiter)
                if head:
                    for held in endpoint.take_all_warm():  # no slot idles while a caller waits
                        with anyio.CancelScope(shield=True):
                            await self.store.arun(self._let_go(endpoint, held.token), now)
                    admission = await self.store.arun(self._enter(endpoint, token, call.deadline - now), now)
                    if admission.entered:
                        self._hooks.waited(call, number, "concurrency", now - start)
                        return admission
                    queue.expire(now)
                pause = self._next_poll(tries, call.deadline - now)
                if pause is None:
                    self._hooks.waited(call, number, "concurrency", now - start)
                    return self._refused(call, number, now - start)
                await self._apause(call, waiter, box, head, pause)
                tries = tries + 1 if head else 0
        finally:
            queue.leave(waiter)

    async def _aadmit(
        self, call: Call, number: int, endpoint: Endpoint, queue: _Queue, now: float
    ) -> _Held | Attempt:
        """The async twin of ``_admit``."""
        token = self._new_token()
        admission: Admission | Attempt
        admission = await self.store.arun(self._enter(endpoint, token, call.deadline - now), now)
        if not admission.entered or queue:
            if admission.entered:  # others wait already: first come, first served
                with anyio.CancelScope(shield=True):
                    await self.store.arun(self._let_go(endpoint, token), now)
            admission = await self._await(call, number, endpoint, token)
            if isinstance(admission, Attempt):
                return admission
            now = call.clock.monotonic()
        return self._held(call, token, admission, now)

    async def ahandle(self, next: AsyncNext, call: Call, number: int) -> Attempt:
        endpoint = self.endpoint(call)
        clock = call.clock
        now = clock.monotonic()
        queue = endpoint.queue(threading.get_ident())
        warm = endpoint.warm
        try:
            held = warm.pop() if warm else None
        except IndexError:  # another thread took the last one meanwhile
            held = None
        if held is None or queue.waiters or now >= held.fresh or call.deadline > held.covers:
            if held is not None:  # stale, or others wait: it goes back to the store
                with anyio.CancelScope(shield=True):
                    await self.store.arun(self._let_go(endpoint, held.token), now)
            admitted = await self._aadmit(call, number, endpoint, queue, now)
            if isinstance(admitted, Attempt):
                return admitted
            held = admitted
        started = clock.monotonic()
        attempt: Attempt | None = None
        try:
            attempt = await next(call, number)
            return attempt
        finally:
            ended = clock.monotonic()
            op = self._after(endpoint, held, attempt, ended - started, ended, bool(queue.waiters))
            if op is not None:
                with anyio.CancelScope(shield=True):
                    await self.store.arun(op, ended)
                queue.wake_head()

    def close(self) -> None:
        """Let go of the warm slots (``transport.close()``); a store that cannot be reached leaves
        them to their leases."""
        now = self._clock.monotonic()
        for endpoint in list(self._endpoints.values()):
            for held in endpoint.take_all_warm():
                try:
                    self.store.run(self._let_go(endpoint, held.token), now)
                except StateUnavailableError:
                    return  # the leases end on their own


def next_serial(counter: itertools.count[int]) -> int:
    """The next number of ``counter`` (``next`` is shadowed by the shells' parameter)."""
    return counter.__next__()
