"""Errors: one readable line, no secrets anywhere, pickles that come back as the same class."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import httpx
import pytest

import resilient_client as rc
from resilient_client import errors
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
        "on POST https://hyper.test/api/Clients after 1 attempt"
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
