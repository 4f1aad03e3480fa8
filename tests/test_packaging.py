"""The wheel carries the policies, the catalogs and py.typed; an installed (not editable) copy finds them."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_an_installed_wheel_finds_its_policies_and_catalogs(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("resilient_client-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for policy in ("default", "updox", "usta", "medable", "hyper"):
        assert f"resilient_client/policies/{policy}.toml" in names
    for vendor in ("updox", "usta", "medable", "hyper"):
        assert f"resilient_client/catalogs/{vendor}.toml" in names
    assert "resilient_client/py.typed" in names

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    script = (
        "import resilient_client as rc, pathlib, sys;"
        "assert str(pathlib.Path(rc.__file__).resolve()).startswith(sys.argv[1]), rc.__file__;"
        "p = rc.load_policy('hyper'); assert p.vendor == 'hyper', p;"
        "assert rc.ResilientTransport('updox').policy.retry.idempotent_operations;"
        "assert len(rc.catalog('medable')) == 67;"
        "print(p.source)"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("RESILIENT_CLIENT_POLICY", None)
    result = subprocess.run(
        [sys.executable, "-c", script, str(site.resolve())],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(site.resolve()))
