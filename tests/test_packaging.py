"""The wheel carries the policies, the catalogs, py.typed and the LICENSE, with the metadata PyPI users
expect; an installed (not editable) copy finds its data files; scripts/floor_requirements.py pins the
declared floors that `make test-floor` runs the suite on."""

from __future__ import annotations

import email.parser
import importlib.util
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

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


def floor_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "floor_requirements", ROOT / "scripts" / "floor_requirements.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def project(dependencies: list[str], **extras: list[str]) -> dict[str, Any]:
    return {"project": {"dependencies": dependencies, "optional-dependencies": extras}}


def test_each_declared_floor_is_pinned_and_the_dev_tools_stay_newest() -> None:
    pins = floor_script().floor_pins(
        project(
            ["httpx>=0.28,<1", "tenacity>=8.3,!=8.4.0", "Typing_Extensions", "anyio"],
            redis=["redis[hiredis]>=5.3.0"],
            otel=["opentelemetry-api>=1.30 ; python_version >= '3.11'"],
            dev=["pytest>=8", "ruff>=0.6", "trio>=0.22", "respx==0.22.0", "anyio>=4"],
        )
    )
    assert list(pins.values()) == [
        "httpx==0.28",
        "tenacity==8.3",
        "redis==5.3.0",  # pip refuses extras in a constraints file
        "opentelemetry-api==1.30; python_version >= '3.11'",
        "trio==0.22",
        "anyio==4",
    ]


def test_one_package_declared_with_two_floors_is_refused_with_both_places() -> None:
    with pytest.raises(SystemExit) as refused:
        floor_script().floor_pins(project(["respx>=0.22"], testing=["respx>=0.21"]))
    message = str(refused.value)
    assert "'respx==0.22' in [project] dependencies" in message
    assert "'respx==0.21' in [project] optional-dependencies.testing" in message


def test_an_unreadable_requirement_is_refused_with_where_it_is() -> None:
    with pytest.raises(SystemExit, match=r"optional-dependencies.server: cannot read the requirement '>=1'"):
        floor_script().floor_pins(project([], server=[">=1"]))


def test_the_constraints_pin_every_floor_of_this_pyproject() -> None:
    printed = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "floor_requirements.py")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pins = [line for line in printed.splitlines() if not line.startswith("#")]
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in declared["dependencies"] + declared["optional-dependencies"]["redis"]:
        name, rest = requirement.split(">=", 1)
        floor = rest.split(",", 1)[0]
        assert f"{name.split('[')[0]}=={floor}" in pins, requirement
    assert not [pin for pin in pins if pin.startswith(("pytest", "mypy", "ruff", "hypothesis"))]
