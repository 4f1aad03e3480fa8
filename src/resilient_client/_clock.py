"""One time source for every strategy: monotonic time, wall time, sleeps and randomness.

Strategies never read ``time`` or ``random`` themselves: a test swaps this one object and every wait,
deadline, jitter and break duration follows (Polly's ``TimeProvider`` plus its randomizer, in one).
The 0.1 keyword arguments of ``ResilientTransport`` (``clock=``, ``wall_clock=``, ``sleep=``,
``async_sleep=``, ``random=``) map onto it through ``Clock.from_options``.
"""

from __future__ import annotations

import random as _random
import time
from collections.abc import Awaitable, Callable

import anyio
import attrs

__all__ = ["Clock"]


@attrs.frozen
class Clock:
    """Monotonic and wall time, sync and async sleep, and a random float in [0, 1).

    Each field is a plain callable, so ``clock.monotonic()`` and ``await clock.asleep(0.5)`` read as
    methods while any function can stand in for one.
    """

    #: Seconds on a clock that never goes back: deadlines, waits, and the ``now`` of the state store.
    monotonic: Callable[[], float] = time.monotonic
    #: Unix time: only to read a server's HTTP-date (``Retry-After: Wed, 21 Oct ...``).
    wall: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    #: ``anyio.sleep`` by default, so one clock serves asyncio and trio.
    asleep: Callable[[float], Awaitable[None]] = anyio.sleep
    random: Callable[[], float] = _random.random

    @classmethod
    def from_options(
        cls,
        *,
        clock: Callable[[], float] | None = None,
        wall_clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
        async_sleep: Callable[[float], Awaitable[None]] | None = None,
        random: Callable[[], float] | None = None,
    ) -> Clock:
        """A Clock from the 0.1 keyword arguments; a keyword left out (or None) keeps the real one.

        A value that cannot be called is refused here, naming its keyword, rather than at the first
        request.
        """
        given = {
            "clock": clock,
            "wall_clock": wall_clock,
            "sleep": sleep,
            "async_sleep": async_sleep,
            "random": random,
        }
        for keyword, value in given.items():
            if value is not None and not callable(value):
                raise TypeError(f"{keyword}= must be callable, not {type(value).__name__}")
        default = cls()
        return cls(
            monotonic=clock or default.monotonic,
            wall=wall_clock or default.wall,
            sleep=sleep or default.sleep,
            asleep=async_sleep or default.asleep,
            random=random or default.random,
        )
