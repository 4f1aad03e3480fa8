"""One frozen attrs class per policy table of the resilience strategies (SPEC sections 8 and 9).

Keys and defaults are the contract's, one for one. They are checked the way the retry tables are
(``_policy.py``): a bad value read from a file is a PolicyError naming the file and key path
(``breaker.failure_ratio: must be > 0 and <= 1``), and the same value given in code raises a
PolicyError shown as ``<code>`` when the object is built.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import attrs

from resilient_client._structure import (
    check,
    each,
    raise_problems,
    refuse_unknown_keywords,
    rules,
    validate_instance,
)
from resilient_client.errors import PolicyProblem

__all__ = [
    "IN_CODE",
    "BreakerOverride",
    "BreakerSettings",
    "BudgetSettings",
    "ConcurrencySettings",
    "GuardSettings",
    "RateLimitSettings",
    "StateSettings",
]

#: How a policy built in code is named in messages, where a file would be.
IN_CODE = "<code>"

#: ``[codes.<code>] breaker = ...``: a code the circuit breaker ignores, or counts as a failure.
BreakerOverride = Literal["ignore", "failure"]

# A duration beyond this overflows timers and is never meant (the same bound as the retry table's).
_MAX_SECONDS = 10.0**7
_FINITE = check(lambda v: v <= _MAX_SECONDS, f"must be <= {_MAX_SECONDS:.0f} seconds")
_POSITIVE_SECONDS = (check(lambda v: v > 0, "must be > 0"), _FINITE)
_NON_NEGATIVE_SECONDS = (check(lambda v: v >= 0, "must be >= 0"), _FINITE)
_AT_LEAST_ONE = check(lambda v: 1 <= v <= 10**9, "must be between 1 and 1000000000")


@refuse_unknown_keywords("budget")
@attrs.frozen
class BudgetSettings:
    """The ``[budget]`` table: each request adds ``ratio`` tokens (up to ``burst``), each retry takes
    one, and a retry that succeeds puts ``refund`` back: retries go on while they succeed, and stop
    when the vendor is plainly down (SPEC section 10)."""

    _table: ClassVar[str] = "budget"

    enabled: bool = True
    #: Retries allowed per request on average when no retry succeeds (an outage); 0 turns the
    #: budget off.
    ratio: float = attrs.field(default=0.05, metadata=rules(check(lambda v: 0 <= v <= 100, "must be 0..100")))
    #: Tokens the budget starts with and can hold.
    burst: float = attrs.field(
        default=20.0,
        metadata=rules(
            check(lambda v: v >= 1, "must be >= 1"), check(lambda v: v <= 10**9, "must be <= 1e9")
        ),
    )
    #: Tokens a retry that succeeds puts back (its own one, and ``refund - 1`` more): retries pay for
    #: themselves while at least ``1 / refund`` of them succeed. 0: a retry's token is spent for good.
    refund: float = attrs.field(default=2.5, metadata=rules(check(lambda v: 0 <= v <= 100, "must be 0..100")))

    def __attrs_post_init__(self) -> None:
        validate_instance(self, IN_CODE, self._table)


@refuse_unknown_keywords("breaker")
@attrs.frozen
class BreakerSettings:
    """The ``[breaker]`` table: when a vendor's host is cut off, for how long, and how it is probed."""

    _table: ClassVar[str] = "breaker"

    enabled: bool = True
    #: An outage, not a partial failure: random faults at 50 % (or a vendor at its capacity) never
    #: reach it, a vendor that fails everything does.
    failure_ratio: float = attrs.field(
        default=0.9, metadata=rules(check(lambda v: 0 < v <= 1, "must be > 0 and <= 1"))
    )
    #: Enough attempts that bad luck at 50 % is no outage (9 of 10 failing: 1 %; 18 of 20: 0.02 %).
    minimum_throughput: int = attrs.field(default=20, metadata=rules(_AT_LEAST_ONE))
    sampling_duration: float = attrs.field(default=30.0, metadata=rules(*_POSITIVE_SECONDS))
    break_duration: float = attrs.field(default=15.0, metadata=rules(*_POSITIVE_SECONDS))
    #: Each failed probe doubles the break, up to this (below ``break_duration``: no doubling).
    max_break_duration: float = attrs.field(default=120.0, metadata=rules(*_POSITIVE_SECONDS))
    half_open_probes: int = attrs.field(default=1, metadata=rules(_AT_LEAST_ONE))
    #: Failures in a row (seen by one process) that open the circuit whatever the window holds: a
    #: vendor that goes down after a healthy spell is cut off at once, not when its successes have
    #: left the window. 0 turns it off. 30 in a row at 50 % random faults: once in 10**9 attempts.
    consecutive_failures: int = attrs.field(
        default=30, metadata=rules(check(lambda v: 0 <= v <= 10**9, "must be 0..1000000000"))
    )

    def __attrs_post_init__(self) -> None:
        validate_instance(self, IN_CODE, self._table)


@refuse_unknown_keywords("rate_limit")
@attrs.frozen
class RateLimitSettings:
    """The ``[rate_limit]`` table: a fixed pace (``requests`` per ``period``), a learned one, or both."""

    _table: ClassVar[str] = "rate_limit"

    enabled: bool = False
    #: 0 means no fixed rate (the adaptive one, if on, still applies).
    requests: int = attrs.field(
        default=0, metadata=rules(check(lambda v: 0 <= v <= 10**9, "must be 0..1000000000"))
    )
    period: float = attrs.field(default=1.0, metadata=rules(*_POSITIVE_SECONDS))
    burst: int = attrs.field(default=1, metadata=rules(_AT_LEAST_ONE))
    adaptive: bool = True
    pause_on_retry_after: bool = True

    def __attrs_post_init__(self) -> None:
        validate_instance(self, IN_CODE, self._table)

    @property
    def rate(self) -> float:
        """The fixed rate in requests per second (0 for none)."""
        return self.requests / self.period


@refuse_unknown_keywords("concurrency")
@attrs.frozen
class ConcurrencySettings:
    """The ``[concurrency]`` table: an adaptive limit on the attempts in flight per vendor endpoint
    (vendor, host and port), learned from overload answers and latency (SPEC section 10)."""

    _table: ClassVar[str] = "concurrency"

    enabled: bool = True
    #: The limit a new endpoint starts at; it then climbs by a slot per success until the first
    #: overload (slow start).
    initial: int = attrs.field(default=8, metadata=rules(_AT_LEAST_ONE))
    #: The limit never goes below this.
    min: int = attrs.field(default=1, metadata=rules(_AT_LEAST_ONE))
    #: The limit never goes above this.
    max: int = attrs.field(default=100, metadata=rules(_AT_LEAST_ONE))
    #: Successes at the settled limit before it tries one slot more; the climb then speeds up
    #: (cubic: 8 slots more after twice as many).
    probe_after: int = attrs.field(default=30, metadata=rules(_AT_LEAST_ONE))
    #: The share of the limit kept after an overload signal that says nothing of the capacity
    #: (a 429, a timeout, a slow answer); a 503 or kTooBusy lowers it to the in-flight count it met.
    backoff_ratio: float = attrs.field(
        default=0.9, metadata=rules(check(lambda v: 0 < v < 1, "must be > 0 and < 1"))
    )
    #: A success slower than this many times the endpoint's usual latency counts as overload
    #: (``inf``: latency is not a signal).
    latency_tolerance: float = attrs.field(
        default=3.0, metadata=rules(check(lambda v: v > 1, "must be > 1 (inf: off)"))
    )

    def __attrs_post_init__(self) -> None:
        validate_instance(self, IN_CODE, self._table)
        if self.min > self.max:
            raise_problems([PolicyProblem(IN_CODE, "concurrency.min", f"must be <= max ({self.max})")])


@refuse_unknown_keywords("guards.*")
@attrs.frozen
class GuardSettings:
    """One ``[guards.<name>]`` table: at most ``limit`` attempts in flight per key of its operations."""

    _table: ClassVar[str] = "guards.*"

    #: Globs (``fnmatch``, case-sensitive) over the operation name, e.g. ``["*Journal*"]``.
    operations: tuple[str, ...] = attrs.field(
        metadata=rules(
            check(bool, "must list at least one operation glob"),
            each(bool, "must not be empty"),
        ),
    )
    #: JSON body fields whose values name the key (e.g. an account); all present ones are taken.
    key_fields: tuple[str, ...] = attrs.field(
        default=(),
        metadata=rules(
            each(bool, "must not be empty"),
            check(lambda v: len(set(v)) == len(v), "must not repeat a field"),
        ),
    )
    limit: int = attrs.field(default=1, metadata=rules(_AT_LEAST_ONE))
    max_wait: float = attrs.field(default=30.0, metadata=rules(*_NON_NEGATIVE_SECONDS))

    def __attrs_post_init__(self) -> None:
        validate_instance(self, IN_CODE, self._table)


@refuse_unknown_keywords("state")
@attrs.frozen
class StateSettings:
    """The ``[state]`` table: how long a shared store may take, and what to do when it does not answer."""

    _table: ClassVar[str] = "state"

    timeout: float = attrs.field(default=0.05, metadata=rules(*_POSITIVE_SECONDS))
    #: ``"local"``: fall back to in-process state (one warning); ``"raise"``: refuse the call.
    on_unavailable: Literal["local", "raise"] = "local"

    def __attrs_post_init__(self) -> None:
        validate_instance(self, IN_CODE, self._table)
