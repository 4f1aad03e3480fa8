"""The ``mode`` fixture: each pipeline test body runs through the sync and the async shells.

A sync client needs no event loop, so its run under trio would only repeat its run under asyncio:
those duplicates are deselected.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pipeline_kit import Caller


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def connect(mode: str) -> AsyncIterator[Callable[[Any], Caller]]:
    """``connect(transport)``: a Caller of the mode under test; closed at the end."""
    made: list[Caller] = []

    def make(transport: httpx.BaseTransport | httpx.AsyncBaseTransport) -> Caller:
        caller = Caller(transport, mode == "async")
        made.append(caller)
        return caller

    yield make
    for caller in made:
        await caller.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    duplicates = []
    for item in items:
        params = getattr(item, "callspec", None)
        if (
            params
            and item.path.is_relative_to(here)
            and params.params.get("mode") == "sync"
            and params.params.get("anyio_backend") == "trio"
        ):
            duplicates.append(item)
    if duplicates:
        config.hook.pytest_deselected(items=duplicates)
        items[:] = [item for item in items if item not in duplicates]
