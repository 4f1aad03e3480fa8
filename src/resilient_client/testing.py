"""Helpers for users' own tests: vendor fault responses from the catalogs, no waits, a fake clock.

Uses only the package's public names::

    import httpx, respx, resilient_client as rc
    from resilient_client.testing import fault_response, no_waits

    @respx.mock
    def test_retries_a_locked_account():
        route = respx.post("https://hyper.test/api/journal").mock(
            side_effect=[fault_response("hyper", 10), httpx.Response(200, json={"ResponseCode": 0})]
        )
        with no_waits(), rc.HyperClient(base_url="https://hyper.test", token="t") as client:
            assert client.post("/api/journal", json={}).json()["ResponseCode"] == 0
        assert route.call_count == 2
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx

import resilient_client as rc

__all__ = [
    "CATEGORY_STATUS",
    "FakeClock",
    "fault_body",
    "fault_response",
    "no_waits",
]

#: The status a vendor that documents none would typically send for a category (SPEC section 3).
CATEGORY_STATUS: dict[str, int] = {
    "ok": 200,
    "bad_request": 400,
    "validation": 400,
    "authentication": 401,
    "permission_denied": 403,
    "not_found": 404,
    "conflict": 409,
    "gone": 410,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "unprocessable": 422,
    "locked": 423,
    "rate_limited": 429,
    "request_timeout": 408,
    "server_error": 500,
    "not_implemented": 501,
    "service_unavailable": 503,
    "incomplete_success": 200,
    "no_results": 200,
    "verification_required": 200,
    "not_ready": 202,
    "partial_failure": 200,
    "unknown": 500,
}


def _set_path(doc: dict[str, Any], path: str | None, value: Any) -> None:
    if not path:
        return
    *parents, last = path.split(".")
    for part in parents:
        doc = doc.setdefault(part, {})
    doc[last] = value


def fault_body(
    vendor: str,
    code: int | str,
    *,
    message: str | None = None,
    details: Sequence[Mapping[str, Any]] = (),
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) the vendor sends for ``code``, as its error page describes.

    ``details`` are extra faults: USTA ``errors[]`` entries, Medable child faults, Updox batch
    ``statuses[]`` items; each a mapping of the vendor's own field names.
    """
    found = rc.catalog(vendor)
    entry = found.lookup(code)
    if entry is None:
        raise ValueError(f"{vendor} has no code {code!r}; see `resilient-client codes {vendor}`")
    text = entry.message if message is None else message
    reader = found.envelope.reader
    if reader == "updox":
        ok = entry.category == "ok"
        body: dict[str, Any] = {
            "successful": ok,
            "responseCode": entry.code,
            "responseMessage": text,
        }
        if details:
            body["statuses"] = [dict(d) for d in details]
        return 200, body
    status = entry.http_status or CATEGORY_STATUS[entry.category]
    if reader == "usta":
        return status, {"errors": [{"errorCode": entry.code, "message": text}, *map(dict, details)]}
    if reader == "medable":
        body = {
            "object": "fault",
            "name": entry.group or "error",
            "code": entry.code,
            "status": status,
            "message": text,
        }
        if details:
            body["faults"] = [{"object": "fault", **d} for d in details]
        return status, body
    if reader == "hyper":
        return status, {"ResponseCode": entry.code, "ResponseMsgEng": text}
    spec = found.envelope
    body = {}
    _set_path(body, spec.code, entry.code)
    _set_path(body, spec.message, text)
    _set_path(body, spec.success_flag, entry.category == "ok")
    if details:
        _set_path(body, spec.faults, [dict(d) for d in details])
    return status, body


def fault_response(
    vendor: str,
    code: int | str,
    *,
    message: str | None = None,
    details: Sequence[Mapping[str, Any]] = (),
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    retry_after: float | None = None,
) -> httpx.Response:
    """An httpx.Response carrying ``code`` as the vendor would send it (for respx or MockTransport).

    ``status`` overrides the documented status; ``retry_after`` adds a ``Retry-After`` header.
    """
    documented, body = fault_body(vendor, code, message=message, details=details)
    all_headers = dict(headers or {})
    if retry_after is not None:
        all_headers["Retry-After"] = f"{retry_after:g}"
    return httpx.Response(status or documented, json=body, headers=all_headers)


@contextlib.contextmanager
def no_waits() -> Iterator[None]:
    """Within the block, retries happen at once: no backoff and no Retry-After sleep."""
    before = rc.is_testing()
    rc.set_testing(True)
    try:
        yield
    finally:
        rc.set_testing(before)


class FakeClock:
    """A monotonic clock whose ``sleep`` advances it: pass ``clock=``, ``sleep=`` and
    ``async_sleep=`` to a ResilientTransport (or ``transport_options=`` of a vendor client)."""

    def __init__(self, start: float = 1000.0, wall_start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.wall_offset = wall_start - start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        """Unix time matching the monotonic clock (for ``wall_clock=``)."""
        return self.now + self.wall_offset

    def sleep(self, seconds: float) -> None:
        """Move the fake time on by ``seconds`` at once, and record the wait in ``sleeps``."""
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        """The async twin of ``sleep``: returns at once, the fake time moved on."""
        self.sleep(seconds)

    def options(self) -> dict[str, Any]:
        """Keyword arguments for ResilientTransport (or a client's ``transport_options``)."""
        return {
            "clock": self,
            "wall_clock": self.wall,
            "sleep": self.sleep,
            "async_sleep": self.async_sleep,
        }
