"""Policy files: shipped ones load, extends merges, every problem names file, key path and problem."""

from __future__ import annotations

import io
import os
import threading
import tomllib
from collections.abc import Callable
from pathlib import Path

import attrs
import httpx
import pytest

import resilient_client as rc
from resilient_client import cli
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
    pytest.param(
        "colour = 1\n", ": colour: unknown key; known: extends, vendor, retry", id="unknown-top-key"
    ),
    pytest.param(
        "[retry]\nmax_tries = 3\n",
        "retry.max_tries: unknown key; did you mean max_attempts?",
        id="unknown-nested-key",
    ),
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
        'retry.categories[1]: unknown category "sleepy"; known: bad_request,',
        id="unknown-category",
    ),
    pytest.param('[retry]\njitter = "half"\n', "retry.jitter", id="bad-jitter"),
    pytest.param(
        '[retry]\nidempotent_methods = ["get"]\n',
        'retry.idempotent_methods[0]: unknown method "get"; did you mean "GET"?',
        id="lowercase-method",
    ),
    pytest.param(
        '[soft_faults]\nlocked = "return"\n',
        'soft_faults.locked: unknown soft-fault category "locked"; known: incomplete_success,',
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
    assert {p.key_path for p in caught.value.problems} == {"colour", "retry.max_wait", "body.max_read_bytes"}


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


# --- Every problem names the user's file and the full key path (issue 8) ---


def problems_of(path: Path) -> list[tuple[str, str, str]]:
    with pytest.raises(rc.PolicyError) as caught:
        rc.load_policy(path)
    return [(p.file, p.key_path, p.problem) for p in caught.value.problems]


def test_a_typo_in_a_table_the_parent_also_defines_is_the_users_mistake(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('extends = "hyper"\n[retry]\nmax_attemps = 6\ncategories = ["locked", "sleepy"]\n')
    assert problems_of(path) == [
        (str(path), "retry.max_attemps", "unknown key; did you mean max_attempts?"),
        (
            str(path),
            "retry.categories[1]",
            'unknown category "sleepy"; known: ' + ", ".join(rc.errors.CATEGORY_CLASSES),
        ),
    ]


def test_every_problem_of_a_file_is_listed_not_the_first_per_table(tmp_path: Path) -> None:
    path = tmp_path / "many.toml"
    path.write_text(
        'extends = "hyper"\n'
        "[retry]\n"
        'max_attempts = "6"\nmax_wait = -1\ntotal_timeout = 0\nmax_attemps = 6\n'
        'categories = ["locked", 5, "sleepy"]\njitter = "half"\n'
        '[soft_faults]\nlocked = "return"\nno_results = "maybe"\n'
        '[codes.999]\nretry = true\n[codes.7]\noutcome = "return"\ninitial_wait = -2\nretry = "yes"\n'
        "[budget]\nratio = -1\nburst = 0\n"
    )
    assert [
        (key, problem.split(";")[0]) for file, key, problem in problems_of(path) if file == str(path)
    ] == [
        ("retry.max_attempts", "must be an integer, not a string"),
        ("retry.max_wait", "must be >= 0"),
        ("retry.total_timeout", "must be > 0"),
        ("retry.max_attemps", "unknown key"),
        ("retry.categories[1]", "must be a string, not an integer"),
        ("retry.categories[2]", 'unknown category "sleepy"'),
        ("retry.jitter", "must be one of: 'full', 'none', not \"half\""),
        ("soft_faults.locked", 'unknown soft-fault category "locked"'),
        ("soft_faults.no_results", "must be one of: 'raise', 'return', not \"maybe\""),
        ("codes.7.initial_wait", "must be >= 0"),
        ("codes.7.retry", "must be true or false, not a string"),
        ("budget.ratio", "must be 0..100"),
        ("budget.burst", "must be >= 1"),
        ("codes.999", "unknown code for hyper"),
        ("codes.7.outcome", "only a soft fault can be returned"),
    ]


def test_problems_in_a_parent_and_a_child_are_each_blamed_on_their_own_file(tmp_path: Path) -> None:
    (tmp_path / "parent.toml").write_text('vendor = "hyper"\n[retry]\nmax_wait = -3\n')
    (tmp_path / "child.toml").write_text('extends = "parent.toml"\n[retry]\nmax_tries = 2\n[codes.999]\n')
    parent, child = str((tmp_path / "parent.toml").resolve()), str(tmp_path / "child.toml")
    assert problems_of(tmp_path / "child.toml") == [
        (child, "retry.max_tries", "unknown key; did you mean max_attempts?"),
        (parent, "retry.max_wait", "must be >= 0"),
        (child, "codes.999", "unknown code for hyper"),
    ]


def test_a_child_cannot_switch_the_vendor_of_its_parent(tmp_path: Path) -> None:
    path = tmp_path / "usta.toml"
    path.write_text('extends = "hyper"\nvendor = "usta"\n')
    [(file, key, problem)] = problems_of(path)
    assert (file, key) == (str(path), "vendor")
    assert problem.startswith('"usta", but it extends a policy for "hyper"')


# --- Code keys are matched the way they are checked ---


@pytest.mark.parametrize("key", ["+10", "010", " 10", "10 ", "-0", "0010"])
def test_a_code_key_that_is_an_integer_written_otherwise_is_refused(tmp_path: Path, key: str) -> None:
    path = tmp_path / "codes.toml"
    path.write_text(f'extends = "hyper"\n[codes."{key}"]\ninitial_wait = 0.1\n')
    [(file, key_path, problem)] = problems_of(path)
    canonical = str(int(key))
    bare = key.strip() == key and "+" not in key
    assert (file, key_path) == (str(path), f"codes.{key}" if bare else f'codes."{key}"')
    assert problem.startswith(f'write this code as "{canonical}"')
    with pytest.raises(rc.PolicyError, match=f'write this code as "{canonical}"'):
        rc.RetryPolicy(codes={key: rc.CodeRule(initial_wait=0.1)})


def test_integer_code_keys_in_code_are_written_as_text_and_match() -> None:
    policy = rc.RetryPolicy(vendor="hyper", codes={10: rc.CodeRule(retry=False)})
    assert list(policy.codes) == ["10"]
    assert policy == attrs.evolve(rc.RetryPolicy(vendor="hyper"), codes={"10": rc.CodeRule(retry=False)})
    assert policy.rule(10) is policy.codes["10"]
    assert rc.decide(
        policy, outcome=rc.Outcome("locked", code=10, error_class=rc.errors.ResourceLockedError),
        method="GET", operation="x", attempt=1, time_left=30, retry_after=None, replayable=True,
        random=lambda: 0.5,
    ).action == "raise"  # fmt: skip
    with pytest.raises(rc.PolicyError, match=r"codes\.10: given twice"):
        rc.RetryPolicy(codes={10: rc.CodeRule(), "10": rc.CodeRule()})


# --- Hostile files are a PolicyError at once ---


def within(seconds: float, call: Callable[[], object]) -> BaseException:
    """The exception ``call`` raised; fails the test if it takes longer than ``seconds`` (a hang)."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            raised.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still running after {seconds} s"
    assert raised, "no exception"
    return raised[0]


HOSTILE_TEXT = [
    pytest.param(b"a = " + b"[" * 100_000 + b"]" * 100_000, "nested too deeply", id="deep-arrays"),
    pytest.param(b"a = " + b"{b = " * 5_000 + b"1" + b"}" * 5_000, "invalid TOML", id="deep-inline-tables"),
    pytest.param(b"a" + b".a" * 100_000 + b" = 1", "more than 64 dots", id="deep-dotted-key"),
    pytest.param(b"[a" + b".a" * 100_000 + b"]", "more than 64 dots", id="deep-table-header"),
    pytest.param(b"[retry]\nmax_attempts = " + b"9" * 5_000, "too many digits", id="5000-digit-int"),
    pytest.param(
        b"[retry]\nmax_wait = 1" + b"0" * 5_000 + b".5", "retry.max_wait: must be <=", id="5000-digit-float"
    ),
    pytest.param(bytes(range(256)) * 8, "not UTF-8 text", id="binary-junk"),
    pytest.param(b"\x00\x01\x02 = \x7f", "invalid TOML", id="control-characters"),
    pytest.param(b"# " + b"x" * (2 << 20), "larger than 1048576 bytes", id="huge-file"),
    pytest.param(
        b"".join(b"k%d = 1\n" % n for n in range(20_000)), "and 19900 more problems", id="many-keys"
    ),
]


@pytest.mark.parametrize(("content", "problem"), HOSTILE_TEXT)
def test_a_hostile_file_is_a_policy_error_at_once(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "hostile.toml"
    path.write_bytes(content)
    error = within(10, lambda: rc.load_policy(path))
    assert isinstance(error, rc.PolicyError)
    assert error.file == str(path)
    assert problem in str(error)
    assert len(str(error)) < 25_000  # MAX_PROBLEMS lines, each naming every known table


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "policy.toml"
    os.mkfifo(fifo)
    error = within(5, lambda: rc.load_policy(fifo))
    assert isinstance(error, rc.PolicyError)
    assert str(error) == f"{fifo}: not a regular file: a FIFO"


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero here")
def test_dev_zero_is_refused_not_read_forever(tmp_path: Path) -> None:
    link = tmp_path / "zero.toml"
    link.symlink_to("/dev/zero")
    for path in (Path("/dev/zero"), link):
        error = within(5, lambda path=path: rc.load_policy(path))  # type: ignore[misc]
        assert isinstance(error, rc.PolicyError)
        assert str(error) == f"{path}: not a regular file: a character device"


def test_a_directory_and_a_hostile_parent_are_refused(tmp_path: Path) -> None:
    (tmp_path / "dir.toml").mkdir()
    error = within(5, lambda: rc.load_policy(tmp_path / "dir.toml"))
    assert str(error) == f"{tmp_path / 'dir.toml'}: not a regular file: a directory"
    child = tmp_path / "child.toml"
    child.write_text('extends = "dir.toml"\n')
    error = within(5, lambda: rc.load_policy(child))
    assert isinstance(error, rc.PolicyError)
    assert error.problems[0].file == str((tmp_path / "dir.toml").resolve())
    assert error.problems[0].problem == "not a regular file: a directory"


def test_a_hostile_key_cannot_forge_a_message_line(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    path.write_text('"x\\ny: forged" = 1\n' + f'"{"k" * 5000}" = 2\n')
    error = within(5, lambda: rc.load_policy(path))
    assert isinstance(error, rc.PolicyError)
    lines = str(error).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f'{path}: "x\\ny: forged": unknown key')
    assert len(lines[1]) < 500


# --- A policy built in code meets the same checks ---

IN_CODE = [
    pytest.param(lambda: rc.RetrySettings(max_wait=-1), "retry.max_wait", "must be >= 0", id="negative-wait"),
    pytest.param(
        lambda: rc.RetrySettings(max_attempts="3"),  # type: ignore[arg-type]
        "retry.max_attempts",
        "must be an integer, not a string",
        id="str-for-int",
    ),
    pytest.param(
        lambda: rc.RetrySettings(categories=("locked", "sleepy")),
        "retry.categories[1]",
        'unknown category "sleepy"',
        id="unknown-category",
    ),
    pytest.param(
        lambda: rc.RetrySettings(categories="locked"),  # type: ignore[arg-type]
        "retry.categories",
        "must be a list, not a string",
        id="str-for-list",
    ),
    pytest.param(
        lambda: rc.RetrySettings(max_wait=float("nan")),
        "retry.max_wait",
        "must be a number, not nan",
        id="nan",
    ),
    pytest.param(
        lambda: rc.RetrySettings(max_attempts=10**5000),
        "retry.max_attempts",
        "must be between 1 and 100",
        id="5000-digit-int",
    ),
    pytest.param(
        lambda: rc.RetrySettings(max_attemps=6),  # type: ignore[call-arg]
        "retry.max_attemps",
        "unknown key; did you mean max_attempts?",
        id="typo-keyword",
    ),
    pytest.param(
        lambda: attrs.evolve(rc.RetrySettings(), max_attemps=6),
        "retry.max_attemps",
        "unknown key; did you mean max_attempts?",
        id="typo-through-evolve",
    ),
    pytest.param(
        lambda: attrs.evolve(rc.RetryPolicy(), soft_faults={"no_results": "maybe"}),
        "soft_faults.no_results",
        "must be one of: 'raise', 'return', not \"maybe\"",
        id="evolve-soft-fault",
    ),
    pytest.param(lambda: rc.BudgetSettings(burst=0.5), "budget.burst", "must be >= 1", id="budget"),
    pytest.param(
        lambda: rc.BodySettings(max_read_bytes=-1), "body.max_read_bytes", "must be 0..67108864", id="body"
    ),
    pytest.param(lambda: rc.CodeRule(max_wait=-1), "codes.*.max_wait", "must be >= 0", id="code-rule"),
    pytest.param(
        lambda: rc.CodeRule(outcome="maybe"),  # type: ignore[arg-type]
        "codes.*.outcome",
        "must be one of: 'raise', 'return', not \"maybe\"",
        id="code-rule-outcome",
    ),
    pytest.param(
        lambda: rc.RetryPolicy(retry={"max_attempts": 3}),  # type: ignore[arg-type]
        "retry",
        "must be a RetrySettings, not a table",
        id="table-for-settings",
    ),
    pytest.param(
        lambda: rc.RetryPolicy(codes={"10": {"retry": False}}),  # type: ignore[dict-item]
        "codes.10",
        "must be a CodeRule, not a table",
        id="table-for-code-rule",
    ),
    pytest.param(
        lambda: rc.RetryPolicy(codes=[10]),  # type: ignore[arg-type]
        "codes",
        "must be a table, not a list",
        id="list-for-codes",
    ),
    pytest.param(
        lambda: rc.RetryPolicy(vendor="hyper", codes={999: rc.CodeRule()}),  # type: ignore[dict-item]
        "codes.999",
        "unknown code for hyper",
        id="unknown-int-code",
    ),
    pytest.param(
        lambda: rc.RetryPolicy(vendor="hyper", codes={"7": rc.CodeRule(outcome="return")}),
        "codes.7.outcome",
        "only a soft fault can be returned; 7 is validation",
        id="return-hard-fault",
    ),
    pytest.param(
        lambda: rc.RetryPolicy(vendor="acme-nope"), "vendor", "unknown vendor 'acme-nope'", id="vendor"
    ),
]


@pytest.mark.parametrize(("build", "key_path", "problem"), IN_CODE)
def test_a_policy_built_in_code_is_checked_like_a_file(
    build: Callable[[], object], key_path: str, problem: str
) -> None:
    with pytest.raises(rc.PolicyError) as caught:
        build()
    assert type(caught.value) is rc.PolicyError
    assert caught.value.file == "<code>"
    assert caught.value.key_path == key_path
    assert caught.value.problem.startswith(problem)


def test_evolving_a_loaded_policy_blames_the_code_not_the_file() -> None:
    hyper = rc.load_policy("hyper")
    with pytest.raises(rc.PolicyError) as caught:
        attrs.evolve(hyper, codes={"999": rc.CodeRule()})
    assert caught.value.file == f"<code> (changed from {hyper.source})"
    assert caught.value.key_path == "codes.999"
    lists = rc.RetrySettings(categories=["locked"])  # type: ignore[arg-type]
    assert lists.categories == ("locked",)  # frozen all the way down


# --- retry.max_wait caps every backoff wait (SPEC 5) ---


def test_max_wait_caps_every_code_of_a_policy_extending_hyper(tmp_path: Path) -> None:
    path = tmp_path / "fast.toml"
    path.write_text('extends = "hyper"\n[retry]\nmax_wait = 0.2\nmax_attempts = 6\n')
    policy = rc.load_policy(path)
    for code in (10, 50, 4, None):
        for attempt in range(1, 6):
            assert rc.decide(
                policy, outcome=rc.Outcome("locked", code=code, error_class=rc.errors.ResourceLockedError),
                method="GET", operation="x", attempt=attempt, time_left=30, retry_after=None,
                replayable=True, random=lambda: 1.0,
            ).wait <= 0.2  # fmt: skip
    assert {w.max_wait for w in policy.effective_waits()} == {0.2}


def test_a_codes_own_max_wait_can_lower_the_cap_but_not_raise_it() -> None:
    policy = rc.RetryPolicy(
        retry=rc.RetrySettings(max_wait=3.0, jitter="none"),
        codes={"1": rc.CodeRule(initial_wait=2.0, max_wait=60.0), "2": rc.CodeRule(max_wait=0.7)},
    )
    assert [policy.backoff_ceiling(n, 1) for n in (1, 2, 3)] == [2.0, 3.0, 3.0]
    assert [policy.backoff_ceiling(n, 2) for n in (1, 2, 3)] == [0.5, 0.7, 0.7]
    assert [policy.backoff_ceiling(n, "other") for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("vendor", "code", "waits"),
    [
        pytest.param("hyper", 10, (1.0, 2.0, 4.0), id="hyper-10"),
        pytest.param("hyper", 50, (2.0, 4.0, 8.0), id="hyper-50"),
        pytest.param("hyper", 4, (0.5, 1.0, 2.0), id="hyper-others"),
        pytest.param("medable", "kTooBusy", (1.0, 2.0, 4.0), id="medable-too-busy"),
        pytest.param("medable", "kMediaNotReady", (1.0, 2.0, 4.0), id="medable-media-not-ready"),
    ],
)
def test_the_shipped_policies_keep_their_waits(vendor: str, code: object, waits: tuple[float, ...]) -> None:
    [row] = [w for w in rc.load_policy(vendor).effective_waits() if w.code == code]
    assert row.waits == waits
    assert row.max_wait <= rc.load_policy(vendor).retry.max_wait


def test_policy_check_prints_each_codes_effective_waits(tmp_path: Path) -> None:
    path = tmp_path / "fast.toml"
    path.write_text('extends = "hyper"\n[retry]\nmax_wait = 0.2\n')
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["policy", "check", str(path)], out=out, err=err) == 0
    text = out.getvalue()
    tomllib.loads(text)  # the waits are comments: the output is still the effective policy in TOML
    rows = {line.split()[1]: line.split()[2:] for line in text.splitlines() if line.startswith("# ")}
    assert rows["10"] == ["locked", "any", "0.2", "0.2", "0.2,", "0.2,", "0.2"]
    assert rows["4"] == ["server_error", "idempotent", "0.2", "0.2", "0.2,", "0.2,", "0.2"]
    assert rows["12"] == ["conflict", "no", "-", "-", "-"]
    assert rows["other"] == ["-", "category", "0.2", "0.2", "0.2,", "0.2,", "0.2"]


def test_effective_waits_without_a_vendor_list_the_codes_the_policy_names() -> None:
    policy = rc.RetryPolicy(codes={"kTooBusy": rc.CodeRule(initial_wait=1.0), "7": rc.CodeRule(retry=False)})
    rows = {w.code: w for w in policy.effective_waits()}
    assert set(rows) == {None, "kTooBusy", "7"}
    assert (rows["kTooBusy"].retried, rows["kTooBusy"].waits) == ("category", (1.0, 2.0, 4.0))
    assert rows["7"].retried == "no"


# --- Errors that say what to do ---


def test_a_checkout_path_outside_a_checkout_says_to_use_the_shipped_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(rc.PolicyError) as caught:
        rc.load_policy("policies/hyper.toml")
    assert str(caught.value) == (
        'policies/hyper.toml: file not found; the shipped policies come with the package: use load_policy("hyper")'
    )
    (tmp_path / "mine.toml").write_text('extends = "policies/hyper.toml"\n')
    with pytest.raises(rc.PolicyError, match=r'extends: file not found: .*: use extends = "hyper"'):
        rc.load_policy("mine.toml")


def test_an_unknown_shipped_name_blames_no_extends() -> None:
    with pytest.raises(rc.PolicyError) as caught:
        rc.load_policy("hyperr")
    assert (caught.value.file, caught.value.key_path) == ("hyperr", "")
    assert caught.value.problem.startswith(
        "no such file, and no shipped policy 'hyperr'; did you mean 'hyper'?"
    )
    assert "extends" not in str(caught.value)


@pytest.mark.parametrize("variable", ["RESILIENT_CLIENT_POLICY", "RESILIENT_CLIENT_HYPER_POLICY"])
def test_a_policy_named_by_a_variable_that_fails_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[retry]\nmax_wait = -1\n")
    monkeypatch.setenv(variable, str(bad))
    with pytest.raises(rc.PolicyError) as caught:
        rc.ResilientTransport("hyper")
    assert str(caught.value) == f"{bad} (named by ${variable}): retry.max_wait: must be >= 0"
    monkeypatch.setenv(variable, str(tmp_path / "missing.toml"))
    with pytest.raises(rc.PolicyError, match=rf"missing\.toml \(named by \${variable}\): file not found"):
        rc.HyperClient(base_url="https://hyper.test", token="t")


def test_a_general_policy_for_another_vendor_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "hyper-only.toml"
    path.write_text('extends = "hyper"\n')
    monkeypatch.setenv("RESILIENT_CLIENT_POLICY", str(path))
    with pytest.raises(rc.PolicyError) as caught:
        rc.ResilientTransport("usta")
    assert str(caught.value) == (
        f"{path} (named by $RESILIENT_CLIENT_POLICY): vendor: policy is for 'hyper', not 'usta'"
    )
