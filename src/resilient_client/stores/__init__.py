"""State stores: where the strategies keep tokens, counts, circuit states, leases and learned rates.

``MemoryState`` (in process) is the default; ``RedisState`` (``stores/redis.py``, extra ``redis``)
shares the same state across a fleet. See ``StateStore`` for the operations and why they take
``now``.
"""

from resilient_client.stores._protocol import Circuit, CircuitState, RateTicket, StateStore, state_key
from resilient_client.stores.memory import MemoryState

__all__ = ["Circuit", "CircuitState", "MemoryState", "RateTicket", "StateStore", "state_key"]
