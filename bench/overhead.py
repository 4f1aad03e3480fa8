"""Success-path overhead of ResilientTransport against bare httpx on the same inner transport.

SPEC section 7 asks for <= 5 %. Cases: in-process (httpx.MockTransport) and over a loopback
server (uvicorn on 127.0.0.1), sync and async, a small JSON body and a 1 MiB JSON body. Each case
alternates blocks of bare and resilient requests and compares the median block times, so drift in
the machine's speed hits both sides alike. Prints one line per case with the ratio.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

import resilient_client as rc

SMALL = json.dumps({"ResponseCode": 0, "ResponseMsgEng": "Success", "Items": [1, 2, 3]}).encode()
LARGE = json.dumps({"ResponseCode": 0, "Items": ["x" * 1000] * 1040}).encode()  # ~1 MiB
HEADERS = [(b"content-type", b"application/json")]


def mock_transport(body: bytes) -> httpx.MockTransport:
    return httpx.MockTransport(
        lambda request: httpx.Response(200, content=body, headers={"content-type": "application/json"})
    )


async def asgi_app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    if scope["type"] != "http":
        return
    body = LARGE if scope["path"] == "/large" else SMALL
    await send({"type": "http.response.start", "status": 200,
                "headers": [*HEADERS, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class LoopbackServer:
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


def time_sync(client: httpx.Client, url: str, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        client.get(url).content
    return time.perf_counter() - start


async def time_async(client: httpx.AsyncClient, url: str, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        (await client.get(url)).content
    return time.perf_counter() - start


def compare(name: str, bare: Callable[[], float], wrapped: Callable[[], float], rounds: int) -> None:
    bare(), wrapped()  # warm up
    bare_times, wrapped_times = [], []
    for _ in range(rounds):
        bare_times.append(bare())
        wrapped_times.append(wrapped())
    b, w = statistics.median(bare_times), statistics.median(wrapped_times)
    print(f"{name:34s} bare {b * 1e3:8.2f} ms  resilient {w * 1e3:8.2f} ms  overhead {100 * (w / b - 1):+6.1f} %")


def main() -> None:
    small_count, large_count, rounds = 400, 40, 9
    if "--quick" in sys.argv:
        small_count, large_count, rounds = 50, 5, 3
    for label, body, count in (("small", SMALL, small_count), ("1 MiB", LARGE, large_count)):
        inner = mock_transport(body)
        bare_c = httpx.Client(transport=inner)
        res_c = httpx.Client(transport=rc.ResilientTransport("hyper", transport=inner))
        compare(f"in-process sync  {label}", lambda: time_sync(bare_c, "http://x/", count),
                lambda: time_sync(res_c, "http://x/", count), rounds)

        async def run_async(body: bytes = body, count: int = count, label: str = label) -> None:
            inner = mock_transport(body)
            async with httpx.AsyncClient(transport=inner) as bare_a, httpx.AsyncClient(
                transport=rc.ResilientTransport("hyper", transport=inner)
            ) as res_a:
                bare_times, wrapped_times = [], []
                await time_async(bare_a, "http://x/", count)
                await time_async(res_a, "http://x/", count)
                for _ in range(rounds):
                    bare_times.append(await time_async(bare_a, "http://x/", count))
                    wrapped_times.append(await time_async(res_a, "http://x/", count))
                b, w = statistics.median(bare_times), statistics.median(wrapped_times)
                print(f"{'in-process async ' + label:34s} bare {b * 1e3:8.2f} ms  resilient {w * 1e3:8.2f} ms"
                      f"  overhead {100 * (w / b - 1):+6.1f} %")

        asyncio.run(run_async())

    with LoopbackServer() as base:
        for label, path, count in (("small", "/small", small_count), ("1 MiB", "/large", large_count)):
            with httpx.Client() as bare_c, httpx.Client(transport=rc.ResilientTransport("hyper")) as res_c:
                compare(f"loopback sync    {label}", lambda: time_sync(bare_c, base + path, count),
                        lambda: time_sync(res_c, base + path, count), rounds)

            async def run_loop(path: str = path, count: int = count, label: str = label) -> None:
                async with httpx.AsyncClient() as bare_a, httpx.AsyncClient(
                    transport=rc.ResilientTransport("hyper")
                ) as res_a:
                    bare_times, wrapped_times = [], []
                    await time_async(bare_a, base + path, count)
                    await time_async(res_a, base + path, count)
                    for _ in range(rounds):
                        bare_times.append(await time_async(bare_a, base + path, count))
                        wrapped_times.append(await time_async(res_a, base + path, count))
                    b, w = statistics.median(bare_times), statistics.median(wrapped_times)
                    print(f"{'loopback async   ' + label:34s} bare {b * 1e3:8.2f} ms  resilient "
                          f"{w * 1e3:8.2f} ms  overhead {100 * (w / b - 1):+6.1f} %")

            asyncio.run(run_loop())


if __name__ == "__main__":
    main()
