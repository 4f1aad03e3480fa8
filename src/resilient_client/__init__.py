"""resilient-client: one way to handle the errors of four vendor APIs.

Every response is checked against the vendor's error catalog (HTTP 200 bodies that carry a fault
included), a fault becomes a typed exception from ``resilient_client.errors``, and transient faults
are retried with backoff under a policy kept in a TOML file.
"""

from resilient_client import errors
from resilient_client._catalog import (
    VENDORS,
    Catalog,
    CatalogEntry,
    EnvelopeSpec,
    catalog,
    load_catalog,
)
from resilient_client._classify import Outcome, classify
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
from resilient_client._decision import Decision, decide, parse_retry_after
from resilient_client._envelopes import Envelope, read_envelope
from resilient_client._pipeline import AttemptEvent, BreakerEvent, Hook, RejectionEvent
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
from resilient_client._transport import (
    ATTEMPTS_EXTENSION,
    CALLER_TIMEOUT_EXTENSION,
    OPERATION_EXTENSION,
    POLICY_EXTENSION,
    ResilientTransport,
    RetryEvent,
    is_testing,
    set_testing,
)
from resilient_client.errors import (
    ApiError,
    ConcurrencyLimitError,
    Fault,
    PolicyError,
    RejectedError,
    ResilientClientError,
)
from resilient_client.stores import MemoryState, StateStore
from resilient_client.stores.redis import RedisState  # imports redis only when one is built

__version__ = "0.2.0"

__all__ = [
    "ATTEMPTS_EXTENSION",
    "ApiError",
    "AsyncHyperClient",
    "AsyncMedableClient",
    "AsyncUpdoxClient",
    "AsyncUstaClient",
    "AttemptEvent",
    "BodySettings",
    "BreakerEvent",
    "BreakerSettings",
    "BudgetSettings",
    "CALLER_TIMEOUT_EXTENSION",
    "Catalog",
    "CatalogEntry",
    "Clock",
    "CodeRule",
    "ConcurrencyLimitError",
    "ConcurrencySettings",
    "Decision",
    "Envelope",
    "EnvelopeSpec",
    "Fault",
    "GuardSettings",
    "Hook",
    "HyperClient",
    "MedableClient",
    "MemoryState",
    "OPERATION_EXTENSION",
    "Outcome",
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
    "catalog",
    "classify",
    "decide",
    "errors",
    "is_testing",
    "load_catalog",
    "load_policy",
    "parse_retry_after",
    "read_envelope",
    "set_testing",
]
