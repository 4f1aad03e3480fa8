"""The resilience strategies, outermost first: retry (asking the budget) -> circuit breaker -> rate
limiter -> guard -> adaptive concurrency -> send. Each module holds one strategy: its logic over a
StateStore, with no I/O of its own beyond the store and no clock of its own (callers pass ``now``),
and its thin sync and async shells (``handle``/``ahandle``) that wait and call the next layer.

``build`` composes them for one transport; a strategy its policy turns off is not built at all, so it
costs nothing per attempt. Adding a strategy is one module here and one line in ``build``.

Strategies are sealed: none reads another's fields, and none asks which store it has. The one place
two meet is here: the guard is handed the rate limiter as its pause gate (``guard.Gate``: is the host
paused, wait the pause out), which it asks after waiting for a key; the limiter knows nothing of the
guard.

The concurrency limit is the innermost, right before the send: a slot is held only while its
attempt is at the vendor, so an attempt paced by the limiter, or a journal call waiting for its
account's guard, holds none (holding one there would idle the vendor's capacity the limit measures,
and two waits nested the other way round could starve each other).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

from resilient_client._clock import Clock
from resilient_client._pipeline import Attempt, Call, Hooks, Strategy, chain
from resilient_client._policy import RetryPolicy
from resilient_client._settings import BreakerOverride
from resilient_client.stores import StateStore, state_key
from resilient_client.strategies.breaker import BreakerStrategy
from resilient_client.strategies.concurrency import ConcurrencyStrategy
from resilient_client.strategies.guard import Guard, GuardStrategy
from resilient_client.strategies.limiter import LimiterStrategy
from resilient_client.strategies.retry import RetryStrategy

if TYPE_CHECKING:
    from resilient_client._leaf import Leaf

__all__ = ["Pipeline", "build"]


class Pipeline:
    """One transport's strategies: the retry driver outermost, then the inner strategies (each
    attempt passes them) down to the leaf; and the breaker and the limiter, for ``transport.breaker``
    and ``transport.limiter``."""

    __slots__ = ("aattempt", "attempt", "breaker", "limiter", "retry", "strategies")

    def __init__(
        self,
        retry: RetryStrategy,
        breaker: BreakerStrategy,
        limiter: LimiterStrategy,
        strategies: tuple[Strategy, ...],
        leaf: Leaf,
    ) -> None:
        self.retry = retry
        self.breaker = breaker
        self.limiter = limiter
        self.strategies = strategies
        self.attempt, self.aattempt = chain(strategies, leaf.send, leaf.asend)

    def run(self, call: Call) -> Attempt:
        """Every attempt of ``call``, as the strategies allow; the last one.

        The transport runs it with the call's deadline in ``_deadline.current``, so every wait on
        the state store is bounded by it too (not only the attempts' network operations); it tells
        a store's refusal (``StateUnavailableError``) which call it refused."""
        return self.retry.run(call, self.attempt)

    def close(self) -> None:
        """Let the per-endpoint breakers and limiters go, and the warm concurrency slots
        (``transport.close()``)."""
        self.breaker.forget()
        self.limiter.forget()
        for strategy in self.strategies:
            if isinstance(strategy, ConcurrencyStrategy):
                strategy.close()

    def arun(self, call: Call) -> Awaitable[Attempt]:
        """The async twin of ``run``: the retry strategy's coroutine itself, so that no layer of
        the pipeline's own is resumed each time an attempt waits for the network."""
        return self.retry.arun(call, self.aattempt)


def _breaker_overrides(policy: RetryPolicy) -> dict[str, BreakerOverride]:
    return {code: rule.breaker for code, rule in policy.codes.items() if rule.breaker is not None}


def build(
    policy: RetryPolicy,
    store: StateStore,
    vendor: str,
    hooks: Hooks,
    clock: Clock,
    leaf: Leaf,
) -> Pipeline:
    """The pipeline a policy asks for, over ``store``, ending in ``leaf``."""
    strategies: list[Strategy] = []
    # Built when off too: ``transport.breaker`` then reads "closed" and resets nothing.
    breaker = BreakerStrategy(policy.breaker, store, vendor, _breaker_overrides(policy), hooks, clock)
    if policy.breaker.enabled:
        strategies.append(breaker)
    # Built when off too: ``transport.limiter.clear()`` then ends the pauses others set in a
    # shared store for the hosts this transport calls (none, while it calls none through a limiter).
    limiter = LimiterStrategy(policy.rate_limit, store, vendor, clock, hooks)
    if policy.rate_limit.enabled:
        strategies.append(limiter)
    if policy.guards:
        namespace = state_key("guard", vendor)
        guards = [Guard(name, settings, store, namespace) for name, settings in policy.guards.items()]
        # The limiter is outside the guard: after a wait for a key, the guard asks it about pauses
        # (the one meeting of two strategies, see the module docstring).
        gate = limiter if policy.rate_limit.enabled else None
        strategies.append(GuardStrategy(guards, vendor, gate=gate, hooks=hooks))
    if policy.concurrency.enabled:
        strategies.append(ConcurrencyStrategy(policy.concurrency, store, vendor, hooks, clock))
    return Pipeline(RetryStrategy(store, vendor, hooks), breaker, limiter, tuple(strategies), leaf)
