"""Every vendor client habit, sync and async, against the vendor simulator.

Async clients reach the simulator in-process through ``httpx.ASGITransport``. httpx has no sync
ASGI transport and neither ``resilient_client.simulator`` nor ``resilient_client.testing`` offers a
sync adapter, so sync clients reach the same simulator over a loopback socket (``serve(sim)``, as in
test_integration_loopback.py) through an explicit ``httpx.HTTPTransport``. Either way the inner
transport goes in by the client's ``transport=`` and every client gets a ``FakeClock``: nothing
sleeps for real, and the clock's ``sleeps`` show how many waits the retries took.

The simulator counts requests and applied writes but keeps no bodies, so ``RecordingSimulator``
(the simulator, unchanged, plus a log) also keeps every request's body and headers and every
answer's status and headers: the Updox auth block, a replayed body, the CSRF token handed out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

import resilient_client as rc
from resilient_client.simulator import Fault, Reply, Simulator, serve
from resilient_client.testing import FakeClock

Step = Fault | Reply

# -- the harness ----------------------------------------------------------------------------------


@dataclass
class Exchange:
    """One request the simulator received and what it answered."""

    method: str
    path: str  # with the vendor prefix: /updox/api/io/Ping
    headers: dict[str, str]
    body: bytes
    status: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


class RecordingSimulator(Simulator):
    """The simulator, answering exactly as usual, with a log of every HTTP exchange."""

    def __init__(self) -> None:
        super().__init__()
        self.exchanges: list[Exchange] = []

    def reset(self) -> None:
        super().reset()
        self.exchanges.clear()

    def received(self, path: str) -> list[Exchange]:
        return [e for e in self.exchanges if e.path == path]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        exchange = Exchange(scope["method"], scope["path"], headers, b"".join(chunks))
        self.exchanges.append(exchange)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return dict(await receive())
            replayed = True
            return {"type": "http.request", "body": exchange.body, "more_body": False}

        async def record(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
                exchange.response_headers = {
                    k.decode("latin-1").lower(): v.decode("latin-1") for k, v in message["headers"]
                }
            await send(message)

        await super().__call__(scope, replay, record)


@dataclass
class Harness:
    """A simulator, how a client reaches it, and the fake clock every client is given."""

    sim: RecordingSimulator
    base: str
    inner: Any  # a factory for the inner transport: one per client
    clock: FakeClock = field(default_factory=FakeClock)
    extra: dict[str, Any] = field(default_factory=dict)

    def client(self, cls: Any, **kwargs: Any) -> Any:
        return cls(
            base_url=f"{self.base}/{cls.vendor}",
            transport=self.inner(),
            transport_options=self.clock.options(),
            **self.extra,
            **kwargs,
        )


@pytest.fixture(autouse=True)
def _no_credentials_or_policy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RESILIENT_CLIENT_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def loopback() -> Iterator[tuple[RecordingSimulator, str]]:
    sim = RecordingSimulator()
    with serve(sim) as url:
        yield sim, url


@pytest.fixture
def sync_sim(loopback: tuple[RecordingSimulator, str]) -> Harness:
    """Sync clients: the simulator on a loopback socket (httpx has no sync ASGI transport)."""
    sim, url = loopback
    sim.reset()
    # trust_env=False: a proxy from the environment must not sit between the client and 127.0.0.1.
    return Harness(sim, url, httpx.HTTPTransport, extra={"trust_env": False})


@pytest.fixture
def async_sim() -> Harness:
    """Async clients: the simulator in-process."""
    sim = RecordingSimulator()
    return Harness(sim, "http://sim", lambda: httpx.ASGITransport(app=sim))


def attempts(response: httpx.Response) -> int:
    return int(response.extensions[rc.ATTEMPTS_EXTENSION])


# -- Updox: POST /api/io/<Method> with the auth block; read calls retried, writes not ------------

UPDOX_CREDENTIALS = {
    "application_id": "app-id-1",
    "application_password": "app-secret-pw",
    "account_id": "acct-1",
    "user_id": "user-1",
}
UPDOX_AUTH_BLOCK = {
    "applicationId": "app-id-1",
    "applicationPassword": "app-secret-pw",
    "accountId": "acct-1",
    "userId": "user-1",
}


def check_updox_calls(h: Harness, listed: Any, pinged: Any) -> None:
    assert listed == {"successful": True, "responseCode": 2000, "responseMessage": "OK"}
    assert pinged["successful"] is True
    assert [(e.method, e.path) for e in h.sim.exchanges] == [
        ("POST", "/updox/api/io/MessageList"),
        ("POST", "/updox/api/io/Ping"),
    ]
    message_list, ping = h.sim.exchanges
    assert message_list.json() == {"since": "2026-11-01", "auth": UPDOX_AUTH_BLOCK}
    assert message_list.headers["content-type"] == "application/json"
    assert ping.json() == {"auth": UPDOX_AUTH_BLOCK}
    assert h.sim.requests["updox", "/api/io/MessageList"] == 1
    assert h.sim.side_effects["updox", "/api/io/MessageList"] == 1
    assert h.sim.requests["updox", "/api/io/Ping"] == 1


def test_sync_updox_call_and_ping_post_the_auth_block(sync_sim: Harness) -> None:
    with sync_sim.client(rc.UpdoxClient, **UPDOX_CREDENTIALS) as updox:
        listed = updox.call("MessageList", {"since": "2026-11-01"})
        pinged = updox.ping()
    check_updox_calls(sync_sim, listed, pinged)


@pytest.mark.anyio
async def test_async_updox_call_and_ping_post_the_auth_block(async_sim: Harness) -> None:
    async with async_sim.client(rc.AsyncUpdoxClient, **UPDOX_CREDENTIALS) as updox:
        listed = await updox.call("MessageList", {"since": "2026-11-01"})
        pinged = await updox.ping()
    check_updox_calls(async_sim, listed, pinged)


# Updox's catalog has one server_error code, 4650 ("send failed"), which the shipped policy never
# retries; any other 5xxx code it does not list is a server_error that a read call may repeat.
UPDOX_SERVER_ERROR = Reply(200, {"successful": False, "responseCode": 5999, "responseMessage": "Internal"})

UPDOX_CASES = [
    pytest.param("MessageList", UPDOX_SERVER_ERROR, True, id="read-List-retried"),
    pytest.param("UserGet", UPDOX_SERVER_ERROR, True, id="read-Get-retried"),
    pytest.param("PatientSearch", UPDOX_SERVER_ERROR, True, id="read-Search-retried"),
    pytest.param("PatientSave", UPDOX_SERVER_ERROR, False, id="write-Save-not-retried"),
    pytest.param("PatientsSync", UPDOX_SERVER_ERROR, False, id="write-Sync-not-retried"),
    pytest.param("MessageSend", UPDOX_SERVER_ERROR, False, id="write-Send-not-retried"),
    pytest.param("MessageList", Fault("updox", 4650), False, id="read-4650-never-retried"),
]


def script_updox(h: Harness, method: str, fault: Step) -> None:
    h.sim.script("updox", f"/api/io/{method}", [fault])  # then success


def check_updox_retry(h: Harness, method: str, retried: bool, answer: Any, error: Any) -> None:
    key = ("updox", f"/api/io/{method}")
    if retried:
        assert error is None
        assert answer["responseCode"] == 2000
        assert h.sim.requests[key] == 2
        assert h.sim.side_effects[key] == 1
        assert len(h.clock.sleeps) == 1
        first, second = h.sim.received(f"/updox{key[1]}")
        assert second.json() == first.json() == {"id": "p-1", "auth": UPDOX_AUTH_BLOCK}
    else:
        assert isinstance(error, rc.errors.ServerError)
        assert error.attempts == 1
        assert error.http_status == 200
        assert h.sim.requests[key] == 1
        assert h.sim.side_effects[key] == 0
        assert h.clock.sleeps == []


@pytest.mark.parametrize(("method", "fault", "retried"), UPDOX_CASES)
def test_sync_updox_read_calls_are_retried_and_writes_are_not(
    sync_sim: Harness, method: str, fault: Step, retried: bool
) -> None:
    script_updox(sync_sim, method, fault)
    answer = error = None
    with sync_sim.client(rc.UpdoxClient, **UPDOX_CREDENTIALS) as updox:
        try:
            answer = updox.call(method, {"id": "p-1"})
        except rc.errors.ApiError as raised:
            error = raised
    check_updox_retry(sync_sim, method, retried, answer, error)


@pytest.mark.anyio
@pytest.mark.parametrize(("method", "fault", "retried"), UPDOX_CASES)
async def test_async_updox_read_calls_are_retried_and_writes_are_not(
    async_sim: Harness, method: str, fault: Step, retried: bool
) -> None:
    script_updox(async_sim, method, fault)
    answer = error = None
    async with async_sim.client(rc.AsyncUpdoxClient, **UPDOX_CREDENTIALS) as updox:
        try:
            answer = await updox.call(method, {"id": "p-1"})
        except rc.errors.ApiError as raised:
            error = raised
    check_updox_retry(async_sim, method, retried, answer, error)


# -- USTA and Hyper: a rejected token is asked for again once; a fixed token never ---------------

REJECTIONS = [
    pytest.param("hyper", Fault("hyper", 6), id="hyper-code-6"),
    pytest.param(
        "hyper",
        Reply(401, b"<html>Unauthorized</html>", {"content-type": "text/html"}),
        id="hyper-gateway-401",
    ),
    pytest.param("usta", Fault("usta", 4003), id="usta-4003"),
    pytest.param("usta", Reply(401), id="usta-bare-401"),
    pytest.param(
        "usta",
        Reply(401, {"error": "invalid_token", "error_description": "Token expired"}),
        id="usta-oauth-invalid-token",
    ),
]
SYNC_BEARER = {"hyper": rc.HyperClient, "usta": rc.UstaClient}
ASYNC_BEARER = {"hyper": rc.AsyncHyperClient, "usta": rc.AsyncUstaClient}


class Tokens:
    """A token provider that hands out token-1, token-2, ... and counts how often it was asked."""

    def __init__(self) -> None:
        self.asked = 0

    def __call__(self) -> str:
        self.asked += 1
        return f"token-{self.asked}"


def check_refreshed_once(h: Harness, vendor: str, tokens: Tokens, response: httpx.Response) -> None:
    assert response.status_code == 200
    assert attempts(response) == 2
    assert tokens.asked == 2
    sent = h.sim.received(f"/{vendor}/things")
    assert [e.headers["authorization"] for e in sent] == ["Bearer token-1", "Bearer token-2"]
    assert [e.json() for e in sent] == [{"a": 1}, {"a": 1}]  # the same request, replayed
    assert [e.status for e in sent] == [401, 200]
    assert h.sim.requests[vendor, "/things"] == 2
    assert h.sim.side_effects[vendor, "/things"] == 1


@pytest.mark.parametrize(("vendor", "rejection"), REJECTIONS)
def test_sync_rejected_token_is_asked_again_once_and_the_request_replayed(
    sync_sim: Harness, vendor: str, rejection: Step
) -> None:
    sync_sim.sim.script(vendor, "/things", [rejection])
    tokens = Tokens()
    with sync_sim.client(SYNC_BEARER[vendor], token_provider=tokens) as client:
        response = client.post("/things", json={"a": 1})
    check_refreshed_once(sync_sim, vendor, tokens, response)


@pytest.mark.anyio
@pytest.mark.parametrize(("vendor", "rejection"), REJECTIONS)
async def test_async_rejected_token_is_asked_again_once_from_an_async_provider(
    async_sim: Harness, vendor: str, rejection: Step
) -> None:
    async_sim.sim.script(vendor, "/things", [rejection])
    tokens = Tokens()

    async def provider() -> str:
        return tokens()

    async with async_sim.client(ASYNC_BEARER[vendor], token_provider=provider) as client:
        response = await client.post("/things", json={"a": 1})
    check_refreshed_once(async_sim, vendor, tokens, response)


def check_refused_twice(h: Harness, vendor: str, tokens: Tokens, error: Any) -> None:
    assert isinstance(error, rc.errors.AuthenticationError)
    assert tokens.asked == 2
    assert h.sim.requests[vendor, "/things"] == 2  # replayed once, not again
    assert h.sim.side_effects[vendor, "/things"] == 0


@pytest.mark.parametrize(("vendor", "rejection"), REJECTIONS)
def test_sync_a_second_refusal_raises(sync_sim: Harness, vendor: str, rejection: Step) -> None:
    sync_sim.sim.script(vendor, "/things", [rejection, rejection, rejection])
    tokens = Tokens()
    with (
        sync_sim.client(SYNC_BEARER[vendor], token_provider=tokens) as client,
        pytest.raises(rc.errors.AuthenticationError) as caught,
    ):
        client.post("/things", json={"a": 1})
    check_refused_twice(sync_sim, vendor, tokens, caught.value)


@pytest.mark.anyio
@pytest.mark.parametrize(("vendor", "rejection"), REJECTIONS)
async def test_async_a_second_refusal_raises(async_sim: Harness, vendor: str, rejection: Step) -> None:
    async_sim.sim.script(vendor, "/things", [rejection, rejection, rejection])
    tokens = Tokens()

    async def provider() -> str:
        return tokens()

    async with async_sim.client(ASYNC_BEARER[vendor], token_provider=provider) as client:
        with pytest.raises(rc.errors.AuthenticationError) as caught:
            await client.post("/things", json={"a": 1})
    check_refused_twice(async_sim, vendor, tokens, caught.value)


def check_not_refreshed(h: Harness, vendor: str, error: Any) -> None:
    assert isinstance(error, rc.errors.AuthenticationError)
    assert error.attempts == 1
    assert h.sim.requests[vendor, "/things"] == 1
    assert h.sim.side_effects[vendor, "/things"] == 0
    assert h.sim.last_headers[vendor, "/things"]["authorization"] == "Bearer fixed-token-1"
    assert "fixed-token-1" not in str(error) + repr(error)


@pytest.mark.parametrize(("vendor", "rejection"), REJECTIONS)
def test_sync_a_fixed_token_is_never_refreshed(sync_sim: Harness, vendor: str, rejection: Step) -> None:
    sync_sim.sim.script(vendor, "/things", [rejection])
    with (
        sync_sim.client(SYNC_BEARER[vendor], token="fixed-token-1") as client,
        pytest.raises(rc.errors.AuthenticationError) as caught,
    ):
        client.post("/things", json={"a": 1})
    check_not_refreshed(sync_sim, vendor, caught.value)


@pytest.mark.anyio
@pytest.mark.parametrize(("vendor", "rejection"), REJECTIONS)
async def test_async_a_fixed_token_is_never_refreshed(
    async_sim: Harness, vendor: str, rejection: Step
) -> None:
    async_sim.sim.script(vendor, "/things", [rejection])
    async with async_sim.client(ASYNC_BEARER[vendor], token="fixed-token-1") as client:
        with pytest.raises(rc.errors.AuthenticationError) as caught:
            await client.post("/things", json={"a": 1})
    check_not_refreshed(async_sim, vendor, caught.value)


# -- Medable: client key, session cookie, CSRF echo, location verification ------------------------


def check_medable_session(h: Harness, account: Any, me: httpx.Response, created: httpx.Response) -> None:
    login = h.sim.received("/medable/accounts/login")[0]
    csrf = login.response_headers["medable-csrf-token"]
    assert login.json() == {"email": "ann@example.org", "password": "hunter2-pass"}
    assert "medable-csrf-token" not in login.headers
    # The calls after login succeed: the session's CSRF token went back (else kCSRFTokenMismatch).
    assert me.status_code == 200
    assert me.json() == {"object": "result", "path": "/accounts/me"}
    assert created.status_code == 200
    for path in ("/accounts/me", "/c_things"):
        sent = h.sim.last_headers["medable", path]
        assert sent["medable-csrf-token"] == csrf
        assert f"md.sid={account['_id']}" in sent["cookie"]
    assert all(e.headers["medable-client-key"] == "client-key-xyz" for e in h.sim.exchanges)
    assert len(h.sim.exchanges) == 3
    assert h.sim.side_effects["medable", "/c_things"] == 1


def test_sync_medable_key_session_cookie_and_csrf_echo(sync_sim: Harness) -> None:
    with sync_sim.client(rc.MedableClient, client_key="client-key-xyz") as medable:
        account = medable.login("ann@example.org", "hunter2-pass")
        me = medable.get("/accounts/me")
        created = medable.post("/c_things", json={"c_name": "x"})
    check_medable_session(sync_sim, account, me, created)


@pytest.mark.anyio
async def test_async_medable_key_session_cookie_and_csrf_echo(async_sim: Harness) -> None:
    async with async_sim.client(rc.AsyncMedableClient, client_key="client-key-xyz") as medable:
        account = await medable.login("ann@example.org", "hunter2-pass")
        me = await medable.get("/accounts/me")
        created = await medable.post("/c_things", json={"c_name": "x"})
    check_medable_session(async_sim, account, me, created)


def check_new_location(h: Harness, error: Any, account: Any, me: httpx.Response) -> None:
    assert isinstance(error, rc.errors.VerificationRequired)
    assert error.code == "kNewLocation"
    assert "hunter2-pass" not in str(error) + repr(error)
    first, second = h.sim.received("/medable/accounts/login")
    assert "location" not in first.json()
    assert second.json() == {
        "email": "ann@example.org",
        "password": "hunter2-pass",
        "location": {"verificationToken": "123456"},
    }
    assert account["object"] == "account"
    assert me.status_code == 200
    assert h.sim.requests["medable", "/accounts/login"] == 2
    assert (
        h.sim.last_headers["medable", "/accounts/me"]["medable-csrf-token"]
        == (second.response_headers["medable-csrf-token"])
    )


def test_sync_medable_new_location_then_verification_token(sync_sim: Harness) -> None:
    sync_sim.sim.script("medable", "/accounts/login", [Fault("medable", "kNewLocation")])
    with sync_sim.client(rc.MedableClient, client_key="client-key-xyz") as medable:
        with pytest.raises(rc.errors.VerificationRequired) as caught:
            medable.login("ann@example.org", "hunter2-pass")
        account = medable.login("ann@example.org", "hunter2-pass", verification_token="123456")
        me = medable.get("/accounts/me")
    check_new_location(sync_sim, caught.value, account, me)


@pytest.mark.anyio
async def test_async_medable_new_location_then_verification_token(async_sim: Harness) -> None:
    async_sim.sim.script("medable", "/accounts/login", [Fault("medable", "kNewLocation")])
    async with async_sim.client(rc.AsyncMedableClient, client_key="client-key-xyz") as medable:
        with pytest.raises(rc.errors.VerificationRequired) as caught:
            await medable.login("ann@example.org", "hunter2-pass")
        account = await medable.login("ann@example.org", "hunter2-pass", verification_token="123456")
        me = await medable.get("/accounts/me")
    check_new_location(async_sim, caught.value, account, me)


# -- Hyper: a locked POST is retried and applied once; a POST answered 500 is not retried ---------


def check_locked_twice(h: Harness, response: httpx.Response) -> None:
    assert response.json()["ResponseCode"] == 0
    assert attempts(response) == 3
    assert h.sim.requests["hyper", "/api/journal"] == 3
    assert h.sim.side_effects["hyper", "/api/journal"] == 1  # the POST was applied once
    assert [e.status for e in h.sim.exchanges] == [423, 423, 200]
    assert len(h.clock.sleeps) == 2


def test_sync_hyper_locked_twice_then_applied_once(sync_sim: Harness) -> None:
    sync_sim.sim.script("hyper", "/api/journal", [Fault("hyper", 10), Fault("hyper", 10)])
    with sync_sim.client(rc.HyperClient, token="t-1") as hyper:
        response = hyper.post("/api/journal", json={"Amount": 1})
    check_locked_twice(sync_sim, response)


@pytest.mark.anyio
async def test_async_hyper_locked_twice_then_applied_once(async_sim: Harness) -> None:
    async_sim.sim.script("hyper", "/api/journal", [Fault("hyper", 10), Fault("hyper", 10)])
    async with async_sim.client(rc.AsyncHyperClient, token="t-1") as hyper:
        response = await hyper.post("/api/journal", json={"Amount": 1})
    check_locked_twice(async_sim, response)


HTML_500 = Reply(500, b"<html>Internal Server Error</html>", {"content-type": "text/html"})
HYPER_500_CASES = [
    pytest.param("POST", HTML_500, False, id="post-bare-500-not-retried"),
    pytest.param("POST", Fault("hyper", 4), False, id="post-code-4-not-retried"),
    # The same faults on an idempotent method are retried: it is the POST that stops the retry.
    pytest.param("PUT", HTML_500, True, id="put-bare-500-retried"),
    pytest.param("PUT", Fault("hyper", 4), True, id="put-code-4-retried"),
]


def check_hyper_500(h: Harness, retried: bool, response: Any, error: Any) -> None:
    if retried:
        assert error is None
        assert attempts(response) == 2
        assert h.sim.requests["hyper", "/api/journal"] == 2
        assert h.sim.side_effects["hyper", "/api/journal"] == 1
        assert len(h.clock.sleeps) == 1
    else:
        assert isinstance(error, rc.errors.ServerError)
        assert error.http_status == 500
        assert error.attempts == 1
        assert h.sim.requests["hyper", "/api/journal"] == 1
        assert h.sim.side_effects["hyper", "/api/journal"] == 0
        assert h.clock.sleeps == []


@pytest.mark.parametrize(("method", "fault", "retried"), HYPER_500_CASES)
def test_sync_hyper_500_is_retried_only_for_an_idempotent_method(
    sync_sim: Harness, method: str, fault: Step, retried: bool
) -> None:
    sync_sim.sim.script("hyper", "/api/journal", [fault])
    response = error = None
    with sync_sim.client(rc.HyperClient, token="t-1") as hyper:
        try:
            response = hyper.request(method, "/api/journal", json={"Amount": 1})
        except rc.errors.ApiError as raised:
            error = raised
    check_hyper_500(sync_sim, retried, response, error)


@pytest.mark.anyio
@pytest.mark.parametrize(("method", "fault", "retried"), HYPER_500_CASES)
async def test_async_hyper_500_is_retried_only_for_an_idempotent_method(
    async_sim: Harness, method: str, fault: Step, retried: bool
) -> None:
    async_sim.sim.script("hyper", "/api/journal", [fault])
    response = error = None
    async with async_sim.client(rc.AsyncHyperClient, token="t-1") as hyper:
        try:
            response = await hyper.request(method, "/api/journal", json={"Amount": 1})
        except rc.errors.ApiError as raised:
            error = raised
    check_hyper_500(async_sim, retried, response, error)


# -- credentials from the environment -------------------------------------------------------------

ENV_CASES = [
    pytest.param(
        "medable",
        "RESILIENT_CLIENT_MEDABLE_CLIENT_KEY",
        {},
        "medable-client-key",
        "env-key-123",
        id="medable-key-from-env",
    ),
    pytest.param(
        "medable",
        "RESILIENT_CLIENT_MEDABLE_CLIENT_KEY",
        {"client_key": "kwarg-key-1"},
        "medable-client-key",
        "kwarg-key-1",
        id="medable-kwarg-beats-env",
    ),
    pytest.param(
        "hyper",
        "RESILIENT_CLIENT_HYPER_TOKEN",
        {},
        "authorization",
        "Bearer env-key-123",
        id="hyper-token-from-env",
    ),
    pytest.param(
        "hyper",
        "RESILIENT_CLIENT_HYPER_TOKEN",
        {"token": "kwarg-token-1"},
        "authorization",
        "Bearer kwarg-token-1",
        id="hyper-kwarg-beats-env",
    ),
]
SYNC_ENV = {"medable": rc.MedableClient, "hyper": rc.HyperClient}
ASYNC_ENV = {"medable": rc.AsyncMedableClient, "hyper": rc.AsyncHyperClient}


@pytest.mark.parametrize(("vendor", "variable", "kwargs", "header", "expected"), ENV_CASES)
def test_sync_credentials_from_the_environment(
    sync_sim: Harness,
    monkeypatch: pytest.MonkeyPatch,
    vendor: str,
    variable: str,
    kwargs: dict[str, str],
    header: str,
    expected: str,
) -> None:
    monkeypatch.setenv(variable, "env-key-123")
    with sync_sim.client(SYNC_ENV[vendor], **kwargs) as client:
        assert client.get("/whoami").status_code == 200
    assert sync_sim.sim.last_headers[vendor, "/whoami"][header] == expected


@pytest.mark.anyio
@pytest.mark.parametrize(("vendor", "variable", "kwargs", "header", "expected"), ENV_CASES)
async def test_async_credentials_from_the_environment(
    async_sim: Harness,
    monkeypatch: pytest.MonkeyPatch,
    vendor: str,
    variable: str,
    kwargs: dict[str, str],
    header: str,
    expected: str,
) -> None:
    monkeypatch.setenv(variable, "env-key-123")
    async with async_sim.client(ASYNC_ENV[vendor], **kwargs) as client:
        assert (await client.get("/whoami")).status_code == 200
    assert async_sim.sim.last_headers[vendor, "/whoami"][header] == expected


def test_without_a_key_or_token_no_client_is_built_and_nothing_is_sent(sync_sim: Harness) -> None:
    # The control for the environment cases: with neither kwarg nor variable, the constructor refuses.
    for cls, variable in ((rc.MedableClient, "MEDABLE_CLIENT_KEY"), (rc.HyperClient, "HYPER_TOKEN")):
        with pytest.raises(TypeError, match=f"RESILIENT_CLIENT_{variable}"):
            sync_sim.client(cls)
    assert not sync_sim.sim.requests
