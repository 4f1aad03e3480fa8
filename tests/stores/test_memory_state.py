"""MemoryState beyond the shared contract: idle keys are forgotten, so memory stays bounded."""

from __future__ import annotations

import pytest

from resilient_client.stores import Acquire, MemoryState
from resilient_client.stores.memory import _SWEEP_EVERY
from store_ops import Store


def held_records(store: MemoryState) -> int:
    """Records of every kind the store keeps (private: memory is what this file is about)."""
    kinds = (store._buckets, store._windows, store._circuits, store._leases, store._pauses, store._rates)
    return sum(len(records) for records in kinds)


def test_keys_idle_past_the_idle_time_are_swept_away() -> None:
    store = MemoryState(idle_seconds=60.0)
    for n in range(_SWEEP_EVERY - 1):
        Store(store).deposit(f"budget/{n}", 1.0, 10.0, 0.0)
    assert held_records(store) == _SWEEP_EVERY - 1
    Store(store).deposit("budget/late", 1.0, 10.0, 61.0)  # the operation that sweeps
    assert held_records(store) == 1


def test_a_key_in_use_is_kept() -> None:
    store = MemoryState(idle_seconds=60.0)
    Store(store).try_spend("busy", 1.0, 10.0, 0.0)
    for n in range(_SWEEP_EVERY):
        Store(store).deposit("busy", 0.0, 10.0, 50.0 + n * 0.01)
    assert Store(store).deposit("busy", 0.0, 10.0, 70.0) == 9.0  # not forgotten (it would be full again)


def test_state_that_still_matters_outlives_the_idle_time() -> None:
    store = MemoryState(idle_seconds=60.0)
    Store(store).pause("paused", 3600.0, 0.0)
    Store(store).try_acquire(["held"], 1, 600.0, "holder", 0.0)
    Store(store).open_circuit("broken", 0, 300.0, 0.0)
    for n in range(_SWEEP_EVERY):
        Store(store).deposit(f"other/{n}", 1.0, 10.0, 120.0)
    assert Store(store).paused_for("paused", 120.0) == 3480.0
    assert not Store(store).try_acquire(["held"], 1, 600.0, "other", 120.0)
    assert Store(store).circuit("broken", 120.0).state == "open"


def test_forgetting_a_key_is_the_same_as_never_having_seen_it() -> None:
    store = MemoryState(idle_seconds=60.0)
    Store(store).open_circuit("broken", 0, 10.0, 0.0)
    for n in range(_SWEEP_EVERY):
        Store(store).deposit(f"other/{n}", 1.0, 10.0, 100.0)
    assert Store(store).circuit("broken", 100.0).state == "closed"
    assert held_records(store) == _SWEEP_EVERY


@pytest.mark.parametrize("before", range(3))
def test_a_sweep_while_keys_are_taken_keeps_every_hold(before: int) -> None:
    # The sweep falls on the touch of the first, second or third key taken: a key created by the
    # same call and not yet touched was swept away, and its hold with it (found by the 32-thread race).
    store = MemoryState(idle_seconds=60.0)
    for n in range(_SWEEP_EVERY - 1 - before):
        Store(store).deposit(f"budget/{n}", 1.0, 10.0, 0.0)
    assert Store(store).try_acquire(["a", "b", "c"], 1, 30.0, "holder", 100.0)
    for key in ("a", "b", "c"):
        assert not Store(store).try_acquire([key], 1, 30.0, "another", 100.0), key


def test_a_shorter_hold_taken_after_a_longer_one_does_not_shorten_the_keys_life() -> None:
    # Found in review: the record's expiry followed the latest holder's lease, so a sweep after the
    # short lease ended (idle time shorter than the leases) dropped the long hold with it.
    store = MemoryState(idle_seconds=1.0)
    assert Store(store).try_acquire(["account"], 2, 100.0, "long", 0.0)
    assert Store(store).try_acquire(["account"], 2, 6.0, "short", 0.0)
    for _ in range(_SWEEP_EVERY):
        Store(store).deposit("other", 1.0, 10.0, 10.0)
    assert not Store(store).try_acquire(["account"], 1, 6.0, "third", 10.0)  # "long" holds it until 100


def test_a_release_of_the_last_holder_drops_the_key() -> None:
    store = MemoryState()
    Store(store).try_acquire(["a", "b"], 1, 30.0, "t", 0.0)
    Store(store).release(["a", "b"], "t", 0.0)
    assert held_records(store) == 0


@pytest.mark.parametrize("idle", [0.0, -1.0, float("inf"), float("nan")])
def test_the_idle_time_must_be_a_positive_finite_number(idle: float) -> None:
    with pytest.raises(ValueError, match="idle_seconds must be a positive number"):
        MemoryState(idle_seconds=idle)


@pytest.mark.parametrize("keys", [[], "account", None])
def test_an_acquire_of_no_list_of_keys_is_refused(keys: object) -> None:
    with pytest.raises(ValueError, match="lease keys must be a non-empty list of str"):
        Acquire(keys, 1, 30.0, "t")


def test_repr_shows_the_idle_time() -> None:
    assert repr(MemoryState(idle_seconds=30.0)) == "MemoryState(idle_seconds=30.0)"


# -- an operation that brings counts along is the two operations it stands for ------------------------


@pytest.mark.parametrize(
    ("count", "age", "now"),
    [
        pytest.param(0, 0.0, 5.0, id="no-successes"),
        pytest.param(7, 0.0, 5.0, id="successes-now"),
        pytest.param(5, 3.5, 5.0, id="successes-in-an-earlier-bucket"),
        pytest.param(5, 60.0, 5.0, id="successes-already-outside-the-window"),
        pytest.param(3, -1.0, 5.0, id="a-negative-age-is-now"),
        pytest.param(4, 0.5, 25.0, id="the-window-slides-first"),
    ],
)
@pytest.mark.parametrize("failed", [True, False])
def test_an_outcome_with_successes_is_record_successes_then_record_outcome(
    count: int, age: float, now: float, failed: bool
) -> None:
    one, two = MemoryState(), MemoryState()
    for store in (one, two):
        for step in range(6):  # a window with history in several buckets
            Store(store).record_outcome("breaker/h", step % 3 == 0, 10.0, step * 1.0)
    if count:
        Store(two).record_successes("breaker/h", count, age, 10.0, now)
    expected = Store(two).record_outcome("breaker/h", failed, 10.0, now)
    assert Store(one).record_outcome("breaker/h", failed, 10.0, count, age, now) == expected
    # And what follows sees the same window.
    assert Store(one).record_outcome("breaker/h", True, 10.0, now + 1.0) == Store(two).record_outcome(
        "breaker/h", True, 10.0, now + 1.0
    )


@pytest.mark.parametrize(
    ("start", "earned", "cap"),
    [
        pytest.param(None, 0.0, 10.0, id="a-new-bucket-nothing-earned"),
        pytest.param(0.0, 0.6, 10.0, id="not-enough-even-with-what-was-earned"),
        pytest.param(0.5, 0.6, 10.0, id="enough-with-what-was-earned"),
        pytest.param(9.5, 4.0, 10.0, id="earned-beyond-the-cap-is-cut"),
        pytest.param(9.0, 0.0, 3.0, id="a-lowered-cap-cuts-the-bucket"),
    ],
)
def test_a_spend_with_earned_tokens_is_deposit_then_try_spend(
    start: float | None, earned: float, cap: float
) -> None:
    one, two = MemoryState(), MemoryState()
    if start is not None:
        for store in (one, two):
            assert Store(store).try_spend("budget/v", 100.0 - start, 100.0, 0.0)  # a new bucket starts full
    if earned > 0:
        Store(two).deposit("budget/v", earned, cap, 1.0)
    expected = Store(two).try_spend("budget/v", 1.0, cap, 1.0)
    assert Store(one).try_spend("budget/v", 1.0, cap, earned, 1.0) == expected
    assert Store(one).deposit("budget/v", 0.0, cap, 2.0) == pytest.approx(
        Store(two).deposit("budget/v", 0.0, cap, 2.0)
    )
