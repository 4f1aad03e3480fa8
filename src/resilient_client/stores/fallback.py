"""Fallback: what a shared store does while it does not answer (``[state] on_unavailable``).

``"local"`` (the default): the operation runs on an in-process MemoryState instead, so an outage of
the shared store never fails a call by itself; the process is on its own (its own budget, circuits
and leases) until the shared store answers again. ``"raise"``: the operation raises
StateUnavailableError (a RejectedError: the SDK sends nothing).

While the store is down it is tried again at most once per ``probe_interval`` seconds, by one caller
(the probe), whose operation goes to the shared store; every other caller stays local (or is refused)
at once, without waiting for a store that is likely still gone. The interval is measured on the
operations' ``now`` (the callers' monotonic clock, which a fake clock drives in tests). One warning
is logged when the store stops answering and one line when it answers again: never one per call.

A busy store (``Busy``: it answers other callers, but this operation got no answer in the time it
could wait, the call's deadline being near or the process's own callers queued before it) is no
outage either: the operation goes without the store, the state does not move, nothing is logged
above debug level.

An error reply (Redis answered, but refused the operation: out of memory, a value of the wrong
type) is no outage: that one operation goes without the store (local, or refused) and the state does
not move; the first such refusal is logged as a warning, the later ones at debug level.

Only news moves the state. Every change (up to down, down to up) starts a new generation, and an
operation counts only if it began in the current one: a call that was already waiting on the store
when another one saw it fail, and whose answer then arrives, says nothing about the store now (it
would flip the state back and forth, with a warning per flip); nor does a probe that failed after a
later probe succeeded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from resilient_client._redact import redact_text
from resilient_client.errors import StateUnavailableError
from resilient_client.stores.memory import MemoryState

__all__ = ["Busy", "Fallback", "OnUnavailable"]

OnUnavailable = Literal["local", "raise"]
_T = TypeVar("_T")

logger = logging.getLogger("resilient_client")


class Busy(Exception):
    """The shared store answered other operations while this one waited, but not this one in the
    time it had (see the module docstring): not an outage."""


class Fallback:
    """Runs each operation on the shared store, or, while it is down, on ``local`` (or refuses)."""

    def __init__(
        self,
        *,
        name: str,
        unavailable: tuple[type[BaseException], ...],
        refused: tuple[type[BaseException], ...] = (),
        on_unavailable: OnUnavailable,
        idle_seconds: float,
        redact: Callable[[str], str] = redact_text,
        probe_interval: float = 1.0,
    ) -> None:
        #: How logs and errors name the shared store (a URL without its password).
        self.name = name
        #: What the shared store raises when it does not answer (an outage).
        self.unavailable = unavailable
        #: What it raises when it answers with an error (see the module docstring).
        self.refused = refused
        self._refusals = 0
        self.on_unavailable = on_unavailable
        self.probe_interval = probe_interval
        #: Masks the store's secrets (its password) in an error's text before it is logged.
        self.redact = redact
        self.local = MemoryState(idle_seconds=idle_seconds)
        # Held for a few assignments, never across a call to the store.
        self._lock = threading.Lock()
        self._down = False
        self._next_probe = 0.0
        #: Counts the changes of ``_down``; see the module docstring.
        self._generation = 0

    @property
    def down(self) -> bool:
        """True while the shared store is considered gone (operations run locally or are refused)."""
        return self._down

    def call(self, now: float, shared: Callable[[], _T], local: Callable[[], _T]) -> _T:
        """``shared()``, or ``local()`` (on ``self.local``) while the shared store is down."""
        generation = self._may_try(now)
        if generation is None:
            return self._without_store(now, local)
        try:
            result = shared()
        except Busy as exc:
            return self._busy(now, local, exc)
        except self.unavailable as exc:
            self._failed(now, exc, generation)
            return self._without_store(now, local, exc)
        except self.refused as exc:
            self._refused(exc)
            return self._without_store(now, local, exc)
        self._answered(generation)
        return result

    async def acall(self, now: float, shared: Callable[[], Awaitable[_T]], local: Callable[[], _T]) -> _T:
        generation = self._may_try(now)
        if generation is None:
            return self._without_store(now, local)
        try:
            result = await shared()
        except Busy as exc:
            return self._busy(now, local, exc)
        except self.unavailable as exc:
            self._failed(now, exc, generation)
            return self._without_store(now, local, exc)
        except self.refused as exc:
            self._refused(exc)
            return self._without_store(now, local, exc)
        self._answered(generation)
        return result

    def _busy(self, now: float, local: Callable[[], _T], exc: Busy) -> _T:
        logger.debug("shared state store %s: %s", self.name, exc)
        return self._without_store(now, local, exc)

    def _refused(self, exc: BaseException) -> None:
        with self._lock:
            self._refusals += 1
            first = self._refusals == 1
        then = "used in-process state" if self.on_unavailable == "local" else "refused the call"
        logger.log(
            logging.WARNING if first else logging.DEBUG,
            "shared state store %s refused an operation (%s: %s); %s for it",
            self.name,
            type(exc).__name__,
            self.redact(str(exc)),
            then,
        )

    def _may_try(self, now: float) -> int | None:
        """The generation this caller goes to the shared store in, or None when it stays away: it
        goes always while the store is up; while it is down, only the first caller after the probe
        interval does (and sets the next probe time)."""
        # The common case, read without the lock, generation first: a change in between makes this
        # operation one of the old generation, whose outcome is then ignored.
        generation = self._generation
        if not self._down:
            return generation
        with self._lock:
            if not self._down:
                return self._generation
            if now < self._next_probe:
                return None
            self._next_probe = now + self.probe_interval
            return self._generation

    def _failed(self, now: float, exc: BaseException, generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                return  # began before the last change: old news, this call just goes without
            self._next_probe = now + self.probe_interval
            if self._down:
                logger.debug(
                    "shared state store %s still does not answer (%s)", self.name, type(exc).__name__
                )
                return
            self._down = True
            self._generation += 1
        then = "using in-process state" if self.on_unavailable == "local" else "refusing calls"
        logger.warning(
            "shared state store %s did not answer (%s: %s); %s until it does (trying again every %g s)",
            self.name,
            type(exc).__name__,
            self.redact(str(exc)),
            then,
            self.probe_interval,
        )

    def _answered(self, generation: int) -> None:
        if not self._down:  # the common case, read without the lock: a stale read only delays the log
            return
        with self._lock:
            if not self._down or generation != self._generation:
                return
            self._down = False
            self._generation += 1
        logger.info("shared state store %s answers again; using it again", self.name)

    def _without_store(self, now: float, local: Callable[[], _T], cause: BaseException | None = None) -> _T:
        if self.on_unavailable == "local":
            return local()
        with self._lock:
            retry_after = max(0.0, self._next_probe - now)
        refused = isinstance(cause, self.refused) and not isinstance(cause, self.unavailable)
        if isinstance(cause, Busy):
            what = "did not answer in the time the call had left"
        else:
            what = "refused the operation" if refused else "did not answer"
        error = StateUnavailableError(f"the shared state store {self.name} {what}", retry_after=retry_after)
        raise error from cause
