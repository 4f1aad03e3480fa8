"""A count of events that a strategy writes to its store in batches, not one store operation each.

Most of what the success path tells the store is write-only (a request earned the budget its share,
the breaker saw one more success): nobody reads it until a retry spends or a failure is weighed. So
the success path only counts, with ``itertools.count`` (one C call, atomic under the GIL, no lock),
and the strategy writes the count when it next reads the state, or after the store's
``batch_seconds`` (a shared store wants the fleet to see it soon; the in-process one does not).
"""

from __future__ import annotations

import itertools
import threading

__all__ = ["Tally", "batch_seconds"]


def batch_seconds(store: object) -> float:
    """How long ``store`` lets write-only counts wait in process (0 for a store that does not say:
    every count written at once, as before batching existed)."""
    seconds = getattr(store, "batch_seconds", 0.0)
    return seconds if isinstance(seconds, int | float) and seconds >= 0 else 0.0


class Tally:
    """Events counted lock-free (``add``) and taken out exactly once each (``take``)."""

    __slots__ = ("_counter", "_lock", "_next", "add")

    def __init__(self) -> None:
        self._counter = itertools.count()
        #: Count one event: the counter's own ``__next__``, so the hot path is one C call.
        self.add = self._counter.__next__
        self._lock = threading.Lock()  # held for a few additions, never across I/O
        #: The first number drawn after the last ``take`` (the events since drew from it on).
        self._next = 0

    def take(self) -> int:
        """The events counted since the last ``take`` (each event is taken once, whatever the
        threads). ``take`` draws a number from the counter too: the numbers between the last
        take's and this one's are the events'."""
        with self._lock:
            drawn = next(self._counter)
            pending = drawn - self._next
            self._next = drawn + 1
            return pending
