"""The Clock every strategy reads, and its construction from the 0.1 keyword arguments."""

from __future__ import annotations

import time

import anyio
import pytest

from resilient_client._clock import Clock
from resilient_client.testing import FakeClock


def test_the_default_clock_is_the_real_one() -> None:
    clock = Clock()
    assert (clock.monotonic, clock.wall, clock.sleep, clock.asleep) == (
        time.monotonic,
        time.time,
        time.sleep,
        anyio.sleep,
    )
    assert 0.0 <= clock.random() < 1.0


def test_from_options_takes_the_01_keywords_and_keeps_the_rest_real() -> None:
    fake = FakeClock(start=10.0, wall_start=1_700_000_000.0)
    clock = Clock.from_options(**fake.options(), random=lambda: 0.25)
    clock.sleep(2.5)
    assert (clock.monotonic(), clock.wall(), clock.random()) == (12.5, 1_700_000_002.5, 0.25)
    assert fake.sleeps == [2.5]
    assert Clock.from_options(clock=fake).wall is time.time


@pytest.mark.anyio
async def test_the_async_sleep_is_the_one_given() -> None:
    fake = FakeClock(start=0.0)
    await Clock.from_options(**fake.options()).asleep(3.0)
    assert fake.now == 3.0


@pytest.mark.parametrize("keyword", ["clock", "wall_clock", "sleep", "async_sleep", "random"])
def test_a_value_that_cannot_be_called_is_refused_by_its_keyword(keyword: str) -> None:
    with pytest.raises(TypeError, match=rf"^{keyword}= must be callable, not float$"):
        Clock.from_options(**{keyword: 1.5})  # type: ignore[arg-type]
