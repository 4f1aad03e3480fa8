"""The wheel carries the policies, the catalogs, py.typed and the LICENSE, with the metadata PyPI users
expect; an installed (not editable) copy finds its data files."""

from __future__ import annotations

import email.parser
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout, once for the module."""
    out = tmp_path_factory.mktemp("wheel")
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
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("resilient_client-*.whl")
    return built


def test_an_installed_wheel_finds_its_policies_and_catalogs(wheel: Path, tmp_path: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for policy in ("default", "updox", "usta", "medable", "hyper"):
        assert f"resilient_client/policies/{policy}.toml" in names
    for vendor in ("updox", "usta", "medable", "hyper"):
        assert f"resilient_client/catalogs/{vendor}.toml" in names
    assert "resilient_client/py.typed" in names
    (license_file,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert zipfile.ZipFile(wheel).read(license_file) == (ROOT / "LICENSE").read_bytes()

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


def test_the_license_file_is_the_mit_license_declared() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 resilient-client developers" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text


def test_the_wheel_metadata(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = email.parser.Parser().parsestr(archive.read(name).decode())
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    classifiers = set(metadata.get_all("Classifier"))
    for expected in (
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Typing :: Typed",
        "Framework :: AsyncIO",
        "Framework :: Trio",
    ):
        assert expected in classifiers
    # PyPI refuses an upload with both a license expression and a license classifier.
    assert not [c for c in classifiers if c.startswith("License ::")]
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL"))
    assert {"Homepage", "Repository", "Issues", "Changelog"} <= set(urls)
    assert {"server", "testing", "otel", "dev"} <= set(metadata.get_all("Provides-Extra"))
    requirements = metadata.get_all("Requires-Dist")
    assert any(r.startswith("respx") and "extra == 'testing'" in r for r in requirements)
    assert any(r.startswith("uvicorn") and "extra == 'server'" in r for r in requirements)
    assert any(r.startswith("opentelemetry-api") and "extra == 'otel'" in r for r in requirements)
