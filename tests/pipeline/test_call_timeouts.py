"""The longest of a request's timeouts (what decides whether a retry's timeouts are cut to the
deadline): the last one measured is remembered, and an equal dict must read the same as measuring."""

from __future__ import annotations

import math
import types
from collections import OrderedDict
from typing import Any

import pytest

from resilient_client import _pipeline

FIVES = {"connect": 5.0, "read": 5.0, "write": 5.0, "pool": 5.0}


@pytest.mark.parametrize(
    ("first", "then", "expected"),
    [
        pytest.param(FIVES, dict(FIVES), 5.0, id="equal-dict"),
        pytest.param(FIVES, {"pool": 5.0, "write": 5.0, "read": 5.0, "connect": 5.0}, 5.0, id="other-order"),
        pytest.param(FIVES, {**FIVES, "read": 30.0}, 30.0, id="one-longer"),
        pytest.param(FIVES, {**FIVES, "read": None}, math.inf, id="one-none"),
        pytest.param(FIVES, {"connect": 5.0, "read": 5.0, "write": 5.0}, math.inf, id="one-missing"),
        pytest.param(FIVES, {"connect": 5, "read": 5, "write": 5, "pool": 5}, 5.0, id="ints-equal-to-it"),
        pytest.param(FIVES, None, math.inf, id="none-at-all"),
        pytest.param(FIVES, {}, math.inf, id="empty"),
        pytest.param({**FIVES, "read": None}, {**FIVES, "read": None}, math.inf, id="none-not-kept"),
        pytest.param({**FIVES, "read": 7}, {**FIVES, "read": 7.0}, 7.0, id="int-not-kept"),
        pytest.param(FIVES, types.MappingProxyType(FIVES), math.inf, id="a-mapping-is-no-timeouts"),
        pytest.param(FIVES, OrderedDict(FIVES), 5.0, id="a-dict-subclass-is-measured"),
    ],
)
def test_the_longest_timeout_reads_the_same_after_another_was_measured(
    monkeypatch: pytest.MonkeyPatch, first: Any, then: Any, expected: float
) -> None:
    monkeypatch.setattr(_pipeline, "_measured", ({}, math.inf))
    _pipeline._longest(first)
    assert _pipeline._longest(then) == expected
    assert _pipeline._longest(type(then)(then) if isinstance(then, dict) else then) == expected


def test_a_nan_timeout_is_measured_each_time() -> None:
    # ``max`` of values that do not order depends on their order, which dict equality ignores: such
    # a dict is never the remembered one.
    nan = math.nan
    first = {"connect": nan, "read": 5.0, "write": 5.0, "pool": 5.0}
    reordered = {"read": 5.0, "connect": nan, "write": 5.0, "pool": 5.0}
    assert math.isnan(_pipeline._longest(first))
    assert _pipeline._longest(reordered) == 5.0
    assert math.isnan(_pipeline._longest(first))


def test_the_remembered_timeouts_are_a_copy() -> None:
    # The caller may change its dict afterwards: what was measured is not changed with it.
    timeouts = {"connect": 5.0, "read": 5.0, "write": 5.0, "pool": 8.0}
    assert _pipeline._longest(timeouts) == 8.0
    timeouts["pool"] = 50.0
    assert _pipeline._longest(timeouts) == 50.0
