"""Fallback: only news moves a shared store between up and down (one warning per outage).

An operation that was already waiting on the store when another one saw it fail says nothing about
the store when its answer arrives; nor does a probe that failed after a later probe succeeded. Both
used to flip the state back, so a fleet process logged a warning per flip (found by test_fleet.py's
Redis outage: a process with two asyncio tasks warned twice). The operations nest here, so that the
order of events is exact without threads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from resilient_client.stores.fallback import Fallback

pytestmark = pytest.mark.anyio


class Down(ConnectionError):
    pass


def fallback() -> Fallback:
    return Fallback(name="redis://store", unavailable=(Down,), on_unavailable="local", idle_seconds=60.0)


def local() -> str:
    return "local"


def fails() -> str:
    raise Down("gone")


def answers() -> str:
    return "shared"


class Runner:
    """``Fallback.call`` or ``await Fallback.acall``, one test body for both."""

    def __init__(self, target: Fallback, asynchronous: bool) -> None:
        self.target = target
        self.asynchronous = asynchronous

    async def __call__(self, now: float, shared: Callable[[], str]) -> str:
        if not self.asynchronous:
            return self.target.call(now, shared, local)

        async def ashared() -> str:
            return shared()

        return await self.target.acall(now, ashared, local)

    async def nested(
        self, now: float, inner_now: float, inner: Callable[[], str], then: Callable[[], str]
    ) -> tuple[str, str]:
        """A call at ``now`` during which another call at ``inner_now`` runs to its end; then the
        first one's store answers with ``then()``. (the first call's result, the inner call's)"""
        seen: list[str] = []
        if not self.asynchronous:

            def outer() -> str:
                seen.append(self.target.call(inner_now, inner, local))
                return then()

            return self.target.call(now, outer, local), seen[0]

        async def ainner() -> str:
            return inner()

        async def aouter() -> str:
            seen.append(await self.target.acall(inner_now, ainner, local))
            return then()

        return await self.target.acall(now, aouter, local), seen[0]


@pytest.fixture(params=[False, True], ids=["sync", "async"])
def run(request: pytest.FixtureRequest) -> Runner:
    return Runner(fallback(), request.param)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


async def test_an_answer_to_a_call_begun_before_the_outage_does_not_end_it(
    run: Runner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="resilient_client")
    # Another call sees the store fail while this one waits for its answer.
    assert await run.nested(0.0, 0.1, fails, answers) == ("shared", "local")
    assert run.target.down  # the late answer is old news
    assert await run(0.5, answers) == "local"  # before the next probe: not tried
    assert await run(0.6, fails) == "local"
    assert len(warnings_of(caplog)) == 1
    assert not any("answers again" in r.getMessage() for r in caplog.records)

    assert await run(1.1, answers) == "shared"  # the probe, a second after the failure
    assert not run.target.down


async def test_a_probe_that_fails_after_a_later_probe_answered_does_not_start_an_outage(
    run: Runner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="resilient_client")
    assert await run(0.0, fails) == "local"
    # A probe times out slowly; the next probe, a second later, answers before it does.
    assert await run.nested(1.0, 2.0, answers, fails) == ("local", "shared")
    assert not run.target.down
    assert await run(2.1, answers) == "shared"
    assert len(warnings_of(caplog)) == 1


async def test_every_outage_after_a_return_warns_once(run: Runner, caplog: pytest.LogCaptureFixture) -> None:
    for start in (0.0, 10.0):
        for offset in (0.0, 0.2, 0.4):
            assert await run(start + offset, fails) == "local"
        assert await run(start + 1.0, answers) == "shared"
    assert len(warnings_of(caplog)) == 2
