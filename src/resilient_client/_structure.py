"""Strict checking and structuring of data files into frozen attrs classes, with PolicyError messages.

TOML already gives typed values, so nothing is coerced: ``"3"`` is not an int, ``true`` is not a
float and ``"abc"`` is not a list of names. Every failure becomes a ``PolicyProblem`` that names the
file, the full key path and the problem, never a cattrs traceback.

Two ways in. ``structure`` (the catalogs) lets cattrs build the classes and flattens its error tree.
``table_problems`` / ``validate_instance`` (the policies) check a table, or an object built in code,
against the same field types and rules without stopping at the first problem: every problem of a
file is listed, and an object built in code (``RetrySettings(max_wait=-1)``, ``attrs.evolve``) meets
the checks a file meets. ``read_toml`` refuses hostile files (FIFOs, devices, huge or deeply dotted
files) before parsing them.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import os
import re
import stat
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import attrs
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


Problem = str | Callable[[Any], str]


@attrs.frozen
class Rule:
    """A rule a field's value must follow: ``predicate(value)`` true, else ``problem``.

    With ``each``, the rule holds for every item of a list (or every key of a table), and the
    problem is reported at that item (``retry.categories[1]``). ``problem`` may be a function of the
    bad value, to name it. A Rule is also an attrs validator (raising FieldProblem), for classes that
    are only built by ``structure``.
    """

    predicate: Callable[[Any], bool]
    problem: Problem
    each: bool = False

    def describe(self, value: Any) -> str:
        """The problem, for a value that breaks the rule."""
        return self.problem(value) if callable(self.problem) else self.problem

    def __call__(self, _instance: Any, attribute: Any, value: Any) -> None:
        for item in value if self.each else (value,):
            if not self.predicate(item):
                raise FieldProblem(attribute.name, self.describe(item))


def check(predicate: Callable[[Any], bool], problem: Problem) -> Rule:
    """A rule on a whole value (also usable as an attrs validator)."""
    return Rule(predicate, problem)


def each(predicate: Callable[[Any], bool], problem: Problem) -> Rule:
    """A rule on every item of a list, or every key of a table."""
    return Rule(predicate, problem, each=True)


def rules(*field_rules: Rule) -> dict[str, Any]:
    """Field metadata: rules that ``validate_instance`` and ``table_problems`` check, all of them."""
    return {"rules": field_rules}


def show(value: Any) -> str:
    """A short, safe rendering of a bad value for a message (never a whole hostile blob)."""
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return json.dumps(text, ensure_ascii=False)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        # str() of an int past 4,300 digits raises; nobody needs to read one back anyway.
        return str(value) if abs(value) < 10**30 else "a very large integer"
    if isinstance(value, float):
        return repr(value)
    return _type_name(value)


def _type_name(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    if type(value) in names:
        return names[type(value)]
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "a table"
    if value is None:
        return "None"
    return f"a {type(value).__name__}"


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
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_MAX_KEY_SHOWN = 64


def join_path(path: str, key: str | int) -> str:
    """A dotted TOML key path, quoting keys that are not bare (``codes."4010"`` stays readable).

    A quoted key is escaped (a newline cannot forge a second message line) and cut short.
    """
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _BARE_KEY.fullmatch(key) and len(key) <= _MAX_KEY_SHOWN:
        text = key
    else:
        shown = key if len(key) <= _MAX_KEY_SHOWN else key[: _MAX_KEY_SHOWN - 3] + "..."
        text = json.dumps(shown, ensure_ascii=False)
    return f"{path}.{text}" if path else text


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


#: Past this many problems a message stops listing them (a hostile file can hold 100,000 typos).
MAX_PROBLEMS = 100


def raise_problems(problems: list[PolicyProblem]) -> None:
    """Raise one PolicyError listing ``problems`` (the first MAX_PROBLEMS of them), if there are any."""
    if not problems:
        return
    if len(problems) > MAX_PROBLEMS:
        more = len(problems) - MAX_PROBLEMS
        problems = [
            *problems[:MAX_PROBLEMS],
            PolicyProblem(problems[0].file, "", f"and {more} more problems"),
        ]
    raise PolicyError(problems)


_TYPES: dict[type, dict[str, Any]] = {}


def _field_types(cls: type) -> dict[str, Any]:
    found = _TYPES.get(cls)
    if found is None:
        found = _TYPES[cls] = typing.get_type_hints(cls)
    return found


def _rules(field: attrs.Attribute[Any]) -> tuple[Rule, ...]:
    rules: tuple[Rule, ...] = field.metadata.get("rules", ())
    return rules


def _file_keys(cls: type) -> dict[str, attrs.Attribute[Any]]:
    # A field marked file_key=False (a policy's ``source``) exists in code only.
    return {f.name: f for f in attrs.fields(cls) if f.metadata.get("file_key", True)}


def table_problems(
    data: Any, cls: type, path: str = "", also_allowed: tuple[str, ...] = ()
) -> list[tuple[str, str]]:
    """Every (key path, problem) of a decoded table meant for ``cls``, in the table's order.

    Unknown keys (with the nearest known one), wrong types, and broken rules are all reported; a
    value with a wrong type is not checked against its rules. Keys in ``also_allowed`` (a policy's
    ``extends``) are the caller's to check.
    """
    if not isinstance(data, Mapping):
        return [(path, f"must be a table, not {_type_name(data)}")]
    fields = _file_keys(cls)
    types_ = _field_types(cls)
    found: list[tuple[str, str]] = []
    for key, value in data.items():
        if key in also_allowed:
            continue
        key_path = join_path(path, str(key))
        field = fields.get(key) if isinstance(key, str) else None
        if field is None:
            # Past the problems a message shows, a hostile file's 100,000 keys get no suggestion.
            known = [*also_allowed, *fields] if len(found) < MAX_PROBLEMS else []
            found.append((key_path, _unknown_key(str(key), known)))
            continue
        found.extend(value_problems(value, types_[field.name], key_path, _rules(field)))
    return found


def _unknown_key(key: str, known: list[str]) -> str:
    if not known:
        return "unknown key"
    near = difflib.get_close_matches(key, known, n=1) if len(key) <= _MAX_KEY_SHOWN else []
    if near:
        return f"unknown key; did you mean {near[0]}?"
    return f"unknown key; known: {', '.join(known)}"


def value_problems(
    value: Any, tp: Any, path: str, rules: tuple[Rule, ...] = (), *, in_code: bool = False
) -> list[tuple[str, str]]:
    """Every (key path, problem) of one value: its type against ``tp``, then each of ``rules``.

    In a list or a table, every item is checked on its own: a bad item does not hide the others.
    ``in_code``: the value was built in code, so a field of an attrs class type holds an instance
    of it (a file holds a table).
    """
    item_rules = tuple(r for r in rules if r.each)
    origin = get_origin(tp)
    if item_rules and origin is tuple and isinstance(value, list | tuple):
        found = []
        for index, item in enumerate(value):
            where = join_path(path, index)
            item_found = _type_problems(item, get_args(tp)[0], where, in_code)
            found.extend(item_found or _broken(item_rules, item, where))
    elif item_rules and origin is dict and isinstance(value, Mapping):
        found = []
        for key, item in value.items():
            where = join_path(path, str(key))
            key_found = _broken(item_rules, key, where)
            found.extend(key_found or _type_problems(item, get_args(tp)[1], where, in_code))
    else:
        found = _type_problems(value, tp, path, in_code)
    if not found:
        found = _broken(tuple(r for r in rules if not r.each), value, path)
    return found


def _broken(rules: tuple[Rule, ...], subject: Any, path: str) -> list[tuple[str, str]]:
    return [(path, rule.describe(subject)) for rule in rules if not rule.predicate(subject)]


def _type_problems(value: Any, tp: Any, path: str, in_code: bool = False) -> list[tuple[str, str]]:
    origin = get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        arms = [a for a in get_args(tp) if a is not type(None)]
        if value is None and len(arms) < len(get_args(tp)):
            return []
        tp, origin = arms[0], get_origin(arms[0])
    if attrs.has(tp):
        if isinstance(value, tp):
            return []
        if in_code:
            return [(path, f"must be a {tp.__name__}, not {_type_name(value)}")]
        return table_problems(value, tp, path)
    if origin is Literal:
        allowed = get_args(tp)
        if isinstance(value, str) and value in allowed:
            return []
        return [(path, f"must be one of: {', '.join(map(repr, allowed))}, not {show(value)}")]
    if origin is tuple:
        if not isinstance(value, list | tuple):
            return [(path, f"must be a list, not {_type_name(value)}")]
        item_type = get_args(tp)[0]
        return [
            p
            for i, item in enumerate(value)
            for p in _type_problems(item, item_type, join_path(path, i), in_code)
        ]
    if origin is dict:
        if not isinstance(value, Mapping):
            return [(path, f"must be a table, not {_type_name(value)}")]
        found: list[tuple[str, str]] = []
        for key, item in value.items():
            if not isinstance(key, str):
                found.append((path, f"a key must be a string, not {show(key)}"))
                continue
            found.extend(_type_problems(item, get_args(tp)[1], join_path(path, key), in_code))
        return found
    return _scalar_problems(value, tp, path)


def _scalar_problems(value: Any, tp: Any, path: str) -> list[tuple[str, str]]:
    if tp is bool:
        ok, wanted = isinstance(value, bool), "true or false"
    elif tp is int:
        ok, wanted = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and not _is_nan(value)
        wanted = "a number"
    elif tp is str:
        ok, wanted = isinstance(value, str), "a string"
    else:  # pragma: no cover - a field type this checker does not know is a programming error
        raise TypeError(f"cannot check a value against {tp!r}")
    return [] if ok else [(path, f"must be {wanted}, not {_type_name(value)}")]


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def validate_instance(obj: Any, file: str, path: str) -> None:
    """Check an attrs object built in code the way a file is checked; PolicyError naming ``file``.

    Lists given for tuple fields become tuples first (a frozen policy holds no mutable list).
    Fields holding attrs objects were checked when those were built; only their type is checked.
    """
    types_ = _field_types(type(obj))
    found: list[tuple[str, str]] = []
    for field in attrs.fields(type(obj)):
        value = getattr(obj, field.name)
        tp = types_[field.name]
        if isinstance(value, list) and _is_tuple_type(tp):
            value = tuple(value)
            object.__setattr__(obj, field.name, value)
        found.extend(value_problems(value, tp, join_path(path, field.name), _rules(field), in_code=True))
    raise_problems([PolicyProblem(file, p, problem) for p, problem in found])


def refuse_unknown_keywords(table: str) -> Callable[[type[T]], type[T]]:
    """A class decorator: an unknown keyword (``RetrySettings(max_attemps=6)``, or the same through
    ``attrs.evolve``) is a PolicyError naming the key and the nearest known one, as in a file."""

    def decorate(cls: type[T]) -> type[T]:
        generated = cls.__init__
        known = [a.alias for a in attrs.fields(cls) if a.init]  # type: ignore[arg-type]

        @functools.wraps(generated)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            unknown = [k for k in kwargs if k not in known]
            if unknown:
                raise_problems(
                    [PolicyProblem("<code>", join_path(table, k), _unknown_key(k, known)) for k in unknown]
                )
            generated(self, *args, **kwargs)

        cls.__init__ = __init__  # type: ignore[method-assign]
        return cls

    return decorate


def _is_tuple_type(tp: Any) -> bool:
    arms = get_args(tp) if get_origin(tp) in (types.UnionType, typing.Union) else (tp,)
    return any(get_origin(arm) is tuple for arm in arms)


#: Larger files are refused unread: a policy or catalog is a few kilobytes.
MAX_FILE_BYTES = 1 << 20
#: tomllib's time grows with the square of a dotted key's length (``a.a.a...``: 100,000 parts take
#: minutes and gigabytes), so a line with more dots than this is refused before parsing.
MAX_DOTS_PER_LINE = 64
_FILE_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def read_toml(path: Path) -> dict[str, Any]:
    """The decoded TOML file; a missing, unreadable, hostile or malformed file is a PolicyError."""
    label = str(path)

    def fail(problem: str) -> PolicyError:
        return PolicyError(PolicyProblem(label, "", problem))

    data = _read_regular_file(path, fail)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise fail(f"not UTF-8 text: byte {exc.start}") from None
    for number, line in enumerate(text.splitlines(), 1):
        if line.count(".") > MAX_DOTS_PER_LINE:
            raise fail(f"line {number}: more than {MAX_DOTS_PER_LINE} dots; keys this deep are no policy")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise fail(f"invalid TOML: {exc}") from None
    except RecursionError:
        raise fail("invalid TOML: arrays or tables nested too deeply") from None
    except ValueError:
        # int() refuses more than 4,300 digits (CVE-2020-10735) with a plain ValueError.
        raise fail("invalid TOML: a number with too many digits") from None


def _read_regular_file(path: Path, fail: Callable[[str], PolicyError]) -> bytes:
    """At most MAX_FILE_BYTES of a regular file; anything else fails without blocking or looping.

    The type is checked before opening (opening a FIFO blocks until a writer comes), and again on
    the open descriptor, opened non-blocking, in case the path was swapped in between.
    """
    try:
        kind = _FILE_KINDS.get(stat.S_IFMT(os.stat(path).st_mode))
        if kind is not None:
            raise fail(f"not a regular file: {kind}")
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise fail("file not found") from None
    except OSError as exc:
        raise fail(f"cannot read: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        try:
            mode = os.fstat(f.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise fail(f"not a regular file: {_FILE_KINDS.get(stat.S_IFMT(mode), 'a special file')}")
            data = f.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise fail(f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise fail(f"larger than {MAX_FILE_BYTES} bytes; a policy or catalog file is a few kilobytes")
    return data
