"""State stores: where the strategies keep tokens, counts, circuit states, leases and learned rates.

``MemoryState`` (in process) is the default; ``RedisState`` (``stores/redis.py``, extra ``redis``)
shares the same state across a fleet. A store runs operations, each a small frozen value
(``store.run(TrySpend(key, 1.0, 10.0), now)``); see ``StateStore`` for the operations and why they
take ``now``.
"""

from resilient_client.stores._protocol import (
    Acquire,
    Circuit,
    CircuitState,
    CloseCircuit,
    Deposit,
    EndPause,
    LimiterAcquire,
    LimiterAdmit,
    LimiterLearn,
    LimiterState,
    OpenCircuit,
    Operation,
    Pause,
    PausedFor,
    RateTicket,
    ReadCircuit,
    RecordOutcome,
    RecordSuccesses,
    Release,
    ReleaseProbe,
    ResetCircuit,
    StateStore,
    TryProbe,
    TrySpend,
    state_key,
)
from resilient_client.stores.memory import MemoryState

__all__ = [
    "Acquire",
    "Circuit",
    "CircuitState",
    "CloseCircuit",
    "Deposit",
    "EndPause",
    "LimiterAcquire",
    "LimiterAdmit",
    "LimiterLearn",
    "LimiterState",
    "MemoryState",
    "OpenCircuit",
    "Operation",
    "Pause",
    "PausedFor",
    "RateTicket",
    "ReadCircuit",
    "RecordOutcome",
    "RecordSuccesses",
    "Release",
    "ReleaseProbe",
    "ResetCircuit",
    "StateStore",
    "TryProbe",
    "TrySpend",
    "state_key",
]
