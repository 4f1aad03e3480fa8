"""The retry loop inside the transport, sync and async, with injected time: nothing sleeps for real."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

import resilient_client as rc
from resilient_client.testing import FakeClock, fault_response, no_waits

Answer = httpx.Response | Exception


class Server:
    """Answers in order (the last one repeats), records requests; may take fake time per attempt."""

    def __init__(self, clock: FakeClock, *answers: Answer | Callable[[], Answer], takes: float = 0.0) -> None:
        self.clock = clock
        self.answers = answers
        self.takes = takes
        self.requests: list[httpx.Request] = []
        self.timeouts: list[dict[str, float]] = []
        self.times: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.timeouts.append(dict(request.extensions.get("timeout", {})))
        self.times.append(self.clock.now)
        read_timeout = self.timeouts[-1].get("read")
        if read_timeout is not None and self.takes > read_timeout:
            # What httpx does with a server slower than the (shrunk) read timeout.
            self.clock.now += read_timeout
            raise httpx.ReadTimeout("the server took too long")
        self.clock.now += self.takes
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if callable(answer) and not isinstance(answer, httpx.Response):
            answer = answer()
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


def transport(vendor: str, server: Server, **kwargs: Any) -> rc.ResilientTransport:
    return rc.ResilientTransport(
        vendor, transport=httpx.MockTransport(server), **server.clock.options(), **kwargs
    )


OK = httpx.Response(200, json={"ResponseCode": 0})


def test_transient_faults_are_retried_to_success() -> None:
    clock = FakeClock()
    server = Server(clock, httpx.Response(503), httpx.Response(503), OK)
    with httpx.Client(transport=transport("hyper", server)) as client:
        response = client.get("https://hyper.test/x")
    assert response.extensions[rc.ATTEMPTS_EXTENSION] == 3
    assert len(clock.sleeps) == 2


@pytest.mark.parametrize(
    ("method", "calls"),
    [pytest.param("POST", 1, id="POST-not-retried"), pytest.param("GET", 4, id="GET-retried")],
)
def test_a_server_error_is_retried_only_for_idempotent_methods(method: str, calls: int) -> None:
    server = Server(FakeClock(), httpx.Response(500))
    with (
        httpx.Client(transport=transport("usta", server)) as client,
        pytest.raises(rc.errors.ServerError) as caught,
    ):
        client.request(method, "https://usta.test/x", json={})
    assert len(server.requests) == calls
    assert caught.value.attempts == calls


def test_a_locked_resource_is_retried_for_a_post() -> None:
    server = Server(FakeClock(), fault_response("hyper", 10), OK)
    with httpx.Client(transport=transport("hyper", server)) as client:
        assert client.post("https://hyper.test/journal", json={}).extensions[rc.ATTEMPTS_EXTENSION] == 2


def test_retry_after_is_waited_exactly_never_less() -> None:
    clock = FakeClock()
    server = Server(clock, httpx.Response(429, headers={"Retry-After": "7"}), OK)
    with httpx.Client(transport=transport("medable", server)) as client:
        client.post("https://m.test/x", json={})
    assert clock.sleeps == [7.0]
    assert server.times[1] - server.times[0] >= 7.0


def test_retry_after_beyond_the_cap_raises_at_once_with_the_servers_value() -> None:
    clock = FakeClock()
    server = Server(clock, httpx.Response(429, headers={"Retry-After": "3600"}))
    with (
        httpx.Client(transport=transport("usta", server)) as client,
        pytest.raises(rc.errors.RateLimitedError) as caught,
    ):
        client.get("https://usta.test/x")
    assert caught.value.retry_after == 3600.0
    assert caught.value.attempts == 1
    assert clock.sleeps == []


def test_the_total_deadline_holds_and_attempt_timeouts_shrink() -> None:
    clock = FakeClock()
    policy = rc.RetryPolicy(
        retry=rc.RetrySettings(total_timeout=10.0, max_attempts=50, jitter="none", initial_wait=1.0)
    )
    server = Server(clock, httpx.Response(503), takes=3.0)
    start = clock.now
    with httpx.Client(transport=transport("hyper", server, policy=policy), timeout=60.0) as client:
        with pytest.raises(httpx.ReadTimeout) as caught:
            client.get("https://hyper.test/x")
    assert clock.now - start <= 10.0
    assert caught.value.attempts == len(server.requests) == 3  # type: ignore[attr-defined]
    reads = [t["read"] for t in server.timeouts]
    assert reads[0] == 10.0  # the client's 60 s shrunk to the time left
    assert reads[1] == pytest.approx(10.0 - 3.0 - 1.0)
    assert all(a > b for a, b in itertools.pairwise(reads))


def test_attempt_timeout_caps_each_attempt() -> None:
    policy = rc.RetryPolicy(retry=rc.RetrySettings(attempt_timeout=2.5))
    server = Server(FakeClock(), OK)
    with httpx.Client(transport=transport("hyper", server, policy=policy), timeout=None) as client:
        client.get("https://hyper.test/x")
    assert server.timeouts[0] == {"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5}


def test_the_last_typed_error_itself_is_raised_when_attempts_run_out() -> None:
    server = Server(FakeClock(), fault_response("medable", "kTooBusy"))
    with (
        httpx.Client(transport=transport("medable", server)) as client,
        pytest.raises(rc.errors.MedableTooBusyFault) as caught,
    ):
        client.post("https://m.test/x", json={})
    assert caught.value.attempts == 4
    assert type(caught.value).__name__ == "MedableTooBusyFault"


def test_a_connect_error_is_retried_for_a_post_and_reraised_with_its_attempts() -> None:
    server = Server(FakeClock(), httpx.ConnectError("refused"))
    with (
        httpx.Client(transport=transport("hyper", server)) as client,
        pytest.raises(httpx.ConnectError) as caught,
    ):
        client.post("https://hyper.test/x", json={})
    assert len(server.requests) == 4
    assert caught.value.attempts == 4  # type: ignore[attr-defined]
    assert any("4 attempt(s)" in note for note in caught.value.__notes__)


def test_a_read_timeout_after_a_post_is_not_retried() -> None:
    server = Server(FakeClock(), httpx.ReadTimeout("slow"), OK)
    with httpx.Client(transport=transport("hyper", server)) as client, pytest.raises(httpx.ReadTimeout):
        client.post("https://hyper.test/x", json={})
    assert len(server.requests) == 1


def test_a_one_shot_body_is_never_replayed() -> None:
    server = Server(FakeClock(), httpx.Response(503), OK)

    def body() -> Iterator[bytes]:
        yield b'{"a": 1}'

    with (
        httpx.Client(transport=transport("hyper", server)) as client,
        pytest.raises(rc.errors.ServiceUnavailableError) as caught,
    ):
        client.put("https://hyper.test/x", content=body())
    assert len(server.requests) == 1
    assert caught.value.attempts == 1


class ClosingStream(httpx.SyncByteStream):
    closed = 0

    def __iter__(self) -> Iterator[bytes]:
        yield b'{"ResponseCode": 10}'

    def close(self) -> None:
        ClosingStream.closed += 1


def test_discarded_responses_are_closed() -> None:
    ClosingStream.closed = 0
    answers = iter(
        [httpx.Response(423, stream=ClosingStream()), httpx.Response(423, stream=ClosingStream()), OK]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers)

    clock = FakeClock()
    with httpx.Client(
        transport=rc.ResilientTransport("hyper", transport=httpx.MockTransport(handler), **clock.options())
    ) as c:
        c.get("https://hyper.test/x")
    assert ClosingStream.closed == 2


def test_every_retry_is_logged_once_with_a_redacted_url(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="resilient_client")
    server = Server(FakeClock(), httpx.Response(503), httpx.Response(503), OK)
    with httpx.Client(transport=transport("hyper", server)) as client:
        client.get("https://hyper.test/x?token=sekrit-tok")
    lines = [r for r in caplog.records if r.name == "resilient_client" and r.levelno == logging.INFO]
    assert len(lines) == 2
    assert "attempt 1/4" in lines[0].getMessage()
    assert "service_unavailable" in lines[0].getMessage()
    assert "sekrit-tok" not in caplog.text


def test_on_retry_hook_receives_events() -> None:
    events: list[rc.RetryEvent] = []
    server = Server(FakeClock(), fault_response("hyper", 50), OK)
    with httpx.Client(transport=transport("hyper", server, on_retry=events.append)) as client:
        client.post("https://hyper.test/journal", json={})
    assert len(events) == 1
    event = events[0]
    assert (event.vendor, event.method, event.attempt, event.code, event.status) == (
        "hyper",
        "POST",
        1,
        50,
        503,
    )
    assert event.category == "service_unavailable"
    assert 0 <= event.wait <= 2.0  # hyper.toml: code 50 starts at 2 s, full jitter
    assert "service_unavailable" in event.cause


def test_testing_switch_turns_waits_off() -> None:
    slept: list[float] = []
    inner = Server(FakeClock(), httpx.Response(503), httpx.Response(429, headers={"Retry-After": "3"}), OK)
    real = rc.ResilientTransport("hyper", transport=httpx.MockTransport(inner), sleep=slept.append)
    with no_waits(), httpx.Client(transport=real) as client:
        assert rc.is_testing()
        assert client.get("https://hyper.test/x").extensions[rc.ATTEMPTS_EXTENSION] == 3
    assert slept == []
    assert not rc.is_testing()


def test_a_retry_budget_bounds_attempts_under_total_outage() -> None:
    # The breaker off: the budget alone bounds the load (with it on, the circuit opens first).
    policy = rc.RetryPolicy(
        budget=rc.BudgetSettings(ratio=0.2, burst=1.0), breaker=rc.BreakerSettings(enabled=False)
    )
    server = Server(FakeClock(), httpx.Response(503))
    requests = 200
    with httpx.Client(transport=transport("hyper", server, policy=policy)) as client:
        for _ in range(requests):
            with pytest.raises(rc.errors.ServiceUnavailableError):
                client.get("https://hyper.test/x")
    assert len(server.requests) / requests <= 1.2 + 1 / requests


# -- async -----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_async_retries_with_retry_after_and_an_async_hook() -> None:
    clock = FakeClock()
    events: list[rc.RetryEvent] = []

    async def hook(event: rc.RetryEvent) -> None:
        events.append(event)

    server = Server(clock, httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(503), OK)
    async with httpx.AsyncClient(transport=transport("hyper", server, on_retry=hook)) as client:
        response = await client.post("https://hyper.test/x", json={})
    assert response.extensions[rc.ATTEMPTS_EXTENSION] == 3
    assert clock.sleeps[0] == 2.0
    assert [e.attempt for e in events] == [1, 2]


@pytest.mark.anyio
async def test_async_post_server_error_not_retried_and_connect_error_is() -> None:
    server = Server(FakeClock(), httpx.Response(500))
    async with httpx.AsyncClient(transport=transport("usta", server)) as client:
        with pytest.raises(rc.errors.ServerError):
            await client.post("https://usta.test/x", json={})
    assert len(server.requests) == 1
    server = Server(FakeClock(), httpx.ConnectError("refused"), OK)
    async with httpx.AsyncClient(transport=transport("usta", server)) as client:
        assert (await client.post("https://usta.test/x", json={})).extensions[rc.ATTEMPTS_EXTENSION] == 2


@pytest.mark.anyio
async def test_async_deadline_and_exhaustion() -> None:
    clock = FakeClock()
    policy = rc.RetryPolicy(
        retry=rc.RetrySettings(total_timeout=5.0, jitter="none", initial_wait=1.0, max_attempts=20)
    )
    server = Server(clock, httpx.Response(503), takes=1.0)
    async with httpx.AsyncClient(transport=transport("hyper", server, policy=policy)) as client:
        with pytest.raises(rc.errors.ServiceUnavailableError) as caught:
            await client.get("https://hyper.test/x")
    assert clock.now - 1000.0 <= 5.0
    # 1 s attempt, 1 s wait, 1 s attempt: the next 2 s wait would reach the deadline.
    assert caught.value.attempts == len(server.requests) == 2


def test_an_async_hook_under_a_sync_client_is_logged_and_breaks_no_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A vendor client refuses it when built; a bare transport (one class for both kinds of client)
    # learns only at the first retry that nothing can await it: logged, as any failing hook.
    async def hook(event: rc.RetryEvent) -> None:
        return None

    server = Server(FakeClock(), httpx.Response(503), OK)
    with httpx.Client(transport=transport("hyper", server, on_retry=hook)) as client:
        assert client.get("https://hyper.test/x").status_code == 200
    assert any("hook raised TypeError" in r.getMessage() for r in caplog.records)


def test_a_transport_built_for_async_refuses_a_sync_client() -> None:
    class AsyncOnly(httpx.AsyncBaseTransport):
        pass

    with (
        httpx.Client(transport=rc.ResilientTransport("hyper", transport=AsyncOnly())) as client,
        pytest.raises(TypeError, match="cannot serve a sync"),
    ):
        client.get("https://hyper.test/x")


@pytest.mark.anyio
async def test_a_transport_built_for_sync_refuses_an_async_client() -> None:
    class SyncOnly(httpx.BaseTransport):
        pass

    async with httpx.AsyncClient(transport=rc.ResilientTransport("hyper", transport=SyncOnly())) as client:
        with pytest.raises(TypeError, match=r"cannot serve an httpx\.AsyncClient"):
            await client.get("https://hyper.test/x")


@pytest.mark.parametrize(
    ("vendor", "waited"),
    [
        pytest.param("medable", [4.0], id="medable-honours-it"),
        pytest.param("hyper", None, id="others-ignore-it"),
    ],
)
def test_x_rate_limit_reset_is_read_only_where_the_catalog_names_it(
    vendor: str, waited: list[float] | None
) -> None:
    clock = FakeClock()
    server = Server(clock, httpx.Response(429, headers={"X-Rate-Limit-Reset": "4"}), OK)
    with httpx.Client(transport=transport(vendor, server, random=lambda: 0.5)) as client:
        client.get("https://v.test/x")
    assert clock.sleeps == (waited or [0.25])  # hyper: backoff 0.5 s * jitter 0.5


# -- the deadline holds whatever happens between and inside attempts --------------------------------


def test_no_attempt_starts_after_the_deadline_passed_while_waiting() -> None:
    clock = FakeClock()
    server = Server(clock, httpx.Response(503, headers={"Retry-After": "4.9"}), OK)
    policy = rc.RetryPolicy(retry=rc.RetrySettings(total_timeout=5.0))

    def slow_hook(event: rc.RetryEvent) -> None:
        clock.now += 0.2  # a hook (or a late sleep) eats the margin the decision counted on

    with (
        httpx.Client(transport=transport("hyper", server, policy=policy, on_retry=slow_hook)) as client,
        pytest.raises(rc.errors.ServiceUnavailableError) as caught,
    ):
        client.get("https://hyper.test/x")
    assert len(server.requests) == 1
    assert caught.value.attempts == 1
    assert caught.value.retry_after == 4.9


@pytest.mark.anyio
async def test_async_no_attempt_starts_after_the_deadline() -> None:
    clock = FakeClock()
    server = Server(clock, httpx.Response(503, headers={"Retry-After": "4.9"}), OK)
    policy = rc.RetryPolicy(retry=rc.RetrySettings(total_timeout=5.0))

    async def slow_hook(event: rc.RetryEvent) -> None:
        clock.now += 0.2

    async with httpx.AsyncClient(
        transport=transport("hyper", server, policy=policy, on_retry=slow_hook)
    ) as c:
        with pytest.raises(rc.errors.ServiceUnavailableError):
            await c.get("https://hyper.test/x")
    assert len(server.requests) == 1


class TricklingStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that sends one byte per 0.1 s of fake time: every read is quick, the whole is not."""

    def __init__(self, clock: FakeClock, body: bytes) -> None:
        self.clock = clock
        self.body = body

    def __iter__(self) -> Iterator[bytes]:
        for byte in self.body:
            self.clock.now += 0.1
            yield bytes([byte])

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        for chunk in self:
            yield chunk


def trickling_transport(clock: FakeClock, declared: bool) -> rc.ResilientTransport:
    body = b'{"ResponseCode": 0, "Data": "' + b"x" * 100 + b'"}'
    headers = {"content-type": "application/json"}
    if declared:
        headers["content-length"] = str(len(body))

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=TricklingStream(clock, body), headers=headers)

    policy = rc.RetryPolicy(retry=rc.RetrySettings(total_timeout=1.0))
    return rc.ResilientTransport(
        "hyper", policy=policy, transport=httpx.MockTransport(handler), **clock.options()
    )


def past_the_deadline(declared: bool) -> float:
    """How long a trickling body is read past the deadline: one chunk when its length is known;
    without one, the chunk after it too (only that read tells whether the late chunk was the last,
    which is kept)."""
    return (0.1 if declared else 0.2) + 1e-9


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_body_that_trickles_in_is_cut_at_the_deadline(declared: bool) -> None:
    clock = FakeClock()
    start = clock.now
    with (
        httpx.Client(transport=trickling_transport(clock, declared)) as client,
        pytest.raises(httpx.ReadTimeout) as caught,
    ):
        client.get("https://hyper.test/x")
    assert clock.now - start <= 1.0 + past_the_deadline(declared)
    assert getattr(caught.value, "attempts", None) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_async_a_body_that_trickles_in_is_cut_at_the_deadline(declared: bool) -> None:
    clock = FakeClock()
    start = clock.now
    async with httpx.AsyncClient(transport=trickling_transport(clock, declared)) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get("https://hyper.test/x")
    assert clock.now - start <= 1.0 + past_the_deadline(declared)


def test_a_request_sent_again_starts_from_its_own_timeouts() -> None:
    server = Server(FakeClock(), httpx.Response(503), OK, takes=1.0)
    with httpx.Client(transport=transport("hyper", server), timeout=60.0) as client:
        request = client.build_request("GET", "https://hyper.test/x")
        client.send(request)
        assert server.timeouts[0]["read"] == pytest.approx(30.0)  # the 30 s total deadline
        assert server.timeouts[1]["read"] < 29.0  # shrunk for the second attempt
        assert request.extensions[rc.CALLER_TIMEOUT_EXTENSION]["read"] == 60.0
        client.send(request)
        assert server.timeouts[2]["read"] == pytest.approx(30.0)  # a fresh deadline, not a leftover


def test_the_shrunk_timeouts_stay_for_the_body_the_caller_reads() -> None:
    # httpcore reads the request's timeouts again while the caller reads a body passed through
    # unread (a download): the deadline covers that read too.
    download = httpx.Response(200, headers={"content-type": "application/octet-stream"}, content=b"x" * 10)
    server = Server(FakeClock(), download)
    policy = rc.RetryPolicy(retry=rc.RetrySettings(attempt_timeout=1.0))
    with httpx.Client(transport=transport("hyper", server, policy=policy), timeout=60.0) as client:
        response = client.get("https://hyper.test/file")
    assert response.request.extensions["timeout"]["read"] == 1.0
    assert response.request.extensions[rc.CALLER_TIMEOUT_EXTENSION]["read"] == 60.0


@pytest.mark.anyio
async def test_async_discarded_responses_are_closed_and_testing_switch_skips_waits() -> None:
    closed: list[bool] = []

    class Closing(httpx.AsyncByteStream):
        async def __aiter__(self):  # type: ignore[no-untyped-def]
            yield b"{}"

        async def aclose(self) -> None:
            closed.append(True)

    fresh_ok = httpx.Response(200, json={"ResponseCode": 0})
    answers = iter([httpx.Response(423, stream=Closing()), httpx.Response(423, stream=Closing()), fresh_ok])
    slept: list[float] = []

    async def recording_sleep(seconds: float) -> None:
        slept.append(seconds)

    real = rc.ResilientTransport(
        "hyper", transport=httpx.MockTransport(lambda r: next(answers)), async_sleep=recording_sleep
    )
    with no_waits():
        async with httpx.AsyncClient(transport=real) as client:
            response = await client.get("https://hyper.test/x")
    assert response.extensions[rc.ATTEMPTS_EXTENSION] == 3
    assert closed == [True, True]
    assert slept == []


def test_the_retry_budget_refills_as_requests_succeed() -> None:
    policy = rc.RetryPolicy(budget=rc.BudgetSettings(ratio=0.5, burst=1.0))
    server = Server(FakeClock(), httpx.Response(503))
    with httpx.Client(transport=transport("hyper", server, policy=policy)) as client:
        with pytest.raises(rc.errors.ServiceUnavailableError):
            client.get("https://hyper.test/x")  # spends the one token: 2 attempts
        assert len(server.requests) == 2
        with pytest.raises(rc.errors.ServiceUnavailableError):
            client.get("https://hyper.test/x")  # 0.5 tokens: no retry
        assert len(server.requests) == 3
        with pytest.raises(rc.errors.ServiceUnavailableError):
            client.get("https://hyper.test/x")  # refilled to 1.0 by two requests: a retry again
        assert len(server.requests) == 5


def test_classification_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="resilient_client")
    server = Server(FakeClock(), fault_response("hyper", 7))
    with httpx.Client(transport=transport("hyper", server)) as client, pytest.raises(rc.errors.Hyper7Error):
        client.post("https://hyper.test/x?api_key=sekrit-key", json={})
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert debug == ["hyper POST https://hyper.test/x?api_key=[REDACTED] -> validation (code 7, HTTP 400)"]


# -- the whole loop, property-tested with fake time ----------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

answers_strategy = st.lists(
    st.one_of(
        st.builds(
            lambda status, after: (status, None if after is None else f"{after:g}"),
            st.sampled_from([429, 503, 423]),
            st.one_of(st.none(), st.floats(0, 200, allow_nan=False)),
        ),
        st.tuples(st.sampled_from([500, 200, 404]), st.none()),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=1500, deadline=None)
@given(
    answers=answers_strategy,
    total=st.floats(0.5, 120),
    cap=st.floats(0, 90),
    max_wait=st.floats(0, 30),
    attempts=st.integers(1, 12),
    method=st.sampled_from(["GET", "POST"]),
)
def test_the_loop_never_waits_less_than_asked_more_than_capped_or_past_the_deadline(
    answers: list[tuple[int, str | None]],
    total: float,
    cap: float,
    max_wait: float,
    attempts: int,
    method: str,
) -> None:
    clock = FakeClock()
    policy = rc.RetryPolicy(
        retry=rc.RetrySettings(
            max_attempts=attempts, total_timeout=total, max_retry_after=cap, max_wait=max_wait
        )
    )
    asked: list[float | None] = []
    sent_at: list[float] = []
    start = clock.now

    def handler(request: httpx.Request) -> httpx.Response:
        sent_at.append(clock.now)
        status, after = answers[min(len(asked), len(answers) - 1)]
        asked.append(None if after is None else float(after))
        headers = {} if after is None else {"Retry-After": after}
        return httpx.Response(status, headers=headers, json={"ResponseCode": 0} if status == 200 else None)

    events: list[rc.RetryEvent] = []
    transport = rc.ResilientTransport(
        "hyper",
        policy=policy,
        transport=httpx.MockTransport(handler),
        on_retry=events.append,
        **clock.options(),
    )
    with httpx.Client(transport=transport) as client:
        try:
            response = client.request(method, "https://hyper.test/x")
            made = response.extensions[rc.ATTEMPTS_EXTENSION]
        except rc.errors.ApiError as error:
            made = error.attempts
    assert made == len(asked) <= attempts
    assert all(at < start + total for at in sent_at)  # no attempt starts at or past the deadline
    assert clock.now - start <= total + 1e-9  # and no wait runs past it
    assert sum(clock.sleeps) == pytest.approx(sum(e.wait for e in events))  # every wait was slept
    for event in events:
        wait, server_asked = event.wait, asked[event.attempt - 1]
        if server_asked:  # Retry-After: 0 is no server wait: the backoff applies (SPEC 4)
            assert server_asked <= wait <= cap  # never early, never beyond the cap
        else:
            assert 0 <= wait <= max_wait


def test_a_retry_the_budget_refuses_reaches_hooks_as_a_budget_rejection() -> None:
    events: list[rc.RejectionEvent] = []

    class Recorder(rc.Hook):
        def on_rejection(self, call: Any, event: rc.RejectionEvent) -> None:
            events.append(event)

    policy = rc.RetryPolicy(
        budget=rc.BudgetSettings(ratio=0.1, burst=1.0), breaker=rc.BreakerSettings(enabled=False)
    )
    server = Server(FakeClock(), httpx.Response(503))
    with httpx.Client(transport=transport("hyper", server, policy=policy, hooks=[Recorder()])) as client:
        for _ in range(2):
            with pytest.raises(rc.errors.ServiceUnavailableError) as caught:
                client.get("https://hyper.test/x?api_key=k3y")
    # The burst's one token paid the first call's retry; the second call's first retry was refused.
    assert caught.value.reason == "not retried: the retry budget is spent"
    assert [(e.strategy, e.attempt, e.reason) for e in events][-1] == (
        "budget",
        2,
        "the retry budget is spent",
    )
    assert all("k3y" not in e.url for e in events)


@pytest.mark.parametrize(
    ("takes", "cut_to"),
    [
        # 15 s total: 14 s left after the first attempt, more than the caller's 10 s timeouts.
        pytest.param(1.0, None, id="more-time-left-than-the-timeouts-keeps-them"),
        # 9 s left: each timeout is cut to it.
        pytest.param(6.0, 9.0, id="less-time-left-than-the-timeouts-cuts-them"),
    ],
)
@pytest.mark.parametrize("driver", ["sync", "async"])
def test_a_retry_cuts_the_callers_timeouts_only_when_less_time_is_left(
    takes: float, cut_to: float | None, driver: str
) -> None:
    server = Server(FakeClock(), httpx.Response(503), OK, takes=takes)
    policy = rc.RetryPolicy(retry=rc.RetrySettings(total_timeout=15.0))
    resilient = transport("hyper", server, policy=policy)
    with no_waits():
        if driver == "sync":
            with httpx.Client(transport=resilient, timeout=10.0) as client:
                request = client.build_request("GET", "https://hyper.test/x")
                client.send(request)
        else:

            async def send() -> httpx.Request:
                async with httpx.AsyncClient(transport=resilient, timeout=10.0) as client:
                    request = client.build_request("GET", "https://hyper.test/x")
                    await client.send(request)
                    return request

            import anyio

            request = anyio.run(send)
    assert len(server.timeouts) == 2
    assert server.timeouts[0] == dict.fromkeys(("connect", "read", "write", "pool"), 10.0)
    if cut_to is None:
        assert server.timeouts[1] == server.timeouts[0]
        assert rc.CALLER_TIMEOUT_EXTENSION not in request.extensions  # nothing was cut
    else:
        assert server.timeouts[1] == dict.fromkeys(
            ("connect", "read", "write", "pool"), pytest.approx(cut_to)
        )
        assert request.extensions[rc.CALLER_TIMEOUT_EXTENSION]["read"] == 10.0
