"""Everything resilient-client raises itself.

The tree::

    ResilientClientError                 root of everything the SDK raises itself
     ├─ PolicyError                      a policy or catalog file is invalid: file, key path, problem
     └─ ApiError                         the vendor answered with a fault
         ├─ BadRequestError              bad_request (400)
         │   └─ ValidationError          validation (400)
         ├─ AuthenticationError          authentication (401)
         ├─ PermissionDeniedError        permission_denied (403)
         ├─ NotFoundError                not_found (404)
         ├─ ConflictError                conflict (409)
         ├─ GoneError                    gone (410)
         ├─ PayloadTooLargeError         payload_too_large (413)
         ├─ UnsupportedMediaTypeError    unsupported_media_type (415)
         ├─ UnprocessableError           unprocessable (422)
         ├─ ResourceLockedError          locked (423)
         ├─ RateLimitedError             rate_limited (429)
         ├─ RequestTimeoutError          request_timeout (408)
         ├─ ServerError                  server_error (500)
         ├─ NotImplementedApiError       not_implemented (501)
         ├─ ServiceUnavailableError      service_unavailable (503)
         ├─ UnknownFaultError            unknown: a failure the catalog cannot name
         ├─ SoftFault                    a fault carried by a 2xx response
         │   ├─ IncompleteSuccess        incomplete_success
         │   ├─ NoResults                no_results
         │   ├─ VerificationRequired     verification_required
         │   ├─ NotReady                 not_ready (202)
         │   └─ PartialFailure           partial_failure: items of a batch failed
         ├─ UpdoxError, UstaError, MedableError, HyperError     one base per vendor
         │
         ├─ one class per (vendor, code), e.g. Hyper10Error(HyperError, ResourceLockedError),
         │  MedableThrottledFault(MedableError, RateLimitedError); ``catalog(v).lookup(code).exception``
         └─ one class per (vendor, category) for codes a catalog lacks, e.g. HyperServerError

The per-code and per-(vendor, category) classes are built from the catalog data files when a catalog
is loaded; they live in this module's namespace (``resilient_client.errors.Hyper10Error``), so
``except`` works on a vendor, a category or one exact code.

Transport failures are not wrapped: they stay httpx's own exceptions (``httpx.ConnectError``...), with
the number of attempts made in a PEP 678 note and in an ``attempts`` attribute.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from resilient_client._redact import Secrets, redact_url

if TYPE_CHECKING:
    import httpx

    from resilient_client._catalog import CatalogEntry

__all__ = [
    "ApiError",
    "AuthenticationError",
    "BadRequestError",
    "CATEGORY_CLASSES",
    "ConflictError",
    "Fault",
    "GoneError",
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
    "RequestTimeoutError",
    "ResilientClientError",
    "ResourceLockedError",
    "ServerError",
    "ServiceUnavailableError",
    "SoftFault",
    "UnknownFaultError",
    "UnprocessableError",
    "UnsupportedMediaTypeError",
    "UpdoxError",
    "UstaError",
    "VENDOR_BASES",
    "ValidationError",
    "VerificationRequired",
]


class ResilientClientError(Exception):
    """Root of everything the SDK raises itself."""


@attrs.frozen
class PolicyProblem:
    """One problem in a policy or catalog file: where it is and what is wrong."""

    file: str
    key_path: str
    problem: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.key_path}" if self.key_path else self.file
        return f"{where}: {self.problem}"


class PolicyError(ResilientClientError, ValueError):
    """A policy or catalog file is invalid; names the file, the key path and the problem."""

    def __init__(self, problems: list[PolicyProblem] | PolicyProblem) -> None:
        self.problems: tuple[PolicyProblem, ...] = (
            (problems,) if isinstance(problems, PolicyProblem) else tuple(problems)
        )
        super().__init__("\n".join(str(p) for p in self.problems))

    @property
    def file(self) -> str:
        """The file of the first problem."""
        return self.problems[0].file

    @property
    def key_path(self) -> str:
        """The key path of the first problem (dotted; empty for the whole file)."""
        return self.problems[0].key_path

    @property
    def problem(self) -> str:
        """What is wrong, for the first problem."""
        return self.problems[0].problem

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (list(self.problems),))


@attrs.frozen
class Fault:
    """One fault of a response: the top-level one, a child fault, or a failed batch item."""

    code: int | str | None
    message: str
    path: str | None = None
    status: int | None = None
    reason: str | None = None
    item_id: str | None = None
    subcode: str | None = None


_NO_SECRETS = Secrets()


class ApiError(ResilientClientError):
    """The vendor answered with a fault."""

    category: ClassVar[str] = "unknown"
    vendor: str
    code: int | str | None
    message: str
    http_status: int | None
    retryable: bool
    details: tuple[Fault, ...]
    attempts: int
    retry_after: float | None
    request_id: str | None
    request: httpx.Request | None
    response: httpx.Response | None
    #: The catalog entry this class stands for (per-code classes only).
    entry: ClassVar[CatalogEntry | None] = None

    def __init__(
        self,
        message: str,
        *,
        vendor: str = "",
        code: int | str | None = None,
        http_status: int | None = None,
        retryable: bool = False,
        details: tuple[Fault, ...] = (),
        attempts: int = 1,
        retry_after: float | None = None,
        request_id: str | None = None,
        request: httpx.Request | None = None,
        response: httpx.Response | None = None,
        secrets: Secrets | None = None,
    ) -> None:
        redact = (secrets or _NO_SECRETS).redact
        self.vendor = vendor
        self.code = code
        self.message = redact(message)
        self.http_status = http_status
        self.retryable = retryable
        self.details = tuple(
            attrs.evolve(
                f,
                message=redact(f.message),
                reason=None if f.reason is None else redact(f.reason),
            )
            for f in details
        )
        self.attempts = attempts
        self.retry_after = retry_after
        self.request_id = request_id
        self.request = request
        self.response = response
        super().__init__(self.message)

    def __str__(self) -> str:
        code = "" if self.code is None else " " + "".join(str(self.code).split())
        head = f"{self.vendor or 'api'}{code} ({self.category})"
        status = "" if self.http_status is None else f" [HTTP {self.http_status}]"
        where = ""
        if self.request is not None:
            where = f" on {self.request.method} {redact_url(self.request.url)}"
        tries = "attempt" if self.attempts == 1 else "attempts"
        message = " ".join(self.message.split())  # one line, whatever the vendor put in it
        return f"{head}: {message}{status}{where} after {self.attempts} {tries}"

    def __repr__(self) -> str:
        url = None if self.request is None else redact_url(self.request.url)
        return (
            f"{type(self).__name__}(vendor={self.vendor!r}, code={self.code!r}, "
            f"category={self.category!r}, http_status={self.http_status!r}, "
            f"message={self.message!r}, attempts={self.attempts!r}, url={url!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickles hold no request or response: their headers and bodies may carry secrets.
        # The class is found again through the catalogs, which rebuild the generated classes.
        state = {
            "vendor": self.vendor,
            "code": self.code,
            "message": self.message,
            "http_status": self.http_status,
            "retryable": self.retryable,
            "details": self.details,
            "attempts": self.attempts,
            "retry_after": self.retry_after,
            "request_id": self.request_id,
        }
        return (_rebuild_api_error, (type(self).__module__, type(self).__qualname__, state))


def _rebuild_api_error(module: str, qualname: str, state: Mapping[str, Any]) -> ApiError:
    import importlib

    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    cls: type[ApiError] = found
    message = state["message"]
    kwargs = {k: v for k, v in state.items() if k != "message"}
    return cls(message, **kwargs)


class BadRequestError(ApiError):
    """The request was malformed or cannot be served (bad_request, 400)."""

    category = "bad_request"


class ValidationError(BadRequestError):
    """A field of the request failed validation (validation, 400)."""

    category = "validation"


class AuthenticationError(ApiError):
    """Credentials are missing, wrong or expired (authentication, 401)."""

    category = "authentication"


class PermissionDeniedError(ApiError):
    """The caller is known but not allowed to do this (permission_denied, 403)."""

    category = "permission_denied"


class NotFoundError(ApiError):
    """The resource or function does not exist (not_found, 404)."""

    category = "not_found"


class ConflictError(ApiError):
    """The request conflicts with the resource's state (conflict, 409)."""

    category = "conflict"


class GoneError(ApiError):
    """The resource existed but has expired (gone, 410)."""

    category = "gone"


class PayloadTooLargeError(ApiError):
    """The request or an uploaded file is too large (payload_too_large, 413)."""

    category = "payload_too_large"


class UnsupportedMediaTypeError(ApiError):
    """The content or file type is not accepted (unsupported_media_type, 415)."""

    category = "unsupported_media_type"


class UnprocessableError(ApiError):
    """Well-formed but refused by a business rule (unprocessable, 422)."""

    category = "unprocessable"


class ResourceLockedError(ApiError):
    """The resource is busy being processed; the request was not applied (locked, 423)."""

    category = "locked"


class RateLimitedError(ApiError):
    """Too many requests; the request was not applied (rate_limited, 429)."""

    category = "rate_limited"


class RequestTimeoutError(ApiError):
    """The server timed out; the request may have been applied (request_timeout, 408)."""

    category = "request_timeout"


class ServerError(ApiError):
    """The server failed; the request may have been applied (server_error, 500)."""

    category = "server_error"


class NotImplementedApiError(ApiError):
    """The operation is not implemented by the vendor (not_implemented, 501)."""

    category = "not_implemented"


class ServiceUnavailableError(ApiError):
    """The service is overloaded or down; the request was not applied (service_unavailable, 503)."""

    category = "service_unavailable"


class UnknownFaultError(ApiError):
    """The body says the call failed but the catalog cannot name the fault (unknown)."""

    category = "unknown"


class SoftFault(ApiError):
    """A fault carried by a 2xx response."""

    category = "soft_fault"


class IncompleteSuccess(SoftFault):
    """The call ran but something is missing; read the message (incomplete_success)."""

    category = "incomplete_success"


class NoResults(SoftFault):
    """The call ran and found no records (no_results)."""

    category = "no_results"


class VerificationRequired(SoftFault):
    """A second factor or verification step is needed (verification_required)."""

    category = "verification_required"


class NotReady(SoftFault):
    """The resource is still being prepared; poll again (not_ready, 202)."""

    category = "not_ready"


class PartialFailure(SoftFault):
    """A batch call succeeded overall but some items failed; they are in ``details``."""

    category = "partial_failure"


class UpdoxError(ApiError):
    """Base of every fault answered by the Updox API."""


class UstaError(ApiError):
    """Base of every fault answered by the USTA API."""


class MedableError(ApiError):
    """Base of every fault answered by the Medable Cortex API."""


class HyperError(ApiError):
    """Base of every fault answered by the Hyper API."""


#: category name -> the cross-vendor class raised for it.
CATEGORY_CLASSES: dict[str, type[ApiError]] = {
    cls.category: cls
    for cls in (
        BadRequestError,
        ValidationError,
        AuthenticationError,
        PermissionDeniedError,
        NotFoundError,
        ConflictError,
        GoneError,
        PayloadTooLargeError,
        UnsupportedMediaTypeError,
        UnprocessableError,
        ResourceLockedError,
        RateLimitedError,
        RequestTimeoutError,
        ServerError,
        NotImplementedApiError,
        ServiceUnavailableError,
        IncompleteSuccess,
        NoResults,
        VerificationRequired,
        NotReady,
        PartialFailure,
        UnknownFaultError,
    )
}

#: vendor id -> its hand-written base class; a vendor added by data file gets a generated one.
VENDOR_BASES: dict[str, type[ApiError]] = {
    "updox": UpdoxError,
    "usta": UstaError,
    "medable": MedableError,
    "hyper": HyperError,
}


def __getattr__(name: str) -> type[ApiError]:
    # Generated classes appear once their catalog is loaded; asking for one loads the shipped ones.
    if name.startswith("_") or not name[:1].isupper():
        raise AttributeError(f"module 'resilient_client.errors' has no attribute {name!r}")
    from resilient_client._catalog import load_shipped_catalogs

    load_shipped_catalogs()
    found = globals().get(name)
    if found is None:
        raise AttributeError(f"module 'resilient_client.errors' has no attribute {name!r}")
    cls: type[ApiError] = found
    return cls
