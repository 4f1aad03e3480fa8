"""The public names: __all__ lists exactly what is exported, sorted; every class is documented."""

from __future__ import annotations

import ast
import inspect
import types

import resilient_client as rc
from resilient_client import errors, testing
from resilient_client.errors import _shipped, _tree

#: Importable from the package for code written against 0.2, but not part of its surface.
UNLISTED = {
    "CALLER_TIMEOUT_EXTENSION",
    "Decision",
    "Envelope",
    "EnvelopeSpec",
    "Outcome",
    "classify",
    "decide",
    "parse_retry_after",
    "read_envelope",
}


def public_names(module: types.ModuleType) -> set[str]:
    """Every public name the module offers, loaded on first use or not (``dir`` lists both)."""
    return {
        name
        for name in dir(module)
        if (not name.startswith("_") and not isinstance(getattr(module, name), types.ModuleType))
        or name == "errors"
    } - {"annotations", "TYPE_CHECKING", "Any", "importlib"}


def test_package_all_is_sorted_and_matches_the_exports() -> None:
    assert rc.__all__ == sorted(rc.__all__)
    assert set(rc.__all__) == public_names(rc) - UNLISTED
    for name in [*rc.__all__, *UNLISTED]:
        assert getattr(rc, name) is not None, name


def test_the_hook_types_are_public() -> None:
    for name in ("Hook", "Call", "Attempt", "AttemptEvent", "RetryEvent", "RejectionEvent", "BreakerEvent"):
        assert name in rc.__all__
    assert "WaitEvent" in rc.__all__


def defined_in_source(module: types.ModuleType) -> set[str]:
    """Public classes and functions written in the module's own source (not generated, not imported)."""
    tree = ast.parse(inspect.getsource(module))
    kinds = (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    names = {node.name for node in tree.body if isinstance(node, kinds)}
    for node in tree.body:  # public constants too: UPPER_CASE = ...
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names |= {t.id for t in targets if isinstance(t, ast.Name) and t.id.isupper()}
    return {name for name in names if not name.startswith("_")}


def test_errors_all_lists_exactly_the_hand_written_names() -> None:
    # The per-(vendor, code) classes are generated into errors/_shipped.py; test_catalogs checks those.
    assert errors.__all__ == sorted(errors.__all__)
    assert _tree.__all__ == sorted(_tree.__all__)
    assert set(_tree.__all__) == defined_in_source(_tree)
    # The catalog loader's plumbing is defined there but is no part of the surface.
    plumbing = {"set_catalog_loader", "register"}
    assert set(errors.__all__) == (defined_in_source(_tree) | defined_in_source(errors)) - plumbing
    assert not plumbing & set(errors.__all__)


def test_the_generated_classes_are_exported_under_their_public_path() -> None:
    assert _shipped.__all__ == sorted(_shipped.__all__)
    assert set(_shipped.__all__) == defined_in_source(_shipped)
    for name in [*_shipped.__all__, *errors.__all__]:
        found = getattr(errors, name)
        if inspect.isclass(found):
            # Tracebacks and pickles name resilient_client.errors, not the private module.
            assert found.__module__ == "resilient_client.errors", name


def test_testing_all_is_sorted_and_complete() -> None:
    assert testing.__all__ == sorted(testing.__all__)
    assert set(testing.__all__) == defined_in_source(testing)


def test_every_exported_class_has_a_one_line_docstring() -> None:
    names = [*errors.__all__, *_shipped.__all__]
    classes = [getattr(errors, n) for n in names if inspect.isclass(getattr(errors, n))] + [
        getattr(rc, n) for n in rc.__all__ if inspect.isclass(getattr(rc, n))
    ]
    for cls in classes:
        doc = inspect.getdoc(cls)
        assert doc, cls
        assert doc.splitlines()[0].strip(), cls


def _undocumented_members(cls: type) -> list[str]:
    """The public methods and properties ``cls`` (or a base of this package) defines without a
    docstring; one a documented base already describes counts as documented."""
    missing = []
    for klass in cls.__mro__:
        if not klass.__module__.startswith("resilient_client"):
            continue
        for name, member in vars(klass).items():
            if name.startswith("_"):
                continue
            if isinstance(member, staticmethod | classmethod):
                member = member.__func__
            if not (isinstance(member, property) or inspect.isfunction(member)):
                continue
            described = [vars(b)[name] for b in cls.__mro__ if name in vars(b)]
            if not any(getattr(found, "__doc__", None) for found in described):
                missing.append(f"{klass.__qualname__}.{name}")
    return missing


def surface() -> dict[str, object]:
    """Every public name a user reaches: the packages' ``__all__``, the generated classes, the
    simulator, and the strategies a transport hands out (``transport.breaker``, ``.limiter``)."""
    from resilient_client import otel, simulator
    from resilient_client.strategies.breaker import BreakerStrategy
    from resilient_client.strategies.limiter import LimiterStrategy

    found: dict[str, object] = {}
    for module, names in [
        (rc, rc.__all__),
        (errors, [*errors.__all__, *_shipped.__all__]),
        (testing, testing.__all__),
        (otel, otel.__all__),
        (simulator, [n for n in vars(simulator) if not n.startswith("_")]),
    ]:
        for name in names:
            value = getattr(module, name)
            if module is simulator and getattr(value, "__module__", None) != simulator.__name__:
                continue  # imported there, not defined
            found[f"{module.__name__}.{name}"] = value
    found["BreakerStrategy"] = BreakerStrategy
    found["LimiterStrategy"] = LimiterStrategy
    return found


def test_every_public_name_method_and_property_has_a_docstring() -> None:
    missing = []
    for where, value in surface().items():
        if isinstance(value, types.ModuleType):
            continue
        if inspect.isclass(value):
            if not inspect.getdoc(value):
                missing.append(where)
            missing += [f"{where}: {member}" for member in _undocumented_members(value)]
        elif inspect.isfunction(value) and not inspect.getdoc(value):
            missing.append(where)
    assert missing == []
    assert len(surface()) > 300  # the enumeration reaches the generated classes too
