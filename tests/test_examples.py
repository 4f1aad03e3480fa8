"""The examples, run against the simulator on a loopback port."""

from __future__ import annotations

import importlib.util
import re
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from resilient_client.simulator import Simulator, serve

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def simulator() -> tuple[str, Simulator]:
    sim = Simulator()
    with serve(sim) as url:
        yield url, sim  # type: ignore[misc]


def test_instantiate_clients(simulator: tuple[str, Simulator], capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = simulator
    load("instantiate_clients").main(url)
    out = capsys.readouterr().out
    assert "updox  Ping -> 2000" in out
    assert "hyper  POST /api/clients -> 0" in out


def test_configure_policy(simulator: tuple[str, Simulator], capsys: pytest.CaptureFixture[str]) -> None:
    # real-sleep: the example's point is that its policy's max_wait = 0.2 caps every wait, hyper's
    # code 10 included, so it runs with the real waits: five retries wait at most 1 s in all.
    url, sim = simulator
    started = time.monotonic()
    load("configure_policy").main(url, sim)
    elapsed = time.monotonic() - started
    out = capsys.readouterr().out
    assert "max_attempts=6" in out
    assert "hyper 10 (locked): retried for any method, waits at most 0.2, 0.2, 0.2, 0.2, 0.2 s" in out
    assert "journal attempts: 6" in out
    assert "clients ResponseCode: 2" in out
    assert elapsed < 4.0  # 1 s of waits at most, plus loopback requests on a busy machine


def test_catch_errors(simulator: tuple[str, Simulator], capsys: pytest.CaptureFixture[str]) -> None:
    url, sim = simulator
    load("catch_errors").main(url, sim)
    out = capsys.readouterr().out
    assert "exact code: 12" in out
    assert "the server asked for 3600 s; attempts=1" in out
    assert "invalid fields ['c_date']" in out
    assert "by vendor: Updox4010Error code 4010 under HTTP 200" in out


def test_configure_strategies(simulator: tuple[str, Simulator], capsys: pytest.CaptureFixture[str]) -> None:
    # real-sleep: the example runs its policy file as a user would, with real waits (under 2 s: the
    # file's 0.5 s break, its pace of 5 requests a second, backoff waits of 0.2 s at most).
    url, sim = simulator
    started = time.monotonic()
    load("configure_strategies").main(url, sim)
    elapsed = time.monotonic() - started
    out = capsys.readouterr().out
    for line in (
        "budget: ratio 0.2, burst 2",
        "breaker: opens at 50% of 4 attempts, break 0.5 s",
        "rate_limit: 5 per 1 s, burst 2",
        "guards.journal: 1 at a time per AccountNo, waiting 5 s at most",
        # burst 2: two retries, then none; the second call's 0.2 token buys no retry
        "budget: call 1 made 3 attempt(s): not retried: the retry budget is spent",
        "budget: call 2 made 1 attempt(s): not retried: the retry budget is spent",
        "breaker: open after 4 failed attempts",
        "breaker: call 3 raised CircuitOpenError at once, 0 requests sent",
        "breaker: the probe got HTTP 200, the circuit is closed",
        "guard: 2 journal calls for account 7 at once -> ResponseCode [0, 0], at most 1 at the server at once",
    ):
        assert line in out.splitlines(), out
    spread = float(re.search(r"rate_limit: 4 calls at once, sent over ([\d.]+) s", out)[1])  # type: ignore[index]
    assert spread >= 0.35  # burst 2, then one every 0.2 s: the fourth goes 0.4 s after the first
    # the module's simulator is shared: the example leaves its habits as it found them
    assert sim.journal_latency == 0.0 and not sim.snapshot()["outages"]
    assert elapsed < 8.0  # under 2 s of waits, plus loopback requests on a busy machine


def test_hooks(
    simulator: tuple[str, Simulator], capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    url, sim = simulator
    with caplog.at_level("WARNING", logger="resilient_client"):
        load("hooks").main(url, sim)
    out = capsys.readouterr().out.splitlines()
    for line in (
        "call start   GET clients (deadline in 30 s)",
        "attempt 1 -> service_unavailable (HTTP 503): retry",
        "retry after attempt 1: waiting 1.00 s (service_unavailable: retrying in 1 s)",
        "attempt 2 -> ok (HTTP 200): return",
        "attempt 1 waited 0.50 s for rate_limit",
        "circuit of hyper at 127.0.0.1: open",
        "attempt 1 not sent: breaker refused (circuit open)",
        "call end     CircuitOpenError",
    ):
        assert line in out, "\n".join(out)
    # The break is 15 s from the failure that opened it; the refused call comes a paced wait later.
    assert any(re.fullmatch(r"raised CircuitOpenError: a probe in 1[45] s", line) for line in out), out
    # The broken hook broke nothing, and each of its two failing kinds was logged once.
    failures = [r.getMessage() for r in caplog.records if "Broken." in r.getMessage()]
    assert len(failures) == 2
    assert not sim.snapshot()["outages"]
