"""A rejection never hides a vendor answer: a retry refused by the breaker, the rate limiter, a
guard or the budget ends with the last vendor error, the refusal as its reason; only a call whose
first attempt was refused raises the RejectedError; ``except httpx.HTTPError`` catches both."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import httpx
import pytest
from pipeline_kit import JOURNAL, NO_BREAKER, NO_BUDGET, Caller, Recorder, Vendor, policy, transport

import resilient_client as rc
from resilient_client.stores import state_key
from resilient_client.strategies.guard import Guard
from resilient_client.testing import FakeClock, fault_response
from store_ops import Store

pytestmark = pytest.mark.anyio

NO_RATE_LIMIT = rc.RateLimitSettings(enabled=False)
BODY = {"AccountNo": 7}


@attrs.frozen
class Case:
    """A first attempt's vendor error, then a retry the strategy refuses."""

    strategy: str
    tables: dict[str, Any]
    answer: httpx.Response
    error: type[rc.errors.ApiError]
    reason: str
    #: What a call whose first attempt is refused raises (None: the strategy never refuses one).
    refusal: type[rc.RejectedError] | None
    #: Takes the strategy's capacity before the call (the budget's, asked before the retry's
    #: hooks run) or between its first attempt and the retry (a guard's key).
    before: Callable[[rc.ResilientTransport, FakeClock], None] | None = None
    meanwhile: Callable[[rc.ResilientTransport, FakeClock], None] | None = None


def hold_the_account(resilient: rc.ResilientTransport, clock: FakeClock) -> None:
    """Another process takes account 7's journal key while the call waits to retry."""
    guard = Guard("journal", resilient.policy.guards["journal"], resilient.state, state_key("guard", "hyper"))
    keys = guard.keys_for("journal", b'{"AccountNo": 7}', host="hyper.test")
    assert keys is not None
    assert Store(resilient.state).try_acquire(keys, 1, 1000.0, "another-process", clock.now)


def spend_the_budget(resilient: rc.ResilientTransport, clock: FakeClock) -> None:
    store, budget = resilient.state, resilient.policy.budget
    key = state_key("budget", "hyper", f"{budget.ratio:g}", f"{budget.burst:g}")
    while Store(store).try_spend(key, 1.0, budget.burst, clock.now):
        pass


CASES = [
    Case(
        "breaker",
        # Any failure opens it: the first 503 opens it, the retry finds it open.
        {"breaker": rc.BreakerSettings(minimum_throughput=1, failure_ratio=1.0)},
        httpx.Response(503),
        rc.errors.ServiceUnavailableError,
        "retry not sent: circuit open",
        rc.errors.CircuitOpenError,
    ),
    Case(
        "rate_limit",
        # One send a minute: the retry would wait past the 30 s deadline for its turn.
        {"rate_limit": rc.RateLimitSettings(enabled=True, requests=1, period=60.0, adaptive=False)},
        httpx.Response(503),
        rc.errors.ServiceUnavailableError,
        "retry not sent: rate limit wait would pass the deadline",
        rc.errors.ThrottledError,
    ),
    Case(
        "guard",
        {
            "guards": {
                "journal": rc.GuardSettings(
                    operations=("*journal*",), key_fields=("AccountNo",), max_wait=1.0
                )
            }
        },
        fault_response("hyper", 10),
        rc.errors.ResourceLockedError,
        "retry not sent: guard 'journal': the key stayed busy",
        rc.errors.GuardTimeoutError,
        meanwhile=hold_the_account,
    ),
    Case(
        "budget",
        {"budget": rc.BudgetSettings(ratio=0.01, burst=1.0)},
        httpx.Response(503),
        rc.errors.ServiceUnavailableError,
        "not retried: the retry budget is spent",
        None,
        before=spend_the_budget,
    ),
]


def case_policy(case: Case) -> rc.RetryPolicy:
    tables = {"breaker": NO_BREAKER, "budget": NO_BUDGET, "rate_limit": NO_RATE_LIMIT, "guards": {}}
    return policy("hyper", **{**tables, **case.tables})


class Meanwhile(rc.Hook):
    def __init__(self, action: Callable[[], None]) -> None:
        self.action = action

    def on_retry(self, call: Any, event: rc.RetryEvent) -> None:
        self.action()


@pytest.mark.parametrize("case", [pytest.param(c, id=c.strategy) for c in CASES])
async def test_a_refused_retry_raises_the_last_vendor_error_with_the_refusal_as_reason(
    connect: Callable[[Any], Caller], case: Case
) -> None:
    clock = FakeClock()
    vendor = Vendor(clock, case.answer)
    recorder = Recorder()
    box: list[rc.ResilientTransport] = []
    hooks: list[rc.Hook] = [recorder]
    if case.meanwhile is not None:
        meanwhile = case.meanwhile
        hooks.append(Meanwhile(lambda: meanwhile(box[0], clock)))
    box.append(transport(vendor, policy=case_policy(case), hooks=hooks))
    client = connect(box[0])
    if case.before is not None:
        case.before(box[0], clock)
    with pytest.raises(case.error) as caught:
        await client.post(JOURNAL, json=BODY)
    error = caught.value
    assert isinstance(error, rc.errors.HyperError)  # the vendor's answer, not a RejectedError
    assert not isinstance(error, rc.RejectedError)
    assert error.reason.startswith(case.reason)
    assert case.reason in str(error)
    assert error.attempts == vendor.sent == 1
    assert error.response is not None and error.response.status_code == case.answer.status_code
    assert recorder.of("rejection") == [(2, case.strategy)]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.strategy) for c in CASES])
async def test_only_a_refused_first_attempt_raises_the_rejection(
    connect: Callable[[Any], Caller], case: Case
) -> None:
    clock = FakeClock()
    vendor = Vendor(clock, case.answer)
    resilient = transport(vendor, policy=policy(case_policy(case), retry={"max_attempts": 1}))
    client = connect(resilient)
    with pytest.raises(case.error):
        await client.post(JOURNAL, json=BODY)
    for take in (case.before, case.meanwhile):
        if take is not None:
            take(resilient, clock)
    try:
        await client.post(JOURNAL, json=BODY)
    except httpx.HTTPError as error:  # as a caller without the SDK's exceptions catches it
        caught: httpx.HTTPError = error
    else:
        pytest.fail("the second call raised nothing")
    if case.refusal is None:  # the budget refuses retries, never a first attempt
        assert isinstance(caught, case.error)
        assert vendor.sent == 2
    else:
        assert isinstance(caught, case.refusal)
        assert isinstance(caught, rc.RejectedError)
        assert caught.vendor == "hyper"
        assert vendor.sent == 1


async def test_a_retry_refused_after_several_attempts_counts_them_all(
    connect: Callable[[Any], Caller],
) -> None:
    clock = FakeClock()
    vendor = Vendor(clock, httpx.Response(503))
    # Two failures open it: the third attempt is refused, after two tries.
    breaker = rc.BreakerSettings(minimum_throughput=2, failure_ratio=1.0)
    client = connect(transport(vendor, policy=policy(breaker=breaker, budget=NO_BUDGET)))
    with pytest.raises(rc.errors.ServiceUnavailableError) as caught:
        await client.get()
    assert caught.value.attempts == vendor.sent == 2
    assert caught.value.reason == "retry not sent: circuit open"


async def test_a_transport_error_keeps_its_type_when_its_retry_is_refused(
    connect: Callable[[Any], Caller],
) -> None:
    vendor = Vendor(FakeClock(), httpx.ConnectError("refused"))
    breaker = rc.BreakerSettings(minimum_throughput=1, failure_ratio=1.0)
    client = connect(transport(vendor, policy=policy(breaker=breaker, budget=NO_BUDGET)))
    with pytest.raises(httpx.ConnectError) as caught:
        await client.get()
    assert caught.value.attempts == 1  # type: ignore[attr-defined]
    assert caught.value.reason == "retry not sent: circuit open"  # type: ignore[attr-defined]
    assert any("circuit open" in note for note in caught.value.__notes__)
