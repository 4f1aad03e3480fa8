"""Vendor clients: httpx clients with the vendor's base URL habits, auth and ResilientTransport wired in.

Each is a subclass of ``httpx.Client`` / ``httpx.AsyncClient``, so every httpx feature keeps working
(``stream``, event hooks, timeouts, cookies, ``base_url``). ``transport=`` is the *inner* transport
(a mock in tests); the ResilientTransport always wraps it. Credentials are keyword arguments or come
from environment variables (README: "Vendor clients"); they never appear in a repr, a log line or an
error.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import httpx

from resilient_client._policy import RetryPolicy, resolve_policy
from resilient_client._redact import Secrets, redact_url
from resilient_client._scrub import scrub_error, scrubbing_async_stream, scrubbing_stream
from resilient_client._transport import ATTEMPTS_EXTENSION, OnRetry, ResilientTransport, _RetryBudget
from resilient_client.errors import ApiError, AuthenticationError

TokenProvider = Callable[[], str | Awaitable[str]]
PolicyArg = RetryPolicy | str | Path | None
InnerTransport = httpx.BaseTransport | httpx.AsyncBaseTransport | None

_ENV_PREFIX = "RESILIENT_CLIENT_"


def _env(vendor: str, name: str) -> str | None:
    return os.environ.get(f"{_ENV_PREFIX}{vendor.upper()}_{name}") or None


class _BearerAuth(httpx.Auth):
    """Bearer token, fixed or from a provider; ``invalidate()`` makes a provider be asked again."""

    def __init__(self, fixed: str | None, provider: TokenProvider | None, secrets: Secrets) -> None:
        self._provider = provider
        self._secrets = secrets
        self._token = None if provider is not None else fixed
        secrets.add(self._token)

    def invalidate(self) -> None:
        if self._provider is not None:
            self._token = None

    @property
    def can_refresh(self) -> bool:
        """Only a provider can hand out a new token: a fixed one is never "refreshed"."""
        return self._provider is not None

    def _apply(self, request: httpx.Request) -> None:
        if self._token:
            request.headers["Authorization"] = f"Bearer {self._token}"

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._token is None and self._provider is not None:
            token = self._provider()
            if inspect.isawaitable(token):
                raise TypeError("an async token provider needs the Async client")
            self._token = token
            self._secrets.add(token)
        self._apply(request)
        yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self._token is None and self._provider is not None:
            token = self._provider()
            self._token = await token if inspect.isawaitable(token) else token
            self._secrets.add(self._token)
        self._apply(request)
        yield request


def _bearer_auth(
    vendor: str, token: str | None, provider: TokenProvider | None, secrets: Secrets
) -> _BearerAuth:
    return _BearerAuth(token or _env(vendor, "TOKEN"), provider, secrets)


class _VendorClient:
    """What the eight vendor clients share: the vendor id and a repr without secrets."""

    vendor: ClassVar[str]
    base_url: httpx.URL

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={redact_url(self.base_url)!r})"

    def __init__(
        self,
        *,
        policy: PolicyArg = None,
        transport: InnerTransport = None,
        mounts: Mapping[str, InnerTransport] | None = None,
        on_retry: OnRetry | None = None,
        secrets: Secrets | None = None,
        transport_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._shared_budget: _RetryBudget | None = None
        self._resilient_options: dict[str, Any] = {
            "policy": resolve_policy(policy, self.vendor),
            "on_retry": on_retry,
            "secrets": secrets or Secrets(),
            **(transport_options or {}),
        }
        if mounts is not None:
            mounts = {pattern: inner and self._resilient(inner) for pattern, inner in mounts.items()}
        # The next class in the MRO is httpx.Client or httpx.AsyncClient; it calls the two
        # _init_*transport hooks below, so every transport it builds (with verify=, cert=, limits=,
        # http2=, proxy= and the environment's proxies) is wrapped, as is the injected one.
        super().__init__(transport=transport, mounts=mounts, **kwargs)  # type: ignore[call-arg]

    def _resilient(self, inner: httpx.BaseTransport | httpx.AsyncBaseTransport) -> ResilientTransport:
        transport = ResilientTransport(self.vendor, transport=inner, **self._resilient_options)
        # One client, one retry budget, whichever mount or proxy a request goes through.
        if self._shared_budget is None:
            self._shared_budget = transport._budget
        transport._budget = self._shared_budget
        return transport

    def _init_transport(self, *args: Any, **kwargs: Any) -> ResilientTransport:
        inner = kwargs.get("transport") or super()._init_transport(*args, **kwargs)  # type: ignore[misc]
        #: The ResilientTransport wrapping ``transport``; its ``secrets`` mask this client's credentials.
        self.resilient_transport = self._resilient(inner)
        return self.resilient_transport

    def _init_proxy_transport(self, *args: Any, **kwargs: Any) -> ResilientTransport:
        return self._resilient(super()._init_proxy_transport(*args, **kwargs))  # type: ignore[misc]

    def _is_token_rejected(self, error: AuthenticationError) -> bool:
        return False


class _SyncVendorClient(_VendorClient, httpx.Client):
    """An httpx.Client whose transport is a ResilientTransport for ``vendor``."""

    # httpx puts the original request back on an error the transport raised (the transport's own
    # scrubbing undone) and on one raised while it reads the body: they are scrubbed as they leave
    # the client, or a stream block, so they carry no credential.
    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        try:
            return super().send(request, **kwargs)
        except httpx.RequestError as error:
            scrub_error(error, self.resilient_transport.secrets)
            raise

    stream = scrubbing_stream(httpx.Client.stream)


class _AsyncVendorClient(_VendorClient, httpx.AsyncClient):
    """An httpx.AsyncClient whose transport is a ResilientTransport for ``vendor``."""

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        try:
            return await super().send(request, **kwargs)
        except httpx.RequestError as error:
            scrub_error(error, self.resilient_transport.secrets)
            raise

    stream = scrubbing_async_stream(httpx.AsyncClient.stream)


# -- bearer-token vendors: Hyper and USTA -------------------------------------------------------


@contextlib.contextmanager
def _counting_attempts(spent: int) -> Iterator[Callable[[httpx.Response], httpx.Response]]:
    """Adds the attempts spent before a token refresh to the replay's response or error."""

    def count(response: httpx.Response) -> httpx.Response:
        response.extensions[ATTEMPTS_EXTENSION] = response.extensions.get(ATTEMPTS_EXTENSION, 1) + spent
        return response

    try:
        yield count
    except ApiError as error:
        error.attempts += spent
        raise
    except httpx.TransportError as error:
        error.attempts = getattr(error, "attempts", 1) + spent  # type: ignore[attr-defined]
        raise


class _BearerMixin(_VendorClient):
    _bearer: _BearerAuth

    def _should_refresh(self, error: ApiError, request: httpx.Request) -> bool:
        return (
            isinstance(error, AuthenticationError)
            and self._bearer.can_refresh
            and self._is_token_rejected(error)
            and ResilientTransport._replayable(request)
        )


class _SyncBearerClient(_BearerMixin, _SyncVendorClient):
    def __init__(
        self,
        *,
        base_url: httpx.URL | str = "",
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        **kwargs: Any,
    ) -> None:
        secrets = Secrets()
        self._bearer = _bearer_auth(self.vendor, token, token_provider, secrets)
        super().__init__(base_url=base_url, auth=self._bearer, secrets=secrets, **kwargs)

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        try:
            return super().send(request, **kwargs)
        except AuthenticationError as error:
            if not self._should_refresh(error, request):
                raise
            spent = error.attempts
        # The vendor said the token is invalid or expired: ask for a new one, replay once.
        self._bearer.invalidate()
        with _counting_attempts(spent) as count:
            return count(super().send(request, **kwargs))


class _AsyncBearerClient(_BearerMixin, _AsyncVendorClient):
    def __init__(
        self,
        *,
        base_url: httpx.URL | str = "",
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        **kwargs: Any,
    ) -> None:
        secrets = Secrets()
        self._bearer = _bearer_auth(self.vendor, token, token_provider, secrets)
        super().__init__(base_url=base_url, auth=self._bearer, secrets=secrets, **kwargs)

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        try:
            return await super().send(request, **kwargs)
        except AuthenticationError as error:
            if not self._should_refresh(error, request):
                raise
            spent = error.attempts
        self._bearer.invalidate()
        with _counting_attempts(spent) as count:
            return count(await super().send(request, **kwargs))


class _HyperHabits(_VendorClient):
    vendor = "hyper"

    def _is_token_rejected(self, error: AuthenticationError) -> bool:
        # Code 6 ("Wrong account credentials") or the gateway's bare 401.
        return error.code == 6 or (error.code is None and error.http_status == 401)


class _UstaHabits(_VendorClient):
    vendor = "usta"

    def _is_token_rejected(self, error: AuthenticationError) -> bool:
        return error.code in (4003, "invalid_token") or (error.code is None and error.http_status == 401)


class HyperClient(_HyperHabits, _SyncBearerClient):
    """httpx.Client for the Hyper API: bearer token (``token=``, ``token_provider=`` or
    ``RESILIENT_CLIENT_HYPER_TOKEN``), refreshed once on code 6 or a gateway 401."""


class AsyncHyperClient(_HyperHabits, _AsyncBearerClient):
    """httpx.AsyncClient for the Hyper API (see HyperClient); the token provider may be async."""


class UstaClient(_UstaHabits, _SyncBearerClient):
    """httpx.Client for the USTA API: bearer token (``token=``, ``token_provider=`` or
    ``RESILIENT_CLIENT_USTA_TOKEN``), refreshed once on 401, OAuth ``invalid_token`` or 4003."""


class AsyncUstaClient(_UstaHabits, _AsyncBearerClient):
    """httpx.AsyncClient for the USTA API (see UstaClient); the token provider may be async."""


# -- Updox: every call a POST to /api/io/<Method> with an auth block in the JSON body -------------

_UPDOX_AUTH_FIELDS = ("applicationId", "applicationPassword", "accountId", "userId")


class _UpdoxAuth(httpx.Auth):
    """Adds ``"auth": {applicationId, applicationPassword, accountId, userId}`` to JSON POST bodies."""

    requires_request_body = True

    def __init__(self, block: dict[str, str]) -> None:
        self._block = block

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        yield self._with_auth(request)

    def _with_auth(self, request: httpx.Request) -> httpx.Request:
        if request.method != "POST" or not self._block:
            return request
        content = request.content
        try:
            body = json.loads(content) if content else {}
        except ValueError:
            return request
        if not isinstance(body, dict) or "auth" in body:
            return request
        body["auth"] = self._block
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() != "content-length"]
        headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
        return httpx.Request(
            request.method, request.url, headers=headers, json=body, extensions=request.extensions
        )


class _UpdoxHabits(_VendorClient):
    vendor = "updox"

    @staticmethod
    def _updox_auth(
        application_id: str | None,
        application_password: str | None,
        account_id: str | None,
        user_id: str | None,
        secrets: Secrets,
    ) -> _UpdoxAuth:
        given = {
            "applicationId": application_id or _env("updox", "APPLICATION_ID"),
            "applicationPassword": application_password or _env("updox", "APPLICATION_PASSWORD"),
            "accountId": account_id or _env("updox", "ACCOUNT_ID"),
            "userId": user_id or _env("updox", "USER_ID"),
        }
        block = {k: v for k, v in given.items() if v}
        secrets.add(block.get("applicationPassword"))
        return _UpdoxAuth(block)

    @staticmethod
    def _call_path(method: str) -> str:
        if not method or not method.isidentifier():
            raise ValueError(f"not an Updox method name: {method!r}")
        return f"/api/io/{method}"


class UpdoxClient(_UpdoxHabits, _SyncVendorClient):
    """httpx.Client for the Updox API: ``call("MessageList", {...})`` POSTs to ``/api/io/MessageList``
    with the auth block added (``application_id=`` ... or ``RESILIENT_CLIENT_UPDOX_APPLICATION_ID``...)."""

    def __init__(
        self,
        *,
        base_url: httpx.URL | str = "",
        application_id: str | None = None,
        application_password: str | None = None,
        account_id: str | None = None,
        user_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        secrets = Secrets()
        auth = self._updox_auth(application_id, application_password, account_id, user_id, secrets)
        super().__init__(base_url=base_url, auth=auth, secrets=secrets, **kwargs)

    def call(self, method: str, payload: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        """POST ``payload`` to ``/api/io/<method>`` and return the decoded JSON answer."""
        return self.post(self._call_path(method), json=dict(payload or {}), **kwargs).json()

    def ping(self) -> Any:
        """Call ``Ping`` (no credentials checked) and return the answer."""
        return self.call("Ping")


class AsyncUpdoxClient(_UpdoxHabits, _AsyncVendorClient):
    """httpx.AsyncClient for the Updox API (see UpdoxClient)."""

    def __init__(
        self,
        *,
        base_url: httpx.URL | str = "",
        application_id: str | None = None,
        application_password: str | None = None,
        account_id: str | None = None,
        user_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        secrets = Secrets()
        auth = self._updox_auth(application_id, application_password, account_id, user_id, secrets)
        super().__init__(base_url=base_url, auth=auth, secrets=secrets, **kwargs)

    async def call(self, method: str, payload: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        """POST ``payload`` to ``/api/io/<method>`` and return the decoded JSON answer."""
        response = await self.post(self._call_path(method), json=dict(payload or {}), **kwargs)
        return response.json()

    async def ping(self) -> Any:
        """Call ``Ping`` (no credentials checked) and return the answer."""
        return await self.call("Ping")


# -- Medable: client key header, session cookies, CSRF token echo, location verification ---------

CLIENT_KEY_HEADER = "Medable-Client-Key"
CSRF_HEADER = "Medable-Csrf-Token"


class _MedableHabits(_VendorClient):
    vendor = "medable"

    @staticmethod
    def _key_headers(client_key: str | None, headers: Any, secrets: Secrets) -> httpx.Headers:
        merged = httpx.Headers(headers)
        key = client_key or _env("medable", "CLIENT_KEY")
        secrets.add(key)
        if key:
            merged[CLIENT_KEY_HEADER] = key
        return merged

    @staticmethod
    def _csrf_token(response: httpx.Response | None, secrets: Secrets) -> str | None:
        token = None if response is None else response.headers.get(CSRF_HEADER)
        if token:
            secrets.add(token)
        return token

    @staticmethod
    def _login_body(
        email: str, password: str, verification_token: str | None, secrets: Secrets
    ) -> dict[str, Any]:
        secrets.add(password)
        body: dict[str, Any] = {"email": email, "password": password}
        if verification_token:
            secrets.add(verification_token)
            body["location"] = {"verificationToken": verification_token}
        return body


class MedableClient(_MedableHabits, _SyncVendorClient):
    """httpx.Client for Medable Cortex: ``Medable-Client-Key`` on every request (``client_key=`` or
    ``RESILIENT_CLIENT_MEDABLE_CLIENT_KEY``), session cookies kept, the CSRF token echoed back."""

    def __init__(
        self, *, base_url: httpx.URL | str = "", client_key: str | None = None, **kwargs: Any
    ) -> None:
        secrets = Secrets()
        headers = self._key_headers(client_key, kwargs.pop("headers", None), secrets)
        super().__init__(base_url=base_url, headers=headers, secrets=secrets, **kwargs)

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        try:
            response = super().send(request, **kwargs)
        except ApiError as error:
            self._echo_csrf(error.response)
            raise
        self._echo_csrf(response)
        return response

    def _echo_csrf(self, response: httpx.Response | None) -> None:
        token = self._csrf_token(response, self.resilient_transport.secrets)
        if token:
            self.headers[CSRF_HEADER] = token

    def login(
        self,
        email: str,
        password: str,
        *,
        verification_token: str | None = None,
        path: str = "/accounts/login",
    ) -> Any:
        """Sign in; raises VerificationRequired (kNewLocation) when the account must verify this
        location: call again with the ``verification_token`` the account holder received."""
        body = self._login_body(email, password, verification_token, self.resilient_transport.secrets)
        return self.post(path, json=body).json()


class AsyncMedableClient(_MedableHabits, _AsyncVendorClient):
    """httpx.AsyncClient for Medable Cortex (see MedableClient)."""

    def __init__(
        self, *, base_url: httpx.URL | str = "", client_key: str | None = None, **kwargs: Any
    ) -> None:
        secrets = Secrets()
        headers = self._key_headers(client_key, kwargs.pop("headers", None), secrets)
        super().__init__(base_url=base_url, headers=headers, secrets=secrets, **kwargs)

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        try:
            response = await super().send(request, **kwargs)
        except ApiError as error:
            self._echo_csrf(error.response)
            raise
        self._echo_csrf(response)
        return response

    def _echo_csrf(self, response: httpx.Response | None) -> None:
        token = self._csrf_token(response, self.resilient_transport.secrets)
        if token:
            self.headers[CSRF_HEADER] = token

    async def login(
        self,
        email: str,
        password: str,
        *,
        verification_token: str | None = None,
        path: str = "/accounts/login",
    ) -> Any:
        """Sign in (see MedableClient.login)."""
        body = self._login_body(email, password, verification_token, self.resilient_transport.secrets)
        response = await self.post(path, json=body)
        return response.json()


__all__ = [
    "AsyncHyperClient",
    "AsyncMedableClient",
    "AsyncUpdoxClient",
    "AsyncUstaClient",
    "HyperClient",
    "MedableClient",
    "UpdoxClient",
    "UstaClient",
]
