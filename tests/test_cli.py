"""The resilient-client command: every subcommand and its errors, without a traceback."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from resilient_client.cli import main
from resilient_client.testing import no_waits


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(
            ["codes", "hyper", "10"], ["locked", "Hyper10Error", "retried for any method"], id="hyper-10"
        ),
        pytest.param(["codes", "usta", "9001"], ["server_error", "idempotent methods only"], id="usta-9001"),
        pytest.param(["codes", "hyper", "7"], ["validation", "not retried"], id="hyper-7"),
        pytest.param(["codes", "updox", "4650"], ["codes.4650.retry = false"], id="updox-policy-override"),
        pytest.param(["codes", "updox", "5010"], ["none documented", "validation"], id="updox-no-status"),
        pytest.param(["codes", "medable", "kThrottled"], ["429", "MedableThrottledFault"], id="medable"),
        pytest.param(["codes", "hyper"], ["Hyper API", "35 codes", "Hyper50Error"], id="list"),
    ],
)
def test_codes(argv: list[str], expected: list[str]) -> None:
    status, out, err = run(*argv)
    assert status == 0, err
    for text in expected:
        assert text in out


def test_codes_json() -> None:
    status, out, _ = run("codes", "hyper", "50", "--json")
    record = json.loads(out)
    assert status == 0
    assert record["category"] == "service_unavailable"
    assert record["retried"] == "any"
    assert record["exception"] == "resilient_client.errors.Hyper50Error"
    status, out, _ = run("codes", "medable", "--json")
    assert len(json.loads(out)) == 67


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["codes", "nope"], "unknown vendor 'nope'", id="vendor"),
        pytest.param(["codes", "hyper", "99"], "hyper has no code '99'", id="code"),
        pytest.param(["policy", "show", "nope"], "unknown vendor", id="policy-show-vendor"),
    ],
)
def test_bad_input_is_a_message_and_exit_2(argv: list[str], message: str) -> None:
    status, out, err = run(*argv)
    assert status == 2
    assert message in err
    assert "Traceback" not in err + out


def test_policy_check_good_and_bad(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('extends = "hyper"\n[retry]\nmax_attempts = 6\n')
    status, out, _ = run("policy", "check", str(good))
    assert status == 0
    assert "max_attempts = 6" in out
    assert "max_retry_after = 65.0" in out  # inherited from hyper.toml
    assert "[codes.10]" in out
    bad = tmp_path / "bad.toml"
    bad.write_text("[retry]\nmax_wait = -1\nnope = 1\n")
    status, out, err = run("policy", "check", str(bad))
    assert status == 1
    assert f"{bad}: retry: unknown key: nope" in err or f"{bad}: retry.max_wait: must be >= 0" in err
    assert "Traceback" not in err


def test_policy_show() -> None:
    status, out, _ = run("policy", "show", "updox")
    assert status == 0
    assert 'vendor = "updox"' in out
    assert "idempotent_operations" in out


def test_the_installed_command_runs_as_a_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "resilient_client", "codes", "hyper", "10"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert "Hyper10Error" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "resilient_client", "codes", "nope"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_demo_runs_every_scenario() -> None:
    with no_waits():  # the demo really waits out a Retry-After; the test does not
        status, out, _ = run("demo")
    assert status == 0
    for text in ("attempts 3, journal entries applied 1", "requests received by the server: 1",
                 "Hyper2Error (a SoftFault)", "dob (Required property)", "item 27", "after 4 attempts",
                 "CSRF token echoed on the next request: True",
                 "(rate_limited kThrottled); retrying after 1.00 s"):  # fmt: skip
        assert text in out


def test_simulate_serves_until_stopped() -> None:
    status, out, _ = run("simulate", "--port", "0", "--scenario", "transient", "--seconds", "0")
    assert status == 0
    assert "simulator on http://127.0.0.1:" in out


def test_simulate_on_a_bad_or_busy_port_is_a_message_not_a_traceback() -> None:
    import socket

    status, out, err = run("simulate", "--port", "99999", "--seconds", "0")
    assert status == 2
    assert "--port 99999: must be between 0 and 65535" in err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, out, err = run("simulate", "--port", str(port), "--seconds", "0")
    assert status == 2
    assert f"could not start on 127.0.0.1:{port}" in err
    assert "Traceback" not in err + out


def test_policy_check_of_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"[retry]\nmax_attempts = 3 # \xff\n")
    status, _out, err = run("policy", "check", str(bad))
    assert status == 1
    assert f"{bad}: not UTF-8 text" in err
