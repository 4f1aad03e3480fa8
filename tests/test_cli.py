"""The resilient-client command: every subcommand and its errors, without a traceback."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import resilient_client as rc
from resilient_client.cli import main


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
    # real-sleep: the demo shows the strategies with real time and threads over a loopback server (a
    # 1 s Retry-After pause, a 0.5 s break, 0.2 s journal calls); no_waits() would skip the very
    # waits it shows. About 5 s in all, the one test that pays for them.
    started = time.monotonic()
    status, out, _ = run("demo")
    elapsed = time.monotonic() - started
    assert status == 0
    for text in ("attempts 3, journal entries applied 1", "requests received by the server: 1",
                 "Hyper2Error (a SoftFault)", "dob (Required property)", "item 27", "after 4 attempts",
                 "CSRF token echoed on the next request: True",
                 "(rate_limited kThrottled); retrying after 1.00 s",
                 # the breaker opens on the third failure, refuses without sending, closes after a probe
                 "after 3 attempts: retry not sent: circuit open", "circuit of hyper at 127.0.0.1: open",
                 "requests the simulator received for them: 0", "transport.breaker.state: open",
                 "circuit of hyper at 127.0.0.1: half_open",
                 "-> probe answered HTTP 200; transport.breaker.state: closed",
                 # one 429 holds back the calls that had not been sent yet
                 "4 calls at once: 3 answered, 1 got 429 with Retry-After: 1",
                 "the simulator received 0 requests in the next 0.8 s", "6 of 6 calls succeeded",
                 "429s in all: 1",
                 # the guard keeps one journal call of an account at the server; without it, code 50
                 "guard on ([guards.journal], key AccountNo): 2 of 2 applied, attempts [1, 1], at most 1 "
                 "at the server at once, 0 code 50 answers",
                 "guard off: 2 of 2 applied",
                 "10 requests: the simulator received 12 attempts, 1.20 a request (without the budget: 40)",
                 "not retried: the retry budget is spent"):  # fmt: skip
        assert text in out, out
    assert re.search(r"guard off: .* at most 2 at the server at once, [1-9] code 50 answers", out), out
    # 30 % random 503s: retried, nearly every call succeeds; then an outage: the circuit opens and
    # most calls are refused without a request
    retried = re.search(r"30 % random 503s: 200 calls in .* \(([\d.]+) a call\);.* (\d+) succeeded", out)
    assert retried and int(retried[2]) >= 190 and float(retried[1]) < 1.6, out
    refused = re.search(r"an outage .*: 200 calls in .* \(([\d.]+) a call\); (\d+) CircuitOpenError", out)
    assert refused and int(refused[2]) >= 150 and float(refused[1]) <= 0.5, out
    assert elapsed < 20  # about 5 s on an idle machine; the bound only catches a hang


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
    assert f"--port {port}: already in use on 127.0.0.1; pick another, or 0 for a free one" in err
    assert "Traceback" not in err + out


@pytest.mark.parametrize(
    ("host", "message"),
    [
        pytest.param("192.0.2.1", "--host 192.0.2.1: not an address of this machine", id="not-ours"),
        pytest.param(
            "no-such-host.invalid", "--host 'no-such-host.invalid': not a host name", id="unresolved"
        ),
    ],
)
def test_simulate_on_a_bad_host_says_what_is_wrong(host: str, message: str) -> None:
    status, out, err = run("simulate", "--host", host, "--port", "0", "--seconds", "0")
    assert status == 2
    assert message in err
    assert "port in use" not in err and "Traceback" not in err + out


def test_policy_check_of_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"[retry]\nmax_attempts = 3 # \xff\n")
    status, _out, err = run("policy", "check", str(bad))
    assert status == 1
    assert f"{bad}: not UTF-8 text" in err


# -- the command as users meet it: versions, any case, the client's own policy, no tracebacks -------


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([flag])
    assert caught.value.code == 0
    assert capsys.readouterr().out == f"resilient-client {rc.__version__}\n"


def _parsers(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield parser.prog, parser
    for action in parser._actions:  # argparse offers no public walk of its subcommands
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _parsers(child)


def test_every_argument_has_help() -> None:
    from resilient_client.cli import _parser

    missing = [
        f"{prog} {action.dest}"
        for prog, parser in _parsers(_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]
    assert missing == []


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        pytest.param("KTHROTTLED", "kThrottled", id="upper"),
        pytest.param("kthrottled", "kThrottled", id="lower"),
        pytest.param("kaccountlocked", "kAccountLocked", id="another"),
    ],
)
def test_codes_match_in_any_case(code: str, expected: str) -> None:
    status, out, err = run("codes", "medable", code, "--json")
    assert status == 0, err
    assert json.loads(out)["code"] == expected


def test_a_misspelled_code_gets_a_suggestion() -> None:
    status, _, err = run("codes", "medable", "kThrotled")
    assert status == 2
    assert "medable has no code 'kThrotled'" in err
    assert "did you mean 'kThrottled'?" in err
    status, _, err = run("codes", "medable", "zzzzzzzz")
    assert status == 2
    assert "did you mean" not in err and "`resilient-client codes medable` lists the codes" in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["codes", "HYPER", "10"], "Hyper10Error", id="codes-upper"),
        pytest.param(["codes", "Medable", "kThrottled"], "MedableThrottledFault", id="codes-mixed"),
        pytest.param(["policy", "show", "UPDOX"], 'vendor = "updox"', id="show-upper"),
        pytest.param(["policy", "show", "default"], "# effective policy from", id="show-default"),
        pytest.param(["policy", "show", "Default"], "[retry]", id="show-default-mixed"),
    ],
)
def test_vendor_and_policy_names_in_any_case(argv: list[str], expected: str) -> None:
    status, out, err = run(*argv)
    assert status == 0, err
    assert expected in out


def test_policy_show_default_is_the_shipped_default() -> None:
    status, out, _ = run("policy", "show", "default")
    assert status == 0
    assert "vendor =" not in out  # the default policy is for no vendor in particular
    assert "max_attempts = 4" in out


@pytest.mark.parametrize(
    ("argv", "category", "exception", "falls_back"),
    [
        pytest.param(
            ["codes", "usta", "200699"],
            "server_error",
            "Usta2006Error",
            "200699 is not in the catalog: it refines 2006",
            id="usta-six-digits",
        ),
        pytest.param(
            ["codes", "updox", "4999"],
            "bad_request",
            "UpdoxBadRequestError",
            "from 4000 to 4999",
            id="updox-4xxx",
        ),
        pytest.param(
            ["codes", "updox", "5999"],
            "server_error",
            "UpdoxServerError",
            "from 5000 to 5999",
            id="updox-5xxx",
        ),
    ],
)
def test_codes_explains_what_a_code_the_catalog_lacks_falls_back_to(
    argv: list[str], category: str, exception: str, falls_back: str
) -> None:
    status, out, err = run(*argv, "--json")
    assert status == 0, err
    record = json.loads(out)
    assert record["code"] == int(argv[2])  # the code as received, not the one it refines
    assert record["category"] == category
    assert record["exception"] == f"resilient_client.errors.{exception}"
    assert falls_back in record["falls_back"]
    status, text, _ = run(*argv)
    assert status == 0
    assert f"falls back   {record['falls_back']}\n" in text


def test_a_fallback_code_is_explained_as_the_classifier_reads_it() -> None:
    # The explanation and a real response carrying the code agree on class and category.
    from resilient_client.testing import fault_response

    body = fault_response("usta", 2006).json()
    body["errors"][0]["errorCode"] = 200699
    transport = rc.ResilientTransport(
        "usta", transport=httpx.MockTransport(lambda r: httpx.Response(400, json=body))
    )
    with httpx.Client(transport=transport) as client, pytest.raises(rc.errors.UstaError) as caught:
        client.post("https://usta.test/v1/players", json={})
    _, out, _ = run("codes", "usta", "200699", "--json")
    record = json.loads(out)
    assert record["exception"].rpartition(".")[2] == type(caught.value).__name__
    assert record["category"] == caught.value.category


def _policy_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("variables", "explicit", "retried"),
    [
        pytest.param({}, None, "any", id="shipped"),
        pytest.param({"RESILIENT_CLIENT_POLICY": "general.toml"}, None, "idempotent", id="general-env"),
        pytest.param(
            {"RESILIENT_CLIENT_POLICY": "general.toml", "RESILIENT_CLIENT_HYPER_POLICY": "hyper-off.toml"},
            None,
            "no",
            id="vendor-env-wins",
        ),
        pytest.param(
            {"RESILIENT_CLIENT_HYPER_POLICY": "hyper-off.toml"}, "hyper", "any", id="explicit-name-wins"
        ),
        pytest.param({}, "general.toml", "idempotent", id="explicit-file"),
    ],
)
def test_codes_explains_under_the_policy_a_client_would_use(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    variables: dict[str, str],
    explicit: str | None,
    retried: str,
) -> None:
    for name in ("RESILIENT_CLIENT_POLICY", "RESILIENT_CLIENT_HYPER_POLICY"):
        monkeypatch.delenv(name, raising=False)
    _policy_file(tmp_path, "general.toml", '[retry]\nany_method_categories = ["rate_limited"]\n')
    _policy_file(
        tmp_path, "hyper-off.toml", 'extends = "hyper"\nvendor = "hyper"\n[codes.10]\nretry = false\n'
    )
    for name, file in variables.items():
        monkeypatch.setenv(name, str(tmp_path / file))
    policy_arg = explicit if explicit is None or "." not in explicit else str(tmp_path / explicit)
    argv = ["codes", "hyper", "10", "--json"] + ([] if policy_arg is None else ["--policy", policy_arg])
    status, out, err = run(*argv)
    assert status == 0, err
    record = json.loads(out)
    assert record["retried"] == retried
    with rc.HyperClient(token="t-1234", policy=policy_arg) as client:
        assert record["policy"] == client.resilient_transport.policy.source


def test_codes_refuses_a_policy_for_another_vendor_as_a_client_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    usta = _policy_file(tmp_path, "usta.toml", 'extends = "usta"\nvendor = "usta"\n')
    monkeypatch.setenv("RESILIENT_CLIENT_POLICY", str(usta))
    monkeypatch.delenv("RESILIENT_CLIENT_HYPER_POLICY", raising=False)
    with pytest.raises(rc.PolicyError) as refused:
        rc.HyperClient(token="t-1234")
    status, out, err = run("codes", "hyper", "10")
    assert status == 1
    assert err == f"{refused.value.problems[0]}\n"
    assert "policy is for 'usta', not 'hyper'" in err
    assert out == ""


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([], id="top"),
        pytest.param(["codes"], id="codes"),
        pytest.param(["policy"], id="policy"),
        pytest.param(["policy", "show"], id="policy-show"),
        pytest.param(["policy", "check"], id="policy-check"),
        pytest.param(["simulate"], id="simulate"),
        pytest.param(["demo"], id="demo"),
    ],
)
def test_help_is_plain_text(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([*argv, "--help"])
    assert caught.value.code == 0
    text = capsys.readouterr().out
    assert "usage: resilient-client" in text
    assert "``" not in text
    assert not re.search(r":[a-z]+:`", text), text


def test_help_shows_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "resilient-client codes usta 200699" in text
    assert "--version" in text


@pytest.mark.parametrize("argv", [["codes", "medable"], ["codes", "medable", "--json"], ["--help"]])
def test_a_closed_pipe_is_no_traceback(argv: list[str]) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader went away before the first byte, as `| head -0` would
    try:
        result = subprocess.run(
            [sys.executable, "-m", "resilient_client", *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode in (0, 1)  # --help exits through argparse


@pytest.mark.parametrize("command", [["simulate", "--seconds", "0"], ["demo"]])
def test_a_missing_server_extra_is_one_line(command: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # `import uvicorn` now fails as if not installed
    status, _, err = run(*command)
    assert status == 1
    assert err.count("\n") == 1
    assert "pip install 'resilient-client[server]'" in err
    assert "port in use" not in err


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        pytest.param(["policy", "check", "missing.toml"], 1, "missing.toml: file not found", id="check"),
        pytest.param(["codes", "hyper", "10", "--policy", "missing.toml"], 1, "file not found", id="codes"),
        pytest.param(["codes", "hyper", "10", "--policy", "."], 1, "not a regular file", id="a-directory"),
        pytest.param(["policy", "show", "nope"], 2, "shipped policies: default, updox", id="show"),
        pytest.param(
            ["simulate", "--scenario", "nope", "--seconds", "0"], 2, "unknown scenario", id="scenario"
        ),
        pytest.param(["codes", "usta", "7777"], 2, "classified by its HTTP status", id="no-fallback"),
    ],
)
def test_bad_files_and_names_are_one_line(argv: list[str], status: int, message: str) -> None:
    got, out, err = run(*argv)
    assert got == status
    assert err.count("\n") == 1
    assert message in err
    assert "Traceback" not in err + out


def test_an_unexpected_error_is_one_line_too(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(vendor: str) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(rc, "catalog", broken)
    status, _, err = run("codes", "hyper", "10")
    assert status == 1
    assert err == "resilient-client: unexpected KeyError: 'boom'\n"


# -- fleet: stopped by a signal sent to the command alone, nothing left behind ----------------------


def _fleet_until(text: str) -> tuple[subprocess.Popen[str], int]:
    """``resilient-client fleet`` in its own process, read until a line starting with ``text``;
    the port of its redis-server."""
    command = subprocess.Popen(
        [sys.executable, "-m", "resilient_client", "fleet", "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert command.stdout is not None
    first = command.stdout.readline()
    found = re.search(r"127\.0\.0\.1:(\d+)\)", first)
    assert found, first
    line = first
    while not line.startswith(text):
        line = command.stdout.readline()
        assert line, f"the fleet ended before {text!r}"
    return command, int(found[1])


def _listening(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.mark.parametrize(("signal_number", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_fleet_stops_at_once_on_a_signal_and_stops_its_redis_server(signal_number: int, status: int) -> None:
    command, port = _fleet_until("A. a busy day")
    assert _listening(port)
    sent = time.monotonic()
    command.send_signal(signal_number)  # to the command alone, as `kill` or a supervisor would
    try:
        assert command.wait(timeout=20) == status
    finally:
        if command.poll() is None:
            command.kill()
    elapsed = time.monotonic() - sent
    _, err = command.communicate()
    assert not _listening(port), "redis-server was left running"
    assert "Traceback" not in err
    # The bar is 1 s (0.3-0.5 s measured on a busy 2-core machine; it took 20 s before). The bound
    # leaves room for a loaded CI machine and still catches workers or servers waited out.
    assert elapsed < 2.0, f"took {elapsed:.2f} s to exit"
