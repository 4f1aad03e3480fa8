"""ResilientTransport: the I/O shell around an inner httpx transport, sync and async.

It composes the resilience pipeline (``strategies``: retry -> breaker -> rate limiter -> guard) and
supplies its leaf: send the request through the inner transport (every network operation of httpx's
own transports bounded by the total deadline: see ``_deadline``), read the body only when it can
carry an envelope and only up to the policy's cap (see ``_body``), classify it and ask the pure retry
decision what to do. Tenacity is built only once a retry is needed.
"""

from __future__ import annotations

import random as _random
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import httpx

from resilient_client import _deadline
from resilient_client._body import read_async, read_sync
from resilient_client._body import request_id as _request_id
from resilient_client._catalog import Catalog, catalog
from resilient_client._classify import Outcome, classify
from resilient_client._clock import Clock
from resilient_client._decision import RETURN, Decision, decide, is_retryable, parse_retry_after
from resilient_client._envelopes import (
    no_fault_scanner,
    read_envelope,
)
from resilient_client._log_redaction import protect as protect_logs
from resilient_client._pipeline import (
    ATTEMPTS_EXTENSION,
    CALLER_TIMEOUT_EXTENSION,
    OPERATION_EXTENSION,
    POLICY_EXTENSION,
    Attempt,
    AttemptEvent,
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
from resilient_client.instrumentation import LoggingHook
from resilient_client.stores import StateStore
from resilient_client.stores.environment import default_state
from resilient_client.strategies import Pipeline, build
from resilient_client.strategies.breaker import BreakerStrategy

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
        self._spec = self.catalog.envelope
        #: The byte scan that proves a 2xx body of this vendor clean (``surely_no_fault``'s, held
        #: here: every success asks it); None when this vendor's bodies are always decoded.
        self._scan = no_fault_scanner(self._spec)
        self.policy = resolve_policy(policy, self.vendor).checked_for(self.catalog)
        self._inner = _deadline.bind(transport)
        #: Whether the inner transport is httpx's own, whose network operations read the deadline.
        self._network_bound = transport is None or isinstance(
            transport, httpx.HTTPTransport | httpx.AsyncHTTPTransport
        )
        # Built now, not by the first request: a TLS context costs tens of ms (see _default_inners).
        defaults = (None, None) if transport is not None else _default_inners()
        self._sync_default: httpx.HTTPTransport | None = defaults[0]
        self._async_default: httpx.AsyncHTTPTransport | None = defaults[1]
        inner = self._inner
        #: The inner transport of each kind of client, found once (every attempt sends through it);
        #: None when there is none (``_sync_inner`` and ``_async_inner`` then say why).
        self._sync_sender = inner if isinstance(inner, httpx.BaseTransport) else self._sync_default
        self._async_sender = inner if isinstance(inner, httpx.AsyncBaseTransport) else self._async_default
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
        self._pipeline: Pipeline = build(
            self.policy,
            self.state,
            self.vendor,
            self.hooks,
            self.clock,
            self._attempt_sync,
            self._attempt_async,
        )

    def __repr__(self) -> str:
        return f"ResilientTransport(vendor={self.vendor!r}, policy={self.policy.source!r})"

    @property
    def breaker(self) -> BreakerStrategy:
        """The circuit breaker: ``.state`` (``"closed"``, ``"open"``, ``"half_open"``) and ``.reset()``."""
        return self._pipeline.breaker

    # -- shared, no I/O --------------------------------------------------------------------

    def _start(self, request: httpx.Request, started: float | None = None, host: str | None = None) -> Call:
        override = request.extensions.get(POLICY_EXTENSION)
        if override is None:
            policy = self.policy
        elif isinstance(override, RetryPolicy):
            policy = override.checked_for(self.catalog)
        else:
            policy = resolve_policy(override, self.vendor).checked_for(self.catalog)
        # Replayability is asked before sending: a transport that reads a one-shot body makes it look
        # replayable afterwards.
        call = Call(
            request, policy, self.clock, self.vendor, self._replayable(request), self.secrets, started, host
        )
        for hook in self.hooks.call_start:
            hook(call)
        return call

    @staticmethod
    def _replayable(request: httpx.Request) -> bool:
        return isinstance(request.stream, httpx.ByteStream) or hasattr(request, "_content")

    def _judge(
        self, call: Call, number: int, response: httpx.Response, body: bytes | None, scanned: bool = False
    ) -> Attempt:
        # ``scanned``: the fast lane's scan already failed to prove this body clean.
        status = response.status_code
        scan = self._scan
        if status < 300 and (body is None or (not scanned and scan is not None and scan(body))):
            return Attempt(number, RETURN, response)  # the success path: nothing to decode
        spec = self._spec
        envelope = None if body is None else read_envelope(spec, body)
        outcome = classify(self.catalog, status, envelope)
        if outcome.ok:
            return Attempt(number, RETURN, response)
        retry_after = parse_retry_after(response.headers, call.clock.wall(), spec.rate_limit_reset_header)
        decision = self._decide(call, number, outcome, None, retry_after)
        return Attempt(number, decision, response, outcome, retry_after=retry_after)

    def _in_memory_success(self, call: Call, response: httpx.Response, content: bytes) -> bool:
        """Whether an answer whose body is already in memory (MockTransport, respx) is a success that
        no hook hears: what reading, judging and concluding it would come to (a 2xx body the scan
        proves clean is returned as it is), in one scan."""
        return (
            response.status_code < 300
            and len(content) <= call.policy.body.max_read_bytes
            and not self.hooks.attempt_success
            and self._scan is not None
            and self._scan(content)
        )

    def _judge_error(self, call: Call, number: int, error: Exception) -> Attempt:
        return Attempt(number, self._decide(call, number, None, error, None), error=error)

    @staticmethod
    def _decide(
        call: Call, number: int, outcome: Outcome | None, error: Exception | None, retry_after: float | None
    ) -> Decision:
        return decide(
            call.policy,
            outcome=outcome,
            error=error,
            method=call.request.method,
            operation=call.name_operation,  # named only if the method is not idempotent
            attempt=number,
            time_left=call.time_left(),
            retry_after=retry_after,
            replayable=call.replayable,
            random=call.clock.random,
        )

    def _ended(self, call: Call, result: Attempt, started: float) -> Attempt:
        # RETURN is the decision of a success and of nothing else; a success is told only to the
        # hooks that want successes (not the logging hook), so usually no event is built for it.
        hooks = self.hooks
        listeners = hooks.attempt_success if result.decision is RETURN else hooks.attempt
        if listeners:
            event = AttemptEvent(call, result, call.clock.monotonic() - started)
            for hook in listeners:
                hook(call, event)
        return result

    def _aborted(self, call: Call, error: BaseException) -> None:
        """The call ends raising ``error`` (a typed fault, a transport error, a cancellation, a hook's
        own error): ``on_call_end`` closes what ``on_call_start`` opened (a tracing span, say)."""
        for hook in self.hooks.call_end:
            hook(call, error)

    def _finish(self, call: Call, result: Attempt) -> httpx.Response:
        if result.decision is RETURN and not self.hooks.call_end:
            # A success heard by no hook (most calls): nothing to raise, nobody to tell.
            response = result.response
            assert response is not None
            response.extensions[ATTEMPTS_EXTENSION] = result.number
            return response
        try:
            response = self._outcome(call, result)
        except BaseException as exc:
            self._aborted(call, exc)
            raise
        for hook in self.hooks.call_end:
            hook(call, None)
        return response

    def _outcome(self, call: Call, result: Attempt) -> httpx.Response:
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

    # -- sync shell ------------------------------------------------------------------------

    def _sync_inner(self) -> httpx.BaseTransport:
        if isinstance(self._inner, httpx.BaseTransport):
            return self._inner
        if self._inner is not None:
            raise TypeError(f"{type(self._inner).__name__} cannot serve a sync httpx.Client")
        assert self._sync_default is not None
        return self._sync_default

    def _attempt_sync(self, call: Call, number: int) -> Attempt:
        """The pipeline's leaf: send, read, classify, decide."""
        monotonic = call.clock.monotonic
        # From the second attempt on, less than the deadline is left: the timeouts are cut to it
        # when it is shorter than the longest of the caller's (else cutting changes none of them).
        if call.shrink or (number > 1 and call.deadline - monotonic() < call.longest):
            call.shrink_timeouts()
        inner = self._sync_sender
        if inner is None:
            inner = self._sync_inner()  # raises: this transport cannot serve a sync client
        request = call.request
        hooks = self.hooks
        for hook in hooks.attempt_start:
            hook(call, number)
        started = monotonic() if hooks.attempt else 0.0  # for the attempt event's duration
        # httpx's own transport bounds each network operation by the time left (see _deadline);
        # any other inner transport has no network operation that reads it (as in the fast lane).
        deadline = _deadline.Deadline(call.deadline, monotonic) if self._network_bound else None
        bound = None if deadline is None else _deadline.current.set(deadline)
        try:
            try:
                response = inner.handle_request(request)
            except httpx.TransportError as exc:
                return self._ended(call, self._judge_error(call, number, exc), started)
            content = getattr(response, "_content", None)  # a body already in memory (MockTransport)
            if content is not None and self._in_memory_success(call, response, content):
                return Attempt(number, RETURN, response)
            try:
                response, body = read_sync(
                    response, request, call.policy.body.max_read_bytes, monotonic, call.deadline
                )
            except httpx.TransportError as exc:
                response.close()
                return self._ended(call, self._judge_error(call, number, exc), started)
        finally:
            if bound is not None:
                _deadline.current.reset(bound)
        return self._concluded(call, number, response, body, started)

    def _concluded(
        self,
        call: Call,
        number: int,
        response: httpx.Response,
        body: bytes | None,
        started: float,
        scanned: bool = False,
    ) -> Attempt:
        result = self._judge(call, number, response, body, scanned)
        if result.decision is RETURN and not self.hooks.attempt_success:
            return result  # a success that no hook hears (most attempts)
        if result.decision.action != "return":
            # Discarded or kept inside an error: either way nobody reads more of its stream.
            response.close()
        return self._ended(call, result, started)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        call = self._start(request)
        pipeline = self._pipeline
        try:
            result = pipeline.retry.run(call, pipeline.attempt)
        except BaseException as exc:
            self._aborted(call, exc)
            raise
        response = self._finish(call, result)
        return body_errors_scrubbed(response, call.request, self.secrets)

    def close(self) -> None:
        if isinstance(self._inner, httpx.BaseTransport):
            self._inner.close()
        if self._sync_default is not None:
            self._sync_default.close()

    # -- async shell -----------------------------------------------------------------------

    def _async_inner(self) -> httpx.AsyncBaseTransport:
        if isinstance(self._inner, httpx.AsyncBaseTransport):
            return self._inner
        if self._inner is not None:
            raise TypeError(f"{type(self._inner).__name__} cannot serve an httpx.AsyncClient")
        assert self._async_default is not None
        return self._async_default

    async def _attempt_async(self, call: Call, number: int) -> Attempt:
        monotonic = call.clock.monotonic
        if call.shrink or (number > 1 and call.deadline - monotonic() < call.longest):
            call.shrink_timeouts()
        inner = self._async_sender
        if inner is None:
            inner = self._async_inner()  # raises: this transport cannot serve an async client
        request = call.request
        hooks = self.hooks
        for hook in hooks.attempt_start:
            hook(call, number)
        started = monotonic() if hooks.attempt else 0.0
        deadline = _deadline.Deadline(call.deadline, monotonic) if self._network_bound else None
        bound = None if deadline is None else _deadline.current.set(deadline)
        try:
            try:
                response = await inner.handle_async_request(request)
            except httpx.TransportError as exc:
                return self._ended(call, self._judge_error(call, number, exc), started)
            content = getattr(response, "_content", None)  # a body already in memory (MockTransport)
            if content is not None and self._in_memory_success(call, response, content):
                return Attempt(number, RETURN, response)
            try:
                response, body = await read_async(
                    response, request, call.policy.body.max_read_bytes, monotonic, call.deadline
                )
            except httpx.TransportError as exc:
                await response.aclose()
                return self._ended(call, self._judge_error(call, number, exc), started)
        finally:
            if bound is not None:
                _deadline.current.reset(bound)
        return await self._aconcluded(call, number, response, body, started)

    async def _aconcluded(
        self,
        call: Call,
        number: int,
        response: httpx.Response,
        body: bytes | None,
        started: float,
        scanned: bool = False,
    ) -> Attempt:
        result = self._judge(call, number, response, body, scanned)
        if result.decision is RETURN and not self.hooks.attempt_success:
            return result
        if result.decision.action != "return":
            await response.aclose()
        return self._ended(call, result, started)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        call = self._start(request)
        pipeline = self._pipeline
        try:
            result = await pipeline.retry.arun(call, pipeline.aattempt)
        except BaseException as exc:
            self._aborted(call, exc)
            raise
        response = self._finish(call, result)
        return async_body_errors_scrubbed(response, call.request, self.secrets)

    async def aclose(self) -> None:
        if isinstance(self._inner, httpx.AsyncBaseTransport):
            await self._inner.aclose()
        if self._async_default is not None:
            await self._async_default.aclose()
