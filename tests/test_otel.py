"""resilient_client.otel: spans and metrics of calls, read back with the SDK's in-memory exporter and
reader; every provider is handed to instrument(), none is set globally."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import httpx
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import (
    AsyncOpenTelemetryTransport,
    HTTPXClientInstrumentor,
    SyncOpenTelemetryTransport,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import resilient_client as rc
from resilient_client import errors, otel
from resilient_client.instrumentation.otel import OpenTelemetryHook, safe_url
from resilient_client.testing import FakeClock

URL = "https://api.usta.test/v1/players"
SECRET = "SECRET-7f3a9c"

Handler = Callable[[httpx.Request], httpx.Response]


class Telemetry:
    """One tracer and one meter provider, in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self, scope: str = "resilient_client") -> list[ReadableSpan]:
        return [
            span
            for span in self.exporter.get_finished_spans()
            if span.instrumentation_scope is not None and span.instrumentation_scope.name == scope
        ]

    def call_span(self) -> ReadableSpan:
        (span,) = [s for s in self.spans() if s.kind is SpanKind.INTERNAL]
        return span

    def attempt_spans(self) -> list[ReadableSpan]:
        return sorted(
            (s for s in self.spans() if s.kind is SpanKind.CLIENT),
            key=lambda s: s.attributes.get("http.request.resend_count", 0),
        )

    def points(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """Metric name -> [(attributes, value or (count, sum))]."""
        found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        value = (point.count, point.sum) if hasattr(point, "count") else point.value
                        found.setdefault(metric.name, []).append((dict(point.attributes), value))
        return found

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    found = Telemetry()
    otel.instrument(tracer_provider=found.tracer_provider, meter_provider=found.meter_provider)
    try:
        yield found
    finally:
        otel.uninstrument()
        found.shutdown()
    # instrument() never sets the process's providers: the application owns them.
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def answers(*responses: httpx.Response | Exception) -> Handler:
    """A MockTransport handler answering with ``responses`` in turn (an exception is raised)."""
    pending = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        answer = pending.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler


def transport(handler: Handler, vendor: str = "usta", **options: Any) -> rc.ResilientTransport:
    return rc.ResilientTransport(
        vendor, transport=httpx.MockTransport(handler), **{**FakeClock().options(), **options}
    )


async def send(mode: str, via: rc.ResilientTransport, method: str = "GET", url: str = URL, **kw: Any) -> Any:
    """The call through an httpx.Client or an httpx.AsyncClient (the transport is not closed)."""
    if mode == "sync":
        return httpx.Client(transport=via).request(method, url, **kw)
    return await httpx.AsyncClient(transport=via).request(method, url, **kw)


def one_breaker_failure_opens(vendor: str = "usta") -> rc.RetryPolicy:
    policy = rc.load_policy(vendor)
    return attrs.evolve(
        policy,
        retry=attrs.evolve(policy.retry, max_attempts=1),
        breaker=attrs.evolve(policy.breaker, minimum_throughput=1),
    )


# -- the extra -------------------------------------------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_importing_the_package_imports_no_opentelemetry() -> None:
    done = run_python(
        "import sys, resilient_client, resilient_client.instrumentation;"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_otel_without_the_extra_says_how_to_install_it() -> None:
    # sys.modules[name] = None makes every import of it fail, as if it were not installed.
    done = run_python("import sys; sys.modules['opentelemetry'] = None; import resilient_client.otel")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError:"), done.stderr
    assert "pip install resilient-client[otel]" in last


# -- traces ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_success_is_one_call_span_and_one_attempt_span(telemetry: Telemetry, mode: str) -> None:
    response = await send(mode, transport(answers(httpx.Response(200, json={}))))
    assert response.status_code == 200

    call = telemetry.call_span()
    (attempt,) = telemetry.attempt_spans()
    assert (call.name, attempt.name) == ("GET", "GET")
    assert call.parent is None
    assert attempt.parent is not None and attempt.parent.span_id == call.context.span_id
    assert attempt.context.trace_id == call.context.trace_id
    assert dict(attempt.attributes or {}) == {
        "http.request.method": "GET",
        "server.address": "api.usta.test",
        "server.port": 443,
        "url.full": URL,
        "http.response.status_code": 200,
        "resilient_client.vendor": "usta",
        "resilient_client.category": "ok",
        "resilient_client.decision": "return",
    }
    assert call.attributes is not None
    assert call.attributes["resilient_client.attempts"] == 1
    assert call.attributes["http.response.status_code"] == 200
    assert "error.type" not in call.attributes
    assert call.status.status_code is StatusCode.UNSET
    assert attempt.status.status_code is StatusCode.UNSET

    (point,) = telemetry.points()["http.client.request.duration"]
    assert point == (
        {
            "http.request.method": "GET",
            "server.address": "api.usta.test",
            "server.port": 443,
            "http.response.status_code": 200,
            "resilient_client.vendor": "usta",
            "resilient_client.category": "ok",
        },
        (1, 0.0),  # the FakeClock does not move while the MockTransport answers
    )


@pytest.mark.anyio
async def test_a_retry_is_two_attempt_spans_and_a_wait_event(telemetry: Telemetry, mode: str) -> None:
    clock = FakeClock()
    via = transport(answers(httpx.Response(503), httpx.Response(200, json={})), **clock.options())
    assert (await send(mode, via)).status_code == 200

    first, second = telemetry.attempt_spans()
    assert first.attributes is not None and second.attributes is not None
    assert "http.request.resend_count" not in first.attributes
    assert second.attributes["http.request.resend_count"] == 1
    assert first.attributes["error.type"] == "service_unavailable"
    assert first.attributes["resilient_client.decision"] == "retry"
    assert first.status.status_code is StatusCode.ERROR
    assert second.status.status_code is StatusCode.UNSET

    call = telemetry.call_span()
    assert call.attributes is not None and call.attributes["resilient_client.attempts"] == 2
    (wait,) = call.events
    assert wait.name == "resilient_client.retry"
    assert wait.attributes is not None
    assert wait.attributes["resilient_client.wait"] == pytest.approx(clock.sleeps[0])
    assert wait.attributes["resilient_client.attempt"] == 1
    assert wait.attributes["http.response.status_code"] == 503

    (retry,) = telemetry.points()["resilient_client.retries"]
    assert retry[0]["resilient_client.category"] == "service_unavailable"
    assert retry[0]["resilient_client.vendor"] == "usta"
    assert retry[1] == 1
    statuses = sorted(
        p[0]["http.response.status_code"] for p in telemetry.points()["http.client.request.duration"]
    )
    assert statuses == [200, 503]


@pytest.mark.anyio
async def test_a_transport_error_names_its_class(telemetry: Telemetry, mode: str) -> None:
    via = transport(answers(httpx.ConnectError("refused"), httpx.Response(200, json={})))
    assert (await send(mode, via, "POST", json={})).status_code == 200
    first, _ = telemetry.attempt_spans()
    assert first.attributes is not None
    assert first.attributes["error.type"] == "ConnectError"
    assert "http.response.status_code" not in first.attributes
    (retry,) = telemetry.points()["resilient_client.retries"]
    assert retry[0]["error.type"] == "ConnectError"


@pytest.mark.anyio
async def test_a_failed_call_ends_its_span_in_error_with_the_category(
    telemetry: Telemetry, mode: str
) -> None:
    body = {"errors": [{"errorCode": 5000, "message": "validation error"}]}
    with pytest.raises(errors.ValidationError):
        await send(mode, transport(answers(httpx.Response(400, json=body))))
    call = telemetry.call_span()
    assert call.status.status_code is StatusCode.ERROR
    assert call.status.description == "not retried: the policy does not retry validation"
    assert call.attributes is not None
    assert call.attributes["error.type"] == "validation"
    assert call.attributes["resilient_client.code"] == 5000
    assert call.attributes["resilient_client.decision"] == "raise"
    (attempt,) = telemetry.attempt_spans()
    assert attempt.status.status_code is StatusCode.ERROR


@pytest.mark.anyio
async def test_a_breaker_rejection_is_an_event_and_a_count(telemetry: Telemetry, mode: str) -> None:
    via = transport(answers(httpx.Response(503)), policy=one_breaker_failure_opens())
    with pytest.raises(errors.ServiceUnavailableError):
        await send(mode, via)
    telemetry.exporter.clear()
    with pytest.raises(errors.CircuitOpenError):
        await send(mode, via)

    call = telemetry.call_span()
    assert telemetry.attempt_spans() == []  # nothing was sent
    assert call.attributes is not None
    assert call.attributes["error.type"] == "CircuitOpenError"
    assert call.attributes["resilient_client.attempts"] == 0
    assert call.status.status_code is StatusCode.ERROR
    (event,) = call.events
    assert event.name == "resilient_client.rejection"
    assert event.attributes is not None
    assert event.attributes["resilient_client.strategy"] == "breaker"
    assert event.attributes["resilient_client.reason"] == "circuit open"
    assert event.attributes["resilient_client.retry_after"] > 0

    points = telemetry.points()
    assert [p[0] for p in points["resilient_client.rejections"]] == [
        {
            "resilient_client.vendor": "usta",
            "server.address": "api.usta.test",
            "resilient_client.strategy": "breaker",
            "resilient_client.reason": "circuit open",
        }
    ]
    assert points["resilient_client.rejections"][0][1] == 1
    (opened,) = points["resilient_client.breaker.transitions"]
    assert opened == (
        {
            "resilient_client.vendor": "usta",
            "server.address": "api.usta.test",
            "resilient_client.breaker.state": "open",
        },
        1,
    )


@pytest.mark.anyio
async def test_the_attempt_span_is_current_while_the_inner_transport_sends(
    telemetry: Telemetry, mode: str
) -> None:
    seen: list[tuple[trace.SpanContext, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((trace.get_current_span().get_span_context(), request.headers["traceparent"]))
        return httpx.Response(503 if len(seen) == 1 else 200, json={})

    await send(mode, transport(handler))
    assert trace.get_current_span() is trace.INVALID_SPAN  # detached again
    attempts = telemetry.attempt_spans()
    assert [context for context, _ in seen] == [span.context for span in attempts]
    # The vendor (or a span-creating inner transport) continues the trace from that attempt.
    for (context, traceparent), span in zip(seen, attempts, strict=True):
        assert traceparent.split("-")[1:3] == [f"{span.context.trace_id:032x}", f"{context.span_id:016x}"]


HTTPX_SCOPE = "opentelemetry.instrumentation.httpx"


@pytest.mark.anyio
async def test_httpx_instrumentation_of_the_inner_transport_nests_under_each_attempt(
    telemetry: Telemetry, mode: str
) -> None:
    # What HTTPXClientInstrumentor().instrument() does to httpx's own transports, here on a mock.
    mock = httpx.MockTransport(answers(httpx.Response(503), httpx.Response(200, json={})))
    wrapper = SyncOpenTelemetryTransport if mode == "sync" else AsyncOpenTelemetryTransport
    inner = wrapper(mock, tracer_provider=telemetry.tracer_provider)
    await send(mode, rc.ResilientTransport("usta", transport=inner, **FakeClock().options()))

    attempts = telemetry.attempt_spans()
    physical = sorted(telemetry.spans(HTTPX_SCOPE), key=lambda span: span.start_time or 0)
    assert len(attempts) == len(physical) == 2
    for attempt, sent in zip(attempts, physical, strict=True):
        assert sent.parent is not None and sent.parent.span_id == attempt.context.span_id


@pytest.mark.anyio
async def test_httpx_instrument_client_wraps_the_whole_call(telemetry: Telemetry, mode: str) -> None:
    via = transport(answers(httpx.Response(503), httpx.Response(200, json={})))
    client = httpx.Client(transport=via) if mode == "sync" else httpx.AsyncClient(transport=via)
    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=telemetry.tracer_provider)
    if isinstance(client, httpx.Client):
        client.get(URL)
    else:
        await client.get(URL)
    (outer,) = telemetry.spans(HTTPX_SCOPE)
    call = telemetry.call_span()
    assert call.parent is not None and call.parent.span_id == outer.context.span_id
    assert len(telemetry.attempt_spans()) == 2


@pytest.mark.anyio
async def test_a_pipeline_that_raises_still_ends_both_spans(telemetry: Telemetry, mode: str) -> None:
    with pytest.raises(RuntimeError, match="inner transport bug"):
        await send(mode, transport(answers(RuntimeError("inner transport bug"))))
    assert trace.get_current_span() is trace.INVALID_SPAN
    call = telemetry.call_span()
    (attempt,) = telemetry.attempt_spans()
    for span in (call, attempt):
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes is not None and span.attributes["error.type"] == "RuntimeError"


@pytest.mark.anyio
async def test_an_unknown_method_is_other(telemetry: Telemetry, mode: str) -> None:
    await send(mode, transport(answers(httpx.Response(200, json={}))), "PURGE")
    call = telemetry.call_span()
    assert call.name == "HTTP"
    assert call.attributes is not None
    assert call.attributes["http.request.method"] == "_OTHER"
    assert call.attributes["http.request.method_original"] == "PURGE"
    (point,) = telemetry.points()["http.client.request.duration"]
    assert point[0]["http.request.method"] == "_OTHER"


# -- secrets ---------------------------------------------------------------------------------------

FAILURES = [
    pytest.param(
        "usta",
        httpx.Response(
            400, json={"errors": [{"errorCode": 5000, "message": f"bad {SECRET}", "subject": SECRET}]}
        ),
        id="usta-message-and-subject",
    ),
    pytest.param(
        "medable",
        httpx.Response(400, json={"object": "fault", "code": f"k{SECRET}", "status": 400, "message": SECRET}),
        id="medable-code-echoes-the-key",
    ),
]


def everything_recorded(telemetry: Telemetry) -> str:
    texts = []
    for span in telemetry.spans():
        texts += [span.name, repr(dict(span.attributes or {})), str(span.status.description)]
        texts += [f"{event.name} {dict(event.attributes or {})}" for event in span.events]
    texts += [repr(telemetry.points())]
    return "\n".join(texts)


@pytest.mark.anyio
@pytest.mark.parametrize(("vendor", "failure"), FAILURES)
async def test_no_query_header_or_body_value_reaches_a_span_or_a_metric(
    telemetry: Telemetry, mode: str, vendor: str, failure: httpx.Response
) -> None:
    via = transport(answers(httpx.Response(503), failure), vendor=vendor)
    with pytest.raises(errors.ApiError):
        await send(
            mode,
            via,
            url=f"https://api.{vendor}.test/v1/players?api_key={SECRET}&team=blue",
            headers={"Authorization": f"Bearer {SECRET}", "X-Note": SECRET},
        )
    recorded = everything_recorded(telemetry)
    assert f"https://api.{vendor}.test/v1/players?api_key=REDACTED&team=REDACTED" in recorded
    assert "resilient_client.code" in recorded
    assert SECRET not in recorded
    assert "blue" not in recorded


SAFE_URLS = [
    pytest.param("https://u:p@h.test/a?k=v#frag", "https://h.test/a?k=REDACTED", id="userinfo-and-fragment"),
    pytest.param("http://[::1]:8080/p?a=1&a=2&b=", "http://[::1]:8080/p?a=REDACTED&a=REDACTED&b=", id="ipv6"),
    pytest.param("https://h.test/a%20b/?flag", "https://h.test/a%20b/?flag=", id="encoded-path-bare-key"),
    pytest.param("https://h.test", "https://h.test/", id="no-path"),
]


@pytest.mark.parametrize(("url", "expected"), SAFE_URLS)
def test_url_full_keeps_no_userinfo_and_no_query_value(url: str, expected: str) -> None:
    assert safe_url(httpx.URL(url)) == expected


# -- switching it on and off -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_uninstrument_stops_every_emission_and_costs_nothing_after(
    telemetry: Telemetry, mode: str
) -> None:
    via = transport(answers(*[httpx.Response(503), httpx.Response(200, json={})] * 2))
    await send(mode, via)
    spans, points = len(telemetry.spans()), telemetry.points()
    assert spans == 3

    otel.uninstrument()
    assert not otel.is_instrumented()
    await send(mode, via)
    assert len(telemetry.spans()) == spans
    assert telemetry.points() == points
    # The success path is as it was: no hook left listening to calls or attempt starts.
    assert via.hooks.call_start == via.hooks.attempt_start == via.hooks.call_end == ()


@pytest.mark.anyio
async def test_instrument_reaches_transports_built_before_it(mode: str) -> None:
    via = transport(answers(httpx.Response(200, json={})))
    assert via.hooks.call_start == ()
    telemetry = Telemetry()
    otel.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    try:
        await send(mode, via)
    finally:
        otel.uninstrument()
    assert len(telemetry.spans()) == 2


@pytest.mark.anyio
async def test_instrument_again_moves_to_the_new_providers(telemetry: Telemetry, mode: str) -> None:
    other = Telemetry()
    otel.instrument(tracer_provider=other.tracer_provider, meter_provider=other.meter_provider)
    await send(mode, transport(answers(httpx.Response(200, json={}))))
    assert telemetry.spans() == []
    assert len(other.spans()) == 2


@pytest.mark.anyio
async def test_uninstrument_mid_call_lets_that_call_end_its_spans(telemetry: Telemetry, mode: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        otel.uninstrument()
        return httpx.Response(200, json={})

    via = transport(handler)
    await send(mode, via)
    # Its attempt span was ended and detached, not left current in this thread or task.
    assert trace.get_current_span() is trace.INVALID_SPAN
    assert len(telemetry.spans()) == 2
    assert via.hooks.call_start == ()


@pytest.mark.anyio
async def test_a_hook_of_one_transport_needs_no_instrument(mode: str) -> None:
    telemetry = Telemetry()
    hook = OpenTelemetryHook(telemetry.tracer_provider, telemetry.meter_provider)
    via = transport(answers(httpx.Response(200, json={})), hooks=[hook])
    await send(mode, via)
    assert len(telemetry.spans()) == 2
    assert not otel.is_instrumented()
