"""Vendor clients: each vendor's habits, sync and async, through an injected inner transport."""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import pickle
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import resilient_client as rc
from resilient_client import _httpx_compat
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


CREDENTIALS: dict[type[Any], dict[str, str]] = {
    rc.HyperClient: {"token": "tok-hyper"},
    rc.AsyncHyperClient: {"token": "tok-hyper"},
    rc.UstaClient: {"token": "tok-usta"},
    rc.AsyncUstaClient: {"token": "tok-usta"},
    rc.UpdoxClient: {"application_id": "app-id", "application_password": "app-secret-pw"},
    rc.AsyncUpdoxClient: {"application_id": "app-id", "application_password": "app-secret-pw"},
    rc.MedableClient: {"client_key": "client-key-xyz"},
    rc.AsyncMedableClient: {"client_key": "client-key-xyz"},
}
SYNC_CLIENTS = [rc.HyperClient, rc.UstaClient, rc.UpdoxClient, rc.MedableClient]
ASYNC_CLIENTS = [rc.AsyncHyperClient, rc.AsyncUstaClient, rc.AsyncUpdoxClient, rc.AsyncMedableClient]
# The clients that own httpx's auth= (the vendor's credentials): they do not take another one.
OWN_AUTH = {rc.HyperClient, rc.AsyncHyperClient, rc.UstaClient, rc.AsyncUstaClient}
OWN_AUTH |= {rc.UpdoxClient, rc.AsyncUpdoxClient}


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


@pytest.fixture(params=[True, False], ids=["httpx-builds-them", "the-client-builds-them"])
def transport_hooks(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether httpx builds a client's transports in the hooks the client overrides, or (an httpx
    without them: ``_httpx_compat``'s fallback) the client builds them through httpx's public API."""
    monkeypatch.setattr(_httpx_compat, "CLIENT_TRANSPORT_HOOKS", request.param)
    return bool(request.param)


def test_every_transport_of_a_client_shares_one_state_store(
    monkeypatch: pytest.MonkeyPatch, transport_hooks: bool
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    mounted = httpx.MockTransport(lambda r: HYPER_OK)
    with rc.HyperClient(
        base_url="https://hyper.test", token="t", mounts={"https://other.test": mounted}
    ) as client:
        proxied = client._transport_for_url(httpx.URL("https://hyper.test/x"))
        other = client._transport_for_url(httpx.URL("https://other.test/x"))
        assert isinstance(proxied, rc.ResilientTransport) and isinstance(other, rc.ResilientTransport)
        assert proxied is not client.resilient_transport
        assert proxied.state is other.state is client.resilient_transport.state


def test_connection_options_reach_the_transport_the_client_builds(
    monkeypatch: pytest.MonkeyPatch, transport_hooks: bool
) -> None:
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("ALL_PROXY", raising=False)
    limits = httpx.Limits(max_connections=1)
    with rc.HyperClient(base_url="https://hyper.test", token="t", verify=False, limits=limits) as client:
        inner = client.resilient_transport._inner
        assert isinstance(inner, httpx.HTTPTransport)
        pool = inner._pool
        assert pool._max_connections == 1
        assert pool._ssl_context.verify_mode.name == "CERT_NONE"


def test_proxies_and_mounts_are_wrapped_too(monkeypatch: pytest.MonkeyPatch, transport_hooks: bool) -> None:
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


def test_a_sync_provider_that_returns_a_coroutine_is_a_clear_error() -> None:
    # Only calling it tells: the constructor cannot see that a plain lambda hands back a coroutine.
    async def fetch() -> str:
        return "never"

    with (
        rc.HyperClient(
            base_url="https://hyper.test",
            token_provider=lambda: fetch(),  # type: ignore[arg-type,return-value]
            transport=httpx.MockTransport(lambda r: fresh(HYPER_OK)),
        ) as client,
        pytest.raises(TypeError, match="async token provider needs the Async client"),
    ):
        client.get("/x")


@pytest.mark.parametrize(
    ("returned", "error", "message"),
    [
        pytest.param(None, TypeError, "token_provider returned None", id="none"),
        pytest.param(1234, TypeError, "token_provider returned int", id="int"),
        pytest.param(b"bytes-token", TypeError, "token_provider returned bytes", id="bytes"),
        pytest.param("", ValueError, "token_provider returned an empty str", id="empty"),
    ],
)
def test_a_provider_that_returns_no_token_is_a_clear_error_at_first_use(
    returned: object, error: type[Exception], message: str
) -> None:
    seen, handler = recorder(HYPER_OK)
    with rc.HyperClient(
        base_url="https://hyper.test",
        token_provider=lambda: returned,  # type: ignore[arg-type,return-value]
        transport=httpx.MockTransport(handler),
    ) as client:
        with pytest.raises(error, match=message) as caught:
            client.get("/x")
    assert seen == []  # nothing was sent without a token
    assert "bytes-token" not in str(caught.value)


@pytest.mark.anyio
@pytest.mark.parametrize(("returned", "shown"), [(None, "None"), (1234, "int")])
async def test_an_async_provider_that_returns_no_token_is_a_clear_error(returned: object, shown: str) -> None:
    async def provider() -> object:
        return returned

    async with rc.AsyncUstaClient(
        base_url="https://usta.test",
        token_provider=provider,  # type: ignore[arg-type]
        transport=httpx.MockTransport(lambda r: fresh(USTA_OK)),
    ) as client:
        with pytest.raises(TypeError, match=f"token_provider returned {shown};"):
            await client.get("/x")


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
        **UPDOX_CREDENTIALS,
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
            **UPDOX_CREDENTIALS,
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
            base_url="https://updox.test",
            transport=httpx.MockTransport(lambda r: fresh(USTA_OK)),
            **UPDOX_CREDENTIALS,
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


@pytest.mark.parametrize("cls", [*CREDENTIALS], ids=lambda c: c.__name__)
def test_every_client_builds_from_base_url_transport_and_its_credentials(cls: type[Any]) -> None:
    client = cls(
        base_url="https://v.test", transport=httpx.MockTransport(lambda r: fresh(USTA_OK)), **CREDENTIALS[cls]
    )
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
            client_key="key-2",
            transport=httpx.MockTransport(lambda r: fault_response("medable", "kInvalidCredentials")),
        ) as second,
        pytest.raises(rc.errors.AuthenticationError) as caught,
    ):
        second.get("/x")
    assert caught.value.message == "Invalid email/password combination."


# -- constructors: every parameter visible, every wrong argument refused when the client is built --


@pytest.fixture
def no_credentials_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RESILIENT_CLIENT_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("cls", SYNC_CLIENTS + ASYNC_CLIENTS, ids=lambda c: c.__name__)
def test_every_httpx_option_is_an_explicit_parameter_with_httpx_default(cls: type[Any]) -> None:
    base = httpx.AsyncClient if cls in ASYNC_CLIENTS else httpx.Client
    ours = inspect.signature(cls.__init__).parameters
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in ours.values()), "a **kwargs hides options"
    for name, theirs in inspect.signature(base.__init__).parameters.items():
        if name == "self" or (name == "auth" and cls in OWN_AUTH):
            continue
        assert name in ours, f"{cls.__name__} lacks httpx's {name}="
        assert ours[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert ours[name].default == theirs.default, name
    for name in ("policy", "on_retry", "transport_options", *CREDENTIALS[cls]):
        assert ours[name].kind is inspect.Parameter.KEYWORD_ONLY
    if cls in OWN_AUTH:
        assert "auth" not in ours


MISSING = [
    pytest.param(rc.HyperClient, {}, "token", "RESILIENT_CLIENT_HYPER_TOKEN", id="hyper"),
    pytest.param(rc.AsyncHyperClient, {}, "token", "RESILIENT_CLIENT_HYPER_TOKEN", id="async-hyper"),
    pytest.param(rc.UstaClient, {"token": ""}, "token", "RESILIENT_CLIENT_USTA_TOKEN", id="usta-empty"),
    pytest.param(rc.AsyncUstaClient, {}, "token", "RESILIENT_CLIENT_USTA_TOKEN", id="async-usta"),
    pytest.param(rc.MedableClient, {}, "client_key", "RESILIENT_CLIENT_MEDABLE_CLIENT_KEY", id="medable"),
    pytest.param(
        rc.AsyncMedableClient, {}, "client_key", "RESILIENT_CLIENT_MEDABLE_CLIENT_KEY", id="async-medable"
    ),
    pytest.param(
        rc.UpdoxClient, {}, "application_id", "RESILIENT_CLIENT_UPDOX_APPLICATION_ID", id="updox-nothing"
    ),
    pytest.param(
        rc.AsyncUpdoxClient,
        {"application_id": "app-id"},
        "application_password",
        "RESILIENT_CLIENT_UPDOX_APPLICATION_PASSWORD",
        id="async-updox-no-password",
    ),
]


@pytest.mark.usefixtures("no_credentials_in_env")
@pytest.mark.parametrize(("cls", "given", "keyword", "variable"), MISSING)
def test_a_missing_credential_is_refused_at_construction_naming_keyword_and_variable(
    cls: type[Any], given: dict[str, str], keyword: str, variable: str
) -> None:
    with pytest.raises(TypeError) as caught:
        cls(base_url="https://v.test", transport=httpx.MockTransport(lambda r: fresh(USTA_OK)), **given)
    assert f"{cls.__name__}: no {keyword}: pass {keyword}=" in str(caught.value)
    assert variable in str(caught.value)


@pytest.mark.usefixtures("no_credentials_in_env")
def test_updox_needs_only_the_application_credentials() -> None:
    seen, handler = recorder(httpx.Response(200, json={"successful": True, "responseCode": 2000}))
    with rc.UpdoxClient(
        base_url="https://updox.test", transport=httpx.MockTransport(handler), **CREDENTIALS[rc.UpdoxClient]
    ) as client:
        client.call("PingWithApplicationAuth")
    assert json.loads(seen[0].content)["auth"] == {
        "applicationId": "app-id",
        "applicationPassword": "app-secret-pw",
    }


async def _async_hook(event: object) -> None:
    return None


class _AsyncCallable:
    async def __call__(self, *args: object) -> str:
        return "token"


WRONG_FOR_A_SYNC_CLIENT = [
    pytest.param({"on_retry": _async_hook}, "on_retry= is an async function", id="async-on-retry"),
    pytest.param(
        {"on_retry": functools.partial(_async_hook)}, "on_retry= is an async function", id="async-partial"
    ),
    pytest.param({"on_retry": "print"}, "on_retry= must be callable, got str", id="str-on-retry"),
    pytest.param(
        {"event_hooks": {"request": [_async_hook]}},
        "event_hooks['request'][0]= is an async function",
        id="async-event-hook",
    ),
    pytest.param(
        {"event_hooks": {"response": [print, None]}},
        "event_hooks['response'][1]= must be callable, got None",
        id="none-event-hook",
    ),
    pytest.param(
        {"event_hooks": {"requests": [print]}}, "event_hooks: unknown event 'requests'", id="misspelled-event"
    ),
    pytest.param(
        {"event_hooks": {"request": print}}, "event_hooks['request'] must be a list", id="hook-not-a-list"
    ),
    pytest.param(
        {"transport_options": {"clok": time.monotonic}},
        "transport_options: unknown key 'clok'; known: async_sleep, clock",
        id="option-key",
    ),
    pytest.param({"policy": 3}, "policy= must be a RetryPolicy, a path or", id="policy-type"),
    pytest.param(
        {"transport": httpx.ASGITransport(app=lambda *a: None)},
        "transport= must be an httpx.BaseTransport (with handle_request), got ASGITransport",
        id="async-transport",
    ),
    pytest.param(
        {"mounts": {"https://x.test": object()}},
        "mounts['https://x.test']= must be an httpx.BaseTransport",
        id="mount-type",
    ),
]


@pytest.mark.parametrize(("kwargs", "message"), WRONG_FOR_A_SYNC_CLIENT)
@pytest.mark.parametrize("cls", SYNC_CLIENTS, ids=lambda c: c.__name__)
def test_a_wrong_argument_is_refused_at_construction(
    cls: type[Any], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError) as caught:
        cls(base_url="https://v.test", **CREDENTIALS[cls], **kwargs)
    assert str(caught.value).startswith(f"{cls.__name__}: {message}")


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        pytest.param(
            rc.HyperClient,
            {"token_provider": _AsyncCallable()},
            "token_provider= is an async",
            id="async-obj",
        ),
        pytest.param(rc.UstaClient, {"token_provider": "tok"}, "token_provider= must be callable", id="str"),
        pytest.param(
            rc.AsyncUstaClient, {"token_provider": 42}, "token_provider= must be callable", id="async-int"
        ),
        pytest.param(
            rc.AsyncHyperClient,
            {"token": "t-1", "token_provider": lambda: "t-2"},
            "pass token= or token_provider=, not both",
            id="both",
        ),
        pytest.param(rc.HyperClient, {"token": 1234}, "token= must be a str, got int", id="token-int"),
        pytest.param(
            rc.MedableClient, {"client_key": b"k"}, "client_key= must be a str, got bytes", id="key"
        ),
        pytest.param(
            rc.UpdoxClient,
            {"application_id": 7, "application_password": "pw"},
            "application_id= must be a str, got int",
            id="updox-id",
        ),
        pytest.param(
            rc.AsyncHyperClient,
            {"token": "t-1", "event_hooks": {"response": 1}},
            "event_hooks['response'] must be a list",
            id="async-hooks",
        ),
        pytest.param(
            rc.AsyncMedableClient,
            {"client_key": "k-1", "transport": httpx.HTTPTransport()},
            "transport= must be an httpx.AsyncBaseTransport",
            id="sync-transport-in-async-client",
        ),
    ],
)
def test_wrong_credentials_and_providers_are_refused_at_construction(
    cls: type[Any], kwargs: dict[str, Any], message: str, no_credentials_in_env: None
) -> None:
    with pytest.raises(TypeError) as caught:
        cls(base_url="https://v.test", **kwargs)
    assert str(caught.value).startswith(f"{cls.__name__}: {message}")


@pytest.mark.anyio
async def test_async_clients_take_async_hooks_and_providers() -> None:
    events: list[str] = []

    async def on_request(request: httpx.Request) -> None:
        events.append(request.url.path)

    async with rc.AsyncHyperClient(
        base_url="https://hyper.test",
        token_provider=_AsyncCallable(),
        on_retry=_async_hook,
        event_hooks={"request": [on_request]},
        transport=httpx.MockTransport(lambda r: fresh(HYPER_OK)),
    ) as client:
        response = await client.get("/x")
    assert response.request.headers["authorization"] == "Bearer token"
    assert events == ["/x"]


@pytest.mark.parametrize(
    "client_class",
    [
        rc.HyperClient,
        rc.AsyncHyperClient,
        rc.UstaClient,
        rc.AsyncUstaClient,
        rc.UpdoxClient,
        rc.AsyncUpdoxClient,
        rc.MedableClient,
        rc.AsyncMedableClient,
    ],
)
def test_a_misspelled_keyword_names_the_public_client(client_class: type[Any]) -> None:
    with pytest.raises(TypeError) as caught:
        client_class(base_url="https://vendor.test", polcy="hyper.toml")
    assert (
        str(caught.value) == f"{client_class.__name__}.__init__() got an unexpected keyword argument 'polcy'"
    )
