"""Envelope readers and the classifier, pure: every hard case of SPEC section 1, no network."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

import resilient_client as rc
from resilient_client.testing import FakeClock


def outcome(vendor: str, status: int, body: Any) -> rc.Outcome:
    catalog = rc.catalog(vendor)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return rc.classify(catalog, status, rc.read_envelope(catalog.envelope, raw))


CASES = [
    # Updox: the code in the body is the truth, whatever the status.
    pytest.param(
        "updox",
        200,
        {"successful": True, "responseCode": 2000, "responseMessage": "OK"},
        "ok",
        None,
        id="updox-success",
    ),
    pytest.param(
        "updox",
        200,
        {"successful": False, "responseCode": 4010, "responseMessage": "Unauthorized"},
        "authentication",
        4010,
        id="updox-4010-under-200",
    ),
    pytest.param(
        "updox",
        200,
        {"successful": False, "responseCode": 5010},
        "validation",
        5010,
        id="updox-5010-is-validation",
    ),
    pytest.param(
        "updox",
        200,
        {"successful": False, "responseCode": 4999, "responseMessage": "new"},
        "bad_request",
        4999,
        id="updox-unknown-4xxx-range",
    ),
    pytest.param(
        "updox",
        200,
        {"successful": False, "responseCode": 5999},
        "server_error",
        5999,
        id="updox-unknown-5xxx-range",
    ),
    pytest.param(
        "updox",
        200,
        {"successful": False, "responseCode": 7777},
        "unknown",
        7777,
        id="updox-unknown-out-of-range",
    ),
    pytest.param(
        "updox", 200, {"successful": False, "responseCode": 2000}, "unknown", 2000, id="updox-2000-but-failed"
    ),
    pytest.param(
        "updox", 200, {"successful": True, "responseCode": "2000"}, "ok", None, id="updox-code-as-text"
    ),
    pytest.param(
        "updox",
        500,
        {"successful": True, "responseCode": 2000},
        "server_error",
        2000,
        id="updox-success-code-under-500",
    ),
    # USTA: real statuses; several errors; flat; OAuth; six-digit sub-codes; unknown codes.
    pytest.param(
        "usta", 404, {"errorCode": 3001, "message": "entity not found"}, "not_found", 3001, id="usta-flat"
    ),
    pytest.param(
        "usta",
        400,
        {
            "errors": [
                {"errorCode": 5000, "message": "validation error", "subject": "firstName"},
                {"errorCode": 5000, "message": "validation error", "subject": "lastName"},
            ]
        },
        "validation",
        5000,
        id="usta-several-errors",
    ),
    pytest.param(
        "usta",
        409,
        {"errors": [{"errorCode": 200601, "message": "x"}]},
        "conflict",
        200601,
        id="usta-200601-exact",
    ),
    pytest.param(
        "usta",
        500,
        {"errors": [{"errorCode": 200699, "message": "x"}]},
        "server_error",
        200699,
        id="usta-200699-refines-2006",
    ),
    pytest.param(
        "usta",
        418,
        {"errors": [{"errorCode": 1234, "message": "?"}]},
        "bad_request",
        1234,
        id="usta-unknown-code-4xx",
    ),
    pytest.param(
        "usta",
        503,
        {"errors": [{"errorCode": 1234, "message": "?"}]},
        "service_unavailable",
        1234,
        id="usta-unknown-code-503",
    ),
    pytest.param(
        "usta",
        401,
        {"error": "invalid_token", "error_description": "Token expired"},
        "authentication",
        "invalid_token",
        id="usta-oauth",
    ),
    pytest.param("usta", 200, {"errors": []}, "ok", None, id="usta-empty-errors-list"),
    pytest.param("usta", 200, {"id": 5, "name": "Serena"}, "ok", None, id="usta-data"),
    # Medable: the top-level fault decides; kNewLocation and kMediaNotReady under 2xx.
    pytest.param(
        "medable",
        200,
        {"object": "fault", "code": "kNewLocation", "status": 200},
        "verification_required",
        "kNewLocation",
        id="medable-kNewLocation-200",
    ),
    pytest.param(
        "medable",
        202,
        {"object": "fault", "code": "kMediaNotReady", "status": 202},
        "not_ready",
        "kMediaNotReady",
        id="medable-kMediaNotReady-202",
    ),
    pytest.param(
        "medable",
        403,
        {"object": "fault", "code": "kInvalidCredentials", "errCode": "cortex.x"},
        "authentication",
        "kInvalidCredentials",
        id="medable-errCode",
    ),
    pytest.param(
        "medable",
        200,
        {"object": "fault", "code": "kBrandNew"},
        "unknown",
        "kBrandNew",
        id="medable-unknown-under-200",
    ),
    pytest.param(
        "medable",
        429,
        {"object": "fault", "code": "kBrandNew"},
        "rate_limited",
        "kBrandNew",
        id="medable-unknown-under-429",
    ),
    pytest.param("medable", 200, {"object": "account", "_id": "x"}, "ok", None, id="medable-data"),
    # Hyper: codes under 200 and under their own status; the gateway's bodies by status.
    pytest.param("hyper", 200, {"ResponseCode": 0, "Data": []}, "ok", None, id="hyper-0"),
    pytest.param(
        "hyper",
        200,
        {"ResponseCode": 1, "ResponseMsgEng": "missing"},
        "incomplete_success",
        1,
        id="hyper-1-under-200",
    ),
    pytest.param("hyper", 200, {"ResponseCode": 2}, "no_results", 2, id="hyper-2-under-200"),
    pytest.param("hyper", 200, {"ResponseCode": 10}, "locked", 10, id="hyper-10-under-200"),
    pytest.param("hyper", 423, {"ResponseCode": 10}, "locked", 10, id="hyper-10-under-423"),
    pytest.param("hyper", 200, {"ResponseCode": 99}, "unknown", 99, id="hyper-unknown-under-200"),
    pytest.param("hyper", 404, {"ResponseCode": 2}, "not_found", 2, id="hyper-soft-code-under-404"),
    pytest.param("hyper", 401, {"message": "Unauthorized"}, "authentication", None, id="hyper-gateway-401"),
    pytest.param(
        "hyper", 403, b"<html>Forbidden</html>", "permission_denied", None, id="hyper-gateway-403-html"
    ),
    pytest.param("hyper", 429, b"", "rate_limited", None, id="hyper-gateway-429-empty"),
    # Bodies that are not an envelope: by status, never a false success.
    pytest.param("updox", 502, b"<html>Bad gateway</html>", "server_error", None, id="html-502"),
    pytest.param("usta", 504, b'{"errors": [{"errorCo', "request_timeout", None, id="truncated-504"),
    pytest.param("medable", 500, b"", "server_error", None, id="empty-500"),
    pytest.param("hyper", 200, b"not json at all", "ok", None, id="text-200"),
    pytest.param("hyper", 400, [1, 2, 3], "bad_request", None, id="json-list-400"),
    pytest.param(
        "hyper",
        400,
        {"ResponseCode": [10], "ResponseMsgEng": {"a": 1}},
        "bad_request",
        None,
        id="wrong-types-400",
    ),
    pytest.param(
        "updox",
        200,
        {"successful": False, "responseCode": None, "statuses": "nope"},
        "unknown",
        None,
        id="updox-wrong-types-200",
    ),
    pytest.param("usta", 400, {"errors": "nope"}, "bad_request", None, id="usta-errors-not-a-list"),
    pytest.param(
        "medable",
        500,
        {"object": "fault", "code": {"x": 1}, "faults": "nope"},
        "server_error",
        None,
        id="medable-wrong-types",
    ),
    pytest.param("hyper", 500, b"[" * 100000, "server_error", None, id="deeply-nested"),
    # Bytes that are not UTF-8 (a code page message) still carry their code.
    pytest.param(
        "updox",
        200,
        b'{"successful":false,"responseCode":4010,"responseMessage":"\xff"}',
        "authentication",
        4010,
        id="updox-not-utf8-200",
    ),
    pytest.param(
        "hyper", 200, b'{"ResponseCode":7,"ResponseMsgEng":"caf\xe9"}', "validation", 7, id="hyper-cp1252-200"
    ),
    # Escapes spell the same key: the body is read as JSON reads it.
    pytest.param(
        "hyper",
        200,
        b'{"ResponseCode":0,"Respons\\u0065Code":7}',
        "validation",
        7,
        id="hyper-escaped-key-200",
    ),
    pytest.param(
        "updox",
        200,
        b'{"responseCode":2000,"respons\\u0065Code":4010,"successful":true}',
        "authentication",
        4010,
        id="updox-escaped-key-200",
    ),
    # Success spelled loosely is still success.
    pytest.param("updox", 200, {"successful": True}, "ok", None, id="updox-successful-without-code"),
    pytest.param("hyper", 200, {"ResponseCode": " 0", "Data": []}, "ok", None, id="hyper-0-padded"),
    pytest.param("hyper", 200, {"ResponseCode": "00"}, "ok", None, id="hyper-00"),
    pytest.param("hyper", 200, {"ResponseCode": ""}, "unknown", None, id="hyper-empty-code"),
]


@pytest.mark.parametrize(("vendor", "status", "body", "category", "code"), CASES)
def test_hard_cases(vendor: str, status: int, body: Any, category: str, code: object) -> None:
    found = outcome(vendor, status, body)
    assert found.category == category
    assert found.code == code
    assert found.ok == (category == "ok")
    if status >= 400:
        assert not found.ok


def test_updox_batch_item_failures_are_a_partial_failure_keeping_2000() -> None:
    found = outcome(
        "updox",
        200,
        {
            "successful": True,
            "responseCode": 2000,
            "statuses": [
                {"id": "26", "success": True},
                {"id": "27", "success": False, "message": "The appointment date is not valid"},
                {"id": 28, "success": False, "message": "Patient not found"},
            ],
        },
    )
    assert found.category == "partial_failure"
    assert found.code == 2000
    assert [(f.item_id, f.message) for f in found.details] == [
        ("27", "The appointment date is not valid"),
        ("28", "Patient not found"),
    ]
    assert found.error_class is rc.catalog("updox").error_class("partial_failure")


def test_usta_every_error_becomes_a_detail_with_its_subject() -> None:
    found = outcome(
        "usta",
        400,
        {
            "errors": [
                {
                    "errorCode": 5000,
                    "message": "validation error",
                    "subject": "firstName",
                    "subjectType": "parameter",
                },
                {"errorCode": 5002, "message": "entity id is empty"},
            ]
        },
    )
    assert [(f.code, f.path, f.reason) for f in found.details] == [
        (5000, "firstName", "parameter"),
        (5002, None, None),
    ]


def test_medable_child_faults_become_details_with_paths() -> None:
    seed_example = {
        "object": "fault",
        "name": "validation",
        "code": "kValidationError",
        "status": 400,
        "faults": [
            {
                "object": "fault",
                "code": "kRequired",
                "status": 400,
                "reason": "Required property",
                "message": "Please enter a value",
                "path": "dob",
            },
            {
                "object": "fault",
                "code": "kRequired",
                "status": 400,
                "reason": "Required property",
                "path": "name.last",
            },
            {
                "object": "fault",
                "code": "kEnumValue",
                "status": 400,
                "reason": "One of: m, f",
                "path": "gender",
            },
            {
                "object": "fault",
                "name": "fault",
                "code": "kInvalidString",
                "status": 500,
                "reason": "Enter text between 1 and 100 characters in length",
                "path": "name.first",
            },
        ],
    }
    found = outcome("medable", 400, seed_example)
    assert found.category == "validation"
    assert found.error_class is rc.errors.MedableValidationErrorFault
    assert [(f.code, f.path, f.status) for f in found.details] == [
        ("kRequired", "dob", 400),
        ("kRequired", "name.last", 400),
        ("kEnumValue", "gender", 400),
        ("kInvalidString", "name.first", 500),
    ]
    assert found.details[1].message == "Required property"


def test_medable_err_code_is_kept_as_subcode() -> None:
    found = outcome(
        "medable",
        400,
        {"object": "fault", "code": "kInvalidArgument", "errCode": "cortex.invalidArgument.unspecified"},
    )
    assert found.details[0].subcode == "cortex.invalidArgument.unspecified"


def test_a_body_without_envelope_reads_as_none() -> None:
    spec = rc.catalog("hyper").envelope
    assert rc.read_envelope(spec, b"") is None
    assert rc.read_envelope(spec, b"\xff\xfe") is None
    assert rc.read_envelope(spec, b'{"Data": 1}') is None


def _as_response(status: int, body: Any) -> httpx.Response:
    if isinstance(body, bytes):
        return httpx.Response(status, content=body)
    return httpx.Response(status, json=body)


@pytest.mark.parametrize(("vendor", "status", "body", "category", "code"), CASES)
def test_hard_cases_through_the_sync_transport(
    vendor: str, status: int, body: Any, category: str, code: object
) -> None:
    transport = rc.ResilientTransport(
        vendor, transport=httpx.MockTransport(lambda r: _as_response(status, body)), **FakeClock().options()
    )
    with httpx.Client(transport=transport) as client:
        if category == "ok":
            assert client.get("https://vendor.test/x").status_code == status
            return
        with pytest.raises(rc.errors.ApiError) as caught:
            client.get("https://vendor.test/x")
    assert caught.value.category == category
    assert caught.value.code == code


@pytest.mark.anyio
@pytest.mark.parametrize(("vendor", "status", "body", "category", "code"), CASES)
async def test_hard_cases_through_the_async_transport(
    vendor: str, status: int, body: Any, category: str, code: object
) -> None:
    transport = rc.ResilientTransport(
        vendor, transport=httpx.MockTransport(lambda r: _as_response(status, body)), **FakeClock().options()
    )
    async with httpx.AsyncClient(transport=transport) as client:
        if category == "ok":
            assert (await client.get("https://vendor.test/x")).status_code == status
            return
        with pytest.raises(rc.errors.ApiError) as caught:
            await client.get("https://vendor.test/x")
    assert caught.value.category == category
    assert caught.value.code == code
