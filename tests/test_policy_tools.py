"""``resilient-client policy explain | plot | simulate``: golden files of their JSON, the SVG, the
terminal chart, the outage figure, and the AWS post's result reproduced.

Golden files live in ``tests/data/policy_tools/``, one ``explain-<name>.json`` and one
``simulate-<name>.json`` per shipped policy and for ``examples/my_policy.toml``. After a deliberate
change (a policy's numbers, a strategy's defaults, a new key in the output), regenerate them and
review the diff:

    RESILIENT_CLIENT_REGENERATE_GOLDENS=1 .venv/bin/pytest tests/test_policy_tools.py
"""

from __future__ import annotations

import io
import json
import os
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import attrs
import pytest

import resilient_client as rc
from resilient_client import _policy_tools as tools
from resilient_client.cli import main

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "policy_tools"
REGENERATE = os.environ.get("RESILIENT_CLIENT_REGENERATE_GOLDENS") == "1"
POLICIES = ["default", "usta", "updox", "medable", "hyper", "examples/my_policy.toml"]
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(autouse=True)
def _from_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Paths as a user types them from a checkout, and the shipped policies (no variable naming
    another one)."""
    monkeypatch.chdir(ROOT)
    for variable in list(os.environ):
        if variable.startswith("RESILIENT_CLIENT_") and variable.endswith("POLICY"):
            monkeypatch.delenv(variable)


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def golden_name(command: str, policy: str) -> Path:
    return GOLDEN / f"{command}-{Path(policy).stem}.json"


def check_golden(command: str, policy: str, got: dict[str, object]) -> None:
    path = golden_name(command, policy)
    if REGENERATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(got, indent=2) + "\n", encoding="utf-8")
    assert path.is_file(), f"no golden file {path}: see this module's docstring to write it"
    assert got == json.loads(path.read_text(encoding="utf-8")), f"{command} {policy} differs from {path}"


# -- explain ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
def test_explain_json_matches_its_golden_file(policy: str) -> None:
    status, out, err = run("policy", "explain", policy, "--json")
    assert status == 0, err
    data = json.loads(out)
    for key in ("vendor", "max_attempts", "worst_case_seconds", "amplification_at_outage", "codes"):
        assert key in data
    assert all("code" in code and "waits" in code for code in data["codes"])
    check_golden("explain", policy, data)


def test_explain_reads_each_code_of_the_policy() -> None:
    data = tools.explain(rc.load_policy("examples/my_policy.toml"), "mine")
    codes = {code["code"]: code for code in data["codes"]}
    # extends hyper: code 10 starts at 1 s, but the user's max_wait of 0.2 s caps every wait.
    assert [w["max"] for w in codes[10]["waits"]] == [0.2] * 5
    assert [w["min"] for w in codes[10]["waits"]] == [0.0] * 5
    assert codes[10]["retried"] == "any" and codes[10]["methods"] == "any"
    assert codes[2]["retried"] == "no" and codes[2]["waits"] == []  # returned, not raised
    assert codes[4]["retried"] == "idempotent" and "GET" in codes[4]["methods"]
    assert codes[10]["worst_case_seconds"] == pytest.approx(1.0)
    assert data["max_attempts"] == 6 and data["vendor"] == "hyper"


def test_a_policy_without_jitter_has_one_wait_per_retry(tmp_path: Path) -> None:
    file = tmp_path / "fixed.toml"
    file.write_text('extends = "default"\n[retry]\njitter = "none"\nmax_attempts = 3\n')
    other = tools.explain(rc.load_policy(file))["codes"][0]
    assert other["waits"] == [
        {"retry": 1, "min": 0.5, "median": 0.5, "max": 0.5},
        {"retry": 2, "min": 1.0, "median": 1.0, "max": 1.0},
    ]


def test_explain_lists_every_strategy_table_with_what_it_does() -> None:
    status, out, _ = run("policy", "explain", "Hyper")
    assert status == 0
    for table in ("retry", "budget", "breaker", "rate_limit", "guards"):
        assert any(line.split()[:1] == [table] for line in out.splitlines()), table
    assert "at most 20 requests per 60 s" in out
    assert "journal: at most 1 attempt(s) in flight per AccountNo" in out
    strategies = {s["table"]: s for s in tools.explain(rc.load_policy("default"))["strategies"]}
    assert strategies["rate_limit"]["enabled"] is False
    assert strategies["rate_limit"]["does"].startswith("off; ")


def test_amplification_at_outage_is_measured_through_the_strategies() -> None:
    policy = rc.load_policy("default")
    shipped = tools.outage_amplification(policy)
    assert shipped["amplification"] <= 0.1  # SPEC's outage bar: the breaker and the budget act
    assert shipped["calls"] == 1200
    nothing = attrs.evolve(
        policy,
        breaker=attrs.evolve(policy.breaker, enabled=False),
        budget=attrs.evolve(policy.budget, ratio=0.0),
    )
    # With no breaker and no budget, every call makes every attempt it may.
    assert tools.outage_amplification(nothing, seconds=30.0)["amplification"] == 4.0
    budget_only = attrs.evolve(policy, breaker=attrs.evolve(policy.breaker, enabled=False))
    result = tools.outage_amplification(budget_only, seconds=300.0)
    assert result["amplification"] <= 1 + policy.budget.ratio + policy.budget.burst / result["calls"]
    assert result["amplification"] > 1.0


# -- plot -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
def test_plot_writes_an_svg_with_labelled_axes_and_one_band_per_code(policy: str, tmp_path: Path) -> None:
    output = tmp_path / "waits.svg"
    status, out, err = run("policy", "plot", policy, "--output", str(output))
    assert status == 0, err
    assert f"wrote {output}" in out
    root = ET.parse(output).getroot()
    assert root.tag == f"{SVG}svg"
    texts = {t.get("class"): "".join(t.itertext()) for t in root.iter(f"{SVG}text") if t.get("class")}
    assert texts["x-label"] == "retry (the nth retry of a call)"
    assert texts["y-label"] == "wait before the retry (seconds)"
    bands = [g for g in root.iter(f"{SVG}g") if g.get("class") == "band"]
    expected = tools.plotted_codes(rc.load_policy(policy))
    assert [g.get("data-code") for g in bands] == [band.label for band in expected]
    for g in bands:
        assert g.find(f"{SVG}polygon") is not None and g.find(f"{SVG}polyline") is not None


def test_plot_draws_each_code_with_a_rule_as_its_own_band() -> None:
    labels = [band.label for band in tools.plotted_codes(rc.load_policy("hyper"))]
    assert labels == ["every other code", "code 10 (locked)", "code 50 (service_unavailable)"]
    band = tools.plotted_codes(rc.load_policy("hyper"))[2]
    assert band.waits == ((0.0, 1.0, 2.0), (0.0, 2.0, 4.0), (0.0, 4.0, 8.0))


def test_plot_without_output_draws_a_terminal_chart() -> None:
    status, out, _ = run("policy", "plot", "hyper")
    assert status == 0
    lines = out.splitlines()
    assert "code 50 (service_unavailable)" in lines
    at = lines.index("code 50 (service_unavailable)")
    # The third wait of code 50 spans the whole axis (0 to 8 s), its median in the middle.
    third = lines[at + 3]
    assert third.startswith("  retry 3") and third.count("|") == 1 and "=" in third
    assert lines[at + 1].count("=") < lines[at + 2].count("=") < third.count("=")
    assert any(line.strip().startswith("0") and line.rstrip().endswith("8") for line in lines)
    assert lines[-1].strip() == "seconds"


def test_plot_to_a_folder_that_does_not_exist_is_a_message(tmp_path: Path) -> None:
    status, _, err = run("policy", "plot", "hyper", "--output", str(tmp_path / "no" / "x.svg"))
    assert status == 2
    assert "--output" in err and "No such file or directory" in err


# -- simulate ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
def test_simulate_json_matches_its_golden_file(policy: str) -> None:
    status, out, err = run("policy", "simulate", policy, "--clients", "10,50,100", "--json", "--runs", "5")
    assert status == 0, err
    data = json.loads(out)
    assert [row["clients"] for row in data["fleets"]] == [10, 50, 100]
    check_golden("simulate", policy, data)


def test_simulate_reproduces_the_aws_post(tmp_path: Path) -> None:
    """The post's numbers (waits 10 ms x 2^n up to 2 s, clients retrying until their write lands):
    at 100 clients, full jitter sends about 57 % fewer calls than no jitter, and finishes sooner."""
    file = tmp_path / "aws_post.toml"
    file.write_text(
        'extends = "default"\n[retry]\ninitial_wait = 0.01\nmax_wait = 2.0\nmultiplier = 2.0\n'
        "max_attempts = 100\ntotal_timeout = 3600.0\n"
    )
    data = tools.simulate(rc.load_policy(file), [10, 50, 100])
    by_size = {row["clients"]: row for row in data["fleets"]}
    assert by_size[100]["fewer_calls"] == pytest.approx(0.57, abs=0.04)
    for row in data["fleets"]:
        assert row["policy"]["gave_up"] == row["no_jitter"]["gave_up"] == 0
        assert row["policy"]["seconds"] < row["no_jitter"]["seconds"]
    assert by_size[10]["fewer_calls"] < by_size[50]["fewer_calls"] < by_size[100]["fewer_calls"]


def test_simulate_prints_a_table_in_well_under_ten_seconds() -> None:
    started = time.monotonic()
    status, out, _ = run("policy", "simulate", "hyper", "--clients", "10,50,100")
    assert time.monotonic() - started < 10  # about 0.3 s on an idle machine; only catches a hang
    assert status == 0
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in rows] == ["10", "50", "100"] * 2
    # Hyper gives up after 4 attempts: without jitter most of a large fleet gives up.
    assert float(rows[2][3]) < float(rows[2][6])
    # Retrying until every client succeeds (the post's setup), full jitter sends far fewer calls
    # on hyper's own waits, and the saving grows with the fleet, as the post found.
    fewer = [float(row[-1].rstrip("%")) for row in rows[3:]]
    assert fewer[0] < fewer[1] < fewer[2] and fewer[2] >= 50


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--clients", "10,x"], "'x' is not a whole number", id="not-a-number"),
        pytest.param(["--clients", "0"], "from 1 to 1000", id="zero"),
        pytest.param(["--runs", "0"], "must be from 1 to 1000", id="runs"),
    ],
)
def test_simulate_refuses_bad_sizes(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["policy", "simulate", "hyper", *argv])
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_a_policy_that_does_not_exist_is_a_message_with_a_suggestion() -> None:
    status, _, err = run("policy", "explain", "hyperr")
    assert status == 1
    assert "did you mean 'hyper'?" in err
    assert "Traceback" not in err


def test_simulate_after_an_outage_costs_more_calls() -> None:
    policy = rc.load_policy("hyper")
    calm = tools.simulate(policy, [50], runs=5)["fleets"][0]
    after = tools.simulate(policy, [50], runs=5, outage=1.0)["fleets"][0]
    assert after["policy"]["calls"] > calm["policy"]["calls"]
    assert after["policy"]["gave_up"] > calm["policy"]["gave_up"]
    status, out, _ = run("policy", "simulate", "hyper", "--clients", "10", "--outage", "1")
    assert status == 0 and "after an outage of 1 s" in out


def test_a_table_without_a_sentence_of_its_own_is_listed_with_its_keys() -> None:
    """A strategy table added after this module (say ``[concurrency]``) is still listed: its keys."""

    @attrs.frozen
    class Concurrency:
        enabled: bool = True
        max: int = 200
        smoothing: float = 0.2

    assert tools._describe_generic(Concurrency()) == "max = 200, smoothing = 0.2"
    assert tools._enabled("concurrency", Concurrency(enabled=False), rc.load_policy("default")) is False
