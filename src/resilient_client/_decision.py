"""The retry decision: outcome + policy + method + time -> return, raise, or retry after a wait.

Pure functions, no I/O and no clock of their own: the sync and async transports feed them the
numbers. ``parse_retry_after`` reads the server's wait; ``decide`` applies SPEC section 4.
"""

from __future__ import annotations

import email.utils
import fnmatch
import math
from collections.abc import Callable, Mapping
from typing import Literal

import attrs
import httpx

from resilient_client._catalog import SOFT_CATEGORIES
from resilient_client._classify import Outcome
from resilient_client._policy import RetryPolicy

#: Transport errors raised before any byte of the request left: safe to retry for any method.
NOT_SENT_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)

#: Transport errors after which the server may have processed the request.
MAYBE_SENT_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)

# Waits longer than this are not waits; they also keep float arithmetic far from overflow.
_FOREVER = 10.0**9


@attrs.frozen
class Decision:
    """What to do after an attempt, and why (the reason is logged and shown by the command)."""

    action: Literal["return", "raise", "retry"]
    wait: float = 0.0
    reason: str = ""


RETURN = Decision("return", reason="success")


def _number(text: str) -> float | None:
    """A non-negative finite number, or None; values past 1e18 (however many digits) read as 1e18."""
    text = text.strip()
    if len(text) > 40:
        # Too long to be a number anyone meant, unless it is all digits: a huge wait, not none.
        return 1e18 if text.isascii() and text.isdigit() else None
    try:
        value = float(text)
    except ValueError:
        return None
    if math.isnan(value) or value < 0:
        return None
    return min(value, 1e18)


def parse_retry_after(headers: Mapping[str, str], now: float, reset_header: str | None) -> float | None:
    """Seconds the server asked to wait, or None when it asked nothing readable.

    Every header the server sent is read and the longest wait wins, so no reading of them retries
    early: ``Retry-After-Ms``, ``Retry-After`` (delta seconds or an HTTP date, read against the
    response's own ``Date`` when it has one, else ``now``, a Unix time), and ``reset_header`` (a
    vendor's ``X-Rate-Limit-Reset``: seconds to wait when at most a day, else a Unix time in seconds
    or milliseconds). Negative, non-numeric or malformed values are ignored; huge ones are capped at
    1e9 s.
    """
    asked: list[float] = []
    millis = headers.get("retry-after-ms")
    if millis is not None:
        value = _number(millis)
        if value is not None:
            asked.append(value / 1000.0)
    text = headers.get("retry-after")
    if text is not None:
        value = _number(text)
        if value is None:
            when = _http_date(text)
            if when is not None:
                reference = _http_date(headers.get("date", "")) or now
                value = max(0.0, when - reference)
        if value is not None:
            asked.append(value)
    reset = headers.get(reset_header) if reset_header is not None else None
    if reset is not None:
        value = _number(reset)
        if value is not None:
            # A value beyond a day cannot be a delay: it is a Unix time (seconds or millis).
            if value > 86400:
                epoch = value / 1000.0 if value > 10**11 else value
                value = max(0.0, epoch - now)
            asked.append(value)
    return min(max(asked), _FOREVER) if asked else None


def _http_date(text: str) -> float | None:
    if not text or len(text) > 64:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        return None
    try:
        return parsed.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


def backoff(policy: RetryPolicy, attempt: int, code: object, random: Callable[[], float]) -> float:
    """The wait after failed attempt ``attempt`` (1-based) without a server-asked wait.

    Exponential, capped at ``max_wait``; with ``jitter = "full"`` uniformly drawn from [0, cap].
    """
    settings = policy.retry
    rule = policy.rule(code)
    initial = rule.initial_wait if rule and rule.initial_wait is not None else settings.initial_wait
    ceiling = rule.max_wait if rule and rule.max_wait is not None else settings.max_wait
    exponent = min(attempt - 1, 1000)
    try:
        grown = initial * settings.multiplier**exponent
    except OverflowError:
        grown = _FOREVER
    cap = min(ceiling, grown)
    return cap * random() if settings.jitter == "full" else cap


def is_idempotent(policy: RetryPolicy, method: str, operation: str) -> bool:
    """True for a method the policy calls idempotent, or an operation it marks idempotent."""
    if method in policy.retry.idempotent_methods:
        return True
    return any(fnmatch.fnmatchcase(operation, pattern) for pattern in policy.retry.idempotent_operations)


def is_retryable(policy: RetryPolicy, outcome: Outcome) -> bool:
    """True when the policy retries this outcome for some method."""
    rule = policy.rule(outcome.code) if outcome.code is not None else None
    if rule is not None and rule.retry is not None:
        return rule.retry
    return outcome.category in policy.retry.categories


def decide(
    policy: RetryPolicy,
    *,
    outcome: Outcome | None,
    error: Exception | None = None,
    method: str,
    operation: str,
    attempt: int,
    time_left: float,
    retry_after: float | None,
    replayable: bool,
    budget_left: bool = True,
    random: Callable[[], float],
) -> Decision:
    """What to do after attempt number ``attempt`` ended with ``outcome`` (or transport ``error``)."""
    settings = policy.retry
    code: object = None
    if outcome is not None:
        if outcome.ok:
            return RETURN
        code = outcome.code
        if outcome.category in SOFT_CATEGORIES and policy.returns(outcome.category, code):
            return Decision("return", reason=f"the policy returns {outcome.category}")
        if not is_retryable(policy, outcome):
            return Decision("raise", reason=f"not retried: the policy does not retry {outcome.category}")
        rule = policy.rule(code) if code is not None else None
        any_method = (
            rule.any_method
            if rule is not None and rule.any_method is not None
            else outcome.category in settings.any_method_categories
        )
        what = outcome.category
    elif error is not None:
        if not settings.transport_errors or not isinstance(error, NOT_SENT_ERRORS + MAYBE_SENT_ERRORS):
            return Decision(
                "raise",
                reason=f"not retried: {type(error).__name__} is not a transient transport error"
                if settings.transport_errors
                else "not retried: retry.transport_errors is off",
            )
        any_method = isinstance(error, NOT_SENT_ERRORS)
        what = type(error).__name__
    else:
        raise ValueError("decide() needs an outcome or an error")

    if not any_method and not is_idempotent(policy, method, operation):
        return Decision("raise", reason=f"not retried: {method} may have been processed")
    if not replayable:
        return Decision("raise", reason="not retried: the request body is a one-shot stream")
    if attempt >= settings.max_attempts:
        return Decision("raise", reason=f"{attempt} of {settings.max_attempts} attempts made")
    if not budget_left:
        return Decision("raise", reason="the retry budget is spent")
    if retry_after is not None:
        if retry_after > settings.max_retry_after:
            return Decision(
                "raise",
                reason=f"Retry-After {retry_after:g} s exceeds "
                f"retry.max_retry_after {settings.max_retry_after:g} s",
            )
        wait = retry_after
    else:
        wait = backoff(policy, attempt, code, random)
    if wait >= time_left:
        return Decision(
            "raise",
            reason=f"a {wait:.3g} s wait would pass the deadline: {max(time_left, 0.0):.3g} s left "
            f"of retry.total_timeout {settings.total_timeout:g} s",
        )
    return Decision("retry", wait=wait, reason=f"{what}: retrying in {wait:.3g} s")
