"""Success-path overhead of ResilientTransport against bare httpx on the same inner transport.

SPEC section 7 asks for <= 5 %. Cases: in-process (httpx.MockTransport) and over a loopback
server (uvicorn on 127.0.0.1, in a separate process so it does not share this one's GIL), sync and
async, a small JSON body, a 48 KiB one (read and scanned for a fault) and a 1 MiB one (over the
read cap, passed through). Each case alternates many short batches of bare and
resilient requests, so drift in the machine's speed hits both sides alike, and reports the overhead
of the fastest batches (the least disturbed) and of the median ones, plus the absolute cost per
request. Prints one line per case. ``--quick`` for a smoke run.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx

import resilient_client as rc

SMALL = json.dumps({"ResponseCode": 0, "ResponseMsgEng": "Success", "Items": [1, 2, 3]}).encode()
MEDIUM = json.dumps({"ResponseCode": 0, "Items": ["x" * 1000] * 48}).encode()  # ~48 KiB: read, scanned
LARGE = json.dumps({"ResponseCode": 0, "Items": ["x" * 1000] * 1040}).encode()  # ~1 MiB: over the cap
JSON = {"content-type": "application/json"}


async def asgi_app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    body = {"/large": LARGE, "/medium": MEDIUM}.get(scope["path"], SMALL)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class LoopbackServer:
    """uvicorn on 127.0.0.1 and a free port, in a child process running this file with --serve."""

    def __enter__(self) -> str:
        import subprocess

        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(10)


def serve_forever() -> None:
    import socket

    import uvicorn

    with socket.socket() as probe:  # a free port; uvicorn binds it itself, with its socket options
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(asgi_app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)

    async def announce_when_started() -> None:
        while not server.started:
            await anyio.sleep(0.01)
        print(f"http://127.0.0.1:{port}", flush=True)

    async def run() -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(announce_when_started)
            await server.serve()

    anyio.run(run)


def report(name: str, count: int, bare: list[float], resilient: list[float]) -> None:
    fastest = 100 * (min(resilient) / min(bare) - 1)
    typical = 100 * (statistics.median(resilient) / statistics.median(bare) - 1)
    per_request = (statistics.median(resilient) - statistics.median(bare)) / count * 1e6
    print(
        f"{name:24s} bare {statistics.median(bare) / count * 1e6:9.1f} us/req  "
        f"overhead: fastest {fastest:+6.1f} %  median {typical:+6.1f} %  ({per_request:+6.1f} us/req)"
    )


def sync_case(
    name: str, inner: Callable[[], httpx.BaseTransport | None], url: str, count: int, rounds: int
) -> None:
    def timed(client: httpx.Client) -> float:
        start = time.perf_counter()
        for _ in range(count):
            client.get(url).read()
        return time.perf_counter() - start

    with (
        httpx.Client(transport=inner()) as bare,
        httpx.Client(transport=rc.ResilientTransport("hyper", transport=inner())) as resilient,
    ):
        timed(bare), timed(resilient)  # warm-up: connections, caches
        pairs = [(timed(bare), timed(resilient)) for _ in range(rounds)]
    report(name, count, [p[0] for p in pairs], [p[1] for p in pairs])


def async_case(
    name: str, inner: Callable[[], httpx.AsyncBaseTransport | None], url: str, count: int, rounds: int
) -> None:
    async def timed(client: httpx.AsyncClient) -> float:
        start = time.perf_counter()
        for _ in range(count):
            await (await client.get(url)).aread()
        return time.perf_counter() - start

    async def run_case() -> None:
        async with (
            httpx.AsyncClient(transport=inner()) as bare,
            httpx.AsyncClient(transport=rc.ResilientTransport("hyper", transport=inner())) as resilient,
        ):
            await timed(bare), await timed(resilient)
            bare_times, resilient_times = [], []
            for _ in range(rounds):
                bare_times.append(await timed(bare))
                resilient_times.append(await timed(resilient))
        report(name, count, bare_times, resilient_times)

    anyio.run(run_case)


def mock(body: bytes) -> Callable[[], httpx.MockTransport]:
    return lambda: httpx.MockTransport(lambda request: httpx.Response(200, content=body, headers=JSON))


def main() -> None:
    if "--serve" in sys.argv:
        serve_forever()
        return
    quick = "--quick" in sys.argv
    # (requests per batch, batches): many short batches, alternating bare and resilient.
    small, large, rounds = (20, 2, 5) if quick else (50, 4, 120)
    sizes = (
        ("small", SMALL, "/small", small),
        ("48 KiB", MEDIUM, "/medium", small),
        ("1 MiB", LARGE, "/large", large),
    )
    for label, body, _, count in sizes:
        sync_case(f"in-process sync  {label}", mock(body), "http://x/", count, rounds)
        async_case(f"in-process async {label}", mock(body), "http://x/", count, rounds)
    with LoopbackServer() as base:
        for label, _, path, count in sizes:
            sync_case(f"loopback sync    {label}", lambda: None, base + path, count, rounds)
            async_case(f"loopback async   {label}", lambda: None, base + path, count, rounds)


if __name__ == "__main__":
    main()
