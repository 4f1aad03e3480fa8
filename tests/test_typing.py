"""The public API as ``mypy --strict`` sees it: tests/typing/ must check clean, and a misspelled
exception class, a misspelled keyword or a wrong type must be an error a user's type checker reports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TYPING = ROOT / "tests" / "typing"

MISTAKES = """\
import resilient_client as rc

rc.HyperClient(token="t", folow_redirects=True)
rc.AsyncMedableClient(client_key="k", timeouts=3)
rc.UpdoxClient(application_id="a", application_password="p", on_retry=print, policy=3)
try:
    pass
except rc.errors.RateLimitError:
    pass
"""


def test_mypy_accepts_the_public_api_and_rejects_mistakes(tmp_path: Path) -> None:
    mistakes = tmp_path / "mistakes.py"
    mistakes.write_text(MISTAKES)
    # One mypy run checks every file (about 6 s); a fresh cache, so no run sees a stale one.
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
            "--no-error-summary",
            *map(str, sorted(TYPING.glob("*.py"))),
            str(mistakes),
        ],
        cwd=ROOT,
        env={**os.environ, "MYPYPATH": str(ROOT / "src")},  # this checkout's package, not an installed one
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = result.stdout.splitlines()
    assert result.returncode == 1, result.stdout + result.stderr
    assert not [line for line in lines if "tests/typing/" in line], result.stdout
    expected = [
        'mistakes.py:3: error: Unexpected keyword argument "folow_redirects" for "HyperClient"',
        'mistakes.py:4: error: Unexpected keyword argument "timeouts" for "AsyncMedableClient"',
        'mistakes.py:5: error: Argument "policy" to "UpdoxClient" has incompatible type "int"',
        'mistakes.py:8: error: Module has no attribute "RateLimitError"; maybe "RateLimitedError"?',
    ]
    for text in expected:
        assert any(text in line for line in lines), result.stdout
