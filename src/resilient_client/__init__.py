"""resilient-client: one way to handle the errors of four vendor APIs.

Every response is checked against the vendor's error catalog (HTTP 200 bodies that carry a fault
included), a fault becomes a typed exception from ``resilient_client.errors``, and transient faults
are retried with backoff under a policy kept in a TOML file.

Importing the package costs little more than importing httpx: the exception tree is loaded at once
(``except rc.errors.ApiError`` needs nothing else), every other name the first time it is used
(PEP 562), so httpcore, the per-vendor exception classes and the policy machinery wait for the
first client, transport or policy. Type checkers see every name as if imported here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from resilient_client import errors
from resilient_client.errors import (
    ApiError,
    ConcurrencyLimitError,
    Fault,
    PolicyError,
    RejectedError,
    ResilientClientError,
)

__version__ = "0.3.0"

if TYPE_CHECKING:
    from resilient_client._catalog import VENDORS, Catalog, CatalogEntry, catalog, load_catalog
    from resilient_client._clients import (
        AsyncHyperClient,
        AsyncMedableClient,
        AsyncUpdoxClient,
        AsyncUstaClient,
        HyperClient,
        MedableClient,
        UpdoxClient,
        UstaClient,
    )
    from resilient_client._clock import Clock
    from resilient_client._pipeline import (
        ATTEMPTS_EXTENSION,
        OPERATION_EXTENSION,
        POLICY_EXTENSION,
        Attempt,
        AttemptEvent,
        BreakerEvent,
        Call,
        Hook,
        RejectionEvent,
        RetryEvent,
        WaitEvent,
        is_testing,
        set_testing,
    )
    from resilient_client._policy import (
        POLICY_ENV,
        BodySettings,
        CodeRule,
        RetryPolicy,
        RetrySettings,
        load_policy,
    )
    from resilient_client._settings import (
        BreakerSettings,
        BudgetSettings,
        ConcurrencySettings,
        GuardSettings,
        RateLimitSettings,
        StateSettings,
    )
    from resilient_client._transport import ResilientTransport
    from resilient_client.stores import MemoryState, StateStore
    from resilient_client.stores.redis import RedisState

# Importable for code written against 0.2, but no part of the public surface (not in __all__).
if TYPE_CHECKING:
    from resilient_client._catalog import EnvelopeSpec as EnvelopeSpec
    from resilient_client._classify import Outcome as Outcome
    from resilient_client._classify import classify as classify
    from resilient_client._decision import Decision as Decision
    from resilient_client._decision import decide as decide
    from resilient_client._decision import parse_retry_after as parse_retry_after
    from resilient_client._envelopes import Envelope as Envelope
    from resilient_client._envelopes import read_envelope as read_envelope
    from resilient_client._pipeline import CALLER_TIMEOUT_EXTENSION as CALLER_TIMEOUT_EXTENSION

#: Where each name that is loaded on first use lives.
_LAZY: dict[str, str] = {
    **dict.fromkeys(
        ["VENDORS", "Catalog", "CatalogEntry", "EnvelopeSpec", "catalog", "load_catalog"], "_catalog"
    ),
    **dict.fromkeys(
        [
            "AsyncHyperClient",
            "AsyncMedableClient",
            "AsyncUpdoxClient",
            "AsyncUstaClient",
            "HyperClient",
            "MedableClient",
            "UpdoxClient",
            "UstaClient",
        ],
        "_clients",
    ),
    "Clock": "_clock",
    **dict.fromkeys(
        [
            "ATTEMPTS_EXTENSION",
            "CALLER_TIMEOUT_EXTENSION",
            "OPERATION_EXTENSION",
            "POLICY_EXTENSION",
            "Attempt",
            "AttemptEvent",
            "BreakerEvent",
            "Call",
            "Hook",
            "RejectionEvent",
            "RetryEvent",
            "WaitEvent",
            "is_testing",
            "set_testing",
        ],
        "_pipeline",
    ),
    **dict.fromkeys(
        ["POLICY_ENV", "BodySettings", "CodeRule", "RetryPolicy", "RetrySettings", "load_policy"], "_policy"
    ),
    **dict.fromkeys(
        [
            "BreakerSettings",
            "BudgetSettings",
            "ConcurrencySettings",
            "GuardSettings",
            "RateLimitSettings",
            "StateSettings",
        ],
        "_settings",
    ),
    "ResilientTransport": "_transport",
    "MemoryState": "stores",
    "StateStore": "stores",
    "RedisState": "stores.redis",
    "Outcome": "_classify",
    "classify": "_classify",
    "Decision": "_decision",
    "decide": "_decision",
    "parse_retry_after": "_decision",
    "Envelope": "_envelopes",
    "read_envelope": "_envelopes",
}

#: Loaded on first use like the rest, but kept out of ``__all__``: internals that code written
#: against 0.2 may still import.
_UNLISTED = frozenset(
    {
        "CALLER_TIMEOUT_EXTENSION",
        "Decision",
        "Envelope",
        "EnvelopeSpec",
        "Outcome",
        "classify",
        "decide",
        "parse_retry_after",
        "read_envelope",
    }
)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # found without this function from now on
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "ATTEMPTS_EXTENSION",
    "ApiError",
    "AsyncHyperClient",
    "AsyncMedableClient",
    "AsyncUpdoxClient",
    "AsyncUstaClient",
    "Attempt",
    "AttemptEvent",
    "BodySettings",
    "BreakerEvent",
    "BreakerSettings",
    "BudgetSettings",
    "Call",
    "Catalog",
    "CatalogEntry",
    "Clock",
    "CodeRule",
    "ConcurrencyLimitError",
    "ConcurrencySettings",
    "Fault",
    "GuardSettings",
    "Hook",
    "HyperClient",
    "MedableClient",
    "MemoryState",
    "OPERATION_EXTENSION",
    "POLICY_ENV",
    "POLICY_EXTENSION",
    "PolicyError",
    "RateLimitSettings",
    "RedisState",
    "RejectedError",
    "RejectionEvent",
    "ResilientClientError",
    "ResilientTransport",
    "RetryEvent",
    "RetryPolicy",
    "RetrySettings",
    "StateSettings",
    "StateStore",
    "UpdoxClient",
    "UstaClient",
    "VENDORS",
    "WaitEvent",
    "catalog",
    "errors",
    "is_testing",
    "load_catalog",
    "load_policy",
    "set_testing",
]
