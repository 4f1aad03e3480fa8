"""One attempt, the pipeline's leaf: send -> read -> classify -> decide, sync and async.

The strategies around it (``strategies/``) decide whether an attempt goes at all; this module sends
the one that goes and says what it got. Every attempt of every call takes this one way, whatever the
policy switches on and whatever the inner transport is:

1. the caller's timeouts are cut to the time left (and ``retry.attempt_timeout``) when they are
   longer (``Call.shrink_timeouts``);
2. the request goes to the inner transport; the call's deadline is in ``_deadline.current`` (the
   transport set it for the whole call), and httpx's own transports bound every network operation
   by it;
3. the body is read only when it can carry an envelope, up to the policy's cap (``_body``);
4. a 2xx body the vendor's byte scan proves clean is a success with nothing decoded; anything else is
   read by the vendor's envelope reader, classified, and handed to the pure retry decision.

Hooks hear the attempt's start and its end; a success is built into an event only for the hooks
that asked to hear successes (``Hooks.attempt_success``), so the usual call builds none.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from resilient_client._body import read_async, read_sync
from resilient_client._catalog import Catalog
from resilient_client._classify import Outcome, classify
from resilient_client._decision import RETURN, Decision, decide, parse_retry_after
from resilient_client._envelopes import no_fault_scanner, read_envelope
from resilient_client._pipeline import Attempt, AttemptEvent, Call, Hooks

__all__ = ["Leaf"]


class Leaf:
    """The last step of every attempt, over one transport's inner transports.

    ``sync_inner``/``async_inner`` serve ``httpx.Client``/``httpx.AsyncClient``; None when the
    transport cannot serve that kind of client (an attempt then raises ``TypeError`` saying so).
    ``network_bound``: the inner transport is httpx's own, whose every network operation already
    reads the deadline, so a body it streams needs no deadline check of its own.
    """

    __slots__ = ("_catalog", "_hooks", "_scan", "async_inner", "network_bound", "sync_inner")

    def __init__(
        self,
        catalog: Catalog,
        hooks: Hooks,
        sync_inner: httpx.BaseTransport | Callable[[], httpx.BaseTransport],
        async_inner: httpx.AsyncBaseTransport | Callable[[], httpx.AsyncBaseTransport],
        network_bound: bool,
    ) -> None:
        self._catalog = catalog
        self._hooks = hooks
        #: The byte scan that proves a 2xx body of this vendor clean; None: always decoded.
        self._scan = no_fault_scanner(catalog.envelope)
        #: The inner transport of each kind, or a function that raises why there is none.
        self.sync_inner = sync_inner
        self.async_inner = async_inner
        self.network_bound = network_bound

    # -- no I/O ---------------------------------------------------------------------------------

    def _begin(self, call: Call, number: int) -> float:
        """Before sending: the timeouts cut to the time left, the hooks told; when it started."""
        clock = call.clock.monotonic
        # From the second attempt on, less than the deadline is left: the timeouts are cut to it
        # when it is shorter than the longest of the caller's (else cutting changes none of them).
        if call.shrink or (number > 1 and call.deadline - clock() < call.longest):
            call.shrink_timeouts()
        hooks = self._hooks
        for hook in hooks.attempt_start:
            hook(call, number)
        return clock() if hooks.attempt else 0.0

    def judge(self, call: Call, number: int, response: httpx.Response, body: bytes | None) -> Attempt:
        """What an answer means (pure): a success, or a fault with the retry decision."""
        status = response.status_code
        scan = self._scan
        if status < 300 and (body is None or (scan is not None and scan(body))):
            return Attempt(number, RETURN, response)  # the success path: nothing to decode
        spec = self._catalog.envelope
        envelope = None if body is None else read_envelope(spec, body)
        outcome = classify(self._catalog, status, envelope)
        if outcome.ok:
            return Attempt(number, RETURN, response)
        retry_after = parse_retry_after(response.headers, call.clock.wall(), spec.rate_limit_reset_header)
        decision = _decide(call, number, outcome, None, retry_after)
        return Attempt(number, decision, response, outcome, retry_after=retry_after)

    @staticmethod
    def judge_error(call: Call, number: int, error: Exception) -> Attempt:
        """What a transport error means (pure): the retry decision for it."""
        return Attempt(number, _decide(call, number, None, error, None), error=error)

    def _ended(self, call: Call, result: Attempt, started: float) -> Attempt:
        # RETURN is the decision of a success and of nothing else: a success is told only to the
        # hooks that want successes (not the logging hook), so usually no event is built for it.
        hooks = self._hooks
        listeners = hooks.attempt_success if result.decision is RETURN else hooks.attempt
        if listeners:
            event = AttemptEvent(call, result, call.clock.monotonic() - started)
            for hook in listeners:
                hook(call, event)
        return result

    # -- sync -----------------------------------------------------------------------------------

    def send(self, call: Call, number: int) -> Attempt:
        """Attempt ``number`` of ``call``: sent, read, classified, decided."""
        inner = self.sync_inner
        if not isinstance(inner, httpx.BaseTransport):
            inner = inner()  # raises: this transport cannot serve a sync client
        started = self._begin(call, number)
        request = call.request
        try:
            response = inner.handle_request(request)
        except httpx.TransportError as exc:
            return self._ended(call, self.judge_error(call, number, exc), started)
        try:
            response, body = read_sync(
                response,
                request,
                call.policy.body.max_read_bytes,
                call.clock.monotonic,
                call.deadline,
                self.network_bound,
            )
        except httpx.TransportError as exc:
            response.close()
            return self._ended(call, self.judge_error(call, number, exc), started)
        result = self.judge(call, number, response, body)
        if result.decision is RETURN:
            # A success: told only to the hooks that hear successes (usually none).
            return self._ended(call, result, started) if self._hooks.attempt_success else result
        if result.decision.action != "return":
            # Discarded or kept inside an error: either way nobody reads more of its stream.
            response.close()
        return self._ended(call, result, started)

    # -- async ----------------------------------------------------------------------------------

    async def asend(self, call: Call, number: int) -> Attempt:
        """The async twin of ``send``."""
        inner = self.async_inner
        if not isinstance(inner, httpx.AsyncBaseTransport):
            inner = inner()  # raises: this transport cannot serve an async client
        started = self._begin(call, number)
        request = call.request
        try:
            response = await inner.handle_async_request(request)
        except httpx.TransportError as exc:
            return self._ended(call, self.judge_error(call, number, exc), started)
        try:
            response, body = await read_async(
                response,
                request,
                call.policy.body.max_read_bytes,
                call.clock.monotonic,
                call.deadline,
                self.network_bound,
            )
        except httpx.TransportError as exc:
            await response.aclose()
            return self._ended(call, self.judge_error(call, number, exc), started)
        result = self.judge(call, number, response, body)
        if result.decision is RETURN:
            return self._ended(call, result, started) if self._hooks.attempt_success else result
        if result.decision.action != "return":
            await response.aclose()
        return self._ended(call, result, started)


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
