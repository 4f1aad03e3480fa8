"""The docs: the README is a short landing page, no page cites a document users do not have, every
policy key is documented, the pages and the nav agree, and the set-up the README promises holds
(`make test` without redis-server names the one command to run; `make demo` installs only what the
demo runs). The site itself is built by `make docs` (mkdocs --strict) in CI."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import typing
from pathlib import Path

import attrs
import pytest

import resilient_client as rc

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
MKDOCS = (ROOT / "mkdocs.yml").read_text()
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
SHELL_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)
#: What only the project's own working notes are called: a user has none of them.
INTERNAL = re.compile(
    r"\bSPEC\b|SPEC\.md|(?i:\bissue \d+|\bissues? (?:show|#)|one-path\.md|/work/|\.\./shared|notes/)"
)


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def test_the_readme_is_a_landing_page_of_at_most_250_lines() -> None:
    lines = README.splitlines()
    assert len(lines) <= 250
    assert max(len(line) for line in lines) <= 200  # no wall of a table line


@pytest.mark.parametrize("path", [ROOT / "README.md", *PAGES], ids=lambda p: page_id(p))
def test_no_page_cites_an_internal_document(path: Path) -> None:
    found = [
        f"{page_id(path)}:{number}: {line}"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if INTERNAL.search(line)
    ]
    assert not found


@pytest.mark.parametrize("path", [ROOT / "README.md", *PAGES], ids=lambda p: page_id(p))
def test_examples_key_the_hyper_guard_on_accountno(path: Path) -> None:
    # the shipped [guards.journal] keys journal calls on AccountNo: an example posting "Account" shows
    # a call the guard cannot serialise
    assert '"Account"' not in path.read_text()


def test_every_page_is_in_the_nav_and_every_nav_entry_is_a_page() -> None:
    in_nav = set(re.findall(r"^\s*- (?:[^:\n]+: )?([\w/.-]+\.md)\s*$", MKDOCS, re.MULTILINE))
    assert in_nav == {str(page.relative_to(DOCS)) for page in PAGES}


def test_the_readmes_links_into_the_docs_resolve() -> None:
    links = re.findall(r"\]\(((?:docs/)[^)#]+)", README)
    assert len(links) >= 10
    assert [link for link in links if not (ROOT / link).is_file()] == []


def test_the_readme_install_works_from_a_checkout_and_names_the_extra() -> None:
    commands = [
        line.split("#")[0].strip() for block in SHELL_BLOCK.findall(README) for line in block.splitlines()
    ]
    assert "pip install '.[server]'" in commands  # the quick start imports the server extra's uvicorn
    assert "pip install resilient-client" not in commands  # not on PyPI: would find nothing
    assert "not on PyPI" in README


def test_the_docs_quick_start_is_the_readmes() -> None:
    readme_blocks = PYTHON_BLOCK.findall(README)
    page_blocks = PYTHON_BLOCK.findall((DOCS / "getting-started.md").read_text())
    assert readme_blocks[0] == page_blocks[0]  # the README's own test runs it


@pytest.mark.parametrize("path", PAGES, ids=lambda p: page_id(p))
def test_every_python_snippet_parses_and_passes_no_set_as_json(path: Path) -> None:
    for block in PYTHON_BLOCK.findall(path.read_text()):
        tree = ast.parse(block)
        sets = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Set)]
        assert not sets, f"{page_id(path)}: a set literal on line(s) {sets}\n{block}"


def policy_keys() -> set[str]:
    """Every key a policy file may hold, from the classes it is loaded into."""
    keys = {"extends"}
    types = typing.get_type_hints(rc.RetryPolicy)
    for field in attrs.fields(rc.RetryPolicy):
        if field.metadata.get("file_key", True) is False:
            continue
        if field.name == "codes":
            keys |= {f"codes.<code>.{f.name}" for f in attrs.fields(rc.CodeRule)}
        elif field.name == "guards":
            keys |= {f"guards.<name>.{f.name}" for f in attrs.fields(rc.GuardSettings)}
        elif field.name == "soft_faults":
            keys.add("soft_faults.<category>")
        elif isinstance(types[field.name], type) and attrs.has(types[field.name]):
            keys |= {f"{field.name}.{f.name}" for f in attrs.fields(types[field.name])}
        else:
            keys.add(field.name)
    return keys


def test_the_policy_page_documents_every_key() -> None:
    page = (DOCS / "guide" / "policies.md").read_text()
    keys = policy_keys()
    assert {"retry.max_attempts", "breaker.half_open_probes", "state.on_unavailable", "vendor"} <= keys
    assert sorted(key for key in keys if f"| `{key}` |" not in page) == []


# -- set-up ------------------------------------------------------------------------------------------


def fake_path(tmp_path: Path, *, apt: bool) -> Path:
    """A PATH with no redis-server, an `id` that says a user (not root), and maybe an apt-get that
    only notes it was run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "id").write_text("#!/bin/sh\necho 1000\n")
    if apt:
        (bin_dir / "apt-get").write_text(f"#!/bin/sh\ntouch {tmp_path}/apt-get-ran\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return bin_dir


@pytest.mark.parametrize(
    ("apt", "command"),
    [(True, "sudo apt-get install -y redis-server"), (False, "sudo apt-get install -y redis-server")],
)
def test_make_test_without_redis_server_names_the_one_command(
    tmp_path: Path, apt: bool, command: str
) -> None:
    make = shutil.which("make")
    assert make is not None
    done = subprocess.run(
        [make, "-s", "--no-print-directory", "redis-server"],
        cwd=ROOT,
        env={**os.environ, "PATH": str(fake_path(tmp_path, apt=apt))},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "redis-server is missing" in done.stdout
    assert command in done.stdout
    assert not (tmp_path / "apt-get-ran").exists()  # a user is told, never made to wait for a failing apt


def test_make_demo_installs_only_what_the_demo_runs_and_says_so() -> None:
    make = shutil.which("make")
    assert make is not None
    plan = subprocess.run(
        [make, "-n", "-B", "--no-print-directory", "demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    installs = [line for line in plan.splitlines() if "pip install" in line]
    assert installs and all("'.[server,redis]'" in line for line in installs)
    assert "[dev]" not in plan
    assert 'echo "demo: making .venv-demo' in plan


def test_ci_builds_the_docs() -> None:
    run = (ROOT / ".ci" / "run").read_text()
    assert "make docs" in run
    assert run.index("make docs") > run.index("make test-floor")
