"""No credential anywhere the SDK lets one out (bar: 0 leaks).

Four places: httpx's own transport errors the SDK raises (str, repr, traceback, pickle, the
request they keep); the records of the ``httpx`` and ``httpcore`` loggers at DEBUG on real loopback
requests of each vendor client; ``Secrets.redact`` on every form a vendor may echo a known secret
in; the SDK's own log lines and ``RetryEvent``.
"""

from __future__ import annotations

import base64
import copyreg
import gc
import json
import logging
import os
import pickle
import re
import socket
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import quote, quote_plus, urlencode

import anyio
import httpx
import pytest

import resilient_client as rc
from resilient_client._redact import REDACTED, Secrets, redact_text, redact_url
from resilient_client.simulator import Reply, Simulator, serve
from resilient_client.testing import FakeClock, no_waits

BEARER = "bearer-sekrit-1a2b3c"
BASIC_PW = "basic-pw-sekrit-4d5e"
COOKIE = "cookie-sekrit-6f7g"
CLIENT_KEY = "client-key-sekrit-8h9i"
API_KEY = "api-key-sekrit-0j1k"
URL_PW = "url-pw-sekrit-2l3m"
BODY_PW = "body-pw-sekrit-4n5o"
X_API_KEY = "x-api-key-sekrit-6p7q"
ALL_SECRETS = (BEARER, BASIC_PW, COOKIE, CLIENT_KEY, API_KEY, URL_PW, BODY_PW, X_API_KEY)
# The Basic header as sent: the password is in it only base64-encoded.
BASIC_HEADER = base64.b64encode(f"ann:{BASIC_PW}".encode()).decode()


def leaks(text: str, secrets: tuple[str, ...] = ALL_SECRETS) -> list[str]:
    """The secrets (plain, percent-encoded or as a Basic header) that ``text`` shows."""
    forms = {s: s for s in secrets} | {quote(s, safe=""): s for s in secrets} | {BASIC_HEADER: BASIC_PW}
    return sorted({secret for form, secret in forms.items() if form in text and secret in secrets})


@pytest.fixture(autouse=True)
def _no_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RESILIENT_CLIENT_"):
            monkeypatch.delenv(name)


# -- 1. httpx's transport errors carry no credential -------------------------------------------------

# Every kind of secret a request can carry; Basic auth and a bearer both live in Authorization.
SEND_WITH_SECRETS: dict[str, dict[str, Any]] = {
    "bearer": {
        "url": f"https://m.test/org/x?api_key={API_KEY}&page=2",
        "headers": {
            "Authorization": f"Bearer {BEARER}",
            "Cookie": f"md.sid={COOKIE}",
            "Medable-Client-Key": CLIENT_KEY,
            "X-Api-Key": X_API_KEY,
        },
        "json": {"email": "a@b.test", "password": BODY_PW},
    },
    "basic": {
        "url": f"https://ann:{URL_PW}@m.test/org/x?api_key={API_KEY}&page=2",
        "auth": ("ann", BASIC_PW),
        "headers": {"Cookie": f"md.sid={COOKIE}", "Medable-Client-Key": CLIENT_KEY},
        "data": {"password": BODY_PW},
    },
}

TRANSPORT_ERRORS: list[Any] = [
    pytest.param(httpx.ConnectError, "[Errno 111] Connection refused", id="ConnectError"),
    pytest.param(httpx.ConnectTimeout, "timed out", id="ConnectTimeout"),
    pytest.param(httpx.ReadTimeout, "timed out", id="ReadTimeout"),
    pytest.param(httpx.WriteTimeout, "timed out", id="WriteTimeout"),
    pytest.param(httpx.PoolTimeout, "no connection available", id="PoolTimeout"),
    pytest.param(httpx.ReadError, "connection reset by peer", id="ReadError"),
    pytest.param(httpx.WriteError, "broken pipe", id="WriteError"),
    pytest.param(httpx.RemoteProtocolError, "Server disconnected", id="RemoteProtocolError"),
    pytest.param(httpx.LocalProtocolError, "illegal header", id="LocalProtocolError"),
    pytest.param(httpx.ProxyError, "407 Proxy Authentication Required", id="ProxyError"),
    pytest.param(
        httpx.UnsupportedProtocol, "Request URL has an unsupported protocol", id="UnsupportedProtocol"
    ),
    # A transport (a proxy, a test double) may name the URL and a header in its message.
    pytest.param(httpx.ConnectError, "{url} refused {authorization}", id="message-names-the-request"),
]


def raising(cls: type[httpx.TransportError], message: str) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        text = message.format(url=request.url, authorization=request.headers.get("authorization"))
        raise cls(text, request=request)

    return httpx.MockTransport(handler)


def everything_shown(error: BaseException) -> str:
    """What a user could print, log or pickle of an error."""
    parts = [
        str(error),
        repr(error),
        "".join(traceback.format_exception(error)),
        pickle.dumps(error).decode("latin-1"),
        repr(vars(error)),
    ]
    if isinstance(error, httpx.RequestError):
        request = error.request
        parts += [str(request.url), repr(request.headers.multi_items()), request.content.decode("latin-1")]
    restored = pickle.loads(pickle.dumps(error))
    parts += [str(restored), repr(vars(restored))]
    return "\n".join(parts)


def check_clean_transport_error(error: httpx.TransportError, cls: type[Exception]) -> None:
    assert type(error) is cls
    attempts = getattr(error, "attempts", 0)
    assert attempts >= 1
    assert leaks(everything_shown(error)) == []
    restored = pickle.loads(pickle.dumps(error))
    assert type(restored) is cls and restored.attempts == attempts  # type: ignore[attr-defined]
    # What is left is still useful: the method, host, path and the harmless query parameter.
    assert error.request.method == "PUT"
    assert error.request.url.host == "m.test"
    assert error.request.url.params["page"] == "2"


def medable_client(inner: httpx.MockTransport, cls: Any = rc.MedableClient) -> Any:
    return cls(client_key=CLIENT_KEY, transport=inner, transport_options=FakeClock().options())


@pytest.mark.parametrize("kind", sorted(SEND_WITH_SECRETS))
@pytest.mark.parametrize(("cls", "message"), TRANSPORT_ERRORS)
def test_sync_transport_errors_carry_no_credential(
    cls: type[httpx.TransportError], message: str, kind: str
) -> None:
    with medable_client(raising(cls, message)) as client, pytest.raises(cls) as caught:
        client.put(**SEND_WITH_SECRETS[kind])
    check_clean_transport_error(caught.value, cls)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", sorted(SEND_WITH_SECRETS))
@pytest.mark.parametrize(("cls", "message"), TRANSPORT_ERRORS)
async def test_async_transport_errors_carry_no_credential(
    cls: type[httpx.TransportError], message: str, kind: str
) -> None:
    async with medable_client(raising(cls, message), rc.AsyncMedableClient) as client:
        with pytest.raises(cls) as caught:
            await client.put(**SEND_WITH_SECRETS[kind])
    check_clean_transport_error(caught.value, cls)


def request_with_secrets(kind: str) -> httpx.Request:
    """The request an httpx client would hand its transport for ``SEND_WITH_SECRETS[kind]``."""
    with httpx.Client() as client:
        send = dict(SEND_WITH_SECRETS[kind])
        auth = send.pop("auth", None)
        request = client.build_request("PUT", **send)
        if auth is not None:
            request = next(httpx.BasicAuth(*auth).auth_flow(request))
        return request


@pytest.mark.parametrize("kind", sorted(SEND_WITH_SECRETS))
@pytest.mark.parametrize(("cls", "message"), TRANSPORT_ERRORS)
def test_sync_the_transport_itself_lets_out_no_credential(
    cls: type[httpx.TransportError], message: str, kind: str
) -> None:
    transport = rc.ResilientTransport("medable", transport=raising(cls, message), **FakeClock().options())
    with pytest.raises(cls) as caught:
        transport.handle_request(request_with_secrets(kind))
    check_clean_transport_error(caught.value, cls)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", sorted(SEND_WITH_SECRETS))
@pytest.mark.parametrize(("cls", "message"), TRANSPORT_ERRORS)
async def test_async_the_transport_itself_lets_out_no_credential(
    cls: type[httpx.TransportError], message: str, kind: str
) -> None:
    transport = rc.ResilientTransport("medable", transport=raising(cls, message), **FakeClock().options())
    with pytest.raises(cls) as caught:
        await transport.handle_async_request(request_with_secrets(kind))
    check_clean_transport_error(caught.value, cls)


def test_in_a_plain_httpx_client_messages_and_tracebacks_carry_no_credential() -> None:
    # httpx puts its own request back on the error as it leaves Client.send (README: Secrets), but
    # what the transport redacted in the message and notes stays redacted.
    inner = raising(httpx.ConnectError, "{url} refused {authorization}")
    transport = rc.ResilientTransport("medable", transport=inner, **FakeClock().options())
    with httpx.Client(transport=transport) as client, pytest.raises(httpx.ConnectError) as caught:
        client.put(**SEND_WITH_SECRETS["bearer"])
    error = caught.value
    assert leaks(str(error) + repr(error) + "".join(traceback.format_exception(error))) == []
    assert REDACTED in str(error)


def test_a_retried_connect_error_keeps_its_attempts() -> None:
    with (
        medable_client(raising(httpx.ConnectError, "refused")) as client,
        pytest.raises(httpx.ConnectError) as caught,
    ):
        client.put(**SEND_WITH_SECRETS["bearer"])
    max_attempts = client.resilient_transport.policy.retry.max_attempts
    assert caught.value.attempts == max_attempts  # type: ignore[attr-defined]
    assert "attempt(s)" in "".join(traceback.format_exception(caught.value))


def refused_port() -> int:
    """A loopback port nobody listens on: bound, then closed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# Each vendor client with its credentials, and the call that sends them.
VENDOR_CALLS: list[Any] = [
    pytest.param(
        "Medable",
        {"client_key": CLIENT_KEY},
        lambda c: c.login("a@b.test", BODY_PW),
        (CLIENT_KEY, BODY_PW),
        id="medable",
    ),
    pytest.param(
        "Hyper",
        {"token": BEARER},
        lambda c: c.get("/api/Clients", params={"api_key": API_KEY}),
        (BEARER, API_KEY),
        id="hyper",
    ),
    pytest.param(
        "Usta",
        {"token_provider": lambda: BEARER},
        lambda c: c.get("/v1/players", headers={"Cookie": f"sid={COOKIE}"}),
        (BEARER, COOKIE),
        id="usta",
    ),
    pytest.param(
        "Updox",
        {"application_id": "app-1", "application_password": BODY_PW, "account_id": "a", "user_id": "u"},
        lambda c: c.ping(),
        (BODY_PW,),
        id="updox",
    ),
]


@pytest.mark.parametrize(("name", "credentials", "call", "secrets"), VENDOR_CALLS)
def test_sync_vendor_clients_connect_errors_on_a_refused_port_carry_no_credential(
    name: str, credentials: dict[str, Any], call: Callable[[Any], Any], secrets: tuple[str, ...]
) -> None:
    cls = getattr(rc, f"{name}Client")
    with (
        no_waits(),
        cls(base_url=f"http://127.0.0.1:{refused_port()}", trust_env=False, **credentials) as client,
        pytest.raises(httpx.ConnectError) as caught,
    ):
        call(client)
    assert caught.value.attempts >= 1  # type: ignore[attr-defined]
    assert leaks(everything_shown(caught.value), secrets) == []


@pytest.mark.anyio
@pytest.mark.parametrize(("name", "credentials", "call", "secrets"), VENDOR_CALLS)
async def test_async_vendor_clients_connect_errors_on_a_refused_port_carry_no_credential(
    name: str, credentials: dict[str, Any], call: Callable[[Any], Any], secrets: tuple[str, ...]
) -> None:
    cls = getattr(rc, f"Async{name}Client")
    with no_waits():
        async with cls(
            base_url=f"http://127.0.0.1:{refused_port()}", trust_env=False, **credentials
        ) as client:
            with pytest.raises(httpx.ConnectError) as caught:
                await call(client)
    assert caught.value.attempts >= 1  # type: ignore[attr-defined]
    assert leaks(everything_shown(caught.value), secrets) == []


class _BrokenDownload(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body whose connection drops after the first chunk."""

    def __iter__(self) -> Iterator[bytes]:
        yield b"first chunk"
        raise httpx.ReadError("connection reset by peer")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"first chunk"
        raise httpx.ReadError("connection reset by peer")


def broken_download(request: httpx.Request) -> httpx.Response:
    # Binary content: the transport hands it back unread, the client reads it.
    return httpx.Response(200, headers={"content-type": "application/pdf"}, stream=_BrokenDownload())


def test_sync_a_read_error_while_the_client_reads_the_body_carries_no_credential() -> None:
    with (
        rc.HyperClient(
            base_url="https://h.test", token=BEARER, transport=httpx.MockTransport(broken_download)
        ) as client,
        pytest.raises(httpx.ReadError) as caught,
    ):
        client.get("/api/files/1", params={"api_key": API_KEY})
    assert leaks(everything_shown(caught.value)) == []
    assert caught.value.request.url.path == "/api/files/1"


@pytest.mark.anyio
async def test_async_a_read_error_while_the_client_reads_the_body_carries_no_credential() -> None:
    async with rc.AsyncHyperClient(
        base_url="https://h.test", token=BEARER, transport=httpx.MockTransport(broken_download)
    ) as client:
        with pytest.raises(httpx.ReadError) as caught:
            await client.get("/api/files/1", params={"api_key": API_KEY})
    assert leaks(everything_shown(caught.value)) == []


def test_a_read_error_inside_a_stream_block_carries_no_credential() -> None:
    with (
        rc.HyperClient(
            base_url="https://h.test", token=BEARER, transport=httpx.MockTransport(broken_download)
        ) as client,
        pytest.raises(httpx.ReadError) as caught,
        client.stream("GET", "/api/files/1", params={"api_key": API_KEY}) as response,
    ):
        response.read()
    assert leaks(everything_shown(caught.value)) == []


@pytest.mark.anyio
async def test_async_a_read_error_inside_a_stream_block_carries_no_credential() -> None:
    async with rc.AsyncHyperClient(
        base_url="https://h.test", token=BEARER, transport=httpx.MockTransport(broken_download)
    ) as client:
        with pytest.raises(httpx.ReadError) as caught:
            async with client.stream("GET", "/api/files/1", params={"api_key": API_KEY}) as response:
                await response.aread()
    assert leaks(everything_shown(caught.value)) == []


# A plain httpx.Client puts the original request back on the error after the transport scrubbed
# it; pickles must still carry no credential.


class _InnerConnectError(httpx.ConnectError):
    """An inner transport's own subclass of an httpx error."""


class _TracedConnectError(httpx.ConnectError):
    """A class another library (tblib, say) registered a copyreg reducer for."""


PLAIN_CLIENT_ERRORS: list[Any] = [
    *TRANSPORT_ERRORS,
    pytest.param(_InnerConnectError, "refused", id="a-subclass-of-ConnectError"),
    pytest.param(httpx.ConnectError, "", id="raised-without-a-request"),
]


def raising_for_a_plain_client(cls: type[httpx.TransportError], message: str) -> httpx.MockTransport:
    if message:
        return raising(cls, message)

    def handler(request: httpx.Request) -> httpx.Response:
        raise cls("refused")  # httpx's client sets the request on it

    return httpx.MockTransport(handler)


def plain_transport(inner: httpx.MockTransport) -> rc.ResilientTransport:
    return rc.ResilientTransport("medable", transport=inner, **FakeClock().options())


def check_pickles_carry_no_credential(error: httpx.RequestError, cls: type[Exception], path: str) -> None:
    assert type(error) is cls
    shown = str(error) + repr(error) + "".join(traceback.format_exception(error))
    pickles = [pickle.dumps(error, protocol) for protocol in range(pickle.HIGHEST_PROTOCOL + 1)]
    assert leaks(shown + "".join(p.decode("latin-1") for p in pickles)) == []
    restored = pickle.loads(pickles[-1])
    assert type(restored) is cls
    assert getattr(restored, "attempts", None) == getattr(error, "attempts", None)
    request = restored.request
    assert leaks(repr(vars(restored)) + str(request.url) + repr(request.headers.multi_items())) == []
    # What is left is still useful: the method, host, path and the harmless query parameter.
    assert (request.method, request.url.host, request.url.path) == (error.request.method, "m.test", path)
    assert request.url.params.get("page") == error.request.url.params.get("page")


@pytest.mark.parametrize("kind", sorted(SEND_WITH_SECRETS))
@pytest.mark.parametrize(("cls", "message"), PLAIN_CLIENT_ERRORS)
def test_sync_a_plain_httpx_client_errors_pickle_without_credential(
    cls: type[httpx.TransportError], message: str, kind: str
) -> None:
    transport = plain_transport(raising_for_a_plain_client(cls, message))
    with httpx.Client(transport=transport) as client, pytest.raises(cls) as caught:
        client.put(**SEND_WITH_SECRETS[kind])
    assert caught.value.request.method == "PUT"  # httpx put its own request back on the error
    check_pickles_carry_no_credential(caught.value, cls, "/org/x")


@pytest.mark.anyio
@pytest.mark.parametrize("kind", sorted(SEND_WITH_SECRETS))
@pytest.mark.parametrize(("cls", "message"), PLAIN_CLIENT_ERRORS)
async def test_async_a_plain_httpx_client_errors_pickle_without_credential(
    cls: type[httpx.TransportError], message: str, kind: str
) -> None:
    transport = plain_transport(raising_for_a_plain_client(cls, message))
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(cls) as caught:
            await client.put(**SEND_WITH_SECRETS[kind])
    check_pickles_carry_no_credential(caught.value, cls, "/org/x")


def download_with_secrets() -> dict[str, Any]:
    return {
        "url": f"https://m.test/files/1?api_key={API_KEY}&page=2",
        "headers": {"Authorization": f"Bearer {BEARER}", "Cookie": f"md.sid={COOKIE}"},
    }


def broken_json_over_the_cap(request: httpx.Request) -> httpx.Response:
    # The transport reads up to its cap and hands back the rest unread, for the client to read.
    return httpx.Response(200, headers={"content-type": "application/json"}, stream=_BrokenDownload())


# Both ways the transport hands a body back unread: not one it classifies, and one over its cap.
UNREAD_BODIES: list[Any] = [
    pytest.param(broken_download, rc.RetryPolicy(), id="binary"),
    pytest.param(
        broken_json_over_the_cap, rc.RetryPolicy(body=rc.BodySettings(max_read_bytes=4)), id="over-the-cap"
    ),
]


@pytest.mark.parametrize(("handler", "policy"), UNREAD_BODIES)
def test_sync_a_plain_httpx_client_body_read_errors_pickle_without_credential(
    handler: Callable[[httpx.Request], httpx.Response], policy: rc.RetryPolicy
) -> None:
    transport = rc.ResilientTransport(
        "hyper", policy=policy, transport=httpx.MockTransport(handler), **FakeClock().options()
    )
    with httpx.Client(transport=transport) as client, pytest.raises(httpx.ReadError) as caught:
        client.get(**download_with_secrets())
    check_pickles_carry_no_credential(caught.value, httpx.ReadError, "/files/1")


@pytest.mark.anyio
@pytest.mark.parametrize(("handler", "policy"), UNREAD_BODIES)
async def test_async_a_plain_httpx_client_body_read_errors_pickle_without_credential(
    handler: Callable[[httpx.Request], httpx.Response], policy: rc.RetryPolicy
) -> None:
    transport = rc.ResilientTransport(
        "hyper", policy=policy, transport=httpx.MockTransport(handler), **FakeClock().options()
    )
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ReadError) as caught:
            await client.get(**download_with_secrets())
    check_pickles_carry_no_credential(caught.value, httpx.ReadError, "/files/1")


def test_errors_that_never_went_through_the_transport_pickle_as_before() -> None:
    with pytest.raises(httpx.ConnectError):  # ConnectError gets its reducer
        plain_transport(raising(httpx.ConnectError, "refused")).handle_request(request_with_secrets("bearer"))
    with (
        httpx.Client(transport=raising(httpx.ConnectError, "refused")) as client,
        pytest.raises(httpx.ConnectError) as caught,
    ):
        client.put(**SEND_WITH_SECRETS["bearer"])
    restored = pickle.loads(pickle.dumps(caught.value))
    assert restored.request.headers["authorization"] == f"Bearer {BEARER}"


def test_a_reducer_another_library_registered_still_runs_and_pickles_no_credential() -> None:
    reduced: list[BaseException] = []

    def their_reducer(error: BaseException) -> Any:
        reduced.append(error)
        return error.__reduce__()

    try:
        for _ in range(2):  # registered before the first error, then again after it
            copyreg.pickle(_TracedConnectError, their_reducer)
            transport = plain_transport(raising(_TracedConnectError, "refused"))
            with httpx.Client(transport=transport) as client, pytest.raises(_TracedConnectError) as caught:
                client.put(**SEND_WITH_SECRETS["bearer"])
            check_pickles_carry_no_credential(caught.value, _TracedConnectError, "/org/x")
            assert reduced and reduced[-1] is caught.value
    finally:
        copyreg.dispatch_table.pop(_TracedConnectError, None)


def test_an_error_let_out_is_forgotten_once_collected() -> None:
    from resilient_client._scrub import _let_out

    gc.collect()
    before = len(_let_out)
    transport = plain_transport(raising(httpx.UnsupportedProtocol, "refused"))
    with pytest.raises(httpx.UnsupportedProtocol):
        transport.handle_request(request_with_secrets("bearer"))
    assert len(_let_out) > before
    gc.collect()
    assert len(_let_out) <= before


# -- 2. the httpx and httpcore loggers at DEBUG, on real loopback requests -------------------------


@pytest.fixture(scope="module")
def loopback() -> Iterator[tuple[Simulator, str]]:
    sim = Simulator()
    with serve(sim) as url:
        yield sim, url


def all_records_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records)


def check_http_logs(caplog: pytest.LogCaptureFixture, secrets: tuple[str, ...]) -> None:
    text = all_records_text(caplog) + "\n" + caplog.text
    assert "HTTP Request:" in text  # httpx's INFO line was captured
    assert "receive_response_headers.complete" in text  # and httpcore's DEBUG lines
    assert leaks(text, secrets) == []
    assert REDACTED in text


def medable_secrets(client: Any) -> tuple[str, ...]:
    """What a Medable session carries once signed in: the session cookie and the CSRF token."""
    return (client.cookies["md.sid"], client.headers["Medable-Csrf-Token"])


def echo_header(sim: Simulator, vendor: str, value: str) -> None:
    # The vendor echoes a known secret in a response header of its own naming.
    sim.script(vendor, "*", [Reply(200, {"object": "echo"}, {"X-Echo": f"you sent {value}"})])


def test_sync_medable_requests_log_no_credential_at_debug(
    loopback: tuple[Simulator, str], caplog: pytest.LogCaptureFixture
) -> None:
    sim, url = loopback
    sim.reset()
    caplog.set_level(logging.DEBUG)
    with rc.MedableClient(base_url=f"{url}/medable", client_key=CLIENT_KEY, trust_env=False) as client:
        client.login("a@b.test", BODY_PW)
        client.get("/accounts/me", params={"api_key": API_KEY})
        session = medable_secrets(client)
        echo_header(sim, "medable", CLIENT_KEY)
        client.get("/accounts/me")
    check_http_logs(caplog, (CLIENT_KEY, BODY_PW, API_KEY, *session))


@pytest.mark.anyio
async def test_async_medable_requests_log_no_credential_at_debug(
    loopback: tuple[Simulator, str], caplog: pytest.LogCaptureFixture
) -> None:
    sim, url = loopback
    sim.reset()
    caplog.set_level(logging.DEBUG)
    async with rc.AsyncMedableClient(
        base_url=f"{url}/medable", client_key=CLIENT_KEY, trust_env=False
    ) as client:
        await client.login("a@b.test", BODY_PW)
        await client.get("/accounts/me", params={"api_key": API_KEY})
        session = medable_secrets(client)
        echo_header(sim, "medable", CLIENT_KEY)
        await client.get("/accounts/me")
    check_http_logs(caplog, (CLIENT_KEY, BODY_PW, API_KEY, *session))


# (client name, credentials, base URL suffix, requests: (method, path, keyword arguments))
BEARER_AND_PASSWORD_CLIENTS: list[Any] = [
    pytest.param(
        "Hyper",
        {"token": BEARER},
        [
            ("POST", "/api/Clients", {"json": {}, "params": {"api_key": API_KEY}}),
            ("GET", f"/api/t/{BEARER}", {}),
        ],
        id="hyper",
    ),
    pytest.param(
        "Usta",
        {"token_provider": lambda: BEARER},
        [("GET", "/v1/players", {"params": {"access_token": BEARER, "page": "2"}})],
        id="usta",
    ),
    pytest.param(
        "Updox",
        {"application_id": "app-1", "application_password": BODY_PW, "account_id": "a", "user_id": "u"},
        [("POST", "/api/io/Ping", {"json": {}, "params": {"password": BODY_PW}})],
        id="updox",
    ),
]


def base_with_userinfo(url: str, vendor: str) -> str:
    return url.replace("http://", f"http://ann:{URL_PW}@") + f"/{vendor}"


@pytest.mark.parametrize(("name", "credentials", "requests"), BEARER_AND_PASSWORD_CLIENTS)
def test_sync_bearer_and_password_clients_log_no_credential_at_debug(
    loopback: tuple[Simulator, str],
    caplog: pytest.LogCaptureFixture,
    name: str,
    credentials: dict[str, Any],
    requests: list[tuple[str, str, dict[str, Any]]],
) -> None:
    sim, url = loopback
    sim.reset()
    cls = getattr(rc, f"{name}Client")
    caplog.set_level(logging.DEBUG)
    with cls(base_url=base_with_userinfo(url, cls.vendor), trust_env=False, **credentials) as client:
        sim.script(cls.vendor, "*", [Reply(200, {}, {"Set-Cookie": f"sid={COOKIE}; HttpOnly"})])
        for method, path, kwargs in requests:
            client.request(method, path, **kwargs)
    check_http_logs(caplog, (BEARER, BODY_PW, API_KEY, URL_PW, COOKIE))


@pytest.mark.anyio
@pytest.mark.parametrize(("name", "credentials", "requests"), BEARER_AND_PASSWORD_CLIENTS)
async def test_async_bearer_and_password_clients_log_no_credential_at_debug(
    loopback: tuple[Simulator, str],
    caplog: pytest.LogCaptureFixture,
    name: str,
    credentials: dict[str, Any],
    requests: list[tuple[str, str, dict[str, Any]]],
) -> None:
    sim, url = loopback
    sim.reset()
    cls = getattr(rc, f"Async{name}Client")
    caplog.set_level(logging.DEBUG)
    async with cls(base_url=base_with_userinfo(url, cls.vendor), trust_env=False, **credentials) as client:
        sim.script(cls.vendor, "*", [Reply(200, {}, {"Set-Cookie": f"sid={COOKIE}; HttpOnly"})])
        for method, path, kwargs in requests:
            await client.request(method, path, **kwargs)
    check_http_logs(caplog, (BEARER, BODY_PW, API_KEY, URL_PW, COOKIE))


def test_a_handler_added_later_and_every_httpcore_logger_see_redacted_records() -> None:
    rc.ResilientTransport("hyper")  # installs the redaction
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(self.format(record))

    handler = Keep(logging.DEBUG)
    headers = f"[(b'set-cookie', b'sid={COOKIE}'), (b'authorization', b'Bearer {BEARER}'), (b'x', b'1')]"
    names = [
        "httpx",
        "httpcore.connection",
        "httpcore.http11",
        "httpcore.http2",
        "httpcore.proxy",
        "httpcore.socks",
    ]
    for name in names:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        before = logger.level
        logger.setLevel(logging.DEBUG)
        try:
            logger.debug(
                "receive_response_headers.complete return_value=(b'HTTP/1.1', 200, b'OK', %s)", headers
            )
            logger.info(
                'HTTP Request: GET %s "HTTP/1.1 200 OK"', httpx.URL(f"https://h.test/?token={BEARER}")
            )
        finally:
            logger.removeHandler(handler)
            logger.setLevel(before)
    assert len(seen) == 2 * len(names)
    assert leaks("\n".join(seen)) == []
    assert all("(b'x', b'1')" in line for line in seen[::2])


def test_records_of_other_loggers_are_left_alone(caplog: pytest.LogCaptureFixture) -> None:
    rc.ResilientTransport("hyper")
    caplog.set_level(logging.DEBUG)
    logging.getLogger("myapp").info("token=%s", "mine")
    assert "token=mine" in caplog.text


# -- 3. Secrets.redact: every form a vendor may echo a known secret in -----------------------------

ASCII_SECRET = "s3cr/t+k3y&x y:z"
UNICODE_SECRET = "pässwörd€/2024"


def percent_all(value: str, upper: bool) -> str:
    encoded = "".join(f"%{b:02X}" for b in value.encode())
    return encoded if upper else encoded.lower()


def lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), text)


def json_escaped_all(value: str, upper: bool) -> str:
    escaped = "".join(f"\\u{ord(c):04X}" for c in value)
    return escaped if upper else escaped.lower().replace("\\u", "\\u")


FORMS: list[Any] = [
    pytest.param(lambda s: s, id="plain"),
    pytest.param(quote, id="quote"),
    pytest.param(lambda s: quote(s, safe=""), id="quote-safe-none"),
    pytest.param(quote_plus, id="quote_plus"),
    pytest.param(lambda s: lower_hex(quote(s, safe="")), id="percent-lower-hex"),
    pytest.param(lambda s: percent_all(s, upper=True), id="percent-every-char-upper"),
    pytest.param(lambda s: percent_all(s, upper=False), id="percent-every-char-lower"),
    pytest.param(lambda s: urlencode({"q": s}).partition("=")[2], id="form-encoded"),
    pytest.param(lambda s: json.dumps(s)[1:-1], id="json-ascii"),
    pytest.param(lambda s: json.dumps(s, ensure_ascii=False)[1:-1], id="json-unicode"),
    pytest.param(lambda s: json.dumps(s)[1:-1].replace("/", "\\/"), id="json-escaped-slash"),
    pytest.param(lambda s: json_escaped_all(s, upper=True), id="json-u-escape-every-char-upper"),
    pytest.param(lambda s: json_escaped_all(s, upper=False), id="json-u-escape-every-char-lower"),
    pytest.param(lambda s: json.dumps(quote(s, safe=""))[1:-1], id="json-of-percent"),
]

CONTEXTS: list[Any] = [
    pytest.param("rejected {} as given", id="in-text"),
    pytest.param("Set-Cookie: sid={}; Path=/; HttpOnly", id="in-a-cookie-header-value"),
    pytest.param('X-Echo: "{}", later', id="in-a-header-value"),
    pytest.param("https://v.test/cb?next={}&page=2", id="in-a-url"),
    pytest.param('{{"code": "{}"}}', id="in-raw-json"),
]


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("secret", [ASCII_SECRET, UNICODE_SECRET], ids=["ascii", "unicode"])
def test_redact_masks_a_known_secret_in_every_form(
    secret: str, form: Callable[[str], str], context: str
) -> None:
    echoed = form(secret)
    text = context.format(echoed)
    secrets = Secrets([secret])
    assert echoed not in secrets.redact(text)
    # Exactly the secret goes (redact() also masks inline credentials such as "Cookie: x").
    assert secrets.redact_values(text) == context.format(REDACTED)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("s3cr/t+k3y&x", id="a-prefix"),
        pytest.param("S3CR/T+K3Y&X Y:Z", id="other-case"),
        pytest.param("s3cr%2ft+k3y&x y", id="a-prefix-encoded"),
        pytest.param("nothing to see", id="unrelated"),
    ],
)
def test_redact_leaves_what_is_not_the_secret(text: str) -> None:
    assert Secrets([ASCII_SECRET]).redact(text) == text


def test_redact_masks_several_secrets_and_the_longest_first() -> None:
    secrets = Secrets(["abcd", "abcdefgh", "zz/zz"])
    assert secrets.redact("abcdefgh abcd zz%2Fzz zz\\/zz") == " ".join([REDACTED] * 4)


def test_a_secret_added_later_is_masked_too() -> None:
    secrets = Secrets(["first-secret"])
    assert secrets.redact("first-secret") == REDACTED
    secrets.add("second/secret")
    assert secrets.redact("second%2Fsecret first-secret") == f"{REDACTED} {REDACTED}"


def test_an_echoed_percent_encoded_client_key_is_masked_in_the_error() -> None:
    key = "ck/with+specials=="
    answer = httpx.Response(
        400,
        json={
            "object": "fault",
            "code": "kInvalidArgument",
            "status": 400,
            "message": f"unknown key {quote(key, safe='')}",
            "faults": [{"code": "kInvalidArgument", "message": json.dumps(key).replace("/", "\\/")}],
        },
    )
    with (
        rc.MedableClient(
            base_url="https://m.test", client_key=key, transport=httpx.MockTransport(lambda r: answer)
        ) as client,
        pytest.raises(rc.errors.ApiError) as caught,
    ):
        client.get("/x")
    error = caught.value
    shown = str(error) + repr(error) + repr(error.details) + pickle.dumps(error).decode("latin-1")
    assert quote(key, safe="") not in shown and key not in shown
    assert error.message == f"unknown key {REDACTED}"


# -- 4. the SDK's own log lines and RetryEvent ---------------------------------------------------


def echoing_fault(request: httpx.Request) -> httpx.Response:
    # An unknown code under 503: retried; the vendor put the client key it got into the code.
    key = request.headers["medable-client-key"]
    return httpx.Response(503, json={"object": "fault", "code": f"kBadKey:{key}", "status": 503})


def test_sync_retry_lines_and_events_carry_no_credential(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="resilient_client")
    events: list[rc.RetryEvent] = []
    with (
        rc.MedableClient(
            base_url="https://m.test",
            client_key=CLIENT_KEY,
            transport=httpx.MockTransport(echoing_fault),
            on_retry=events.append,
            transport_options=FakeClock().options(),
        ) as client,
        pytest.raises(rc.errors.ApiError),
    ):
        client.get(f"/sessions/{CLIENT_KEY}", params={"api_key": API_KEY})
    check_retry_events(events, caplog)


@pytest.mark.anyio
async def test_async_retry_lines_and_events_carry_no_credential(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="resilient_client")
    events: list[rc.RetryEvent] = []
    async with rc.AsyncMedableClient(
        base_url="https://m.test",
        client_key=CLIENT_KEY,
        transport=httpx.MockTransport(echoing_fault),
        on_retry=events.append,
        transport_options=FakeClock().options(),
    ) as client:
        with pytest.raises(rc.errors.ApiError):
            await client.get(f"/sessions/{CLIENT_KEY}", params={"api_key": API_KEY})
    check_retry_events(events, caplog)


def check_retry_events(events: list[rc.RetryEvent], caplog: pytest.LogCaptureFixture) -> None:
    assert events and caplog.records
    shown = [caplog.text, *(repr(e) for e in events), *(pickle.dumps(e).decode("latin-1") for e in events)]
    shown += [str(e.code) + e.url + e.cause for e in events]
    assert leaks("\n".join(shown)) == []
    assert all(e.url == f"https://m.test/sessions/{REDACTED}?api_key={REDACTED}" for e in events)
    assert "retry medable GET" in caplog.text


def test_sync_transport_errors_given_to_the_retry_hook_carry_no_credential() -> None:
    events: list[rc.RetryEvent] = []
    transport = rc.ResilientTransport(
        "medable",
        transport=raising(httpx.ConnectError, "refused"),
        on_retry=events.append,
        **FakeClock().options(),
    )
    with pytest.raises(httpx.ConnectError):
        transport.handle_request(request_with_secrets("bearer"))
    check_retry_hook_errors(events)


@pytest.mark.anyio
async def test_async_transport_errors_given_to_the_retry_hook_carry_no_credential() -> None:
    events: list[rc.RetryEvent] = []
    transport = rc.ResilientTransport(
        "medable",
        transport=raising(httpx.ConnectError, "refused"),
        on_retry=events.append,
        **FakeClock().options(),
    )
    with pytest.raises(httpx.ConnectError):
        await transport.handle_async_request(request_with_secrets("basic"))
    check_retry_hook_errors(events)


def check_retry_hook_errors(events: list[rc.RetryEvent]) -> None:
    assert len(events) == 3
    assert all(isinstance(e.error, httpx.ConnectError) for e in events)
    assert leaks("\n".join(everything_shown(e.error) + repr(e) for e in events if e.error)) == []
    assert leaks("\n".join(pickle.dumps(e).decode("latin-1") for e in events)) == []


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("retry hyper GET https://h/x?api_key=[REDACTED]: attempt 1/4", id="query"),
        pytest.param("Authorization: Bearer [REDACTED] sent", id="bearer"),
        pytest.param("password=[REDACTED]; next", id="inline"),
    ],
)
def test_masking_an_already_masked_text_changes_nothing(text: str) -> None:
    # The log filter sees the SDK's own lines, already redacted: nothing after a mask may be eaten.
    assert redact_text(text) == text


# -- what a request adds to the known secrets -----------------------------------------------------


def test_a_request_without_new_secrets_leaves_the_known_ones_as_they_are() -> None:
    known = Secrets(["known-password"])
    plain = httpx.Request("GET", "https://h.test/items?page=2", headers={"Accept": "application/json"})
    repeated = httpx.Request("GET", "https://h.test/items", headers={"X-Api-Key": "known-password"})
    # The same object, whose compiled matcher is reused, not a copy that compiles its own.
    assert known.with_request(plain) is known
    assert known.with_request(repeated) is known


@pytest.mark.parametrize(
    ("request_", "secret"),
    [
        pytest.param(
            httpx.Request("GET", "https://h.test/x", headers={"Authorization": "Bearer tok-1234"}),
            "tok-1234",
            id="bearer-header",
        ),
        pytest.param(
            httpx.Request(
                "GET", "https://h.test/x", headers={"X-Api-Key": "k1"}, cookies={"session": "c00kie"}
            ),
            "c00kie",
            id="cookie",
        ),
        pytest.param(httpx.Request("GET", "https://u:pa55word@h.test/x"), "pa55word", id="url-password"),
        pytest.param(httpx.Request("GET", "https://h.test/x?api_key=q-secret"), "q-secret", id="query"),
        pytest.param(
            httpx.Request("POST", "https://h.test/x", json={"password": "b0dy-pw"}), "b0dy-pw", id="json"
        ),
        pytest.param(
            httpx.Request("POST", "https://h.test/x", data={"client_key": "f0rm-key"}), "f0rm-key", id="form"
        ),
    ],
)
def test_a_requests_own_secrets_join_the_known_ones(request_: httpx.Request, secret: str) -> None:
    known = Secrets(["known-password"])
    found = known.with_request(request_)
    assert found is not known
    assert {secret, "known-password"} <= found.values
    assert known.values == {"known-password"}  # the transport's own secrets are not changed


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        pytest.param("https://h.test/a/b", "https://h.test/a/b", id="plain"),
        pytest.param(
            "https://h.test/token=abc123/x", f"https://h.test/token={REDACTED}", id="inline-in-path"
        ),
        pytest.param("https://h.test/x?token=abc123", f"https://h.test/x?token={REDACTED}", id="query"),
        pytest.param("https://u:pw1234@h.test/x", f"https://u:{REDACTED}@h.test/x", id="password"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(httpx.URL(url)) == shown


# -- a cookie the vendor echoes into a response header -----------------------------------------------

ECHOED_COOKIE = "C00KIE-VALUE-98765"


@pytest.fixture(scope="module")
def cookie_echo() -> Iterator[str]:
    """A loopback vendor that echoes the request's Cookie header into ``x-request-id`` (as some
    gateways put the session in their trace id); ``/fail`` answers Hyper's code 50 under a 503."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Echo(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            failing = "fail" in self.path
            body = json.dumps({"ResponseCode": 50 if failing else 0, "Message": "busy"}).encode()
            self.send_response(503 if failing else 200)
            self.send_header("x-request-id", f"req-{self.headers.get('Cookie', '')}")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def _leaks(caplog: pytest.LogCaptureFixture) -> tuple[list[str], list[str]]:
    messages = [record.getMessage() for record in caplog.records]
    headers = [m for m in messages if "x-request-id" in m]
    return [m for m in messages if ECHOED_COOKIE in m], headers


def test_a_cookie_echoed_into_a_response_header_reaches_no_log_line(
    cookie_echo: str, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.DEBUG),
        no_waits(),
        rc.HyperClient(base_url=cookie_echo, token="tok-abc", cookies={"sid": ECHOED_COOKIE}) as client,
    ):
        client.get("/api/ok")
        with pytest.raises(rc.errors.Hyper50Error) as caught:
            client.get("/api/fail")
    leaks, header_lines = _leaks(caplog)
    assert len(header_lines) >= 2  # httpcore did print the response headers, the echo with them
    assert any(r.name == "resilient_client" for r in caplog.records)  # and the SDK its own lines
    assert leaks == []
    assert ECHOED_COOKIE not in str(caught.value) and ECHOED_COOKIE not in repr(caught.value)
    assert caught.value.request_id is not None and ECHOED_COOKIE not in caught.value.request_id


@pytest.mark.anyio
async def test_an_echoed_cookie_reaches_no_log_line_of_an_async_client(
    cookie_echo: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG), no_waits():
        async with rc.AsyncHyperClient(
            base_url=cookie_echo, token="tok-abc", cookies={"sid": ECHOED_COOKIE}
        ) as client:
            await client.get("/api/ok")
            with pytest.raises(rc.errors.Hyper50Error):
                await client.get("/api/fail")
    leaks, header_lines = _leaks(caplog)
    assert len(header_lines) >= 2
    assert leaks == []


def test_a_log_line_written_after_the_call_is_not_masked_by_its_request(
    cookie_echo: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The masking lasts while the transport sends: an unrelated line later is the user's own.
    with (
        caplog.at_level(logging.DEBUG),
        rc.HyperClient(base_url=cookie_echo, token="tok-abc", cookies={"sid": ECHOED_COOKIE}) as client,
    ):
        client.get("/api/ok")
        logging.getLogger("resilient_client").debug("after: %s", "x-request-id req-not-a-secret")
    assert "after: x-request-id req-not-a-secret" in [r.getMessage() for r in caplog.records]


class _HeaderLoggingHook(rc.Hook):
    """A user's hook that logs the request's Cookie header as the call starts and ends."""

    def on_call_start(self, call: rc.Call) -> None:
        logging.getLogger("resilient_client").info("starting with %s", call.request.headers["cookie"])

    def on_call_end(self, call: rc.Call, error: BaseException | None) -> None:
        logging.getLogger("resilient_client").info("ended with %s", call.request.headers["cookie"])


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_hooks_lines_at_the_calls_start_and_end_mask_what_the_request_carries(
    asynchronous: bool, caplog: pytest.LogCaptureFixture
) -> None:
    mock = httpx.MockTransport(lambda request: httpx.Response(200, json={"ResponseCode": 0}))
    transport = rc.ResilientTransport("hyper", transport=mock, hooks=[_HeaderLoggingHook()])
    url = "https://h.test/api/ok"
    with caplog.at_level(logging.INFO, logger="resilient_client"):
        if asynchronous:

            async def call() -> None:
                async with httpx.AsyncClient(transport=transport, cookies={"sid": ECHOED_COOKIE}) as client:
                    await client.get(url)

            anyio.run(call)
        else:
            with httpx.Client(transport=transport, cookies={"sid": ECHOED_COOKIE}) as client:
                client.get(url)
    lines = [r.getMessage() for r in caplog.records if r.name == "resilient_client"]
    assert [line.split()[0] for line in lines] == ["starting", "ended"]
    assert not any(ECHOED_COOKIE in line for line in lines)
