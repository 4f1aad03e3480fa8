"""The StateStore contract, run against every store: each operation (``run`` and ``arun``), and races.

To add a store, add one line to STORES: a factory taking the test's Timeline. Tests pass
``timeline.now`` as every operation's ``now`` and move time with ``timeline.advance``; a store that
reads its own clock (Redis's TIME) must let its factory put it on the timeline, so no test waits for
real and the exact figures hold (RedisState's factory, ``redis_process.contract_store``, makes its
scripts take ``now`` instead of TIME; test_redis_state.py checks the server's clock).
"""

from __future__ import annotations

import itertools
import math
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from redis_process import contract_store
from resilient_client.stores import MemoryState, StateStore
from store_ops import Store


class Timeline:
    """The monotonic time the tests run at; ``advance`` moves it, and the store's own clock if it has one."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.on_advance: list[Callable[[float], None]] = []

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for shift in self.on_advance:
            shift(seconds)


STORES = [
    pytest.param(lambda timeline: MemoryState(), id="memory"),
    pytest.param(contract_store, id="redis"),
]

_keys = itertools.count()


@pytest.fixture
def timeline() -> Timeline:
    return Timeline()


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, timeline: Timeline) -> StateStore:
    made: StateStore = request.param(timeline)
    return made


@pytest.fixture
def key() -> str:
    # Unique per test, so a store shared between tests (one Redis server) starts clean every time.
    return f"contract/{next(_keys)}"


@pytest.fixture
def ops(store: StateStore, twin: Callable[[object], Any]) -> Any:
    return twin(store)


pytestmark = pytest.mark.anyio


# -- token bucket -----------------------------------------------------------------------------------


async def test_a_new_bucket_starts_full_and_spends_down_to_empty(
    ops: Any, key: str, timeline: Timeline
) -> None:
    now = timeline.now
    spent = [await ops.try_spend(key, 1.0, 3.0, now) for _ in range(4)]
    assert spent == [True, True, True, False]


async def test_deposits_add_up_to_the_cap(ops: Any, key: str, timeline: Timeline) -> None:
    now = timeline.now
    assert await ops.deposit(key, 0.5, 2.0, now) == 2.0  # full already
    assert await ops.try_spend(key, 2.0, 2.0, now)
    assert await ops.deposit(key, 0.5, 2.0, now) == 0.5
    assert await ops.deposit(key, 0.5, 2.0, now) == 1.0
    assert await ops.deposit(key, 5.0, 2.0, now) == 2.0


async def test_a_spend_larger_than_the_level_takes_nothing(ops: Any, key: str, timeline: Timeline) -> None:
    now = timeline.now
    assert await ops.try_spend(key, 2.0, 2.0, now)
    await ops.deposit(key, 0.5, 2.0, now)
    assert not await ops.try_spend(key, 1.0, 2.0, now)
    assert await ops.deposit(key, 0.0, 2.0, now) == 0.5


async def test_a_lowered_cap_cuts_the_level(ops: Any, key: str, timeline: Timeline) -> None:
    now = timeline.now
    await ops.deposit(key, 0.0, 10.0, now)
    assert await ops.deposit(key, 0.0, 2.0, now) == 2.0
    assert [await ops.try_spend(key, 1.0, 2.0, now) for _ in range(3)] == [True, True, False]


async def test_buckets_of_different_keys_are_independent(ops: Any, key: str, timeline: Timeline) -> None:
    assert await ops.try_spend(key, 1.0, 1.0, timeline.now)
    assert await ops.try_spend(key + "/other", 1.0, 1.0, timeline.now)
    assert not await ops.try_spend(key, 1.0, 1.0, timeline.now)


# -- sliding window of outcomes ---------------------------------------------------------------------


async def test_the_window_counts_failures_and_total(ops: Any, key: str, timeline: Timeline) -> None:
    counts = [await ops.record_outcome(key, failed, 10.0, timeline.now) for failed in (True, False, True)]
    assert counts == [(1, 1), (1, 2), (2, 3)]


async def test_outcomes_older_than_the_window_are_forgotten(ops: Any, key: str, timeline: Timeline) -> None:
    await ops.record_outcome(key, True, 10.0, timeline.now)
    timeline.advance(5.0)
    assert await ops.record_outcome(key, True, 10.0, timeline.now) == (2, 2)
    timeline.advance(6.0)  # the first is 11 s old, the second 6 s
    assert await ops.record_outcome(key, False, 10.0, timeline.now) == (1, 2)
    timeline.advance(30.0)
    assert await ops.record_outcome(key, False, 10.0, timeline.now) == (0, 1)


async def test_successes_written_in_a_batch_count_like_one_by_one(
    ops: Any, key: str, timeline: Timeline
) -> None:
    await ops.record_successes(key, 7, 0.0, 10.0, timeline.now)
    assert await ops.record_outcome(key, True, 10.0, timeline.now) == (1, 8)


async def test_a_batch_lands_in_the_bucket_of_its_age_and_leaves_the_window_with_it(
    ops: Any, key: str, timeline: Timeline
) -> None:
    # Written now, but the latest of them happened 8 s ago: they leave a 10 s window 2 s from now.
    await ops.record_successes(key, 5, 8.0, 10.0, timeline.now)
    assert await ops.record_outcome(key, True, 10.0, timeline.now) == (1, 6)
    timeline.advance(3.0)
    assert await ops.record_outcome(key, True, 10.0, timeline.now) == (2, 2)


async def test_a_batch_older_than_the_window_is_dropped(ops: Any, key: str, timeline: Timeline) -> None:
    await ops.record_successes(key, 5, 60.0, 10.0, timeline.now)
    assert await ops.record_outcome(key, True, 10.0, timeline.now) == (1, 1)


# -- circuit state ------------------------------------------------------------------------------------


async def test_a_circuit_never_seen_is_closed(ops: Any, key: str, timeline: Timeline) -> None:
    circuit = await ops.circuit(key, timeline.now)
    assert (circuit.state, circuit.retry_after, circuit.break_duration) == ("closed", 0.0, 0.0)
    taken, after = await ops.try_probe(key, "t1", 1, 10.0, timeline.now)
    assert not taken and after.state == "closed"


async def test_opening_needs_the_epoch_that_was_seen(ops: Any, key: str, timeline: Timeline) -> None:
    closed = await ops.circuit(key, timeline.now)
    assert not await ops.open_circuit(key, closed.epoch + 12345, 15.0, timeline.now)
    assert await ops.open_circuit(key, closed.epoch, 15.0, timeline.now)
    assert not await ops.open_circuit(key, closed.epoch, 15.0, timeline.now)  # already moved
    opened = await ops.circuit(key, timeline.now)
    assert (opened.state, opened.retry_after, opened.break_duration) == ("open", 15.0, 15.0)
    assert opened.epoch != closed.epoch
    timeline.advance(4.0)
    assert (await ops.circuit(key, timeline.now)).retry_after == pytest.approx(11.0)


async def test_an_open_circuit_takes_no_probe_before_its_break_ends(
    ops: Any, key: str, timeline: Timeline
) -> None:
    await ops.open_circuit(key, (await ops.circuit(key, timeline.now)).epoch, 15.0, timeline.now)
    timeline.advance(14.0)
    taken, circuit = await ops.try_probe(key, "t1", 1, 10.0, timeline.now)
    assert not taken
    assert (circuit.state, circuit.retry_after) == ("open", pytest.approx(1.0))


async def test_after_the_break_exactly_the_allowed_probes_are_taken(
    ops: Any, key: str, timeline: Timeline
) -> None:
    opened_at = await ops.circuit(key, timeline.now)
    await ops.open_circuit(key, opened_at.epoch, 15.0, timeline.now)
    open_epoch = (await ops.circuit(key, timeline.now)).epoch
    timeline.advance(15.0)
    answers = [await ops.try_probe(key, f"t{n}", 2, 10.0, timeline.now) for n in range(3)]
    assert [taken for taken, _ in answers] == [True, True, False]
    half_open = answers[0][1]
    assert half_open.state == "half_open" and half_open.epoch != open_epoch
    assert half_open.break_duration == 15.0
    assert answers[2][1].retry_after == pytest.approx(10.0)  # when the first lease ends
    again, _ = await ops.try_probe(key, "t0", 2, 10.0, timeline.now)
    assert again  # a probe asking twice keeps its slot


async def test_a_probe_slot_frees_when_released_or_when_its_lease_ends(
    ops: Any, key: str, timeline: Timeline
) -> None:
    await ops.open_circuit(key, (await ops.circuit(key, timeline.now)).epoch, 1.0, timeline.now)
    timeline.advance(1.0)
    assert (await ops.try_probe(key, "a", 1, 10.0, timeline.now))[0]
    assert not (await ops.try_probe(key, "b", 1, 10.0, timeline.now))[0]
    await ops.release_probe(key, "a", timeline.now)
    assert (await ops.try_probe(key, "b", 1, 10.0, timeline.now))[0]
    timeline.advance(10.0)
    assert (await ops.try_probe(key, "c", 1, 10.0, timeline.now))[0]


async def test_closing_needs_the_half_open_epoch_and_clears_the_window(
    ops: Any, key: str, timeline: Timeline
) -> None:
    for _ in range(3):
        await ops.record_outcome(key, True, 60.0, timeline.now)
    closed = await ops.circuit(key, timeline.now)
    await ops.open_circuit(key, closed.epoch, 5.0, timeline.now)
    timeline.advance(5.0)
    _, half_open = await ops.try_probe(key, "p", 1, 10.0, timeline.now)
    assert not await ops.close_circuit(key, closed.epoch, timeline.now)
    assert await ops.close_circuit(key, half_open.epoch, timeline.now)
    again = await ops.circuit(key, timeline.now)
    assert (again.state, again.break_duration) == ("closed", 0.0)
    assert again.epoch not in (closed.epoch, half_open.epoch)
    assert await ops.record_outcome(key, True, 60.0, timeline.now) == (1, 1)


async def test_a_failed_probe_reopens_for_the_new_break(ops: Any, key: str, timeline: Timeline) -> None:
    await ops.open_circuit(key, (await ops.circuit(key, timeline.now)).epoch, 5.0, timeline.now)
    timeline.advance(5.0)
    _, half_open = await ops.try_probe(key, "p", 1, 10.0, timeline.now)
    assert await ops.open_circuit(key, half_open.epoch, 10.0, timeline.now)
    reopened = await ops.circuit(key, timeline.now)
    assert (reopened.state, reopened.retry_after, reopened.break_duration) == ("open", 10.0, 10.0)
    assert not (await ops.try_probe(key, "q", 1, 10.0, timeline.now))[0]


async def test_reset_closes_whatever_the_state(ops: Any, key: str, timeline: Timeline) -> None:
    await ops.record_outcome(key, True, 60.0, timeline.now)
    await ops.open_circuit(key, (await ops.circuit(key, timeline.now)).epoch, 60.0, timeline.now)
    await ops.reset_circuit(key, timeline.now)
    circuit = await ops.circuit(key, timeline.now)
    assert (circuit.state, circuit.retry_after, circuit.break_duration) == ("closed", 0.0, 0.0)
    assert await ops.record_outcome(key, False, 60.0, timeline.now) == (0, 1)


# -- keyed semaphore with leases ------------------------------------------------------------------------


async def test_a_key_admits_limit_holders_until_one_releases(ops: Any, key: str, timeline: Timeline) -> None:
    now = timeline.now
    assert await ops.try_acquire([key], 2, 30.0, "a", now)
    assert await ops.try_acquire([key], 2, 30.0, "b", now)
    assert not await ops.try_acquire([key], 2, 30.0, "c", now)
    await ops.release([key], "a", now)
    assert await ops.try_acquire([key], 2, 30.0, "c", now)


async def test_several_keys_are_taken_all_or_none(ops: Any, key: str, timeline: Timeline) -> None:
    x, y = f"{key}/x", f"{key}/y"
    now = timeline.now
    assert await ops.try_acquire([x], 1, 30.0, "a", now)
    assert not await ops.try_acquire([y, x], 1, 30.0, "b", now)
    assert await ops.try_acquire([y], 1, 30.0, "c", now)  # b took nothing


async def test_a_lease_ends_by_itself(ops: Any, key: str, timeline: Timeline) -> None:
    assert await ops.try_acquire([key], 1, 30.0, "crashed", timeline.now)
    timeline.advance(29.0)
    assert not await ops.try_acquire([key], 1, 30.0, "b", timeline.now)
    timeline.advance(1.0)
    assert await ops.try_acquire([key], 1, 30.0, "b", timeline.now)


async def test_only_the_holder_releases(ops: Any, key: str, timeline: Timeline) -> None:
    assert await ops.try_acquire([key], 1, 30.0, "holder", timeline.now)
    await ops.release([key], "someone else", timeline.now)
    assert not await ops.try_acquire([key], 1, 30.0, "b", timeline.now)


async def test_a_holder_asking_again_renews_its_lease(ops: Any, key: str, timeline: Timeline) -> None:
    assert await ops.try_acquire([key], 1, 30.0, "a", timeline.now)
    timeline.advance(20.0)
    assert await ops.try_acquire([key], 1, 30.0, "a", timeline.now)
    timeline.advance(20.0)
    assert not await ops.try_acquire([key], 1, 30.0, "b", timeline.now)


# -- adaptive concurrency limit ------------------------------------------------------------------------

# EnterSlot's fields after key and token: lease, initial, minimum, maximum, probe_after.
SLOTS = (30.0, 2, 1, 10, 4)


def _leave(
    key: str, token: str, verdict: str, admitted: Any, target: float = 0.0, capacity: bool = False
) -> tuple[Any, ...]:
    """LeaveSlot's fields for ``token``, admitted as ``admitted`` (an Admission)."""
    return (key, token, verdict, admitted.epoch, target, admitted.in_flight, capacity, *SLOTS[1:])


async def test_a_new_endpoint_admits_its_initial_limit(ops: Any, key: str, timeline: Timeline) -> None:
    now = timeline.now
    first = await ops.enter_slot(key, "a", *SLOTS, now)
    second = await ops.enter_slot(key, "b", *SLOTS, now)
    third = await ops.enter_slot(key, "c", *SLOTS, now)
    assert (first.entered, first.in_flight, first.limit) == (True, 1, 2.0)
    assert (second.entered, second.in_flight) == (True, 2)
    assert (third.entered, third.in_flight) == (False, 2)
    await ops.leave_slot(*_leave(key, "a", "hold", first), now)
    assert (await ops.enter_slot(key, "c", *SLOTS, now)).entered


async def test_slow_start_climbs_a_slot_per_success_up_to_max(ops: Any, key: str, timeline: Timeline) -> None:
    now = timeline.now
    limits = []
    for index in range(20):
        admitted = await ops.enter_slot(key, f"t{index}", *SLOTS, now)
        limits.append(admitted.limit)
        await ops.leave_slot(*_leave(key, f"t{index}", "grow", admitted), now)
    assert limits[:5] == [2.0, 3.0, 4.0, 5.0, 6.0]  # SLOW_START_STEP
    assert limits[-1] == 10.0  # SLOTS' maximum


async def test_a_refusal_for_want_of_room_lowers_to_the_slots_held_less_one(
    ops: Any, key: str, timeline: Timeline
) -> None:
    now = timeline.now
    for index in range(3):  # slow start to 5 (a slot per success)
        admitted = await ops.enter_slot(key, f"g{index}", *SLOTS, now)
        await ops.leave_slot(*_leave(key, f"g{index}", "grow", admitted), now)
    held = [await ops.enter_slot(key, f"h{index}", *SLOTS, now) for index in range(5)]
    assert [h.entered for h in held] == [True] * 5 and held[0].limit == 5.0
    # The first admitted (1 in flight then) is refused as its answer comes with 5 held: 4 is the capacity.
    await ops.leave_slot(*_leave(key, "h0", "lower", held[0], target=0.0, capacity=True), now)
    after = await ops.enter_slot(key, "next", *SLOTS, now)
    assert after.limit == 4.0 and after.epoch != held[0].epoch
    assert not after.entered  # 4 still held


async def test_a_refusal_sent_under_an_older_limit_lowers_it_to_what_it_met(
    ops: Any, key: str, timeline: Timeline
) -> None:
    now = timeline.now
    for index in range(6):  # slow start to 8
        admitted = await ops.enter_slot(key, f"g{index}", *SLOTS, now)
        await ops.leave_slot(*_leave(key, f"g{index}", "grow", admitted), now)
    held = [await ops.enter_slot(key, f"h{index}", *SLOTS, now) for index in range(8)]
    await ops.leave_slot(*_leave(key, "h0", "lower", held[0], target=0.0, capacity=True), now)  # 8 -> 7
    for name, answer in (("h1", held[1]), ("h2", held[2]), ("h3", held[3])):
        await ops.leave_slot(*_leave(key, name, "hold", answer), now)
    # h4 was sent under the old limit and is refused with 4 held: the vendor holds 3, not 7.
    await ops.leave_slot(*_leave(key, "h4", "lower", held[4], target=3.0, capacity=True), now)
    after = await ops.enter_slot(key, "peek", *SLOTS, now)
    assert after.limit == 3.0 and after.epoch != held[0].epoch
    # A refusal under an older limit that met more than the limit allows says nothing new.
    await ops.leave_slot(*_leave(key, "h5", "lower", held[5], target=5.0, capacity=True), now)
    assert (await ops.enter_slot(key, "again", *SLOTS, now)).limit == 3.0


async def test_only_the_first_answer_of_an_epoch_lowers_the_limit(
    ops: Any, key: str, timeline: Timeline
) -> None:
    now = timeline.now
    a = await ops.enter_slot(key, "a", *SLOTS, now)
    b = await ops.enter_slot(key, "b", *SLOTS, now)
    await ops.leave_slot(*_leave(key, "a", "lower", a, target=1.0), now)
    await ops.leave_slot(*_leave(key, "b", "lower", b, target=1.0), now)  # same epoch: says nothing new
    assert (await ops.enter_slot(key, "c", *SLOTS, now)).limit == 1.0
    # A pressure signal (no capacity) keeps its target even with slots held.
    x = await ops.enter_slot(key, "x", *SLOTS, now)
    assert not x.entered


async def test_after_a_lowering_the_limit_probes_one_slot_more_after_probe_after_wins(
    ops: Any, key: str, timeline: Timeline
) -> None:
    now = timeline.now
    a = await ops.enter_slot(key, "a", *SLOTS, now)
    await ops.leave_slot(*_leave(key, "a", "lower", a, target=2.0), now)
    limits = []
    for index in range(32):  # probe_after = 4 a slot, 4 slots counted: +1 at 16 wins, +8 at 32 (max 10)
        admitted = await ops.enter_slot(key, f"w{index}", *SLOTS, now)
        await ops.leave_slot(*_leave(key, f"w{index}", "grow", admitted), now)
        limits.append((await ops.enter_slot(key, "peek", *SLOTS, now)).limit)
        await ops.leave_slot(key, "peek", "hold", 0, 0.0, 0, False, *SLOTS[1:], now)
    assert limits[15] == pytest.approx(3.0)
    assert limits[0] == pytest.approx(2.0 + (1 / 16) ** 3)
    assert limits[31] == 10.0


async def test_a_success_beyond_the_settled_limit_restarts_slow_start(
    ops: Any, key: str, timeline: Timeline
) -> None:
    now = timeline.now
    a = await ops.enter_slot(key, "a", *SLOTS, now)
    await ops.leave_slot(*_leave(key, "a", "lower", a, target=1.0), now)
    for index in range(24):  # 24 wins: 1 + (24 / 16) ** 3, three slots open
        admitted = await ops.enter_slot(key, f"w{index}", *SLOTS, now)
        await ops.leave_slot(*_leave(key, f"w{index}", "grow", admitted), now)
    held = [await ops.enter_slot(key, name, *SLOTS, now) for name in ("p", "q", "r")]
    assert [h.in_flight for h in held] == [1, 2, 3] and all(h.entered for h in held)
    await ops.leave_slot(*_leave(key, "q", "grow", held[1]), now)  # one above the base: no proof
    climbing = await ops.enter_slot(key, "x", *SLOTS, now)
    assert climbing.limit == pytest.approx(1 + (25 / 16) ** 3)  # still the cubic climb
    await ops.leave_slot(*_leave(key, "x", "hold", climbing), now)
    await ops.leave_slot(*_leave(key, "r", "grow", held[2]), now)  # two above: slow start from 3
    await ops.leave_slot(*_leave(key, "p", "grow", held[0]), now)
    assert (await ops.enter_slot(key, "s", *SLOTS, now)).limit == 4.0  # SLOW_START_STEP


async def test_a_slot_lease_ends_by_itself(ops: Any, key: str, timeline: Timeline) -> None:
    now = timeline.now
    assert (await ops.enter_slot(key, "crashed", *SLOTS, now)).entered
    assert (await ops.enter_slot(key, "crashed too", *SLOTS, now)).entered
    assert not (await ops.enter_slot(key, "b", *SLOTS, now)).entered
    timeline.advance(30.0)
    assert (await ops.enter_slot(key, "b", *SLOTS, timeline.now)).entered


async def test_only_the_holder_leaves_its_slot(ops: Any, key: str, timeline: Timeline) -> None:
    now = timeline.now
    a = await ops.enter_slot(key, "a", *SLOTS, now)
    await ops.enter_slot(key, "b", *SLOTS, now)
    await ops.leave_slot(key, "someone else", "hold", a.epoch, 0.0, 0, False, *SLOTS[1:], now)
    assert not (await ops.enter_slot(key, "c", *SLOTS, now)).entered


# -- pauses --------------------------------------------------------------------------------------------


async def test_a_pause_counts_down_and_the_longest_wins(ops: Any, key: str, timeline: Timeline) -> None:
    assert await ops.paused_for(key, timeline.now) == 0.0
    await ops.pause(key, 10.0, timeline.now)
    await ops.pause(key, 3.0, timeline.now)  # shorter: changes nothing
    timeline.advance(4.0)
    assert await ops.paused_for(key, timeline.now) == pytest.approx(6.0)
    await ops.pause(key, 8.0, timeline.now)
    assert await ops.paused_for(key, timeline.now) == pytest.approx(8.0)
    timeline.advance(9.0)
    assert await ops.paused_for(key, timeline.now) == 0.0


async def test_end_pause_ends_a_pause_at_once_and_a_later_pause_still_holds(
    ops: Any, key: str, timeline: Timeline
) -> None:
    await ops.end_pause(key, timeline.now)  # no pause: nothing to end, no error
    await ops.pause(key, 3600.0, timeline.now)
    await ops.end_pause(key, timeline.now)
    assert await ops.paused_for(key, timeline.now) == 0.0
    await ops.pause(key, 5.0, timeline.now)  # ended is not forbidden: the next pause holds again
    assert await ops.paused_for(key, timeline.now) == pytest.approx(5.0)


# -- rate limiter ------------------------------------------------------------------------------------


async def test_with_no_pace_every_send_goes_at_once(ops: Any, key: str, timeline: Timeline) -> None:
    tickets = [await ops.limiter_acquire(key, 0.0, 1.0, 0.0, timeline.now) for _ in range(5)]
    assert [t.wait for t in tickets] == [0.0] * 5
    assert (tickets[-1].rate, tickets[-1].since_throttle) == (0.0, 0.0)
    assert tickets[-1].sent_rate == 5.0


async def test_a_fixed_pace_queues_sends_after_the_burst(ops: Any, key: str, timeline: Timeline) -> None:
    waits = [(await ops.limiter_acquire(key, 2.0, 2.0, 60.0, timeline.now)).wait for _ in range(5)]
    assert waits == [0.0, 0.0, 0.5, 1.0, 1.5]
    timeline.advance(1.5)
    assert (await ops.limiter_acquire(key, 2.0, 2.0, 60.0, timeline.now)).wait == pytest.approx(0.5)


async def test_a_wait_past_max_wait_reserves_nothing(ops: Any, key: str, timeline: Timeline) -> None:
    assert (await ops.limiter_acquire(key, 1.0, 1.0, 0.5, timeline.now)).wait == 0.0
    refused = await ops.limiter_acquire(key, 1.0, 1.0, 0.5, timeline.now)
    assert refused.wait == 1.0
    again = await ops.limiter_acquire(key, 1.0, 1.0, 0.5, timeline.now)
    assert again.wait == 1.0  # the refusal left the queue as it was
    assert again.sent_rate == 1.0  # and was not counted as a send


async def test_a_learned_rate_paces_from_a_full_bucket(ops: Any, key: str, timeline: Timeline) -> None:
    first = await ops.limiter_acquire(key, 0.0, 1.0, 60.0, timeline.now)
    assert await ops.limiter_learn(key, first.version, 4.0, 8.0, True, timeline.now)
    timeline.advance(1.0)
    paced = [await ops.limiter_acquire(key, 0.0, 1.0, 60.0, timeline.now) for _ in range(3)]
    assert [t.wait for t in paced] == [0.0, 0.25, 0.5]
    assert (paced[0].rate, paced[0].max_rate) == (4.0, 8.0)
    assert paced[0].since_throttle == pytest.approx(1.0)
    assert paced[0].version != first.version


async def test_the_lower_of_fixed_and_learned_rate_paces(ops: Any, key: str, timeline: Timeline) -> None:
    first = await ops.limiter_acquire(key, 2.0, 1.0, 60.0, timeline.now)
    await ops.limiter_learn(key, first.version, 10.0, 10.0, True, timeline.now)
    assert (await ops.limiter_acquire(key, 2.0, 1.0, 60.0, timeline.now)).wait == 0.5


async def test_only_the_first_learner_of_a_version_lowers_it(ops: Any, key: str, timeline: Timeline) -> None:
    seen = await ops.limiter_acquire(key, 0.0, 1.0, 60.0, timeline.now)
    assert await ops.limiter_learn(key, seen.version, 5.0, 7.0, True, timeline.now)
    assert not await ops.limiter_learn(key, seen.version, 1.0, 5.0, True, timeline.now)
    now_seen = await ops.limiter_acquire(key, 0.0, 1.0, 60.0, timeline.now)
    assert now_seen.rate == 5.0
    # A recovery keeps the version, so throttles answering sends paced at it still count.
    assert await ops.limiter_learn(key, now_seen.version, 6.0, 7.0, False, timeline.now)
    after = await ops.limiter_acquire(key, 0.0, 1.0, 60.0, timeline.now)
    assert (after.rate, after.version) == (6.0, now_seen.version)


async def test_reading_the_record_reserves_and_counts_nothing(ops: Any, key: str, timeline: Timeline) -> None:
    unseen = await ops.limiter_state(key, timeline.now)
    assert (unseen.wait, unseen.rate, unseen.max_rate, unseen.since_throttle, unseen.sent_rate) == (
        0,
        0,
        0,
        0,
        0,
    )
    first = await ops.limiter_acquire(key, 1.0, 1.0, 60.0, timeline.now)
    await ops.limiter_learn(key, first.version, 1.0, 2.0, True, timeline.now)
    timeline.advance(0.5)
    for _ in range(3):
        state = await ops.limiter_state(key, timeline.now)
    assert (state.wait, state.rate, state.max_rate, state.sent_rate) == (0.0, 1.0, 2.0, 1.0)
    assert state.since_throttle == pytest.approx(0.5)
    assert (await ops.limiter_acquire(key, 1.0, 1.0, 60.0, timeline.now)).wait == pytest.approx(0.5)


async def test_admit_reserves_as_acquire_does_while_the_key_is_not_paused(
    ops: Any, key: str, timeline: Timeline
) -> None:
    admitted = [await ops.limiter_admit(key, 2.0, 2.0, 60.0, timeline.now) for _ in range(3)]
    assert [(t.wait, t.paused) for t in admitted] == [(0.0, 0.0), (0.0, 0.0), (0.5, 0.0)]
    refused = await ops.limiter_admit(key, 2.0, 2.0, 0.5, timeline.now)
    assert (refused.wait, refused.paused, refused.sent_rate) == (1.0, 0.0, 3.0)  # past max_wait: not reserved


async def test_a_paused_key_admits_nothing_and_says_how_long_the_pause_lasts(
    ops: Any, key: str, timeline: Timeline
) -> None:
    await ops.pause(key, 10.0, timeline.now)
    held = [await ops.limiter_admit(key, 1.0, 1.0, 60.0, timeline.now) for _ in range(3)]
    assert [(t.wait, t.paused, t.sent_rate) for t in held] == [(0.0, 10.0, 0.0)] * 3
    timeline.advance(4.0)
    assert (await ops.limiter_admit(key, 1.0, 1.0, 60.0, timeline.now)).paused == 6.0
    timeline.advance(6.0)
    after = [await ops.limiter_admit(key, 1.0, 1.0, 60.0, timeline.now) for _ in range(2)]
    assert [(t.wait, t.paused) for t in after] == [(0.0, 0.0), (1.0, 0.0)]  # the held ones queued nothing
    assert after[-1].sent_rate == 2.0  # nor were they counted


async def test_a_paused_key_shows_its_learned_rate(ops: Any, key: str, timeline: Timeline) -> None:
    first = await ops.limiter_admit(key, 0.0, 1.0, 60.0, timeline.now)
    assert await ops.limiter_learn(key, first.version, 3.0, 6.0, True, timeline.now)
    await ops.pause(key, 5.0, timeline.now)
    held = await ops.limiter_admit(key, 0.0, 1.0, 60.0, timeline.now)
    state = await ops.limiter_state(key, timeline.now)
    assert (held.paused, held.wait) == (5.0, 0.0)
    assert (held.version, held.rate, held.max_rate, held.sent_rate) == (
        state.version,
        3.0,
        6.0,
        state.sent_rate,
    )


# -- counts brought along with an operation (a budget's earned tokens, a breaker's successes) ----------


async def test_a_spend_with_earned_tokens_deposits_them_first(ops: Any, key: str, timeline: Timeline) -> None:
    now = timeline.now
    assert await ops.try_spend(key, 3.0, 3.0, now)  # empty
    assert not await ops.try_spend(key, 1.0, 3.0, now, earned=0.5)  # 0.5 is not a token
    assert await ops.try_spend(key, 1.0, 3.0, now, earned=0.5)  # 1.0 is
    assert await ops.try_spend(key, 1.0, 3.0, now, earned=10.0)  # capped at 3 before the spend
    assert await ops.deposit(key, 0.0, 3.0, now) == 2.0


async def test_an_outcome_with_successes_counts_them_first_in_the_bucket_of_their_age(
    ops: Any, key: str, timeline: Timeline
) -> None:
    assert await ops.record_outcome(key, True, 10.0, timeline.now, successes=4, age=0.0) == (1, 5)
    timeline.advance(5.0)
    # Three successes of 4 s ago (inside the window) and two older than it (dropped).
    assert await ops.record_outcome(key, True, 10.0, timeline.now, successes=3, age=4.0) == (2, 9)
    assert await ops.record_outcome(key, False, 10.0, timeline.now, successes=2, age=30.0) == (2, 10)
    timeline.advance(5.5)  # the first outcome and its four successes leave the window, the three stay
    assert await ops.record_outcome(key, False, 10.0, timeline.now) == (1, 6)


async def test_the_sent_rate_slides_over_the_last_second(ops: Any, key: str, timeline: Timeline) -> None:
    timeline.now = 2000.0  # a whole second, so the counting slots are known
    for _ in range(4):
        await ops.limiter_acquire(key, 0.0, 1.0, 60.0, timeline.now)
    timeline.advance(1.25)  # a quarter into the next slot: 3/4 of the last slot's 4 sends
    assert (await ops.limiter_acquire(key, 0.0, 1.0, 60.0, timeline.now)).sent_rate == pytest.approx(4.0)
    timeline.advance(5.0)
    assert (await ops.limiter_acquire(key, 0.0, 1.0, 60.0, timeline.now)).sent_rate == 1.0


# -- races between threads (sync operations) -----------------------------------------------------------

THREADS = 32


def _race(work: Callable[[int], object]) -> list[Any]:
    """Run ``work(i)`` on THREADS threads released together; their results, in thread order."""
    results: list[Any] = [None] * THREADS
    start = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    # Switch threads every microsecond instead of every 5 ms, so a store whose check and take are
    # not one atomic step is caught between them.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        sys.setswitchinterval(interval)
    assert not any(t.is_alive() for t in threads), "a thread is stuck: deadlock"
    assert not errors, errors
    return results


@pytest.mark.parametrize("tokens", [1.0, 7.5, 10.0])
def test_racing_spenders_get_exactly_the_whole_tokens(
    store: StateStore, key: str, timeline: Timeline, tokens: float
) -> None:
    Store(store).try_spend(key, 10.0, 10.0, timeline.now)  # empty it
    Store(store).deposit(key, tokens, 10.0, timeline.now)
    spent = _race(lambda i: [Store(store).try_spend(key, 1.0, 10.0, timeline.now) for _ in range(3)])
    assert sum(map(sum, spent)) == math.floor(tokens)
    assert Store(store).deposit(key, 0.0, 10.0, timeline.now) == pytest.approx(tokens - math.floor(tokens))


def test_racing_depositors_and_spenders_never_lose_or_overdraw_a_token(
    store: StateStore, key: str, timeline: Timeline
) -> None:
    cap = 1e9
    Store(store).try_spend(key, cap, cap, timeline.now)  # empty it
    rounds = 300

    def work(i: int) -> int:
        spent = 0
        for _ in range(rounds):
            Store(store).deposit(key, 0.5, cap, timeline.now)
            spent += Store(store).try_spend(key, 1.0, cap, timeline.now)
        return spent

    spent = sum(_race(work))
    left = Store(store).deposit(key, 0.0, cap, timeline.now)
    assert left >= 0
    assert left + spent == THREADS * rounds * 0.5  # every token deposited is spent or still there


@pytest.mark.parametrize("probes", [1, 3])
def test_racing_callers_get_exactly_the_allowed_probes(
    store: StateStore, key: str, timeline: Timeline, probes: int
) -> None:
    for _ in range(10):  # ten races, each after a fresh break
        Store(store).open_circuit(key, Store(store).circuit(key, timeline.now).epoch, 5.0, timeline.now)
        timeline.advance(5.0)
        taken = _race(lambda i: Store(store).try_probe(key, f"t{i}", probes, 30.0, timeline.now)[0])
        assert sum(taken) == probes
        assert Store(store).circuit(key, timeline.now).state == "half_open"


def _acquire(store: StateStore, timeline: Timeline) -> Callable[[list[str], str], bool]:
    def acquire(keys: list[str], token: str) -> bool:
        return Store(store).try_acquire(keys, 1, 30.0, token, timeline.now)

    return acquire


def test_racing_holders_never_share_a_key_and_never_deadlock(
    store: StateStore, key: str, timeline: Timeline
) -> None:
    acquire = _acquire(store, timeline)
    names = [f"{key}/{n}" for n in "abc"]
    # Each thread wants two of the three keys, named in a different order: a lock-per-key design
    # taking them one by one would deadlock here.
    wanted = [[names[i % 3], names[(i + 1 + i % 2) % 3]] for i in range(THREADS)]
    inside = dict.fromkeys(names, 0)
    overlaps: list[str] = []
    guard = threading.Lock()
    rounds = 20

    def work(i: int) -> int:
        entered = 0
        while entered < rounds:
            if not acquire(wanted[i], f"t{i}"):
                time.sleep(0)  # no wait: only hands the GIL to a thread that may be about to release
                continue
            with guard:
                for name in wanted[i]:
                    inside[name] += 1
                    if inside[name] > 1:
                        overlaps.append(name)
            time.sleep(0)  # no wait: gives another thread the chance to (wrongly) enter meanwhile
            with guard:
                for name in wanted[i]:
                    inside[name] -= 1
            Store(store).release(wanted[i], f"t{i}", timeline.now)
            entered += 1
        return entered

    assert _race(work) == [rounds] * THREADS
    assert overlaps == []


@pytest.mark.parametrize(
    ("success_between", "expected"), [(False, 3.5), (True, 5.0)], ids=["halved", "measured"]
)
async def test_a_refusal_right_after_another_halves_the_limit_unless_a_success_came_between(
    ops: Any, key: str, timeline: Timeline, success_between: bool, expected: float
) -> None:
    """Refused again with no success between: the vendor fell, halve and slow start back. With any
    success between (even of an attempt sent under the older limit) it was a probe: the measure."""
    now = timeline.now
    for index in range(6):  # slow start to 8
        admitted = await ops.enter_slot(key, f"g{index}", *SLOTS, now)
        await ops.leave_slot(*_leave(key, f"g{index}", "grow", admitted), now)
    held = [await ops.enter_slot(key, f"h{index}", *SLOTS, now) for index in range(8)]
    assert held[0].limit == 8.0 and all(h.entered for h in held)
    await ops.leave_slot(
        *_leave(key, "h0", "lower", held[0], capacity=True), now
    )  # 8 held: 7 is the capacity
    await ops.leave_slot(*_leave(key, "h1", "hold", held[1]), now)
    probe = await ops.enter_slot(key, "x", *SLOTS, now)  # the seventh in flight, under the new limit
    assert probe.entered and probe.limit == 7.0
    if success_between:
        await ops.leave_slot(*_leave(key, "h2", "grow", held[2]), now)
    await ops.leave_slot(*_leave(key, "x", "lower", probe, capacity=True), now)
    assert (await ops.enter_slot(key, "peek", *SLOTS, now)).limit == expected
