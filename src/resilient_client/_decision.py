"""The retry decision: outcome + policy + method + time -> return, raise, or retry after a wait.

Pure functions, no I/O and no clock of their own: the sync and async transports feed them the
numbers. ``parse_retry_after`` reads the server's wait; ``decide`` applies SPEC section 4.
"""

from __future__ import annotations

import datetime
import email.utils
import fnmatch
import math
import re
import time
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
    """A finite number of seconds, or None; values past 1e18 (however many digits) read as 1e18.

    Negative values come back negative (the caller reads them as "no wait"); underscores and
    non-ASCII digits, which ``float()`` accepts, are no HTTP number.
    """
    text = text.strip()
    if not text.isascii() or "_" in text:
        return None
    if len(text) > 40:
        # Too long to be a number anyone meant, unless it is all digits: a huge wait, not none.
        return 1e18 if text.isdigit() else None
    try:
        value = float(text)
    except ValueError:
        return None
    if math.isnan(value):
        return None
    return max(min(value, 1e18), -1e18)


def _values(headers: Mapping[str, str], name: str) -> list[str]:
    """Each value of a header, a header sent twice included (httpx joins them as ``"5, 5"``)."""
    get_list = getattr(headers, "get_list", None)
    raw: list[str] = list(get_list(name)) if get_list is not None else []
    if not raw:
        value = headers.get(name)
        raw = [] if value is None else [value]
    return raw


def _retry_after_values(text: str, reference: float, now: float) -> list[float]:
    """Every wait one Retry-After value states, in seconds from ``reference``.

    A value is delta-seconds or an HTTP date; values joined by commas (a header sent twice) are
    split, keeping the comma inside an IMF-fixdate or RFC 850 date (``Sun, 06 Nov 1994 ...``).
    A long value is read whole, as a number only: all digits is a huge wait, anything else junk.
    """
    if len(text) > _MAX_HEADER_TEXT:
        value = _number(text)
        return [] if value is None else [value]
    parts = [p.strip() for p in text.split(",")]
    found: list[float] = []
    index = 0
    while index < len(parts):
        value = _number(parts[index])
        step = 1
        if value is None and parts[index].isalpha() and index + 1 < len(parts):
            # "Sun" or "Sunday", then the rest of an IMF-fixdate or RFC 850 date.
            value, step = _date_wait(f"{parts[index]}, {parts[index + 1]}", reference, now), 2
        if value is None:
            value, step = _date_wait(parts[index], reference, now), 1  # asctime has no comma
        if value is not None:
            found.append(value)
        index += step
    return found


def _date_wait(text: str, reference: float, now: float) -> float | None:
    when = _http_date(text, now)
    return None if when is None else when - reference


def parse_retry_after(headers: Mapping[str, str], now: float, reset_header: str | None) -> float | None:
    """Seconds the server asked to wait, or None when it asked no wait.

    Every header the server sent is read and the longest wait wins, so no reading of them retries
    early: ``Retry-After-Ms``, ``Retry-After`` (delta seconds or an HTTP date in any of RFC 9110's
    three forms, read against the response's own ``Date`` when it has one, else ``now``, a Unix
    time), and ``reset_header`` (a vendor's ``X-Rate-Limit-Reset``: seconds to wait when at most a
    day, else a Unix time in seconds or milliseconds). A header sent twice is read value by value.

    ``0``, a negative value and a date in the past are no wait (None, unless another header asks
    one): the caller's jittered backoff applies, as in urllib3, openai-python and azure-core, so a
    server repeating ``Retry-After: 0`` is not hammered. Malformed values are ignored; huge ones are
    capped at 1e9 s, a wait that no policy accepts.
    """
    asked: list[float] = []
    for millis in _values(headers, "retry-after-ms"):
        for part in millis.split(","):
            value = _number(part)
            if value is not None:
                asked.append(value / 1000.0)
    retry_after = _values(headers, "retry-after")
    if retry_after:
        dates = _values(headers, "date")
        reference = _http_date(dates[0], now) if dates else None
        for text in retry_after:
            asked.extend(_retry_after_values(text, now if reference is None else reference, now))
    if reset_header is not None:
        for reset in _values(headers, reset_header):
            for part in reset.split(","):
                value = _number(part)
                if value is not None:
                    # A value beyond a day cannot be a delay: it is a Unix time (seconds or millis).
                    if value > 86400:
                        epoch = value / 1000.0 if value > 10**11 else value
                        value = epoch - now
                    asked.append(value)
    longest = max(asked, default=0.0)
    return min(longest, _FOREVER) if longest > 0 else None


# Longer Retry-After values are junk, not waits: splitting them costs time for nothing.
_MAX_HEADER_TEXT = 256
# RFC 850's "Sunday, 06-Nov-94 08:49:37 GMT": the only form with a two-digit year.
_RFC850_YEAR = re.compile(r"^\s*[A-Za-z]+,\s*\d{1,2}-[A-Za-z]{3}-(\d{2})\s")


def _http_date(text: str, now: float) -> float | None:
    """The Unix time of an HTTP date (IMF-fixdate, RFC 850 or asctime), or None.

    A date without a zone (asctime has none) is UTC whatever the process's time zone. An RFC 850
    two-digit year more than 50 years ahead of ``now`` is the last such year in the past
    (RFC 9110, section 5.6.7).
    """
    if not text or len(text) > 64:
        return None
    try:
        parts = email.utils.parsedate_tz(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parts is None:
        return None
    year, month, day, hour, minute, second = parts[:6]
    short = _RFC850_YEAR.match(text)
    if short is not None:
        this_year = time.gmtime(now).tm_year
        year = this_year // 100 * 100 + int(short.group(1))
        if year > this_year + 50:
            year -= 100
    try:
        when = datetime.datetime(year, month, day, hour, minute, min(second, 59), tzinfo=datetime.UTC)
    except (ValueError, OverflowError):
        return None
    return when.timestamp() - (parts[9] or 0)


def backoff(policy: RetryPolicy, attempt: int, code: object, random: Callable[[], float]) -> float:
    """The wait after failed attempt ``attempt`` (1-based) without a server-asked wait.

    Exponential, capped by ``retry.max_wait`` (a code's own ``max_wait`` can only lower it); with
    ``jitter = "full"`` uniformly drawn from [0, cap].
    """
    cap = policy.backoff_ceiling(attempt, code)
    return cap * random() if policy.retry.jitter == "full" else cap


def is_idempotent(policy: RetryPolicy, method: str, operation: str | Callable[[], str]) -> bool:
    """True for a method the policy calls idempotent, or an operation it marks idempotent.

    ``operation`` may be a function that names it, called only when the method is not enough."""
    if method in policy.retry.idempotent_methods:
        return True
    if not isinstance(operation, str):
        operation = operation()
    return any(fnmatch.fnmatchcase(operation, pattern) for pattern in policy.retry.idempotent_operations)


def is_retryable(policy: RetryPolicy, outcome: Outcome) -> bool:
    """True when the policy retries this outcome for some method."""
    return policy.retries(outcome.category, outcome.code)


def decide(
    policy: RetryPolicy,
    *,
    outcome: Outcome | None,
    error: Exception | None = None,
    method: str,
    operation: str | Callable[[], str],
    attempt: int,
    time_left: float,
    retry_after: float | None,
    replayable: bool,
    budget_left: bool = True,
    random: Callable[[], float],
) -> Decision:
    """What to do after attempt number ``attempt`` ended with ``outcome`` (or transport ``error``).

    ``operation`` (what ``idempotent_operations`` match) may be a function that names it: it is
    called only when the method alone does not make the request idempotent."""
    settings = policy.retry
    code: object = None
    if outcome is not None:
        if outcome.ok:
            return RETURN
        code = outcome.code
        if outcome.category in SOFT_CATEGORIES and policy.returns(outcome.category, code):
            return Decision("return", reason=f"the policy returns {outcome.category}")
        rule = policy.rule(code) if code is not None else None
        if not policy.retries(outcome.category, code):  # ``is_retryable``
            if rule is not None and rule.retry is False:  # the code's own rule, not its category's
                why = f"not retried: the policy's [codes.{code}] sets retry = false"
                return Decision("raise", reason=why)
            return Decision("raise", reason=f"not retried: the policy does not retry {outcome.category}")
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

    # The method alone answers for most requests (a GET): ``is_idempotent`` is asked only if not.
    if (
        not any_method
        and method not in settings.idempotent_methods
        and not is_idempotent(policy, method, operation)
    ):
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
