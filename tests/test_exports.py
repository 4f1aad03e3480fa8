"""The public names: __all__ lists exactly what is exported, sorted; every class is documented."""

from __future__ import annotations

import inspect
import types

import resilient_client as rc
from resilient_client import errors, testing


def public_names(module: types.ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if (not name.startswith("_") and not isinstance(value, types.ModuleType)) or name == "errors"
    } - {"annotations", "__version__"}


def test_package_all_is_sorted_and_matches_the_exports() -> None:
    assert rc.__all__ == sorted(rc.__all__)
    assert set(rc.__all__) == public_names(rc) - {"__version__"}


def test_errors_all_lists_the_hand_written_classes() -> None:
    assert errors.__all__ == sorted(errors.__all__)
    for name in errors.__all__:
        assert hasattr(errors, name), name


def test_testing_all_is_sorted_and_exists() -> None:
    assert testing.__all__ == sorted(testing.__all__)
    assert all(hasattr(testing, name) for name in testing.__all__)


def test_every_exported_class_has_a_one_line_docstring() -> None:
    classes = [getattr(errors, n) for n in errors.__all__] + [
        getattr(rc, n) for n in rc.__all__ if inspect.isclass(getattr(rc, n))
    ]
    for cls in classes:
        doc = inspect.getdoc(cls)
        assert doc, cls
        assert doc.splitlines()[0].strip(), cls
