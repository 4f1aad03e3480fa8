"""The public names: __all__ lists exactly what is exported, sorted; every class is documented."""

from __future__ import annotations

import ast
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


def defined_in_source(module: types.ModuleType) -> set[str]:
    """Public classes and functions written in the module's own source (not generated, not imported)."""
    tree = ast.parse(inspect.getsource(module))
    kinds = (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    names = {node.name for node in tree.body if isinstance(node, kinds)}
    for node in tree.body:  # public constants too: UPPER_CASE = ...
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names |= {t.id for t in targets if isinstance(t, ast.Name) and t.id.isupper()}
    return {name for name in names if not name.startswith("_")}


def test_errors_all_lists_exactly_the_hand_written_classes() -> None:
    # The per-(vendor, code) classes are generated from the catalogs; test_catalogs checks those.
    assert errors.__all__ == sorted(errors.__all__)
    assert set(errors.__all__) == defined_in_source(errors)


def test_testing_all_is_sorted_and_complete() -> None:
    assert testing.__all__ == sorted(testing.__all__)
    assert set(testing.__all__) == defined_in_source(testing)


def test_every_exported_class_has_a_one_line_docstring() -> None:
    classes = [getattr(errors, n) for n in errors.__all__] + [
        getattr(rc, n) for n in rc.__all__ if inspect.isclass(getattr(rc, n))
    ]
    for cls in classes:
        doc = inspect.getdoc(cls)
        assert doc, cls
        assert doc.splitlines()[0].strip(), cls
