"""A catalog entry: one documented code of a vendor, and the exception class it raises.

It lives here, under the exception tree, so that ``ApiError.entry`` can name its type without the
errors importing the catalog loader above them (``_catalog`` builds the entries and re-exports them).
"""

from __future__ import annotations

import attrs

from resilient_client.errors._tree import ApiError

#: A vendor's fault code: a number (Updox, Hyper) or a name (Medable's ``kThrottled``).
Code = int | str

#: Categories retried (for some method) under the shipped policies.
DEFAULT_RETRYABLE: frozenset[str] = frozenset(
    {
        "locked",
        "rate_limited",
        "request_timeout",
        "server_error",
        "service_unavailable",
        "not_ready",
    }
)


@attrs.frozen
class CatalogEntry:
    """One documented code of a vendor: what it means and which exception it raises.

    ``exception`` is None for a code that means success (category ``"ok"``, hyper 0, updox 2000):
    it raises nothing.
    """

    vendor: str
    code: Code
    message: str
    http_status: int | None
    category: str
    group: str | None
    exception: type[ApiError] | None = attrs.field(eq=False, repr=False)

    @property
    def retryable(self) -> bool:
        """True when the category is retried for some method under the shipped policies."""
        return self.category in DEFAULT_RETRYABLE
