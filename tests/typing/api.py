"""The public API used correctly: ``mypy --strict`` must accept this file (tests/test_typing.py runs it).

In the manner of stamina's ``tests/typing/api.py``: nothing here runs; every line is a claim about
the types a user's code sees, checked by the type checker.
"""

from __future__ import annotations

from typing import assert_type

import httpx

import resilient_client as rc
from resilient_client import errors


def catch_by_code_vendor_and_category(client: httpx.Client) -> None:
    try:
        client.post("/api/journal", json={"Account": 7})
    except rc.errors.Hyper10Error as e:  # a shipped per-code class, with its real bases
        locked: rc.errors.ResourceLockedError = e
        hyper: rc.errors.HyperError = e
        assert_type(e.reason, str)
        assert_type(e.code, int | str | None)
        assert_type(e.request, httpx.Request | None)
        assert_type(e.entry, rc.CatalogEntry | None)
        print(locked, hyper)
    except errors.MedableThrottledFault as e:
        limited: errors.RateLimitedError = e
        assert_type(e.retry_after, float | None)
        print(limited)
    except (errors.HyperServerError, errors.Updox4010Error, errors.Usta3001Error) as e:
        api: errors.ApiError = e
        print(api.details, api.attempts, api.request_id, api.response)
    except errors.Hyper2Error as e:  # a soft fault
        soft: errors.NoResults = e
        print(soft)
    except errors.CircuitOpenError as e:
        assert_type(e.retry_after, float | None)
        assert_type(e.reason, str)
    except errors.GuardTimeoutError as e:
        assert_type(e.key, str | None)
    except (errors.ThrottledError, errors.StateUnavailableError) as e:
        refused: errors.RejectedError = e
        print(refused.vendor)
    except httpx.HTTPError as e:  # everything above is one too
        print(e)


def every_failure_is_an_httpx_error() -> list[httpx.HTTPError]:
    return [
        errors.Hyper10Error("locked"),
        errors.RateLimitedError("slow down", retry_after=2.0),
        rc.RejectedError("circuit open"),
        errors.CircuitOpenError(vendor="hyper", retry_after=12.5),
        errors.GuardTimeoutError(vendor="hyper", key="7"),
    ]


def catalog_entries() -> None:
    hyper = rc.catalog("hyper")
    entry = hyper[10]
    assert_type(entry, rc.CatalogEntry)
    assert_type(hyper.lookup(99), rc.CatalogEntry | None)
    cls: type[errors.ApiError] | None = entry.exception  # None for a success code
    print(cls)


def register_added_vendor(cls: type[errors.ApiError]) -> None:
    errors.register(cls)
