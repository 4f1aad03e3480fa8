"""The reliability bars of SPEC section 7, measured; prints one line per bar.

- success at 10 % random transient faults under the default policy (bar >= 99.9 %)
- retries sent before the server's Retry-After (bar 0)
- total deadline overrun, real clock, against a loopback server that answers slowly (bar <= 50 ms)
- the same against a raw-socket server trickling its headers one byte every 250 ms, sync and async
  (bar <= 50 ms)
- memory growth while streaming a 1 GB download through the transport (bar < 20 MB)
- memory and time for a hostile compressed body: ``gzip, gzip``, about 2 KB on the wire, 1 GiB
  decoded (bar < 2 x ``body.max_read_bytes``, < 50 ms)

Fake time where the bar is about counting, real time and sockets where it is about time. The
strategies' bars (outage, rate limit) are in ``strategies.py``.
"""

from __future__ import annotations

import contextlib
import gzip
import random
import resource
import socket
import struct
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from typing import Any

import attrs
import httpx

import resilient_client as rc
from resilient_client.testing import FakeClock


def success_under_faults(requests: int = 20000, fault_rate: float = 0.10) -> float:
    chance = random.Random(7)
    clock = FakeClock()

    def flaky(request: httpx.Request) -> httpx.Response:
        if chance.random() < fault_rate:
            return httpx.Response(chance.choice([429, 503, 423]))
        return httpx.Response(200, json={"ResponseCode": 0})

    transport = rc.ResilientTransport("hyper", transport=httpx.MockTransport(flaky), **clock.options())
    ok = 0
    with httpx.Client(transport=transport) as client:
        for _ in range(requests):
            try:
                client.post("https://hyper.test/x", json={})
                ok += 1
            except rc.errors.ApiError:
                pass
    return ok / requests


def early_retries(requests: int = 2000) -> int:
    chance = random.Random(11)
    clock = FakeClock()
    allowed_at: dict[str, float] = {}  # per call: when the server allows the next try
    early = 0

    def throttled(request: httpx.Request) -> httpx.Response:
        nonlocal early
        call = request.headers["x-call"]
        if clock.now < allowed_at.get(call, 0.0):
            early += 1
        if chance.random() < 0.5:
            wait = chance.choice(["1", "2.5", "0.2", "7"])
            allowed_at[call] = clock.now + float(wait)
            return httpx.Response(429, headers={"Retry-After": wait})
        return httpx.Response(200, json={})

    transport = rc.ResilientTransport("medable", transport=httpx.MockTransport(throttled), **clock.options())
    with httpx.Client(transport=transport) as client:
        for call in range(requests):
            with contextlib.suppress(rc.errors.ApiError):
                client.post("https://medable.test/x", json={}, headers={"x-call": str(call)})
    return early


async def slow_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    import anyio

    await anyio.sleep(0.4)  # the server is slow; the client's deadline must cut it
    await send({"type": "http.response.start", "status": 503, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def deadline_overrun(total: float = 1.0, runs: int = 5) -> float:
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(slow_app, host="127.0.0.1", port=0, log_level="error", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    default = rc.load_policy("default")
    policy = attrs.evolve(
        default,
        retry=attrs.evolve(default.retry, total_timeout=total, initial_wait=0.05, max_attempts=100),
        # Every run retries until the deadline: no budget to run dry, no breaker to open (they would
        # end the later runs at once, measuring nothing).
        budget=rc.BudgetSettings(ratio=0.0),
        breaker=attrs.evolve(default.breaker, enabled=False),
    )
    worst = 0.0
    try:
        with httpx.Client(transport=rc.ResilientTransport("hyper", policy=policy)) as client:
            for _ in range(runs):
                start = time.monotonic()
                with contextlib.suppress(rc.errors.ApiError, httpx.TimeoutException):
                    client.get(f"http://127.0.0.1:{port}/")
                worst = max(worst, time.monotonic() - start - total)
    finally:
        server.should_exit = True
        thread.join(5)
    return worst


class TricklingServer:
    """A raw-socket HTTP/1.1 server on 127.0.0.1 that sends its status line and headers one byte at
    a time, ``every`` seconds apart (httpx's read timeout restarts with every byte)."""

    ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"

    def __init__(self, every: float = 0.25) -> None:
        self.every = every
        self.stopped = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/x"

    def serve(self) -> None:
        while not self.stopped.is_set():
            with contextlib.suppress(TimeoutError):
                connection, _ = self.listener.accept()
                threading.Thread(target=self.answer, args=(connection,), daemon=True).start()

    def answer(self, connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError):
            request = b""
            while b"\r\n\r\n" not in request:
                request += connection.recv(4096)
            for index in range(len(self.ANSWER)):
                connection.sendall(self.ANSWER[index : index + 1])
                if self.stopped.wait(self.every):
                    return

    def __enter__(self) -> str:
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.listener.close()


def trickled_headers_overrun(total: float = 0.5, runs: int = 5) -> dict[str, float]:
    """The worst overrun of the total deadline, per driver, against a server trickling its headers."""
    import anyio

    policy = rc.RetryPolicy(retry=attrs.evolve(rc.RetryPolicy().retry, total_timeout=total))
    worst: dict[str, float] = {}
    with TricklingServer() as url:
        with httpx.Client(transport=rc.ResilientTransport("hyper", policy=policy)) as client:
            for _ in range(runs):
                start = time.monotonic()
                with contextlib.suppress(httpx.TimeoutException):
                    client.get(url)
                worst["sync"] = max(worst.get("sync", 0.0), time.monotonic() - start - total)

        async def run_async(backend: str) -> None:
            async with httpx.AsyncClient(transport=rc.ResilientTransport("hyper", policy=policy)) as client:
                for _ in range(runs):
                    start = time.monotonic()
                    with contextlib.suppress(httpx.TimeoutException):
                        await client.get(url)
                    worst[backend] = max(worst.get(backend, 0.0), time.monotonic() - start - total)

        for backend in ("asyncio", "trio"):
            anyio.run(run_async, backend, backend=backend)
    return worst


def zeros_gzip(total: int, block: int = 1 << 20) -> bytes:
    """A valid gzip stream of ``total`` zero bytes, from one compressed block repeated (seconds
    faster than compressing the zeros)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zero = bytes(block)
    first = compressor.compress(zero) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeated = compressor.compress(zero) + compressor.flush(zlib.Z_FULL_FLUSH)
    end = compressor.flush()[:-8]
    crc = 0
    for _ in range(total // block):
        crc = zlib.crc32(zero, crc)
    return first + repeated * (total // block - 1) + end + struct.pack("<II", crc, total & 0xFFFFFFFF)


def hostile_compressed_body(runs: int = 5) -> tuple[int, int, float]:
    """(bytes on the wire, worst peak memory growth, worst seconds) of a request answered with a
    ``gzip, gzip`` body that decodes to 1 GiB, through the transport, as far as it returns."""
    wire = gzip.compress(zeros_gzip(2**30), 9)
    headers = {"content-type": "application/json", "content-encoding": "gzip, gzip"}

    def bomb(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, headers=headers, stream=httpx.ByteStream(wire))

    transport = rc.ResilientTransport("hyper", transport=httpx.MockTransport(bomb))
    growth, seconds = 0, 0.0
    with httpx.Client(transport=transport) as client:
        for _ in range(runs):
            request = client.build_request("POST", "https://hyper.test/x")
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            start = time.perf_counter()
            with contextlib.suppress(rc.errors.ServerError):
                client.send(request, stream=True)
            seconds = max(seconds, time.perf_counter() - start)
            growth = max(growth, tracemalloc.get_traced_memory()[1] - base)
            tracemalloc.stop()
    return len(wire), growth, seconds


def streaming_growth(total: int = 2**30, chunk: int = 2**16) -> float:
    block = b"\0" * chunk

    def chunks() -> Iterator[bytes]:
        for _ in range(total // chunk):
            yield block

    def download(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "application/octet-stream"}, content=chunks())

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    received = 0
    transport = rc.ResilientTransport("hyper", transport=httpx.MockTransport(download))
    with (
        httpx.Client(transport=transport) as client,
        client.stream("GET", "https://hyper.test/file") as response,
    ):
        for part in response.iter_raw():
            received += len(part)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert received == total
    return (after - before) / 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    # First, while the process is small: ru_maxrss is a peak, later work would hide the growth.
    print(f"peak RSS growth streaming 1 GiB:               {streaming_growth():.1f} MB  (bar < 20 MB)")
    rate = 100 * success_under_faults()
    print(f"success at 10 % transient faults:              {rate:.3f} %  (bar >= 99.9 %)")
    print(f"retries sent before Retry-After:               {early_retries()}  (bar 0)")
    print(
        f"worst total-deadline overrun (1 s deadline):   {1000 * deadline_overrun():.1f} ms  (bar <= 50 ms)"
    )
    overruns = ", ".join(
        f"{name} {1000 * worst:.1f} ms" for name, worst in trickled_headers_overrun().items()
    )
    print(f"worst overrun, headers trickled 1 B / 250 ms:  {overruns}  (0.5 s deadline; bar <= 50 ms)")
    wire, growth, seconds = hostile_compressed_body()
    cap = rc.RetryPolicy().body.max_read_bytes
    print(
        f"gzip, gzip bomb ({wire} B on the wire, 1 GiB):  peak growth {growth / 1024:.1f} KiB "
        f"(bar < {2 * cap / 1024:.0f} KiB = 2 x body.max_read_bytes), {1000 * seconds:.1f} ms (bar < 50 ms)"
    )


if __name__ == "__main__":
    main()
