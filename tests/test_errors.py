"""Errors: one readable line, no secrets anywhere, pickles that come back as the same class."""

from __future__ import annotations

import ast
import logging
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

import resilient_client as rc
from resilient_client import errors
from resilient_client._redact import Secrets
from resilient_client.testing import FakeClock, fault_response

SECRETS = [
    "Bearer-sekrit-123",
    "cookie-sekrit-456",
    "client-key-sekrit-789",
    "url-token-sekrit",
    "body-pw-sekrit",
]


def raise_with_secrets(caplog: pytest.LogCaptureFixture, answer: httpx.Response) -> errors.ApiError:
    caplog.set_level(logging.DEBUG, logger="resilient_client")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    transport = rc.ResilientTransport(
        "medable", transport=httpx.MockTransport(handler), **FakeClock().options()
    )
    with httpx.Client(transport=transport) as client, pytest.raises(errors.ApiError) as caught:
        client.put(
            "https://api.medable.test/org/v2/accounts?token=url-token-sekrit&api_key=url-token-sekrit&page=2",
            json={"email": "a@b.test", "password": "body-pw-sekrit"},
            headers={
                "Authorization": "Bearer Bearer-sekrit-123",
                "Cookie": "md.sid=cookie-sekrit-456",
                "Medable-Client-Key": "client-key-sekrit-789",
            },
        )
    return caught.value


def everything_shown(error: errors.ApiError, caplog: pytest.LogCaptureFixture) -> str:
    restored = pickle.loads(pickle.dumps(error))
    return "\n".join(
        [
            str(error),
            repr(error),
            caplog.text,
            str(restored),
            repr(restored),
            repr(vars(restored)),
            repr(error.details),
            str(pickle.dumps(error)),
        ]
    )


def test_secrets_never_reach_str_repr_logs_or_pickles(caplog: pytest.LogCaptureFixture) -> None:
    error = raise_with_secrets(caplog, fault_response("medable", "kTooBusy"))
    assert error.attempts == 4  # retried: the log has lines too
    shown = everything_shown(error, caplog)
    for secret in SECRETS:
        assert secret not in shown
    assert "page=2" in str(error)
    assert "[REDACTED]" in str(error)


def test_a_token_echoed_by_the_vendor_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    answer = fault_response(
        "medable", "kInvalidCredentials", message="bad token=echoed-sekrit for Bearer abc.def"
    )
    error = raise_with_secrets(caplog, answer)
    shown = everything_shown(error, caplog)
    assert "echoed-sekrit" not in shown
    assert "abc.def" not in shown


def test_what_the_request_carried_is_masked_when_the_vendor_echoes_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The transport used directly: it was told no secret, it finds them in the request it sent.
    echo = "client client-key-sekrit-789 rejected; body-pw-sekrit too short; sid cookie-sekrit-456"
    answer = fault_response(
        "medable",
        "kValidationError",
        message=echo,
        details=[{"code": "kInvalidArgument", "message": "body-pw-sekrit is too short", "path": "password"}],
    )
    shown = everything_shown(raise_with_secrets(caplog, answer), caplog)
    for secret in SECRETS:
        assert secret not in shown
    assert "rejected" in shown


@pytest.mark.parametrize(
    ("send", "secret"),
    [
        pytest.param({"params": {"api_key": "query-sekrit-1"}}, "query-sekrit-1", id="query-parameter"),
        pytest.param({"url": "https://ann:url-pw-sekrit@m.test/x"}, "url-pw-sekrit", id="url-password"),
        pytest.param({"data": {"password": "form-pw-sekrit"}}, "form-pw-sekrit", id="form-body"),
        pytest.param({"json": {"pin_password": 98765432}}, "98765432", id="numeric-json-field"),
        pytest.param({"auth": ("ann", "basic-pw-sekrit")}, "basic-pw-sekrit", id="basic-auth-password"),
    ],
)
def test_an_echoed_secret_is_masked_wherever_the_request_carried_it(
    send: dict[str, object], secret: str
) -> None:
    answer = fault_response("medable", "kInvalidArgument", message=f"rejected {secret} as given")
    transport = rc.ResilientTransport("medable", transport=httpx.MockTransport(lambda r: answer))
    url = str(send.pop("url", "https://m.test/x"))
    with httpx.Client(transport=transport) as client, pytest.raises(errors.ApiError) as caught:
        client.post(url, **send)  # type: ignore[arg-type]
    error = caught.value
    restored = pickle.loads(pickle.dumps(error))
    shown = " ".join([str(error), repr(error), str(restored), repr(vars(restored))])
    assert secret not in shown
    assert "rejected [REDACTED] as given" in str(error)


@pytest.mark.parametrize("code", ["kBad\nInjected", "invalid_token\r\nX-Evil: 1"])
def test_a_code_with_line_breaks_still_gives_one_line(code: str) -> None:
    error = errors.ApiError("m", vendor="usta", code=code)
    assert "\n" not in str(error) and "\r" not in str(error)


def test_str_is_one_readable_line() -> None:
    transport = rc.ResilientTransport(
        "hyper", transport=httpx.MockTransport(lambda r: fault_response("hyper", 7))
    )
    with httpx.Client(transport=transport) as client, pytest.raises(errors.Hyper7Error) as caught:
        client.post("https://hyper.test/api/Clients", json={})
    text = str(caught.value)
    assert text == (
        "hyper 7 (validation): Please fill up the required fields. [HTTP 400] "
        "on POST https://hyper.test/api/Clients after 1 attempt; "
        "not retried: the policy does not retry validation"
    )


def test_pickle_round_trip_keeps_class_and_attributes() -> None:
    transport = rc.ResilientTransport(
        "usta",
        transport=httpx.MockTransport(
            lambda r: httpx.Response(
                400,
                json={"errors": [{"errorCode": 5000, "message": "validation error", "subject": "firstName"}]},
            )
        ),
    )
    with httpx.Client(transport=transport) as client, pytest.raises(errors.Usta5000Error) as caught:
        client.post("https://usta.test/v1/players", json={})
    restored = pickle.loads(pickle.dumps(caught.value))
    assert type(restored) is errors.Usta5000Error
    for name in (
        "vendor",
        "code",
        "message",
        "http_status",
        "retryable",
        "details",
        "attempts",
        "retry_after",
        "reason",
    ):
        assert getattr(restored, name) == getattr(caught.value, name)
    assert restored.request is None and restored.response is None


@pytest.mark.parametrize(
    "cls",
    [
        pytest.param(errors.HyperServerError, id="vendor-category"),
        pytest.param(errors.RateLimitedError, id="category"),
        pytest.param(errors.MedableThrottledFault, id="medable-code"),
    ],
)
def test_every_kind_of_class_pickles(cls: type[errors.ApiError]) -> None:
    error = cls("boom", vendor="hyper", code=None, retry_after=2.5, attempts=3)
    restored = pickle.loads(pickle.dumps(error))
    assert type(restored) is cls
    assert (restored.retry_after, restored.attempts, restored.message) == (2.5, 3, "boom")


def test_policy_error_names_file_key_and_problem(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text("[retry]\nmax_wait = -1\n")
    with pytest.raises(rc.PolicyError) as caught:
        rc.load_policy(path)
    assert str(caught.value) == f"{path}: retry.max_wait: must be >= 0"
    assert (caught.value.file, caught.value.key_path) == (str(path), "retry.max_wait")
    assert isinstance(caught.value, errors.ResilientClientError)
    restored = pickle.loads(pickle.dumps(caught.value))
    assert str(restored) == str(caught.value)


def test_the_tree() -> None:
    assert issubclass(errors.ValidationError, errors.BadRequestError)
    for soft in (
        errors.IncompleteSuccess,
        errors.NoResults,
        errors.VerificationRequired,
        errors.NotReady,
        errors.PartialFailure,
    ):
        assert issubclass(soft, errors.SoftFault)
    assert issubclass(errors.SoftFault, errors.ApiError)
    assert issubclass(errors.ApiError, errors.ResilientClientError)
    assert issubclass(errors.PolicyError, errors.ResilientClientError)
    assert issubclass(errors.RejectedError, errors.ResilientClientError)
    for refusal in (
        errors.CircuitOpenError,
        errors.ThrottledError,
        errors.GuardTimeoutError,
        errors.StateUnavailableError,
    ):
        assert issubclass(refusal, errors.RejectedError)
    for cls in (errors.ApiError, errors.RejectedError):
        assert issubclass(cls, httpx.HTTPError)
    assert not issubclass(errors.PolicyError, httpx.HTTPError)
    for name in ("UpdoxError", "UstaError", "MedableError", "HyperError"):
        assert issubclass(getattr(errors, name), errors.ApiError)
    with pytest.raises(AttributeError):
        errors.NoSuchClass  # noqa: B018


def test_a_multi_line_vendor_message_still_gives_one_line() -> None:
    answer = fault_response("hyper", 11, message="Security Alert:\n  too many\r\nattempts")
    transport = rc.ResilientTransport("hyper", transport=httpx.MockTransport(lambda r: answer))
    with httpx.Client(transport=transport) as client, pytest.raises(errors.Hyper11Error) as caught:
        client.get("https://hyper.test/x")
    assert "Security Alert: too many attempts [HTTP 422]" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert caught.value.message == "Security Alert:\n  too many\r\nattempts"


# -- every failure of a call is an httpx.HTTPError, and says why the SDK stopped there -----------

URL = "https://api.test/v1/things"
Answer = httpx.Response | type[Exception]


def replay(answers: list[Answer]) -> httpx.MockTransport:
    """Answers in order, the last one repeating; an exception class is raised afresh each time."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        answer = answers[min(len(sent), len(answers) - 1)]
        sent.append(request)
        if isinstance(answer, type):
            raise answer("the network said no")
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    return httpx.MockTransport(handler)


def fail_sync(vendor: str, method: str, answers: list[Answer]) -> httpx.HTTPError:
    transport = rc.ResilientTransport(vendor, transport=replay(answers), **FakeClock().options())
    # `except httpx.HTTPError` catches every failure of a call, as it did before the transport.
    with httpx.Client(transport=transport) as client, pytest.raises(httpx.HTTPError) as caught:
        client.request(method, URL, json={})
    return caught.value


async def fail_async(vendor: str, method: str, answers: list[Answer]) -> httpx.HTTPError:
    transport = rc.ResilientTransport(vendor, transport=replay(answers), **FakeClock().options())
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.HTTPError) as caught:
            await client.request(method, URL, json={})
    return caught.value


REASONS = [
    pytest.param(
        "hyper",
        "GET",
        [fault_response("hyper", 7)],
        "not retried: the policy does not retry validation",
        1,
        id="category-not-retried",
    ),
    pytest.param(
        "usta", "POST", [httpx.Response(500)], "not retried: POST may have been processed", 1, id="post-500"
    ),
    pytest.param("hyper", "GET", [httpx.Response(503)], "4 of 4 attempts made", 4, id="attempts-spent"),
    pytest.param(
        "medable",
        "GET",
        [fault_response("medable", "kThrottled", retry_after=3600)],
        "Retry-After 3600 s exceeds retry.max_retry_after 60 s",
        1,
        id="retry-after-above-the-cap",
    ),
    pytest.param(
        "medable",
        "GET",
        [fault_response("medable", "kThrottled", retry_after=25)],
        "a 25 s wait would pass the deadline: 5 s left of retry.total_timeout 30 s",
        2,
        id="deadline",
    ),
    pytest.param("hyper", "POST", [httpx.ConnectError], "4 of 4 attempts made", 4, id="connect-error"),
    pytest.param(
        "hyper",
        "POST",
        [httpx.ReadTimeout],
        "not retried: POST may have been processed",
        1,
        id="read-timeout",
    ),
]


def check_reason(error: httpx.HTTPError, reason: str, attempts: int) -> None:
    assert error.reason == reason  # type: ignore[attr-defined]
    assert error.attempts == attempts  # type: ignore[attr-defined]
    if isinstance(error, errors.ApiError):
        text = str(error)
        assert text.endswith(f"; {reason}")
        assert f"on {error.request.method} {URL}" in text  # type: ignore[union-attr]
        assert f"after {attempts} attempt" in text or reason.startswith(f"{attempts} of ")
        assert str(pickle.loads(pickle.dumps(error))) == text.replace(f" on {error.request.method} {URL}", "")  # type: ignore[union-attr]
    else:  # a transport error stays httpx's own, with the reason beside the attempts
        assert isinstance(error, httpx.TransportError)
        assert f"resilient_client: {attempts} attempt(s); {reason}" in error.__notes__


@pytest.mark.parametrize(("vendor", "method", "answers", "reason", "attempts"), REASONS)
def test_every_error_says_why_the_sdk_stopped_there(
    vendor: str, method: str, answers: list[Answer], reason: str, attempts: int
) -> None:
    check_reason(fail_sync(vendor, method, answers), reason, attempts)


@pytest.mark.anyio
@pytest.mark.parametrize(("vendor", "method", "answers", "reason", "attempts"), REASONS)
async def test_every_error_says_why_the_sdk_stopped_there_async(
    vendor: str, method: str, answers: list[Answer], reason: str, attempts: int
) -> None:
    check_reason(await fail_async(vendor, method, answers), reason, attempts)


def test_attempts_spent_are_said_once_in_str() -> None:
    error = fail_sync("hyper", "GET", [fault_response("hyper", 50)])
    assert str(error) == (
        "hyper 50 (service_unavailable): You can run only one journal request at a time for a specific "
        f"account. [HTTP 503] on GET {URL}; 4 of 4 attempts made"
    )


def test_a_status_only_fault_says_its_status_once() -> None:
    proxy_page = httpx.Response(503, text="<html><body>Service Unavailable</body></html>")
    error = fail_sync("hyper", "GET", [proxy_page])
    assert isinstance(error, errors.HyperServiceUnavailableError)
    assert error.message == "Service Unavailable"
    assert str(error) == (
        f"hyper (service_unavailable): Service Unavailable [HTTP 503] on GET {URL}; 4 of 4 attempts made"
    )


@pytest.mark.anyio
async def test_a_failed_call_keeps_its_request_and_a_hand_built_or_unpickled_error_answers_none() -> None:
    error = await fail_async("hyper", "POST", [fault_response("hyper", 7)])
    assert isinstance(error, errors.Hyper7Error)
    assert error.request is not None and error.request.url == URL
    # httpx.HTTPError.request raises when unset; these errors answer None, as they always did.
    assert pickle.loads(pickle.dumps(error)).request is None
    assert errors.Hyper10Error("locked").request is None
    assert errors.CircuitOpenError().request is None


def test_a_shipped_class_knows_its_vendor() -> None:
    assert errors.Hyper10Error("locked").vendor == "hyper"
    assert errors.MedableThrottledFault("slow").vendor == "medable"
    assert errors.RateLimitedError("slow").vendor == ""


# -- refusals: the SDK sent nothing ---------------------------------------------------------------

REFUSALS = [
    pytest.param(errors.RejectedError, {}, "a strategy refused to send the request", "", id="rejected"),
    pytest.param(
        errors.CircuitOpenError,
        {"retry_after": 12.5},
        "circuit open",
        "; retry after 12.5 s",
        id="circuit-open",
    ),
    pytest.param(
        errors.ThrottledError,
        {"retry_after": 2.0},
        "the rate limiter's wait would pass the deadline",
        "; retry after 2 s",
        id="throttled",
    ),
    pytest.param(
        errors.GuardTimeoutError,
        {"key": "account 7"},
        "a guarded key stayed busy",
        "; key 'account 7'",
        id="guard",
    ),
    pytest.param(
        errors.StateUnavailableError, {}, "the shared state store did not answer", "", id="state-unavailable"
    ),
]


@pytest.mark.parametrize(("cls", "facts", "reason", "tail"), REFUSALS)
def test_a_refusal_is_one_line_and_pickles_without_its_request(
    cls: type[errors.RejectedError], facts: dict[str, object], reason: str, tail: str
) -> None:
    request = httpx.Request(
        "POST",
        "https://hyper.test/journal?token=url-sekrit&page=2",
        headers={"Authorization": "Bearer header-sekrit"},
    )
    error = cls(vendor="hyper", request=request, **facts)  # type: ignore[arg-type]
    assert isinstance(error, httpx.HTTPError)
    assert error.request is request
    assert error.reason == reason
    assert (
        str(error)
        == f"hyper: POST https://hyper.test/journal?token=[REDACTED]&page=2 not sent: {reason}{tail}"
    )
    restored = pickle.loads(pickle.dumps(error))
    assert type(restored) is cls
    assert restored.request is None
    assert (restored.vendor, restored.reason) == ("hyper", reason)
    for name, value in facts.items():
        assert getattr(restored, name) == value
    assert str(restored) == f"hyper: the request not sent: {reason}{tail}"
    shown = " ".join([str(error), repr(error), str(restored), repr(restored), str(pickle.dumps(error))])
    assert "url-sekrit" not in shown and "header-sekrit" not in shown
    assert repr(error).startswith(f"{cls.__name__}(vendor='hyper', reason={reason!r}")


def test_a_refusal_masks_a_secret_in_its_reason_and_key() -> None:
    secrets = Secrets(["acct-sekrit-55"])
    error = errors.GuardTimeoutError(
        "account acct-sekrit-55 stayed busy 30 s", vendor="hyper", key="acct-sekrit-55", secrets=secrets
    )
    shown = " ".join([str(error), repr(error), repr(vars(pickle.loads(pickle.dumps(error))))])
    assert "acct-sekrit-55" not in shown
    assert error.key == "[REDACTED]"


# -- a secret the vendor echoes into any field is masked there ------------------------------------

ECHO = "echo-sekrit-4242"
ECHOES = [
    pytest.param(
        "medable",
        httpx.Response(400, json={"object": "fault", "code": ECHO, "message": "unknown"}),
        lambda e: e.code,
        id="code",
    ),
    pytest.param(
        "usta",
        httpx.Response(401, json={"error": f"bad_{ECHO}", "error_description": "no"}),
        lambda e: e.details[0].code,
        id="detail-code",
    ),
    pytest.param(
        "medable",
        httpx.Response(
            400,
            json={
                "object": "fault",
                "code": "kValidationError",
                "message": "invalid",
                "faults": [
                    {"object": "fault", "code": "kInvalidArgument", "message": "m", "path": f"a.{ECHO}"}
                ],
            },
        ),
        lambda e: e.details[0].path,
        id="path",
    ),
    pytest.param(
        "medable",
        httpx.Response(
            400, json={"object": "fault", "code": "kInvalidArgument", "errCode": ECHO, "message": "invalid"}
        ),
        lambda e: e.details[0].subcode,
        id="subcode",
    ),
    pytest.param(
        "updox",
        httpx.Response(
            200,
            json={
                "successful": True,
                "responseCode": 2000,
                "responseMessage": "OK",
                "statuses": [{"id": ECHO, "success": False, "code": f"E-{ECHO}", "message": "bad date"}],
            },
        ),
        lambda e: e.details[0].item_id + e.details[0].code,
        id="item-id-and-code",
    ),
    pytest.param(
        "medable",
        fault_response("medable", "kInvalidArgument", headers={"X-Request-Id": f"req-{ECHO}"}),
        lambda e: e.request_id,
        id="request-id",
    ),
]


@pytest.mark.parametrize(("vendor", "answer", "field"), ECHOES)
def test_a_secret_echoed_into_any_field_is_masked(
    vendor: str, answer: httpx.Response, field: Callable[[errors.ApiError], str]
) -> None:
    transport = rc.ResilientTransport(
        vendor, transport=httpx.MockTransport(lambda r: answer), secrets=(ECHO,)
    )
    with httpx.Client(transport=transport) as client, pytest.raises(errors.ApiError) as caught:
        client.post(URL, json={})
    error = caught.value
    assert "[REDACTED]" in field(error)
    restored = pickle.loads(pickle.dumps(error))
    shown = " ".join(
        [
            str(error),
            repr(error),
            repr(error.details),
            str(pickle.dumps(error)),
            str(restored),
            repr(vars(restored)),
        ]
    )
    assert ECHO not in shown


# -- the errors sit at the bottom of the package -------------------------------------------------

PACKAGE = Path(rc.__file__).parent
#: What the errors may import of the SDK: their own modules, and ``_redact``, a leaf.
ERRORS_MAY_IMPORT = {"resilient_client._redact"}


def sdk_imports(path: Path) -> set[str]:
    """Every module of the SDK that ``path`` imports: at the top, in a function, or for type checkers."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.ImportFrom):
            raise AssertionError(f"{path.name}: a relative import; this package spells imports in full")
    return {name for name in found if name == "resilient_client" or name.startswith("resilient_client.")}


def test_the_errors_import_nothing_of_the_sdk_but_redact_which_imports_nothing_of_it() -> None:
    for path in sorted((PACKAGE / "errors").glob("*.py")):
        outside = {name for name in sdk_imports(path) if not name.startswith("resilient_client.errors")}
        assert outside <= ERRORS_MAY_IMPORT, f"errors/{path.name} imports {sorted(outside)}"
    assert sdk_imports(PACKAGE / "_redact.py") == set()


def test_importing_the_errors_alone_loads_no_other_module_of_the_sdk() -> None:
    # The package's face imports everything: it is stood in for by an empty package, so only what
    # the errors themselves import is loaded.
    code = f"""
import sys, types
package = types.ModuleType("resilient_client")
package.__path__ = [{str(PACKAGE)!r}]
sys.modules["resilient_client"] = package
import resilient_client.errors
print(sorted(name for name in sys.modules if name.startswith("resilient_client.")))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(ast.literal_eval(done.stdout))
    assert "resilient_client.errors._tree" in loaded  # the stand-in did load the errors
    outside = {name for name in loaded if not name.startswith("resilient_client.errors")}
    assert outside <= ERRORS_MAY_IMPORT
