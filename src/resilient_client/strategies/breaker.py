"""The circuit breaker: Polly's circuit state controller, over a StateStore.

Closed, it lets every call through and counts outcomes over a sliding window; when at least
``minimum_throughput`` outcomes were seen and ``failure_ratio`` of them failed, it opens. It opens on
an outage, not on partial failure or overload (SPEC section 10): the defaults (90 % of at least 20)
leave random faults at 50 % and a vendor at its capacity (503s to 10-40 % of attempts) to the
retries, the budget and the concurrency limit. A window that holds a healthy spell would keep a
vendor that has just gone down reachable until the spell leaves it, so ``consecutive_failures`` in
a row (counted in process, reset by any success) open it too.

Open, it refuses every call (``CircuitOpen``: nothing is sent) for ``break_duration``. Then it
turns half-open and lets exactly ``half_open_probes`` calls through, across threads, tasks and
(with a shared store) processes: a probe that succeeds closes it, one that fails opens it again for
twice as long, up to ``max_break_duration``.

Every transition is a compare-and-set on the circuit's epoch, so of many callers that judge the same
circuit at once only the first moves it; the others' outcomes are still counted.

A success of a closed circuit is only counted in process (``_tally``): no store round trip. The
count is written with the next failure's ``RecordOutcome`` (one step: the failure is weighed against
every success before it), or as one ``RecordSuccesses`` after the store's ``batch_seconds`` (at most
half a window bucket, so each lands in the bucket it belongs to, dated by the latest success of its
batch).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping

import anyio
import attrs

from resilient_client._clock import Clock
from resilient_client._decision import RETURN
from resilient_client._pipeline import AsyncNext, Attempt, BreakerEvent, Call, Hooks, Next, rejected
from resilient_client._settings import BreakerOverride, BreakerSettings
from resilient_client.errors import CircuitOpenError
from resilient_client.stores import (
    Circuit,
    CircuitState,
    CloseCircuit,
    OpenCircuit,
    ReadCircuit,
    RecordOutcome,
    RecordSuccesses,
    ReleaseProbe,
    ResetCircuit,
    StateStore,
    TryProbe,
    state_key,
)
from resilient_client.strategies._endpoints import Endpoints
from resilient_client.strategies._tally import Tally, batch_seconds

__all__ = ["CLOSED_BELIEF", "FAILURE_CATEGORIES", "Breaker", "BreakerStrategy", "CircuitOpen", "Permit"]

#: Categories that say the vendor is unwell. ``rate_limited``, ``locked``, ``not_ready``, 4xx and soft
#: faults are answers from a working vendor, so they are successes here.
FAILURE_CATEGORIES = frozenset({"server_error", "service_unavailable", "request_timeout"})

#: A probe's slot outlives the time left to its call by this much, then frees itself: a probe whose
#: process died cannot keep the circuit half-open for ever, and a live one never loses its slot.
PROBE_LEASE_MARGIN = 5.0
#: The longest a closed circuit is believed without asking the store (see ``Breaker``).
CLOSED_BELIEF = 0.1


@attrs.frozen
class Permit:
    """A call the breaker let through; hand it back to ``record`` with the call's outcome."""

    #: The circuit's epoch when the call was let through; only a transition from it is applied.
    epoch: int
    #: The probe slot's token when the call is a half-open probe, else None.
    probe: str | None = None
    #: The break that preceded this probe (the next one, if it fails, is twice as long).
    break_duration: float = 0.0


@attrs.frozen
class CircuitOpen:
    """The breaker refused the call: nothing may be sent for ``retry_after`` seconds."""

    retry_after: float
    reason: str = "circuit open"


def _moved(applied: bool, state: CircuitState) -> CircuitState | None:
    return state if applied else None


class Breaker:
    """A circuit breaker over one store key (per vendor and host).

    ``overrides`` maps codes (as strings, as policy tables write them) to ``"ignore"`` (no evidence
    either way) or ``"failure"``.
    """

    __slots__ = (
        "_batch",
        "_closed",
        "_closed_for",
        "_closed_until",
        "_read",
        "flush_at",
        "key",
        "overrides",
        "settings",
        "store",
        "streak",
        "wins",
        "won_at",
    )

    def __init__(
        self,
        settings: BreakerSettings,
        store: StateStore,
        key: str,
        overrides: Mapping[str, BreakerOverride] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.key = key
        #: The read of this circuit that admits every call (a frozen value: made once).
        self._read = ReadCircuit(key)
        self.overrides: Mapping[str, BreakerOverride] = dict(overrides or {})
        #: The permit of the closed circuit's current epoch: every call of a healthy vendor gets
        #: one, and a frozen Permit can be shared instead of made per call.
        self._closed = Permit(0)
        #: Failures in a row seen here (any success resets it); unlocked: a lost count under a race
        #: only delays the opening by one failure.
        self.streak = 0
        #: Successes not in the store yet, and when the latest of them happened.
        self.wins = Tally()
        self.won_at = 0.0
        batch = batch_seconds(store)
        self._batch = min(batch, settings.sampling_duration / 20)
        #: The store's "closed" is believed for its ``batch_seconds`` (0.1 s for Redis), at most
        #: ``CLOSED_BELIEF``, while this breaker sees no failure: a circuit another process (or
        #: another transport on the same store) opens stops this one's calls at most that late, and
        #: a healthy vendor's calls skip the store. A store that batches nothing is always asked.
        self._closed_for = min(batch, CLOSED_BELIEF)
        self._closed_until = -math.inf
        #: When the successes are written even if no failure comes first.
        self.flush_at = 0.0

    def __repr__(self) -> str:
        return f"Breaker(key={self.key!r})"

    # -- no I/O ---------------------------------------------------------------------------------

    def failed(
        self, category: str | None, code: object = None, *, transport_error: bool = False
    ) -> bool | None:
        """Whether an attempt's outcome counts against the vendor: True (a failure), False (a
        success), or None (no evidence: a code overridden to ``"ignore"``, such as hyper 50, which says
        another journal call of the account is running, not that the vendor is unwell)."""
        override = None if code is None else self.overrides.get(str(code))
        if override is not None:
            return None if override == "ignore" else True
        return transport_error or category in FAILURE_CATEGORIES

    def _lease(self, time_left: float) -> float:
        return max(0.0, time_left) + PROBE_LEASE_MARGIN

    def _closed_permit(self, epoch: int) -> Permit:
        permit = self._closed
        if permit.epoch != epoch:
            permit = self._closed = Permit(epoch)
            self.streak = 0  # closed again (here or elsewhere): the failures before weigh no more
        return permit

    def _admitted(self, taken: bool, circuit: Circuit, token: str) -> Permit | CircuitOpen:
        if taken:
            return Permit(circuit.epoch, token, circuit.break_duration)
        if circuit.state == "closed":  # closed by another caller between our two steps
            return self._closed_permit(circuit.epoch)
        return CircuitOpen(circuit.retry_after)

    def _should_open(self, failures: int, total: int) -> bool:
        settings = self.settings
        if 0 < settings.consecutive_failures <= self.streak:
            return True
        return total >= settings.minimum_throughput and failures / total >= settings.failure_ratio

    def _next_break(self, permit: Permit) -> float:
        """The first break is ``break_duration``; each failed probe doubles it, up to the maximum."""
        settings = self.settings
        if permit.break_duration <= 0:
            return settings.break_duration
        longest = max(settings.max_break_duration, settings.break_duration)
        return min(longest, max(settings.break_duration, 2 * permit.break_duration))

    def _believed_closed(self, circuit: Circuit, now: float) -> Permit:
        if self._closed_for:
            self._closed_until = now + self._closed_for
        permit = self._closed
        return permit if permit.epoch == circuit.epoch else self._closed_permit(circuit.epoch)

    def _take_wins(self, now: float) -> tuple[int, float]:
        self.flush_at = now + self._batch
        return self.wins.take(), max(0.0, now - self.won_at)

    def _batch_of_wins(self, now: float) -> RecordSuccesses | None:
        count, age = self._take_wins(now)
        return RecordSuccesses(self.key, count, age, self.settings.sampling_duration) if count else None

    def _outcome(self, failed: bool, now: float) -> RecordOutcome:
        """A failure (or a probe's outcome), with every success counted before it."""
        self._closed_until = -math.inf  # ask the store again from now on
        self.streak = self.streak + 1 if failed else 0
        count, age = self._take_wins(now)
        return RecordOutcome(self.key, failed, self.settings.sampling_duration, count, age)

    def _probe(self, time_left: float) -> tuple[TryProbe, str]:
        token = uuid.uuid4().hex
        return TryProbe(self.key, token, self.settings.half_open_probes, self._lease(time_left)), token

    def _transition(
        self, permit: Permit, failed: bool, failures: int, total: int
    ) -> tuple[OpenCircuit | CloseCircuit, CircuitState] | None:
        """The compare-and-set this outcome asks for, and the state it moves to (None: none)."""
        if permit.probe is not None:
            if failed:
                return OpenCircuit(self.key, permit.epoch, self._next_break(permit)), "open"
            return CloseCircuit(self.key, permit.epoch), "closed"
        if failed and self._should_open(failures, total):
            return OpenCircuit(self.key, permit.epoch, self.settings.break_duration), "open"
        return None

    # -- sync -----------------------------------------------------------------------------------

    def succeeded(self, now: float) -> None:
        """Count a success of a closed circuit's call (the usual call: no store operation)."""
        self.streak = 0
        self.wins.add()
        self.won_at = now
        if now >= self.flush_at:
            self.flush(now)

    def flush(self, now: float) -> None:
        """Write the successes counted so far to the store."""
        due = self._batch_of_wins(now)
        if due is not None:
            self.store.run(due, now)

    def admit(self, now: float, time_left: float) -> Permit | CircuitOpen:
        """Let a call through (a Permit) or refuse it (CircuitOpen); ``time_left`` is the call's,
        and bounds how long a probe slot is held if its outcome never comes back."""
        if now < self._closed_until:
            return self._closed
        circuit = self.store.run(self._read, now)
        if circuit.state == "closed":
            return self._believed_closed(circuit, now)
        probe, token = self._probe(time_left)
        taken, circuit = self.store.run(probe, now)
        return self._admitted(taken, circuit, token)

    def record(self, permit: Permit, failed: bool | None, now: float) -> CircuitState | None:
        """Count a permitted call's outcome (see ``failed``) and move the circuit if it must.

        ``failed=None`` is no evidence: nothing is counted and a probe's slot is freed. Pass it too
        when the call sent nothing (a later strategy refused it). Returns the state this call moved
        the circuit to, or None when it moved nothing (so each transition is reported once).
        """
        if failed is None:
            if permit.probe is not None:
                self.store.run(ReleaseProbe(self.key, permit.probe), now)
            return None
        if not failed and permit.probe is None:
            self.succeeded(now)
            return None
        failures, total = self.store.run(self._outcome(failed, now), now)
        transition = self._transition(permit, failed, failures, total)
        if transition is None:
            return None
        move, state = transition
        return _moved(self.store.run(move, now), state)

    def state(self, now: float) -> CircuitState:
        """``"closed"``, ``"open"`` or ``"half_open"`` (open stays open until a call asks to probe)."""
        return self.store.run(self._read, now).state

    def reset(self, now: float) -> None:
        """Close the circuit and forget its outcomes, whatever its state."""
        self._closed_until = -math.inf
        self.streak = 0
        self.store.run(ResetCircuit(self.key), now)

    # -- async twins --------------------------------------------------------------------------------

    async def asucceeded(self, now: float) -> None:
        self.streak = 0
        self.wins.add()
        self.won_at = now
        if now >= self.flush_at:
            await self.aflush(now)

    async def aflush(self, now: float) -> None:
        due = self._batch_of_wins(now)
        if due is not None:
            await self.store.arun(due, now)

    async def aadmit(self, now: float, time_left: float) -> Permit | CircuitOpen:
        if now < self._closed_until:
            return self._closed
        circuit = await self.store.arun(self._read, now)
        if circuit.state == "closed":
            return self._believed_closed(circuit, now)
        probe, token = self._probe(time_left)
        taken, circuit = await self.store.arun(probe, now)
        return self._admitted(taken, circuit, token)

    async def arecord(self, permit: Permit, failed: bool | None, now: float) -> CircuitState | None:
        if failed is None:
            if permit.probe is not None:
                await self.store.arun(ReleaseProbe(self.key, permit.probe), now)
            return None
        if not failed and permit.probe is None:
            await self.asucceeded(now)
            return None
        failures, total = await self.store.arun(self._outcome(failed, now), now)
        transition = self._transition(permit, failed, failures, total)
        if transition is None:
            return None
        move, state = transition
        return _moved(await self.store.arun(move, now), state)

    async def astate(self, now: float) -> CircuitState:
        return (await self.store.arun(self._read, now)).state

    async def areset(self, now: float) -> None:
        self._closed_until = -math.inf
        self.streak = 0
        await self.store.arun(ResetCircuit(self.key), now)


class _Hosts:
    """The endpoints called lately (their breakers) and the last one: what ``state`` and ``reset()``
    look at, shared by the transports of one vendor client. A breaker unused for two of its longest
    windows is dropped (``Endpoints``): its circuit is in the store."""

    __slots__ = ("breakers", "last")

    def __init__(self, idle: float) -> None:
        self.breakers: Endpoints[Breaker] = Endpoints(idle)
        self.last = ""


class BreakerStrategy:
    """The breaker in the pipeline: one ``Breaker`` per host of the vendor, thin sync and async shells.

    Also what ``transport.breaker`` is: ``state`` (of the host called last) and ``reset()``.
    """

    __slots__ = ("_clock", "_hooks", "_hosts", "overrides", "settings", "store", "vendor")

    def __init__(
        self,
        settings: BreakerSettings,
        store: StateStore,
        vendor: str,
        overrides: Mapping[str, BreakerOverride],
        hooks: Hooks,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.store = store
        self.vendor = vendor
        self.overrides = overrides
        self._hooks = hooks
        self._clock = clock
        self._hosts = _Hosts(
            max(settings.sampling_duration, settings.break_duration, settings.max_break_duration)
        )

    def __repr__(self) -> str:
        return f"BreakerStrategy(vendor={self.vendor!r}, state={self.state!r})"

    def share_hosts(self, other: BreakerStrategy) -> None:
        """Report and reset the hosts ``other`` calls too (the transports of one vendor client: a
        call may take a mount or a proxy, never ``client.resilient_transport``). Both must use one
        store and one policy."""
        self._hosts = other._hosts

    def for_host(self, host: str) -> Breaker:
        """The breaker of one endpoint (``host`` or ``host:port``; its state is in the store,
        shared by whoever uses the key)."""
        hosts = self._hosts
        breaker = hosts.breakers.get(host, self._clock.monotonic())
        if breaker is None:
            key = state_key("breaker", self.vendor, host)
            breaker = hosts.breakers.put(host, Breaker(self.settings, self.store, key, self.overrides))
        hosts.last = host
        return breaker

    def forget(self) -> None:
        """Let every endpoint's breaker go (``transport.close()``); their circuits stay in the store."""
        self._hosts.breakers.clear()

    @property
    def state(self) -> CircuitState:
        """The circuit of the host called last: ``"closed"``, ``"open"`` or ``"half_open"``."""
        return self.for_host(self._hosts.last).state(self._clock.monotonic())

    def reset(self) -> None:
        """Close the circuit of every host this transport called, and forget their outcomes."""
        now = self._clock.monotonic()
        for breaker in self._hosts.breakers.values() or [self.for_host("")]:
            breaker.reset(now)

    # -- no I/O ---------------------------------------------------------------------------------

    @staticmethod
    def _evidence(breaker: Breaker, attempt: Attempt) -> bool | None:
        if attempt.rejection is not None:
            return None  # a later strategy sent nothing: no news of the vendor
        if attempt.error is not None:
            return breaker.failed(None, transport_error=True)
        return breaker.failed(attempt.outcome.category, attempt.outcome.code)

    def _refused(self, call: Call, number: int, refusal: CircuitOpen) -> Attempt:
        error = CircuitOpenError(
            refusal.reason,
            vendor=self.vendor,
            retry_after=refusal.retry_after,
            request=call.request,
            secrets=call.secrets,
        )
        return rejected(number, error, "breaker")

    def _report(self, call: Call, moved: CircuitState) -> None:
        if self._hooks.breaker:
            event = BreakerEvent(self.vendor, call.host, moved)
            for hook in self._hooks.breaker:
                hook(event)

    # -- shells ---------------------------------------------------------------------------------

    def handle(self, next: Next, call: Call, number: int) -> Attempt:
        """Attempt ``number`` of ``call`` through ``next`` when the host's circuit lets it through;
        else the refusal (``CircuitOpenError``), nothing sent. The answer counts toward the circuit."""
        # The host's breaker, made once (``for_host``) and then found without a call per attempt.
        hosts = self._hosts
        clock = call.clock
        now = clock.monotonic()
        breaker = hosts.breakers.get(call.endpoint, now) or self.for_host(call.endpoint)
        hosts.last = call.endpoint
        permit = breaker.admit(now, call.deadline - now)
        if isinstance(permit, CircuitOpen):
            return self._refused(call, number, permit)
        if permit.probe is not None:
            self._report(call, "half_open")
        try:
            attempt = next(call, number)
        except BaseException:
            breaker.record(permit, None, clock.monotonic())  # frees a probe's slot
            raise
        # RETURN is the decision of a success only: no evidence to weigh (most calls, every time).
        if attempt.decision is RETURN and permit.probe is None:
            breaker.succeeded(clock.monotonic())  # ``record`` of a closed circuit's success
            return attempt
        failed = False if attempt.decision is RETURN else self._evidence(breaker, attempt)
        moved = breaker.record(permit, failed, clock.monotonic())
        if moved is not None:
            self._report(call, moved)
        return attempt

    async def ahandle(self, next: AsyncNext, call: Call, number: int) -> Attempt:
        """The async twin of ``handle``."""
        hosts = self._hosts
        clock = call.clock
        now = clock.monotonic()
        breaker = hosts.breakers.get(call.endpoint, now) or self.for_host(call.endpoint)
        hosts.last = call.endpoint
        permit = await breaker.aadmit(now, call.deadline - now)
        if isinstance(permit, CircuitOpen):
            return self._refused(call, number, permit)
        if permit.probe is not None:
            self._report(call, "half_open")
        try:
            attempt = await next(call, number)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await breaker.arecord(permit, None, clock.monotonic())
            raise
        if attempt.decision is RETURN and permit.probe is None:
            await breaker.asucceeded(clock.monotonic())
            return attempt
        failed = False if attempt.decision is RETURN else self._evidence(breaker, attempt)
        moved = await breaker.arecord(permit, failed, clock.monotonic())
        if moved is not None:
            self._report(call, moved)
        return attempt
