"""The retry strategy, outermost in the pipeline: tenacity drives the attempts once a retry is needed.

The first attempt runs outside tenacity, so the success path builds no tenacity object. When an
attempt's decision (``_decision.decide``, made by the leaf with the attempt's outcome) says retry, the
budget is asked for a token (one atomic step) and a plain ``tenacity.Retrying``, iterated, takes the
call over, seeded with the first attempt: its first step gets that attempt, and each step after makes
the next attempt through the inner strategies. tenacity retries while the decision says retry, waits
the decided wait through the call's clock (the async shell awaits it before the next attempt), and
tells the hooks of each retry before its wait (logging, ``on_retry``, instrumentation). A retry that
succeeds is counted for the budget's refund (retries go on while they succeed).

A refusal by an inner strategy on a retry never hides the vendor's answer: the last vendor attempt is
what the call ends with, its reason naming the refusal; only a first attempt that was refused ends
with the refusal itself.
"""

from __future__ import annotations

import attrs
import tenacity
from tenacity.wait import wait_base

from resilient_client._decision import Decision
from resilient_client._pipeline import (
    AsyncNext,
    Attempt,
    Call,
    Hooks,
    Next,
    PendingHook,
    RejectionEvent,
    RetryEvent,
    is_testing,
)
from resilient_client._policy import RetryPolicy
from resilient_client._redact import redact_url
from resilient_client._scrub import scrub_error
from resilient_client._settings import BudgetSettings
from resilient_client.errors import RejectedError
from resilient_client.stores import StateStore, state_key
from resilient_client.strategies.budget import Budget

__all__ = ["RetryStrategy"]


def _wants_retry(result: Attempt) -> bool:
    return result.decision.action == "retry"


#: tenacity's retry condition: the last attempt's decision (it holds no state: every call shares it).
_RETRY_WHEN_DECIDED = tenacity.retry_if_result(_wants_retry)


class _DecidedWait(wait_base):
    """tenacity's wait: the one the last attempt's decision chose (none while ``set_testing`` is on).

    A ``wait_base`` (tenacity's documented base of waits), not a plain function: tenacity 8.2.0 and
    8.2.1 annotate a function wait as returning ``bool``, which a type checker then refuses.
    """

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        assert outcome is not None  # tenacity asks for a wait only after an attempt
        result: Attempt = outcome.result()
        return 0.0 if is_testing() else result.decision.wait


_DECIDED_WAIT = _DecidedWait()


class RetryStrategy:
    """Drives a call's attempts; ``budget(policy)`` is the retry budget of a policy's numbers."""

    __slots__ = ("_budgets", "_last", "hooks", "store", "vendor")

    def __init__(self, store: StateStore, vendor: str, hooks: Hooks) -> None:
        self.store = store
        self.vendor = vendor
        self.hooks = hooks
        self._budgets: dict[BudgetSettings, Budget] = {}
        #: The budget asked for last, by its settings' identity: almost every request carries the
        #: transport's own policy, and hashing the settings for the dictionary costs more than the
        #: deposit itself.
        self._last: tuple[BudgetSettings, Budget] | None = None

    def __repr__(self) -> str:
        return f"RetryStrategy(vendor={self.vendor!r})"

    def budget(self, policy: RetryPolicy) -> Budget:
        """The budget a policy's requests share: one bucket per vendor and (ratio, burst), so a
        per-request policy with numbers of its own spends from a bucket of its own."""
        settings = policy.budget
        last = self._last
        if last is not None and last[0] is settings:
            return last[1]
        budget = self._budgets.get(settings)
        if budget is None:
            key = state_key("budget", self.vendor, f"{settings.ratio:g}", f"{settings.burst:g}")
            budget = self._budgets.setdefault(settings, Budget(settings, self.store, key))
        self._last = (settings, budget)
        return budget

    # -- sync -----------------------------------------------------------------------------------

    def run(self, call: Call, attempt: Next) -> Attempt:
        """Every attempt of ``call``, each through ``attempt`` (the inner strategies and the leaf)."""
        # ``budget``'s usual answer, found in place: this runs once per request.
        last = self._last
        budget = last[1] if last is not None and last[0] is call.policy.budget else self.budget(call.policy)
        budget.deposit(call.clock.monotonic())
        first = attempt(call, 1)
        if first.rejection is not None:
            self._heard(call, first)
        if first.decision.action != "retry":
            return first
        if not budget.try_spend(call.clock.monotonic()):
            return self._unfunded(call, first)
        retried = _Retried(self, call, first)
        retrying = tenacity.Retrying(
            retry=_RETRY_WHEN_DECIDED,
            wait=_DECIDED_WAIT,
            stop=tenacity.stop_never,  # the decision counts the attempts, and says raise at the last
            sleep=retried.sleep,
            before_sleep=retried.before_sleep if self.hooks.retry else None,
        )
        final = first
        for step in retrying:  # tenacity's step: attempt again (after its sleep), or stop
            final = retried.next_attempt(attempt, budget)
            step.retry_state.set_result(final)
        return final

    # -- async ----------------------------------------------------------------------------------

    async def arun(self, call: Call, attempt: AsyncNext) -> Attempt:
        last = self._last
        budget = last[1] if last is not None and last[0] is call.policy.budget else self.budget(call.policy)
        await budget.adeposit(call.clock.monotonic())
        first = await attempt(call, 1)
        if first.rejection is not None:
            self._heard(call, first)
        if first.decision.action != "retry":
            return first
        if not await budget.atry_spend(call.clock.monotonic()):
            return self._unfunded(call, first)
        retried = _Retried(self, call, first)
        # The sync Retrying, iterated as in ``run``, its sleep handed to ``defer``: the next attempt
        # awaits that wait (and the async hooks) first. tenacity's AsyncRetrying would take the same
        # steps, but asks of every callback on every step whether it is a coroutine function: 1.6x
        # the instructions of an async retry (bench/retry_floor.py's SDK side, 2026-12-07).
        retrying = tenacity.Retrying(
            retry=_RETRY_WHEN_DECIDED,
            wait=_DECIDED_WAIT,
            stop=tenacity.stop_never,
            sleep=retried.defer,
            before_sleep=retried.before_sleep if self.hooks.retry else None,
        )
        final = first
        for step in retrying:
            final = await retried.anext_attempt(attempt, budget)
            step.retry_state.set_result(final)
        return final

    # -- what the hooks hear, and the attempts that end a call -----------------------------------

    def _heard(self, call: Call, result: Attempt) -> Attempt:
        """``result``, after the hooks heard of its refusal if it is one (the one event the inner
        strategies leave to this one)."""
        rejection = result.rejection
        if rejection is not None and self.hooks.rejection:
            strategy = result.rejected_by or ""
            self._tell(call, result.number, strategy, rejection.reason, rejection.retry_after, rejection)
        return result

    def _unfunded(self, call: Call, result: Attempt) -> Attempt:
        """``result``, final: the budget refused the retry after it (a refusal the hooks hear of)."""
        if self.hooks.rejection:
            self._tell(call, result.number + 1, "budget", "the retry budget is spent", None)
        return attrs.evolve(
            result, decision=Decision("raise", reason="not retried: the retry budget is spent")
        )

    def _tell(
        self,
        call: Call,
        number: int,
        strategy: str,
        reason: str,
        retry_after: float | None,
        error: RejectedError | None = None,
    ) -> None:
        event = RejectionEvent(
            vendor=self.vendor,
            method=call.request.method,
            url=call.secrets.redact(redact_url(call.request.url)),
            attempt=number,
            strategy=strategy,
            reason=reason,
            retry_after=retry_after,
            error=error,
        )
        for hook in self.hooks.rejection:
            hook(call, event)

    def _event(self, call: Call, result: Attempt) -> RetryEvent:
        """The retry event after ``result`` (built only when a hook hears it)."""
        # The event reaches the user's hook and the log: nothing in it may carry a credential.
        known = call.secrets.with_request(call.request)
        if result.error is not None:
            scrub_error(result.error, known)
        response = result.response
        code = result.outcome.code
        return RetryEvent(
            vendor=self.vendor,
            method=call.request.method,
            url=known.redact(redact_url(call.request.url)),
            attempt=result.number,
            wait=result.decision.wait,
            cause=known.redact(result.decision.reason),
            category=None if result.error else result.outcome.category,
            code=known.redact(code) if isinstance(code, str) else code,
            status=None if response is None else response.status_code,
            error=result.error,
        )


class _Retried:
    """One retried call, as tenacity steps it: each step's attempt (the first, already made, then each
    next one), tenacity's sleep through the call's clock, and its ``before_sleep``.

    ``last`` is the call's last vendor attempt: what a retry refused by an inner strategy, or one
    the deadline leaves no time for, ends the call with.
    """

    __slots__ = ("awaiting", "call", "last", "pending", "strategy", "wait")

    def __init__(self, strategy: RetryStrategy, call: Call, first: Attempt) -> None:
        self.strategy = strategy
        self.call = call
        self.last = first
        #: The first attempt, until tenacity asks for it.
        self.pending: Attempt | None = first
        #: What the retry hooks returned, and the wait: what the async shell awaits before a retry.
        self.awaiting: list[PendingHook] = []
        self.wait = 0.0

    def before_sleep(self, state: tenacity.RetryCallState) -> None:
        """Tell the retry hooks of the retry after ``last`` (tenacity calls this before each wait)."""
        call, last = self.call, self.last
        self.awaiting = self.strategy.hooks.retrying(call, lambda: self.strategy._event(call, last))

    def _unsent(self) -> Attempt | None:
        """What tenacity gets without a new attempt being sent: the first attempt, made before
        tenacity took over, or the last, final, once the deadline passed while waiting (a slow hook,
        a late sleep): no attempt starts after the deadline. None: send the next attempt."""
        first = self.pending
        if first is not None:
            self.pending = None
            return first
        if self.call.clock.monotonic() >= self.call.deadline:
            reason = f"the total deadline passed before attempt {self.last.number + 1}"
            return attrs.evolve(self.last, decision=Decision("raise", reason=reason))
        return None

    def _weighed(self, result: Attempt) -> Attempt | None:
        """What the call ends with after the retry ``result``, refused by an inner strategy: the
        last vendor answer, its reason naming the refusal. None: ``result`` reached the vendor."""
        rejection = self.strategy._heard(self.call, result).rejection
        if rejection is None:
            self.last = result
            return None
        reason = f"retry not sent: {rejection.reason}"
        return attrs.evolve(self.last, decision=Decision("raise", reason=reason))

    # -- sync -----------------------------------------------------------------------------------

    def next_attempt(self, attempt: Next, budget: Budget) -> Attempt:
        """The attempt of tenacity's next step."""
        ended = self._unsent()
        if ended is not None:
            return ended
        call = self.call
        result = attempt(call, self.last.number + 1)
        refused = self._weighed(result)
        if refused is not None:
            return refused
        action = result.decision.action
        if action == "retry" and not budget.try_spend(call.clock.monotonic()):
            return self.strategy._unfunded(call, result)
        if action == "return":
            budget.retry_succeeded()
        return result

    def sleep(self, seconds: float) -> None:
        if self.awaiting:
            # Never awaited here: closed (not leaked as a warning) and logged as the hook's failure.
            for returned in self.awaiting:
                returned.discard()
            self.awaiting = []
        if seconds > 0:
            self.call.clock.sleep(float(seconds))  # tenacity's DoSleep, a float

    # -- async ----------------------------------------------------------------------------------

    async def anext_attempt(self, attempt: AsyncNext, budget: Budget) -> Attempt:
        if self.pending is None:  # a retry: its hooks' awaitables and its wait first
            awaiting, self.awaiting = self.awaiting, []
            for returned in awaiting:
                await returned
            wait, self.wait = self.wait, 0.0
            if wait > 0:
                await self.call.clock.asleep(wait)
        ended = self._unsent()
        if ended is not None:
            return ended
        call = self.call
        result = await attempt(call, self.last.number + 1)
        refused = self._weighed(result)
        if refused is not None:
            return refused
        action = result.decision.action
        if action == "retry" and not await budget.atry_spend(call.clock.monotonic()):
            return self.strategy._unfunded(call, result)
        if action == "return":
            budget.retry_succeeded()
        return result

    def defer(self, seconds: float) -> None:
        """tenacity's sleep in the async shell: the wait, for the next attempt to await."""
        self.wait = float(seconds)
