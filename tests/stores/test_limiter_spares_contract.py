"""The StateStore contract for a limiter's spare sends, against every store (``STORES`` of
test_store_contract.py): spares reserved ahead while nothing is learned, and settled later (the
ones sent counted in the slot they were sent in, the others' tokens given back)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from test_store_contract import STORES, Timeline

from resilient_client.stores import StateStore

pytestmark = pytest.mark.anyio

_keys = itertools.count()


@pytest.fixture
def timeline() -> Timeline:
    return Timeline()


@pytest.fixture(params=STORES)
def ops(request: pytest.FixtureRequest, timeline: Timeline, twin: Callable[[object], Any]) -> Any:
    store: StateStore = request.param(timeline)
    return twin(store)


@pytest.fixture
def key() -> str:
    return f"contract/spares/{next(_keys)}"


async def test_with_no_pace_every_spare_asked_is_reserved_and_none_is_counted(
    ops: Any, key: str, timeline: Timeline
) -> None:
    ticket = await ops.limiter_acquire(key, 0.0, 1.0, 60.0, 5, 0, 0, 0.0, timeline.now)
    assert (ticket.wait, ticket.spare, ticket.sent_rate) == (0.0, 5, 1.0)


async def test_a_fixed_pace_spares_only_the_whole_tokens_beyond_the_send(
    ops: Any, key: str, timeline: Timeline
) -> None:
    # A bucket of 4: this send's token and at most 3 spares, however many are asked.
    first = await ops.limiter_acquire(key, 2.0, 4.0, 60.0, 10, 0, 0, 0.0, timeline.now)
    assert (first.wait, first.spare) == (0.0, 3)
    # The bucket is empty: the next send waits half a second and spares nothing.
    queued = await ops.limiter_acquire(key, 2.0, 4.0, 60.0, 10, 0, 0, 0.0, timeline.now)
    assert (queued.wait, queued.spare) == (0.5, 0)


async def test_a_learned_rate_spares_nothing(ops: Any, key: str, timeline: Timeline) -> None:
    first = await ops.limiter_acquire(key, 0.0, 10.0, 60.0, timeline.now)
    assert await ops.limiter_learn(key, first.version, 100.0, 100.0, True, timeline.now)
    timeline.advance(1.0)
    learned = await ops.limiter_acquire(key, 0.0, 10.0, 60.0, 5, 0, 0, 0.0, timeline.now)
    assert (learned.wait, learned.spare) == (0.0, 0)


async def test_spares_not_sent_give_their_tokens_back(ops: Any, key: str, timeline: Timeline) -> None:
    first = await ops.limiter_acquire(key, 2.0, 4.0, 60.0, 3, 0, 0, 0.0, timeline.now)
    assert first.spare == 3
    # None of the three was sent: given back, the bucket holds them again (and this send's next).
    again = await ops.limiter_acquire(key, 2.0, 4.0, 60.0, 2, 0, 3, 0.0, timeline.now)
    assert (again.wait, again.spare) == (0.0, 2)


async def test_spares_sent_are_counted_in_the_slot_they_were_sent_in(
    ops: Any, key: str, timeline: Timeline
) -> None:
    timeline.advance(0.25 - timeline.now % 1.0)  # a quarter into a second
    first = await ops.limiter_acquire(key, 0.0, 1.0, 60.0, 8, 0, 0, 0.0, timeline.now)
    assert first.spare == 8
    timeline.advance(1.0)  # the next second: the six sent 0.9 s ago belong to the one before
    state = await ops.limiter_state(key, 6, 2, 0.9, timeline.now)
    assert state.sent_rate == pytest.approx((1 + 6) * 0.75)
    timeline.advance(2.0)  # long gone: counted nowhere
    late = await ops.limiter_state(key, 5, 0, 2.5, timeline.now)
    assert late.sent_rate == 0.0


async def test_a_paused_admission_settles_spares_and_reserves_none(
    ops: Any, key: str, timeline: Timeline
) -> None:
    first = await ops.limiter_admit(key, 0.0, 1.0, 60.0, 4, 0, 0, 0.0, timeline.now)
    assert first.spare == 4
    await ops.pause(key, 5.0, timeline.now)
    paused = await ops.limiter_admit(key, 0.0, 1.0, 60.0, 4, 3, 1, 0.0, timeline.now)
    assert (paused.paused, paused.spare) == (pytest.approx(5.0), 0)
    assert paused.sent_rate == 1 + 3
