"""The retry budget through the transport: on by default, asked once before each retry, a refused
retry ends with the vendor's answer, a per-request policy spends from its own bucket, and threads
sharing a transport never overdraw it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pipeline_kit import NO_BREAKER, Caller, Vendor, policy, run_threads, transport

import resilient_client as rc
from resilient_client.testing import FakeClock

pytestmark = pytest.mark.anyio

DOWN = httpx.Response(503)
#: Retries the budget allows under an outage: ``burst`` at the start plus ``ratio`` per request.
BURST, RATIO, REFUND = 20.0, 0.05, 2.5


@pytest.mark.parametrize("name", rc.VENDORS)
def test_every_shipped_policy_has_the_budget_on_with_the_contracts_numbers(name: str) -> None:
    assert rc.load_policy(name).budget == rc.BudgetSettings(
        enabled=True, ratio=RATIO, burst=BURST, refund=REFUND
    )


async def test_under_total_outage_the_default_budget_allows_burst_plus_ratio_retries(
    connect: Callable[[Any], Caller],
) -> None:
    vendor = Vendor(FakeClock(), DOWN)
    # The breaker off: it would cut the outage short (that is its job, tested on its own).
    client = connect(transport(vendor, policy=policy(breaker=NO_BREAKER)))
    requests = 50
    refused = []
    for _ in range(requests):
        with pytest.raises(rc.errors.ServiceUnavailableError) as caught:
            await client.get()
        if "budget" in caught.value.reason:
            refused.append(caught.value)
    retries = vendor.sent - requests
    # The first request's deposit finds the bucket full; less than a token is left at the end.
    assert BURST + RATIO * (requests - 1) - 1 < retries <= BURST + RATIO * requests
    assert refused, "the budget never refused a retry"
    for error in refused:
        assert error.reason == "not retried: the retry budget is spent"
        assert 1 <= error.attempts < 4
    assert {error.attempts for error in refused} >= {1}


async def test_a_refused_retry_raises_the_last_vendor_error_with_the_tries_made(
    connect: Callable[[Any], Caller],
) -> None:
    vendor = Vendor(FakeClock(), DOWN)
    budget = rc.BudgetSettings(ratio=0.01, burst=1.0)
    client = connect(transport(vendor, policy=policy(budget=budget, breaker=NO_BREAKER)))
    with pytest.raises(rc.errors.ServiceUnavailableError) as caught:
        await client.get()
    # The one token paid the first retry; the second was refused, after two tries.
    assert caught.value.attempts == vendor.sent == 2
    assert caught.value.reason == "not retried: the retry budget is spent"
    assert caught.value.http_status == 503
    assert "budget" in str(caught.value)


async def test_a_per_request_policy_with_its_own_numbers_spends_from_its_own_bucket(
    connect: Callable[[Any], Caller],
) -> None:
    # Each request of the override earns half a retry, and may retry once: half of them retry.
    override = policy(
        budget=rc.BudgetSettings(ratio=0.5, burst=2.0), breaker=NO_BREAKER, retry={"max_attempts": 2}
    )
    vendor = Vendor(FakeClock(), DOWN)
    client = connect(transport(vendor, policy=policy(breaker=NO_BREAKER)))
    retries_per_batch = []
    for _ in range(3):
        before = vendor.sent
        for _ in range(50):
            with pytest.raises(rc.errors.ServiceUnavailableError):
                await client.get(extensions={rc.POLICY_EXTENSION: override})
        retries_per_batch.append(vendor.sent - before - 50)
    # Not 10, 0, 0 (the bug: the override's requests earned nothing for their own bucket).
    assert all(24 <= retries <= 27 for retries in retries_per_batch), retries_per_batch
    # The transport's own bucket (0.2 and 10) was never touched: its first request retries fully.
    before = vendor.sent
    with pytest.raises(rc.errors.ServiceUnavailableError) as caught:
        await client.get()
    assert caught.value.attempts == vendor.sent - before == 4


async def test_a_per_request_policy_with_the_same_numbers_shares_the_transports_bucket(
    connect: Callable[[Any], Caller],
) -> None:
    same = policy(budget=rc.BudgetSettings(ratio=0.01, burst=1.0), breaker=NO_BREAKER)
    vendor = Vendor(FakeClock(), DOWN)
    client = connect(transport(vendor, policy=same))
    with pytest.raises(rc.errors.ServiceUnavailableError):
        await client.get(extensions={rc.POLICY_EXTENSION: same})  # spends the one token
    with pytest.raises(rc.errors.ServiceUnavailableError) as caught:
        await client.get()
    assert caught.value.attempts == 1
    assert "budget" in caught.value.reason


def test_32_threads_sharing_one_transport_never_overdraw_the_budget() -> None:
    vendor = Vendor(FakeClock(), DOWN)
    # Waits of 0 (full jitter at 0): the threads race for tokens, not for the fake clock.
    shared = transport(vendor, policy=policy(breaker=NO_BREAKER), random=lambda: 0.0)
    per_thread = 10

    def calls(_: int) -> None:
        with httpx.Client(transport=shared) as client:
            for _ in range(per_thread):
                with pytest.raises(rc.errors.ServiceUnavailableError):
                    client.get("https://hyper.test/x")

    assert run_threads(32, calls) == []
    requests = 32 * per_thread
    retries = vendor.sent - requests
    # Never more retries than tokens: the burst plus what the requests earned.
    assert retries <= BURST + RATIO * requests + 1e-9
    # And the tokens were spent, not lost: at most the deposits made while the bucket was full
    # (one per thread, before any retry) and a fraction of a token are left unused.
    assert retries >= RATIO * requests - 32 * RATIO - 1
