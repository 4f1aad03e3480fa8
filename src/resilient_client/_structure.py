"""Strict cattrs structuring of data files into frozen attrs classes, with PolicyError messages.

TOML already gives typed values, so nothing is coerced: ``"3"`` is not an int, ``true`` is not a
float and ``"abc"`` is not a list of names. Every failure becomes a ``PolicyProblem`` that names the
file, the dotted key path and the problem, never a cattrs traceback.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from resilient_client.errors import PolicyError, PolicyProblem

T = TypeVar("T")


class FieldProblem(ValueError):
    """Raised by a validator: the value of ``field`` breaks a rule."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


def check(predicate: Callable[[Any], bool], problem: str) -> Callable[[Any, Any, Any], None]:
    """An attrs validator raising FieldProblem(``problem``) when ``predicate(value)`` is false."""

    def validate(_instance: Any, attribute: Any, value: Any) -> None:
        if not predicate(value):
            raise FieldProblem(attribute.name, problem)

    return validate


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        type(value), type(value).__name__
    )


def _structure_str(value: Any, _: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"must be a string, not {_type_name(value)}")
    return value


def _structure_int(value: Any, _: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"must be an integer, not {_type_name(value)}")
    return value


def _structure_float(value: Any, _: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"must be a number, not {_type_name(value)}")
    return float(value)


def _structure_bool(value: Any, _: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"must be true or false, not {_type_name(value)}")
    return value


def _structure_code(value: Any, _: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"must be an integer or a string, not {_type_name(value)}")
    return value


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(float, _structure_float)
    converter.register_structure_hook(bool, _structure_bool)
    converter.register_structure_hook(int | str, _structure_code)

    def is_tuple(t: Any) -> bool:
        return get_origin(t) is tuple

    def structure_tuple(value: Any, t: Any) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise TypeError(f"must be a list, not {_type_name(value)}")
        item_type = get_args(t)[0]
        items: list[Any] = []
        problems: list[tuple[str | int, Exception]] = []
        for index, item in enumerate(value):
            try:
                items.append(converter.structure(item, item_type))
            except Exception as exc:
                problems.append((index, exc))
        if problems:
            raise _KeyedErrors(problems)
        return tuple(items)

    def is_dict(t: Any) -> bool:
        return get_origin(t) is dict

    def structure_dict(value: Any, t: Any) -> dict[Any, Any]:
        if not isinstance(value, dict):
            raise TypeError(f"must be a table, not {_type_name(value)}")
        key_type, value_type = get_args(t)
        out: dict[Any, Any] = {}
        problems: list[tuple[str | int, Exception]] = []
        for k, v in value.items():
            try:
                out[converter.structure(k, key_type)] = converter.structure(v, value_type)
            except Exception as exc:
                problems.append((str(k), exc))
        if problems:
            raise _KeyedErrors(problems)
        return out

    converter.register_structure_hook_func(is_tuple, structure_tuple)
    converter.register_structure_hook_func(is_dict, structure_dict)
    return converter


class _KeyedErrors(Exception):
    """Problems inside a list or a table whose keys are data (codes), kept with index or key."""

    def __init__(self, problems: list[tuple[str | int, Exception]]) -> None:
        super().__init__(f"{len(problems)} problems")
        self.problems = problems


CONVERTER = _make_converter()
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def join_path(path: str, key: str | int) -> str:
    """A dotted TOML key path, quoting keys that are not bare (``codes."4010"`` stays readable)."""
    text = f"[{key}]" if isinstance(key, int) else (key if _BARE_KEY.match(key) else f'"{key}"')
    if not path:
        return text
    return f"{path}{text}" if isinstance(key, int) else f"{path}.{text}"


def _flatten(exc: BaseException, path: str) -> list[tuple[str, str]]:
    """(key path, problem) pairs for every leaf of a cattrs error tree."""
    if isinstance(exc, ForbiddenExtraKeysError):
        names = ", ".join(sorted(exc.extra_fields))
        return [(path, f"unknown key{'s' if len(exc.extra_fields) > 1 else ''}: {names}")]
    if isinstance(exc, _KeyedErrors):
        return [pair for key, sub in exc.problems for pair in _flatten(sub, join_path(path, key))]
    if isinstance(exc, ClassValidationError | IterableValidationError):
        found: list[tuple[str, str]] = []
        with_notes = exc.group_exceptions()
        for sub, note in with_notes[0]:
            name = getattr(note, "name", None)
            index = getattr(note, "index", None)
            sub_path = path
            if name is not None:
                sub_path = join_path(path, name)
            elif index is not None:
                sub_path = join_path(path, int(index))
            found.extend(_flatten(sub, sub_path))
        for sub in with_notes[1]:
            found.extend(_flatten(sub, path))
        return found
    if isinstance(exc, ExceptionGroup):
        return [pair for sub in exc.exceptions for pair in _flatten(sub, path)]
    if isinstance(exc, FieldProblem):
        return [(join_path(path, exc.field), exc.problem)]
    if isinstance(exc, KeyError):
        return [(path, "required key is missing")]
    if isinstance(exc, AttributeError) and "keys" in str(exc):
        return [(path, "must be a table")]
    literal = _LITERAL_PROBLEM.match(str(exc))
    if literal:
        return [(path, f"must be one of: {literal.group(1)}")]
    return [(path, str(exc) or type(exc).__name__)]


# cattrs says "5 not in literal typing.Literal['full', 'none']"; users read "must be one of: ...".
_LITERAL_PROBLEM = re.compile(r".* not in literal typing\.Literal\[(.*)\]$", re.DOTALL)


def structure(data: Any, cls: type[T], file: str, base_path: str = "") -> T:
    """``cls`` built from ``data``; any problem is a PolicyError naming ``file`` and the key path."""
    try:
        return CONVERTER.structure(data, cls)
    except Exception as exc:
        problems = [PolicyProblem(file, p, msg) for p, msg in _flatten(exc, base_path)]
        raise PolicyError(problems) from None


def read_toml(path: Path) -> dict[str, Any]:
    """The decoded TOML file; a missing or malformed file is a PolicyError naming it."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise PolicyError(PolicyProblem(str(path), "", "file not found")) from None
    except OSError as exc:
        raise PolicyError(PolicyProblem(str(path), "", f"cannot read: {exc.strerror}")) from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(PolicyProblem(str(path), "", f"invalid TOML: {exc}")) from None
    except UnicodeDecodeError as exc:
        raise PolicyError(PolicyProblem(str(path), "", f"not UTF-8 text: byte {exc.start}")) from None
