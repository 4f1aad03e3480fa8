"""The strategy tables: SPEC defaults, and bad values reported by key path like every policy problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from resilient_client import load_policy
from resilient_client._settings import (
    BreakerSettings,
    BudgetSettings,
    GuardSettings,
    RateLimitSettings,
    StateSettings,
)
from resilient_client._structure import structure
from resilient_client.errors import PolicyError
from resilient_client.stores import MemoryState


def test_the_defaults_are_the_contracts() -> None:
    assert BudgetSettings() == BudgetSettings(enabled=True, ratio=0.05, burst=20.0, refund=2.5)
    assert BreakerSettings() == BreakerSettings(
        enabled=True,
        failure_ratio=0.9,
        minimum_throughput=20,
        sampling_duration=30.0,
        break_duration=15.0,
        max_break_duration=120.0,
        half_open_probes=1,
        consecutive_failures=30,
    )
    assert RateLimitSettings() == RateLimitSettings(
        enabled=False, requests=0, period=1.0, burst=1, adaptive=True, pause_on_retry_after=True
    )
    assert GuardSettings(operations=("*",)) == GuardSettings(
        operations=("*",), key_fields=(), limit=1, max_wait=30.0
    )
    assert StateSettings() == StateSettings(timeout=0.05, on_unavailable="local")


def test_a_fixed_rate_is_requests_per_period() -> None:
    assert RateLimitSettings(requests=20, period=60.0).rate == pytest.approx(1 / 3)
    assert RateLimitSettings().rate == 0.0


def test_tables_read_from_a_file_are_strict() -> None:
    data = {"operations": ["Post*"], "key_fields": ["AccountID"], "limit": 2, "max_wait": 5}
    assert structure(data, GuardSettings, "p.toml", "guards.journal") == GuardSettings(
        operations=("Post*",), key_fields=("AccountID",), limit=2, max_wait=5.0
    )


@pytest.mark.parametrize(
    ("cls", "data", "key_path", "problem"),
    [
        pytest.param(BudgetSettings, {"ratio": -0.1}, "budget.ratio", "must be 0..100", id="budget-ratio"),
        pytest.param(BudgetSettings, {"burst": 0.5}, "budget.burst", "must be >= 1", id="budget-burst"),
        pytest.param(
            BreakerSettings,
            {"consecutive_failures": -1},
            "breaker.consecutive_failures",
            "must be 0..1000000000",
            id="consecutive-failures",
        ),
        pytest.param(BudgetSettings, {"refund": -1}, "budget.refund", "must be 0..100", id="budget-refund"),
        pytest.param(
            BudgetSettings, {"refund": "2.5"}, "budget.refund", "must be a number", id="budget-refund-type"
        ),
        pytest.param(
            BudgetSettings, {"enabled": "yes"}, "budget.enabled", "must be true or false", id="budget-enabled"
        ),
        pytest.param(
            BudgetSettings,
            {"refunds": 2.0},
            "budget.refunds",
            "unknown key; did you mean refund?",
            id="budget-typo",
        ),
        pytest.param(
            BreakerSettings,
            {"failure_ratio": 0},
            "breaker.failure_ratio",
            "must be > 0 and <= 1",
            id="ratio-zero",
        ),
        pytest.param(
            BreakerSettings,
            {"failure_ratio": 1.5},
            "breaker.failure_ratio",
            "must be > 0 and <= 1",
            id="ratio-above-one",
        ),
        pytest.param(
            BreakerSettings,
            {"minimum_throughput": 0},
            "breaker.minimum_throughput",
            "must be between 1",
            id="throughput",
        ),
        pytest.param(
            BreakerSettings,
            {"minimum_throughput": 2.5},
            "breaker.minimum_throughput",
            "must be an integer",
            id="throughput-type",
        ),
        pytest.param(
            BreakerSettings,
            {"sampling_duration": 0},
            "breaker.sampling_duration",
            "must be > 0",
            id="sampling",
        ),
        pytest.param(
            BreakerSettings,
            {"break_duration": 1e12},
            "breaker.break_duration",
            "must be <= 10000000 seconds",
            id="break-finite",
        ),
        pytest.param(
            BreakerSettings,
            {"half_open_probes": 0},
            "breaker.half_open_probes",
            "must be between 1",
            id="probes",
        ),
        pytest.param(
            BreakerSettings, {"enabled": "yes"}, "breaker.enabled", "must be true or false", id="enabled-type"
        ),
        pytest.param(
            BreakerSettings,
            {"half_open_probe": 1},
            "breaker.half_open_probe",
            "unknown key; did you mean half_open_probes?",
            id="unknown-key",
        ),
        pytest.param(
            RateLimitSettings, {"requests": -1}, "rate_limit.requests", "must be 0..", id="requests"
        ),
        pytest.param(RateLimitSettings, {"period": 0}, "rate_limit.period", "must be > 0", id="period"),
        pytest.param(RateLimitSettings, {"burst": 0}, "rate_limit.burst", "must be between 1", id="burst"),
        pytest.param(
            GuardSettings,
            {"operations": []},
            "guards.journal.operations",
            "at least one operation glob",
            id="no-operations",
        ),
        pytest.param(
            GuardSettings,
            {"operations": [""]},
            "guards.journal.operations[0]",
            "must not be empty",
            id="empty-glob",
        ),
        pytest.param(
            GuardSettings,
            {},
            "guards.journal.operations",
            "required key is missing",
            id="operations-required",
        ),
        pytest.param(
            GuardSettings,
            {"operations": ["*"], "key_fields": ["a", "a"]},
            "guards.journal.key_fields",
            "must not repeat a field",
            id="duplicate-field",
        ),
        pytest.param(
            GuardSettings,
            {"operations": ["*"], "limit": 0},
            "guards.journal.limit",
            "must be between 1",
            id="limit",
        ),
        pytest.param(
            GuardSettings,
            {"operations": ["*"], "max_wait": -1},
            "guards.journal.max_wait",
            "must be >= 0",
            id="max-wait",
        ),
        pytest.param(StateSettings, {"timeout": 0}, "state.timeout", "must be > 0", id="timeout"),
        pytest.param(
            StateSettings,
            {"on_unavailable": "retry"},
            "state.on_unavailable",
            "must be one of: 'local', 'raise'",
            id="on-unavailable",
        ),
    ],
)
def test_a_bad_value_names_its_file_and_key_path(
    cls: type[Any], data: dict[str, Any], key_path: str, problem: str, tmp_path: Path
) -> None:
    table = key_path.split(".")[0] if cls is not GuardSettings else "guards.journal"
    lines = [f"[{table}]"] + [f"{key} = {json.dumps(value)}" for key, value in data.items()]
    mine = tmp_path / "my_policy.toml"
    mine.write_text('extends = "default"\n' + "\n".join(lines) + "\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(mine)
    assert caught.value.file == str(mine)
    assert caught.value.key_path == key_path
    assert problem in caught.value.problem


def test_a_bad_value_in_code_is_refused_when_built() -> None:
    with pytest.raises(PolicyError, match=r"<code>: breaker.failure_ratio: must be > 0 and <= 1"):
        BreakerSettings(failure_ratio=2.0)


def test_a_max_break_below_the_break_means_no_doubling() -> None:
    from resilient_client.strategies.breaker import Breaker, Permit

    breaker = Breaker(BreakerSettings(break_duration=30.0, max_break_duration=20.0), MemoryState(), "k")
    assert breaker._next_break(Permit(0, "probe", 30.0)) == 30.0
