"""The examples, run against the simulator on a loopback port."""

from __future__ import annotations

import importlib.util
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
