"""Everything resilient-client raises itself.

The tree::

    ResilientClientError                 root of everything the SDK raises itself
     ├─ PolicyError                      a policy or catalog file is invalid: file, key path, problem
     ├─ ApiError                         the vendor answered with a fault      (also an httpx.HTTPError)
     │   ├─ BadRequestError              bad_request (400)
     │   │   └─ ValidationError          validation (400)
     │   ├─ AuthenticationError          authentication (401)
     │   ├─ PermissionDeniedError        permission_denied (403)
     │   ├─ NotFoundError                not_found (404)
     │   ├─ ConflictError                conflict (409)
     │   ├─ GoneError                    gone (410)
     │   ├─ PayloadTooLargeError         payload_too_large (413)
     │   ├─ UnsupportedMediaTypeError    unsupported_media_type (415)
     │   ├─ UnprocessableError           unprocessable (422)
     │   ├─ ResourceLockedError          locked (423)
     │   ├─ RateLimitedError             rate_limited (429)
     │   ├─ RequestTimeoutError          request_timeout (408)
     │   ├─ ServerError                  server_error (500)
     │   ├─ NotImplementedApiError       not_implemented (501)
     │   ├─ ServiceUnavailableError      service_unavailable (503)
     │   ├─ UnknownFaultError            unknown: a failure the catalog cannot name
     │   ├─ SoftFault                    a fault carried by a 2xx response
     │   │   ├─ IncompleteSuccess        incomplete_success
     │   │   ├─ NoResults                no_results
     │   │   ├─ VerificationRequired     verification_required
     │   │   ├─ NotReady                 not_ready (202)
     │   │   └─ PartialFailure           partial_failure: items of a batch failed
     │   ├─ UpdoxError, UstaError, MedableError, HyperError     one base per vendor
     │   │
     │   ├─ one class per (vendor, code), e.g. Hyper10Error(HyperError, ResourceLockedError),
     │   │  MedableThrottledFault(MedableError, RateLimitedError); ``catalog(v)[code].exception``
     │   └─ one class per (vendor, category) for codes a catalog lacks, e.g. HyperServerError
     └─ RejectedError                    the SDK sent nothing: a strategy refused (also an httpx.HTTPError)
         ├─ CircuitOpenError             the vendor's circuit is open; retry_after = seconds until a probe
         ├─ ThrottledError               the rate limiter's wait would pass the deadline; retry_after
         ├─ GuardTimeoutError            a guarded key (one Hyper account) stayed busy; key
         ├─ ConcurrencyLimitError        the endpoint's concurrency limit stayed full until the deadline
         └─ StateUnavailableError        the shared state store did not answer (on_unavailable = "raise")

``ApiError`` and ``RejectedError`` subclass ``httpx.HTTPError``, so ``except httpx.HTTPError`` catches
every failure of a call. Each carries ``reason``: why the SDK stopped there, in words, shown by
``str()``. The hand-written classes live in ``_tree``; the four shipped vendors' per-code and
per-category classes are static classes generated from ``catalogs/*.toml`` into ``_shipped``, so type
checkers and IDEs know them; they are imported the first time one is asked for (``import
resilient_client`` stays cheap), then served here as module attributes. A vendor added with
``load_catalog()`` gets classes built at run time, served here by name once registered. A code that
means success (hyper 0, updox 2000) has no class: it raises nothing.

Transport failures are not wrapped: they stay httpx's own exceptions (``httpx.ConnectError``...), with
the number of attempts and the reason in a PEP 678 note and in ``attempts`` and ``reason``
attributes.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from resilient_client.errors import _tree
from resilient_client.errors._tree import (
    CATEGORY_CLASSES,
    VENDOR_BASES,
    ApiError,
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    ConcurrencyLimitError,
    ConflictError,
    Fault,
    GoneError,
    GuardTimeoutError,
    HyperError,
    IncompleteSuccess,
    MedableError,
    NoResults,
    NotFoundError,
    NotImplementedApiError,
    NotReady,
    PartialFailure,
    PayloadTooLargeError,
    PermissionDeniedError,
    PolicyError,
    PolicyProblem,
    RateLimitedError,
    RejectedError,
    RequestTimeoutError,
    ResilientClientError,
    ResourceLockedError,
    ServerError,
    ServiceUnavailableError,
    SoftFault,
    StateUnavailableError,
    ThrottledError,
    UnknownFaultError,
    UnprocessableError,
    UnsupportedMediaTypeError,
    UpdoxError,
    UstaError,
    ValidationError,
    VerificationRequired,
)

if TYPE_CHECKING:
    from resilient_client.errors._shipped import *  # noqa: F403

__all__ = [
    "ApiError",
    "AuthenticationError",
    "BadRequestError",
    "CATEGORY_CLASSES",
    "CircuitOpenError",
    "ConcurrencyLimitError",
    "ConflictError",
    "Fault",
    "GoneError",
    "GuardTimeoutError",
    "HyperError",
    "IncompleteSuccess",
    "MedableError",
    "NoResults",
    "NotFoundError",
    "NotImplementedApiError",
    "NotReady",
    "PartialFailure",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PolicyError",
    "PolicyProblem",
    "RateLimitedError",
    "RejectedError",
    "RequestTimeoutError",
    "ResilientClientError",
    "ResourceLockedError",
    "ServerError",
    "ServiceUnavailableError",
    "SoftFault",
    "StateUnavailableError",
    "ThrottledError",
    "UnknownFaultError",
    "UnprocessableError",
    "UnsupportedMediaTypeError",
    "UpdoxError",
    "UstaError",
    "VENDOR_BASES",
    "ValidationError",
    "VerificationRequired",
]


def _public_path(names: list[str], module: ModuleType) -> None:
    """Tracebacks, reprs of classes and pickles name the public path, not the private module (as
    httpx does)."""
    for name in names:
        found = getattr(module, name)
        if isinstance(found, type):
            found.__module__ = __name__


_public_path(_tree.__all__, _tree)

#: The generated module, once a per-code class was first asked for (importing it builds ~400 classes).
_shipped_module: ModuleType | None = None


def _shipped_classes() -> ModuleType:
    """The four shipped vendors' per-code classes, imported on first use and served from here."""
    global _shipped_module
    if _shipped_module is None:
        module = importlib.import_module("resilient_client.errors._shipped")
        _public_path(module.__all__, module)
        globals().update({name: getattr(module, name) for name in module.__all__})
        _shipped_module = module
    return _shipped_module


#: Classes built at run time for vendors added with ``load_catalog()``, by name.
_added: dict[str, type[ApiError]] = {}


def register(cls: type[ApiError]) -> None:
    """Serve ``cls``, built for a vendor added with ``load_catalog()``, as ``errors.<its name>``.

    Loading that vendor's catalog again replaces its classes. Raises ValueError when the name is a
    shipped class's or another vendor's. Called by the catalog loader (not in ``__all__``).
    """
    name = cls.__name__
    _shipped_classes()
    taken = globals().get(name) if not name.startswith("_") else None
    existing = _added.get(name)
    if taken is not None or (existing is not None and existing._vendor != cls._vendor):
        raise ValueError(f"exception name {name} is already taken")
    cls.__module__ = __name__
    _added[name] = cls


def __dir__() -> list[str]:
    return sorted({*globals(), *_shipped_classes().__all__, *_added})


if not TYPE_CHECKING:
    # Hidden from type checkers: they must see only the static classes, so that a misspelled name
    # (errors.RateLimitError) is an error instead of an ApiError class.
    def __getattr__(name: str) -> type[ApiError]:
        if not name.startswith("_"):
            shipped = _shipped_classes()
            if name in shipped.__all__:
                return getattr(shipped, name)
        found = _added.get(name)
        if found is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        return found
