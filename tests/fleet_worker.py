"""One process of a fleet for tests/test_fleet.py: Hyper clients whose state is shared through Redis.

Started once per test module and kept (importing the package costs a second or two on a busy
machine, more than most fleet scenarios take). It reads commands on stdin, one JSON object a line,
runs each with the package's public API only, and writes JSON lines on stdout:

* ``{"event": "ready"}`` once imported;
* ``{"event": "retry", "time": <wall time>}`` when a call is about to retry (``report_retry``);
* ``{"event": "done", ...figures}`` when a command ends: calls made, calls that succeeded, failures
  by exception class (and vendor code), the first failure messages, and the WARNING lines the
  ``resilient_client`` logger wrote meanwhile.

A command (keys): ``base_url``, ``redis`` (a URL, or null for a MemoryState of the process's own),
``via_env`` (select Redis by ``RESILIENT_CLIENT_REDIS_URL`` instead of ``state=``), ``policy`` (a
file), ``mode`` (``sync``: threads; ``asyncio`` / ``trio``: tasks), ``concurrency``, ``calls`` per
thread or task (null: until the line ``stop``), ``interval`` between calls, ``method``, ``path``,
``json``, ``state_timeout`` (the ``timeout=`` of a RedisState built here), ``name`` (sent as ``X-Worker``, so the simulator tells the workers apart), ``testing``
(``rc.set_testing(True)``: no retry waits), ``report_retry``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
import time
from collections import Counter
from typing import Any

import anyio

import resilient_client as rc

REDIS_URL_ENV = "RESILIENT_CLIENT_REDIS_URL"
_print_lock = threading.Lock()


def emit(event: str, **fields: Any) -> None:
    with _print_lock:
        sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
        sys.stdout.flush()


class Warnings(logging.Handler):
    """The WARNING (and worse) lines of the ``resilient_client`` logger during one command."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


class Tally:
    """What the calls of one command came to, from every thread and task."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        self.ok = 0
        self.failed: Counter[str] = Counter()
        self.messages: list[str] = []

    def success(self) -> None:
        with self.lock:
            self.calls += 1
            self.ok += 1

    def failure(self, error: BaseException) -> None:
        label = type(error).__name__
        if isinstance(error, rc.errors.ApiError):
            label += f" {error.code}"
        with self.lock:
            self.calls += 1
            self.failed[label] += 1
            if len(self.messages) < 3:
                self.messages.append(str(error)[:300])


def run(command: dict[str, Any], stop: threading.Event) -> dict[str, Any]:
    store: rc.StateStore | None = None
    if command.get("via_env"):
        os.environ[REDIS_URL_ENV] = command["redis"]
    else:
        os.environ.pop(REDIS_URL_ENV, None)
        # Built here, the store takes its settings from its arguments, not from the policy's [state].
        timeout = command.get("state_timeout", 0.05)
        store = rc.RedisState(command["redis"], timeout=timeout) if command.get("redis") else rc.MemoryState()
    rc.set_testing(bool(command.get("testing")))
    tally = Tally()
    calls: int | None = command.get("calls")
    interval: float = command.get("interval", 0.0)
    options: dict[str, Any] = {
        "base_url": command["base_url"],
        "token": "fleet-token",
        "policy": command.get("policy"),
        "state": store,
        "headers": {"X-Worker": command.get("name", "")},
        "on_retry": (lambda event: emit("retry", time=time.time())) if command.get("report_retry") else None,
    }
    request: dict[str, Any] = {
        "method": command.get("method", "GET"),
        "url": command.get("path", "/api/customers"),
        "json": command.get("json"),
    }

    def more(done: int) -> bool:
        return not stop.is_set() if calls is None else done < calls

    def sync_task() -> None:
        with rc.HyperClient(**options) as client:
            done = 0
            while more(done):
                try:
                    client.request(**request)
                    tally.success()
                except Exception as error:  # every outcome is a figure, never the worker's end
                    tally.failure(error)
                done += 1
                if interval:
                    time.sleep(interval)  # real-sleep: a fleet process calling at a steady pace

    async def async_task() -> None:
        async with rc.AsyncHyperClient(**options) as client:
            done = 0
            while more(done):
                try:
                    await client.request(**request)
                    tally.success()
                except Exception as error:
                    tally.failure(error)
                done += 1
                if interval:
                    await anyio.sleep(interval)  # real-sleep: as above

    async def async_fleet() -> None:
        async with anyio.create_task_group() as group:
            for _ in range(command.get("concurrency", 1)):
                group.start_soon(async_task)

    mode = command.get("mode", "sync")
    if mode == "sync":
        threads = [threading.Thread(target=sync_task) for _ in range(command.get("concurrency", 1))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    else:
        anyio.run(async_fleet, backend=mode)
    return {"calls": tally.calls, "ok": tally.ok, "failed": dict(tally.failed), "messages": tally.messages}


def main() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # The fleet's own calls are many; their retry lines would drown what the test wants to see.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    commands: queue.Queue[dict[str, Any] | None] = queue.Queue()
    stop = threading.Event()

    def read() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                stop.set()
            elif line.strip():
                commands.put(json.loads(line))
        commands.put(None)

    threading.Thread(target=read, daemon=True).start()
    emit("ready", pid=os.getpid())
    while (command := commands.get()) is not None:
        stop.clear()
        warnings = Warnings()
        logger = logging.getLogger("resilient_client")
        logger.addHandler(warnings)
        started = time.time()
        try:
            figures = run(command, stop)
        except Exception as error:  # a broken command is reported, not a dead worker
            figures = {"crashed": f"{type(error).__name__}: {error}"}
        finally:
            logger.removeHandler(warnings)
        emit("done", started=started, warnings=warnings.messages, **figures)


if __name__ == "__main__":
    main()
