"""One frozen attrs class per policy table of the resilience strategies (SPEC sections 8 and 9).

Keys and defaults are the contract's, one for one. Validators use ``_structure.check``, so a bad value
read from a file is a PolicyError naming the file and key path (``breaker.failure_ratio: must be
> 0 and <= 1``), and the same value given in code raises at once.
"""

from __future__ import annotations

from typing import Literal

import attrs

from resilient_client._structure import check

__all__ = [
    "BreakerOverride",
    "BreakerSettings",
    "BudgetSettings",
    "GuardSettings",
    "RateLimitSettings",
    "StateSettings",
]

#: ``[codes.<code>] breaker = ...``: a code the circuit breaker ignores, or counts as a failure.
BreakerOverride = Literal["ignore", "failure"]

# A duration beyond this overflows timers and is never meant (the same bound as the retry table's).
_MAX_SECONDS = 10.0**7
_FINITE = check(lambda v: v <= _MAX_SECONDS, f"must be <= {_MAX_SECONDS:.0f} seconds")
_POSITIVE_SECONDS = [check(lambda v: v > 0, "must be > 0"), _FINITE]
_NON_NEGATIVE_SECONDS = [check(lambda v: v >= 0, "must be >= 0"), _FINITE]
_AT_LEAST_ONE = check(lambda v: 1 <= v <= 10**9, "must be between 1 and 1000000000")


@attrs.frozen
class BudgetSettings:
    """The ``[budget]`` table: each request adds ``ratio`` tokens (up to ``burst``), each retry takes one."""

    ratio: float = attrs.field(default=0.2, validator=check(lambda v: 0 <= v <= 100, "must be 0..100"))
    burst: float = attrs.field(
        default=10.0,
        validator=[check(lambda v: v >= 1, "must be >= 1"), check(lambda v: v <= 10**9, "must be <= 1e9")],
    )


def _not_shorter_than_break(
    instance: BreakerSettings, attribute: attrs.Attribute[float], value: float
) -> None:
    check(lambda v: v >= instance.break_duration, "must be >= break_duration")(instance, attribute, value)


@attrs.frozen
class BreakerSettings:
    """The ``[breaker]`` table: when a vendor's host is cut off, for how long, and how it is probed."""

    enabled: bool = True
    failure_ratio: float = attrs.field(
        default=0.5, validator=check(lambda v: 0 < v <= 1, "must be > 0 and <= 1")
    )
    minimum_throughput: int = attrs.field(default=10, validator=_AT_LEAST_ONE)
    sampling_duration: float = attrs.field(default=30.0, validator=_POSITIVE_SECONDS)
    break_duration: float = attrs.field(default=15.0, validator=_POSITIVE_SECONDS)
    #: Each failed probe doubles the break, up to this.
    max_break_duration: float = attrs.field(
        default=120.0, validator=[*_POSITIVE_SECONDS, _not_shorter_than_break]
    )
    half_open_probes: int = attrs.field(default=1, validator=_AT_LEAST_ONE)


@attrs.frozen
class RateLimitSettings:
    """The ``[rate_limit]`` table: a fixed pace (``requests`` per ``period``), a learned one, or both."""

    enabled: bool = False
    #: 0 means no fixed rate (the adaptive one, if on, still applies).
    requests: int = attrs.field(
        default=0, validator=check(lambda v: 0 <= v <= 10**9, "must be 0..1000000000")
    )
    period: float = attrs.field(default=1.0, validator=_POSITIVE_SECONDS)
    burst: int = attrs.field(default=1, validator=_AT_LEAST_ONE)
    adaptive: bool = True
    pause_on_retry_after: bool = True

    @property
    def rate(self) -> float:
        """The fixed rate in requests per second (0 for none)."""
        return self.requests / self.period


def _globs(value: tuple[str, ...]) -> bool:
    return bool(value) and all(value)


def _field_names(value: tuple[str, ...]) -> bool:
    return all(value) and len(set(value)) == len(value)


@attrs.frozen
class GuardSettings:
    """One ``[guards.<name>]`` table: at most ``limit`` attempts in flight per key of its operations."""

    #: Globs (``fnmatch``, case-sensitive) over the operation name, e.g. ``["*Journal*"]``.
    operations: tuple[str, ...] = attrs.field(
        validator=check(_globs, "must list at least one operation glob, none empty")
    )
    #: JSON body fields whose values name the key (e.g. an account); all present ones are taken.
    key_fields: tuple[str, ...] = attrs.field(
        default=(), validator=check(_field_names, "must be distinct, non-empty field names")
    )
    limit: int = attrs.field(default=1, validator=_AT_LEAST_ONE)
    max_wait: float = attrs.field(default=30.0, validator=_NON_NEGATIVE_SECONDS)


@attrs.frozen
class StateSettings:
    """The ``[state]`` table: how long a shared store may take, and what to do when it does not answer."""

    timeout: float = attrs.field(default=0.05, validator=_POSITIVE_SECONDS)
    #: ``"local"``: fall back to in-process state (one warning); ``"raise"``: refuse the call.
    on_unavailable: Literal["local", "raise"] = "local"
