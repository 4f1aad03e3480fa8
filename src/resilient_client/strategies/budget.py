"""The retry budget: each request adds ``ratio`` tokens (up to ``burst``), each retry takes one.

Under a total outage every request fails, and without a budget each one retries ``max_attempts - 1``
times, multiplying the load on a vendor that is already down. The budget caps retries at ``ratio``
of the requests (plus ``burst``), shared by every request of the pipeline (or, with a shared store,
of the fleet). The check and the take before a retry are one atomic store operation, so 32 threads
racing for the last token never overdraw it.

A request's deposit is only counted in process (see ``_tally``) and written to the store in one
``deposit`` of ``n * ratio`` tokens before the next retry asks for one, or after the store's
``batch_seconds``. Nothing spends in between, so one deposit of ``n * ratio`` capped at ``burst``
leaves the bucket exactly where ``n`` deposits of ``ratio`` would have.
"""

from __future__ import annotations

import math

from resilient_client._settings import BudgetSettings
from resilient_client.stores import MemoryState, StateStore
from resilient_client.strategies._tally import Tally, batch_seconds

__all__ = ["Budget"]

#: What one retry costs.
RETRY_COST = 1.0


class Budget:
    """A retry budget over one store key; ``ratio = 0`` turns it off (every retry allowed)."""

    __slots__ = (
        "_batch",
        "_burst",
        "_memory",
        "_ratio",
        "earned",
        "enabled",
        "flush_at",
        "inline",
        "key",
        "settings",
        "store",
    )

    def __init__(self, settings: BudgetSettings, store: StateStore, key: str) -> None:
        self.settings = settings
        self.store = store
        self.key = key
        #: Whether retries are rationed at all (``ratio = 0`` turns the budget off).
        self.enabled = settings.ratio > 0
        # Read once: every request deposits, and the settings are frozen.
        self._ratio = settings.ratio
        self._burst = settings.burst
        #: Requests that earned their share and are not in the store yet.
        self.earned = Tally()
        self._batch = batch_seconds(store)
        #: When the earned shares are written even if no retry asks first (never, in process).
        self.flush_at = -math.inf if self._batch <= 0 else 0.0
        #: The in-process store's async operations only call its sync ones: an async caller may call
        #: the sync methods here itself (``deposit``, ``try_spend``) and await nothing.
        self.inline = type(store) is MemoryState
        #: That store, whose ``try_spend`` also makes the deposit before it (one step, not two).
        self._memory = store if isinstance(store, MemoryState) and self.inline else None

    def __repr__(self) -> str:
        return f"Budget(ratio={self.settings.ratio!r}, burst={self.settings.burst!r}, key={self.key!r})"

    def _amount(self, now: float) -> float:
        """The tokens earned since the last write (taken out: the caller writes them)."""
        self.flush_at = now + self._batch
        return self.earned.take() * self._ratio

    def deposit(self, now: float) -> None:
        """Earn a request's share of a retry (call once per request, not per attempt)."""
        if self.enabled:
            self.earned.add()
            if now >= self.flush_at:
                amount = self._amount(now)
                if amount > 0:
                    self.store.deposit(self.key, amount, self._burst, now)

    def try_spend(self, now: float) -> bool:
        """Take one retry's token; False means the retry must not be sent."""
        if not self.enabled:
            return True
        amount = self._amount(now)
        if self._memory is not None:
            return self._memory.try_spend(self.key, RETRY_COST, self._burst, now, amount)
        if amount > 0:
            self.store.deposit(self.key, amount, self._burst, now)
        return self.store.try_spend(self.key, RETRY_COST, self._burst, now)

    async def adeposit(self, now: float) -> None:
        if self.enabled:
            self.earned.add()
            if now >= self.flush_at:
                amount = self._amount(now)
                if amount > 0:
                    await self.store.adeposit(self.key, amount, self._burst, now)

    async def atry_spend(self, now: float) -> bool:
        if not self.enabled:
            return True
        amount = self._amount(now)
        if amount > 0:
            await self.store.adeposit(self.key, amount, self._burst, now)
        return await self.store.atry_spend(self.key, RETRY_COST, self._burst, now)
