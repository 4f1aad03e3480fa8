"""The README's code: the quick start runs as pasted (against the simulator on 127.0.0.1), and no
snippet passes a Python set where JSON is meant (``json={...}`` is a set of Ellipsis)."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest

from resilient_client.testing import no_waits

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def test_the_quick_start_runs_as_pasted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in list(os.environ):
        if name.startswith("RESILIENT_CLIENT_"):
            monkeypatch.delenv(name)
    blocks = PYTHON_BLOCK.findall(section("Quick start"))
    assert blocks, "the quick start shows no Python"
    namespace: dict[str, object] = {"__name__": "__readme__"}
    with no_waits():  # the code waits out its backoff when users run it; the test does not
        for block in blocks:
            exec(compile(block, "README.md (quick start)", "exec"), namespace)
    assert capsys.readouterr().out.splitlines() == [
        "attempts: 2",
        "fix the request: Please fill up the required fields.",
        "ResponseCode: 0",
    ]


@pytest.mark.parametrize("number", range(len(PYTHON_BLOCK.findall(README))))
def test_no_snippet_passes_a_set_as_json(number: int) -> None:
    block = PYTHON_BLOCK.findall(README)[number]
    tree = ast.parse(block)  # every snippet is Python that parses
    sets = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Set)]
    assert not sets, f"README python block {number}: a set literal on line(s) {sets}\n{block}"
