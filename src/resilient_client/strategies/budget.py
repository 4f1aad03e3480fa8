"""The retry budget: each request adds ``ratio`` tokens (up to ``burst``), each retry takes one.

Under a total outage every request fails, and without a budget each one retries ``max_attempts - 1``
times, multiplying the load on a vendor that is already down. The budget caps retries at ``ratio``
of the requests (plus ``burst``), shared by every request of the pipeline (or, with a shared store,
of the fleet). The check and the take before a retry are one atomic store operation, so 32 threads
racing for the last token never overdraw it.
"""

from __future__ import annotations

from resilient_client._settings import BudgetSettings
from resilient_client.stores import StateStore

__all__ = ["Budget"]

#: What one retry costs.
RETRY_COST = 1.0


class Budget:
    """A retry budget over one store key; ``ratio = 0`` turns it off (every retry allowed)."""

    __slots__ = ("_burst", "_ratio", "enabled", "key", "settings", "store")

    def __init__(self, settings: BudgetSettings, store: StateStore, key: str) -> None:
        self.settings = settings
        self.store = store
        self.key = key
        #: Whether retries are rationed at all (``ratio = 0`` turns the budget off).
        self.enabled = settings.ratio > 0
        # Read once: every request deposits, and the settings are frozen.
        self._ratio = settings.ratio
        self._burst = settings.burst

    def __repr__(self) -> str:
        return f"Budget(ratio={self.settings.ratio!r}, burst={self.settings.burst!r}, key={self.key!r})"

    def deposit(self, now: float) -> None:
        """Earn a request's share of a retry (call once per request, not per attempt)."""
        if self.enabled:
            self.store.deposit(self.key, self._ratio, self._burst, now)

    def try_spend(self, now: float) -> bool:
        """Take one retry's token; False means the retry must not be sent."""
        return not self.enabled or self.store.try_spend(self.key, RETRY_COST, self._burst, now)

    async def adeposit(self, now: float) -> None:
        if self.enabled:
            await self.store.adeposit(self.key, self._ratio, self._burst, now)

    async def atry_spend(self, now: float) -> bool:
        return not self.enabled or await self.store.atry_spend(self.key, RETRY_COST, self._burst, now)
