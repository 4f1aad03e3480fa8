"""``resilient-client fleet``: worker processes sharing one Redis, against the simulator.

The demo starts its own redis-server and worker processes and honours the simulator's real
Retry-After (1 s) and a 1 s circuit break, so the run below takes a few seconds of real time; it is
the one test of the whole thing end to end, run with two workers to keep it short.
"""

from __future__ import annotations

import io
import re
import shutil

import pytest

from resilient_client import _fleet, _redis_server
from resilient_client.cli import main


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def number(pattern: str, text: str) -> int:
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in:\n{text}"
    return int(found.group(1))


@pytest.mark.timeout(90)
def test_two_workers_share_guard_pause_circuit_and_budget() -> None:
    status, out, err = run("fleet", "--workers", "2")
    assert status == 0, err
    assert err == ""
    assert "fleet: 2 worker processes share one Redis (redis-server" in out
    # One journal call per account at the simulator, across both processes, and no code 50.
    assert "max_in_flight at the simulator): A1 1, A2 1, A3 1; code 50 answers: 0" in out
    assert "calls that succeeded: 16 of 16" in out
    assert number(r"429s received: (\d+)", out) >= 1  # the gateway's limit was met
    assert "requests held back by the shared Retry-After pause:" in out
    # The outage: one circuit for both; the processes are refused without sending.
    assert re.search(r"circuit opened by process [12], for every process", out)
    refused = number(r"calls refused before sending \(CircuitOpenError\): (\d+) of 20", out)
    reached = number(r"requests that reached Hyper: (\d+)", out)
    assert refused > 0
    assert reached < 20 * 4  # fewer than the calls times their attempts
    assert re.search(r"retries: \d+ sent, \d+ not sent because the shared budget was spent", out)
    # The recovery: exactly one probe for the fleet, then everyone succeeds.
    assert re.search(r"probes sent while half-open: 1 \(process [12]\); closed by process [12]", out)
    assert "calls that succeeded: 6 of 6 wanted" in out
    assert "Redis answered too slowly" not in out
    assert "the workers, redis-server and the simulator have stopped" in out


def test_without_redis_server_one_line_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = shutil.which
    monkeypatch.setattr(
        _redis_server.shutil, "which", lambda name: None if name == "redis-server" else real_which(name)
    )
    status, out, _ = run("fleet")
    assert status == 0  # `make demo` goes on: the rest of the demo does not need Redis
    assert out.count("\n") == 1
    assert "fleet demo skipped: redis-server is not installed" in out
    assert "apt-get install -y redis-server" in out


@pytest.mark.parametrize("workers", ["0", "33"])
def test_a_bad_number_of_workers_is_one_line(workers: str) -> None:
    status, out, err = run("fleet", "--workers", workers)
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1
    assert "workers must be a whole number from 1 to 32" in err


def test_the_gateway_limit_is_met_within_the_first_round() -> None:
    for workers in (1, 2, 4, 8):
        calls = workers * _fleet.JOURNAL_ROUNDS * (len(_fleet.ACCOUNTS) + 1)
        assert _fleet.gateway_limit(workers) < calls
