"""The retry strategy, outermost in the pipeline: tenacity drives the attempts once a retry is needed.

The first attempt runs outside tenacity, so the success path builds no tenacity object. When an
attempt's decision (``_decision.decide``, made by the leaf with the attempt's outcome) says retry, the
budget is asked for a token (one atomic step), the hooks hear of the retry (logging, ``on_retry``,
instrumentation), and tenacity sleeps the decided wait and runs the next attempt through the inner
strategies. A refusal by an inner strategy on a retry never hides the vendor's answer: the last
vendor attempt is what the call ends with, its reason naming the refusal; only a first attempt that
was refused ends with the refusal itself.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any

import attrs
import tenacity

from resilient_client._decision import Decision
from resilient_client._pipeline import (
    AsyncNext,
    Attempt,
    Call,
    Hooks,
    Next,
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


#: Idle tenacity controllers kept per strategy: as many as there are usually retried calls at once.
_IDLE_CONTROLLERS = 16

_HAS_ITER_STATE = isinstance(getattr(tenacity.Retrying, "iter_state", None), property)
_IterState: Any = getattr(tenacity, "IterState", None)
#: tenacity's step state keeps one list of actions that ``reset`` empties in place (tenacity's own
#: ``reset`` makes a new list): then a controller binds that list's ``append`` once, see _Retrying.
_KEEPS_ACTIONS = (
    _HAS_ITER_STATE
    and isinstance(_IterState, type)
    # Exactly these fields, all reset below: a tenacity that adds one gets its own reset back.
    and {"actions", "retry_run_result", "stop_run_result", "is_explicit_retry"}
    == set(getattr(_IterState, "__dataclass_fields__", ()))
)

if _KEEPS_ACTIONS:

    class _OneList(_IterState):  # type: ignore[misc]
        def reset(self) -> None:
            self.actions.clear()
            self.retry_run_result = False
            self.stop_run_result = False
            self.is_explicit_retry = False


#: The fields tenacity's ``RetryCallState.__init__`` sets, each one set again by ``_CallState.start``:
#: a tenacity that adds one gets a new state per retried call back (see ``_retrying``).
_STATE_FIELDS = {
    "start_time",
    "retry_object",
    "fn",
    "args",
    "kwargs",
    "attempt_number",
    "outcome",
    "outcome_timestamp",
    "idle_for",
    "next_action",
    "upcoming_sleep",
}
_REUSES_STATE = set(vars(tenacity.RetryCallState(None, None, (), {}))) == _STATE_FIELDS  # type: ignore[arg-type]


class _Retrying(tenacity.Retrying):
    """The tenacity controller of one call.

    tenacity keeps a controller's run state in thread-local storage, so that one controller may
    serve several threads at once, and pays a thread-local lookup on each of the dozens of reads of
    it that every retry makes (a quarter of tenacity's cost per retry). A controller here serves one
    call, in one thread or task, so plain attributes hold the same objects: the class attributes
    below shadow tenacity's properties, and each controller sets its own.

    Each of tenacity's steps queues its actions one ``_add_action_func`` call at a time (a dozen per
    retry): here that is the action list's own ``append``, bound once, so queueing an action runs no
    Python frame. tenacity still chooses every action and runs them in its own ``iter``.
    """

    statistics: dict[str, Any] = {}  # noqa: RUF012 - shadows the property; every instance sets its own
    iter_state: Any = None  # tenacity >= 8.4 keeps its step state there

    def __init__(self, strategy: RetryStrategy, **options: Any) -> None:
        super().__init__(**options)
        #: The state of the call this controller serves, reused by each call after it (``start``).
        self.state = _CallState(self, strategy)
        # tenacity's own objects, made once through its properties.
        self.statistics = tenacity.Retrying.statistics.fget(self)  # type: ignore[attr-defined]
        if _KEEPS_ACTIONS:
            self.iter_state = _OneList()
            self._add_action_func = self.iter_state.actions.append  # type: ignore[method-assign]
        elif _HAS_ITER_STATE:
            self.iter_state = tenacity.Retrying.iter_state.fget(self)  # type: ignore[attr-defined]


class _Settled:
    """An attempt's outcome as tenacity reads it (``failed``, ``result()``, ``exception()``,
    ``attempt_number``): tenacity's own outcome is a ``concurrent.futures.Future``, which builds a
    lock and a condition for a value that is already there. The attempts here never raise (an
    error is part of the Attempt), so an outcome never failed."""

    __slots__ = ("_value", "attempt_number")

    failed = False

    def __init__(self, attempt_number: int, value: object) -> None:
        self.attempt_number = attempt_number
        self._value = value

    def result(self, timeout: float | None = None) -> object:
        return self._value

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return None

    def __repr__(self) -> str:
        return f"<settled attempt {self.attempt_number}>"


class _CallState(tenacity.RetryCallState):
    """tenacity's state of one retried call, with the call itself for ``before_sleep``, its last
    attempt as a plain attribute, and what the retry hooks returned that the async shell still
    has to await.

    One per controller, reused: ``start`` sets every field tenacity's ``__init__`` sets for a new
    call (a new state per retried call cost two Python frames and a dozen attribute writes more),
    and ``end`` lets go of the call, so an idle controller keeps no response or request alive.
    """

    def __init__(self, retrying: tenacity.Retrying, strategy: RetryStrategy) -> None:
        super().__init__(retrying, None, (), {})
        self.strategy = strategy
        self.call: Call | None = None
        self.awaiting: list[Awaitable[object]] = []
        self.result: Attempt | None = None

    def start(self, call: Call, first: Attempt) -> None:
        """Begin ``call``, its first attempt made: tenacity's first outcome."""
        # tenacity's ``__init__`` and ``set_result`` read the clock apart; one reading serves both.
        self.start_time = self.outcome_timestamp = time.monotonic()
        self.attempt_number = 1
        self.idle_for = 0.0
        self.next_action = None
        self.upcoming_sleep = 0.0
        self.call = call
        self.awaiting = []
        self.result = first
        self.outcome = _Settled(1, first)  # type: ignore[assignment]  # tenacity reads it as a Future

    def end(self) -> None:
        """The call ended: nothing of it is kept while the controller is idle."""
        self.call = self.result = self.outcome = None

    def set_result(self, val: Any) -> None:
        self.outcome = _Settled(self.attempt_number, val)  # type: ignore[assignment]  # tenacity reads it as a Future
        self.outcome_timestamp = time.monotonic()

    def settle(self, result: Attempt) -> None:
        """The outcome of the attempt just made (``set_result``'s work, written out: every retry)."""
        self.result = result
        self.outcome = _Settled(self.attempt_number, result)  # type: ignore[assignment]
        self.outcome_timestamp = time.monotonic()

    def event(self) -> RetryEvent:
        """The retry event of the last attempt (built only if a hook hears it)."""
        assert self.call is not None
        assert self.result is not None
        return self.strategy._event(self.call, self.result)


# tenacity hands these the _CallState of the controller they belong to (see _retrying): its last
# attempt is read directly (no isinstance check): tenacity asks on every step.


def _wants_retry(state: tenacity.RetryCallState) -> bool:
    return state.result.decision.action == "retry"  # type: ignore[attr-defined,no-any-return]


def _wait(state: tenacity.RetryCallState) -> float:
    return 0.0 if is_testing() else state.result.decision.wait  # type: ignore[attr-defined]


class RetryStrategy:
    """Drives a call's attempts; ``budget(policy)`` is the retry budget of a policy's numbers."""

    __slots__ = ("_budgets", "_idle", "_last", "hooks", "store", "vendor")

    def __init__(self, store: StateStore, vendor: str, hooks: Hooks) -> None:
        self.store = store
        self.vendor = vendor
        self.hooks = hooks
        self._budgets: dict[BudgetSettings, Budget] = {}
        #: The budget asked for last, by its settings' identity: almost every request carries the
        #: transport's own policy, and hashing the settings for the dictionary costs more than the
        #: deposit itself.
        self._last: tuple[BudgetSettings, Budget] | None = None
        #: tenacity controllers whose call has ended, to run the next retried call: building one
        #: costs as much as a third of tenacity's loop. A controller is out of the list while its
        #: call runs (list.pop and list.append are atomic), so no two calls ever share one.
        self._idle: list[_Retrying] = []

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

    # -- no I/O ---------------------------------------------------------------------------------

    @staticmethod
    def _out_of_time(last: Attempt) -> Attempt:
        """The last attempt, final: the deadline passed while waiting (a slow hook, a late sleep), and
        no attempt starts after the deadline."""
        reason = f"the total deadline passed before attempt {last.number + 1}"
        return attrs.evolve(last, decision=Decision("raise", reason=reason))

    @staticmethod
    def _refused(last: Attempt, refusal: Attempt) -> Attempt:
        """The last vendor answer, final, with the refusal of the retry as its reason."""
        assert refusal.rejection is not None
        reason = f"retry not sent: {refusal.rejection.reason}"
        return attrs.evolve(last, decision=Decision("raise", reason=reason))

    def _unfunded(self, call: Call, result: Attempt) -> Attempt:
        """``result``, final: the budget refused the retry after it (a refusal the hooks hear of)."""
        if self.hooks.rejection:
            self._tell(call, result.number + 1, "budget", "the retry budget is spent", None)
        return attrs.evolve(
            result, decision=Decision("raise", reason="not retried: the retry budget is spent")
        )

    def _heard(self, call: Call, result: Attempt) -> Attempt:
        """Tell the hooks of a refusal (the one event the inner strategies leave to this one)."""
        rejection = result.rejection
        if rejection is not None and self.hooks.rejection:
            strategy = result.rejected_by or ""
            self._tell(call, result.number, strategy, rejection.reason, rejection.retry_after, rejection)
        return result

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

    # -- the tenacity loop, shared by both shells ----------------------------------------------

    def _retrying(self, call: Call, first: Attempt) -> tuple[_Retrying, _CallState]:
        """A tenacity controller for ``call`` and its state, the first attempt its first outcome.

        Both shells drive one synchronous ``tenacity.Retrying`` step by step, as its own
        ``__call__`` does (``iter`` says attempt, sleep or stop), and run the attempts and sleeps
        themselves: the async shell then awaits them without ``AsyncRetrying``, which wraps every
        step of every retry in coroutine checks that cost more than the rest of the retry. tenacity
        still decides: retry or not (``retry_if_result``), the wait, the stop, and ``before_sleep``
        (the retry event). One controller per running call: tenacity keeps a run's state on it
        (``begin`` and each ``iter`` start that afresh, so a controller serves one call after another).
        """
        try:
            retrying = self._idle.pop()
        except IndexError:  # none idle (or another thread took the last one)
            # No ``after`` (tenacity's default is a function that does nothing, queued every step).
            retrying = _Retrying(
                self,
                retry=_wants_retry,
                wait=_wait,
                stop=tenacity.stop_never,
                after=None,
                reraise=True,
            )
        retrying.before_sleep = self._before_sleep if self.hooks.retry else None
        retrying.begin()
        # The first attempt ran before any tenacity object was built (the success path builds none):
        # it is tenacity's first outcome.
        if not _REUSES_STATE:
            retrying.state = _CallState(retrying, self)
        state = retrying.state
        state.start(call, first)
        return retrying, state

    def _done(self, retrying: _Retrying, final: Attempt) -> Attempt:
        """``final``, the call's end: its controller is free for the next retried call."""
        retrying.state.end()
        if len(self._idle) < _IDLE_CONTROLLERS:
            self._idle.append(retrying)
        return final

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        """Tell the retry hooks, keeping what they return to be awaited (async shell)."""
        assert isinstance(state, _CallState)
        assert state.call is not None
        state.awaiting = self.hooks.retrying(state.call, state.event)

    @staticmethod
    def _sync_hooks_only(state: _CallState) -> None:
        if state.awaiting:
            for returned in state.awaiting:
                close = getattr(returned, "close", None)
                if close is not None:
                    close()  # never awaited here: closed, not leaked as a warning
            raise TypeError("an async on_retry hook needs an httpx.AsyncClient")

    # -- sync -----------------------------------------------------------------------------------

    def run(self, call: Call, attempt: Next, first: Attempt | None = None) -> Attempt:
        """Every attempt of ``call``, each through ``attempt`` (the inner strategies and the leaf);
        ``first``: the first attempt, already made (the transport's fast lane sent it)."""
        budget = self.budget(call.policy)
        if budget.enabled:
            budget.deposit(call.clock.monotonic())
        last = attempt(call, 1) if first is None else first
        if last.rejection is not None:
            self._heard(call, last)
        if last.decision.action != "retry":
            return last
        if not budget.try_spend(call.clock.monotonic()):
            return self._unfunded(call, last)
        retrying, state = self._retrying(call, last)
        clock = call.clock
        while True:
            # tenacity's step: wait and attempt again (DoSleep), or end with the last attempt (the
            # outcome is always set when it asks, so it never answers "attempt").
            do = retrying.iter(state)
            if not isinstance(do, tenacity.DoSleep):
                assert isinstance(do, Attempt)
                return self._done(retrying, do)
            if state.awaiting:
                self._sync_hooks_only(state)
            state.prepare_for_next_attempt()
            wait = float(do)
            if wait > 0 and not is_testing():
                clock.sleep(wait)
            if clock.monotonic() >= call.deadline:
                final = self._out_of_time(last)
            else:
                result = attempt(call, last.number + 1)
                if result.rejection is not None:
                    final = self._refused(last, self._heard(call, result))
                else:
                    if result.decision.action == "retry" and not budget.try_spend(clock.monotonic()):
                        result = self._unfunded(call, result)
                    final = last = result
            state.settle(final)

    # -- async ----------------------------------------------------------------------------------

    async def arun(self, call: Call, attempt: AsyncNext, first: Attempt | None = None) -> Attempt:
        budget = self.budget(call.policy)
        if budget.enabled:
            await budget.adeposit(call.clock.monotonic())
        last = await attempt(call, 1) if first is None else first
        if last.rejection is not None:
            self._heard(call, last)
        if last.decision.action != "retry":
            return last
        if not await budget.atry_spend(call.clock.monotonic()):
            return self._unfunded(call, last)
        retrying, state = self._retrying(call, last)
        clock = call.clock
        while True:
            do = retrying.iter(state)  # tenacity's step, as in ``run``
            if not isinstance(do, tenacity.DoSleep):
                assert isinstance(do, Attempt)
                return self._done(retrying, do)
            if state.awaiting:
                awaiting, state.awaiting = state.awaiting, []
                for returned in awaiting:
                    await returned
            state.prepare_for_next_attempt()
            wait = float(do)
            if wait > 0 and not is_testing():
                await clock.asleep(wait)
            if clock.monotonic() >= call.deadline:
                final = self._out_of_time(last)
            else:
                result = await attempt(call, last.number + 1)
                if result.rejection is not None:
                    final = self._refused(last, self._heard(call, result))
                else:
                    if result.decision.action == "retry" and not await budget.atry_spend(clock.monotonic()):
                        result = self._unfunded(call, result)
                    final = last = result
            state.settle(final)
