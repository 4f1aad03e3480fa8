"""ResilientTransport: the I/O shell around an inner httpx transport, sync and async.

Each attempt sends the request through the inner transport (every network operation of httpx's own
transports bounded by the total deadline: see ``_deadline``), reads the body only when it can carry
an envelope (JSON or an error status) and only up to the policy's cap (see ``_body``), classifies
it, and asks the pure retry decision what to do. tenacity drives the loop once a retry is needed,
so the success path pays for one classification and nothing else.
"""

from __future__ import annotations

import inspect
import logging
import math
import random as _random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import attrs
import httpx
import tenacity

from resilient_client import _deadline
from resilient_client._body import read_async, read_sync
from resilient_client._body import request_id as _request_id
from resilient_client._catalog import Catalog, catalog
from resilient_client._classify import OK, Outcome, classify
from resilient_client._decision import RETURN, Decision, decide, is_retryable, parse_retry_after
from resilient_client._envelopes import read_envelope, surely_no_fault
from resilient_client._log_redaction import protect as protect_logs
from resilient_client._policy import RetryPolicy, resolve_policy
from resilient_client._redact import Secrets, redact_url
from resilient_client._scrub import async_body_errors_scrubbed, body_errors_scrubbed, scrub_error

logger = logging.getLogger("resilient_client")

#: ``request.extensions`` key: a RetryPolicy (or a policy file path) for this request only.
POLICY_EXTENSION = "resilient_client.policy"
#: ``request.extensions`` key: the operation name matched by ``idempotent_operations``.
OPERATION_EXTENSION = "resilient_client.operation"
#: ``request.extensions`` key: the caller's own timeouts, kept there once an attempt shrank them.
CALLER_TIMEOUT_EXTENSION = "resilient_client.caller_timeout"
#: ``response.extensions`` key: how many attempts the request took.
ATTEMPTS_EXTENSION = "resilient_client.attempts"

_TIMEOUT_KEYS = ("connect", "read", "write", "pool")
_testing = False


def set_testing(enabled: bool) -> None:
    """Turn waits off (``True``) or back on, for users' own tests: retries still happen, at once."""
    global _testing
    _testing = enabled


def is_testing() -> bool:
    """True while ``set_testing(True)`` is in force."""
    return _testing


@attrs.frozen
class RetryEvent:
    """What the ``on_retry`` hook receives before each wait."""

    vendor: str
    method: str
    url: str
    attempt: int
    wait: float
    cause: str
    category: str | None
    code: int | str | None
    status: int | None
    error: BaseException | None = attrs.field(repr=False, default=None)


OnRetry = Callable[[RetryEvent], object]


@attrs.define
class _Attempt:
    """One attempt's result: a response or a transport error, what it means, what to do next."""

    number: int
    decision: Decision
    response: httpx.Response | None = None
    outcome: Outcome = OK
    error: Exception | None = None
    retry_after: float | None = None


class _Call:
    """One request's fixed context across its attempts (a plain slotted class: it is on the success path)."""

    __slots__ = ("deadline", "policy", "replayable", "request", "shrink", "timeouts")

    def __init__(
        self, request: httpx.Request, policy: RetryPolicy, deadline: float, replayable: bool
    ) -> None:
        self.request = request
        self.policy = policy
        self.deadline = deadline
        self.replayable = replayable
        #: The caller's own timeouts (kept under CALLER_TIMEOUT_EXTENSION once shrunk, so a request
        #: sent again starts from them, not from a shrunk leftover).
        extensions = request.extensions
        self.timeouts: Any = extensions.get(CALLER_TIMEOUT_EXTENSION) or extensions.get("timeout")
        # Usually the caller's timeouts (httpx's 5 s) end long before the deadline: nothing to shrink.
        self.shrink = policy.retry.attempt_timeout > 0 or policy.retry.total_timeout < _longest(self.timeouts)

    @property
    def operation(self) -> str:
        """The name ``idempotent_operations`` matches: the extension, else the last path segment."""
        named = self.request.extensions.get(OPERATION_EXTENSION)
        if isinstance(named, str):
            return named
        return self.request.url.path.rstrip("/").rpartition("/")[2]


def _longest(timeouts: Any) -> float:
    """The longest of httpx's four timeouts; infinite when one is missing or None (no timeout)."""
    if not isinstance(timeouts, dict) or len(timeouts) < len(_TIMEOUT_KEYS):
        return math.inf
    values = timeouts.values()
    return math.inf if None in values else float(max(values))


class _RetryBudget:
    """A token bucket: each request adds ``ratio`` tokens (up to ``burst``), each retry takes one."""

    def __init__(self, ratio: float, burst: float) -> None:
        self.ratio = ratio
        self.burst = burst
        self.tokens = burst

    def deposit(self) -> None:
        self.tokens = min(self.burst, self.tokens + self.ratio)

    def available(self) -> bool:
        return self.tokens >= 1.0

    def withdraw(self) -> None:
        self.tokens -= 1.0


def _default_inners() -> tuple[httpx.HTTPTransport, httpx.AsyncHTTPTransport]:
    """httpx's own transports, as ``httpx.Client()`` builds them: at construction, so that neither
    the TLS context (tens of ms) nor the first pool (a one-time import) is paid inside the first
    request's deadline, nor makes that request outlast it. One TLS context serves both."""
    context = httpx.create_ssl_context()
    return (
        _deadline.bind(httpx.HTTPTransport(verify=context)),
        _deadline.bind(httpx.AsyncHTTPTransport(verify=context)),
    )


def _redacted_code(code: int | str | None, secrets: Secrets) -> int | str | None:
    # A vendor may echo what it was sent into the code itself.
    return secrets.redact(code) if isinstance(code, str) else code


class ResilientTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """An httpx transport that classifies every response by the vendor's catalog and retries.

    One class for ``httpx.Client`` and ``httpx.AsyncClient`` (as ``httpx.MockTransport`` is). It wraps
    ``transport`` (default: httpx's own HTTP transport of the matching kind).
    """

    def __init__(
        self,
        vendor: str | Catalog,
        *,
        policy: RetryPolicy | str | Path | None = None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        on_retry: OnRetry | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        random: Callable[[], float] = _random.random,
        secrets: Secrets | tuple[str | None, ...] = (),
    ) -> None:
        self.catalog = vendor if isinstance(vendor, Catalog) else catalog(vendor)
        self.vendor = self.catalog.vendor
        self._spec = self.catalog.envelope
        self.policy = resolve_policy(policy, self.vendor).checked_for(self.catalog)
        self._inner = _deadline.bind(transport)
        # Built now, not by the first request: a TLS context costs tens of ms (see _default_inners).
        defaults = (None, None) if transport is not None else _default_inners()
        self._sync_default: httpx.HTTPTransport | None = defaults[0]
        self._async_default: httpx.AsyncHTTPTransport | None = defaults[1]
        self.on_retry = on_retry
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._random = random
        self._budget = _RetryBudget(self.policy.budget.ratio, self.policy.budget.burst)
        #: Secret values this transport's errors mask (clients add tokens and passwords here).
        self.secrets = secrets if isinstance(secrets, Secrets) else Secrets(secrets)
        # httpx and httpcore log this transport's URLs and response headers: mask them there too.
        protect_logs(self.secrets)

    def __repr__(self) -> str:
        return f"ResilientTransport(vendor={self.vendor!r}, policy={self.policy.source!r})"

    # -- shared, no I/O --------------------------------------------------------------------

    def _start(self, request: httpx.Request) -> _Call:
        override = request.extensions.get(POLICY_EXTENSION)
        if override is None:
            policy = self.policy
        elif isinstance(override, RetryPolicy):
            policy = override.checked_for(self.catalog)
        else:
            policy = resolve_policy(override, self.vendor).checked_for(self.catalog)
        if policy.budget.ratio > 0:
            self._budget.deposit()
        # Replayability is asked before sending: a transport that reads a one-shot body makes it look
        # replayable afterwards.
        return _Call(request, policy, self._clock() + policy.retry.total_timeout, self._replayable(request))

    @staticmethod
    def _replayable(request: httpx.Request) -> bool:
        return isinstance(request.stream, httpx.ByteStream) or hasattr(request, "_content")

    def _shrink_timeouts(self, call: _Call) -> None:
        # Never zero or below: httpx refuses those, and the deadline check raises before sending.
        limit = max(call.deadline - self._clock(), 0.001)
        if call.policy.retry.attempt_timeout > 0:
            limit = min(limit, call.policy.retry.attempt_timeout)
        current = call.timeouts or {}
        # The shrunk timeouts stay on the request: httpcore reads them again for the body the
        # caller reads after we return, which the deadline covers too.
        call.request.extensions[CALLER_TIMEOUT_EXTENSION] = current
        call.request.extensions["timeout"] = {
            key: limit if current.get(key) is None else min(current[key], limit) for key in _TIMEOUT_KEYS
        }

    def _out_of_time(self, call: _Call, last: _Attempt) -> _Attempt | None:
        """The last attempt, now final, when the deadline passed while waiting (a slow hook, a late
        sleep): no attempt starts after the deadline."""
        if self._clock() < call.deadline:
            return None
        reason = f"the total deadline passed before attempt {last.number + 1}"
        return attrs.evolve(last, decision=Decision("raise", reason=reason))

    def _decide(
        self,
        call: _Call,
        number: int,
        outcome: Outcome | None,
        error: Exception | None,
        retry_after: float | None,
    ) -> Decision:
        policy = call.policy
        return decide(
            policy,
            outcome=outcome,
            error=error,
            method=call.request.method,
            operation=call.operation,
            attempt=number,
            time_left=call.deadline - self._clock(),
            retry_after=retry_after,
            replayable=call.replayable,
            budget_left=self._budget.available() if policy.budget.ratio > 0 else True,
            random=self._random,
        )

    def _judge(self, call: _Call, number: int, response: httpx.Response, body: bytes | None) -> _Attempt:
        status = response.status_code
        if status < 300 and (body is None or surely_no_fault(self._spec, body)):
            return _Attempt(number, RETURN, response)  # the success path: nothing to decode
        spec = self._spec
        envelope = None if body is None else read_envelope(spec, body)
        outcome = classify(self.catalog, status, envelope)
        if outcome.ok:
            return _Attempt(number, RETURN, response)
        if logger.isEnabledFor(logging.DEBUG):
            known = self.secrets.with_request(call.request)
            logger.debug(
                "%s %s %s -> %s (code %s, HTTP %s)",
                self.vendor,
                call.request.method,
                known.redact(redact_url(call.request.url)),
                outcome.category,
                _redacted_code(outcome.code, known),
                status,
            )
        retry_after = parse_retry_after(response.headers, self._wall_clock(), spec.rate_limit_reset_header)
        decision = self._decide(call, number, outcome, None, retry_after)
        return _Attempt(number, decision, response, outcome, retry_after=retry_after)

    def _judge_error(self, call: _Call, number: int, error: Exception) -> _Attempt:
        return _Attempt(number, self._decide(call, number, None, error, None), error=error)

    def _before_sleep(self, call: _Call, state: tenacity.RetryCallState) -> object:
        """Log the retry, spend the budget, call the hook; returns what the hook returned."""
        result: _Attempt = state.outcome.result()  # type: ignore[union-attr]
        response = result.response
        # The event reaches the user's hook and the log: nothing in it may carry a credential.
        known = self.secrets.with_request(call.request)
        if result.error is not None:
            scrub_error(result.error, known)
        event = RetryEvent(
            vendor=self.vendor,
            method=call.request.method,
            url=known.redact(redact_url(call.request.url)),
            attempt=result.number,
            wait=result.decision.wait,
            cause=known.redact(result.decision.reason),
            category=None if result.error else result.outcome.category,
            code=_redacted_code(result.outcome.code, known),
            status=None if response is None else response.status_code,
            error=result.error,
        )
        if call.policy.budget.ratio > 0:
            self._budget.withdraw()
        what = event.category or type(event.error).__name__
        code = "" if event.code is None else f" {event.code}"
        logger.info(
            "retry %s %s %s: attempt %d/%d failed with %s%s; waiting %.3f s",
            self.vendor,
            event.method,
            event.url,
            event.attempt,
            call.policy.retry.max_attempts,
            what,
            code,
            event.wait,
        )
        return None if self.on_retry is None else self.on_retry(event)

    def _finish(self, call: _Call, result: _Attempt) -> httpx.Response:
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

    @staticmethod
    def _retrying_kwargs() -> dict[str, Any]:
        def wait(state: tenacity.RetryCallState) -> float:
            result: _Attempt = state.outcome.result()  # type: ignore[union-attr]
            return 0.0 if _testing else result.decision.wait

        return {
            "retry": tenacity.retry_if_result(lambda r: r.decision.action == "retry"),
            "wait": wait,
            "stop": tenacity.stop_never,
            "reraise": True,
        }

    # -- sync shell ------------------------------------------------------------------------

    def _sync_inner(self) -> httpx.BaseTransport:
        if isinstance(self._inner, httpx.BaseTransport):
            return self._inner
        if self._inner is not None:
            raise TypeError(f"{type(self._inner).__name__} cannot serve a sync httpx.Client")
        assert self._sync_default is not None
        return self._sync_default

    def _attempt_sync(self, call: _Call, number: int) -> _Attempt:
        if call.shrink or number > 1:  # from the second attempt on, less than the deadline is left
            self._shrink_timeouts(call)
        inner = self._sync_inner()
        request = call.request
        # httpx's own transport bounds each network operation by the time left (see _deadline).
        bound = _deadline.current.set(_deadline.Deadline(call.deadline, self._clock))
        try:
            try:
                response = inner.handle_request(request)
            except httpx.TransportError as exc:
                return self._judge_error(call, number, exc)
            try:
                response, body = read_sync(
                    response, request, call.policy.body.max_read_bytes, self._clock, call.deadline
                )
            except httpx.TransportError as exc:
                response.close()
                return self._judge_error(call, number, exc)
        finally:
            _deadline.current.reset(bound)
        result = self._judge(call, number, response, body)
        if result.decision.action != "return":
            # Discarded or kept inside an error: either way nobody reads more of its stream.
            response.close()
        return result

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        call = self._start(request)
        response = self._finish(call, self._attempts_sync(call))
        return body_errors_scrubbed(response, call.request, self.secrets)

    def _attempts_sync(self, call: _Call) -> _Attempt:
        last = self._attempt_sync(call, 1)
        if last.decision.action != "retry":
            return last
        pending = [last]

        def attempt() -> _Attempt:
            nonlocal last
            if pending:
                return pending.pop()
            last = self._out_of_time(call, last) or self._attempt_sync(call, last.number + 1)
            return last

        def before_sleep(state: tenacity.RetryCallState) -> None:
            if inspect.isawaitable(self._before_sleep(call, state)):
                raise TypeError("an async on_retry hook needs an httpx.AsyncClient")

        def sleep(seconds: float) -> None:
            if seconds > 0 and not _testing:
                self._sleep(seconds)

        retrying = tenacity.Retrying(sleep=sleep, before_sleep=before_sleep, **self._retrying_kwargs())
        return retrying(attempt)

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

    async def _attempt_async(self, call: _Call, number: int) -> _Attempt:
        if call.shrink or number > 1:  # from the second attempt on, less than the deadline is left
            self._shrink_timeouts(call)
        inner = self._async_inner()
        request = call.request
        bound = _deadline.current.set(_deadline.Deadline(call.deadline, self._clock))
        try:
            try:
                response = await inner.handle_async_request(request)
            except httpx.TransportError as exc:
                return self._judge_error(call, number, exc)
            try:
                response, body = await read_async(
                    response, request, call.policy.body.max_read_bytes, self._clock, call.deadline
                )
            except httpx.TransportError as exc:
                await response.aclose()
                return self._judge_error(call, number, exc)
        finally:
            _deadline.current.reset(bound)
        result = self._judge(call, number, response, body)
        if result.decision.action != "return":
            await response.aclose()
        return result

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        call = self._start(request)
        response = self._finish(call, await self._attempts_async(call))
        return async_body_errors_scrubbed(response, call.request, self.secrets)

    async def _attempts_async(self, call: _Call) -> _Attempt:
        last = await self._attempt_async(call, 1)
        if last.decision.action != "retry":
            return last
        pending = [last]

        async def attempt() -> _Attempt:
            nonlocal last
            if pending:
                return pending.pop()
            last = self._out_of_time(call, last) or await self._attempt_async(call, last.number + 1)
            return last

        async def before_sleep(state: tenacity.RetryCallState) -> None:
            returned = self._before_sleep(call, state)
            if inspect.isawaitable(returned):
                await returned

        async def sleep(seconds: float) -> None:
            if seconds > 0 and not _testing:
                await self._async_sleep(seconds)

        retrying = tenacity.AsyncRetrying(sleep=sleep, before_sleep=before_sleep, **self._retrying_kwargs())
        return await retrying(attempt)

    async def aclose(self) -> None:
        if isinstance(self._inner, httpx.AsyncBaseTransport):
            await self._inner.aclose()
        if self._async_default is not None:
            await self._async_default.aclose()
