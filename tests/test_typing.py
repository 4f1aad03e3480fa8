"""Type checkers see the shipped exception classes as real classes: right names pass, a misspelling fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "tests" / "typing" / "api.py"

MISSPELLED = """\
import resilient_client as rc

try:
    pass
except rc.errors.RateLimitError:
    pass
"""


def test_mypy_accepts_the_public_api_and_rejects_a_misspelled_class(tmp_path: Path) -> None:
    misspelled = tmp_path / "misspelled.py"
    misspelled.write_text(MISSPELLED)
    # One mypy run checks both files (about 6 s); no cache is written, so no run sees a stale one.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            os.devnull,
            "--no-error-summary",
            str(API),
            str(misspelled),
        ],
        env={**os.environ, "MYPYPATH": str(ROOT / "src")},  # this checkout's package, not an installed one
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f'{misspelled}:5: error: Module has no attribute "RateLimitError"; '
        'maybe "RateLimitedError"?  [attr-defined]'
    ]
