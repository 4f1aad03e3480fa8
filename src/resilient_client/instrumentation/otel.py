"""OpenTelemetry traces and metrics from the pipeline's events (the ``otel`` extra).

Traces follow the HTTP semantic conventions for a client that resends: one INTERNAL span per call
(the logical operation, its attempts and waits) and one CLIENT span per attempt as its child, current
while the inner transport sends, so spans of the inner transport (opentelemetry-instrumentation-httpx
on httpx's own transport) nest under the attempt they belong to, and the ``traceparent`` sent to the
vendor names that attempt. Waits and refusals are events on the call span.

Nothing a request carries reaches an attribute or an event: ``url.full`` keeps the query's keys
without their values and drops the userinfo, no header or body is read, exceptions are not recorded
(their messages may quote a vendor's body), and the texts that are kept (refusal reasons, string
codes) are masked with the request's secrets. Metric attributes are bounded: method, host, status,
vendor, category, strategy, a refusal's kind; never a URL, a code or a key.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from contextvars import Token
from typing import Any
from urllib.parse import quote

import httpx
from opentelemetry import context, metrics, propagate, trace
from opentelemetry.util.types import AttributeValue

from resilient_client._pipeline import (
    AttemptEvent,
    BreakerEvent,
    Call,
    Hook,
    RejectionEvent,
    RetryEvent,
)

__all__ = ["OpenTelemetryHook"]

_SCOPE = "resilient_client"
# HTTP semconv v1.26+: the attribute names below are stable since then.
_SCHEMA_URL = "https://opentelemetry.io/schemas/1.26.0"
#: The methods the HTTP semconv knows; any other is reported as ``_OTHER``.
_KNOWN_METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: The buckets the HTTP semconv advises for ``http.client.request.duration`` (seconds).
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
_REDACTED_VALUE = "REDACTED"

Attributes = dict[str, AttributeValue]


def safe_url(url: httpx.URL) -> str:
    """``url`` as ``url.full`` may show it: scheme, host, port, path, and the query's keys with every
    value replaced by ``REDACTED`` (the HTTP semconv's word); no userinfo, no fragment."""
    path = url.raw_path.decode("ascii", "replace").partition("?")[0]
    text = f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}{path}"
    if url.query:
        params = url.params.multi_items()
        pairs = (f"{quote(key, safe='')}={_REDACTED_VALUE if value else ''}" for key, value in params)
        text += "?" + "&".join(pairs)
    return text


def _method(call: Call) -> tuple[str, str | None]:
    """(``http.request.method``, the original method when the semconv calls it ``_OTHER``)."""
    method = call.request.method
    return (method, None) if method in _KNOWN_METHODS else ("_OTHER", method)


def _error_type(error: BaseException) -> str:
    """``error.type`` of a call that raised: a vendor fault's category, else the class name (as
    opentelemetry-instrumentation-httpx names an exception)."""
    category = getattr(error, "category", None)
    return category if isinstance(category, str) else type(error).__qualname__


def _attempt_error_type(event: AttemptEvent) -> str | None:
    """``error.type`` of an attempt, or None when it gave the call its answer."""
    if event.error_type is not None:
        return event.error_type
    status = event.status or 0
    category = event.category
    if category not in (None, "ok") and (event.decision != "return" or status >= 400):
        return category
    return str(status) if status >= 400 else None


class _CallTrace:
    """What the hook keeps on one call: its span, the open attempt's span and context token."""

    __slots__ = ("attempt", "attempts", "last", "request", "span", "token")

    def __init__(self, span: trace.Span, request: Attributes) -> None:
        self.span = span
        #: The request's attributes, shared by the call span and its attempt spans.
        self.request = request
        self.attempt: trace.Span | None = None
        self.token: Token[context.Context] | None = None
        self.attempts = 0
        #: The last attempt's result attributes, which the call span ends with.
        self.last: Attributes = {}


class OpenTelemetryHook(Hook):
    """Spans and metrics of every call whose start it hears: ``resilient_client.otel.instrument()``
    gives it to every transport; ``hooks=[OpenTelemetryHook(...)]`` gives it to one.

    A call whose start it missed (it was installed mid-call) is left alone: its spans could not nest.
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        version: str | None = None,
    ) -> None:
        # None: the global providers, as every OpenTelemetry instrumentation does (a proxy until the
        # application sets them, so instrumenting early loses nothing).
        self._tracer = trace.get_tracer(_SCOPE, version, tracer_provider, schema_url=_SCHEMA_URL)
        meter = metrics.get_meter(_SCOPE, version or "", meter_provider, schema_url=_SCHEMA_URL)
        self._duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of each HTTP attempt: sending, the response, the body read to classify it.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self._retries = meter.create_counter(
            "resilient_client.retries", unit="{retry}", description="Retries scheduled, by cause."
        )
        self._rejections = meter.create_counter(
            "resilient_client.rejections",
            unit="{rejection}",
            description="Attempts a strategy refused to send, by strategy and reason.",
        )
        self._transitions = meter.create_counter(
            "resilient_client.breaker.transitions",
            unit="{transition}",
            description="Circuit breaker state changes, by the state entered.",
        )
        # Per hook, so two hooks (a global one, one of a transport) keep separate traces of a call.
        self._key = f"{_SCOPE}.otel.{id(self)}"
        self._lock = threading.Lock()
        self._in_flight = 0
        self._on_idle: Callable[[], None] | None = None

    def retire(self, on_idle: Callable[[], None]) -> None:
        """Start no new call; call ``on_idle`` once the calls already started have ended.

        The hook cannot simply be removed mid-call: the span of an attempt in flight is the current
        one in its thread or task until ``on_attempt`` or ``on_call_end`` detaches it.
        """
        with self._lock:
            self._on_idle = on_idle
            idle = self._in_flight == 0
        if idle:
            on_idle()

    def __repr__(self) -> str:
        return "OpenTelemetryHook()"

    # -- helpers ------------------------------------------------------------------------------

    def _trace_of(self, call: Call) -> _CallTrace | None:
        data = call.hook_data
        return None if data is None else data.get(self._key)

    @staticmethod
    def _request_attributes(call: Call) -> Attributes:
        url = call.request.url
        method, original = _method(call)
        attributes: Attributes = {
            "http.request.method": method,
            "server.address": call.host,
            "url.full": call.secrets.redact_values(safe_url(url)),
            "resilient_client.vendor": call.vendor,
        }
        port = url.port or _DEFAULT_PORTS.get(url.scheme)
        if port is not None:
            attributes["server.port"] = port
        if original is not None:
            attributes["http.request.method_original"] = original
        return attributes

    @staticmethod
    def _metric_base(call: Call) -> Attributes:
        attributes: Attributes = {
            "http.request.method": _method(call)[0],
            "server.address": call.host,
            "resilient_client.vendor": call.vendor,
        }
        port = call.request.url.port or _DEFAULT_PORTS.get(call.request.url.scheme)
        if port is not None:
            attributes["server.port"] = port
        return attributes

    @staticmethod
    def _code(call: Call, code: int | str | None) -> int | str | None:
        # A vendor may echo what it was sent into a string code: mask the request's secrets too.
        if isinstance(code, str):
            return call.secrets.with_request(call.request).redact(code)
        return code

    @staticmethod
    def _span_name(attributes: Mapping[str, AttributeValue]) -> str:
        method = attributes["http.request.method"]
        return "HTTP" if method == "_OTHER" else str(method)

    # -- events -------------------------------------------------------------------------------

    def on_call_start(self, call: Call) -> None:
        with self._lock:
            if self._on_idle is not None:
                return
            self._in_flight += 1
        request = self._request_attributes(call)
        name = self._span_name(request)
        span = self._tracer.start_span(name, kind=trace.SpanKind.INTERNAL, attributes=request)
        if call.hook_data is None:
            call.hook_data = {}
        call.hook_data[self._key] = _CallTrace(span, request)

    def on_attempt_start(self, call: Call, number: int) -> None:
        traced = self._trace_of(call)
        if traced is None:
            return  # instrumented while this call was running: its attempts go untraced
        attributes = dict(traced.request)
        if number > 1:
            attributes["http.request.resend_count"] = number - 1
        span = self._tracer.start_span(
            self._span_name(attributes),
            context=trace.set_span_in_context(traced.span),
            kind=trace.SpanKind.CLIENT,
            attributes=attributes,
        )
        traced.attempt = span
        traced.attempts = number
        # Current while the inner transport sends (its own instrumentation nests under it), and
        # named in the traceparent the vendor receives; on_attempt or on_call_end detaches it.
        traced.token = context.attach(trace.set_span_in_context(span))
        propagate.inject(call.request.headers)

    def on_attempt(self, call: Call, event: AttemptEvent) -> None:
        traced = self._trace_of(call)
        if traced is None:
            return
        error_type = _attempt_error_type(event)
        metric = self._metric_base(call)
        result: Attributes = {"resilient_client.decision": event.decision}
        if event.status is not None:
            result["http.response.status_code"] = metric["http.response.status_code"] = event.status
        if event.category is not None:
            result["resilient_client.category"] = metric["resilient_client.category"] = event.category
        if error_type is not None:
            result["error.type"] = metric["error.type"] = error_type
        code = self._code(call, event.code)
        if code is not None:
            result["resilient_client.code"] = code
        self._duration.record(event.duration, metric)
        if traced.attempt is None:
            return
        span, token = traced.attempt, traced.token
        traced.attempt = traced.token = None
        assert token is not None
        traced.last = result
        span.set_attributes(result)
        if error_type is not None:
            span.set_status(trace.StatusCode.ERROR)
        span.end()
        context.detach(token)

    def on_retry(self, call: Call, event: RetryEvent) -> None:
        traced = self._trace_of(call)
        if traced is None:
            return
        cause = event.category or type(event.error).__qualname__
        metric = self._metric_base(call)
        metric["error.type"] = cause
        if event.category is not None:
            metric["resilient_client.category"] = event.category
        self._retries.add(1, metric)
        attributes: Attributes = {
            "resilient_client.attempt": event.attempt,
            "resilient_client.wait": event.wait,
            "error.type": cause,
        }
        if event.category is not None:
            attributes["resilient_client.category"] = event.category
        if event.code is not None:
            attributes["resilient_client.code"] = event.code  # masked by the retry strategy
        if event.status is not None:
            attributes["http.response.status_code"] = event.status
        traced.span.add_event("resilient_client.retry", attributes)

    def on_rejection(self, call: Call, event: RejectionEvent) -> None:
        traced = self._trace_of(call)
        if traced is None:
            return
        # The refusal's kind, not its words (a guard's reason says how long it waited): bounded.
        kind = event.error.default_reason if event.error is not None else event.strategy
        self._rejections.add(
            1,
            {
                "resilient_client.vendor": call.vendor,
                "server.address": call.host,
                "resilient_client.strategy": event.strategy,
                "resilient_client.reason": kind,
            },
        )
        attributes: Attributes = {
            "resilient_client.attempt": event.attempt,
            "resilient_client.strategy": event.strategy,
            "resilient_client.reason": call.secrets.with_request(call.request).redact(event.reason),
        }
        if event.error is not None:
            attributes["error.type"] = type(event.error).__qualname__
        if event.retry_after is not None:
            attributes["resilient_client.retry_after"] = event.retry_after
        traced.span.add_event("resilient_client.rejection", attributes)

    def on_breaker(self, event: BreakerEvent) -> None:
        if self._on_idle is not None:
            return
        self._transitions.add(
            1,
            {
                "resilient_client.vendor": event.vendor,
                "server.address": event.host,
                "resilient_client.breaker.state": event.state,
            },
        )

    def on_call_end(self, call: Call, error: BaseException | None) -> None:
        data = call.hook_data
        traced: _CallTrace | None = None if data is None else data.pop(self._key, None)
        if traced is None:
            return
        try:
            self._end(call, traced, error)
        finally:
            with self._lock:
                self._in_flight -= 1
                on_idle = self._on_idle if self._in_flight == 0 else None
            if on_idle is not None:
                on_idle()

    def _end(self, call: Call, traced: _CallTrace, error: BaseException | None) -> None:
        if traced.attempt is not None:
            # The pipeline raised inside an attempt (a cancellation, an inner transport's own error).
            attempt = traced.attempt
            if error is not None:
                attempt.set_attribute("error.type", _error_type(error))
            attempt.set_status(trace.StatusCode.ERROR)
            attempt.end()
            if traced.token is not None:
                context.detach(traced.token)
            traced.last = {}
        span = traced.span
        final: dict[str, Any] = {key: value for key, value in traced.last.items() if key != "error.type"}
        final["resilient_client.attempts"] = traced.attempts
        final["resilient_client.decision"] = "raise" if error is not None else "return"
        if error is not None:
            final["error.type"] = _error_type(error)
            reason = getattr(error, "reason", None)
            description = (
                call.secrets.with_request(call.request).redact(reason) if isinstance(reason, str) else None
            )
            span.set_status(trace.StatusCode.ERROR, description)
        span.set_attributes(final)
        span.end()
