"""Shared fixtures: the async backends every async test runs on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Twin:
    """Calls ``target.name(...)``, or ``await target.aname(...)`` (httpx's naming of async twins), so
    one async test body checks an operation and its async twin alike."""

    def __init__(self, target: object, asynchronous: bool) -> None:
        self._target = target
        self._asynchronous = asynchronous

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            if self._asynchronous:
                return await getattr(self._target, "a" + name)(*args, **kwargs)
            return getattr(self._target, name)(*args, **kwargs)

        return call


@pytest.fixture(params=["sync", "async"])
def twin(request: pytest.FixtureRequest) -> Callable[[object], Twin]:
    """``twin(obj)``: a Twin of ``obj``, once driving its sync methods and once their async twins."""
    return lambda target: Twin(target, request.param == "async")
