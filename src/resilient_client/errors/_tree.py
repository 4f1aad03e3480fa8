"""The hand-written exception tree (drawn in ``resilient_client.errors``).

The errors sit at the bottom of the package: they import nothing of it but ``_redact`` (which
imports nothing of it). The catalog loader, above them, hands this tree what it builds through
``register`` (in the package face) and ``set_catalog_loader`` (here); the type of a catalog entry
lives beside this tree (``_entry``) for the same reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import httpx

from resilient_client._redact import Secrets, redact_url

if TYPE_CHECKING:
    from resilient_client.errors._entry import CatalogEntry

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
    "set_catalog_loader",
]


class ResilientClientError(Exception):
    """Root of everything the SDK raises itself."""


# Frozen dataclasses, not attrs classes: the exception tree is what ``import resilient_client``
# loads at once, and attrs would add a fifth to its import time (bench/import_time.py).
@dataclasses.dataclass(frozen=True, slots=True)
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


@dataclasses.dataclass(frozen=True, slots=True)
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
_Redact = Callable[[str], str]


def _masked(value: str | None, redact: _Redact) -> str | None:
    return None if value is None else redact(value)


def _masked_code(code: int | str | None, redact: _Redact) -> int | str | None:
    # A vendor may echo what it was sent into a code ("invalid key abc123"): text codes are masked too.
    return redact(code) if isinstance(code, str) else code


def _masked_fault(fault: Fault, redact: _Redact) -> Fault:
    return dataclasses.replace(
        fault,
        code=_masked_code(fault.code, redact),
        message=redact(fault.message),
        path=_masked(fault.path, redact),
        reason=_masked(fault.reason, redact),
        item_id=_masked(fault.item_id, redact),
        subcode=_masked(fault.subcode, redact),
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _where(request: httpx.Request | None) -> str:
    return "" if request is None else f"{request.method} {redact_url(request.url)}"


_catalog_loader: Callable[[str], object] | None = None


def set_catalog_loader(load: Callable[[str], object]) -> None:
    """Install how a vendor's catalog is loaded, so a per-code class finds its ``entry`` on first use.

    The catalog module installs it when imported; users have no reason to call this.
    """
    global _catalog_loader
    _catalog_loader = load


class _EntryOf:
    """``cls.entry``: the catalog entry a per-code class stands for, its catalog loaded on first use."""

    def __get__(self, instance: ApiError | None, owner: type[ApiError]) -> CatalogEntry | None:
        # Only a shipped vendor's classes exist before their catalog is loaded (an added vendor's
        # are built by loading it).
        if owner._entry is None and owner._vendor in VENDOR_BASES and _catalog_loader is not None:
            _catalog_loader(owner._vendor)
        return owner._entry


class _HTTPErrorOfACall(httpx.HTTPError):
    """An ``httpx.HTTPError`` whose ``request`` is None when unknown instead of raising."""

    # httpx's getter raises when no request is set; ours answers None (an error built by hand, or
    # unpickled: pickles never carry the request), as this SDK's errors always did. The request is
    # kept in an attribute of our own, not in the one httpx's getter reads.
    _request_of_call: httpx.Request | None = None

    @property  # type: ignore[override]
    def request(self) -> httpx.Request | None:
        """The request of the failed call; None on an error built by hand or unpickled."""
        return self._request_of_call

    @request.setter
    def request(self, request: httpx.Request | None) -> None:
        self._request_of_call = request


class ApiError(ResilientClientError, _HTTPErrorOfACall):
    """The vendor answered with a fault (also an ``httpx.HTTPError``)."""

    category: ClassVar[str] = "unknown"
    #: The vendor id of a vendor base and everything under it; None on the cross-vendor classes.
    _vendor: ClassVar[str | None] = None
    #: Set by the catalog loader on a per-code class.
    _entry: ClassVar[CatalogEntry | None] = None
    #: The catalog entry this class stands for (per-code classes only; None on the others).
    entry: ClassVar[_EntryOf] = _EntryOf()
    vendor: str
    code: int | str | None
    message: str
    http_status: int | None
    retryable: bool
    details: tuple[Fault, ...]
    attempts: int
    retry_after: float | None
    request_id: str | None
    response: httpx.Response | None
    #: Why the SDK stopped there, in words: "not retried: POST may have been processed".
    reason: str

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
        reason: str = "",
        request: httpx.Request | None = None,
        response: httpx.Response | None = None,
        secrets: Secrets | None = None,
    ) -> None:
        redact = (secrets or _NO_SECRETS).redact
        self.message = redact(message)
        super().__init__(self.message)  # first: httpx.HTTPError.__init__ clears the request
        self.vendor = vendor or self._vendor or ""
        self.code = _masked_code(code, redact)
        self.http_status = http_status
        self.retryable = retryable
        self.details = tuple(_masked_fault(f, redact) for f in details)
        self.attempts = attempts
        self.retry_after = retry_after
        self.request_id = _masked(request_id, redact)
        self.reason = redact(reason)
        self.request = request
        self.response = response

    def __str__(self) -> str:
        code = "" if self.code is None else " " + "".join(str(self.code).split())
        parts = [_one_line(self.message)]  # one line, whatever the vendor put in it
        if self.http_status is not None:
            parts.append(f"[HTTP {self.http_status}]")
        if self.request is not None:
            parts.append(f"on {_where(self.request)}")
        reason = _one_line(self.reason)
        if not reason.startswith(f"{self.attempts} of "):  # "4 of 4 attempts made" says it already
            parts.append(f"after {self.attempts} {'attempt' if self.attempts == 1 else 'attempts'}")
        text = f"{self.vendor or 'api'}{code} ({self.category}): " + " ".join(p for p in parts if p)
        return f"{text}; {reason}" if reason else text

    def __repr__(self) -> str:
        url = None if self.request is None else redact_url(self.request.url)
        return (
            f"{type(self).__name__}(vendor={self.vendor!r}, code={self.code!r}, "
            f"category={self.category!r}, http_status={self.http_status!r}, "
            f"message={self.message!r}, attempts={self.attempts!r}, reason={self.reason!r}, url={url!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickles hold no request or response: their headers and bodies may carry secrets.
        # The class is found again by name in resilient_client.errors (vendors added with
        # load_catalog() need their catalog loaded again first).
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
            "reason": self.reason,
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

    _vendor = "updox"


class UstaError(ApiError):
    """Base of every fault answered by the USTA API."""

    _vendor = "usta"


class MedableError(ApiError):
    """Base of every fault answered by the Medable Cortex API."""

    _vendor = "medable"


class HyperError(ApiError):
    """Base of every fault answered by the Hyper API."""

    _vendor = "hyper"


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


class RejectedError(ResilientClientError, _HTTPErrorOfACall):
    """The SDK sent nothing: a strategy refused the attempt (also an ``httpx.HTTPError``)."""

    #: The reason given when the strategy gives none of its own.
    default_reason: ClassVar[str] = "a strategy refused to send the request"
    vendor: str
    #: Why the request was not sent, in words: "circuit open".
    reason: str
    #: Seconds after which the refusal may lift (None when unknown).
    retry_after: float | None

    def __init__(
        self,
        reason: str | None = None,
        *,
        vendor: str = "",
        retry_after: float | None = None,
        request: httpx.Request | None = None,
        secrets: Secrets | None = None,
    ) -> None:
        self.reason = (secrets or _NO_SECRETS).redact(reason or self.default_reason)
        super().__init__(self.reason)  # first: httpx.HTTPError.__init__ clears the request
        self.vendor = vendor
        self.retry_after = retry_after
        self.request = request

    def _facts(self) -> dict[str, Any]:
        """What the refusal says besides its reason: shown in ``str``/``repr``, kept in pickles."""
        return {"retry_after": self.retry_after}

    def __str__(self) -> str:
        what = _where(self.request) or "the request"
        text = f"{self.vendor or 'api'}: {what} not sent: {_one_line(self.reason)}"
        if self.retry_after is not None:
            text += f"; retry after {self.retry_after:g} s"
        return text

    def __repr__(self) -> str:
        url = None if self.request is None else redact_url(self.request.url)
        facts = "".join(f", {name}={value!r}" for name, value in self._facts().items())
        return f"{type(self).__name__}(vendor={self.vendor!r}, reason={self.reason!r}{facts}, url={url!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Like ApiError's: no request in a pickle.
        state = {"reason": self.reason, "vendor": self.vendor, **self._facts()}
        return (_rebuild_rejected, (type(self), state))


def _rebuild_rejected(cls: type[RejectedError], state: Mapping[str, Any]) -> RejectedError:
    return cls(**state)


class CircuitOpenError(RejectedError):
    """The vendor's circuit is open; ``retry_after`` is the seconds until a probe may go."""

    default_reason = "circuit open"


class ThrottledError(RejectedError):
    """The rate limiter's wait would pass the deadline; ``retry_after`` is that wait."""

    default_reason = "the rate limiter's wait would pass the deadline"


class ConcurrencyLimitError(RejectedError):
    """The vendor endpoint's adaptive concurrency limit stayed full until the deadline: the attempt
    waited its turn and could not be sent in time (``[concurrency]``)."""

    default_reason = "the concurrency limit stayed full until the deadline"


class GuardTimeoutError(RejectedError):
    """A guarded key (one Hyper account, say) stayed busy past the wait allowed; ``key`` names it."""

    default_reason = "a guarded key stayed busy"
    #: The guarded key that stayed busy (masked like any text that may hold a secret).
    key: str | None

    def __init__(
        self,
        reason: str | None = None,
        *,
        vendor: str = "",
        key: str | None = None,
        retry_after: float | None = None,
        request: httpx.Request | None = None,
        secrets: Secrets | None = None,
    ) -> None:
        super().__init__(reason, vendor=vendor, retry_after=retry_after, request=request, secrets=secrets)
        self.key = _masked(key, (secrets or _NO_SECRETS).redact)

    def _facts(self) -> dict[str, Any]:
        return {**super()._facts(), "key": self.key}

    def __str__(self) -> str:
        text = super().__str__()
        return text if self.key is None else f"{text}; key {_one_line(self.key)!r}"


class StateUnavailableError(RejectedError):
    """The shared state store (Redis) did not answer and ``[state] on_unavailable = "raise"``."""

    default_reason = "the shared state store did not answer"
