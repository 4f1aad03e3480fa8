"""The retry budget: each request adds ``ratio`` tokens (up to ``burst``), each retry takes one, and
a retry that succeeds puts ``refund`` tokens back.

Under a total outage every request fails, and without a budget each one retries ``max_attempts - 1``
times, multiplying the load on a vendor that is already down. The budget caps retries at ``ratio``
of the requests (plus ``burst``), shared by every request of the pipeline (or, with a shared store,
of the fleet): Finagle's ``RetryBudget``. The check and the take before a retry are one atomic store
operation, so 32 threads racing for the last token never overdraw it.

A fixed ratio cannot tell random faults from an outage: at 50 % random 503s the four attempts of a
call need 0.875 retries a request, as many as an outage of 0.3 requests a second would spend. So a
retry that succeeds puts its token back and earns ``refund - 1`` more (gRPC's retry throttling:
``token_ratio`` per success, one token per failure). Retries then pay for themselves while at least
``1 / refund`` of them succeed (40 % with the default 2.5: random faults up to 60 %), and ``ratio``
bounds only the retries that fail: at an outage, where none succeeds, ``ratio`` retries a request
(plus the burst), as before; at 70 % random faults, ``ratio / 0.25`` a request.

Deposits and refunds are only counted in process (see ``_tally``) and written to the store as
``n * ratio + m * refund`` tokens with the next retry's ``TrySpend`` (one step: deposit, then check
and take), or as one ``Deposit`` after the store's ``batch_seconds``. Nothing spends in between, so
one deposit capped at ``burst`` leaves the bucket exactly where the single deposits would have.
"""

from __future__ import annotations

import math

from resilient_client._settings import BudgetSettings
from resilient_client.stores import Deposit, StateStore, TrySpend
from resilient_client.strategies._tally import Tally, batch_seconds

__all__ = ["Budget"]

#: What one retry costs.
RETRY_COST = 1.0


class Budget:
    """A retry budget over one store key; ``enabled = false`` or ``ratio = 0`` turns it off (every
    retry allowed)."""

    __slots__ = (
        "_batch",
        "_burst",
        "_ratio",
        "_refund",
        "earned",
        "enabled",
        "flush_at",
        "key",
        "refunds",
        "settings",
        "store",
    )

    def __init__(self, settings: BudgetSettings, store: StateStore, key: str) -> None:
        self.settings = settings
        self.store = store
        self.key = key
        #: Whether retries are rationed at all (``ratio = 0`` turns the budget off).
        self.enabled = settings.enabled and settings.ratio > 0
        # Read once: every request deposits, and the settings are frozen.
        self._ratio = settings.ratio
        self._burst = settings.burst
        self._refund = settings.refund
        #: Requests that earned their share and are not in the store yet.
        self.earned = Tally()
        #: Retries that succeeded and whose refund is not in the store yet.
        self.refunds = Tally()
        self._batch = batch_seconds(store)
        #: When the earned shares are written even if no retry asks first (never, in process).
        self.flush_at = -math.inf if self._batch <= 0 else 0.0

    def __repr__(self) -> str:
        settings = self.settings
        return (
            f"Budget(ratio={settings.ratio!r}, burst={settings.burst!r}, refund={settings.refund!r}, "
            f"key={self.key!r})"
        )

    def _amount(self, now: float) -> float:
        """The tokens earned since the last write (taken out: the caller writes them)."""
        self.flush_at = now + self._batch
        return self.earned.take() * self._ratio + self.refunds.take() * self._refund

    def retry_succeeded(self) -> None:
        """Count a retry that succeeded: its refund goes to the store with the next write (no I/O)."""
        if self.enabled and self._refund:
            self.refunds.add()

    def _deposit_due(self, now: float) -> Deposit | None:
        """The deposit to write now that the batch is due (None: nothing was earned)."""
        amount = self._amount(now)
        return Deposit(self.key, amount, self._burst) if amount > 0 else None

    def _spend(self, now: float) -> TrySpend:
        """One retry's token, taken after the shares earned since the last write are deposited."""
        return TrySpend(self.key, RETRY_COST, self._burst, earned=self._amount(now))

    def deposit(self, now: float) -> None:
        """Earn a request's share of a retry (call once per request, not per attempt): counted,
        and written with the others once the batch is due."""
        if self.enabled:
            self.earned.add()
            if now >= self.flush_at:
                due = self._deposit_due(now)
                if due is not None:
                    self.store.run(due, now)

    def try_spend(self, now: float) -> bool:
        """Take one retry's token; False means the retry must not be sent."""
        return not self.enabled or self.store.run(self._spend(now), now)

    async def adeposit(self, now: float) -> None:
        if self.enabled:
            self.earned.add()
            if now >= self.flush_at:
                due = self._deposit_due(now)
                if due is not None:
                    await self.store.arun(due, now)

    async def atry_spend(self, now: float) -> bool:
        return not self.enabled or await self.store.arun(self._spend(now), now)
