"""The retry semantics of SPEC section 4, one table per rule, under every configuration of the pipeline.

Each test runs under four configurations (the ``config`` fixture), sync and async, and all of them
must give the same answer: what the strategies, the tracing or the store are does not change how a
call is retried.

- ``strategies-off``: the vendor's shipped policy with the retry budget (ratio 0), the breaker, the
  rate limiter and the guards off;
- ``shipped``: the vendor's shipped policy as it is;
- ``otel``: strategies off, with ``resilient_client.otel.instrument`` on in-memory providers (and
  the spans checked to have been made);
- ``redis``: the shipped policy over ``RedisState`` on the suite's own redis-server (refusing, not
  falling back, if Redis does not answer), with ``rate_limit.pause_on_retry_after`` off: a shared
  pause is timed by the Redis server's clock (SPEC section 9), which a ``FakeClock`` does not move,
  so a test could never see one end without waiting for real.

Rules: (a) ``retry.attempt_timeout`` and the time left to the deadline reach the first attempt's
``request.extensions["timeout"]`` whatever the inner transport; (b) a one-shot body is never sent
twice, against ``MockTransport`` and against a real loopback server alike; (c) the total deadline
covers attempts and waits; (d) a server's Retry-After is waited exactly, never less, and one above
``retry.max_retry_after`` or past the deadline raises at once; (e) method safety. Time is a
``FakeClock``: nothing sleeps for real.

Before the one path (issue 17), the strategies-off cells of (a), (b) against a mock and (c) failed:
the transport's fast lane sent the first attempt with the client's timeouts and judged a one-shot
body after a mock had read it. Every cell now agrees.
"""

from __future__ import annotations

import email.utils
import io
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import attrs
import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import resilient_client as rc
from resilient_client import errors, otel
from resilient_client.simulator import Reply, Simulator, serve
from resilient_client.testing import FakeClock, fault_response

DRIVERS = [pytest.param("sync", id="sync"), pytest.param("async", id="async")]
OK = {
    "usta": {"id": 1},
    "hyper": {"ResponseCode": 0, "ResponseMsgEng": "Success"},
    "medable": {"object": "list"},
}


# -- configurations ---------------------------------------------------------------------------------


def strategies_off(policy: rc.RetryPolicy) -> rc.RetryPolicy:
    return attrs.evolve(
        policy,
        budget=attrs.evolve(policy.budget, ratio=0.0),
        breaker=attrs.evolve(policy.breaker, enabled=False),
        rate_limit=attrs.evolve(policy.rate_limit, enabled=False),
        guards={},
    )


class Telemetry:
    """In-memory tracer and meter providers, handed to ``otel.instrument`` (none set globally)."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])

    def call_spans(self) -> int:
        return sum(
            1
            for span in self.exporter.get_finished_spans()
            if span.instrumentation_scope is not None
            and span.instrumentation_scope.name == "resilient_client"
        )

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@attrs.define
class Config:
    """One configuration: builds the transports of a test, and runs its calls in either driver."""

    name: str
    strategies: bool
    telemetry: Telemetry | None = None
    redis_url: str | None = None
    stores: list[rc.RedisState] = attrs.Factory(list)

    def policy(self, vendor: str, **retry: Any) -> rc.RetryPolicy:
        shipped = rc.load_policy(vendor)
        policy = shipped if self.strategies else strategies_off(shipped)
        if self.redis_url is not None:
            policy = attrs.evolve(
                policy, rate_limit=attrs.evolve(policy.rate_limit, pause_on_retry_after=False)
            )
        return attrs.evolve(policy, retry=attrs.evolve(policy.retry, **retry)) if retry else policy

    def transport(
        self,
        vendor: str,
        clock: FakeClock,
        inner: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        **retry: Any,
    ) -> rc.ResilientTransport:
        state: rc.RedisState | None = None
        if self.redis_url is not None:
            # Generous timeout and "raise": a slow machine must not turn this into in-process state.
            state = rc.RedisState(self.redis_url, timeout=5.0, on_unavailable="raise")
            self.stores.append(state)
        return rc.ResilientTransport(
            vendor, policy=self.policy(vendor, **retry), transport=inner, state=state, **clock.options()
        )

    def call(
        self,
        driver: str,
        transport: rc.ResilientTransport,
        method: str,
        url: str,
        *,
        timeout: float | None = 60.0,
        **request: Any,
    ) -> httpx.Response:
        """Send one request through an ``httpx.Client`` (sync) or ``httpx.AsyncClient`` (async)."""
        if driver == "sync":
            with httpx.Client(transport=transport, timeout=timeout) as client:
                response = client.request(method, url, **request)
                response.read()
                return response

        async def send() -> httpx.Response:
            try:
                async with httpx.AsyncClient(transport=transport, timeout=timeout) as client:
                    response = await client.request(method, url, **request)
                    await response.aread()
                    return response
            finally:
                for store in self.stores:  # its async connections belong to this event loop
                    await store.aclose()

        return anyio.run(send, backend="asyncio")

    def close(self) -> None:
        for store in self.stores:
            store.close()
        if self.telemetry is not None:
            otel.uninstrument()
            self.telemetry.shutdown()


CONFIGS = [
    pytest.param("strategies-off", id="strategies-off"),
    pytest.param("shipped", id="shipped"),
    pytest.param("otel", id="otel"),
    pytest.param("redis", id="redis"),
]


#: Cells that fail on main today: (test, configuration) -> (the case ids that fail, why).
@pytest.fixture(params=CONFIGS)
def config(request: pytest.FixtureRequest) -> Iterator[Config]:
    name = request.param
    if name == "redis":
        built = Config(name, strategies=True, redis_url=request.getfixturevalue("redis_url"))
    elif name == "otel":
        telemetry = Telemetry()
        otel.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
        built = Config(name, strategies=False, telemetry=telemetry)
    else:
        built = Config(name, strategies=name == "shipped")
    try:
        yield built
        if built.telemetry is not None:
            assert built.telemetry.call_spans() > 0, "OpenTelemetry was on, yet the calls made no span"
    finally:
        built.close()


# -- an in-memory server --------------------------------------------------------------------------

Answer = httpx.Response | Exception


class Server:
    """A ``MockTransport`` handler: answers in order (the last one repeats), records each request's
    timeouts and the fake time it arrived; an attempt takes ``takes`` fake seconds, and one slower
    than its read timeout is a ``ReadTimeout`` after that timeout (what httpx's own transport does)."""

    def __init__(self, clock: FakeClock, *answers: Answer, takes: float = 0.0) -> None:
        self.clock = clock
        self.answers = answers
        self.takes = takes
        self.timeouts: list[dict[str, float | None]] = []
        self.times: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.timeouts.append(dict(request.extensions.get("timeout", {})))
        self.times.append(self.clock.now)
        read = self.timeouts[-1].get("read")
        if read is not None and self.takes > read:
            self.clock.now += read
            raise httpx.ReadTimeout("the server took longer than the read timeout")
        self.clock.now += self.takes
        answer = self.answers[min(len(self.times), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    @property
    def requests(self) -> int:
        return len(self.times)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def ok(vendor: str) -> httpx.Response:
    return httpx.Response(200, json=OK[vendor])


# -- (a) timeouts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    ("retry", "client_timeout", "expected"),
    [
        pytest.param({"attempt_timeout": 2.5}, None, 2.5, id="attempt-timeout-over-no-client-timeout"),
        pytest.param({"attempt_timeout": 2.5}, 60.0, 2.5, id="attempt-timeout-under-client-timeout"),
        pytest.param({"total_timeout": 10.0}, 60.0, 10.0, id="time-left-under-client-timeout"),
        pytest.param(
            {"total_timeout": 10.0, "attempt_timeout": 20.0}, None, 10.0, id="time-left-under-attempt"
        ),
        pytest.param({"total_timeout": 10.0, "attempt_timeout": 2.5}, 1.0, 1.0, id="client-timeout-smallest"),
    ],
)
def test_the_first_attempt_gets_the_attempt_timeout_and_the_time_left(
    config: Config, driver: str, retry: dict[str, float], client_timeout: float | None, expected: float
) -> None:
    clock = FakeClock()
    server = Server(clock, ok("usta"))
    transport = config.transport("usta", clock, server.transport(), **retry)
    config.call(driver, transport, "GET", "https://usta.test/v1/players", timeout=client_timeout)
    assert server.timeouts[0] == {"connect": expected, "read": expected, "write": expected, "pool": expected}


# -- (b) one-shot bodies --------------------------------------------------------------------------


def generator_body(driver: str) -> dict[str, Any]:
    if driver == "sync":

        def chunks() -> Iterator[bytes]:
            yield b'{"name": "a"}'

        return {"content": chunks()}

    async def achunks() -> AsyncIterator[bytes]:
        yield b'{"name": "a"}'

    return {"content": achunks()}


def file_object_body(driver: str) -> dict[str, Any]:
    assert driver == "sync"  # httpx's AsyncClient takes no sync file object
    return {"content": io.BytesIO(b'{"name": "a"}')}


def multipart_upload(driver: str) -> dict[str, Any]:
    return {"files": {"upload": ("report.csv", io.BytesIO(b"a,b\n1,2\n"), "text/csv")}}


def bytes_body(driver: str) -> dict[str, Any]:
    return {"content": b'{"name": "a"}'}


Body = Callable[[str], dict[str, Any]]
BODY_CASES = [
    pytest.param(generator_body, "sync", 1, id="generator-sync"),
    pytest.param(generator_body, "async", 1, id="generator-async"),
    pytest.param(file_object_body, "sync", 1, id="file-object-sync"),
    pytest.param(multipart_upload, "sync", 1, id="multipart-sync"),
    pytest.param(multipart_upload, "async", 1, id="multipart-async"),
    # The control: a body that can be sent again is, so the 503 above is one the policy retries.
    pytest.param(bytes_body, "sync", 2, id="bytes-retried-sync"),
    pytest.param(bytes_body, "async", 2, id="bytes-retried-async"),
]


def check_one_shot_outcome(outcome: httpx.Response | Exception, sent: int, expected: int) -> None:
    assert sent == expected
    if expected == 1:
        assert isinstance(outcome, errors.ServiceUnavailableError)
        assert outcome.attempts == 1
    else:
        assert isinstance(outcome, httpx.Response)
        assert outcome.status_code == 200
        assert outcome.extensions[rc.ATTEMPTS_EXTENSION] == 2


def outcome_of(call: Callable[[], httpx.Response]) -> httpx.Response | Exception:
    try:
        return call()
    except errors.ServiceUnavailableError as error:
        return error


@pytest.mark.parametrize(("body", "driver", "sent"), BODY_CASES)
def test_a_one_shot_body_is_sent_once_against_a_mock(
    config: Config, body: Body, driver: str, sent: int
) -> None:
    clock = FakeClock()
    server = Server(clock, httpx.Response(503), ok("usta"))
    transport = config.transport("usta", clock, server.transport())
    outcome = outcome_of(
        lambda: config.call(driver, transport, "PUT", "https://usta.test/v1/upload", **body(driver))
    )
    check_one_shot_outcome(outcome, server.requests, sent)


@pytest.fixture(scope="module")
def loopback() -> Iterator[tuple[Simulator, str]]:
    simulator = Simulator()
    with serve(simulator) as base:
        yield simulator, base


@pytest.mark.parametrize(("body", "driver", "sent"), BODY_CASES)
def test_a_one_shot_body_is_sent_once_against_a_real_server(
    config: Config, loopback: tuple[Simulator, str], body: Body, driver: str, sent: int
) -> None:
    simulator, base = loopback
    simulator.reset()
    simulator.script("usta", "/v1/upload", [Reply(503)])
    transport = config.transport("usta", FakeClock())
    outcome = outcome_of(
        lambda: config.call(driver, transport, "PUT", base + "/usta/v1/upload", **body(driver))
    )
    check_one_shot_outcome(outcome, simulator.requests["usta", "/v1/upload"], sent)


# -- (c) the total deadline -----------------------------------------------------------------------

#: Waits of exactly 1 s (no jitter), many attempts: only the 10 s deadline ends the call.
DEADLINE = {"total_timeout": 10.0, "max_attempts": 50, "jitter": "none", "initial_wait": 1.0, "max_wait": 1.0}


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    ("answer", "takes", "error"),
    [
        pytest.param(
            httpx.Response(503), 3.0, (errors.ServiceUnavailableError, httpx.ReadTimeout), id="503s"
        ),
        pytest.param(httpx.Response(503), 0.0, (errors.ServiceUnavailableError,), id="fast-503s"),
        pytest.param(httpx.Response(200), 60.0, (httpx.ReadTimeout,), id="server-slower-than-deadline"),
    ],
)
def test_the_total_deadline_covers_attempts_and_waits(
    config: Config, driver: str, answer: httpx.Response, takes: float, error: tuple[type[Exception], ...]
) -> None:
    clock = FakeClock()
    start = clock.now
    server = Server(clock, answer, takes=takes)
    transport = config.transport("usta", clock, server.transport(), **DEADLINE)
    with pytest.raises(error):
        config.call(driver, transport, "GET", "https://usta.test/v1/players")
    assert clock.now - start <= DEADLINE["total_timeout"]
    assert all(sent < start + DEADLINE["total_timeout"] for sent in server.times)
    reads = [timeouts["read"] for timeouts in server.timeouts]
    assert all(
        read is not None and read <= start + 10.0 - sent
        for read, sent in zip(reads, server.times, strict=True)
    )


# -- (d) Retry-After ------------------------------------------------------------------------------


def http_date(clock: FakeClock, seconds_ahead: float) -> str:
    return email.utils.formatdate(clock.wall() + seconds_ahead, usegmt=True)


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    ("vendor", "first", "asked"),
    [
        pytest.param("usta", lambda clock: httpx.Response(429, headers={"Retry-After": "7"}), 7.0, id="usta-429-seconds"),
        pytest.param("usta", lambda clock: httpx.Response(503, headers={"Retry-After": "4.9"}), 4.9, id="usta-503-fraction"),
        pytest.param(
            "usta", lambda clock: httpx.Response(503, headers={"Retry-After": http_date(clock, 12)}), 12.0, id="usta-http-date"
        ),
        pytest.param("medable", lambda clock: fault_response("medable", "kThrottled", retry_after=7), 7.0, id="medable-throttled"),
        pytest.param("hyper", lambda clock: httpx.Response(429, headers={"Retry-After": "5"}), 5.0, id="hyper-gateway-429"),
    ],
)  # fmt: skip
def test_retry_after_is_waited_exactly(
    config: Config, driver: str, vendor: str, first: Callable[[FakeClock], httpx.Response], asked: float
) -> None:
    clock = FakeClock()
    server = Server(clock, first(clock), ok(vendor))
    transport = config.transport(vendor, clock, server.transport())
    response = config.call(driver, transport, "POST", f"https://{vendor}.test/v1/items", json={})
    assert response.extensions[rc.ATTEMPTS_EXTENSION] == 2
    assert sum(clock.sleeps) == pytest.approx(asked)
    assert server.times[1] - server.times[0] >= asked - 1e-9  # FakeClock sums floats


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    ("vendor", "retry_after", "retry"),
    [
        pytest.param("usta", "3600", {}, id="over-max-retry-after"),
        pytest.param("usta", "20", {"max_retry_after": 10.0}, id="over-a-lowered-cap"),
        pytest.param("usta", "20", {"total_timeout": 10.0}, id="past-the-deadline"),
        pytest.param("hyper", "120", {}, id="hyper-over-its-cap"),
    ],
)
def test_a_retry_after_too_long_raises_at_once(
    config: Config, driver: str, vendor: str, retry_after: str, retry: dict[str, float]
) -> None:
    clock = FakeClock()
    server = Server(clock, httpx.Response(429, headers={"Retry-After": retry_after}), ok(vendor))
    transport = config.transport(vendor, clock, server.transport(), **retry)
    with pytest.raises(errors.RateLimitedError) as caught:
        config.call(driver, transport, "GET", f"https://{vendor}.test/v1/items")
    assert caught.value.retry_after == float(retry_after)
    assert caught.value.attempts == 1
    assert server.requests == 1
    assert clock.sleeps == []


# -- (e) method safety ----------------------------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    ("method", "status", "sent", "error"),
    [
        pytest.param("POST", 500, 1, errors.ServerError, id="POST-500-not-retried"),
        pytest.param("POST", 503, 2, None, id="POST-503-retried"),
        pytest.param("GET", 500, 2, None, id="GET-500-retried"),
        pytest.param("PUT", 500, 2, None, id="PUT-500-retried"),
        pytest.param("PATCH", 500, 1, errors.ServerError, id="PATCH-500-not-retried"),
    ],
)
def test_a_request_the_server_may_have_processed_is_retried_only_if_idempotent(
    config: Config, driver: str, method: str, status: int, sent: int, error: type[Exception] | None
) -> None:
    clock = FakeClock()
    server = Server(clock, httpx.Response(status), ok("usta"))
    transport = config.transport("usta", clock, server.transport())
    if error is None:
        response = config.call(driver, transport, method, "https://usta.test/v1/players", json={})
        assert response.extensions[rc.ATTEMPTS_EXTENSION] == sent
    else:
        with pytest.raises(error) as caught:
            config.call(driver, transport, method, "https://usta.test/v1/players", json={})
        assert getattr(caught.value, "attempts", None) == sent
    assert server.requests == sent
