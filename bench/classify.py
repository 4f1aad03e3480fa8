"""How long classifying a typical error body takes (SPEC section 7: <= 20 microseconds).

Measures the pure path the transport runs on an error response: envelope reader + classifier.
Prints microseconds per call for one typical body per vendor.
"""

from __future__ import annotations

import json
import timeit

import resilient_client as rc

BODIES = {
    "updox": (200, {"successful": False, "responseCode": 4010, "responseMessage": "Unauthorized"}),
    "usta": (
        400,
        {
            "errors": [
                {
                    "errorCode": 5000,
                    "message": "validation error",
                    "subject": "firstName",
                    "subjectType": "parameter",
                }
            ]
        },
    ),
    "medable": (
        400,
        {
            "object": "fault",
            "name": "validation",
            "code": "kValidationError",
            "status": 400,
            "faults": [
                {
                    "object": "fault",
                    "code": "kRequired",
                    "status": 400,
                    "path": "dob",
                    "reason": "Required property",
                }
            ],
        },
    ),
    "hyper": (423, {"ResponseCode": 10, "ResponseMsgEng": "The requested resource is busy."}),
}


def main() -> None:
    number = 20000
    for vendor, (status, doc) in BODIES.items():
        catalog = rc.catalog(vendor)
        body = json.dumps(doc).encode()

        def run(catalog: rc.Catalog = catalog, body: bytes = body, status: int = status) -> rc.Outcome:
            return rc.classify(catalog, status, rc.read_envelope(catalog.envelope, body))

        outcome = run()
        best = min(timeit.repeat(run, number=number, repeat=5)) / number
        print(f"{vendor:8s} {outcome.category:18s} {best * 1e6:6.2f} us per body ({len(body)} bytes)")


if __name__ == "__main__":
    main()
