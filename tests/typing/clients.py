"""Checked by ``mypy --strict`` (tests/test_typing.py), never run: the vendor clients' constructors
as type checkers and IDEs see them. Every ``type: ignore`` below must be needed (strict mode warns
about unused ones), so a constructor hiding its parameters behind ``**kwargs`` fails this file."""

from __future__ import annotations

import httpx

import resilient_client as rc


def on_retry(event: rc.RetryEvent) -> None:
    print(event.attempt)


async def async_on_retry(event: rc.RetryEvent) -> None:
    print(event.attempt)


def log_request(request: httpx.Request) -> None:
    print(request.url)


async def async_log_request(request: httpx.Request) -> None:
    print(request.url)


async def fetch_token() -> str:
    return "token"


def every_option() -> None:
    with rc.HyperClient(
        base_url="https://hyper.example",
        token="t",
        policy="hyper",
        on_retry=on_retry,
        transport_options={"clock": lambda: 0.0},
        params={"a": "1"},
        headers={"X-Trace": "1"},
        cookies={"c": "1"},
        verify=False,
        cert=None,
        trust_env=False,
        http1=True,
        http2=False,
        proxy=None,
        mounts={"https://other.example": httpx.HTTPTransport()},
        timeout=httpx.Timeout(10.0),
        follow_redirects=True,
        limits=httpx.Limits(max_connections=5),
        max_redirects=3,
        event_hooks={"request": [log_request]},
        transport=httpx.MockTransport(lambda request: httpx.Response(200)),
        default_encoding="utf-8",
    ) as hyper:
        hyper.get("/")
    rc.UstaClient(base_url="https://usta.example", token_provider=lambda: "t", timeout=5.0)
    rc.UpdoxClient(
        base_url="https://updox.example",
        application_id="a",
        application_password="p",
        account_id="acct",
        user_id="u",
        follow_redirects=True,
    )
    rc.MedableClient(base_url="https://medable.example", client_key="k", auth=("user", "pw"))


async def every_async_option() -> None:
    async with rc.AsyncUstaClient(
        base_url="https://usta.example",
        token_provider=fetch_token,
        on_retry=async_on_retry,
        event_hooks={"response": [async_log_request]},
        transport=httpx.AsyncHTTPTransport(),
    ) as usta:
        await usta.get("/")
    rc.AsyncHyperClient(base_url="https://hyper.example", token="t", http2=True)
    rc.AsyncUpdoxClient(base_url="https://updox.example", application_id="a", application_password="p")
    rc.AsyncMedableClient(base_url="https://medable.example", client_key="k", verify=True)


def mistakes() -> None:
    rc.HyperClient(token="t", folow_redirects=True)  # type: ignore[call-arg]
    rc.UstaClient(token="t", on_retries=on_retry)  # type: ignore[call-arg]
    rc.UpdoxClient(application_id="a", application_password="p", app_password="p")  # type: ignore[call-arg]
    rc.MedableClient(clientkey="k")  # type: ignore[call-arg]
    rc.AsyncHyperClient(token="t", timeouts=3)  # type: ignore[call-arg]
    rc.HyperClient(token="t", auth=("user", "pw"))  # type: ignore[call-arg]
    rc.HyperClient(token="t", max_redirects="3")  # type: ignore[arg-type]
    rc.HyperClient(token_provider=fetch_token)  # type: ignore[arg-type]
    rc.HyperClient(token="t", transport=httpx.AsyncHTTPTransport())  # type: ignore[arg-type]
    rc.AsyncHyperClient(token="t", event_hooks={"request": [log_request]})  # type: ignore[list-item]
