"""Guards: at most ``limit`` attempts in flight per key, such as one journal call per Hyper account.

Hyper answers code 50 while another journal request of the same account runs, so sending a second
one only earns a fault and a retry. A guard names the operations it covers (globs) and where the key
comes from: the request's JSON body fields, or ``request.extensions["resilient_client.guard_key"]``
set by the caller. A request may name several keys (one per field present); they are held together,
all at once or none, so two requests can never each hold one key while waiting for the other.

Which guards cover an operation is worked out once per operation name (``GuardStrategy.covering``):
most requests of a guarded vendor are covered by none, and then the guard costs a dictionary lookup.

The hold is a lease in the store (the call's time left plus a margin), taken for one attempt and
released once the attempt is classified, never across a backoff wait. While the keys are busy the
shell asks again after ``next_try``; past ``max_wait`` or the call's deadline it raises
GuardTimeoutError, sending nothing.

What a hold costs with a shared store: taking the keys is one operation (``Acquire``: one round trip,
all keys in one script), and releasing them another (``Release``), which cannot be dropped or
deferred: other processes wait for the account.

The guard sits inside the rate limiter, so an attempt that waited here for its keys passed the
limiter's pause check before that wait. A server's Retry-After pause that began meanwhile (another
request, maybe in another process, got a 429) must hold it too: after any wait for a key, the guard
asks its pause ``gate`` whether the host is paused, and if so lets go of its keys, has the gate wait
the pause out (or refuse, past the deadline), and takes them again. The gate is the one place the
guard meets another strategy: ``strategies.build`` hands it the rate limiter, seen only through the
``Gate`` protocol below (no field of either is read by the other).
"""

from __future__ import annotations

import fnmatch
import json
import re
import uuid
from collections.abc import Sequence
from typing import Protocol

import anyio
import httpx

from resilient_client._pipeline import OPERATION_EXTENSION, AsyncNext, Attempt, Call, Hooks, Next, rejected
from resilient_client._settings import GuardSettings
from resilient_client.errors import GuardTimeoutError
from resilient_client.stores import Acquire, Release, StateStore, state_key

__all__ = ["GUARD_KEY_EXTENSION", "Gate", "Guard", "GuardStrategy"]

#: ``request.extensions`` key: the guard key(s) of this request (a string or a sequence of strings),
#: used instead of the body fields by every guard whose operations match.
GUARD_KEY_EXTENSION = "resilient_client.guard_key"
#: A hold outlives the time left to its call by this much, then frees itself: a crashed process never
#: holds an account for ever, and a live call never loses its hold.
LEASE_MARGIN = 5.0
#: The first pause before asking for busy keys again; it doubles up to ``POLL_MAX``.
POLL_FIRST = 0.005
POLL_MAX = 0.1
#: Less of ``max_wait`` (or of the time left) than this is none: a pause that short cannot move a
#: clock reading 1000 s or more (a float's resolution there), so the wait would never end.
POLL_MIN = 1e-6
#: Operation names whose covering guards a GuardStrategy remembers; past it the memory starts
#: afresh (operations named from paths holding ids are without number).
COVERING_KEPT = 1024


class Gate(Protocol):
    """The pause gate: what a guard asks after waiting for its keys, before it sends (the rate
    limiter's Retry-After pauses). ``paused``: whether the call's host is paused now; ``hold``: wait
    the pause out, or the refusal when it would pass the deadline."""

    def paused(self, call: Call) -> bool: ...

    def hold(self, call: Call, number: int) -> Attempt | None: ...

    async def apaused(self, call: Call) -> bool: ...

    async def ahold(self, call: Call, number: int) -> Attempt | None: ...


def _canonical(value: object) -> str:
    """A value's text for a key: strings as they are, anything else as compact sorted JSON in which
    a whole number is written as an integer (``7`` and ``7.0`` are one account)."""
    if isinstance(value, str):
        return value
    return json.dumps(_whole(value), sort_keys=True, separators=(",", ":"))


def _whole(value: object) -> object:
    """``value`` with every float that is a whole number made an int, inside lists and objects too."""
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, list):
        return [_whole(item) for item in value]
    if isinstance(value, dict):
        return {key: _whole(item) for key, item in value.items()}
    return value


class Guard:
    """One ``[guards.<name>]`` table over a store, its keys under ``namespace`` (the vendor's)."""

    __slots__ = ("_matches", "name", "namespace", "settings", "store")

    def __init__(self, name: str, settings: GuardSettings, store: StateStore, namespace: str) -> None:
        self.name = name
        self.settings = settings
        self.store = store
        self.namespace = namespace
        # Every request of the vendor asks: the globs as one expression (what ``fnmatchcase``
        # compiles each of them to), matched in one call.
        globs = "|".join(f"(?:{fnmatch.translate(glob)})" for glob in settings.operations)
        self._matches = re.compile(globs or "(?!)").match

    def __repr__(self) -> str:
        return f"Guard(name={self.name!r}, operations={self.settings.operations!r})"

    # -- no I/O ---------------------------------------------------------------------------------

    def covers(self, operation: str) -> bool:
        """Whether the guard's operation globs match ``operation`` (case-sensitive)."""
        return self._matches(operation) is not None

    def keys_for(
        self, operation: str, body: bytes | None, extension: object = None, host: str = ""
    ) -> tuple[str, ...] | None:
        """The store keys a request must hold, in a fixed (sorted) order, or None when it is not guarded.

        ``extension`` is ``request.extensions.get(GUARD_KEY_EXTENSION)``; when given it replaces
        the body fields. ``body`` is the request's content when it was read (a one-shot stream is
        not read for a key). ``host`` (the request's) is named in every key after the vendor's
        namespace: one account number at two hosts is two accounts. A covered request whose body
        is not a JSON object, or names none of the key fields, is not guarded: there is nothing to
        hold it by.
        """
        if not self.covers(operation):
            return None
        parts: list[tuple[str, ...]]
        if extension is not None:
            parts = [(value,) for value in self._extension_values(extension)]
        else:
            parts = [(field, _canonical(value)) for field, value in self._body_fields(body)]
        # The namespace is a key already: only the parts added here are quoted.
        namespace = f"{self.namespace}/{state_key(host)}" if host else self.namespace
        names = {f"{namespace}/{state_key(self.name, *part)}" for part in parts}
        return tuple(sorted(names)) or None

    @staticmethod
    def _extension_values(extension: object) -> Sequence[str]:
        if isinstance(extension, str):
            return (extension,)
        if isinstance(extension, Sequence) and all(isinstance(v, str) for v in extension):
            return extension
        raise TypeError(
            f'request.extensions["{GUARD_KEY_EXTENSION}"] must be a string or a sequence of strings, '
            f"not {type(extension).__name__}"
        )

    def _body_fields(self, body: bytes | None) -> list[tuple[str, object]]:
        if not body or not self.settings.key_fields:
            return []
        try:
            document = json.loads(body)
        except ValueError:  # not JSON (UnicodeDecodeError is a ValueError too)
            return []
        if not isinstance(document, dict):
            return []
        return [(f, document[f]) for f in self.settings.key_fields if document.get(f) is not None]

    def lease(self, time_left: float) -> float:
        """How long a hold lasts if it is never released."""
        return max(0.0, time_left) + LEASE_MARGIN

    def next_try(self, tries: int, waited: float, time_left: float) -> float | None:
        """The pause before asking again for busy keys after ``tries`` refusals and ``waited``
        seconds, or None when waiting more would pass ``max_wait`` or the deadline."""
        remaining = min(self.settings.max_wait - waited, time_left)
        if remaining < POLL_MIN:
            return None
        return min(POLL_FIRST * 2.0 ** min(tries, 30), POLL_MAX, remaining)

    # -- sync and async -------------------------------------------------------------------------

    def try_enter(self, keys: Sequence[str], token: str, time_left: float, now: float) -> bool:
        """Hold every key for ``token`` (all or none); False while any is at its limit."""
        return self.store.run(Acquire(keys, self.settings.limit, self.lease(time_left), token), now)

    def leave(self, keys: Sequence[str], token: str, now: float) -> None:
        """Release ``token``'s holds (once the attempt is classified)."""
        self.store.run(Release(keys, token), now)

    async def atry_enter(self, keys: Sequence[str], token: str, time_left: float, now: float) -> bool:
        return await self.store.arun(Acquire(keys, self.settings.limit, self.lease(time_left), token), now)

    async def aleave(self, keys: Sequence[str], token: str, now: float) -> None:
        await self.store.arun(Release(keys, token), now)


#: A guard and the keys it must hold for one attempt.
_Hold = tuple[Guard, tuple[str, ...]]


class GuardStrategy:
    """The guards in the pipeline: hold every key a request names for one attempt, then let go.

    Guards are taken one after another in name order (each all-at-once), so two requests never
    wait on each other's keys. Their waits are real even under ``rc.set_testing(True)``: they end
    when the call holding the key ends. ``gate`` (the rate limiter, when there is one) is asked
    after any wait for a key whether a pause began meanwhile (see the module docstring).
    """

    __slots__ = ("_covering", "_covering_path", "_hooks", "gate", "guards", "vendor")

    def __init__(
        self, guards: Sequence[Guard], vendor: str, gate: Gate | None = None, hooks: Hooks | None = None
    ) -> None:
        self.guards = tuple(sorted(guards, key=lambda guard: guard.name))
        self.vendor = vendor
        self.gate = gate
        #: Told of every wait for a busy key (``Hooks.waited``), as ``"guard"``.
        self._hooks = Hooks() if hooks is None else hooks
        #: operation -> the guards whose globs match it, worked out once per operation name: most
        #: requests of a guarded vendor are covered by none, and matching globs costs more than
        #: the rest of the question.
        self._covering: dict[str, tuple[Guard, ...]] = {}
        #: The same answer by the request's raw path (a request that does not name its operation):
        #: found without working out the operation's name from the URL, which costs more than the
        #: rest of an uncovered request's passage.
        self._covering_path: dict[bytes, tuple[Guard, ...]] = {}

    def __repr__(self) -> str:
        return f"GuardStrategy(vendor={self.vendor!r}, guards={[g.name for g in self.guards]!r})"

    # -- no I/O ---------------------------------------------------------------------------------

    def covering(self, operation: str) -> tuple[Guard, ...]:
        """The guards whose operation globs match ``operation``, in the order they are taken."""
        found = self._covering.get(operation)
        if found is None:
            found = tuple(guard for guard in self.guards if guard.covers(operation))
            if len(self._covering) >= COVERING_KEPT:
                self._covering = {}
            self._covering[operation] = found
        return found

    def covering_call(self, call: Call) -> tuple[Guard, ...]:
        """``covering`` of ``call``'s operation, by its raw path when it names none."""
        request = call.request
        if OPERATION_EXTENSION in request.extensions:
            return self.covering(call.operation)
        path = request.url.raw_path.partition(b"?")[0]
        found = self._covering_path.get(path)
        if found is None:
            found = self.covering(call.operation)
            if len(self._covering_path) >= COVERING_KEPT:
                self._covering_path = {}
            self._covering_path[path] = found
        return found

    def _holds(self, call: Call, covering: tuple[Guard, ...]) -> list[_Hold]:
        """The (guard, keys) pairs this request must hold, in a fixed order (``covering``: the
        guards that cover its operation)."""
        operation = call.operation
        request = call.request
        extension = request.extensions.get(GUARD_KEY_EXTENSION)
        holds = []
        body: bytes | None = None
        read = False
        for guard in covering:
            if not read and extension is None:
                body = _content(request)
                read = True
            keys = guard.keys_for(operation, body, extension, call.host)
            if keys is not None:
                holds.append((guard, keys))
        return holds

    def _refused(
        self, call: Call, number: int, guard: Guard, keys: tuple[str, ...], waited: float
    ) -> Attempt:
        reason = f"guard {guard.name!r}: the key stayed busy for {waited:.3g} s"
        error = GuardTimeoutError(
            reason, vendor=self.vendor, key=", ".join(keys), request=call.request, secrets=call.secrets
        )
        return rejected(number, error, "guard")

    # -- shells ---------------------------------------------------------------------------------

    def _enter(
        self, call: Call, number: int, token: str, holds: list[_Hold], held: list[_Hold]
    ) -> Attempt | bool:
        """Take every hold into ``held``: whether that meant waiting, or the refusal."""
        clock = call.clock
        waited = False
        for guard, keys in holds:
            start = clock.monotonic()
            tries = 0
            while not guard.try_enter(keys, token, call.deadline - clock.monotonic(), clock.monotonic()):
                now = clock.monotonic()
                pause = guard.next_try(tries, now - start, call.deadline - now)
                if pause is None:
                    if tries:
                        self._hooks.waited(call, number, "guard", now - start)
                    return self._refused(call, number, guard, keys, now - start)
                clock.sleep(pause)
                tries += 1
            if tries:
                self._hooks.waited(call, number, "guard", clock.monotonic() - start)
            waited = waited or tries > 0
            held.append((guard, keys))
        return waited

    def handle(self, next: Next, call: Call, number: int) -> Attempt:
        covering = self.covering_call(call)
        holds = self._holds(call, covering) if covering else None
        if not holds:
            return next(call, number)
        token = uuid.uuid4().hex
        clock = call.clock
        while True:
            held: list[_Hold] = []
            try:
                entered = self._enter(call, number, token, holds, held)
                if not isinstance(entered, bool):
                    return entered
                if not (entered and self.gate is not None and self.gate.paused(call)):
                    return next(call, number)
            finally:
                for guard, keys in reversed(held):
                    guard.leave(keys, token, clock.monotonic())
            assert self.gate is not None
            refusal = self.gate.hold(call, number)  # the keys are free while the pause lasts
            if refusal is not None:
                return refusal

    async def _aenter(
        self, call: Call, number: int, token: str, holds: list[_Hold], held: list[_Hold]
    ) -> Attempt | bool:
        clock = call.clock
        waited = False
        for guard, keys in holds:
            start = clock.monotonic()
            tries = 0
            while not await guard.atry_enter(
                keys, token, call.deadline - clock.monotonic(), clock.monotonic()
            ):
                now = clock.monotonic()
                pause = guard.next_try(tries, now - start, call.deadline - now)
                if pause is None:
                    if tries:
                        self._hooks.waited(call, number, "guard", now - start)
                    return self._refused(call, number, guard, keys, now - start)
                await clock.asleep(pause)
                tries += 1
            if tries:
                self._hooks.waited(call, number, "guard", clock.monotonic() - start)
            waited = waited or tries > 0
            held.append((guard, keys))
        return waited

    async def ahandle(self, next: AsyncNext, call: Call, number: int) -> Attempt:
        covering = self.covering_call(call)
        holds = self._holds(call, covering) if covering else None
        if not holds:
            return await next(call, number)
        token = uuid.uuid4().hex
        clock = call.clock
        while True:
            held: list[_Hold] = []
            try:
                entered = await self._aenter(call, number, token, holds, held)
                if not isinstance(entered, bool):
                    return entered
                if not (entered and self.gate is not None and await self.gate.apaused(call)):
                    return await next(call, number)
            finally:
                with anyio.CancelScope(shield=True):
                    for guard, keys in reversed(held):
                        await guard.aleave(keys, token, clock.monotonic())
            assert self.gate is not None
            refusal = await self.gate.ahold(call, number)
            if refusal is not None:
                return refusal


def _content(request: httpx.Request) -> bytes | None:
    """The request body when it is held in memory (a one-shot stream is never read for a key)."""
    try:
        return request.content
    except httpx.RequestNotRead:
        return None
