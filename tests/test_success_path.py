"""The success path's fast lanes keep the behaviour of the slow ones (SPEC section 7's overhead bars).

Each fast lane (a shared Circuit view and Permit for a closed circuit, kept window sums, the budget
found by its settings' identity, no attempt event for a hook that hears faults only) is checked
against what the general path answers, including the cases where the fast lane must step aside.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import resilient_client as rc
from resilient_client import POLICY_EXTENSION
from resilient_client._pipeline import Call
from resilient_client.stores import MemoryState
from resilient_client.strategies.breaker import Breaker, Permit
from resilient_client.testing import FakeClock
from store_ops import Store

OK_BODY = {"ResponseCode": 0, "ResponseMsgEng": "Success"}
URL = "https://hyper.test/api/items"


# -- hooks that hear faults only ---------------------------------------------------------------------


class Recorder(rc.Hook):
    def __init__(self) -> None:
        self.heard: list[tuple[int, str | None]] = []

    def on_attempt(self, call: Call, event: rc.AttemptEvent) -> None:
        self.heard.append((event.attempt, event.category))


class FaultsOnly(Recorder):
    attempt_successes = False


def flaky_then_ok(request: httpx.Request) -> httpx.Response:
    if request.headers.get("x-try") is None:
        request.headers["x-try"] = "1"
        return httpx.Response(503, json={"ResponseCode": 50, "ResponseMsgEng": "busy"})
    return httpx.Response(200, json=OK_BODY)


def hooked_transport(*hooks: rc.Hook) -> rc.ResilientTransport:
    clock = FakeClock()
    return rc.ResilientTransport(
        "hyper",
        policy="default",
        transport=httpx.MockTransport(flaky_then_ok),
        hooks=hooks,
        **clock.options(),
    )


@pytest.mark.parametrize(
    ("hook", "heard"),
    [
        pytest.param(Recorder(), [(1, "service_unavailable"), (2, "ok")], id="every-attempt"),
        pytest.param(FaultsOnly(), [(1, "service_unavailable")], id="faults-only"),
    ],
)
def test_a_hook_hears_successes_unless_it_says_it_wants_faults_only(
    hook: Recorder, heard: list[tuple[int, str | None]]
) -> None:
    with httpx.Client(transport=hooked_transport(hook)) as client:
        assert client.get(URL).status_code == 200
    assert hook.heard == heard


@pytest.mark.anyio
@pytest.mark.parametrize("faults_only", [False, True], ids=["every-attempt", "faults-only"])
async def test_an_async_client_tells_the_same_hooks(anyio_backend: str, faults_only: bool) -> None:
    hook = FaultsOnly() if faults_only else Recorder()
    async with httpx.AsyncClient(transport=hooked_transport(hook)) as client:
        assert (await client.get(URL)).status_code == 200
    expected = [(1, "service_unavailable")] + ([] if faults_only else [(2, "ok")])
    assert hook.heard == expected


def test_the_logging_hook_hears_faults_only() -> None:
    assert rc.instrumentation.LoggingHook.attempt_successes is False
    hooks = rc.ResilientTransport("hyper", policy="default").hooks
    assert hooks.attempt and not hooks.attempt_success


def test_a_soft_fault_the_policy_returns_is_no_success_for_the_hooks() -> None:
    """``return`` for a soft fault is still a fault: a faults-only hook hears it."""
    policy = rc.load_policy("hyper")
    hyper_2 = rc.catalog("hyper").lookup(2)
    assert hyper_2 is not None and hyper_2.category == "no_results"
    policy = attrs.evolve(policy, soft_faults={**policy.soft_faults, "no_results": "return"})
    hook = FaultsOnly()

    def no_results(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"ResponseCode": 2, "ResponseMsgEng": "No results"})

    transport = rc.ResilientTransport(
        "hyper", policy=policy, transport=httpx.MockTransport(no_results), hooks=[hook]
    )
    with httpx.Client(transport=transport) as client:
        assert client.get(URL).status_code == 200
    assert hook.heard == [(1, "no_results")]


# -- the store's closed-circuit answers and kept window sums --------------------------------------------


def test_a_closed_circuit_reads_the_same_until_it_moves() -> None:
    store, now = MemoryState(), 1000.0
    assert Store(store).circuit("k", now) == Store(store).circuit("k", now + 1)  # never opened
    assert Store(store).open_circuit("k", 0, 10.0, now)
    opened = Store(store).circuit("k", now)
    assert opened.state == "open" and opened.retry_after == 10.0
    taken, probing = Store(store).try_probe("k", "probe", 1, 30.0, now + 10)
    assert taken and probing.state == "half_open"
    assert Store(store).close_circuit("k", probing.epoch, now + 11)
    closed = Store(store).circuit("k", now + 11)
    assert (closed.state, closed.epoch, closed.retry_after) == ("closed", probing.epoch + 1, 0.0)
    assert Store(store).circuit("k", now + 12) == closed
    Store(store).reset_circuit("k", now + 13)
    after_reset = Store(store).circuit("k", now + 13)
    assert after_reset.epoch > closed.epoch and after_reset.state == "closed"


def test_a_closed_breaker_hands_out_one_permit_per_epoch() -> None:
    store = MemoryState()
    breaker = Breaker(rc.BreakerSettings(), store, "breaker/k")
    first = breaker.admit(1000.0, 30.0)
    assert first == Permit(0) and breaker.admit(1001.0, 30.0) is first
    breaker.reset(1002.0)
    renewed = breaker.admit(1002.0, 30.0)
    assert isinstance(renewed, Permit) and renewed.epoch > 0 and renewed.probe is None


def window_sums(events: list[tuple[float, bool]], window: float, at: int) -> tuple[int, int]:
    """What record_outcome must answer after events[: at + 1]: the sums over the buckets that the
    last outcome's bucket has not left behind (buckets are ``window / 10`` wide)."""
    width = window / 10
    kept: dict[int, list[int]] = {}
    for now, failed in events[: at + 1]:
        current = math.floor(now / width)
        for index in [i for i in kept if i <= current - 10]:
            del kept[index]
        bucket = kept.setdefault(current, [0, 0])
        bucket[0] += failed
        bucket[1] += 1
    return sum(b[0] for b in kept.values()), sum(b[1] for b in kept.values())


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.floats(min_value=-2.0, max_value=20.0), st.booleans()), min_size=1, max_size=60
    )
)
def test_the_kept_window_sums_match_counting_the_buckets(steps: list[tuple[float, bool]]) -> None:
    """Time mostly moves on, sometimes a little back (threads read the clock before the lock)."""
    store, window, now = MemoryState(), 10.0, 1000.0
    events = []
    for delta, failed in steps:
        now += delta
        events.append((now, failed))
    for at, (when, failed) in enumerate(events):
        assert Store(store).record_outcome("k", failed, window, when) == window_sums(events, window, at)


# -- the budget found by its settings' identity --------------------------------------------------------


def test_requests_alternating_policies_spend_from_their_own_budgets() -> None:
    """The transport's budget is found without hashing its settings; a request with a policy of its
    own still gets the bucket of its numbers, and the next plain request the transport's again."""
    clock = FakeClock()
    sent = 0

    def down(request: httpx.Request) -> httpx.Response:
        nonlocal sent
        sent += 1
        return httpx.Response(503)

    default = rc.load_policy("default")
    stingy = attrs.evolve(default, budget=rc.BudgetSettings(ratio=0.001, burst=1.0))
    transport = rc.ResilientTransport(
        "hyper",
        policy=attrs.evolve(default, breaker=attrs.evolve(default.breaker, enabled=False)),
        transport=httpx.MockTransport(down),
        **clock.options(),
    )
    stingy = attrs.evolve(stingy, breaker=attrs.evolve(stingy.breaker, enabled=False))
    attempts = []
    with httpx.Client(transport=transport) as client:
        for extensions in ({}, {POLICY_EXTENSION: stingy}, {POLICY_EXTENSION: stingy}, {}):
            before = sent
            request = client.build_request("GET", URL, extensions=extensions)
            with pytest.raises(rc.errors.ServiceUnavailableError):
                client.send(request)
            attempts.append(sent - before)
    # The default budget (burst 10) pays 3 retries twice; the stingy one (burst 1) one retry once.
    assert attempts == [4, 2, 1, 4]


# -- the operation name, worked out once -------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "extensions", "operation"),
    [
        pytest.param("https://hyper.test/api/journal/", {}, "journal", id="last-segment"),
        pytest.param("https://hyper.test/api/x", {"resilient_client.operation": "Post"}, "Post", id="named"),
    ],
)
def test_the_operation_is_read_once_per_call(url: str, extensions: dict[str, Any], operation: str) -> None:
    request = httpx.Request("POST", url, extensions=extensions)
    call = rc.ResilientTransport("hyper", policy="default")._call(request)
    assert call.operation == operation
    request.extensions["resilient_client.operation"] = "Changed"
    assert call.operation == operation  # one call, one name: every attempt and guard agree


# -- a body already in memory --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "category"),
    [
        pytest.param(b'{"ResponseCode": 0}', 200, None, id="success"),
        pytest.param(b'{"ResponseCode": 10, "ResponseMsgEng": "busy"}', 200, "locked", id="fault"),
    ],
)
def test_an_unread_in_memory_body_is_read_and_classified(
    body: bytes, status: int, category: str | None
) -> None:
    """A response whose stream is bytes in memory, not read yet (``stream=httpx.ByteStream``), is
    read in place: it cannot trickle, so it is not wrapped against the deadline."""

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "application/json", "content-length": str(len(body))}
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body))

    clock = FakeClock()
    policy = attrs.evolve(
        rc.load_policy("default"), retry=attrs.evolve(rc.RetryPolicy().retry, max_attempts=1)
    )
    transport = rc.ResilientTransport(
        "hyper", policy=policy, transport=httpx.MockTransport(handler), **clock.options()
    )
    with httpx.Client(transport=transport) as client:
        if category is None:
            assert client.get(URL).content == body
        else:
            with pytest.raises(rc.errors.ApiError) as raised:
                client.get(URL)
            assert raised.value.category == category
