"""Vendor clients: httpx clients with the vendor's base URL habits, auth and ResilientTransport wired in.

Each is a subclass of ``httpx.Client`` / ``httpx.AsyncClient``, so every httpx feature keeps working
(``stream``, event hooks, timeouts, cookies, ``base_url``). ``transport=`` is the *inner* transport
(a mock in tests); the ResilientTransport always wraps it. Credentials are keyword arguments or come
from environment variables (README: "Vendor clients"); they never appear in a repr, a log line or an
error.

Every public constructor spells out its parameters (httpx's own included) so that IDEs and
``mypy --strict`` see them, and checks them when the client is built: a missing credential, an async
callable given to a sync client, or a value of the wrong type raises there, not at the first request.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import ssl
import types
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import httpx

from resilient_client import _httpx_compat
from resilient_client._httpx_compat import DEFAULT_LIMITS, DEFAULT_MAX_REDIRECTS, DEFAULT_TIMEOUT_CONFIG
from resilient_client._pipeline import Hook
from resilient_client._policy import RetryPolicy, resolve_policy
from resilient_client._redact import Secrets, redact_url
from resilient_client._scrub import scrub_error, scrubbing_async_stream, scrubbing_stream
from resilient_client._transport import ATTEMPTS_EXTENSION, OnRetry, ResilientTransport, replayable
from resilient_client.errors import ApiError, AuthenticationError
from resilient_client.stores import StateStore
from resilient_client.stores.environment import default_state

if TYPE_CHECKING:
    from resilient_client._httpx_compat import (
        AuthTypes,
        CertTypes,
        CookieTypes,
        HeaderTypes,
        ProxyTypes,
        QueryParamTypes,
        TimeoutTypes,
    )

TokenProvider = Callable[[], str | Awaitable[str]]
PolicyArg = RetryPolicy | str | os.PathLike[str] | None
#: httpx calls a sync client's hooks with the request or the response; an async client awaits them.
EventHooks = Mapping[str, Sequence[Callable[..., object]]]
AsyncEventHooks = Mapping[str, Sequence[Callable[..., Awaitable[object]]]]

_ENV_PREFIX = "RESILIENT_CLIENT_"
_EVENTS = ("request", "response")
# What ``transport_options=`` may set on each ResilientTransport; the client sets the rest itself.
_TRANSPORT_OPTIONS = frozenset({"clock", "wall_clock", "sleep", "async_sleep", "random"})


def _env_name(vendor: str, name: str) -> str:
    return f"{_ENV_PREFIX}{vendor.upper()}_{name}"


def _env(vendor: str, name: str) -> str | None:
    return os.environ.get(_env_name(vendor, name)) or None


def _is_async_callable(value: object) -> bool:
    """True for an ``async def`` function, a partial of one, or an object whose ``__call__`` is one."""
    if inspect.iscoroutinefunction(value):
        return True
    return callable(value) and inspect.iscoroutinefunction(type(value).__call__)


def _type_name(value: object) -> str:
    return "None" if value is None else type(value).__name__


class _BearerAuth(httpx.Auth):
    """Bearer token, fixed or from a provider; ``invalidate()`` makes a provider be asked again.

    A provider is asked at the first request, not when the client is built: it usually fetches a
    token over the network (an OAuth exchange), and an async one cannot be awaited in ``__init__``.
    What it returns is checked then.
    """

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

    def _keep(self, token: object) -> None:
        # Never the value itself in the message: a wrong value may still be a secret.
        if not isinstance(token, str):
            raise TypeError(f"token_provider returned {_type_name(token)}; it must return the token as a str")
        if not token:
            raise ValueError("token_provider returned an empty str; it must return the token")
        self._token = token
        self._secrets.add(token)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._token is None and self._provider is not None:
            token = self._provider()
            if inspect.isawaitable(token):
                if inspect.iscoroutine(token):
                    token.close()  # never awaited: close it rather than leak a warning
                raise TypeError("an async token provider needs the Async client")
            self._keep(token)
        self._apply(request)
        yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self._token is None and self._provider is not None:
            token = self._provider()
            self._keep(await token if inspect.isawaitable(token) else token)
        self._apply(request)
        yield request


class _VendorClient(_httpx_compat.TransportHooks):
    """What the eight vendor clients share: the vendor id, argument checks and a repr without secrets."""

    vendor: ClassVar[str]
    _is_async: ClassVar[bool]
    base_url: httpx.URL

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        inherited = cls.__init__
        if cls.__name__.startswith("_") or "__init__" in vars(cls) or not inspect.isfunction(inherited):
            return
        # A public client whose constructor is a private base's (HyperClient's is shared with
        # UstaClient): a copy named after the client, so that Python's own TypeError for a misspelled
        # keyword reads "HyperClient.__init__() got an unexpected keyword argument", not the base's.
        # The copy shares the code's body and cells (``super()`` still finds the base's class).
        code = inherited.__code__.replace(co_qualname=f"{cls.__qualname__}.__init__")
        renamed = types.FunctionType(
            code, inherited.__globals__, "__init__", inherited.__defaults__, inherited.__closure__
        )
        renamed.__kwdefaults__ = inherited.__kwdefaults__
        renamed.__annotations__ = inherited.__annotations__
        renamed.__doc__ = inherited.__doc__
        renamed.__qualname__ = code.co_qualname
        renamed.__module__ = inherited.__module__
        cls.__init__ = renamed  # type: ignore[method-assign]

    def __repr__(self) -> str:
        # A constructor that refused its arguments leaves no base URL behind: say so, do not raise.
        base_url = getattr(self, "base_url", None)
        shown = "<not built>" if base_url is None else repr(redact_url(base_url))
        return f"{type(self).__name__}(base_url={shown})"

    def __init__(
        self,
        *,
        policy: PolicyArg,
        on_retry: OnRetry | None,
        state: StateStore | None,
        hooks: Sequence[Hook],
        transport_options: Mapping[str, Any] | None,
        secrets: Secrets,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None,
        mounts: Mapping[str, httpx.BaseTransport | httpx.AsyncBaseTransport | None] | None,
        event_hooks: Mapping[str, Sequence[Callable[..., object]]] | None,
        **httpx_options: Any,
    ) -> None:
        self._check_policy(policy)
        if on_retry is not None:
            self._check_callable("on_retry", on_retry)
        self._check_transport("transport", transport)
        for pattern, inner in (mounts or {}).items():
            self._check_transport(f"mounts[{pattern!r}]", inner)
        self._check_event_hooks(event_hooks)
        for index, hook in enumerate(hooks):
            if not isinstance(hook, Hook):
                raise self._refuse(f"hooks[{index}] must be a resilient_client.Hook, got {_type_name(hook)}")
        resolved = resolve_policy(policy, self.vendor)
        self._resilient_options: dict[str, Any] = {
            "policy": resolved,
            "on_retry": on_retry,
            "secrets": secrets,
            # One store for every transport the client builds (mounts and proxies too): one budget,
            # one circuit per host, one rate, one set of guards. With none given, Redis when
            # $RESILIENT_CLIENT_REDIS_URL says so (one store per process), else a MemoryState.
            "state": default_state(resolved.state) if state is None else state,
            "hooks": tuple(hooks),
            **self._checked_transport_options(transport_options),
        }
        self._first_resilient: ResilientTransport | None = None
        if mounts is not None:
            mounts = {pattern: inner and self._resilient(inner) for pattern, inner in mounts.items()}
        # httpx.Client or httpx.AsyncClient, next in the MRO, hands every transport it builds (with
        # verify=, cert=, limits=, http2=, proxy= and the environment's proxies) and the injected one
        # to ``wrap_built_transport``; an httpx that builds them elsewhere gets them built here.
        if not _httpx_compat.CLIENT_TRANSPORT_HOOKS:
            inner, proxies = _httpx_compat.built_transports(self._is_async, transport, httpx_options)
            transport = self.wrap_built_transport(inner, default=True)
            built = {pattern: proxied and self._resilient(proxied) for pattern, proxied in proxies.items()}
            mounts = {**built, **(mounts or {})}
        super().__init__(  # type: ignore[call-arg]
            transport=transport, mounts=mounts, event_hooks=event_hooks, **httpx_options
        )

    # -- argument checks: a wrong argument fails here, not at the first request -----------------

    def _refuse(self, problem: str) -> TypeError:
        return TypeError(f"{type(self).__name__}: {problem}")

    def _check_callable(self, name: str, value: object) -> None:
        if not callable(value):
            raise self._refuse(f"{name}= must be callable, got {_type_name(value)}")
        if _is_async_callable(value) and not self._is_async:
            raise self._refuse(
                f"{name}= is an async function, which a sync client cannot await; "
                f"use Async{type(self).__name__} or pass a plain function"
            )

    def _check_policy(self, policy: object) -> None:
        if policy is not None and not isinstance(policy, RetryPolicy | str | os.PathLike):
            raise self._refuse(
                f"policy= must be a RetryPolicy, a path or a shipped policy's name, got {_type_name(policy)}"
            )

    def _check_transport(self, name: str, transport: object) -> None:
        method = "handle_async_request" if self._is_async else "handle_request"
        if transport is not None and not callable(getattr(transport, method, None)):
            kind = "httpx.AsyncBaseTransport" if self._is_async else "httpx.BaseTransport"
            raise self._refuse(f"{name}= must be an {kind} (with {method}), got {_type_name(transport)}")

    def _check_event_hooks(self, event_hooks: object) -> None:
        if event_hooks is None:
            return
        if not isinstance(event_hooks, Mapping):
            raise self._refuse(f"event_hooks= must be a mapping, got {_type_name(event_hooks)}")
        for event, hooks in event_hooks.items():
            if event not in _EVENTS:
                raise self._refuse(
                    f"event_hooks: unknown event {event!r}; httpx calls 'request' and 'response'"
                )
            if isinstance(hooks, str | bytes) or not isinstance(hooks, Sequence):
                raise self._refuse(f"event_hooks[{event!r}] must be a list of callables")
            for index, hook in enumerate(hooks):
                self._check_callable(f"event_hooks[{event!r}][{index}]", hook)

    def _checked_transport_options(self, options: Mapping[str, Any] | None) -> dict[str, Any]:
        unknown = sorted(set(options or {}) - _TRANSPORT_OPTIONS)
        if unknown:
            raise self._refuse(
                f"transport_options: unknown key {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(sorted(_TRANSPORT_OPTIONS))}"
            )
        return dict(options or {})

    def _credential(self, keyword: str, value: object, env: str, *, required: bool = True) -> str | None:
        """The value given, else the environment variable's; a required one missing raises."""
        if value is not None and not isinstance(value, str):
            raise self._refuse(f"{keyword}= must be a str, got {_type_name(value)}")
        found = value or _env(self.vendor, env)
        if required and not found:
            raise self._refuse(f"no {keyword}: pass {keyword}= or set {_env_name(self.vendor, env)}")
        return found

    # -- every transport the client builds or is given is wrapped -------------------------------

    def _resilient(self, inner: httpx.BaseTransport | httpx.AsyncBaseTransport) -> ResilientTransport:
        transport = ResilientTransport(self.vendor, transport=inner, **self._resilient_options)
        # Behind a proxy every call takes a mounted transport: client.resilient_transport.breaker
        # must still report and reset the circuits they opened.
        if self._first_resilient is None:
            self._first_resilient = transport
        transport.breaker.share_hosts(self._first_resilient.breaker)
        return transport

    def wrap_built_transport(
        self, inner: httpx.BaseTransport | httpx.AsyncBaseTransport, *, default: bool
    ) -> ResilientTransport:
        wrapped = self._resilient(inner)
        if default:
            #: The ResilientTransport wrapping ``transport``; its ``secrets`` mask this client's credentials.
            self.resilient_transport = wrapped
        return wrapped

    def _is_token_rejected(self, error: AuthenticationError) -> bool:
        return False


class _SyncVendorClient(_VendorClient, httpx.Client):
    """An httpx.Client whose transport is a ResilientTransport for ``vendor``."""

    _is_async = False

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

    _is_async = True

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

    def _bearer_auth(self, token: object, token_provider: object, secrets: Secrets) -> _BearerAuth:
        if token_provider is None:
            fixed = self._credential("token", token, "TOKEN", required=False)
            if not fixed:
                raise self._refuse(
                    f"no token: pass token= or token_provider=, or set {_env_name(self.vendor, 'TOKEN')}"
                )
            return _BearerAuth(fixed, None, secrets)
        if token is not None:
            raise self._refuse("pass token= or token_provider=, not both")
        self._check_callable("token_provider", token_provider)
        return _BearerAuth(None, token_provider, secrets)  # type: ignore[arg-type]

    def _should_refresh(self, error: ApiError, request: httpx.Request) -> bool:
        return (
            isinstance(error, AuthenticationError)
            and self._bearer.can_refresh
            and self._is_token_rejected(error)
            and replayable(request)
        )


class _SyncBearerClient(_BearerMixin, _SyncVendorClient):
    def __init__(
        self,
        *,
        base_url: httpx.URL | str = "",
        token: str | None = None,
        token_provider: Callable[[], str] | None = None,
        policy: PolicyArg = None,
        on_retry: OnRetry | None = None,
        state: StateStore | None = None,
        hooks: Sequence[Hook] = (),
        transport_options: Mapping[str, Any] | None = None,
        params: QueryParamTypes | None = None,
        headers: HeaderTypes | None = None,
        cookies: CookieTypes | None = None,
        verify: ssl.SSLContext | str | bool = True,
        cert: CertTypes | None = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        proxy: ProxyTypes | None = None,
        mounts: Mapping[str, httpx.BaseTransport | None] | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT_CONFIG,
        follow_redirects: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        event_hooks: EventHooks | None = None,
        transport: httpx.BaseTransport | None = None,
        default_encoding: str | Callable[[bytes], str] = "utf-8",
    ) -> None:
        secrets = Secrets()
        self._bearer = self._bearer_auth(token, token_provider, secrets)
        super().__init__(
            policy=policy,
            on_retry=on_retry,
            state=state,
            hooks=hooks,
            transport_options=transport_options,
            secrets=secrets,
            base_url=base_url,
            auth=self._bearer,
            params=params,
            headers=headers,
            cookies=cookies,
            verify=verify,
            cert=cert,
            trust_env=trust_env,
            http1=http1,
            http2=http2,
            proxy=proxy,
            mounts=mounts,
            timeout=timeout,
            follow_redirects=follow_redirects,
            limits=limits,
            max_redirects=max_redirects,
            event_hooks=event_hooks,
            transport=transport,
            default_encoding=default_encoding,
        )

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
        policy: PolicyArg = None,
        on_retry: OnRetry | None = None,
        state: StateStore | None = None,
        hooks: Sequence[Hook] = (),
        transport_options: Mapping[str, Any] | None = None,
        params: QueryParamTypes | None = None,
        headers: HeaderTypes | None = None,
        cookies: CookieTypes | None = None,
        verify: ssl.SSLContext | str | bool = True,
        cert: CertTypes | None = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        proxy: ProxyTypes | None = None,
        mounts: Mapping[str, httpx.AsyncBaseTransport | None] | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT_CONFIG,
        follow_redirects: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        event_hooks: AsyncEventHooks | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        default_encoding: str | Callable[[bytes], str] = "utf-8",
    ) -> None:
        secrets = Secrets()
        self._bearer = self._bearer_auth(token, token_provider, secrets)
        super().__init__(
            policy=policy,
            on_retry=on_retry,
            state=state,
            hooks=hooks,
            transport_options=transport_options,
            secrets=secrets,
            base_url=base_url,
            auth=self._bearer,
            params=params,
            headers=headers,
            cookies=cookies,
            verify=verify,
            cert=cert,
            trust_env=trust_env,
            http1=http1,
            http2=http2,
            proxy=proxy,
            mounts=mounts,
            timeout=timeout,
            follow_redirects=follow_redirects,
            limits=limits,
            max_redirects=max_redirects,
            event_hooks=event_hooks,
            transport=transport,
            default_encoding=default_encoding,
        )

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
    """httpx.Client for the Hyper API: a bearer token, required (``token=``, ``token_provider=`` or
    ``RESILIENT_CLIENT_HYPER_TOKEN``), asked again once on code 6 or a gateway 401."""


class AsyncHyperClient(_HyperHabits, _AsyncBearerClient):
    """httpx.AsyncClient for the Hyper API (see HyperClient); the token provider may be async."""


class UstaClient(_UstaHabits, _SyncBearerClient):
    """httpx.Client for the USTA API: a bearer token, required (``token=``, ``token_provider=`` or
    ``RESILIENT_CLIENT_USTA_TOKEN``), asked again once on 401, OAuth ``invalid_token`` or 4003."""


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

    def _updox_auth(
        self,
        application_id: str | None,
        application_password: str | None,
        account_id: str | None,
        user_id: str | None,
        secrets: Secrets,
    ) -> _UpdoxAuth:
        # The application's credentials are needed by every call but Ping; the account and the
        # user only by account-level calls, so those two may be left out.
        given = {
            "applicationId": self._credential("application_id", application_id, "APPLICATION_ID"),
            "applicationPassword": self._credential(
                "application_password", application_password, "APPLICATION_PASSWORD"
            ),
            "accountId": self._credential("account_id", account_id, "ACCOUNT_ID", required=False),
            "userId": self._credential("user_id", user_id, "USER_ID", required=False),
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
    with the auth block added. ``application_id=`` and ``application_password=`` are required (or
    ``RESILIENT_CLIENT_UPDOX_APPLICATION_ID`` / ``..._PASSWORD``); ``account_id=`` and ``user_id=``
    (or ``..._ACCOUNT_ID`` / ``..._USER_ID``) only for account-level calls."""

    def __init__(
        self,
        *,
        base_url: httpx.URL | str = "",
        application_id: str | None = None,
        application_password: str | None = None,
        account_id: str | None = None,
        user_id: str | None = None,
        policy: PolicyArg = None,
        on_retry: OnRetry | None = None,
        state: StateStore | None = None,
        hooks: Sequence[Hook] = (),
        transport_options: Mapping[str, Any] | None = None,
        params: QueryParamTypes | None = None,
        headers: HeaderTypes | None = None,
        cookies: CookieTypes | None = None,
        verify: ssl.SSLContext | str | bool = True,
        cert: CertTypes | None = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        proxy: ProxyTypes | None = None,
        mounts: Mapping[str, httpx.BaseTransport | None] | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT_CONFIG,
        follow_redirects: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        event_hooks: EventHooks | None = None,
        transport: httpx.BaseTransport | None = None,
        default_encoding: str | Callable[[bytes], str] = "utf-8",
    ) -> None:
        secrets = Secrets()
        auth = self._updox_auth(application_id, application_password, account_id, user_id, secrets)
        super().__init__(
            policy=policy,
            on_retry=on_retry,
            state=state,
            hooks=hooks,
            transport_options=transport_options,
            secrets=secrets,
            base_url=base_url,
            auth=auth,
            params=params,
            headers=headers,
            cookies=cookies,
            verify=verify,
            cert=cert,
            trust_env=trust_env,
            http1=http1,
            http2=http2,
            proxy=proxy,
            mounts=mounts,
            timeout=timeout,
            follow_redirects=follow_redirects,
            limits=limits,
            max_redirects=max_redirects,
            event_hooks=event_hooks,
            transport=transport,
            default_encoding=default_encoding,
        )

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
        policy: PolicyArg = None,
        on_retry: OnRetry | None = None,
        state: StateStore | None = None,
        hooks: Sequence[Hook] = (),
        transport_options: Mapping[str, Any] | None = None,
        params: QueryParamTypes | None = None,
        headers: HeaderTypes | None = None,
        cookies: CookieTypes | None = None,
        verify: ssl.SSLContext | str | bool = True,
        cert: CertTypes | None = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        proxy: ProxyTypes | None = None,
        mounts: Mapping[str, httpx.AsyncBaseTransport | None] | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT_CONFIG,
        follow_redirects: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        event_hooks: AsyncEventHooks | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        default_encoding: str | Callable[[bytes], str] = "utf-8",
    ) -> None:
        secrets = Secrets()
        auth = self._updox_auth(application_id, application_password, account_id, user_id, secrets)
        super().__init__(
            policy=policy,
            on_retry=on_retry,
            state=state,
            hooks=hooks,
            transport_options=transport_options,
            secrets=secrets,
            base_url=base_url,
            auth=auth,
            params=params,
            headers=headers,
            cookies=cookies,
            verify=verify,
            cert=cert,
            trust_env=trust_env,
            http1=http1,
            http2=http2,
            proxy=proxy,
            mounts=mounts,
            timeout=timeout,
            follow_redirects=follow_redirects,
            limits=limits,
            max_redirects=max_redirects,
            event_hooks=event_hooks,
            transport=transport,
            default_encoding=default_encoding,
        )

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

    def _key_headers(
        self, client_key: str | None, headers: HeaderTypes | None, secrets: Secrets
    ) -> httpx.Headers:
        merged = httpx.Headers(headers)
        key = self._credential("client_key", client_key, "CLIENT_KEY")
        secrets.add(key)
        merged[CLIENT_KEY_HEADER] = key or ""
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
    ``RESILIENT_CLIENT_MEDABLE_CLIENT_KEY``, required), session cookies kept, the CSRF token echoed."""

    def __init__(
        self,
        *,
        base_url: httpx.URL | str = "",
        client_key: str | None = None,
        policy: PolicyArg = None,
        on_retry: OnRetry | None = None,
        state: StateStore | None = None,
        hooks: Sequence[Hook] = (),
        transport_options: Mapping[str, Any] | None = None,
        auth: AuthTypes | None = None,
        params: QueryParamTypes | None = None,
        headers: HeaderTypes | None = None,
        cookies: CookieTypes | None = None,
        verify: ssl.SSLContext | str | bool = True,
        cert: CertTypes | None = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        proxy: ProxyTypes | None = None,
        mounts: Mapping[str, httpx.BaseTransport | None] | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT_CONFIG,
        follow_redirects: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        event_hooks: EventHooks | None = None,
        transport: httpx.BaseTransport | None = None,
        default_encoding: str | Callable[[bytes], str] = "utf-8",
    ) -> None:
        secrets = Secrets()
        key_headers = self._key_headers(client_key, headers, secrets)
        super().__init__(
            policy=policy,
            on_retry=on_retry,
            state=state,
            hooks=hooks,
            transport_options=transport_options,
            secrets=secrets,
            base_url=base_url,
            auth=auth,
            params=params,
            headers=key_headers,
            cookies=cookies,
            verify=verify,
            cert=cert,
            trust_env=trust_env,
            http1=http1,
            http2=http2,
            proxy=proxy,
            mounts=mounts,
            timeout=timeout,
            follow_redirects=follow_redirects,
            limits=limits,
            max_redirects=max_redirects,
            event_hooks=event_hooks,
            transport=transport,
            default_encoding=default_encoding,
        )

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
        self,
        *,
        base_url: httpx.URL | str = "",
        client_key: str | None = None,
        policy: PolicyArg = None,
        on_retry: OnRetry | None = None,
        state: StateStore | None = None,
        hooks: Sequence[Hook] = (),
        transport_options: Mapping[str, Any] | None = None,
        auth: AuthTypes | None = None,
        params: QueryParamTypes | None = None,
        headers: HeaderTypes | None = None,
        cookies: CookieTypes | None = None,
        verify: ssl.SSLContext | str | bool = True,
        cert: CertTypes | None = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        proxy: ProxyTypes | None = None,
        mounts: Mapping[str, httpx.AsyncBaseTransport | None] | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT_CONFIG,
        follow_redirects: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        event_hooks: AsyncEventHooks | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        default_encoding: str | Callable[[bytes], str] = "utf-8",
    ) -> None:
        secrets = Secrets()
        key_headers = self._key_headers(client_key, headers, secrets)
        super().__init__(
            policy=policy,
            on_retry=on_retry,
            state=state,
            hooks=hooks,
            transport_options=transport_options,
            secrets=secrets,
            base_url=base_url,
            auth=auth,
            params=params,
            headers=key_headers,
            cookies=cookies,
            verify=verify,
            cert=cert,
            trust_env=trust_env,
            http1=http1,
            http2=http2,
            proxy=proxy,
            mounts=mounts,
            timeout=timeout,
            follow_redirects=follow_redirects,
            limits=limits,
            max_redirects=max_redirects,
            event_hooks=event_hooks,
            transport=transport,
            default_encoding=default_encoding,
        )

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
