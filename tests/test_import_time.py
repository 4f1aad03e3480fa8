"""``import resilient_client`` loads the exception tree and httpx, nothing heavy: httpcore, trio, the
generated per-code classes, attrs and the policy machinery wait for their first use (the timing
itself is ``bench/import_time.py``'s; this checks what is loaded, which does not depend on the
machine's load)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = (
    "httpcore",
    "trio",
    "attrs",
    "cattrs",
    "tenacity",
    "resilient_client.errors._shipped",
    "resilient_client._catalog",
    "resilient_client._policy",
    "resilient_client._settings",
    "resilient_client._structure",
    "resilient_client._transport",
    "resilient_client._clients",
    "resilient_client.strategies",
    "resilient_client.stores",
)


def loaded_after(code: str) -> set[str]:
    """The modules of HEAVY loaded after running ``code`` in a fresh interpreter."""
    script = f"import sys, json\n{code}\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_importing_the_package_loads_nothing_heavy() -> None:
    assert loaded_after("import resilient_client") == set()


def test_the_exception_tree_is_usable_without_loading_anything_heavy() -> None:
    code = "import resilient_client as rc\ntry:\n    raise rc.errors.RateLimitedError('x')\nexcept rc.ApiError:\n    pass"
    assert loaded_after(code) == set()


def test_a_name_loads_what_it_needs_on_first_use() -> None:
    assert "resilient_client.errors._shipped" in loaded_after(
        "import resilient_client as rc\nassert rc.errors.Hyper10Error.category == 'locked'"
    )
    assert {"resilient_client._policy", "cattrs"} <= loaded_after(
        "import resilient_client as rc\nrc.load_policy('hyper')"
    )
    assert {"resilient_client._clients", "httpcore"} <= loaded_after(
        "from resilient_client import HyperClient\nHyperClient(base_url='https://h.test', token='t')"
    )
