"""Store operations called by name in tests: ``Store(store).try_spend(key, 1.0, 3.0, now)`` runs
``store.run(TrySpend(key, 1.0, 3.0), now)``; conftest's ``Twin`` runs them with ``arun`` too."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from resilient_client import stores

#: A store operation by the name the tests call it: ``ops.try_spend(key, 1.0, 3.0, now)`` runs
#: ``store.run(TrySpend(key, 1.0, 3.0), now)`` (the fields in the class's order, ``now`` last).
STORE_OPERATIONS: dict[str, type[Any]] = {
    "deposit": stores.Deposit,
    "try_spend": stores.TrySpend,
    "record_outcome": stores.RecordOutcome,
    "record_successes": stores.RecordSuccesses,
    "circuit": stores.ReadCircuit,
    "try_probe": stores.TryProbe,
    "release_probe": stores.ReleaseProbe,
    "open_circuit": stores.OpenCircuit,
    "close_circuit": stores.CloseCircuit,
    "reset_circuit": stores.ResetCircuit,
    "try_acquire": stores.Acquire,
    "release": stores.Release,
    "pause": stores.Pause,
    "paused_for": stores.PausedFor,
    "end_pause": stores.EndPause,
    "limiter_acquire": stores.LimiterAcquire,
    "limiter_admit": stores.LimiterAdmit,
    "limiter_state": stores.LimiterState,
    "limiter_learn": stores.LimiterLearn,
    "enter_slot": stores.EnterSlot,
    "leave_slot": stores.LeaveSlot,
}


def store_operation(name: str, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """The operation ``name`` of ``STORE_OPERATIONS`` made of ``args`` (``now`` last), and ``now``."""
    if "now" in kwargs:
        now, fields = kwargs.pop("now"), args
    else:
        *fields, now = args
    return STORE_OPERATIONS[name](*fields, **kwargs), now


class Store:
    """A store's operations called by name (see ``STORE_OPERATIONS``), sync: ``Store(s).deposit(...)``."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            op, now = store_operation(name, *args, **kwargs)
            return self._store.run(op, now)

        return call
