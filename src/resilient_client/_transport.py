"""ResilientTransport: the I/O shell around an inner httpx transport, sync and async.

It composes the resilience pipeline (``strategies``: retry -> breaker -> rate limiter -> guard) and
supplies its leaf: send the request through the inner transport (every network operation of httpx's
own transports bounded by the total deadline: see ``_deadline``), read the body only when it can
carry an envelope and only up to the policy's cap (see ``_body``), classify it and ask the pure retry
decision what to do. Tenacity is built only once a retry is needed.

The fast lane. Most calls succeed at once, and on them the pipeline's layers cost more than the work
(SPEC section 7 allows 5 % over bare httpx). So when the pipeline is the retry budget and the breaker
over the in-process store (the default policy), no hook hears of successes, and the store says no
circuit is open, ``handle_request`` sends the first attempt itself: it counts the budget's deposit
and the breaker's success (``Tally``: no lock, no store operation) and scans the body, and that is
all. Anything else that comes back (a fault, a transport error, a body the scan cannot prove clean)
is handed to the pipeline as its first attempt, already sent (``_resume``): the breaker weighs it
and the retry strategy goes on from there, exactly as if the layers had sent it.
"""

from __future__ import annotations

import functools
import random as _random
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from resilient_client import _deadline
from resilient_client._body import read_async, read_sync
from resilient_client._body import request_id as _request_id
from resilient_client._catalog import Catalog, catalog
from resilient_client._classify import Outcome, classify
from resilient_client._clock import Clock
from resilient_client._decision import RETURN, Decision, decide, is_retryable, parse_retry_after
from resilient_client._envelopes import (
    SUCCESS_SHAPES,
    no_fault_scanner,
    read_envelope,
)
from resilient_client._log_redaction import protect as protect_logs
from resilient_client._pipeline import (
    ATTEMPTS_EXTENSION,
    CALLER_TIMEOUT_EXTENSION,
    OPERATION_EXTENSION,
    POLICY_EXTENSION,
    AsyncNext,
    Attempt,
    AttemptEvent,
    Call,
    Hook,
    Hooks,
    Next,
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
from resilient_client.stores import MemoryState, StateStore
from resilient_client.stores.environment import default_state
from resilient_client.strategies import Pipeline, build
from resilient_client.strategies.breaker import Breaker, BreakerStrategy

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


def _seeded(first: Attempt, attempt: Next) -> Next:
    """``attempt``, whose first attempt is ``first``, already made (the fast lane sent it)."""

    def seeded(call: Call, number: int) -> Attempt:
        return first if number == 1 else attempt(call, number)

    return seeded


def _aseeded(first: Attempt, attempt: AsyncNext) -> AsyncNext:
    async def seeded(call: Call, number: int) -> Attempt:
        return first if number == 1 else await attempt(call, number)

    return seeded


def _default_inners() -> tuple[httpx.HTTPTransport, httpx.AsyncHTTPTransport]:
    """httpx's own transports, as ``httpx.Client()`` builds them: at construction, so that neither
    the TLS context (tens of ms) nor the first pool (a one-time import) is paid inside the first
    request's deadline, nor makes that request outlast it. One TLS context serves both."""
    context = httpx.create_ssl_context()
    return (
        _deadline.bind(httpx.HTTPTransport(verify=context)),
        _deadline.bind(httpx.AsyncHTTPTransport(verify=context)),
    )


class _Lane:
    """What the fast lane reads on every call, gathered once per transport (see the module docstring)."""

    __slots__ = (
        "aknown",
        "async_inner",
        "bound",
        "breakers",
        "cap",
        "check_timeouts",
        "earn",
        "key",
        "known",
        "monotonic",
        "scan",
        "shape",
        "store",
        "sync_inner",
        "timeouts",
        "total",
    )

    def __init__(
        self, transport: ResilientTransport, store: MemoryState, scan: Callable[[bytes], bool]
    ) -> None:
        pipeline = transport._pipeline
        policy = transport.policy
        self.store = store
        self.scan = scan
        #: The vendor's usual success shape (see ``SUCCESS_SHAPES``): its key and openings.
        self.key, self.shape = SUCCESS_SHAPES.get(transport.catalog.envelope.reader, (b"\0", ()))
        #: The breaker strategy (its hosts are read per call: a vendor client shares them later).
        self.breakers: BreakerStrategy | None = pipeline.breaker if pipeline.strategies else None
        #: The attempt functions of the calls it began, per host breaker (see ``_known_breaker``):
        #: made once per host, not once per retried call.
        self.known: dict[Breaker, Next] = {}
        self.aknown: dict[Breaker, AsyncNext] = {}
        budget = pipeline.retry.budget(policy)
        self.earn: Callable[[], object] | None = budget.earned.add if budget.enabled else None
        self.monotonic = transport.clock.monotonic
        self.total = policy.retry.total_timeout
        self.cap = policy.body.max_read_bytes
        #: httpx's own transports read the deadline of every network operation from ``_deadline``.
        inner = transport._inner
        self.bound = transport._network_bound
        #: The inner transport of each kind (None: the pipeline's way says why it cannot serve).
        self.sync_inner = transport._sync_sender
        self.async_inner = transport._async_sender
        #: The caller's timeouts last seen to need no shrinking (see ``Call.shrink``): a request
        #: with others goes the pipeline's way. An inner transport that never waits on a network
        #: (httpx's mock, ASGI and WSGI transports) has no use for them, and skips the check.
        self.timeouts: object = _UNSEEN
        self.check_timeouts = not isinstance(inner, _IN_MEMORY)

    @classmethod
    def of(cls, transport: ResilientTransport) -> _Lane | None:
        """The lane of ``transport``, or None when its calls cannot take one."""
        store = transport.state
        pipeline = transport._pipeline
        if (
            not _URI_HOST
            or type(store) is not MemoryState
            or any(s is not pipeline.breaker for s in pipeline.strategies)
        ):
            return None
        scan = transport._scan
        return None if scan is None else cls(transport, store, scan)


_UNSEEN = object()
#: Inner transports that answer from memory: no timeout of a request's means anything to them.
_IN_MEMORY = (httpx.MockTransport, httpx.ASGITransport, httpx.WSGITransport)


#: httpx keeps a request's parsed URL as ``URL._uri_reference``, whose ``host`` is ``URL.host`` without
#: the IDNA decoding (an ``xn--`` host then misses its breaker in the fast lane and takes the
#: pipeline's way): a tenth of what the public property costs. The lane is off if httpx changes it.
_URI_HOST = isinstance(getattr(httpx.URL("http://h/"), "_uri_reference", None), tuple)


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
        self._lane = _Lane.of(self)

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
        lane = self._lane
        if lane is not None and override is None and not call.shrink:
            lane.timeouts = call.timeouts
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
        lane = self._lane
        extensions = request.extensions
        if (
            lane is None
            or not lane.store.circuits_closed
            or not self.hooks.quiet
            or POLICY_EXTENSION in extensions
            or (lane.check_timeouts and extensions.get("timeout") != lane.timeouts)
        ):
            return self._handle(request)
        breaker = None
        strategy = lane.breakers
        if strategy is not None:
            hosts = strategy._hosts
            host = request.url._uri_reference.host
            breaker = hosts.breakers.get(host)
            if breaker is None:
                return self._handle(request)  # the host's first call makes its breaker
            hosts.last = host
        inner = lane.sync_inner
        if inner is None:
            return self._handle(request)
        now = lane.monotonic()
        bound = (
            _deadline.current.set(_deadline.Deadline(now + lane.total, lane.monotonic))
            if lane.bound
            else None
        )
        try:
            response = inner.handle_request(request)
        except httpx.TransportError as exc:
            if bound is not None:
                _deadline.current.reset(bound)
            return self._resume(request, now, breaker, None, None, exc)
        content = getattr(response, "_content", None)  # a body already in memory (MockTransport, respx)
        if (
            bound is None
            and content is not None
            and response.status_code < 300
            and len(content) <= lane.cap  # a body past the cap is not classified (``_lane_read``)
            and (
                # The scanner's first test, written out: a call saved on every success.
                (content.startswith(lane.shape) and content.count(lane.key) == 1 and content.find(b"\\") < 0)
                or lane.scan(content)
            )
        ):
            # The success, counted (written to the store when next read) and handed back. Written out
            # here, not as calls to Breaker.succeeded and Budget.deposit: this is the whole success path.
            if breaker is not None:
                breaker.wins.add()
                breaker.won_at = now
                if now >= breaker.flush_at:
                    breaker.flush(now)
            if lane.earn is not None:
                lane.earn()
            extensions = response.extensions
            extensions[ATTEMPTS_EXTENSION] = 1
            return response
        return self._lane_read(lane, request, now, breaker, response, bound, content)

    def _lane_read(
        self,
        lane: _Lane,
        request: httpx.Request,
        now: float,
        breaker: Breaker | None,
        response: httpx.Response,
        bound: Any,
        scanned: bytes | None,
    ) -> httpx.Response:
        """The fast lane for a body still to read (or to prove clean the slower way)."""
        try:
            try:
                response, body = read_sync(
                    response,
                    request,
                    lane.cap,
                    lane.monotonic,
                    now + lane.total,
                    network_bounded=bound is not None,
                )
            except httpx.TransportError as exc:
                response.close()
                return self._resume(request, now, breaker, None, None, exc)
        finally:
            if bound is not None:
                _deadline.current.reset(bound)
        # ``scanned``: the body the lane already failed to prove clean (not scanned again).
        if response.status_code < 300 and (body is None or (body is not scanned and lane.scan(body))):
            self._lane_won(lane, breaker, now)
            response.extensions[ATTEMPTS_EXTENSION] = 1
            return body_errors_scrubbed(response, request, self.secrets) if body is None else response
        return self._resume(request, now, breaker, response, body, None, scanned=body is not None)

    @staticmethod
    def _lane_won(lane: _Lane, breaker: Breaker | None, now: float) -> None:
        if breaker is not None:
            breaker.succeeded(now)
        if lane.earn is not None:
            lane.earn()

    def _known_breaker(self, breaker: Breaker) -> Next:
        """The attempt function of a call the fast lane began: the pipeline (only the breaker, over
        the in-process store: see ``_Lane.of``) with the host's breaker already found."""
        lane = self._lane
        assert lane is not None
        known = lane.known.get(breaker)
        if known is None:
            known = lane.known[breaker] = functools.partial(
                self._pipeline.breaker.handle_known, breaker, lane.store, next=self._attempt_sync
            )
        return known

    def _aknown_breaker(self, breaker: Breaker) -> AsyncNext:
        lane = self._lane
        assert lane is not None
        known = lane.aknown.get(breaker)
        if known is None:
            known = lane.aknown[breaker] = functools.partial(
                self._pipeline.breaker.ahandle_known, breaker, lane.store, next=self._attempt_async
            )
        return known

    def _resume(
        self,
        request: httpx.Request,
        started: float,
        breaker: Breaker | None,
        response: httpx.Response | None,
        body: bytes | None,
        error: Exception | None,
        scanned: bool = False,
    ) -> httpx.Response:
        """The pipeline, from a first attempt the fast lane sent (its answer, or its error)."""
        # The breaker the lane found is its host's: the host is not read from the URL again.
        call = self._start(request, started, None if breaker is None else breaker.host)
        if error is not None:
            first = self._ended(call, self._judge_error(call, 1, error), started)
        else:
            assert response is not None
            first = self._concluded(call, 1, response, body, started, scanned)
        pipeline = self._pipeline
        attempt = pipeline.attempt
        try:
            if breaker is not None:
                pipeline.breaker.settle_sent(call, breaker, first)
                attempt = self._known_breaker(breaker)
            result = pipeline.retry.run(call, _seeded(first, attempt))
        except BaseException as exc:
            self._aborted(call, exc)
            raise
        response = self._finish(call, result)
        return body_errors_scrubbed(response, call.request, self.secrets)

    def _handle(self, request: httpx.Request) -> httpx.Response:
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
        # The fast lane of handle_request, awaiting.
        lane = self._lane
        extensions = request.extensions
        if (
            lane is None
            or not lane.store.circuits_closed
            or not self.hooks.quiet
            or POLICY_EXTENSION in extensions
            or (lane.check_timeouts and extensions.get("timeout") != lane.timeouts)
        ):
            return await self._ahandle(request)
        breaker = None
        strategy = lane.breakers
        if strategy is not None:
            hosts = strategy._hosts
            host = request.url._uri_reference.host
            breaker = hosts.breakers.get(host)
            if breaker is None:
                return await self._ahandle(request)
            hosts.last = host
        inner = lane.async_inner
        if inner is None:
            return await self._ahandle(request)
        now = lane.monotonic()
        bound = (
            _deadline.current.set(_deadline.Deadline(now + lane.total, lane.monotonic))
            if lane.bound
            else None
        )
        try:
            response = await inner.handle_async_request(request)
        except httpx.TransportError as exc:
            if bound is not None:
                _deadline.current.reset(bound)
            return await self._aresume(request, now, breaker, None, None, exc)
        content = getattr(response, "_content", None)
        if (
            bound is None
            and content is not None
            and response.status_code < 300
            and len(content) <= lane.cap  # a body past the cap is not classified (``_lane_read``)
            and (
                # The scanner's first test, written out: a call saved on every success.
                (content.startswith(lane.shape) and content.count(lane.key) == 1 and content.find(b"\\") < 0)
                or lane.scan(content)
            )
        ):
            if breaker is not None:
                breaker.wins.add()
                breaker.won_at = now
                if now >= breaker.flush_at:
                    await breaker.aflush(now)
            if lane.earn is not None:
                lane.earn()
            extensions = response.extensions
            extensions[ATTEMPTS_EXTENSION] = 1
            return response
        return await self._alane_read(lane, request, now, breaker, response, bound, content)

    async def _alane_read(
        self,
        lane: _Lane,
        request: httpx.Request,
        now: float,
        breaker: Breaker | None,
        response: httpx.Response,
        bound: Any,
        scanned: bytes | None,
    ) -> httpx.Response:
        try:
            try:
                response, body = await read_async(
                    response,
                    request,
                    lane.cap,
                    lane.monotonic,
                    now + lane.total,
                    network_bounded=bound is not None,
                )
            except httpx.TransportError as exc:
                await response.aclose()
                return await self._aresume(request, now, breaker, None, None, exc)
        finally:
            if bound is not None:
                _deadline.current.reset(bound)
        # ``scanned``: the body the lane already failed to prove clean (not scanned again).
        if response.status_code < 300 and (body is None or (body is not scanned and lane.scan(body))):
            if breaker is not None:
                await breaker.asucceeded(now)
            if lane.earn is not None:
                lane.earn()
            response.extensions[ATTEMPTS_EXTENSION] = 1
            return async_body_errors_scrubbed(response, request, self.secrets) if body is None else response
        return await self._aresume(request, now, breaker, response, body, None, scanned=body is not None)

    async def _aresume(
        self,
        request: httpx.Request,
        started: float,
        breaker: Breaker | None,
        response: httpx.Response | None,
        body: bytes | None,
        error: Exception | None,
        scanned: bool = False,
    ) -> httpx.Response:
        # The breaker the lane found is its host's: the host is not read from the URL again.
        call = self._start(request, started, None if breaker is None else breaker.host)
        if error is not None:
            first = self._ended(call, self._judge_error(call, 1, error), started)
        else:
            assert response is not None
            first = await self._aconcluded(call, 1, response, body, started, scanned)
        pipeline = self._pipeline
        attempt = pipeline.aattempt
        try:
            if breaker is not None:
                # The lane's store is the in-process one: its operations are the sync ones.
                pipeline.breaker.settle_sent(call, breaker, first)
                attempt = self._aknown_breaker(breaker)
            result = await pipeline.retry.arun(call, _aseeded(first, attempt))
        except BaseException as exc:
            self._aborted(call, exc)
            raise
        response = self._finish(call, result)
        return async_body_errors_scrubbed(response, call.request, self.secrets)

    async def _ahandle(self, request: httpx.Request) -> httpx.Response:
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
