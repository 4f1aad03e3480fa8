"""The total deadline against a real loopback server that trickles its answer one byte at a time.

httpx's timeouts restart with every byte: without the deadline on every network operation, a
server trickling its headers holds a call as long as it likes. These tests overlap real I/O, so they
wait on real time (a few hundred ms each); the bar itself (<= 50 ms overrun) is measured by
``bench/reliability.py``, not here, where a loaded machine must not make a test fail.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpcore
import httpx
import pytest

import resilient_client as rc
from resilient_client import _deadline, _httpx_compat

DEADLINE = 0.3
BODY = b'{"ResponseCode": 0, "Data": "trickled"}'
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(BODY)
# Far below the seconds the whole answer takes to trickle in, far above any scheduling hiccup.
SLACK = 0.25


class TricklingServer:
    """A raw-socket HTTP/1.1 server on 127.0.0.1: answers every request with ``HEAD + BODY``, the
    bytes from ``trickle_from`` on one at a time, ``every`` seconds apart."""

    def __init__(self, trickle_from: int, every: float = 0.05) -> None:
        self.trickle_from = trickle_from
        self.every = every
        self.stopped = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/x"
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def serve(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self.answer, args=(connection,), daemon=True).start()

    def answer(self, connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError):
            request = b""
            while b"\r\n\r\n" not in request:
                request += connection.recv(4096)
            answer = HEAD + BODY
            connection.sendall(answer[: self.trickle_from])
            for index in range(self.trickle_from, len(answer)):
                connection.sendall(answer[index : index + 1])
                # real-sleep: the server must trickle its bytes in real time over a real socket
                if self.stopped.wait(self.every):
                    return

    def __enter__(self) -> TricklingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.listener.close()


PHASES = [
    pytest.param(0, id="status-line-and-headers"),
    pytest.param(len(HEAD) + 3, id="body"),
]


def policy() -> rc.RetryPolicy:
    return rc.RetryPolicy(retry=rc.RetrySettings(total_timeout=DEADLINE))


@pytest.fixture(params=PHASES)
def server(request: pytest.FixtureRequest) -> Iterator[TricklingServer]:
    with TricklingServer(trickle_from=request.param) as running:
        yield running


def check(outcome: object, elapsed: float) -> None:
    assert isinstance(outcome, httpx.ReadTimeout), outcome
    assert outcome.request is not None
    assert getattr(outcome, "attempts", None) == 1
    assert elapsed < DEADLINE + SLACK


def test_a_trickling_server_cannot_hold_a_sync_call_past_the_deadline(server: TricklingServer) -> None:
    with httpx.Client(transport=rc.ResilientTransport("hyper", policy=policy())) as client:
        start = time.monotonic()
        try:
            outcome: object = client.get(server.url)
        except httpx.HTTPError as error:
            outcome = error
        check(outcome, time.monotonic() - start)


@pytest.mark.anyio
async def test_a_trickling_server_cannot_hold_an_async_call_past_the_deadline(
    server: TricklingServer,
) -> None:
    async with httpx.AsyncClient(transport=rc.ResilientTransport("hyper", policy=policy())) as client:
        start = time.monotonic()
        try:
            outcome: object = await client.get(server.url)
        except httpx.HTTPError as error:
            outcome = error
        check(outcome, time.monotonic() - start)


@pytest.mark.parametrize("cls", [rc.HyperClient, rc.AsyncHyperClient])
def test_a_vendor_clients_own_transports_are_bounded_too(cls: Any) -> None:
    """The transports a vendor client builds (verify=, limits=, proxies) are httpx's: wrapped too."""
    with TricklingServer(trickle_from=0) as running:
        base_url = running.url.removesuffix("/x")
        start = time.monotonic()
        outcome: object

        async def call_async() -> object:
            async with cls(base_url=base_url, token="t", policy=policy(), verify=False) as client:
                return await client.get("/x")

        try:
            if cls is rc.HyperClient:
                with cls(base_url=base_url, token="t", policy=policy(), verify=False) as client:
                    outcome = client.get("/x")
            else:
                outcome = anyio.run(call_async)
        except httpx.HTTPError as error:
            outcome = error
        check(outcome, time.monotonic() - start)


def test_every_network_operation_waits_at_most_the_time_left() -> None:
    seen: list[float | None] = []

    class Stream(httpcore.NetworkStream):
        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            seen.append(timeout)
            return b""

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            seen.append(timeout)

    class Backend(httpcore.NetworkBackend):
        def connect_tcp(
            self, host: str, port: int, timeout: float | None = None, *args: Any, **kwargs: Any
        ) -> httpcore.NetworkStream:
            seen.append(timeout)
            return Stream()

    transport = httpx.HTTPTransport()
    _httpx_compat.set_network_backend(transport, Backend())
    backend: Any = _httpx_compat.network_backend(_deadline.bind(transport))
    now = [100.0]
    token = _deadline.current.set(_deadline.Deadline(101.0, lambda: now[0]))
    try:
        stream = backend.connect_tcp("127.0.0.1", 1, timeout=5.0)
        now[0] = 100.5
        stream.read(10, timeout=None)
        stream.write(b"x" * 200_000, timeout=0.2)  # in pieces, each bounded
        now[0] = 101.0
        with pytest.raises(httpcore.ReadTimeout):
            stream.read(10, timeout=5.0)
        with pytest.raises(httpcore.ConnectTimeout):
            backend.connect_tcp("127.0.0.1", 1, timeout=5.0)
    finally:
        _deadline.current.reset(token)
    assert seen == [1.0, 0.5, 0.2, 0.2, 0.2, 0.2]
    seen.clear()
    backend.connect_tcp("127.0.0.1", 1, timeout=5.0)  # outside an attempt: httpx's own timeouts
    assert seen == [5.0]


@pytest.mark.anyio
async def test_every_async_network_operation_waits_at_most_the_time_left() -> None:
    seen: list[float | None] = []

    class Stream(httpcore.AsyncNetworkStream):
        async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            seen.append(timeout)
            return b"data"

        async def write(self, buffer: bytes, timeout: float | None = None) -> None:
            if buffer:  # httpcore's own streams send nothing for b"", and wait for nothing
                seen.append(timeout)

    class Backend(httpcore.AsyncNetworkBackend):
        async def connect_tcp(
            self, host: str, port: int, timeout: float | None = None, *args: Any, **kwargs: Any
        ) -> httpcore.AsyncNetworkStream:
            seen.append(timeout)
            return Stream()

    transport = httpx.AsyncHTTPTransport()
    _httpx_compat.set_network_backend(transport, Backend())
    backend: Any = _httpx_compat.network_backend(_deadline.bind(transport))
    now = [100.0]
    token = _deadline.current.set(_deadline.Deadline(101.0, lambda: now[0]))
    try:
        stream = await backend.connect_tcp("127.0.0.1", 1, timeout=5.0)
        now[0] = 100.5
        assert await stream.read(10, timeout=None) == b"data"
        await stream.write(b"x" * 200_000, timeout=0.2)  # in pieces, each bounded
        await stream.write(b"head", timeout=None)
        now[0] = 101.0
        await stream.write(b"", timeout=5.0)  # httpcore's end of a message: nothing to wait for
        with pytest.raises(httpcore.ReadTimeout):
            await stream.read(10, timeout=5.0)
        with pytest.raises(httpcore.WriteTimeout):
            await stream.write(b"body", timeout=5.0)
        with pytest.raises(httpcore.ConnectTimeout):
            await backend.connect_tcp("127.0.0.1", 1, timeout=5.0)
    finally:
        _deadline.current.reset(token)
    assert seen == [1.0, 0.5, 0.2, 0.2, 0.2, 0.2, 0.5]
    seen.clear()
    await backend.connect_tcp("127.0.0.1", 1, timeout=5.0)  # outside an attempt: httpx's own timeouts
    assert seen == [5.0]


@pytest.mark.parametrize("transport_class", [httpx.HTTPTransport, httpx.AsyncHTTPTransport])
def test_httpx_transports_are_wrapped_once_and_others_left_alone(transport_class: Any) -> None:
    transport = transport_class(proxy="http://127.0.0.1:9")
    backend: Any = _httpx_compat.network_backend(_deadline.bind(_deadline.bind(transport)))
    assert type(backend).__module__ == "resilient_client._deadline"
    assert type(backend._backend).__module__.startswith("httpcore")
    mock = httpx.MockTransport(lambda r: httpx.Response(200))
    assert _deadline.bind(mock) is mock
    assert _deadline.bind(None) is None


# -- without the reach into httpcore's network backend (``_httpx_compat.NETWORK_BACKEND`` off) --------

FALLBACK_PHASES = [
    # The status line stalls after its first byte: the attempt's read timeout, shrunk to the time
    # left, ends it (a byte every 10 s restarts httpx's timeout, not the deadline's).
    pytest.param(0, 10.0, id="stalled-head"),
    # The head arrives whole, the body trickles: the transport's read of the body is cut at the deadline.
    pytest.param(len(HEAD) + 3, 0.05, id="trickled-body"),
]


@pytest.mark.parametrize(("trickle_from", "every"), FALLBACK_PHASES)
def test_without_the_network_backend_the_deadline_still_bounds_a_call(
    trickle_from: int, every: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_httpx_compat, "NETWORK_BACKEND", False)
    transport = rc.ResilientTransport("hyper", policy=policy())
    with (
        TricklingServer(trickle_from=trickle_from, every=every) as running,
        httpx.Client(transport=transport) as client,
    ):
        start = time.monotonic()
        try:
            outcome: object = client.get(running.url)
        except httpx.HTTPError as error:
            outcome = error
        check(outcome, time.monotonic() - start)
