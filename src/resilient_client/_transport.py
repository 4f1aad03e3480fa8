"""ResilientTransport: the I/O shell around an inner httpx transport, sync and async.

Every request takes one path, whatever the policy switches on and whatever the inner transport is
(SPEC section 12)::

    handle_request(request)
      -> policy (the transport's, or the request's own under ``resilient_client.policy``)
      -> Call (the request's context: deadline, timeouts, replayability)
      -> Pipeline.run (strategies/): retry -> breaker -> limiter -> guard -> Leaf (_leaf.py):
         send -> read -> classify -> decide
      -> the final Attempt: the response, or the typed error it stands for

As ``httpx.HTTPTransport.handle_request`` maps httpcore's exceptions at one boundary, this module is
the one place where an Attempt becomes what the caller sees: the response (with the attempt count),
the vendor's typed error, a strategy's refusal, or httpx's own transport error (scrubbed of secrets).
"""

from __future__ import annotations

import random as _random
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import NoReturn

import httpx

from resilient_client import _deadline
from resilient_client._body import request_id as _request_id
from resilient_client._catalog import Catalog, catalog
from resilient_client._clock import Clock
from resilient_client._decision import RETURN, is_retryable
from resilient_client._leaf import Leaf
from resilient_client._log_redaction import protect as protect_logs
from resilient_client._pipeline import (
    ATTEMPTS_EXTENSION,
    CALLER_TIMEOUT_EXTENSION,
    OPERATION_EXTENSION,
    POLICY_EXTENSION,
    Attempt,
    Call,
    Hook,
    Hooks,
    OnRetry,
    OnRetryHook,
    RetryEvent,
    is_testing,
    set_testing,
)
from resilient_client._policy import RetryPolicy, resolve_policy
from resilient_client._redact import Secrets
from resilient_client._scrub import async_body_errors_scrubbed, body_errors_scrubbed, scrub_error
from resilient_client.errors import StateUnavailableError
from resilient_client.instrumentation import LoggingHook
from resilient_client.stores import StateStore
from resilient_client.stores.environment import default_state
from resilient_client.strategies import Pipeline, build
from resilient_client.strategies.breaker import BreakerStrategy
from resilient_client.strategies.limiter import LimiterStrategy

__all__ = [
    "ATTEMPTS_EXTENSION",
    "CALLER_TIMEOUT_EXTENSION",
    "OPERATION_EXTENSION",
    "POLICY_EXTENSION",
    "OnRetry",
    "ResilientTransport",
    "RetryEvent",
    "is_testing",
    "set_testing",
]


def _default_inners() -> tuple[httpx.HTTPTransport, httpx.AsyncHTTPTransport]:
    """httpx's own transports, as ``httpx.Client()`` builds them: at construction, so that neither
    the TLS context (tens of ms) nor the first pool (a one-time import) is paid inside the first
    request's deadline, nor makes that request outlast it. One TLS context serves both."""
    context = httpx.create_ssl_context()
    return (
        _deadline.bind(httpx.HTTPTransport(verify=context)),
        _deadline.bind(httpx.AsyncHTTPTransport(verify=context)),
    )


def replayable(request: httpx.Request) -> bool:
    """Whether ``request``'s body can be sent again: bytes in memory, not a one-shot stream (httpx
    keeps every body it has read, or was given as bytes, JSON or a form, as a ``ByteStream``)."""
    return isinstance(request.stream, httpx.ByteStream)


def _store_refused(error: StateUnavailableError, call: Call) -> None:
    """Give ``error`` the vendor and the request of the call it refused (a store knows neither)."""
    if not error.vendor:
        error.vendor = call.vendor
    if error.request is None:
        error.request = call.request


def _cannot_serve(inner: object, kind: str) -> Callable[[], NoReturn]:
    def refuse() -> NoReturn:
        raise TypeError(f"{type(inner).__name__} cannot serve {kind}")

    return refuse


class ResilientTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """An httpx transport that classifies every response by the vendor's catalog, retries, and
    guards the vendor with a circuit breaker, a rate limiter and per-key guards (as its policy says).

    One class for ``httpx.Client`` and ``httpx.AsyncClient`` (as ``httpx.MockTransport`` is). It wraps
    ``transport`` (default: httpx's own HTTP transport of the matching kind). ``state`` holds what the
    strategies remember (budget tokens, circuits, rates, guard leases): by default the process's
    ``RedisState`` for ``$RESILIENT_CLIENT_REDIS_URL`` (configured by the policy's ``[state]``) when
    that is set, else a ``MemoryState`` of its own; hand several transports one store to share it (a
    vendor client does, for its mounts and proxies). ``clock`` is a ``Clock``, or the monotonic time
    function as in 0.1 (with ``wall_clock``, ``sleep``, ``async_sleep`` and ``random`` beside it).
    ``hooks`` receive every event (attempts, retries, refusals, breaker changes); ``on_retry`` is the
    short form of one.
    """

    def __init__(
        self,
        vendor: str | Catalog,
        *,
        policy: RetryPolicy | str | Path | None = None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        on_retry: OnRetry | None = None,
        clock: Clock | Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] | None = None,
        random: Callable[[], float] = _random.random,
        secrets: Secrets | tuple[str | None, ...] = (),
        state: StateStore | None = None,
        hooks: Sequence[Hook] = (),
    ) -> None:
        self.catalog = vendor if isinstance(vendor, Catalog) else catalog(vendor)
        self.vendor = self.catalog.vendor
        self.policy = resolve_policy(policy, self.vendor).checked_for(self.catalog)
        self._inner = _deadline.bind(transport)
        # Built now, not by the first request: a TLS context costs tens of ms (see _default_inners).
        defaults = (None, None) if transport is not None else _default_inners()
        self._sync_default: httpx.HTTPTransport | None = defaults[0]
        self._async_default: httpx.AsyncHTTPTransport | None = defaults[1]
        inner = self._inner
        self.clock = (
            clock
            if isinstance(clock, Clock)
            else Clock.from_options(
                clock=clock, wall_clock=wall_clock, sleep=sleep, async_sleep=async_sleep, random=random
            )
        )
        #: Secret values this transport's errors mask (clients add tokens and passwords here).
        self.secrets = secrets if isinstance(secrets, Secrets) else Secrets(secrets)
        # httpx and httpcore log this transport's URLs and response headers: mask them there too.
        protect_logs(self.secrets)
        #: The store behind the strategies' state (see ``stores.environment`` for the default).
        self.state: StateStore = default_state(self.policy.state) if state is None else state
        self.on_retry = on_retry
        self.hooks = Hooks([LoggingHook(), *hooks, *([OnRetryHook(on_retry)] if on_retry else [])])
        # httpx's own transports bound every network operation by the deadline (``_deadline``).
        network_bound = _deadline.reaches_network(self._sync_default if inner is None else inner)
        leaf = Leaf(
            self.catalog,
            self.hooks,
            inner
            if isinstance(inner, httpx.BaseTransport)
            else self._sync_default or _cannot_serve(inner, "a sync httpx.Client"),
            inner
            if isinstance(inner, httpx.AsyncBaseTransport)
            else self._async_default or _cannot_serve(inner, "an httpx.AsyncClient"),
            network_bound,
        )
        self._pipeline: Pipeline = build(self.policy, self.state, self.vendor, self.hooks, self.clock, leaf)

    def __repr__(self) -> str:
        return f"ResilientTransport(vendor={self.vendor!r}, policy={self.policy.source!r})"

    @property
    def breaker(self) -> BreakerStrategy:
        """The circuit breaker: ``.state`` (``"closed"``, ``"open"``, ``"half_open"``) and ``.reset()``."""
        return self._pipeline.breaker

    @property
    def limiter(self) -> LimiterStrategy:
        """The rate limiter: ``.clear()`` (or ``await .aclear()``) ends a server's Retry-After pause
        of the hosts this transport called, for everyone who shares its store."""
        return self._pipeline.limiter

    # -- no I/O: a request in, a Call; an Attempt out, a response or a typed error ----------------

    def _call(self, request: httpx.Request) -> Call:
        override = request.extensions.get(POLICY_EXTENSION)
        if override is None:
            policy = self.policy
        elif isinstance(override, RetryPolicy):
            policy = override.checked_for(self.catalog)
        else:
            policy = resolve_policy(override, self.vendor).checked_for(self.catalog)
        # Asked before sending: an inner transport that reads a one-shot body (MockTransport does)
        # leaves it looking replayable afterwards.
        return Call(request, policy, self.clock, self.vendor, replayable(request), self.secrets)

    def _started(self, call: Call) -> None:
        for hook in self.hooks.call_start:
            hook(call)

    def _ended(self, call: Call, error: BaseException | None) -> None:
        """``on_call_end`` closes what ``on_call_start`` opened (a tracing span, say)."""
        for hook in self.hooks.call_end:
            hook(call, error)

    def _outcome(self, call: Call, result: Attempt) -> httpx.Response:
        response = result.response
        if result.decision is RETURN and response is not None:  # a success (most calls): as it is
            response.extensions[ATTEMPTS_EXTENSION] = result.number
            return response
        if result.rejection is not None:
            raise result.rejection  # the first attempt was refused: nothing was ever sent
        attempts = result.number
        reason = result.decision.reason
        if result.error is not None:
            result.error.add_note(f"resilient_client: {attempts} attempt(s); {reason}")
            result.error.attempts = attempts  # type: ignore[attr-defined]
            result.error.reason = reason  # type: ignore[attr-defined]
            # httpx's error keeps the request (headers, URL, body) it failed on: a redacted copy
            # takes its place, so no pickle, message or traceback carries a credential.
            scrub_error(result.error, self.secrets)
            raise result.error
        response = result.response
        assert response is not None
        response.extensions[ATTEMPTS_EXTENSION] = attempts
        if result.decision.action == "return":
            return response
        outcome = result.outcome
        error_class = outcome.error_class
        assert error_class is not None
        raise error_class(
            # A status-only fault (a proxy's HTML 503) says its status once, in str()'s "[HTTP 503]".
            outcome.message or response.reason_phrase,
            vendor=self.vendor,
            code=outcome.code,
            http_status=response.status_code,
            retryable=is_retryable(call.policy, outcome),
            details=outcome.details,
            attempts=attempts,
            retry_after=result.retry_after,
            request_id=_request_id(response, self.catalog.envelope.request_id_headers),
            reason=reason,
            request=call.request,
            response=response,
            secrets=self.secrets.with_request(call.request),
        )

    # -- sync and async shells ---------------------------------------------------------------

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the pipeline (httpx's transport API): the vendor's response, or
        its typed error (``ApiError``), a refusal (``RejectedError``) or httpx's transport error."""
        call = self._call(request)
        # One context variable for the whole call (``_deadline.Deadline``): every network operation
        # of httpx's own transports and every wait on the state store end by the deadline, and log
        # lines written meanwhile (httpcore's response headers, where a vendor may echo the
        # request's cookie) mask what the request carries.
        in_flight = _deadline.current.set(_deadline.Deadline(call.deadline, call.clock.monotonic, request))
        try:
            if self.hooks.call_start:
                self._started(call)
            try:
                response = self._outcome(call, self._pipeline.run(call))
            except BaseException as exc:
                if isinstance(exc, StateUnavailableError):
                    _store_refused(exc, call)
                self._ended(call, exc)
                raise
            if self.hooks.call_end:
                self._ended(call, None)
        finally:
            _deadline.current.reset(in_flight)
        return body_errors_scrubbed(response, request, self.secrets)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """The async twin of ``handle_request`` (httpx's async transport API)."""
        call = self._call(request)
        in_flight = _deadline.current.set(_deadline.Deadline(call.deadline, call.clock.monotonic, request))
        try:
            if self.hooks.call_start:
                self._started(call)
            try:
                response = self._outcome(call, await self._pipeline.arun(call))
            except BaseException as exc:
                if isinstance(exc, StateUnavailableError):
                    _store_refused(exc, call)
                self._ended(call, exc)
                raise
            if self.hooks.call_end:
                self._ended(call, None)
        finally:
            _deadline.current.reset(in_flight)
        return async_body_errors_scrubbed(response, request, self.secrets)

    def close(self) -> None:
        """Close the inner sync transport (and the default one this transport built)."""
        self._pipeline.close()
        if isinstance(self._inner, httpx.BaseTransport):
            self._inner.close()
        if self._sync_default is not None:
            self._sync_default.close()

    async def aclose(self) -> None:
        """Close the inner async transport (and the default one this transport built)."""
        self._pipeline.close()
        if isinstance(self._inner, httpx.AsyncBaseTransport):
            await self._inner.aclose()
        if self._async_default is not None:
            await self._async_default.aclose()
