"""Shared fixtures: the async backends every async test runs on, and a real redis-server."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

import redis_process as redis_process_module
from redis_process import RedisProcess
from store_ops import STORE_OPERATIONS, store_operation

# A developer's shell may point clients at a Redis; the suite's clients keep their state in process
# unless a test says otherwise.
os.environ.pop("RESILIENT_CLIENT_REDIS_URL", None)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Twin:
    """Calls ``target.name(...)``, or ``await target.aname(...)`` (httpx's naming of async twins), so
    one async test body checks an operation and its async twin alike. A store (``run``/``arun``) is
    called by its operations' names instead (``STORE_OPERATIONS``): ``run(op)`` or ``arun(op)``."""

    def __init__(self, target: object, asynchronous: bool) -> None:
        self._target = target
        self._asynchronous = asynchronous

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        target = self._target
        if name in STORE_OPERATIONS and not hasattr(target, name) and hasattr(target, "arun"):

            async def run(*args: Any, **kwargs: Any) -> Any:
                op, now = store_operation(name, *args, **kwargs)
                if self._asynchronous:
                    return await target.arun(op, now)  # type: ignore[attr-defined]
                return target.run(op, now)  # type: ignore[attr-defined]

            return run

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self._asynchronous:
                return await getattr(target, "a" + name)(*args, **kwargs)
            return getattr(target, name)(*args, **kwargs)

        return call


@pytest.fixture(params=["sync", "async"])
def twin(request: pytest.FixtureRequest) -> Callable[[object], Twin]:
    """``twin(obj)``: a Twin of ``obj``, once driving its sync methods and once their async twins."""
    return lambda target: Twin(target, request.param == "async")


@pytest.fixture(scope="session")
def redis_process() -> Iterator[RedisProcess]:
    """The session's real redis-server (tests/redis_process.py), started on first use."""
    process = redis_process_module.shared()
    yield process
    process.close()


@pytest.fixture
def redis_url(redis_process: RedisProcess) -> str:
    """The URL of the session's redis-server, flushed for this test."""
    redis_process.flush()
    return redis_process.url


# -- no test is skipped --------------------------------------------------------------------------------
# A skipped test asserts nothing while the run still looks green (the catalog tests once skipped for a
# folder outside the repository), so any skip fails the run and names the test and its reason.
_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _skipped:
        terminalreporter.write_line(
            f"FAILED: {len(_skipped)} test(s) skipped; the suite allows none:", red=True
        )
        for line in _skipped:
            terminalreporter.write_line(f"  {line}")
