"""Vendor error catalogs: data files loaded into frozen attrs classes, with their exception classes.

A catalog file (``catalogs/<vendor>.toml``) lists every code of a vendor's error page with its
message, documented HTTP status, category and group, and describes how the vendor's error envelope
is read. The four shipped vendors' exception classes (one per code, one per category for codes a
catalog lacks) are generated into ``errors/_shipped.py`` and reused here; a fifth vendor needs only
such a file, ``load_catalog(path)``, and gets its classes built when loaded.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import attrs

from resilient_client import errors
from resilient_client._structure import check, join_path, read_toml, structure
from resilient_client.errors import ApiError, PolicyError, PolicyProblem

# Re-exported: the package's face and the classifier know the entry as the catalog's.
from resilient_client.errors._entry import CatalogEntry as CatalogEntry
from resilient_client.errors._entry import Code as Code
from resilient_client.errors._tree import set_catalog_loader

#: The four vendors shipped with the package, in the order of SPEC section 1.
VENDORS: tuple[str, ...] = ("updox", "usta", "medable", "hyper")

#: Every category a catalog entry may have (``ok`` marks success codes).
CATEGORIES: tuple[str, ...] = ("ok", *errors.CATEGORY_CLASSES)

#: Categories that only exist under a 2xx status.
SOFT_CATEGORIES: frozenset[str] = frozenset(
    {"incomplete_success", "no_results", "verification_required", "not_ready", "partial_failure"}
)

_IDENTIFIER = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_VENDOR_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_MAX_CODE_DIGITS = 18


def _is_category(value: str) -> bool:
    return value in CATEGORIES


@attrs.frozen
class EnvelopeSpec:
    """How a vendor's JSON body is read: a built-in reader, or the ``generic`` one described here.

    For ``generic``, each field is a dotted path into the body (``error.code``); a body is a fault
    when ``success_flag`` is false, or, with no ``success_flag``, when it has a code that is not one
    of the catalog's ``ok`` codes.
    """

    reader: str = attrs.field(
        validator=check(
            lambda v: v in ("updox", "usta", "medable", "hyper", "generic"),
            "must be one of: updox, usta, medable, hyper, generic",
        )
    )
    code: str | None = None
    message: str | None = None
    success_flag: str | None = None
    faults: str | None = None
    fault_code: str = "code"
    fault_message: str = "message"
    fault_path: str = "path"
    request_id_headers: tuple[str, ...] = ("x-request-id", "request-id", "x-correlation-id")
    #: A header naming when a rate limit lifts, honoured when no Retry-After came (Medable's).
    rate_limit_reset_header: str | None = None
    #: Codes that mean success, as text; filled from the catalog's ``ok`` entries when loaded.
    success_codes: frozenset[str] = frozenset()


@attrs.frozen
class _EntryData:
    code: int | str
    message: str
    category: str = attrs.field(validator=check(_is_category, "unknown category"))
    http_status: int | None = attrs.field(
        default=None,
        validator=check(lambda v: v is None or 100 <= v <= 599, "must be between 100 and 599"),
    )
    group: str | None = None
    exception: str | None = attrs.field(
        default=None,
        validator=check(lambda v: v is None or bool(_IDENTIFIER.match(v)), "not a class name"),
    )


@attrs.frozen
class FallbackRange:
    """Codes ``first``..``last`` that the catalog lacks fall back to ``category`` (Updox 4xxx)."""

    first: int
    last: int
    category: str = attrs.field(validator=check(_is_category, "unknown category"))


@attrs.frozen
class _CatalogFile:
    vendor: str = attrs.field(
        validator=check(lambda v: bool(_VENDOR_ID.match(v)), "must be a lowercase identifier")
    )
    title: str
    exception_prefix: str = attrs.field(
        validator=check(lambda v: bool(_IDENTIFIER.match(v)), "must be a CamelCase name")
    )
    code_type: Literal["int", "str"]
    envelope: EnvelopeSpec
    entries: tuple[_EntryData, ...]
    seed: str | None = None
    code_prefix_fallback: int | None = attrs.field(
        default=None, validator=check(lambda v: v is None or v > 0, "must be > 0")
    )
    fallback_ranges: tuple[FallbackRange, ...] = ()


@attrs.frozen
class Catalog:
    """A vendor's error catalog: ``catalog[code]``, ``lookup(code)``, iteration in file order, ``len``."""

    vendor: str
    title: str
    code_type: Literal["int", "str"]
    envelope: EnvelopeSpec
    source: str
    vendor_error: type[ApiError] = attrs.field(repr=False)
    code_prefix_fallback: int | None = attrs.field(repr=False)
    fallback_ranges: tuple[FallbackRange, ...] = attrs.field(repr=False)
    _entries: dict[Code, CatalogEntry] = attrs.field(repr=False)
    _category_errors: dict[str, type[ApiError]] = attrs.field(repr=False)

    def normalize(self, code: object) -> Code | None:
        """The code as this catalog spells it (``"10"`` -> 10), or None for a value that is no code."""
        if isinstance(code, bool) or code is None:
            return None
        if self.code_type == "str":
            return code if isinstance(code, str) and code else None
        if isinstance(code, int):
            return code
        if isinstance(code, float) and code.is_integer() and abs(code) < 10**_MAX_CODE_DIGITS:
            return int(code)
        if isinstance(code, str):
            text = code.strip()
            digits = text[1:] if text[:1] in "+-" else text
            if digits.isascii() and digits.isdigit() and len(digits) <= _MAX_CODE_DIGITS:
                return int(text)
            return text or None
        return None

    def lookup(self, code: object) -> CatalogEntry | None:
        """The entry of exactly this code, or None when the catalog lacks it."""
        key = self.normalize(code)
        return None if key is None else self._entries.get(key)

    def __getitem__(self, code: object) -> CatalogEntry:
        """The entry of exactly this code (``"10"`` finds 10, as ``lookup`` does); KeyError when absent."""
        entry = self.lookup(code)
        if entry is None:
            error = KeyError(code)
            error.add_note(f"the {self.vendor} catalog has no code {code!r}")
            raise error
        return entry

    def resolve(self, code: Code) -> CatalogEntry | None:
        """The entry for a code as received: exact, else the code it refines (USTA 200699 -> 2006)."""
        entry = self._entries.get(code)
        if entry is None and self.code_prefix_fallback and isinstance(code, int) and code > 0:
            digits = str(code)
            if len(digits) > self.code_prefix_fallback:
                entry = self._entries.get(int(digits[: self.code_prefix_fallback]))
        return entry

    def range_category(self, code: Code) -> str | None:
        """The category a code the catalog lacks falls back to by range, if a range covers it."""
        if isinstance(code, int):
            for r in self.fallback_ranges:
                if r.first <= code <= r.last:
                    return r.category
        return None

    def error_class(self, category: str, entry: CatalogEntry | None = None) -> type[ApiError]:
        """The class to raise: the entry's own, else this vendor's class for the category."""
        if entry is not None and entry.category == category and entry.exception is not None:
            return entry.exception
        return self._category_errors[category]

    def __iter__(self) -> Iterator[CatalogEntry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, code: object) -> bool:
        return self.lookup(code) is not None


def exception_name(prefix: str, code: Code) -> str:
    """The derived class name of a code: ``Hyper10Error``, ``MedableThrottledFault`` for kThrottled."""
    if isinstance(code, int):
        return f"{prefix}{code}Error" if code >= 0 else f"{prefix}Minus{-code}Error"
    stem = code[1:] if len(code) > 1 and code[0] == "k" and code[1].isupper() else code
    words = [w for w in re.split(r"[^A-Za-z0-9]+", stem) if w]
    camel = "".join(w.capitalize() if w.isupper() else w[0].upper() + w[1:] for w in words)
    if camel[:1].isdigit():
        camel = f"Code{camel}"
    return f"{prefix}{camel}Fault"


_lock = threading.RLock()
_registry: dict[str, Catalog] = {}


_STALE = "does not match this catalog: run `python scripts/generate_errors.py`"


def _shipped_class(name: str, bases: tuple[type[ApiError], ...], category: str) -> type[ApiError] | None:
    """The generated class of a shipped vendor (errors/_shipped.py), if it matches the catalog."""
    found = getattr(errors, name, None)  # the generated classes are imported on first use
    if not (isinstance(found, type) and issubclass(found, ApiError)):
        return None
    return found if found.__bases__ == bases and found.category == category else None


def _build(data: _CatalogFile, source: str) -> Catalog:
    problems: list[PolicyProblem] = []
    module = errors.__name__
    # A shipped vendor's classes are written out in errors/_shipped.py (so type checkers know them):
    # reused here, never built again. A vendor added with load_catalog() gets classes built now.
    shipped = data.vendor in errors.VENDOR_BASES

    def make(
        name: str, bases: tuple[type[ApiError], ...], category: str, doc: str, key_path: str
    ) -> type[ApiError]:
        if shipped:
            found = _shipped_class(name, bases, category)
            if found is None:
                problems.append(
                    PolicyProblem(source, key_path, f"class {name} in resilient_client.errors {_STALE}")
                )
                return ApiError
            return found
        taken = getattr(errors, name, None)
        if taken is not None and getattr(taken, "_vendor", None) != data.vendor:  # loading again is fine
            problems.append(PolicyProblem(source, key_path, f"exception name {name} is already taken"))
        namespace: dict[str, object] = {"__doc__": doc, "__module__": module, "_vendor": data.vendor}
        return type(name, bases, namespace)

    vendor_base = errors.VENDOR_BASES.get(data.vendor) or make(
        f"{data.exception_prefix}Error",
        (ApiError,),
        "unknown",
        f"Base of every fault answered by {data.title}.",
        "exception_prefix",
    )

    category_errors: dict[str, type[ApiError]] = {}
    for category, category_cls in errors.CATEGORY_CLASSES.items():
        category_errors[category] = make(
            f"{data.exception_prefix}{category_cls.__name__}",
            (vendor_base, category_cls),
            category,
            f"{data.title}: {category} for a code its catalog lacks.",
            "exception_prefix",
        )
    entries: dict[Code, CatalogEntry] = {}
    names: dict[str, str] = {}
    for index, item in enumerate(data.entries):
        key_path = join_path(join_path("entries", index), "code")
        wanted = int if data.code_type == "int" else str
        if isinstance(item.code, bool) or not isinstance(item.code, wanted):
            problems.append(PolicyProblem(source, key_path, f"code {item.code!r} must be {data.code_type}"))
            continue
        if item.code in entries:
            problems.append(PolicyProblem(source, key_path, f"duplicate code {item.code!r}"))
            continue
        if item.category == "ok":  # a success raises nothing: no class for it
            entries[item.code] = CatalogEntry(
                vendor=data.vendor,
                code=item.code,
                message=item.message,
                http_status=item.http_status,
                category=item.category,
                group=item.group,
                exception=None,
            )
            continue
        name = item.exception or exception_name(data.exception_prefix, item.code)
        if name in names:
            problems.append(PolicyProblem(source, key_path, f"class name {name} also used by {names[name]}"))
            continue
        names[name] = str(item.code)
        bases = (vendor_base, errors.CATEGORY_CLASSES[item.category])
        cls = make(name, bases, item.category, f"{data.title} {item.code}: {item.message}", key_path)
        entries[item.code] = CatalogEntry(
            vendor=data.vendor,
            code=item.code,
            message=item.message,
            http_status=item.http_status,
            category=item.category,
            group=item.group,
            exception=cls,
        )
    if problems:
        raise PolicyError(problems)
    catalog = Catalog(
        vendor=data.vendor,
        title=data.title,
        code_type=data.code_type,
        envelope=attrs.evolve(
            data.envelope,
            success_codes=frozenset(str(e.code) for e in entries.values() if e.category == "ok"),
        ),
        source=source,
        vendor_error=vendor_base,
        code_prefix_fallback=data.code_prefix_fallback,
        fallback_ranges=data.fallback_ranges,
        entries=entries,
        category_errors=category_errors,
    )
    if not shipped:
        per_code = [e.exception for e in entries.values() if e.exception is not None]
        for cls in (vendor_base, *category_errors.values(), *per_code):
            errors.register(cls)
    for entry in entries.values():
        if entry.exception is not None:
            entry.exception._entry = entry
    return catalog


def _parse(raw: dict[str, Any], source: str) -> Catalog:
    return _build(structure(raw, _CatalogFile, source), source)


def load_catalog(path: str | Path) -> Catalog:
    """Load a catalog file (a fifth vendor, say) and register it under its ``vendor`` id.

    After this, ``catalog(vendor)`` and ``ResilientTransport(vendor=...)`` know the vendor, and its
    exception classes are in ``resilient_client.errors``. A bad file is a PolicyError.
    """
    file = Path(path)
    raw = read_toml(file)
    if raw.get("vendor") in VENDORS:
        raise PolicyError(PolicyProblem(str(file), "vendor", f"{raw['vendor']!r} is a shipped vendor"))
    loaded = _parse(raw, str(file))
    with _lock:
        _registry[loaded.vendor] = loaded
    return loaded


def _load_shipped(vendor: str) -> Catalog:
    resource = resources.files("resilient_client") / "catalogs" / f"{vendor}.toml"
    import tomllib

    source = f"resilient_client/catalogs/{vendor}.toml"
    try:
        raw = tomllib.loads(resource.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(PolicyProblem(source, "", f"invalid TOML: {exc}")) from None
    return _parse(raw, source)


def catalog(vendor: str) -> Catalog:
    """The catalog of a vendor: one of ``VENDORS``, or one added with ``load_catalog``."""
    found = _registry.get(vendor)
    if found is not None:
        return found
    with _lock:
        found = _registry.get(vendor)
        if found is None:
            if vendor not in VENDORS:
                known = ", ".join(sorted({*VENDORS, *_registry}))
                raise ValueError(f"unknown vendor {vendor!r}; known vendors: {known}")
            found = _registry[vendor] = _load_shipped(vendor)
    return found


# A per-code class asked for its ``entry`` before its catalog was loaded loads it through this.
set_catalog_loader(catalog)
