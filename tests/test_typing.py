"""The public constructors as ``mypy --strict`` sees them: tests/typing/ must check clean, and a
misspelled keyword or a wrong type must be an error a user's type checker reports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TYPING = ROOT / "tests" / "typing"

MISTAKES = """\
import resilient_client as rc

rc.HyperClient(token="t", folow_redirects=True)
rc.AsyncMedableClient(client_key="k", timeouts=3)
rc.UpdoxClient(application_id="a", application_password="p", on_retry=print, policy=3)
"""


def test_mypy_sees_every_constructor_parameter(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    mistakes = tmp_path / "mistakes.py"
    mistakes.write_text(MISTAKES)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--strict",
            "--cache-dir",
            str(tmp_path / "cache"),
            *map(str, sorted(TYPING.glob("*.py"))),
            str(mistakes),
        ],
        cwd=ROOT,
        env={**os.environ, "MYPYPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        check=False,
    )
    lines = result.stdout.splitlines()
    assert not [line for line in lines if "tests/typing/" in line], result.stdout
    expected = [
        'mistakes.py:3: error: Unexpected keyword argument "folow_redirects" for "HyperClient"',
        'mistakes.py:4: error: Unexpected keyword argument "timeouts" for "AsyncMedableClient"',
        'mistakes.py:5: error: Argument "policy" to "UpdoxClient" has incompatible type "int"',
    ]
    for text in expected:
        assert any(text in line for line in lines), result.stdout
