"""Vendor clients: each vendor's habits, sync and async, through an injected inner transport."""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import resilient_client as rc
from resilient_client.testing import FakeClock, fault_response

Handler = Callable[[httpx.Request], httpx.Response]


def recorder(*responses: httpx.Response) -> tuple[list[httpx.Request], Handler]:
    """A handler answering ``responses`` in order (the last one repeats), recording requests."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        # A copy: a replayed request is the same object, its headers changed in place.
        seen.append(
            httpx.Request(request.method, request.url, headers=request.headers, content=request.read())
        )
        answer = responses[min(len(seen), len(responses)) - 1]
        # A fresh response each time: httpx binds a returned response to the client that got it.
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    return seen, handler


def fresh(answer: httpx.Response) -> httpx.Response:
    return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


HYPER_OK = httpx.Response(200, json={"ResponseCode": 0, "ResponseMsgEng": "Success"})
USTA_OK = httpx.Response(200, json={"id": 1})


# -- bearer tokens: Hyper and USTA ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("client_class", "rejection", "ok"),
    [
        pytest.param(rc.HyperClient, fault_response("hyper", 6), HYPER_OK, id="hyper-code-6"),
        pytest.param(
            rc.HyperClient,
            httpx.Response(401, text="<html>Unauthorized</html>"),
            HYPER_OK,
            id="hyper-gateway-401",
        ),
        pytest.param(rc.UstaClient, fault_response("usta", 4003), USTA_OK, id="usta-4003"),
        pytest.param(
            rc.UstaClient,
            httpx.Response(401, json={"error": "invalid_token", "error_description": "Token expired"}),
            USTA_OK,
            id="usta-oauth-invalid-token",
        ),
        pytest.param(rc.UstaClient, httpx.Response(401), USTA_OK, id="usta-bare-401"),
    ],
)
def test_a_rejected_token_is_asked_again_once_and_the_request_replayed(
    client_class: type[httpx.Client], rejection: httpx.Response, ok: httpx.Response
) -> None:
    seen, handler = recorder(rejection, ok)
    tokens = iter(["first-token-1", "second-token-2"])
    asked: list[str] = []

    def provider() -> str:
        asked.append(token := next(tokens))
        return token

    with client_class(  # type: ignore[call-arg]
        base_url="https://vendor.test", token_provider=provider, transport=httpx.MockTransport(handler)
    ) as client:
        response = client.post("/api/things", json={"a": 1})
    assert response.status_code == 200
    assert asked == ["first-token-1", "second-token-2"]
    assert [r.headers["authorization"] for r in seen] == ["Bearer first-token-1", "Bearer second-token-2"]
    assert json.loads(seen[1].content) == {"a": 1}


def test_a_token_rejected_twice_raises_the_authentication_error() -> None:
    seen, handler = recorder(fault_response("hyper", 6))
    with (
        rc.HyperClient(
            base_url="https://hyper.test",
            token_provider=lambda: "tok-abcdef",
            transport=httpx.MockTransport(handler),
        ) as client,
        pytest.raises(rc.errors.AuthenticationError) as caught,
    ):
        client.get("/api/x")
    assert len(seen) == 2
    assert caught.value.code == 6
    assert "tok-abcdef" not in str(caught.value) + repr(caught.value)


@pytest.mark.parametrize("source", ["argument", "environment"])
def test_a_fixed_token_is_never_refreshed(source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen, handler = recorder(fault_response("hyper", 6))
    kwargs: dict[str, Any] = {"token": "fixed-token"} if source == "argument" else {}
    # The argument wins over the environment, which holds the same value only when it is the source.
    monkeypatch.setenv("RESILIENT_CLIENT_HYPER_TOKEN", "env-token" if source == "argument" else "fixed-token")
    with (
        rc.HyperClient(
            base_url="https://hyper.test", transport=httpx.MockTransport(handler), **kwargs
        ) as client,
        pytest.raises(rc.errors.AuthenticationError) as caught,
    ):
        client.get("/api/x")
    assert len(seen) == 1  # code 6 would ask a provider again; a fixed token has none to ask
    assert seen[0].headers["authorization"] == "Bearer fixed-token"
    assert "fixed-token" not in str(caught.value) + repr(caught.value)


def test_other_auth_faults_are_not_retried() -> None:
    seen, handler = recorder(fault_response("hyper", 8))
    with (
        rc.HyperClient(
            base_url="https://hyper.test",
            token_provider=lambda: "tok-1",
            transport=httpx.MockTransport(handler),
        ) as client,
        pytest.raises(rc.errors.PermissionDeniedError),
    ):
        client.get("/api/x")
    assert len(seen) == 1


def test_attempts_count_the_request_sent_before_a_token_refresh() -> None:
    seen, handler = recorder(fault_response("hyper", 6), HYPER_OK)
    tokens = iter(["tok-1111", "tok-2222"])
    with rc.HyperClient(
        base_url="https://hyper.test",
        token_provider=lambda: next(tokens),
        transport=httpx.MockTransport(handler),
    ) as client:
        response = client.get("/api/x")
    assert len(seen) == 2
    assert response.extensions[rc.ATTEMPTS_EXTENSION] == 2


def test_attempts_count_a_refresh_that_ends_in_a_transport_error() -> None:
    answers: list[httpx.Response | Exception] = [fault_response("hyper", 6), httpx.ConnectError("down")]

    def handler(request: httpx.Request) -> httpx.Response:
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return fresh(answer)

    tokens = iter(["tok-1111", "tok-2222"])
    policy = rc.RetryPolicy(retry=rc.RetrySettings(max_attempts=1))
    with (
        rc.HyperClient(
            base_url="https://hyper.test",
            token_provider=lambda: next(tokens),
            transport=httpx.MockTransport(handler),
            policy=policy,
        ) as client,
        pytest.raises(httpx.ConnectError) as caught,
    ):
        client.get("/api/x")
    assert getattr(caught.value, "attempts", None) == 2


def test_every_transport_of_a_client_shares_one_retry_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    mounted = httpx.MockTransport(lambda r: HYPER_OK)
    with rc.HyperClient(
        base_url="https://hyper.test", token="t", mounts={"https://other.test": mounted}
    ) as client:
        proxied = client._transport_for_url(httpx.URL("https://hyper.test/x"))
        other = client._transport_for_url(httpx.URL("https://other.test/x"))
        assert isinstance(proxied, rc.ResilientTransport) and isinstance(other, rc.ResilientTransport)
        assert proxied is not client.resilient_transport
        assert proxied._budget is other._budget is client.resilient_transport._budget


def test_connection_options_reach_the_transport_the_client_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("ALL_PROXY", raising=False)
    limits = httpx.Limits(max_connections=1)
    with rc.HyperClient(base_url="https://hyper.test", token="t", verify=False, limits=limits) as client:
        inner = client.resilient_transport._sync_inner()
        assert isinstance(inner, httpx.HTTPTransport)
        pool = inner._pool
        assert pool._max_connections == 1
        assert pool._ssl_context.verify_mode.name == "CERT_NONE"


def test_proxies_and_mounts_are_wrapped_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    served: list[str] = []

    def mounted(request: httpx.Request) -> httpx.Response:
        served.append(str(request.url))
        return fault_response("hyper", 7)

    with rc.HyperClient(
        base_url="https://hyper.test", token="t", mounts={"https://other.test": httpx.MockTransport(mounted)}
    ) as client:
        via_env_proxy = client._transport_for_url(httpx.URL("https://hyper.test/x"))
        assert isinstance(via_env_proxy, rc.ResilientTransport)
        with pytest.raises(rc.errors.Hyper7Error):
            client.get("https://other.test/x")
    assert served == ["https://other.test/x"]
    aclient = rc.AsyncHyperClient(base_url="https://hyper.test", token="t", proxy="http://127.0.0.1:9")
    assert isinstance(aclient._transport_for_url(httpx.URL("https://hyper.test/x")), rc.ResilientTransport)


def test_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESILIENT_CLIENT_USTA_TOKEN", "env-token-123")
    seen, handler = recorder(USTA_OK)
    with rc.UstaClient(base_url="https://usta.test", transport=httpx.MockTransport(handler)) as client:
        client.get("/v1/players")
    assert seen[0].headers["authorization"] == "Bearer env-token-123"


@pytest.mark.anyio
async def test_async_token_provider_is_awaited_and_refreshed() -> None:
    seen, handler = recorder(fault_response("usta", 4003), USTA_OK)
    tokens = iter(["async-one", "async-two"])

    async def provider() -> str:
        return next(tokens)

    async with rc.AsyncUstaClient(
        base_url="https://usta.test", token_provider=provider, transport=httpx.MockTransport(handler)
    ) as client:
        response = await client.put("/v1/players/1", json={"name": "x"})
    assert response.json() == {"id": 1}
    assert [r.headers["authorization"] for r in seen] == ["Bearer async-one", "Bearer async-two"]


def test_an_async_token_provider_in_a_sync_client_is_a_clear_error() -> None:
    async def provider() -> str:
        return "never"

    with (
        rc.HyperClient(
            base_url="https://hyper.test",
            token_provider=provider,
            transport=httpx.MockTransport(lambda r: fresh(HYPER_OK)),
        ) as client,
        pytest.raises(TypeError, match="async token provider"),
    ):
        client.get("/x")


# -- Updox ----------------------------------------------------------------------------------------

UPDOX_CREDENTIALS = {
    "application_id": "app-id",
    "application_password": "app-secret-pw",
    "account_id": "acct-1",
    "user_id": "user-1",
}


def test_updox_adds_the_auth_block_to_each_call() -> None:
    seen, handler = recorder(httpx.Response(200, json={"successful": True, "responseCode": 2000}))
    with rc.UpdoxClient(
        base_url="https://updox.test", transport=httpx.MockTransport(handler), **UPDOX_CREDENTIALS
    ) as client:
        assert client.call("MessageList", {"since": "2026-01-01"})["responseCode"] == 2000
        assert client.ping()["successful"] is True
    assert [str(r.url) for r in seen] == [
        "https://updox.test/api/io/MessageList",
        "https://updox.test/api/io/Ping",
    ]
    body = json.loads(seen[0].content)
    assert body == {
        "since": "2026-01-01",
        "auth": {
            "applicationId": "app-id",
            "applicationPassword": "app-secret-pw",
            "accountId": "acct-1",
            "userId": "user-1",
        },
    }
    assert seen[0].method == "POST"


def test_updox_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in UPDOX_CREDENTIALS.items():
        monkeypatch.setenv(f"RESILIENT_CLIENT_UPDOX_{name.upper()}", value)
    seen, handler = recorder(httpx.Response(200, json={"successful": True, "responseCode": 2000}))
    with rc.UpdoxClient(base_url="https://updox.test", transport=httpx.MockTransport(handler)) as client:
        client.ping()
    assert json.loads(seen[0].content)["auth"]["applicationPassword"] == "app-secret-pw"


def test_updox_errors_under_200_raise_and_never_show_the_password(caplog: pytest.LogCaptureFixture) -> None:
    _, handler = recorder(
        fault_response("updox", 4010, message="Unauthorized for password app-secret-pw"),
    )
    caplog.set_level(logging.DEBUG, logger="resilient_client")
    with rc.UpdoxClient(
        base_url="https://updox.test", transport=httpx.MockTransport(handler), **UPDOX_CREDENTIALS
    ) as client:
        assert "app-secret-pw" not in repr(client)
        with pytest.raises(rc.errors.UpdoxError) as caught:
            client.call("MessageList")
    error = caught.value
    assert isinstance(error, rc.errors.AuthenticationError)
    assert error.code == 4010
    assert error.http_status == 200
    shown = str(error) + repr(error) + caplog.text + repr(pickle.loads(pickle.dumps(error)).__dict__)
    assert "app-secret-pw" not in shown


def test_updox_read_calls_are_retried_but_writes_are_not() -> None:
    server_error = httpx.Response(
        200, json={"successful": False, "responseCode": 5999, "responseMessage": "x"}
    )
    ok = httpx.Response(200, json={"successful": True, "responseCode": 2000})
    clock = FakeClock()
    seen, handler = recorder(server_error, ok)
    with rc.UpdoxClient(
        base_url="https://updox.test",
        transport=httpx.MockTransport(handler),
        transport_options=clock.options(),
    ) as client:
        assert client.call("MessageList")["responseCode"] == 2000
        assert len(seen) == 2
        seen.clear()
        with pytest.raises(rc.errors.ServerError) as caught:
            client.call("PatientsSync", {"patients": []})
    assert len(seen) == 1
    assert caught.value.attempts == 1


def test_updox_partial_failure_lists_the_failed_items() -> None:
    body = {
        "successful": True,
        "responseCode": 2000,
        "responseMessage": "OK",
        "statuses": [
            {"id": "26", "success": True, "message": None},
            {"id": "27", "success": False, "message": "The appointment date is not valid"},
        ],
    }
    with (
        rc.UpdoxClient(
            base_url="https://updox.test",
            transport=httpx.MockTransport(lambda r: httpx.Response(200, json=body)),
        ) as client,
        pytest.raises(rc.errors.PartialFailure) as caught,
    ):
        client.call("AppointmentsSync", {"appointments": []})
    assert caught.value.code == 2000
    assert [(f.item_id, f.message) for f in caught.value.details] == [
        ("27", "The appointment date is not valid")
    ]


def test_updox_method_names_are_checked() -> None:
    with (
        rc.UpdoxClient(
            base_url="https://updox.test", transport=httpx.MockTransport(lambda r: fresh(USTA_OK))
        ) as client,
        pytest.raises(ValueError, match="not an Updox method"),
    ):
        client.call("../admin")


@pytest.mark.anyio
async def test_async_updox_call_and_ping() -> None:
    seen, handler = recorder(httpx.Response(200, json={"successful": True, "responseCode": 2000}))
    async with rc.AsyncUpdoxClient(
        base_url="https://updox.test", transport=httpx.MockTransport(handler), **UPDOX_CREDENTIALS
    ) as client:
        await client.ping()
        await client.call("UserGet", {"userId": "u"})
    assert [r.url.path for r in seen] == ["/api/io/Ping", "/api/io/UserGet"]
    assert all(json.loads(r.content)["auth"]["userId"] == "user-1" for r in seen)


# -- Medable --------------------------------------------------------------------------------------


def medable_server() -> tuple[list[httpx.Request], Handler]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(
            httpx.Request(request.method, request.url, headers=request.headers, content=request.read())
        )
        if request.url.path.endswith("/accounts/login"):
            body = json.loads(request.content)
            if "location" not in body:
                return fault_response("medable", "kNewLocation")
            return httpx.Response(
                200,
                json={"object": "account", "_id": "a1"},
                headers={"Medable-Csrf-Token": "csrf-token-1", "Set-Cookie": "md.sid=session-1; Path=/"},
            )
        return httpx.Response(200, json={"object": "list", "data": []})

    return seen, handler


def test_medable_client_key_cookies_csrf_and_location_verification() -> None:
    seen, handler = medable_server()
    with rc.MedableClient(
        base_url="https://api.medable.test/org/v2",
        client_key="client-key-xyz",
        transport=httpx.MockTransport(handler),
    ) as client:
        with pytest.raises(rc.errors.VerificationRequired) as caught:
            client.login("a@b.test", "hunter2-pass")
        assert caught.value.code == "kNewLocation"
        assert "hunter2-pass" not in str(caught.value) + repr(caught.value)
        account = client.login("a@b.test", "hunter2-pass", verification_token="123456")
        assert account["_id"] == "a1"
        client.get("/accounts/me")
    login_body = json.loads(seen[1].content)
    assert login_body["location"] == {"verificationToken": "123456"}
    assert all(r.headers["medable-client-key"] == "client-key-xyz" for r in seen)
    assert "medable-csrf-token" not in seen[1].headers
    assert seen[2].headers["medable-csrf-token"] == "csrf-token-1"
    assert "md.sid=session-1" in seen[2].headers["cookie"]
    assert "client-key-xyz" not in repr(client)


@pytest.mark.anyio
async def test_async_medable_echoes_csrf() -> None:
    seen, handler = medable_server()
    async with rc.AsyncMedableClient(
        base_url="https://api.medable.test/org/v2",
        client_key="k-async-1",
        transport=httpx.MockTransport(handler),
    ) as client:
        await client.login("a@b.test", "pw-async-1", verification_token="999")
        await client.get("/accounts/me")
    assert seen[-1].headers["medable-csrf-token"] == "csrf-token-1"
    assert seen[-1].headers["medable-client-key"] == "k-async-1"


def test_medable_throttle_waits_what_the_server_asked() -> None:
    clock = FakeClock()
    _, handler = recorder(
        fault_response("medable", "kThrottled", retry_after=3), httpx.Response(200, json={})
    )
    with rc.MedableClient(
        base_url="https://m.test",
        client_key="key-1234",
        transport=httpx.MockTransport(handler),
        transport_options=clock.options(),
    ) as client:
        response = client.post("/c_things", json={})
    assert clock.sleeps == [3.0]
    assert response.extensions[rc.ATTEMPTS_EXTENSION] == 2


# -- what every client keeps from httpx -----------------------------------------------------------


def test_clients_keep_httpx_features(tmp_path: Any) -> None:
    hooks: list[str] = []
    policy_file = tmp_path / "one.toml"
    policy_file.write_text('extends = "hyper"\n[retry]\nmax_attempts = 1\n')

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/busy":
            return fault_response("hyper", 10)
        return httpx.Response(
            200, json={"ResponseCode": 0, "x": 1}, headers={"content-type": "application/json"}
        )

    with rc.HyperClient(
        base_url="https://hyper.test/api",
        token="t-1234",
        transport=httpx.MockTransport(handler),
        event_hooks={"request": [lambda r: hooks.append(r.url.path)]},
        timeout=5.0,
        headers={"X-Trace": "1"},
        policy=policy_file,
    ) as client:
        assert isinstance(client, httpx.Client)
        with client.stream("GET", "/data") as response:
            assert json.loads(response.read()) == {"ResponseCode": 0, "x": 1}
        with pytest.raises(rc.errors.Hyper10Error) as caught:
            client.post("/busy", json={})
        assert caught.value.attempts == 1
    assert hooks == ["/api/data", "/api/busy"]


def test_policy_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    policy_file = tmp_path / "env.toml"
    policy_file.write_text('extends = "default"\n[retry]\nmax_attempts = 2\n')
    monkeypatch.setenv(rc.POLICY_ENV, str(policy_file))
    clock = FakeClock()
    seen, handler = recorder(httpx.Response(503))
    with (
        rc.UstaClient(
            base_url="https://usta.test",
            token="t",
            transport=httpx.MockTransport(handler),
            transport_options=clock.options(),
        ) as client,
        pytest.raises(rc.errors.ServiceUnavailableError) as caught,
    ):
        client.get("/v1/x")
    assert caught.value.attempts == 2
    assert len(seen) == 2


def test_every_client_builds_from_base_url_and_transport_alone() -> None:
    for cls in (rc.UpdoxClient, rc.UstaClient, rc.MedableClient, rc.HyperClient):
        with cls(
            base_url="https://v.test", transport=httpx.MockTransport(lambda r: fresh(USTA_OK))
        ) as client:
            assert client.resilient_transport.vendor == cls.vendor
            assert repr(client) == f"{cls.__name__}(base_url='https://v.test')"


def test_secrets_are_masked_per_client_not_per_process() -> None:
    # One client's password ("password" here) must not mask that word in another client's errors.
    with (
        rc.MedableClient(
            base_url="https://m.test",
            client_key="key-1",
            transport=httpx.MockTransport(lambda r: fault_response("medable", "kNewLocation")),
        ) as first,
        pytest.raises(rc.errors.VerificationRequired),
    ):
        first.login("a@b.test", "password")
    with (
        rc.MedableClient(
            base_url="https://m.test",
            transport=httpx.MockTransport(lambda r: fault_response("medable", "kInvalidCredentials")),
        ) as second,
        pytest.raises(rc.errors.AuthenticationError) as caught,
    ):
        second.get("/x")
    assert caught.value.message == "Invalid email/password combination."
