"""RedisState gives exactly MemoryState's answers: random runs of operations on both, compared.

The contract suite checks chosen cases; this runs sequences nobody chose (interleaved kinds of state
on a few shared keys, stale epochs and versions, time moving on by uneven steps) and requires equal
answers, floats included, bit for bit. Both stores draw epochs from a counter starting at 1, so even
the epochs match. The Redis store takes the run's ``now`` as its clock (``_clock_from_caller``).
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redis_process import RedisProcess
from resilient_client.stores import MemoryState
from resilient_client.stores.redis import RedisState
from store_ops import Store

KEYS = st.sampled_from(["a", "b", "c"])
TOKENS = st.sampled_from(["t1", "t2", "t3"])
SECONDS = st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.5, 10.0])
#: An epoch or version: the last one the run saw, or a stale one.
SEEN = st.sampled_from(["last", 0, 1, 2, 3])

OPERATIONS = st.one_of(
    st.tuples(st.just("advance"), st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 3.0, 11.0])),
    st.tuples(
        st.just("deposit"), KEYS, st.sampled_from([0.0, 0.1, 0.2, 0.5, 1.0]), st.sampled_from([1.0, 2.0, 2.5])
    ),
    st.tuples(
        st.just("try_spend"),
        KEYS,
        st.sampled_from([0.5, 1.0]),
        st.sampled_from([1.0, 2.0, 2.5]),
        st.sampled_from([0.0, 0.2, 0.6, 3.0]),
    ),
    st.tuples(
        st.just("record_outcome"),
        KEYS,
        st.booleans(),
        st.sampled_from([1.0, 10.0]),
        st.sampled_from([0, 1, 5]),
        st.sampled_from([0.0, 0.3, 4.0, 30.0]),
    ),
    st.tuples(
        st.just("record_successes"),
        KEYS,
        st.sampled_from([1, 5]),
        st.sampled_from([0.0, 0.3, 4.0, 30.0]),
        st.sampled_from([1.0, 10.0]),
    ),
    st.tuples(st.just("circuit"), KEYS),
    st.tuples(st.just("try_probe"), KEYS, TOKENS, st.sampled_from([1, 2]), SECONDS),
    st.tuples(st.just("release_probe"), KEYS, TOKENS),
    st.tuples(st.just("open_circuit"), KEYS, SEEN, SECONDS),
    st.tuples(st.just("close_circuit"), KEYS, SEEN),
    st.tuples(st.just("reset_circuit"), KEYS),
    st.tuples(
        st.just("try_acquire"),
        st.lists(KEYS, min_size=1, max_size=3),
        st.sampled_from([1, 2]),
        SECONDS,
        TOKENS,
    ),
    st.tuples(st.just("release"), st.lists(KEYS, min_size=1, max_size=3), TOKENS),
    st.tuples(st.just("pause"), KEYS, SECONDS),
    st.tuples(st.just("paused_for"), KEYS),
    st.tuples(
        st.just("limiter_acquire"),
        KEYS,
        st.sampled_from([0.0, 1.0, 4.0]),
        st.sampled_from([1.0, 3.0]),
        SECONDS,
    ),
    st.tuples(
        st.just("limiter_admit"),
        KEYS,
        st.sampled_from([0.0, 1.0, 4.0]),
        st.sampled_from([1.0, 3.0]),
        SECONDS,
    ),
    st.tuples(st.just("limiter_state"), KEYS),
    st.tuples(
        st.just("limiter_learn"),
        KEYS,
        SEEN,
        st.sampled_from([0.5, 2.0, 8.0]),
        st.sampled_from([4.0, 8.0]),
        st.booleans(),
    ),
)

_prefixes = itertools.count()


def run(store: Any, operations: list[tuple[Any, ...]]) -> list[Any]:
    now = 1000.0
    epochs: dict[str, int] = {}
    versions: dict[str, int] = {}
    answers: list[Any] = []
    for name, *args in operations:
        if name == "advance":
            now += args[0]
            continue
        if name in ("open_circuit", "close_circuit"):
            args[1] = epochs.get(args[0], 0) if args[1] == "last" else args[1]
        if name == "limiter_learn":
            args[1] = versions.get(args[0], 0) if args[1] == "last" else args[1]
        answer = getattr(Store(store), name)(*args, now)
        if name == "circuit":
            epochs[args[0]] = answer.epoch
        if name == "try_probe":
            epochs[args[0]] = answer[1].epoch
        if name in ("limiter_acquire", "limiter_admit", "limiter_state"):
            versions[args[0]] = answer.version
        answers.append((name, answer))
    return answers


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=st.lists(OPERATIONS, max_size=40))
def test_redis_answers_exactly_as_memory_does(
    redis_process: RedisProcess, operations: list[tuple[Any, ...]]
) -> None:
    redis_store = RedisState(
        redis_process.url, prefix=f"differential{next(_prefixes)}", timeout=5.0, on_unavailable="raise"
    )
    redis_store._clock_from_caller = True
    try:
        assert run(redis_store, operations) == run(MemoryState(), operations)
    finally:
        redis_store.close()
