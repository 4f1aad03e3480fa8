"""The retry decision and Retry-After parsing as pure functions, plus the properties of every wait."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import resilient_client as rc

POLICY = rc.RetryPolicy()


def outcome(category: str, code: object = None) -> rc.Outcome:
    return rc.Outcome(category, code=code, error_class=rc.errors.CATEGORY_CLASSES[category])  # type: ignore[arg-type]


def decide(
    category: str | None = None,
    *,
    error: Exception | None = None,
    method: str = "GET",
    operation: str = "x",
    attempt: int = 1,
    time_left: float = 30.0,
    retry_after: float | None = None,
    replayable: bool = True,
    budget_left: bool = True,
    policy: rc.RetryPolicy = POLICY,
) -> rc.Decision:
    return rc.decide(
        policy,
        outcome=None if category is None else outcome(category),
        error=error,
        method=method,
        operation=operation,
        attempt=attempt,
        time_left=time_left,
        retry_after=retry_after,
        replayable=replayable,
        budget_left=budget_left,
        random=lambda: 0.5,
    )


@pytest.mark.parametrize(
    ("category", "method", "action"),
    [
        pytest.param("server_error", "GET", "retry", id="500-GET"),
        pytest.param("server_error", "PUT", "retry", id="500-PUT"),
        pytest.param("server_error", "DELETE", "retry", id="500-DELETE"),
        pytest.param("server_error", "POST", "raise", id="500-POST"),
        pytest.param("server_error", "PATCH", "raise", id="500-PATCH"),
        pytest.param("request_timeout", "POST", "raise", id="408-POST"),
        pytest.param("request_timeout", "GET", "retry", id="408-GET"),
        pytest.param("locked", "POST", "retry", id="423-POST"),
        pytest.param("rate_limited", "POST", "retry", id="429-POST"),
        pytest.param("service_unavailable", "POST", "retry", id="503-POST"),
        pytest.param("not_ready", "POST", "retry", id="not-ready-POST"),
        pytest.param("validation", "GET", "raise", id="validation-GET"),
        pytest.param("conflict", "PUT", "raise", id="conflict-PUT"),
        pytest.param("unknown", "GET", "raise", id="unknown-GET"),
        pytest.param("no_results", "GET", "raise", id="soft-fault-raises"),
    ],
)
def test_method_safety(category: str, method: str, action: str) -> None:
    assert decide(category, method=method).action == action


def test_operations_marked_idempotent_make_a_post_safe() -> None:
    updox = rc.load_policy("updox")
    assert decide("server_error", method="POST", operation="MessageList", policy=updox).action == "retry"
    assert decide("server_error", method="POST", operation="PingWithAuth", policy=updox).action == "retry"
    refused = decide("server_error", method="POST", operation="PatientsSync", policy=updox)
    assert refused.action == "raise"
    assert refused.reason == "not retried: POST may have been processed"


@pytest.mark.parametrize(
    ("error", "method", "action"),
    [
        pytest.param(httpx.ConnectError("refused"), "POST", "retry", id="connect-POST"),
        pytest.param(httpx.ConnectTimeout("slow"), "POST", "retry", id="connect-timeout-POST"),
        pytest.param(httpx.PoolTimeout("pool"), "POST", "retry", id="pool-timeout-POST"),
        pytest.param(httpx.ReadTimeout("slow"), "POST", "raise", id="read-timeout-POST"),
        pytest.param(httpx.ReadTimeout("slow"), "GET", "retry", id="read-timeout-GET"),
        pytest.param(httpx.RemoteProtocolError("dropped"), "POST", "raise", id="dropped-POST"),
        pytest.param(httpx.RemoteProtocolError("dropped"), "PUT", "retry", id="dropped-PUT"),
        pytest.param(httpx.UnsupportedProtocol("ftp"), "GET", "raise", id="unsupported-protocol"),
    ],
)
def test_transport_errors(error: Exception, method: str, action: str) -> None:
    assert decide(error=error, method=method).action == action


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        pytest.param(
            {"category": "validation"}, "not retried: the policy does not retry validation", id="category"
        ),
        pytest.param(
            {"category": "server_error", "method": "POST"},
            "not retried: POST may have been processed",
            id="method-safety",
        ),
        pytest.param(
            {"error": httpx.UnsupportedProtocol("ftp")},
            "not retried: UnsupportedProtocol is not a transient transport error",
            id="transport-error",
        ),
        pytest.param(
            {
                "error": httpx.ConnectError("refused"),
                "policy": rc.RetryPolicy(retry=rc.RetrySettings(transport_errors=False)),
            },
            "not retried: retry.transport_errors is off",
            id="transport-errors-off",
        ),
        pytest.param(
            {"category": "server_error", "replayable": False},
            "not retried: the request body is a one-shot stream",
            id="one-shot",
        ),
        pytest.param({"category": "server_error", "attempt": 4}, "4 of 4 attempts made", id="attempts"),
        pytest.param(
            {"category": "server_error", "budget_left": False}, "the retry budget is spent", id="budget"
        ),
        pytest.param(
            {"category": "rate_limited", "retry_after": 3600},
            "Retry-After 3600 s exceeds retry.max_retry_after 60 s",
            id="retry-after-cap",
        ),
        pytest.param(
            {"category": "rate_limited", "retry_after": 5, "time_left": 4.9},
            "a 5 s wait would pass the deadline: 4.9 s left of retry.total_timeout 30 s",
            id="deadline",
        ),
    ],
)
def test_every_refusal_says_why_in_words(kwargs: dict[str, Any], reason: str) -> None:
    decision = decide(**kwargs)
    assert (decision.action, decision.reason) == ("raise", reason)


def test_limits_that_stop_a_retry() -> None:
    assert decide("server_error", attempt=3).action == "retry"
    in_time = decide("rate_limited", retry_after=5, time_left=5.1)
    assert (in_time.action, in_time.wait) == ("retry", 5.0)


def test_a_server_wait_is_exact_and_a_backoff_is_jittered() -> None:
    assert decide("rate_limited", retry_after=2.5).wait == 2.5
    assert decide("server_error", attempt=1).wait == 0.25  # 0.5 * 0.5
    assert decide("server_error", attempt=3).wait == 1.0  # 0.5 * 2**2 * 0.5


def test_per_code_rules() -> None:
    policy = rc.RetryPolicy(
        codes={"9": rc.CodeRule(retry=True, any_method=True), "10": rc.CodeRule(retry=False)}
    )
    retried = rc.decide(
        policy,
        outcome=outcome("validation", 9),
        method="POST",
        operation="x",
        attempt=1,
        time_left=30,
        retry_after=None,
        replayable=True,
        random=lambda: 0.5,
    )
    assert retried.action == "retry"
    never = rc.decide(
        policy,
        outcome=outcome("locked", 10),
        method="GET",
        operation="x",
        attempt=1,
        time_left=30,
        retry_after=None,
        replayable=True,
        random=lambda: 0.5,
    )
    assert never.action == "raise"


NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"Retry-After": "3"}, 3.0, id="seconds"),
        pytest.param({"Retry-After": "1.5"}, 1.5, id="decimal"),
        pytest.param({"Retry-After": "0"}, 0.0, id="zero"),
        pytest.param({"Retry-After-Ms": "250"}, 0.25, id="millis"),
        pytest.param({"Retry-After-Ms": "250", "Retry-After": "9"}, 9.0, id="longest-wins-seconds"),
        pytest.param({"Retry-After-Ms": "9500", "Retry-After": "9"}, 9.5, id="longest-wins-millis"),
        pytest.param({"Retry-After": "1", "X-Rate-Limit-Reset": "30"}, 30.0, id="longest-wins-reset"),
        pytest.param({"Retry-After": "9" * 200}, 1e9, id="two-hundred-digits-capped"),
        pytest.param({"Retry-After": "Tue, 14 Nov 2023 22:13:30 GMT"}, 10.0, id="http-date-vs-now"),
        pytest.param(
            {"Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT", "Date": "Wed, 21 Oct 2015 07:28:00 GMT"},
            30.0,
            id="http-date-vs-date-header",
        ),
        pytest.param({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0, id="past-date"),
        pytest.param({"X-Rate-Limit-Reset": "12"}, 12.0, id="reset-delay"),
        pytest.param({"X-Rate-Limit-Reset": str(int(NOW) + 20)}, 20.0, id="reset-epoch-seconds"),
        pytest.param({"X-Rate-Limit-Reset": str(int(NOW * 1000) + 5000)}, 5.0, id="reset-epoch-millis"),
        pytest.param({"Retry-After": "-5"}, None, id="negative"),
        pytest.param({"Retry-After": "soon"}, None, id="words"),
        pytest.param({"Retry-After": "nan"}, None, id="nan"),
        pytest.param({"Retry-After": "Mon, 99 Foo 2015 99:99:99 GMT"}, None, id="bad-date"),
        pytest.param({"Retry-After": "99999999999999999999999999999999999999"}, 1e9, id="huge-capped"),
        pytest.param({"Retry-After": "1e999"}, 1e9, id="inf-capped"),
        pytest.param({}, None, id="none"),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    found = rc.parse_retry_after(httpx.Headers(headers), NOW, "x-rate-limit-reset")
    if expected is None:
        assert found is None
    else:
        assert found == pytest.approx(expected)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["retry-after", "retry-after-ms", "x-rate-limit-reset", "date"]), st.text(max_size=40)
    )
)
def test_parse_retry_after_never_crashes(headers: dict[str, str]) -> None:
    found = rc.parse_retry_after(headers, NOW, "x-rate-limit-reset")
    assert found is None or 0.0 <= found <= 1e9


policies = st.builds(
    lambda initial, multiplier, max_wait, jitter, cap, total: rc.RetryPolicy(
        retry=rc.RetrySettings(
            initial_wait=initial, multiplier=multiplier, max_wait=max_wait, jitter=jitter,
            max_retry_after=cap, total_timeout=total, max_attempts=100,
        )
    ),
    st.floats(0, 10), st.floats(1, 10), st.floats(0, 100), st.sampled_from(["full", "none"]),
    st.floats(0, 120), st.floats(0.001, 300),
)  # fmt: skip


@settings(max_examples=3000, deadline=None)
@given(
    policy=policies,
    attempt=st.integers(1, 99),
    time_left=st.floats(-5, 300),
    retry_after=st.one_of(st.none(), st.floats(0, 1e9)),
    draw=st.floats(0, 1, exclude_max=True),
    category=st.sampled_from(["rate_limited", "server_error", "locked"]),
)
def test_every_wait_respects_server_cap_deadline_and_jitter(
    policy: rc.RetryPolicy,
    attempt: int,
    time_left: float,
    retry_after: float | None,
    draw: float,
    category: str,
) -> None:
    decision = rc.decide(
        policy, outcome=outcome(category), method="GET", operation="x", attempt=attempt, time_left=time_left,
        retry_after=retry_after, replayable=True, random=lambda: draw,
    )  # fmt: skip
    if decision.action != "retry":
        return
    settings_ = policy.retry
    assert decision.wait < time_left
    if retry_after is not None:
        assert decision.wait >= retry_after
        assert decision.wait <= settings_.max_retry_after
    else:
        ceiling = min(settings_.max_wait, settings_.initial_wait * settings_.multiplier ** (attempt - 1))
        assert 0.0 <= decision.wait <= ceiling
        if settings_.jitter == "none":
            assert decision.wait == ceiling
