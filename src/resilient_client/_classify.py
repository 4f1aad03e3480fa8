"""The classifier: faults + catalog + HTTP status -> outcome. Pure, no I/O.

Rules (SPEC section 3):
- a known code in the body decides the category; the status decides only when the body has no
  code, or a code the catalog lacks; an error status (>= 400) with an unknown code takes the
  status's category;
- a body that says "failed" under 2xx with a code the catalog lacks is never a success: it falls
  back by the catalog's ranges (Updox 4xxx/5xxx), else to ``unknown``;
- soft-fault categories exist only under 2xx: a soft-fault code under an error status takes the
  status's category;
- a success code with failed batch items is a partial failure that keeps the success code.
"""

from __future__ import annotations

import attrs

from resilient_client._catalog import SOFT_CATEGORIES, Catalog, CatalogEntry, Code
from resilient_client._envelopes import Envelope
from resilient_client.errors import ApiError, Fault

_STATUS_CATEGORIES: dict[int, str] = {
    400: "bad_request",
    401: "authentication",
    403: "permission_denied",
    404: "not_found",
    408: "request_timeout",
    409: "conflict",
    410: "gone",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    423: "locked",
    429: "rate_limited",
    500: "server_error",
    501: "not_implemented",
    # A gateway that gave up waiting: the upstream may have applied the request.
    504: "request_timeout",
    503: "service_unavailable",
}


def status_category(status: int) -> str | None:
    """The category an error status stands for; None below 400."""
    if status < 400:
        return None
    found = _STATUS_CATEGORIES.get(status)
    if found is not None:
        return found
    return "bad_request" if status < 500 else "server_error"


@attrs.frozen
class Outcome:
    """What a response means: ``ok``, or a fault's category, code, message and details."""

    category: str
    code: Code | None = None
    message: str = ""
    entry: CatalogEntry | None = None
    details: tuple[Fault, ...] = ()
    error_class: type[ApiError] | None = None

    @property
    def ok(self) -> bool:
        """True when the response is a success the caller gets back."""
        return self.error_class is None


OK = Outcome("ok")


def _fault(
    catalog: Catalog,
    category: str,
    code: Code | None,
    message: str,
    entry: CatalogEntry | None,
    details: tuple[Fault, ...],
) -> Outcome:
    if not message and entry is not None:
        message = entry.message
    return Outcome(category, code, message, entry, details, catalog.error_class(category, entry))


#: The outcome of a status without an envelope (a proxy's 503, an empty 500), by category and error
#: class: all it depends on. A frozen Outcome, made once instead of on every such fault (every retried
#: outage). Bounded: a process that keeps making catalogs with classes of their own stops adding.
_STATUS_ONLY: dict[tuple[str, type[ApiError]], Outcome] = {}
_STATUS_ONLY_MAX = 256


def _status_fault(catalog: Catalog, category: str) -> Outcome:
    error_class = catalog.error_class(category)
    found = _STATUS_ONLY.get((category, error_class))
    if found is None:
        found = Outcome(category, error_class=error_class)
        if len(_STATUS_ONLY) < _STATUS_ONLY_MAX:
            _STATUS_ONLY[category, error_class] = found
    return found


def classify(catalog: Catalog, status: int, envelope: Envelope | None) -> Outcome:
    """The outcome of a response with this status and envelope (None: no readable envelope)."""
    by_status = status_category(status)
    if envelope is None:
        if by_status is None:
            return OK
        return _status_fault(catalog, by_status)
    code = catalog.normalize(envelope.code)
    entry = None if code is None else catalog.resolve(code)
    details = envelope.faults
    if entry is not None:
        category = entry.category
        if category == "ok":
            if by_status is not None:
                category = by_status
            elif envelope.item_failures:
                category, details = "partial_failure", envelope.item_failures
            elif envelope.failed:
                category = "unknown"
            else:
                return OK
        elif category in SOFT_CATEGORIES and not 200 <= status <= 299:
            category = by_status or "unknown"
        return _fault(catalog, category, code, envelope.message, entry, details)
    if by_status is not None:
        return _fault(catalog, by_status, code, envelope.message, None, details)
    if not envelope.failed:
        return OK
    fallback = "unknown" if code is None else (catalog.range_category(code) or "unknown")
    return _fault(catalog, fallback, code, envelope.message, None, details)
