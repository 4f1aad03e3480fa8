"""The retry decision and Retry-After parsing as pure functions, plus the properties of every wait."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import resilient_client as rc
from resilient_client._decision import backoff

POLICY = rc.RetryPolicy()


def outcome(category: str, code: object = None) -> rc.Outcome:
    return rc.Outcome(category, code=code, error_class=rc.errors.CATEGORY_CLASSES[category])  # type: ignore[arg-type]


def decide(
    category: str | None = None,
    *,
    code: object = None,
    error: Exception | None = None,
    method: str = "GET",
    operation: str | Callable[[], str] = "x",
    attempt: int = 1,
    time_left: float = 30.0,
    retry_after: float | None = None,
    replayable: bool = True,
    budget_left: bool = True,
    policy: rc.RetryPolicy = POLICY,
) -> rc.Decision:
    return rc.decide(
        policy,
        outcome=None if category is None else outcome(category, code),
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
            # Updox 4650 is a server_error, which the policy retries; its own rule excludes it.
            {"category": "server_error", "code": 4650, "method": "GET", "policy": rc.load_policy("updox")},
            "not retried: the policy's [codes.4650] sets retry = false",
            id="per-code-rule",
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


@pytest.mark.parametrize(
    ("method", "action", "asked"),
    [
        pytest.param("GET", "retry", [], id="idempotent-method-never-asks"),
        pytest.param("POST", "retry", ["charge.refund"], id="other-method-asks-once"),
    ],
)
def test_operation_named_by_a_function_only_when_needed(method: str, action: str, asked: list[str]) -> None:
    # Naming the operation costs a URL parse: decide() asks for it only when the method says nothing.
    policy = rc.RetryPolicy(retry=rc.RetrySettings(idempotent_operations=("*.refund",)))
    names: list[str] = []

    def name() -> str:
        names.append("charge.refund")
        return "charge.refund"

    assert decide("server_error", method=method, operation=name, policy=policy).action == action
    assert names == asked


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
        pytest.param({"Retry-After": "0"}, None, id="zero-is-no-wait"),
        pytest.param({"Retry-After": "0.0"}, None, id="zero-float-is-no-wait"),
        pytest.param({"Retry-After-Ms": "0"}, None, id="zero-millis-is-no-wait"),
        pytest.param({"Retry-After": "0", "Retry-After-Ms": "250"}, 0.25, id="zero-and-millis"),
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
        pytest.param({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, None, id="past-date-is-no-wait"),
        pytest.param({"X-Rate-Limit-Reset": str(int(NOW) - 20)}, None, id="past-reset-is-no-wait"),
        pytest.param({"Retry-After-Ms": "-250"}, None, id="negative-millis"),
        pytest.param({"Retry-After": "1_000"}, None, id="underscores-are-no-number"),
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


# --- Retry-After: RFC 9110's three date forms, zones, headers sent twice, "no wait" (issue 8) ---

# NOW is Tue, 14 Nov 2023 22:13:20 GMT.
DATES = [
    pytest.param("Tue, 14 Nov 2023 22:13:30 GMT", id="imf-fixdate"),
    pytest.param("Tuesday, 14-Nov-23 22:13:30 GMT", id="rfc850"),
    pytest.param("Tue Nov 14 22:13:30 2023", id="asctime"),
    pytest.param("Tue, 14 Nov 2023 22:13:30", id="imf-without-zone"),
    pytest.param("Tue, 14 Nov 2023 22:13:30 -0000", id="imf-unknown-zone"),
    pytest.param("Tue, 14 Nov 2023 23:13:30 +0100", id="imf-with-offset"),
]


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Kolkata", "Pacific/Kiritimati"])
@pytest.mark.parametrize("date", DATES)
def test_every_http_date_form_is_read_as_utc_whatever_the_time_zone(
    monkeypatch: pytest.MonkeyPatch, date: str, zone: str
) -> None:
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        assert rc.parse_retry_after(httpx.Headers({"Retry-After": date}), NOW, None) == pytest.approx(10.0)
        # The response's own Date header, in any form, is read the same way.
        asked = {"Retry-After": "Tue, 14 Nov 2023 22:14:00 GMT", "Date": date}
        assert rc.parse_retry_after(httpx.Headers(asked), NOW, None) == pytest.approx(30.0)
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize(
    ("year", "expected"),
    [
        pytest.param("23", 10.0, id="this-year"),
        pytest.param("94", None, id="last-century-is-past"),
        pytest.param("70", 1e9, id="47-years-ahead-is-the-future"),
    ],
)
def test_an_rfc850_two_digit_year_follows_rfc_9110(year: str, expected: float | None) -> None:
    headers = httpx.Headers({"Retry-After": f"Tuesday, 14-Nov-{year} 22:13:30 GMT"})
    found = rc.parse_retry_after(headers, NOW, None)
    assert found == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param([("Retry-After", "5"), ("Retry-After", "5")], 5.0, id="sent-twice"),
        pytest.param([("Retry-After", "5, 5")], 5.0, id="joined-by-a-proxy"),
        pytest.param([("Retry-After", "3"), ("Retry-After", "7")], 7.0, id="longest-of-two"),
        pytest.param([("Retry-After", "0, 0")], None, id="zero-twice"),
        pytest.param([("Retry-After", "soon, 4")], 4.0, id="one-readable"),
        pytest.param(
            [
                ("Retry-After", "Tue, 14 Nov 2023 22:13:30 GMT"),
                ("Retry-After", "Tue, 14 Nov 2023 22:13:30 GMT"),
            ],
            10.0,
            id="date-twice",
        ),
        pytest.param([("Retry-After", "Tue, 14 Nov 2023 22:13:25 GMT, 9")], 9.0, id="date-and-seconds"),
        pytest.param([("Retry-After", "Tue Nov 14 22:13:25 2023, 9")], 9.0, id="asctime-and-seconds"),
        pytest.param(
            [("Retry-After", "Tue Nov 14 22:13:35 2023"), ("Retry-After", "Tue Nov 14 22:13:30 2023")],
            15.0,
            id="asctime-twice",
        ),
        pytest.param([("Retry-After-Ms", "100"), ("Retry-After-Ms", "300")], 0.3, id="millis-twice"),
        pytest.param([("X-Rate-Limit-Reset", "4"), ("X-Rate-Limit-Reset", "6")], 6.0, id="reset-twice"),
        pytest.param([("Retry-After", "1, " + "9" * 300)], None, id="junk-too-long"),
        pytest.param([("Retry-After", "9" * 300)], 1e9, id="long-digits-are-huge"),
    ],
)
def test_a_header_sent_twice_is_read(headers: list[tuple[str, str]], expected: float | None) -> None:
    found = rc.parse_retry_after(httpx.Headers(headers), NOW, "x-rate-limit-reset")
    assert found == (None if expected is None else pytest.approx(expected))
    # A plain mapping (no get_list) with the values joined reads the same.
    joined: dict[str, str] = {}
    for name, value in headers:
        joined[name.lower()] = f"{joined[name.lower()]}, {value}" if name.lower() in joined else value
    assert rc.parse_retry_after(joined, NOW, "x-rate-limit-reset") == found


@pytest.mark.parametrize("value", ["0", "-1", "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_a_server_repeating_no_wait_gets_the_jittered_backoff_not_a_hammering(value: str) -> None:
    retry_after = rc.parse_retry_after(httpx.Headers({"Retry-After": value}), NOW, None)
    assert retry_after is None
    waits = [decide("rate_limited", attempt=n, retry_after=retry_after).wait for n in (1, 2, 3)]
    assert waits == [0.25, 0.5, 1.0]  # 0.5 * 2 ** (n - 1), drawn at 0.5


def test_non_ascii_digits_are_no_number() -> None:
    assert rc.parse_retry_after({"retry-after": "\u0661\u0660"}, NOW, None) is None


def test_a_huge_server_wait_still_raises_at_once() -> None:
    for value in ("9" * 5000, "1e999", "Fri, 01 Jan 9999 00:00:00 GMT"):
        retry_after = rc.parse_retry_after(httpx.Headers({"Retry-After": value}), NOW, None)
        assert retry_after == 1e9
        assert decide("rate_limited", retry_after=retry_after).action == "raise"


# --- retry.max_wait caps every backoff wait, a code's own ones included ---


@settings(max_examples=500, deadline=None)
@given(
    max_wait=st.floats(0, 20),
    code_initial=st.one_of(st.none(), st.floats(0, 100)),
    code_max=st.one_of(st.none(), st.floats(0, 100)),
    attempt=st.integers(1, 99),
    draw=st.floats(0, 1),
)
def test_no_backoff_wait_passes_retry_max_wait(
    max_wait: float, code_initial: float | None, code_max: float | None, attempt: int, draw: float
) -> None:
    policy = rc.RetryPolicy(
        retry=rc.RetrySettings(max_wait=max_wait, max_attempts=100),
        codes={"10": rc.CodeRule(initial_wait=code_initial, max_wait=code_max)},
    )
    for code in (10, 11):
        wait = backoff(policy, attempt, code, lambda: draw)
        assert 0.0 <= wait <= max_wait
        if code == 10 and code_max is not None:
            assert wait <= code_max


@pytest.mark.parametrize(
    ("headers", "reset_header", "expected"),
    [
        pytest.param({"x-rate-limit-reset": "7"}, "X-Rate-Limit-Reset", 7.0, id="reset-named-in-mixed-case"),
        pytest.param({"X-RATE-LIMIT-RESET": "7"}, "x-rate-limit-reset", 7.0, id="reset-sent-in-upper-case"),
        pytest.param({"RETRY-AFTER": "3"}, None, 3.0, id="retry-after-in-upper-case"),
        pytest.param({"content-type": "application/json"}, "X-Rate-Limit-Reset", None, id="none-of-them"),
        pytest.param({"x-rate-limit-reset": "7"}, None, None, id="reset-not-read-without-its-name"),
    ],
)
def test_the_wait_headers_are_found_whatever_their_case(
    headers: dict[str, str], reset_header: str | None, expected: float | None
) -> None:
    assert rc.parse_retry_after(httpx.Headers(headers), NOW, reset_header) == expected


@pytest.mark.parametrize(
    ("headers", "reset_header", "expected"),
    [
        pytest.param([("Content-Type", "text/html"), ("Retry-After", "4")], None, 4.0, id="after-another"),
        pytest.param([("retry-after-MS", "1500")], None, 1.5, id="millis-in-odd-case"),
        pytest.param([("Retry-After", "2"), ("retry-after", "5")], None, 5.0, id="sent-twice-two-cases"),
        pytest.param([(b"X-Reset", b"6")], "x-reset", 6.0, id="bytes-names"),
        pytest.param([("Date", "Tue, 14 Nov 2023 22:13:20 GMT")], "x-reset", None, id="no-wait-header"),
        pytest.param([("Retry-After-Seconds", "4")], None, None, id="a-longer-name-is-another-header"),
        pytest.param([("X-Résumé".encode(), b"9")], "X-Résumé", 9.0, id="non-ascii-reset-name"),
    ],
)
def test_the_wait_headers_are_found_whatever_their_case_order_or_type(
    headers: list[tuple[Any, Any]], reset_header: str | None, expected: float | None
) -> None:
    found = rc.parse_retry_after(httpx.Headers(headers), NOW, reset_header)
    assert found == (None if expected is None else pytest.approx(expected))
