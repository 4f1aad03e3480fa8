"""Success-path overhead of ResilientTransport against bare httpx on the same inner transport.

SPEC section 7 asks for <= 5 %. Cases: in-process (httpx.MockTransport) and over a loopback
server (uvicorn on 127.0.0.1), sync and async, a small JSON body and a 1 MiB JSON body. Each case
alternates rounds of bare and resilient requests and compares the median round times, so drift in
the machine's speed hits both sides alike. Prints one line per case. ``--quick`` for a smoke run.
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx

import resilient_client as rc

SMALL = json.dumps({"ResponseCode": 0, "ResponseMsgEng": "Success", "Items": [1, 2, 3]}).encode()
LARGE = json.dumps({"ResponseCode": 0, "Items": ["x" * 1000] * 1040}).encode()  # ~1 MiB
JSON = {"content-type": "application/json"}


async def asgi_app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    body = LARGE if scope["path"] == "/large" else SMALL
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class LoopbackServer:
    """uvicorn on 127.0.0.1 and a free port, in a background thread."""

    def __enter__(self) -> str:
        import uvicorn

        config = uvicorn.Config(asgi_app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(5)


def report(name: str, bare: list[float], resilient: list[float]) -> None:
    b, r = statistics.median(bare), statistics.median(resilient)
    overhead = 100 * (r / b - 1)
    print(f"{name:28s} bare {b * 1e3:8.2f} ms  resilient {r * 1e3:8.2f} ms  overhead {overhead:+6.1f} %")


def sync_case(
    name: str, inner: Callable[[], httpx.BaseTransport | None], url: str, count: int, rounds: int
) -> None:
    def timed(client: httpx.Client) -> float:
        start = time.perf_counter()
        for _ in range(count):
            client.get(url).read()
        return time.perf_counter() - start

    base = inner()
    with (
        httpx.Client(transport=base) as bare,
        httpx.Client(transport=rc.ResilientTransport("hyper", transport=inner())) as resilient,
    ):
        timed(bare), timed(resilient)  # warm-up: connections, caches
        pairs = [(timed(bare), timed(resilient)) for _ in range(rounds)]
    report(name, [p[0] for p in pairs], [p[1] for p in pairs])


def async_case(
    name: str, inner: Callable[[], httpx.AsyncBaseTransport | None], url: str, count: int, rounds: int
) -> None:
    async def timed(client: httpx.AsyncClient) -> float:
        start = time.perf_counter()
        for _ in range(count):
            await (await client.get(url)).aread()
        return time.perf_counter() - start

    async def main() -> None:
        async with (
            httpx.AsyncClient(transport=inner()) as bare,
            httpx.AsyncClient(transport=rc.ResilientTransport("hyper", transport=inner())) as resilient,
        ):
            await timed(bare), await timed(resilient)
            bare_times, resilient_times = [], []
            for _ in range(rounds):
                bare_times.append(await timed(bare))
                resilient_times.append(await timed(resilient))
        report(name, bare_times, resilient_times)

    anyio.run(main)


def mock(body: bytes) -> Callable[[], httpx.MockTransport]:
    return lambda: httpx.MockTransport(lambda request: httpx.Response(200, content=body, headers=JSON))


def main() -> None:
    quick = "--quick" in sys.argv
    small, large, rounds = (50, 5, 3) if quick else (500, 50, 9)
    for label, body, count in (("small", SMALL, small), ("1 MiB", LARGE, large)):
        sync_case(f"in-process sync  {label}", mock(body), "http://x/", count, rounds)
        async_case(f"in-process async {label}", mock(body), "http://x/", count, rounds)
    with LoopbackServer() as base:
        for label, path, count in (("small", "/small", small), ("1 MiB", "/large", large)):
            sync_case(f"loopback sync    {label}", lambda: None, base + path, count, rounds)
            async_case(f"loopback async   {label}", lambda: None, base + path, count, rounds)


if __name__ == "__main__":
    main()
