"""Endpoints: a strategy's per-endpoint objects (a breaker, a limiter per host and port), bounded.

A transport that calls a million endpoints over its life must not keep a million breakers. The
objects live in two generations: the current one (used since the last turn) and the previous one.
Every ``idle`` seconds (the strategy's longest window) the generations turn and the previous one is
dropped, so an object unused for two turns is gone. Its shared state is in the store, which forgets
idle keys by itself: an object made again for the endpoint reads the same state. A lookup costs one
dictionary read and one comparison of times; ``clear`` lets them all go (``transport.close()``).
"""

from __future__ import annotations

import math
from typing import Generic, TypeVar

__all__ = ["Endpoints"]

_T = TypeVar("_T")


class Endpoints(Generic[_T]):
    """Objects by endpoint, each dropped after two turns of ``idle`` seconds without a lookup."""

    __slots__ = ("_current", "_previous", "_turn_at", "idle")

    def __init__(self, idle: float) -> None:
        self.idle = idle
        self._current: dict[str, _T] = {}
        self._previous: dict[str, _T] = {}
        self._turn_at = -math.inf

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)

    def get(self, endpoint: str, now: float) -> _T | None:
        """The object of ``endpoint`` (None when there is none), kept for two more turns."""
        if now >= self._turn_at:
            self._previous, self._current = self._current, {}
            self._turn_at = now + self.idle
        found = self._current.get(endpoint)
        if found is None:
            found = self._previous.pop(endpoint, None)
            if found is not None:
                self._current[endpoint] = found
        return found

    def put(self, endpoint: str, value: _T) -> _T:
        self._current[endpoint] = value
        return value

    def values(self) -> list[_T]:
        return [*self._previous.values(), *self._current.values()]

    def clear(self) -> None:
        self._current.clear()
        self._previous.clear()
