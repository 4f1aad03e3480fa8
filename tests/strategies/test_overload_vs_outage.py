"""Overload told from outage (SPEC section 10), strategy by strategy, over both stores: the breaker
stays closed under random faults at 50 % and opens when everything fails; the budget lets retries
through while they succeed (30-50 % random faults) and stops them at an outage, with its refunds
shared through the store as its deposits are."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from redis_process import contract_store
from resilient_client._settings import BreakerSettings, BudgetSettings
from resilient_client.stores import MemoryState, StateStore
from resilient_client.strategies.breaker import Breaker, Permit
from resilient_client.strategies.budget import Budget

pytestmark = pytest.mark.anyio

SEEDS = [1, 2, 3, 4, 5]
MAX_ATTEMPTS = 4


class Timeline:
    now = 1000.0


STORES = [
    pytest.param(lambda: MemoryState(), id="memory"),
    pytest.param(lambda: contract_store(Timeline()), id="redis"),
]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> StateStore:
    made: StateStore = request.param()
    return made


# -- the breaker ----------------------------------------------------------------------------------


async def failures_until_open(
    ops: Any, fault_rate: float, seed: int, attempts: int, spacing: float = 0.05
) -> int | None:
    """Record ``attempts`` outcomes, failing at random at ``fault_rate``, ``spacing`` seconds apart
    (2,000 attempts at 0.05 s: 100 s, three windows); the attempt that opened the circuit, or None."""
    chance = random.Random(seed)
    now = 1000.0
    for number in range(1, attempts + 1):
        permit = await ops.admit(now, 30.0)
        if not isinstance(permit, Permit):
            return number
        if await ops.record(permit, chance.random() < fault_rate, now) == "open":
            return number
        now += spacing
    return None


@pytest.mark.parametrize("seed", SEEDS)
async def test_the_default_breaker_stays_closed_under_random_faults_at_50_percent(
    twin: Callable[[object], Any], store: StateStore, seed: int
) -> None:
    ops = twin(Breaker(BreakerSettings(), store, "breaker/usta/h"))
    assert await failures_until_open(ops, 0.5, seed, attempts=2000) is None


@pytest.mark.parametrize("fault_rate", [0.1, 0.4])
async def test_an_overloaded_vendors_share_of_503s_never_opens_the_default_breaker(
    twin: Callable[[object], Any], store: StateStore, fault_rate: float
) -> None:
    ops = twin(Breaker(BreakerSettings(), store, "breaker/usta/h"))
    assert await failures_until_open(ops, fault_rate, 7, attempts=1000) is None


@pytest.mark.parametrize("seed", SEEDS)
async def test_the_default_breaker_opens_when_everything_fails(
    twin: Callable[[object], Any], store: StateStore, seed: int
) -> None:
    settings = BreakerSettings()
    ops = twin(Breaker(settings, store, "breaker/usta/h"))
    assert await failures_until_open(ops, 1.0, seed, attempts=2000) == settings.minimum_throughput


async def test_the_default_breaker_opens_on_an_outage_that_lets_a_few_calls_through(
    twin: Callable[[object], Any], store: StateStore
) -> None:
    ops = twin(Breaker(BreakerSettings(), store, "breaker/usta/h"))
    opened = await failures_until_open(ops, 0.97, 3, attempts=2000)
    assert opened is not None and opened <= 40


async def test_a_vendor_that_fails_everything_after_a_healthy_spell_is_cut_off_within_the_window(
    twin: Callable[[object], Any], store: StateStore
) -> None:
    # 600 successes, then an outage: once the successes are 9 in 10 of a window behind, it opens.
    settings = BreakerSettings()
    ops = twin(Breaker(settings, store, "breaker/usta/h"))
    now = 1000.0
    for _ in range(600):
        permit = await ops.admit(now, 30.0)
        await ops.record(permit, False, now)
        now += 0.05
    moved = None
    failures = 0
    while moved is None and failures < 2000:
        permit = await ops.admit(now, 30.0)
        moved = await ops.record(permit, True, now)
        failures += 1
        now += 0.05
    assert moved == "open"
    # Not when the 600 successes have left the window (27 s of failures later): at once.
    assert failures == settings.consecutive_failures


async def test_without_consecutive_failures_a_healthy_spell_holds_the_circuit_for_most_of_a_window(
    twin: Callable[[object], Any], store: StateStore
) -> None:
    settings = BreakerSettings(consecutive_failures=0)
    ops = twin(Breaker(settings, store, "breaker/usta/h"))
    now = 1000.0
    for _ in range(600):
        permit = await ops.admit(now, 30.0)
        await ops.record(permit, False, now)
        now += 0.05
    moved = None
    failures = 0
    while moved is None and failures < 2000:
        permit = await ops.admit(now, 30.0)
        moved = await ops.record(permit, True, now)
        failures += 1
        now += 0.05
    assert moved == "open"
    assert failures > 100


async def test_a_success_breaks_the_run_of_failures(twin: Callable[[object], Any], store: StateStore) -> None:
    settings = BreakerSettings(consecutive_failures=5, minimum_throughput=1000)
    ops = twin(Breaker(settings, store, "breaker/usta/h"))
    moves = []
    for failed in [True] * 4 + [False] + [True] * 4:
        permit = await ops.admit(1000.0, 30.0)
        moves.append(await ops.record(permit, failed, 1000.0))
    assert moves == [None] * 9
    permit = await ops.admit(1000.0, 30.0)
    assert await ops.record(permit, True, 1000.0) == "open"


# -- the budget -----------------------------------------------------------------------------------


async def retried_calls(ops: Any, fault_rate: float, seed: int, calls: int) -> tuple[int, int, int]:
    """``calls`` calls of up to 4 attempts each, every attempt failing at random at ``fault_rate``,
    each retry asking the budget first: (calls that succeeded, attempts sent, retries refused)."""
    chance = random.Random(seed)
    succeeded = attempts = refused = 0
    for _ in range(calls):
        await ops.deposit(0.0)
        for number in range(1, MAX_ATTEMPTS + 1):
            if number > 1 and not await ops.try_spend(0.0):
                refused += 1
                break
            attempts += 1
            if chance.random() >= fault_rate:
                succeeded += 1
                if number > 1:
                    await ops.retry_succeeded()
                break
    return succeeded, attempts, refused


class Counting:
    """Calls ``retry_succeeded`` (sync, no I/O) through a twin's interface: the twin calls the
    async name with an ``a`` before it, which the budget has only for its I/O."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget

    def __getattr__(self, name: str) -> Any:
        return getattr(self.budget, name)

    def retry_succeeded(self) -> None:
        self.budget.retry_succeeded()

    async def aretry_succeeded(self) -> None:
        self.budget.retry_succeeded()


def default_budget(store: StateStore, key: str = "budget/usta") -> Counting:
    return Counting(Budget(BudgetSettings(), store, key))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fault_rate", [0.3, 0.5])
async def test_the_default_budget_lets_retries_through_while_they_succeed(
    twin: Callable[[object], Any], store: StateStore, seed: int, fault_rate: float
) -> None:
    ops = twin(default_budget(store))
    succeeded, _, refused = await retried_calls(ops, fault_rate, seed, calls=1000)
    assert refused <= 5  # a rare unlucky run near the start, if any
    assert succeeded / 1000 >= 1 - fault_rate**MAX_ATTEMPTS - 0.03


async def test_a_fixed_ratio_alone_starves_the_retries_at_50_percent(
    twin: Callable[[object], Any], store: StateStore
) -> None:
    # What the refund is for: the same numbers without it refuse most retries at 50 %.
    ops = twin(Counting(Budget(BudgetSettings(refund=0.0), store, "budget/usta")))
    succeeded, _, refused = await retried_calls(ops, 0.5, 1, calls=1000)
    assert refused > 300
    assert succeeded / 1000 < 0.9


@pytest.mark.parametrize("seed", SEEDS)
async def test_at_70_percent_the_default_budget_holds_attempts_per_call_to_one_and_a_half(
    twin: Callable[[object], Any], store: StateStore, seed: int
) -> None:
    ops = twin(default_budget(store))
    _, attempts, refused = await retried_calls(ops, 0.7, seed, calls=2000)
    assert attempts / 2000 <= 1.5
    assert refused > 0


async def test_at_an_outage_the_default_budget_stops_retries_at_ratio_per_request(
    twin: Callable[[object], Any], store: StateStore
) -> None:
    settings = BudgetSettings()
    ops = twin(default_budget(store))
    _, attempts, _ = await retried_calls(ops, 1.0, 1, calls=1000)
    retries = attempts - 1000
    assert settings.burst + settings.ratio * 999 - 1 < retries <= settings.burst + settings.ratio * 1000
    assert attempts / 1000 <= 1.1


async def test_a_retry_that_succeeds_puts_its_refund_back(
    twin: Callable[[object], Any], store: StateStore
) -> None:
    ops = twin(Counting(Budget(BudgetSettings(ratio=0.01, burst=3.0, refund=2.5), store, "budget/usta")))
    assert [await ops.try_spend(0.0) for _ in range(4)] == [True, True, True, False]
    await ops.retry_succeeded()  # 2.5 tokens back: two retries, not three
    assert [await ops.try_spend(0.0) for _ in range(3)] == [True, True, False]


async def test_refunds_never_fill_the_budget_beyond_its_burst(
    twin: Callable[[object], Any], store: StateStore
) -> None:
    ops = twin(Counting(Budget(BudgetSettings(ratio=0.01, burst=2.0, refund=2.5), store, "budget/usta")))
    for _ in range(10):
        await ops.retry_succeeded()
    assert [await ops.try_spend(0.0) for _ in range(3)] == [True, True, False]


async def test_the_refunds_of_one_process_fund_the_retries_of_another(
    twin: Callable[[object], Any], store: StateStore
) -> None:
    # Two budgets over one key: two processes of a fleet sharing the store.
    settings = BudgetSettings(ratio=0.01, burst=2.0, refund=2.0)
    here = twin(Counting(Budget(settings, store, "budget/usta")))
    there = twin(Counting(Budget(settings, store, "budget/usta")))
    assert await here.try_spend(0.0) and await here.try_spend(0.0)
    assert not await there.try_spend(0.0)
    await here.retry_succeeded()
    assert await here.try_spend(0.0)  # the refund of 2, written with this spend: one token left
    assert await there.try_spend(0.0)
    assert not await there.try_spend(0.0)


async def test_a_budget_turned_off_allows_every_retry_and_counts_nothing(
    twin: Callable[[object], Any], store: StateStore
) -> None:
    budget = Budget(BudgetSettings(enabled=False, burst=1.0), store, "budget/usta")
    ops = twin(Counting(budget))
    assert all([await ops.try_spend(0.0) for _ in range(20)])
    await ops.retry_succeeded()
    assert not budget.enabled
    assert budget.refunds.take() == 0
