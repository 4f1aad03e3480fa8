"""The circuit breaker through the transport and the vendor clients: what opens it, what an open
circuit sends (nothing), how it is probed, what counts, and who shares a circuit."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pipeline_kit import NO_BUDGET, OK, URL, Caller, Recorder, Vendor, policy, run_threads, transport

import resilient_client as rc
from resilient_client.testing import FakeClock, fault_response

pytestmark = pytest.mark.anyio

DOWN = httpx.Response(503)
BREAK, LONGEST = 10.0, 40.0
#: Opens after 4 failed attempts out of at least 4; one attempt per call, so calls are attempts.
SMALL = rc.BreakerSettings(
    minimum_throughput=4, failure_ratio=0.5, break_duration=BREAK, max_break_duration=LONGEST
)
ONE_TRY = {"max_attempts": 1}


def small(base: rc.RetryPolicy | str | None = None, **tables: Any) -> rc.RetryPolicy:
    tables.setdefault("breaker", SMALL)
    tables.setdefault("budget", NO_BUDGET)
    tables.setdefault("retry", ONE_TRY)
    return policy(base, **tables)


async def open_circuit(client: Caller, calls: int = 4) -> None:
    for _ in range(calls):
        with pytest.raises(rc.errors.ServiceUnavailableError):
            await client.get()


async def test_failures_open_the_circuit_and_an_open_circuit_sends_nothing(
    connect: Callable[[Any], Caller],
) -> None:
    clock = FakeClock()
    vendor = Vendor(clock, DOWN)
    resilient = transport(vendor, policy=small())
    client = connect(resilient)
    await open_circuit(client, 3)
    assert resilient.breaker.state == "closed"  # 3 < minimum_throughput
    await open_circuit(client, 1)
    assert resilient.breaker.state == "open"
    clock.sleep(3.0)
    with pytest.raises(rc.errors.CircuitOpenError) as caught:
        await client.get()
    assert vendor.sent == 4  # the server saw nothing of the refused call
    assert caught.value.retry_after == pytest.approx(BREAK - 3.0)
    assert caught.value.vendor == "hyper"
    assert isinstance(caught.value, httpx.HTTPError)


async def test_below_the_failure_ratio_the_circuit_stays_closed(connect: Callable[[Any], Caller]) -> None:
    # Failures and successes alternate: from the 4th attempt on, at most 3 in 5 failed.
    for ratio, state in ((0.7, "closed"), (0.6, "open")):
        vendor = Vendor(FakeClock(), *[DOWN, OK] * 10)
        settings = rc.BreakerSettings(minimum_throughput=4, failure_ratio=ratio)
        resilient = transport(vendor, policy=small(breaker=settings))
        client = connect(resilient)
        for _ in range(10):
            with contextlib.suppress(rc.errors.ServiceUnavailableError, rc.errors.CircuitOpenError):
                await client.get()
        assert resilient.breaker.state == state, ratio
        assert vendor.sent == (10 if state == "closed" else 5)


async def test_after_the_break_one_probe_goes_and_its_success_closes(
    connect: Callable[[Any], Caller],
) -> None:
    clock = FakeClock()
    vendor = Vendor(clock, DOWN, DOWN, DOWN, DOWN, OK)
    resilient = transport(vendor, policy=small())
    client = connect(resilient)
    await open_circuit(client)
    clock.sleep(BREAK)
    assert (await client.get()).status_code == 200
    assert vendor.sent == 5
    assert resilient.breaker.state == "closed"
    for _ in range(5):
        await client.get()
    assert vendor.sent == 10


async def test_failed_probes_reopen_it_for_twice_as_long_up_to_the_maximum(
    connect: Callable[[Any], Caller],
) -> None:
    clock = FakeClock()
    vendor = Vendor(clock, DOWN)
    resilient = transport(vendor, policy=small())
    client = connect(resilient)
    await open_circuit(client)
    breaks = []
    for _ in range(4):
        with pytest.raises(rc.errors.CircuitOpenError) as caught:
            await client.get()
        breaks.append(caught.value.retry_after)
        clock.sleep(caught.value.retry_after or 0.0)
        with pytest.raises(rc.errors.ServiceUnavailableError):
            await client.get()  # the probe, failing
    assert breaks == [BREAK, 2 * BREAK, 4 * BREAK, LONGEST]
    assert vendor.sent == 4 + 4


async def test_a_probe_in_flight_is_half_open_and_refuses_the_others(
    connect: Callable[[Any], Caller],
) -> None:
    clock = FakeClock()
    seen: list[str] = []
    refused: list[BaseException] = []
    holder: list[rc.ResilientTransport] = []

    def vendor_script(request: httpx.Request) -> httpx.Response:
        if len(vendor.requests) <= 4:
            return DOWN
        # While the probe is at the server: the circuit is half-open and lets no one else through.
        seen.append(holder[0].breaker.state)
        with httpx.Client(transport=holder[0]) as other:
            try:
                other.get(URL)
            except rc.errors.CircuitOpenError as error:
                refused.append(error)
        return OK

    vendor = Vendor(clock, script=vendor_script)
    holder.append(transport(vendor, policy=small()))
    client = connect(holder[0])
    await open_circuit(client)
    clock.sleep(BREAK)
    assert (await client.get()).status_code == 200
    assert seen == ["half_open"]
    assert len(refused) == 1 and refused[0].retry_after is not None and refused[0].retry_after > 0
    assert vendor.sent == 5


@pytest.mark.parametrize("probes", [1, 3])
def test_32_threads_after_the_break_exactly_the_probes_reach_the_server(probes: int) -> None:
    clock = FakeClock()
    settings = rc.BreakerSettings(
        minimum_throughput=4, break_duration=BREAK, max_break_duration=LONGEST, half_open_probes=probes
    )
    refused = threading.Condition()
    refusals = 0
    arrived = []

    def script(request: httpx.Request) -> httpx.Response:
        if len(vendor.requests) <= 4:
            return DOWN
        arrived.append(request)
        # Held at the server until every other thread was refused: the probes overlap them all.
        with refused:
            assert refused.wait_for(lambda: refusals == 32 - probes, timeout=10), "others not refused"
        return OK

    vendor = Vendor(clock, script=script)
    shared = transport(vendor, policy=small(breaker=settings))
    with httpx.Client(transport=shared) as client:
        for _ in range(4):
            with pytest.raises(rc.errors.ServiceUnavailableError):
                client.get(URL)
    clock.sleep(BREAK)

    def call(_: int) -> None:
        nonlocal refusals
        with httpx.Client(transport=shared) as client:
            try:
                client.get(URL)
            except rc.errors.CircuitOpenError:
                with refused:
                    refusals += 1
                    refused.notify_all()

    assert run_threads(32, call) == []
    assert len(arrived) == probes
    assert refusals == 32 - probes
    assert shared.breaker.state == "closed"


OPENS_IT = [
    pytest.param(httpx.Response(500), rc.errors.ServerError, id="500-server_error"),
    pytest.param(httpx.Response(503), rc.errors.ServiceUnavailableError, id="503-service_unavailable"),
    pytest.param(httpx.Response(408), rc.errors.RequestTimeoutError, id="408-request_timeout"),
    pytest.param(httpx.ConnectError("refused"), httpx.ConnectError, id="connect-error"),
    pytest.param(httpx.ReadTimeout("slow"), httpx.ReadTimeout, id="read-timeout"),
]
LEAVES_IT_CLOSED = [
    pytest.param(httpx.Response(429), rc.errors.RateLimitedError, id="429-rate_limited"),
    pytest.param(fault_response("hyper", 10), rc.errors.ResourceLockedError, id="hyper10-locked"),
    pytest.param(httpx.Response(423), rc.errors.ResourceLockedError, id="423-locked"),
    pytest.param(httpx.Response(400), rc.errors.BadRequestError, id="400"),
    pytest.param(httpx.Response(404), rc.errors.NotFoundError, id="404"),
    pytest.param(httpx.Response(409), rc.errors.ConflictError, id="409"),
    pytest.param(fault_response("hyper", 1), rc.errors.SoftFault, id="hyper1-soft-fault"),
    pytest.param(fault_response("hyper", 2), rc.errors.SoftFault, id="hyper2-soft-fault"),
    pytest.param(httpx.Response(501), rc.errors.NotImplementedApiError, id="501-not_implemented"),
]


@pytest.mark.parametrize(("answer", "error"), OPENS_IT)
async def test_what_opens_the_circuit(
    connect: Callable[[Any], Caller], answer: httpx.Response | Exception, error: type[Exception]
) -> None:
    vendor = Vendor(FakeClock(), answer)
    resilient = transport(vendor, policy=small())
    client = connect(resilient)
    for _ in range(4):
        with pytest.raises(error):
            await client.get()
    with pytest.raises(rc.errors.CircuitOpenError):
        await client.get()
    assert vendor.sent == 4


@pytest.mark.parametrize(("answer", "error"), LEAVES_IT_CLOSED)
async def test_what_leaves_the_circuit_closed(
    connect: Callable[[Any], Caller], answer: httpx.Response, error: type[Exception]
) -> None:
    vendor = Vendor(FakeClock(), answer)
    resilient = transport(vendor, policy=small(rate_limit=rc.RateLimitSettings(enabled=False)))
    client = connect(resilient)
    for _ in range(20):
        with pytest.raises(error):
            await client.get()
    assert vendor.sent == 20
    assert resilient.breaker.state == "closed"


HYPER_50 = fault_response("hyper", 50)


@pytest.mark.parametrize(
    ("codes", "opens"),
    [
        pytest.param(None, False, id="shipped-hyper-50-ignored"),
        pytest.param({"50": rc.CodeRule(breaker="failure")}, True, id="50-overridden-to-failure"),
    ],
)
async def test_hyper_50_storms_leave_the_shipped_circuit_closed_unless_overridden(
    connect: Callable[[Any], Caller], codes: dict[str, rc.CodeRule] | None, opens: bool
) -> None:
    shipped = rc.load_policy("hyper")
    assert shipped.codes["50"].breaker == "ignore"
    changed = {**shipped.codes, **codes} if codes else shipped.codes
    vendor = Vendor(FakeClock(), HYPER_50)
    resilient = transport(
        vendor, policy=small(shipped, codes=changed, rate_limit=rc.RateLimitSettings(enabled=False))
    )
    client = connect(resilient)
    for _ in range(20):
        try:
            await client.post(json={})
        except rc.errors.CircuitOpenError:
            break
        except rc.errors.Hyper50Error:
            pass
    assert resilient.breaker.state == ("open" if opens else "closed")
    assert vendor.sent == (4 if opens else 20)


async def test_a_failure_override_counts_a_code_its_category_would_not(
    connect: Callable[[Any], Caller],
) -> None:
    locked = policy("hyper").codes | {"10": rc.CodeRule(breaker="failure")}
    vendor = Vendor(FakeClock(), fault_response("hyper", 10))
    resilient = transport(
        vendor, policy=small("hyper", codes=locked, rate_limit=rc.RateLimitSettings(enabled=False))
    )
    client = connect(resilient)
    await _fail(client, rc.errors.ResourceLockedError, 4)
    with pytest.raises(rc.errors.CircuitOpenError):
        await client.post(json={})


async def _fail(client: Caller, error: type[Exception], times: int) -> None:
    for _ in range(times):
        with pytest.raises(error):
            await client.post(json={})


async def test_reset_closes_an_open_circuit_and_forgets_its_failures(
    connect: Callable[[Any], Caller],
) -> None:
    vendor = Vendor(FakeClock(), DOWN)
    resilient = transport(vendor, policy=small())
    client = connect(resilient)
    await open_circuit(client)
    assert resilient.breaker.state == "open"
    resilient.breaker.reset()
    assert resilient.breaker.state == "closed"
    # Sent again at once; and 3 more failures do not reopen it (4 old ones would have).
    await open_circuit(client, 3)
    assert vendor.sent == 7
    assert resilient.breaker.state == "closed"


def test_the_state_of_a_transport_that_called_nothing_is_closed() -> None:
    resilient = transport(Vendor(FakeClock()))
    assert resilient.breaker.state == "closed"
    resilient.breaker.reset()
    assert resilient.breaker.state == "closed"


async def test_each_host_has_its_own_circuit(connect: Callable[[Any], Caller]) -> None:
    vendor = Vendor(FakeClock(), script=lambda r: DOWN if r.url.host == "down.test" else OK)
    client = connect(transport(vendor, policy=small()))
    for _ in range(4):
        with pytest.raises(rc.errors.ServiceUnavailableError):
            await client.get("https://down.test/x")
    with pytest.raises(rc.errors.CircuitOpenError):
        await client.get("https://down.test/x")
    assert (await client.get("https://up.test/x")).status_code == 200


async def test_every_transition_reaches_a_hook(connect: Callable[[Any], Caller]) -> None:
    clock = FakeClock()
    recorder = Recorder()
    vendor = Vendor(clock, DOWN, DOWN, DOWN, DOWN, DOWN, OK)
    client = connect(transport(vendor, policy=small(), hooks=[recorder]))
    await open_circuit(client)
    clock.sleep(BREAK)
    with pytest.raises(rc.errors.ServiceUnavailableError):
        await client.get()  # a failed probe
    clock.sleep(2 * BREAK)
    await client.get()  # a probe that closes it
    assert recorder.of("breaker") == [
        ("open", "hyper", "hyper.test"),
        ("half_open", "hyper", "hyper.test"),
        ("open", "hyper", "hyper.test"),
        ("half_open", "hyper", "hyper.test"),
        ("closed", "hyper", "hyper.test"),
    ]


# -- a vendor client: one circuit for its mounts and proxies ---------------------------------------


def hyper_client(clock: FakeClock, **kwargs: Any) -> rc.HyperClient:
    return rc.HyperClient(
        base_url="https://hyper.test",
        token="tok",
        policy=small(),
        transport_options=clock.options(),
        **kwargs,
    )


def test_a_clients_mounts_share_one_circuit() -> None:
    clock = FakeClock()
    plain = Vendor(clock, DOWN)
    secure = Vendor(clock, OK)
    with hyper_client(
        clock, transport=httpx.MockTransport(secure), mounts={"http://": httpx.MockTransport(plain)}
    ) as client:
        for _ in range(4):
            with pytest.raises(rc.errors.ServiceUnavailableError):
                client.get("http://hyper.test/x")
        with pytest.raises(rc.errors.CircuitOpenError):
            client.get("https://hyper.test/x")  # another transport, the same host: one circuit
        assert client.resilient_transport.breaker.state == "open"
    assert secure.sent == 0


def test_clients_given_one_store_share_one_circuit() -> None:
    clock = FakeClock()
    store = rc.MemoryState()
    down, up = Vendor(clock, DOWN), Vendor(clock, OK)
    with (
        hyper_client(clock, transport=httpx.MockTransport(down), state=store) as first,
        hyper_client(clock, transport=httpx.MockTransport(up), state=store) as second,
        hyper_client(clock, transport=httpx.MockTransport(up)) as third,
    ):
        for _ in range(4):
            with pytest.raises(rc.errors.ServiceUnavailableError):
                first.get("/x")
        with pytest.raises(rc.errors.CircuitOpenError):
            second.get("/x")
        assert third.get("/x").status_code == 200  # a store of its own: its own circuit
    assert up.sent == 1


@pytest.mark.anyio
async def test_an_async_clients_mounts_share_one_circuit() -> None:
    clock = FakeClock()
    plain = Vendor(clock, DOWN)
    secure = Vendor(clock, OK)
    async with rc.AsyncHyperClient(
        base_url="https://hyper.test",
        token="tok",
        policy=small(),
        transport_options=clock.options(),
        transport=httpx.MockTransport(secure),
        mounts={"http://": httpx.MockTransport(plain)},
    ) as client:
        for _ in range(4):
            with pytest.raises(rc.errors.ServiceUnavailableError):
                await client.get("http://hyper.test/x")
        with pytest.raises(rc.errors.CircuitOpenError):
            await client.get("https://hyper.test/x")
    assert secure.sent == 0


def test_a_clients_breaker_reports_and_resets_the_circuit_its_proxy_or_mount_opened() -> None:
    # Behind a proxy (proxy=, or HTTPS_PROXY in the environment) every call takes a mounted
    # transport, never client.resilient_transport: its breaker must still show and reset the circuit.
    clock = FakeClock()
    down = Vendor(clock, DOWN, DOWN, DOWN, DOWN, OK)
    with hyper_client(
        clock, transport=httpx.MockTransport(Vendor(clock)), mounts={"all://": httpx.MockTransport(down)}
    ) as client:
        for _ in range(4):
            with pytest.raises(rc.errors.ServiceUnavailableError):
                client.get("/x")
        with pytest.raises(rc.errors.CircuitOpenError):
            client.get("/x")
        breaker = client.resilient_transport.breaker
        assert breaker.state == "open"
        breaker.reset()
        assert breaker.state == "closed"
        assert client.get("/x").status_code == 200
    assert down.sent == 5
