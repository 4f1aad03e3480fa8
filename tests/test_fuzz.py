"""Hostile input: any status, headers and body give a response or an ApiError, never anything else."""

from __future__ import annotations

import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import resilient_client as rc
from resilient_client.testing import FakeClock

VENDOR_KEYS = [
    "successful", "responseCode", "responseMessage", "statuses", "success", "id", "message",
    "errors", "errorCode", "subject", "error", "error_description",
    "object", "code", "errCode", "status", "faults", "path", "reason",
    "ResponseCode", "ResponseMsgEng",
]  # fmt: skip

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(["fault", "kThrottled", "kValidationError", "2000", "10", "invalid_token"]),
)  # fmt: skip
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(VENDOR_KEYS), st.text(max_size=8)), inner, max_size=6),
    ),
    max_leaves=20,
)
header_values = st.one_of(
    st.sampled_from(
        ["application/json", "text/html", "application/octet-stream", "gzip", "br", "identity", "1", "-5",
         "99999999999999999999", "1e999", "Wed, 21 Oct 2015 07:28:00 GMT", "not a date", "nan", ""]
    ),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
)  # fmt: skip
headers = st.dictionaries(
    st.sampled_from(
        ["content-type", "content-encoding", "retry-after", "retry-after-ms", "x-rate-limit-reset", "date",
         "x-request-id"]
    ),
    header_values,
    max_size=5,
)  # fmt: skip
bodies = st.one_of(st.binary(max_size=300), documents.map(lambda d: json.dumps(d).encode()))


def run(vendor: str, status: int, head: dict[str, str], body: bytes, method: str) -> object:
    # stream=, not content=: the body arrives raw and undecoded, as from a socket.
    transport = rc.ResilientTransport(
        vendor,
        transport=httpx.MockTransport(
            lambda r: httpx.Response(status, headers=head, stream=httpx.ByteStream(body))
        ),
        **FakeClock().options(),
    )
    outcome: object
    with httpx.Client(transport=transport) as client:
        try:
            outcome = client.request(method, "https://vendor.test/x", content=b"{}")
        except (rc.errors.ApiError, httpx.DecodingError) as error:
            outcome = error
    if isinstance(outcome, httpx.Response):
        assert outcome.status_code < 400
    elif isinstance(outcome, httpx.DecodingError):
        # httpx's own error for a success body that its content-encoding cannot decode, as without us.
        assert status < 400
        assert "content-encoding" in head
    else:
        assert isinstance(outcome, rc.errors.ApiError)
        assert outcome.attempts >= 1
        assert str(outcome)
        assert repr(outcome)
    return outcome


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    vendor=st.sampled_from(rc.VENDORS),
    status=st.integers(100, 599),
    head=headers,
    body=bodies,
    method=st.sampled_from(["GET", "POST"]),
)
def test_any_response_gives_a_response_or_an_api_error(
    vendor: str, status: int, head: dict[str, str], body: bytes, method: str
) -> None:
    if 100 <= status < 200:
        status = 200  # httpx gives informational answers no body; they never reach a transport
    run(vendor, status, head, body, method)


@settings(max_examples=500, deadline=None)
@given(vendor=st.sampled_from(rc.VENDORS), status=st.integers(200, 599), doc=documents)
def test_classify_never_raises_on_any_json(vendor: str, status: int, doc: Any) -> None:
    catalog = rc.catalog(vendor)
    outcome = rc.classify(catalog, status, rc.read_envelope(catalog.envelope, json.dumps(doc).encode()))
    if status >= 400:
        assert not outcome.ok
    if not outcome.ok:
        assert outcome.error_class is not None
        assert issubclass(outcome.error_class, rc.errors.ApiError)
