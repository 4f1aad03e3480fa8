"""ResilientTransport: the I/O shell around an inner httpx transport, sync and async.

Each attempt sends the request through the inner transport, reads the body only when it can carry
an envelope (JSON or an error status) and only up to the policy's cap, classifies it, and asks the
pure retry decision what to do. tenacity drives the loop once a retry is needed, so the success path
pays for one classification and nothing else.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import random as _random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import anyio
import attrs
import httpx
import tenacity

from resilient_client._catalog import Catalog, catalog
from resilient_client._classify import OK, Outcome, classify
from resilient_client._decision import RETURN, Decision, decide, is_retryable, parse_retry_after
from resilient_client._envelopes import read_envelope, surely_no_fault
from resilient_client._log_redaction import protect as protect_logs
from resilient_client._policy import RetryPolicy, resolve_policy
from resilient_client._redact import Secrets, redact_url
from resilient_client._scrub import scrub_error

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


class _DeadlineStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """The original stream, checked against the deadline after every chunk but the last: a body
    that has fully arrived is never thrown away."""

    def __init__(self, stream: Any, check: Callable[[_Call], None], call: _Call, length: int) -> None:
        self._stream = stream
        self._check = check
        self._call = call
        self._left = length

    def _arrived(self, chunk: bytes) -> None:
        self._left -= len(chunk)
        if self._left > 0:
            self._check(self._call)

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._stream:
            self._arrived(chunk)
            yield chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            self._arrived(chunk)
            yield chunk

    def close(self) -> None:
        self._stream.close()

    async def aclose(self) -> None:
        await self._stream.aclose()


class _PrefixedStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """The raw chunks already read, then the rest of the original stream, unbuffered."""

    def __init__(self, head: list[bytes], response: httpx.Response, rest: Any) -> None:
        self._head = head
        self._response = response
        self._rest = rest

    def __iter__(self) -> Iterator[bytes]:
        yield from self._head
        yield from self._rest

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._head:
            yield chunk
        async for chunk in self._rest:
            yield chunk

    def close(self) -> None:
        self._response.close()

    async def aclose(self) -> None:
        await self._response.aclose()


@functools.lru_cache(maxsize=256)
def _may_carry_envelope(content_type: str | None) -> bool:
    if content_type is None:
        return True
    media = content_type.partition(";")[0].strip().lower()
    # Vendors' PHP and Java stacks send JSON as text/html or text/plain too: any text can carry one.
    return media.endswith(("/json", "+json")) or media.startswith("text/")


def _wants_body(response: httpx.Response, method: str) -> bool:
    """True when the body can carry an envelope: JSON or text content, or any error status."""
    status = response.status_code
    if method == "HEAD" or status in (204, 304):
        return False
    return status >= 400 or _may_carry_envelope(response.headers.get("content-type"))


def _declared(response: httpx.Response) -> tuple[int | None, bool]:
    """(the declared Content-Length, if readable; identity encoding?) of a body not read yet."""
    headers = response.headers
    length = headers.get("content-length")
    encoding = headers.get("content-encoding")
    declared = int(length) if length is not None and length.isdigit() and len(length) <= 18 else None
    return declared, encoding is None or encoding.strip().lower() in ("", "identity")


def _content_if_read(response: httpx.Response, cap: int) -> bytes | None:
    # A response built from bytes (MockTransport, respx) arrives already read; the cap still holds.
    try:
        content = response.content
    except httpx.ResponseNotRead:
        return None
    return content if len(content) <= cap else None


def _replay(response: httpx.Response, raw: bytes) -> httpx.Response:
    # No request= here: the client sets it on the response it gets back, as for any transport.
    return httpx.Response(
        response.status_code,
        headers=response.headers,
        stream=httpx.ByteStream(raw),
        extensions=response.extensions,
    )


def _classifiable(
    response: httpx.Response, raw: bytes, identity: bool, cap: int
) -> tuple[httpx.Response, bytes | None]:
    """The body decoded for classification, at most ``cap`` of it (a gzip bomb stops there).

    The caller gets a response holding the same bytes, decoded once: read, as ``response.read()``
    leaves it, or unread (the raw bytes) when decoding stopped at the cap or failed.
    """
    if identity:
        return _replay(response, raw), raw
    decoded = bytearray()
    probe = _replay(response, raw)
    try:
        for chunk in probe.iter_bytes():
            decoded += chunk
            if len(decoded) > cap:
                return _replay(response, raw), None
    except httpx.DecodingError:
        # The caller meets httpx's own DecodingError when it reads, as with bare httpx.
        return _replay(response, raw), None
    body = bytes(decoded)
    # What Response.read() stores: the caller's read() returns it instead of decoding again.
    probe._content = body
    return probe, body


def _redacted_code(code: int | str | None, secrets: Secrets) -> int | str | None:
    # A vendor may echo what it was sent into the code itself.
    return secrets.redact(code) if isinstance(code, str) else code


def _request_id(response: httpx.Response, headers: tuple[str, ...]) -> str | None:
    for name in headers:
        value: str | None = response.headers.get(name)
        if value:
            return value[:200]
    return None


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
        self._inner = transport
        self._sync_default: httpx.HTTPTransport | None = None
        self._async_default: httpx.AsyncHTTPTransport | None = None
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

    def _read_plan(
        self, call: _Call, response: httpx.Response
    ) -> tuple[Literal["done", "in_place", "stream"], bytes | None, bool]:
        """How the shells read a body, without I/O: ("done", body or None, _) when nothing is left to
        read; ("in_place", ...) for an identity body known to fit (its stream now cut at the
        deadline); ("stream", None, identity?) for the rest, read chunk by chunk up to the cap."""
        if not _wants_body(response, call.request.method):
            return "done", None, True
        cap = call.policy.body.max_read_bytes
        if response.is_stream_consumed:
            return "done", _content_if_read(response, cap), True
        length, identity = _declared(response)
        if length is not None and length > cap:
            return "done", None, True
        if length is not None and identity:
            response.stream = _DeadlineStream(response.stream, self._check_deadline, call, length)
            return "in_place", None, True
        return "stream", None, identity

    def _check_deadline(self, call: _Call) -> None:
        """httpx times each read, not the whole body: a body that trickles in is cut at the deadline."""
        if self._clock() > call.deadline:
            raise httpx.ReadTimeout("the total deadline passed while reading the body", request=call.request)

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
        if self._sync_default is None:
            self._sync_default = httpx.HTTPTransport()
        return self._sync_default

    def _read_sync(self, call: _Call, response: httpx.Response) -> tuple[httpx.Response, bytes | None]:
        plan, body, identity = self._read_plan(call, response)
        if plan == "done":
            return response, body
        if plan == "in_place":
            return response, response.read()
        cap = call.policy.body.max_read_bytes
        head: list[bytes] = []
        size = 0
        raw = response.iter_raw()
        for chunk in raw:
            head.append(chunk)
            size += len(chunk)
            if size > cap:
                return _replay_rest(response, head, raw), None
            self._check_deadline(call)
        response.close()
        return _classifiable(response, b"".join(head), identity, cap)

    def _attempt_sync(self, call: _Call, number: int) -> _Attempt:
        if call.shrink or number > 1:  # from the second attempt on, less than the deadline is left
            self._shrink_timeouts(call)
        try:
            response = self._sync_inner().handle_request(call.request)
        except httpx.TransportError as exc:
            return self._judge_error(call, number, exc)
        try:
            response, body = self._read_sync(call, response)
        except httpx.TransportError as exc:
            response.close()
            return self._judge_error(call, number, exc)
        result = self._judge(call, number, response, body)
        if result.decision.action != "return":
            # Discarded or kept inside an error: either way nobody reads more of its stream.
            response.close()
        return result

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        call = self._start(request)
        return self._finish(call, self._attempts_sync(call))

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
        if self._async_default is None:
            self._async_default = httpx.AsyncHTTPTransport()
        return self._async_default

    async def _read_async(self, call: _Call, response: httpx.Response) -> tuple[httpx.Response, bytes | None]:
        plan, body, identity = self._read_plan(call, response)
        if plan == "done":
            return response, body
        if plan == "in_place":
            return response, await response.aread()
        cap = call.policy.body.max_read_bytes
        head: list[bytes] = []
        size = 0
        raw = response.aiter_raw()
        async for chunk in raw:
            head.append(chunk)
            size += len(chunk)
            if size > cap:
                return _replay_rest(response, head, raw), None
            self._check_deadline(call)
        await response.aclose()
        return _classifiable(response, b"".join(head), identity, cap)

    async def _attempt_async(self, call: _Call, number: int) -> _Attempt:
        if call.shrink or number > 1:  # from the second attempt on, less than the deadline is left
            self._shrink_timeouts(call)
        try:
            response = await self._async_inner().handle_async_request(call.request)
        except httpx.TransportError as exc:
            return self._judge_error(call, number, exc)
        try:
            response, body = await self._read_async(call, response)
        except httpx.TransportError as exc:
            await response.aclose()
            return self._judge_error(call, number, exc)
        result = self._judge(call, number, response, body)
        if result.decision.action != "return":
            await response.aclose()
        return result

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        call = self._start(request)
        return self._finish(call, await self._attempts_async(call))

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


def _replay_rest(response: httpx.Response, head: list[bytes], rest: Any) -> httpx.Response:
    return httpx.Response(
        response.status_code,
        headers=response.headers,
        stream=_PrefixedStream(head, response, rest),
        extensions=response.extensions,
    )
