"""Policy files: shipped ones load, extends merges, every problem names file, key path and problem."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import resilient_client as rc
from resilient_client.testing import FakeClock, fault_response

POLICIES = Path(__file__).resolve().parents[1] / "policies"


@pytest.mark.parametrize("name", ["default", "updox", "usta", "medable", "hyper"])
def test_shipped_policies_load_by_path_and_by_name(name: str) -> None:
    by_path = rc.load_policy(POLICIES / f"{name}.toml")
    by_name = rc.load_policy(name)
    assert by_path == by_name
    assert by_path.retry.max_attempts == 4
    assert by_path.retry.total_timeout == 30.0
    # Every shipped policy keeps soft faults raising.
    assert all(v == "raise" for v in by_path.soft_faults.values())
    assert all(rule.outcome in (None, "raise") for rule in by_path.codes.values())


def test_the_default_policy_object_matches_default_toml() -> None:
    assert rc.load_policy("default") == rc.RetryPolicy(
        soft_faults=dict.fromkeys(rc.load_policy("default").soft_faults, "raise")
    )


def test_extends_by_name_and_by_relative_path_merges_tables(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "base.toml").write_text(
        'extends = "hyper"\n[retry]\nmax_attempts = 6\n[codes.2]\noutcome = "return"\n'
    )
    (tmp_path / "sub" / "child.toml").write_text('extends = "../base.toml"\n[retry]\ninitial_wait = 0.1\n')
    policy = rc.load_policy(tmp_path / "sub" / "child.toml")
    assert policy.vendor == "hyper"
    assert policy.retry.max_attempts == 6
    assert policy.retry.initial_wait == 0.1
    assert policy.retry.max_retry_after == 65.0  # from hyper.toml
    assert policy.codes["10"].initial_wait == 1.0  # hyper's table kept, base's merged in
    assert policy.codes["2"].outcome == "return"


BAD = [
    pytest.param("[retry]\nmax_wait = -1\n", "retry.max_wait: must be >= 0", id="negative-wait"),
    pytest.param(
        "[retry]\nmax_attempts = 0\n", "retry.max_attempts: must be between 1 and 100", id="zero-attempts"
    ),
    pytest.param("colour = 1\n", ": unknown key: colour", id="unknown-top-key"),
    pytest.param("[retry]\nmax_tries = 3\n", "retry: unknown key: max_tries", id="unknown-nested-key"),
    pytest.param(
        '[retry]\nmax_attempts = "3"\n',
        "retry.max_attempts: must be an integer, not a string",
        id="str-for-int",
    ),
    pytest.param(
        "[retry]\nmax_wait = true\n", "retry.max_wait: must be a number, not a boolean", id="bool-for-float"
    ),
    pytest.param('[retry]\ncategories = "locked"\n', "retry.categories: must be a list", id="str-for-list"),
    pytest.param(
        '[retry]\ncategories = ["locked", "sleepy"]\n',
        "retry.categories: unknown category",
        id="unknown-category",
    ),
    pytest.param('[retry]\njitter = "half"\n', "retry.jitter", id="bad-jitter"),
    pytest.param(
        '[retry]\nidempotent_methods = ["get"]\n',
        "retry.idempotent_methods: unknown method",
        id="lowercase-method",
    ),
    pytest.param(
        '[soft_faults]\nlocked = "return"\n',
        "soft_faults: unknown soft-fault category",
        id="soft-fault-category",
    ),
    pytest.param(
        'vendor = "hyper"\n[codes.999]\nretry = true\n',
        "codes.999: unknown code for hyper",
        id="unknown-code",
    ),
    pytest.param(
        'vendor = "hyper"\n[codes.7]\noutcome = "return"\n',
        "codes.7.outcome: only a soft fault",
        id="return-hard-fault",
    ),
    pytest.param('vendor = "acme-nope"\n', "vendor: unknown vendor", id="unknown-vendor"),
    pytest.param("[retry\nmax_attempts = 3\n", ": invalid TOML", id="toml-syntax"),
    pytest.param('extends = "nope"\n', "extends: no shipped policy 'nope'", id="missing-shipped-parent"),
    pytest.param('extends = "missing.toml"\n', "extends: file not found", id="missing-parent-file"),
    pytest.param("extends = 5\n", "extends: must be a policy name", id="extends-not-a-string"),
    pytest.param(
        "[body]\nmax_read_bytes = -1\n", "body.max_read_bytes: must be 0..67108864", id="negative-cap"
    ),
    pytest.param("[budget]\nburst = 0.5\n", "budget.burst: must be >= 1", id="budget-burst"),
    pytest.param(
        "[retry]\ntotal_timeout = inf\n",
        "retry.total_timeout: must be <= 10000000 seconds",
        id="inf-deadline",
    ),
    pytest.param("[retry]\ninitial_wait = inf\n", "retry.initial_wait: must be <=", id="inf-wait"),
    pytest.param("[retry]\nmultiplier = 1e300\n", "retry.multiplier: must be <= 1000", id="huge-multiplier"),
    pytest.param("retry = 'x'\n", "retry: must be a table", id="str-for-table"),
    pytest.param("[retry]\njitter = 5\n", "retry.jitter: must be one of: 'full', 'none'", id="int-jitter"),
    pytest.param("[retry]\nmax_attempts = 3 # \xff\n", ": not UTF-8 text", id="not-utf8"),
]


@pytest.mark.parametrize(("text", "problem"), BAD)
def test_every_problem_is_a_policy_error_naming_file_key_and_problem(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(text.encode("latin-1") if "\xff" in text else text.encode())
    with pytest.raises(rc.PolicyError) as caught:
        rc.load_policy(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") or message.startswith(f"{path.resolve()}: ")
    assert problem in message
    assert "ClassValidationError" not in message
    assert "Traceback" not in message


def test_problems_in_several_tables_are_all_reported(tmp_path: Path) -> None:
    path = tmp_path / "two.toml"
    path.write_text('colour = 1\n[retry]\nmax_wait = -1\n[body]\nmax_read_bytes = "big"\n')
    with pytest.raises(rc.PolicyError) as caught:
        rc.load_policy(path)
    assert {p.key_path for p in caught.value.problems} == {"", "retry.max_wait", "body.max_read_bytes"}


def test_a_cycle_of_extends_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n')
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n')
    with pytest.raises(rc.PolicyError, match="extends: extends itself"):
        rc.load_policy(tmp_path / "a.toml")


def test_a_problem_in_an_inherited_key_is_blamed_on_the_parent(tmp_path: Path) -> None:
    (tmp_path / "parent.toml").write_text("[retry]\nmax_wait = -3\n")
    (tmp_path / "child.toml").write_text('extends = "parent.toml"\n[retry]\nmax_attempts = 2\n')
    with pytest.raises(rc.PolicyError) as caught:
        rc.load_policy(tmp_path / "child.toml")
    assert caught.value.file == str((tmp_path / "parent.toml").resolve())
    assert caught.value.key_path == "retry.max_wait"


def test_a_policy_for_another_vendor_is_refused_by_the_transport() -> None:
    with pytest.raises(rc.PolicyError, match="policy is for 'hyper', not 'usta'"):
        rc.ResilientTransport("usta", policy=rc.load_policy("hyper"))


def test_a_missing_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(rc.PolicyError, match="file not found"):
        rc.load_policy(tmp_path / "nothing.toml")


def test_environment_policy_applies_unless_one_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "env.toml"
    path.write_text('extends = "hyper"\n[retry]\nmax_attempts = 2\n')
    monkeypatch.setenv("RESILIENT_CLIENT_POLICY", str(path))
    assert rc.ResilientTransport("hyper").policy.retry.max_attempts == 2
    assert rc.ResilientTransport("hyper", policy="hyper").policy.retry.max_attempts == 4
    monkeypatch.delenv("RESILIENT_CLIENT_POLICY")
    assert rc.ResilientTransport("hyper").policy == rc.load_policy("hyper")


def test_a_request_can_override_the_policy() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503)

    once = rc.RetryPolicy(retry=rc.RetrySettings(max_attempts=1))
    transport = rc.ResilientTransport(
        "hyper", transport=httpx.MockTransport(handler), **FakeClock().options()
    )
    with httpx.Client(transport=transport) as client:
        with pytest.raises(rc.errors.ServiceUnavailableError) as caught:
            client.get("https://hyper.test/x", extensions={rc.POLICY_EXTENSION: once})
        assert caught.value.attempts == 1
        with pytest.raises(rc.errors.ServiceUnavailableError) as caught:
            client.get("https://hyper.test/x")
        assert caught.value.attempts == 4
    assert calls == 5


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('extends = "hyper"\n[soft_faults]\nno_results = "return"\n', id="by-category"),
        pytest.param('extends = "hyper"\n[codes.2]\noutcome = "return"\n', id="by-code"),
    ],
)
def test_a_user_policy_may_return_a_soft_fault(tmp_path: Path, text: str) -> None:
    path = tmp_path / "soft.toml"
    path.write_text(text)
    transport = rc.ResilientTransport(
        "hyper", policy=path, transport=httpx.MockTransport(lambda r: fault_response("hyper", 2))
    )
    with httpx.Client(transport=transport) as client:
        response = client.get("https://hyper.test/x")
    assert response.json()["ResponseCode"] == 2
    with (
        httpx.Client(
            transport=rc.ResilientTransport(
                "hyper", transport=httpx.MockTransport(lambda r: fault_response("hyper", 2))
            )
        ) as client,
        pytest.raises(rc.errors.NoResults),
    ):
        client.get("https://hyper.test/x")


def test_a_chain_of_extends_too_deep_is_a_policy_error(tmp_path: Path) -> None:
    (tmp_path / "p0.toml").write_text('extends = "default"\n')
    for n in range(1, 60):
        (tmp_path / f"p{n}.toml").write_text(f'extends = "p{n - 1}.toml"\n')
    with pytest.raises(rc.PolicyError, match="extends: more than 32 files deep"):
        rc.load_policy(tmp_path / "p59.toml")


def test_a_vendor_policy_variable_wins_over_the_general_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    general = tmp_path / "general.toml"
    general.write_text('extends = "default"\n[retry]\nmax_attempts = 2\n')
    mine = tmp_path / "hyper.toml"
    mine.write_text('extends = "hyper"\n[retry]\nmax_attempts = 7\n')
    monkeypatch.setenv("RESILIENT_CLIENT_POLICY", str(general))
    monkeypatch.setenv("RESILIENT_CLIENT_HYPER_POLICY", str(mine))
    assert rc.ResilientTransport("hyper").policy.retry.max_attempts == 7
    assert rc.ResilientTransport("usta").policy.retry.max_attempts == 2
