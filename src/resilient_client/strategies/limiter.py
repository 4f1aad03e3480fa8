"""The rate limiter: a fixed pace, a learned one (botocore's adaptive mode), and Retry-After pauses.

Before each attempt the limiter says how long to wait for a permit: the end of a pause (a server's
``Retry-After`` on a 429 pauses every request of the vendor and host, not only the one that got it),
or the pacing of a token bucket at the lower of the fixed rate (``requests`` per ``period``) and the
learned rate. A wait that would pass the call's deadline is refused at once (``Throttled``, nothing
sent): the shell raises ThrottledError instead of sleeping in vain.

Learning follows botocore's ``ClientRateLimiter`` and ``CubicCalculator``: a ``rate_limited`` answer
makes the rate the key was sending at the new ``max_rate`` and drops the rate to ``BETA`` of it; the
successes after it raise the rate along a cubic curve that is back at ``max_rate`` after
``cbrt(max_rate * (1 - BETA) / SCALE)`` seconds and probes beyond it. Only the first throttle of a
version lowers the rate: the other 429s answering sends paced under the old rate say nothing new (in
botocore each one would lower it again, so 32 threads throttled together would floor it).

Why the learned rate is two store operations and not one update function: a Redis store must run
each read-modify-write as one Lua script, so a Python function cannot be its atomic step. The hot
step (reserve a send, count it) is the store's ``LimiterAcquire``; the rare step (a new rate) is
computed here, with no I/O, and written with ``LimiterLearn``, a compare-and-set on the version.
So the only arithmetic a store must mirror is a token bucket and a counter, never the cubic curve.

Spare sends. While nothing has been learned (no 429 yet) and no pause is in force, a send asks the
store for a few more sends that may go at once (``spare``: tokens of a fixed pace beyond its own,
any number when nothing paces) and hands them out in process, with no store operation, for at most
``allowance_seconds`` (the store's ``batch_seconds``, at most ``ALLOWANCE_SECONDS``). How many it
asks follows how many the last allowance handed out (doubling up to ``MAX_SPARE``; none for a key
sent to less than once per allowance). The next operation settles them: the spares sent are counted
in ``sent_rate`` then, the others give their tokens back. Every limiter of one key over one store in
a process shares one allowance (``_allowance``), so what one of them learns is every one's at once.

How stale that lets a limiter be, and why it is fine:

* a pause: its own 429 ends the allowance before the pause is written (its retry, and every send of
  the process after it, asks the store and waits); a pause another process writes into a shared
  store is seen at the next refill, at most ``allowance_seconds`` late (0.1 s over Redis, as long as
  a breaker believes a closed circuit). That is the staleness a pause has anyway: the sends already
  on their way when the 429 came out were sent into it too, and each send into a pause earns its
  own 429, which pauses its sender at once;
* the pace: a spare is a reservation made ahead and sent up to ``allowance_seconds`` later, as a
  send that waits for its guard key after its reservation is; only whole tokens the bucket holds
  at once are spared, so no send waits behind another's spare;
* the sent rate (what a 429 lowers the rate from): a process's spares are counted when settled,
  in the slot of the latest (spares sent over more than a second as the last second's even share
  of them), and a 429 settles its own first, so only other processes' last ``allowance_seconds``
  of spares are missing from it, which errs on the slow side.

Store operations per send, the cost that matters with a shared store (each one is a round trip):

* before it, one, or none while spares last: ``LimiterAdmit`` checks the pause and reserves the
  send in one step (a paused key reserves nothing); with pausing off, ``LimiterAcquire``; with no
  pace, only ``PausedFor``;
* after a success, usually none: nothing is written while nothing has been learned (no 429 yet), and
  the climb back after a 429 is written at most once per ``RECOVERY_INTERVAL`` per limiter, as the
  cubic curve is a function of the time since the throttle: a write skipped loses nothing, the next
  one carries the rate the curve has reached by then (other processes pace at the last rate written
  meanwhile, at most that interval behind the curve);
* after a 429, two or three (read the rate sent, write the lowered rate, write the pause): rare.
"""

from __future__ import annotations

import math
import operator
import threading
import weakref
from collections.abc import Iterator

import attrs

from resilient_client._clock import Clock
from resilient_client._decision import RETURN
from resilient_client._pipeline import AsyncNext, Attempt, Call, Hooks, Next, is_testing, rejected
from resilient_client._settings import RateLimitSettings
from resilient_client.errors import ThrottledError
from resilient_client.stores import (
    EndPause,
    LimiterAcquire,
    LimiterAdmit,
    LimiterLearn,
    LimiterState,
    Operation,
    Pause,
    PausedFor,
    RateTicket,
    StateStore,
    state_key,
)
from resilient_client.strategies._endpoints import Endpoints
from resilient_client.strategies._tally import batch_seconds

__all__ = [
    "ALLOWANCE_SECONDS",
    "BETA",
    "MAX_SPARE",
    "MIN_RATE",
    "RECOVERY_INTERVAL",
    "SCALE",
    "Limiter",
    "LimiterStrategy",
    "Throttled",
    "Ticket",
    "lowered",
    "recovered",
]

#: Multiplicative decrease on a throttle (botocore's ``_BETA``).
BETA = 0.7
#: Steepness of the cubic recovery, in requests per second per second cubed (botocore's ``_SCALE_CONSTANT``).
SCALE = 0.4
#: The learned rate never goes below this (botocore's ``TokenBucket._MIN_RATE``); a vendor slower than
#: that is held back by its fixed rate and its Retry-After pauses.
MIN_RATE = 0.5
#: Seconds between two writes of the rate climbing back after a 429, per limiter (see the module
#: docstring): a shared store sees one write per process per interval, not one per success.
RECOVERY_INTERVAL = 0.5
#: An endpoint's limiter unused for two turns of this many seconds (or of its period, when longer)
#: is dropped: its learned rate and any pause are in the store, which keeps them on its own.
LIMITER_IDLE = 120.0
#: The longest spare sends are handed out in process (see the module docstring); a store's own
#: ``batch_seconds`` shortens it (0.1 s over Redis). In one process a 429 or a pause reaches every
#: limiter of the key at once, so this bounds only how long a spare's token may wait for its send
#: (a send waiting for its guard key holds its reservation for up to ``max_wait``, 30 s for hyper).
ALLOWANCE_SECONDS = 5.0
#: The most spare sends asked for at once.
MAX_SPARE = 64


def lowered(ticket: RateTicket) -> tuple[float, float]:
    """(rate, max_rate) after a throttle: the rate the key was sending at becomes ``max_rate``."""
    sending = ticket.sent_rate if ticket.rate <= 0 else min(ticket.sent_rate, ticket.rate)
    max_rate = max(MIN_RATE, sending)
    return max(MIN_RATE, BETA * max_rate), max_rate


def recovered(ticket: RateTicket) -> float:
    """The learned rate ``since_throttle`` seconds after the last throttle, on botocore's cubic curve.

    It is capped at twice the rate the key is sending at (but never below ``max_rate``), as botocore
    does, so a key that sends little does not bank a rate it never tried.
    """
    zero_point = math.cbrt(ticket.max_rate * (1 - BETA) / SCALE)
    rate = SCALE * (ticket.since_throttle - zero_point) ** 3 + ticket.max_rate
    return max(MIN_RATE, min(rate, max(ticket.max_rate, 2 * ticket.sent_rate)))


@attrs.frozen
class Ticket:
    """Wait ``wait`` seconds, then send (``granted``) or ask again (a pause was in force)."""

    wait: float
    granted: bool = True
    #: The store's answer, kept for ``record`` (None when nothing is learned from this send).
    rate: RateTicket | None = None


@attrs.frozen
class Throttled:
    """The wait for a permit (``retry_after`` seconds) would pass the call's deadline: send nothing."""

    retry_after: float
    reason: str = "rate limit wait would pass the deadline"


_GO = Ticket(0.0)
#: An allowance with nothing left.
_NONE_LEFT: Iterator[int] = iter(())
#: The builtin ``next``, for the shells, whose ``next`` is the pipeline's next layer.
_draw = next


class _Allowance:
    """Spare sends the store reserved ahead, handed out in process (see the module docstring).

    ``take`` is the hot path: one comparison and one ``next`` of an iterator over the spares (one C
    call, atomic under the GIL: two threads never take one spare). A thread that draws from the
    iterator a refill has just retired may send one spare the settlement gave back: a refill is
    rare, such a race rarer, and one send early is what a bucket of ``burst`` tokens allows anyway.
    """

    __slots__ = (
        "_lock",
        "asked_at",
        "granted_at",
        "lasts",
        "limit",
        "owed",
        "spares",
        "ticket",
        "until",
        "used_at",
    )

    def __init__(self, lasts: float) -> None:
        #: Seconds an allowance lasts; 0: never any spare (a store that does not batch).
        self.lasts = lasts
        self._lock = threading.Lock()
        self.spares = _NONE_LEFT
        self.limit = 0
        self.until = -math.inf
        #: The ticket of every spare send: the answer that reserved them (what a 429 lowers from).
        self.ticket = _GO
        #: Spares a refill got while another thread's allowance was live: given back at the next.
        self.owed = 0
        self.asked_at = -math.inf
        #: When the spares were granted, and when the latest was handed out (the store counts the
        #: spent ones as sent then).
        self.granted_at = -math.inf
        self.used_at = -math.inf

    def take(self, now: float) -> Ticket | None:
        """A spare send's ticket, or None when the allowance is over."""
        if now < self.until and next(self.spares, None) is not None:
            self.used_at = now
            return self.ticket
        return None

    def end(self) -> None:
        """No spare is handed out from now on (a 429: every send asks the store again)."""
        self.until = -math.inf

    def _settle(self, now: float) -> tuple[int, int, int, float]:
        """End the allowance: (the spares sent, how many of them the sent rate counts, the spares
        not sent, seconds since the latest sent).

        The sent rate looks one second back, and the store counts a settlement's spares in the
        slot of the latest: spares sent over more than a second count as the last second's share
        of them (sent evenly), not all in it.
        """
        with self._lock:
            spares, self.spares = self.spares, _NONE_LEFT
            self.until = -math.inf
            unspent = operator.length_hint(spares)
            spent = self.limit - unspent
            self.limit = 0
            owed, self.owed = self.owed, 0
            granted_at, used_at = self.granted_at, self.used_at
        if not spent:
            return 0, 0, unspent + owed, 0.0
        span = used_at - granted_at
        counted = spent if span <= 1.0 else max(1, round(spent / span))
        return spent, counted, unspent + owed, max(0.0, now - used_at)

    def settle(self, now: float) -> tuple[int, int, float]:
        """End the allowance: (the spares the sent rate counts, the spares not sent, seconds since
        the latest sent), for ``LimiterState``."""
        _, counted, unspent, age = self._settle(now)
        return counted, unspent, age

    def renew(self, now: float) -> tuple[int, int, int, float]:
        """``settle``, and how many spares to ask for next: (spare, counted, unspent, age). Twice
        as many as the last allowance handed out; one to try, when the last ask was less than an
        allowance ago; none for a key sent to more rarely."""
        spent, counted, unspent, age = self._settle(now)
        lasts = self.lasts
        recent = now - self.asked_at < lasts
        self.asked_at = now
        if lasts <= 0:
            return 0, counted, unspent, age
        if spent:
            return min(MAX_SPARE, 2 * spent), counted, unspent, age
        return (1 if recent else 0), counted, unspent, age

    def grant(self, answer: RateTicket, ticket: Ticket, now: float) -> None:
        """Hand out ``answer.spare`` spares with ``ticket`` until ``lasts`` from now."""
        with self._lock:
            if self.limit:  # another thread's refill is live: these go back at the next settle
                self.owed += answer.spare
                return
            self.ticket = ticket
            self.limit = answer.spare
            self.spares = iter(range(answer.spare))
            self.granted_at = now
            self.until = now + self.lasts


#: store -> (key, settings) -> the allowance every limiter of that key over that store shares in
#: this process (weakly: a store dropped drops its allowances).
_allowances: weakref.WeakKeyDictionary[object, dict[tuple[str, RateLimitSettings], _Allowance]] = (
    weakref.WeakKeyDictionary()
)
_allowances_lock = threading.Lock()


def _allowance(store: StateStore, key: str, settings: RateLimitSettings) -> _Allowance:
    """The allowance of ``key`` over ``store`` in this process (its own for a store that cannot be
    weakly referenced: then only the limiter's own 429s end it before it runs out)."""
    lasts = min(batch_seconds(store), ALLOWANCE_SECONDS)
    with _allowances_lock:
        try:
            per_store = _allowances.setdefault(store, {})
        except TypeError:
            return _Allowance(lasts)
        found = per_store.get((key, settings))
        if found is None:
            found = per_store[key, settings] = _Allowance(lasts)
        return found


def _capped(call: Call, attempt: Attempt) -> float | None:
    """The server's wait as a pause of the endpoint: never longer than ``retry.max_retry_after``. A
    longer wait raised the call at once (``_decision``); it must not hold every other call longer
    either (``Retry-After: 1e400`` would pause the endpoint, and over Redis the fleet, for ever)."""
    retry_after = attempt.retry_after
    return None if retry_after is None else min(retry_after, call.policy.retry.max_retry_after)


class Limiter:
    """A rate limiter over one store key (per vendor and host)."""

    __slots__ = ("_next_recovery", "_paces", "allowance", "key", "settings", "store")

    def __init__(self, settings: RateLimitSettings, store: StateStore, key: str) -> None:
        self.settings = settings
        self.store = store
        self.key = key
        #: The earliest time (monotonic) the next climb back may be written; threads race on it
        #: harmlessly (two writes in one interval, each a compare-and-set on the version).
        self._next_recovery = -math.inf
        #: Spare sends handed out in process (shared by every limiter of the key and store).
        self.allowance = _allowance(store, key, settings)
        #: Whether anything paces (a fixed rate, or one that may be learned).
        self._paces = settings.rate > 0 or settings.adaptive

    def __repr__(self) -> str:
        return f"Limiter(key={self.key!r})"

    # -- no I/O ---------------------------------------------------------------------------------

    @staticmethod
    def _after_pause(paused: float, time_left: float) -> Ticket | Throttled:
        if paused > time_left:
            return Throttled(paused, "the server's Retry-After pause would pass the deadline")
        return Ticket(paused, granted=False)

    def _after_reserve(self, answer: RateTicket, time_left: float, now: float) -> Ticket | Throttled:
        if answer.wait > 0 and answer.wait > time_left:
            return Throttled(answer.wait)
        ticket = Ticket(answer.wait, rate=answer if self.settings.adaptive else None)
        if answer.spare:
            self.allowance.grant(answer, ticket, now)
        return ticket

    def _reservation(self, time_left: float, now: float) -> Operation[RateTicket | float] | None:
        """The store operation before a send (None when nothing paces and nothing pauses); it
        settles the last allowance's spares and asks for the next one's."""
        settings = self.settings
        if not self._paces:
            return PausedFor(self.key) if settings.pause_on_retry_after else None
        max_wait = max(0.0, time_left)
        spare, spent, unspent, age = self.allowance.renew(now)
        key, rate, burst = self.key, settings.rate, settings.burst
        if settings.pause_on_retry_after:
            return LimiterAdmit(key, rate, burst, max_wait, spare, spent, unspent, age)
        return LimiterAcquire(key, rate, burst, max_wait, spare, spent, unspent, age)

    def _answer(self, answer: RateTicket | float | None, time_left: float, now: float) -> Ticket | Throttled:
        """The ticket for the store's answer (a pause's seconds left, from ``PausedFor``)."""
        if answer is None:
            return _GO
        if isinstance(answer, float):
            return self._after_pause(answer, time_left) if answer > 0 else _GO
        if answer.paused > 0:
            return self._after_pause(answer.paused, time_left)
        return self._after_reserve(answer, time_left, now)

    def _sending(self, now: float) -> LimiterState:
        """The read of the rate sent, after a 429: the allowance ends, its spares settled first."""
        return LimiterState(self.key, *self.allowance.settle(now))

    def _learning(self, ticket: Ticket, rate_limited: bool, now: float) -> bool:
        """Whether a rate must be written for this answer: a 429 (lowered, from the rate read
        first: ``_lower``) or a climb back that is due (``_recovery_due``)."""
        answer = ticket.rate
        return answer is not None and (rate_limited or self._recovery_due(answer, now))

    def _recovery_due(self, answer: RateTicket, now: float) -> bool:
        return answer.rate > 0 and now >= self._next_recovery and recovered(answer) != answer.rate

    def _lower(self, ticket: Ticket, sending: RateTicket) -> LimiterLearn:
        """The write after a 429: lowered from the rate sent now, when the 429 arrives (as botocore
        measures it), not at this send: the first sends of a burst saw little of it. The version is
        the send's, so of the 429s answering sends paced at one rate only the first lowers it."""
        assert ticket.rate is not None
        rate, max_rate = lowered(sending)
        return LimiterLearn(self.key, ticket.rate.version, rate, max_rate, True)

    def _climb(self, ticket: Ticket, now: float) -> LimiterLearn:
        """The write of the climb back after a 429 (see RECOVERY_INTERVAL)."""
        answer = ticket.rate
        assert answer is not None
        self._next_recovery = now + RECOVERY_INTERVAL
        return LimiterLearn(self.key, answer.version, recovered(answer), answer.max_rate, False)

    def _pauses(self, rate_limited: bool, retry_after: float | None) -> bool:
        return (
            rate_limited
            and retry_after is not None
            and retry_after > 0
            and self.settings.pause_on_retry_after
        )

    # -- sync -----------------------------------------------------------------------------------

    def acquire(self, now: float, time_left: float) -> Ticket | Throttled:
        """How long to wait before sending, or Throttled when that would pass the deadline."""
        spare = self.allowance.take(now)
        return self.reserve(now, time_left) if spare is None else spare

    def reserve(self, now: float, time_left: float) -> Ticket | Throttled:
        """``acquire`` from the store, not from the allowance."""
        op = self._reservation(time_left, now)
        return self._answer(None if op is None else self.store.run(op, now), time_left, now)

    def pause_left(self, now: float) -> float:
        """Seconds left of the host's Retry-After pause (0 when none, or when pausing is off)."""
        return self.store.run(PausedFor(self.key), now) if self.settings.pause_on_retry_after else 0.0

    def paused_meanwhile(self, now: float) -> bool:
        """Whether a pause began while a granted send waited its turn (a 429 another request or
        process got meanwhile): then the send waits that pause out too, as every request does."""
        return self.pause_left(now) > 0

    def hold(self, now: float, time_left: float) -> Ticket | Throttled | None:
        """The wait for the host's pause to end (None when not paused), or Throttled past the deadline."""
        paused = self.pause_left(now)
        return self._after_pause(paused, time_left) if paused > 0 else None

    def record(self, ticket: Ticket, *, rate_limited: bool, retry_after: float | None, now: float) -> None:
        """Learn from the answer to a granted send: a 429 lowers the rate (and with ``retry_after``
        pauses the key), any other answer lets it recover. Not called for transport errors."""
        if rate_limited:
            self.allowance.end()
        if self._pauses(rate_limited, retry_after):
            self.store.run(Pause(self.key, retry_after or 0.0), now)
        if not self._learning(ticket, rate_limited, now):
            return
        if rate_limited:
            self.store.run(self._lower(ticket, self.store.run(self._sending(now), now)), now)
        else:
            self.store.run(self._climb(ticket, now), now)

    # -- async twins --------------------------------------------------------------------------------

    async def aacquire(self, now: float, time_left: float) -> Ticket | Throttled:
        spare = self.allowance.take(now)
        return await self.areserve(now, time_left) if spare is None else spare

    async def areserve(self, now: float, time_left: float) -> Ticket | Throttled:
        op = self._reservation(time_left, now)
        return self._answer(None if op is None else await self.store.arun(op, now), time_left, now)

    async def apause_left(self, now: float) -> float:
        if not self.settings.pause_on_retry_after:
            return 0.0
        return await self.store.arun(PausedFor(self.key), now)

    async def apaused_meanwhile(self, now: float) -> bool:
        return await self.apause_left(now) > 0

    async def ahold(self, now: float, time_left: float) -> Ticket | Throttled | None:
        paused = await self.apause_left(now)
        return self._after_pause(paused, time_left) if paused > 0 else None

    async def arecord(
        self, ticket: Ticket, *, rate_limited: bool, retry_after: float | None, now: float
    ) -> None:
        if rate_limited:
            self.allowance.end()
        if self._pauses(rate_limited, retry_after):
            await self.store.arun(Pause(self.key, retry_after or 0.0), now)
        if not self._learning(ticket, rate_limited, now):
            return
        if rate_limited:
            sending = await self.store.arun(self._sending(now), now)
            await self.store.arun(self._lower(ticket, sending), now)
        else:
            await self.store.arun(self._climb(ticket, now), now)


class LimiterStrategy:
    """The limiter in the pipeline: one ``Limiter`` per host of the vendor, thin sync and async shells.

    Under ``rc.set_testing(True)`` it steps aside, like retry waits: no pacing, no pause, and no
    refusal for a wait past the deadline (there is no wait).
    """

    __slots__ = ("_clock", "_hooks", "_limiters", "settings", "store", "vendor")

    def __init__(
        self,
        settings: RateLimitSettings,
        store: StateStore,
        vendor: str,
        clock: Clock | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.vendor = vendor
        self._clock = Clock() if clock is None else clock
        #: Told of every wait (``Hooks.waited``), as ``"rate_limit"``.
        self._hooks = Hooks() if hooks is None else hooks
        #: Dropped after two idle minutes (or periods): a learned rate and a pause are in the store.
        self._limiters: Endpoints[Limiter] = Endpoints(max(settings.period, LIMITER_IDLE))

    def __repr__(self) -> str:
        return f"LimiterStrategy(vendor={self.vendor!r})"

    def clear(self) -> None:
        """End the server's Retry-After pause of every host this transport called, at once (in the
        store: for every transport and process that shares it). Sync: with a ``RedisState`` built
        from only an async client, use ``aclear``."""
        now = self._clock.monotonic()
        for limiter in list(self._limiters.values()):
            self.store.run(EndPause(limiter.key), now)

    async def aclear(self) -> None:
        """The async twin of ``clear``."""
        now = self._clock.monotonic()
        for limiter in list(self._limiters.values()):
            await self.store.arun(EndPause(limiter.key), now)

    def for_host(self, host: str) -> Limiter:
        """The limiter of one endpoint (``host`` or ``host:port``)."""
        limiter = self._limiters.get(host, self._clock.monotonic())
        if limiter is None:
            key = state_key("limiter", self.vendor, host)
            limiter = self._limiters.put(host, Limiter(self.settings, self.store, key))
        return limiter

    def forget(self) -> None:
        """Let every endpoint's limiter go (``transport.close()``); their state stays in the store."""
        self._limiters.clear()

    # -- no I/O ---------------------------------------------------------------------------------

    def _refused(self, call: Call, number: int, refusal: Throttled) -> Attempt:
        error = ThrottledError(
            refusal.reason,
            vendor=self.vendor,
            retry_after=refusal.retry_after,
            request=call.request,
            secrets=call.secrets,
        )
        return rejected(number, error, "rate_limit")

    @staticmethod
    def _heard(attempt: Attempt) -> bool:
        """Whether the vendor answered (a transport error or a refusal teaches nothing of its rate)."""
        return attempt.rejection is None and attempt.error is None

    # -- the pause gate a guard asks after waiting for its keys (``guard.Gate``; see ``build``) ----

    def paused(self, call: Call) -> bool:
        """Whether the host is paused now (a pause may begin while an attempt waits for a key)."""
        return self.for_host(call.endpoint).paused_meanwhile(call.clock.monotonic())

    def hold(self, call: Call, number: int) -> Attempt | None:
        """Wait out the host's pause; a refusal (ThrottledError) when it would pass the deadline."""
        limiter = self.for_host(call.endpoint)
        clock = call.clock
        started = clock.monotonic()
        waited = False
        while True:
            now = clock.monotonic()
            wait = limiter.hold(now, call.deadline - now)
            testing = is_testing()
            if wait is not None and not testing and not isinstance(wait, Throttled):
                clock.sleep(wait.wait)
                waited = True
                continue
            if waited:  # the wait ends here, sent or refused: the hooks hear how long it lasted
                self._hooks.waited(call, number, "rate_limit", now - started)
            if isinstance(wait, Throttled) and not testing:
                return self._refused(call, number, wait)
            return None

    async def apaused(self, call: Call) -> bool:
        """The async twin of ``paused``."""
        return await self.for_host(call.endpoint).apaused_meanwhile(call.clock.monotonic())

    async def ahold(self, call: Call, number: int) -> Attempt | None:
        """The async twin of ``hold``."""
        limiter = self.for_host(call.endpoint)
        clock = call.clock
        started = clock.monotonic()
        waited = False
        while True:
            now = clock.monotonic()
            wait = await limiter.ahold(now, call.deadline - now)
            testing = is_testing()
            if wait is not None and not testing and not isinstance(wait, Throttled):
                await clock.asleep(wait.wait)
                waited = True
                continue
            if waited:  # the wait ends here, sent or refused: the hooks hear how long it lasted
                self._hooks.waited(call, number, "rate_limit", now - started)
            if isinstance(wait, Throttled) and not testing:
                return self._refused(call, number, wait)
            return None

    # -- shells ---------------------------------------------------------------------------------

    def _turn(self, call: Call, number: int, limiter: Limiter) -> Ticket | Attempt:
        """Wait for a permit to send: its ticket, or the refusal."""
        clock = call.clock
        ask = limiter.reserve  # the shell found no spare
        started = clock.monotonic()  # the hooks hear how long the wait lasted, sent or refused
        waited = False
        while True:
            now = clock.monotonic()
            answer = ask(now, call.deadline - now)
            ask = limiter.acquire
            if isinstance(answer, Throttled):
                if waited:
                    self._hooks.waited(call, number, "rate_limit", now - started)
                return self._refused(call, number, answer)
            if answer.wait > 0:
                waited = True
                clock.sleep(answer.wait)
                if answer.granted and limiter.paused_meanwhile(clock.monotonic()):
                    continue  # wait the pause out, then queue again (this place in the queue is lost)
            if answer.granted:
                if waited:
                    self._hooks.waited(call, number, "rate_limit", clock.monotonic() - started)
                return answer

    async def _aturn(self, call: Call, number: int, limiter: Limiter) -> Ticket | Attempt:
        clock = call.clock
        ask = limiter.areserve
        started = clock.monotonic()
        waited = False
        while True:
            now = clock.monotonic()
            answer = await ask(now, call.deadline - now)
            ask = limiter.aacquire
            if isinstance(answer, Throttled):
                if waited:
                    self._hooks.waited(call, number, "rate_limit", now - started)
                return self._refused(call, number, answer)
            if answer.wait > 0:
                waited = True
                await clock.asleep(answer.wait)
                if answer.granted and await limiter.apaused_meanwhile(clock.monotonic()):
                    continue  # wait the pause out, then queue again (this place in the queue is lost)
            if answer.granted:
                if waited:
                    self._hooks.waited(call, number, "rate_limit", clock.monotonic() - started)
                return answer

    def handle(self, next: Next, call: Call, number: int) -> Attempt:
        """Attempt ``number`` of ``call`` through ``next`` once the endpoint's pace and pause allow
        it (each wait told to the hooks); a refusal (``ThrottledError``) when the wait would pass the
        deadline. A ``rate_limited`` answer lowers the learned rate, a Retry-After pauses the host."""
        now = call.clock.monotonic()
        limiter = self._limiters.get(call.endpoint, now) or self.for_host(call.endpoint)
        # Under the testing switch nothing is reserved: with the waits off, reservations would
        # pile up until the next one reached past the deadline and was refused.
        ticket = _GO
        if not is_testing():
            # ``_Allowance.take``, inlined: most sends of a busy vendor go on a spare.
            allowance = limiter.allowance
            if now < allowance.until and _draw(allowance.spares, None) is not None:
                allowance.used_at = now
                ticket = allowance.ticket
            else:
                turn = self._turn(call, number, limiter)
                if isinstance(turn, Attempt):
                    return turn
                ticket = turn
        attempt = next(call, number)
        if attempt.decision is RETURN and (ticket.rate is None or ticket.rate.rate <= 0):
            return attempt  # a success teaches nothing while no learned rate climbs back
        if self._heard(attempt):
            rate_limited = attempt.outcome.category == "rate_limited"
            limiter.record(
                ticket,
                rate_limited=rate_limited,
                retry_after=_capped(call, attempt),
                now=call.clock.monotonic(),
            )
        return attempt

    async def ahandle(self, next: AsyncNext, call: Call, number: int) -> Attempt:
        """The async twin of ``handle``."""
        now = call.clock.monotonic()
        limiter = self._limiters.get(call.endpoint, now) or self.for_host(call.endpoint)
        ticket = _GO
        if not is_testing():
            allowance = limiter.allowance
            if now < allowance.until and _draw(allowance.spares, None) is not None:
                allowance.used_at = now
                ticket = allowance.ticket
            else:
                turn = await self._aturn(call, number, limiter)
                if isinstance(turn, Attempt):
                    return turn
                ticket = turn
        attempt = await next(call, number)
        if attempt.decision is RETURN and (ticket.rate is None or ticket.rate.rate <= 0):
            return attempt
        if self._heard(attempt):
            rate_limited = attempt.outcome.category == "rate_limited"
            await limiter.arecord(
                ticket,
                rate_limited=rate_limited,
                retry_after=_capped(call, attempt),
                now=call.clock.monotonic(),
            )
        return attempt
