"""Retry policies: TOML files loaded into frozen attrs classes, with ``extends`` and validation.

Every number and list of the retry rules is a key here; README.md documents each with its default.
A problem anywhere (unknown key, wrong type, negative wait, unknown code or category, a cycle of
``extends``, bad or hostile TOML) is one PolicyError listing every problem, each naming the file
that holds it, the full key path and what is wrong. A policy built in code (``RetryPolicy(...)``,
the settings classes, ``attrs.evolve``) meets the same checks when it is built, shown as ``<code>``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal

import attrs

from resilient_client._catalog import CATEGORIES, SOFT_CATEGORIES, Catalog, catalog
from resilient_client._settings import (
    IN_CODE,
    BreakerOverride,
    BreakerSettings,
    BudgetSettings,
    ConcurrencySettings,
    GuardSettings,
    RateLimitSettings,
    StateSettings,
)
from resilient_client._structure import (
    check,
    each,
    join_path,
    raise_problems,
    read_toml,
    refuse_unknown_keywords,
    rules,
    show,
    structure,
    table_problems,
    validate_instance,
)
from resilient_client.errors import PolicyError, PolicyProblem

#: Environment variable naming the policy file used when a client or transport is given none.
POLICY_ENV = "RESILIENT_CLIENT_POLICY"
#: The per-vendor variable (``RESILIENT_CLIENT_HYPER_POLICY``), which wins over ``POLICY_ENV``.
VENDOR_POLICY_ENV = "RESILIENT_CLIENT_{vendor}_POLICY"
_MAX_EXTENDS = 32

_FAULT_CATEGORIES = tuple(c for c in CATEGORIES if c != "ok")
_METHODS = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "POST", "PATCH", "TRACE", "CONNECT")
# Codes are matched as the catalog spells them; longer digit strings are no integer code.
_MAX_CODE_DIGITS = 18


def _unknown(kind: str, known: Iterable[str], hint: str = "") -> Any:
    names = tuple(known)

    def describe(value: Any) -> str:
        if not isinstance(value, str):
            return f"must be a string, not {show(value)}"
        near = [value.upper()] if value.upper() in names else difflib.get_close_matches(value, names, n=1)
        suggestion = f"; did you mean {show(near[0])}?" if near else f"; known: {', '.join(names)}{hint}"
        return f"unknown {kind} {show(value)}{suggestion}"

    return describe


_CATEGORY_LIST = each(lambda v: v in _FAULT_CATEGORIES, _unknown("category", _FAULT_CATEGORIES))
# Waits and timeouts are finite: an infinite one overflows clocks and timers (and is never meant).
_MAX_SECONDS = 10.0**7
_FINITE = check(lambda v: v is None or v <= _MAX_SECONDS, f"must be <= {_MAX_SECONDS:.0f} seconds")
_NON_NEGATIVE = (check(lambda v: v >= 0, "must be >= 0"), _FINITE)
_OPT_NON_NEGATIVE = (check(lambda v: v is None or v >= 0, "must be >= 0"), _FINITE)


def canonical_code(key: str) -> str | None:
    """How a code key must be written when it is an integer written otherwise (``"+10"`` -> ``"10"``).

    None when the key is fine as written. Catalogs read ``"+10"``, ``"010"`` and ``" 10"`` as 10, but
    a response's code 10 is looked up as ``"10"``: such keys would pass the check and never match,
    so they are refused with the spelling to use.
    """
    text = key.strip()
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not (digits.isascii() and digits.isdigit() and len(digits) <= _MAX_CODE_DIGITS):
        return None
    canonical = str(int(text))
    return None if canonical == key else canonical


def _code_key_problem(key: Any) -> str:
    if not isinstance(key, str) or not key.strip():
        return "a code must be a non-empty string or an integer"
    return f"write this code as {show(canonical_code(key))}: {show(key)} would never match a response's code"


def _is_code_key(key: Any) -> bool:
    return isinstance(key, str) and bool(key.strip()) and canonical_code(key) is None


def _known_vendor(value: Any) -> bool:
    try:
        catalog(value)
    except ValueError:
        return False
    return True


def _vendor_problem(value: Any) -> str:
    try:
        catalog(value)
    except ValueError as exc:
        return str(exc)
    return "unknown vendor"  # pragma: no cover - only asked for a value _known_vendor refused


@refuse_unknown_keywords("codes.*")
@attrs.frozen
class CodeRule:
    """Overrides for one code: whether it is retried, for which methods, soft-fault outcome, waits."""

    _table: ClassVar[str] = "codes.*"

    retry: bool | None = None
    any_method: bool | None = None
    outcome: Literal["raise", "return"] | None = None
    initial_wait: float | None = attrs.field(default=None, metadata=rules(*_OPT_NON_NEGATIVE))
    max_wait: float | None = attrs.field(default=None, metadata=rules(*_OPT_NON_NEGATIVE))
    #: How the circuit breaker counts this code: ``"ignore"`` (no evidence either way) or
    #: ``"failure"``; unset, its category decides.
    breaker: BreakerOverride | None = None

    def __attrs_post_init__(self) -> None:
        validate_instance(self, IN_CODE, self._table)


@refuse_unknown_keywords("retry")
@attrs.frozen
class RetrySettings:
    """The ``[retry]`` table: attempts, time limits, backoff, and what is retried for which method."""

    _table: ClassVar[str] = "retry"

    max_attempts: int = attrs.field(
        default=4, metadata=rules(check(lambda v: 1 <= v <= 100, "must be between 1 and 100"))
    )
    total_timeout: float = attrs.field(
        default=30.0, metadata=rules(check(lambda v: v > 0, "must be > 0"), _FINITE)
    )
    attempt_timeout: float = attrs.field(default=0.0, metadata=rules(*_NON_NEGATIVE))
    initial_wait: float = attrs.field(default=0.5, metadata=rules(*_NON_NEGATIVE))
    #: Caps every backoff wait, a code's own ``max_wait`` included (not a server's Retry-After).
    max_wait: float = attrs.field(default=8.0, metadata=rules(*_NON_NEGATIVE))
    multiplier: float = attrs.field(
        default=2.0,
        metadata=rules(
            check(lambda v: v >= 1, "must be >= 1"), check(lambda v: v <= 1000, "must be <= 1000")
        ),
    )
    jitter: Literal["full", "none"] = "full"
    max_retry_after: float = attrs.field(default=60.0, metadata=rules(*_NON_NEGATIVE))
    categories: tuple[str, ...] = attrs.field(
        default=(
            "locked",
            "not_ready",
            "rate_limited",
            "request_timeout",
            "server_error",
            "service_unavailable",
        ),
        metadata=rules(_CATEGORY_LIST),
    )
    any_method_categories: tuple[str, ...] = attrs.field(
        default=("locked", "not_ready", "rate_limited", "service_unavailable"), metadata=rules(_CATEGORY_LIST)
    )
    transport_errors: bool = True
    idempotent_methods: tuple[str, ...] = attrs.field(
        default=("GET", "HEAD", "OPTIONS", "PUT", "DELETE"),
        metadata=rules(each(lambda v: v in _METHODS, _unknown("method", _METHODS, " (upper case)"))),
    )
    idempotent_operations: tuple[str, ...] = ()

    def __attrs_post_init__(self) -> None:
        validate_instance(self, IN_CODE, self._table)


@refuse_unknown_keywords("body")
@attrs.frozen
class BodySettings:
    """The ``[body]`` table: how much of a response is read to look for a fault."""

    _table: ClassVar[str] = "body"

    max_read_bytes: int = attrs.field(
        default=65536, metadata=rules(check(lambda v: 0 <= v <= 64 * 2**20, "must be 0..67108864"))
    )

    def __attrs_post_init__(self) -> None:
        validate_instance(self, IN_CODE, self._table)


@attrs.frozen
class CodeWaits:
    """The backoff a policy applies to one code: what ``resilient-client policy check`` prints.

    ``code`` None is every code the policy has no rule for (and every transport error). Waits are
    the ceilings before jitter (``jitter = "full"`` draws each wait uniformly below its ceiling); a
    server's Retry-After replaces them, capped by ``retry.max_retry_after`` instead.
    """

    code: int | str | None
    #: The code's category in the vendor's catalog; None when the policy names no vendor.
    category: str | None
    #: ``any`` method, ``idempotent`` methods only, ``no``, or ``category`` (decided by a category
    #: the policy cannot know without a vendor).
    retried: Literal["any", "idempotent", "no", "category"]
    initial_wait: float
    #: The cap after ``retry.max_wait``: a code's own ``max_wait`` can lower it, never raise it.
    max_wait: float
    #: The ceiling of each wait, before retry 1, 2, ... (``retry.max_attempts - 1`` of them).
    waits: tuple[float, ...]


@refuse_unknown_keywords("")
@attrs.frozen
class RetryPolicy:
    """A whole retry policy; ``load_policy`` builds one from a file, ``RetryPolicy()`` is the default."""

    vendor: str | None = attrs.field(
        default=None, metadata=rules(check(lambda v: v is None or _known_vendor(v), _vendor_problem))
    )
    retry: RetrySettings = RetrySettings()
    soft_faults: dict[str, Literal["raise", "return"]] = attrs.field(
        factory=dict,
        metadata=rules(
            each(lambda k: k in SOFT_CATEGORIES, _unknown("soft-fault category", sorted(SOFT_CATEGORIES)))
        ),
    )
    codes: dict[str, CodeRule] = attrs.field(
        factory=dict, metadata=rules(each(_is_code_key, _code_key_problem))
    )
    budget: BudgetSettings = attrs.field(factory=BudgetSettings)
    body: BodySettings = BodySettings()
    breaker: BreakerSettings = attrs.field(factory=BreakerSettings)
    rate_limit: RateLimitSettings = attrs.field(factory=RateLimitSettings)
    concurrency: ConcurrencySettings = attrs.field(factory=ConcurrencySettings)
    guards: dict[str, GuardSettings] = attrs.field(factory=dict)
    state: StateSettings = attrs.field(factory=StateSettings)
    #: Where the policy came from, for messages (a file path, or "<default>").
    source: str = attrs.field(default="<default>", eq=False, metadata={"file_key": False})

    def __attrs_post_init__(self) -> None:
        # A policy loaded from a file was checked before it was built: a problem here comes from
        # code (RetryPolicy(...), or attrs.evolve of a loaded policy), not from the file.
        label = IN_CODE if self.source == "<default>" else f"{IN_CODE} (changed from {self.source})"
        if isinstance(self.codes, Mapping) and any(isinstance(k, int) for k in self.codes):
            object.__setattr__(self, "codes", _codes_by_text(self.codes, label))
        validate_instance(self, label, "")
        if self.vendor is not None:
            problems = _code_problems(catalog(self.vendor), ((k, r.outcome) for k, r in self.codes.items()))
            raise_problems([PolicyProblem(label, path, problem) for _, path, problem in problems])

    @property
    def _label(self) -> str:
        return IN_CODE if self.source == "<default>" else self.source

    def rule(self, code: object) -> CodeRule | None:
        """The override table for a code, if the policy has one."""
        return self.codes.get(str(code)) if self.codes else None

    def returns(self, category: str, code: object) -> bool:
        """True when a soft fault of this category/code is returned to the caller instead of raised."""
        rule = self.rule(code)
        if rule is not None and rule.outcome is not None:
            return rule.outcome == "return"
        return self.soft_faults.get(category, "raise") == "return"

    def retries(self, category: str, code: object) -> bool:
        """True when the policy retries this category/code for some method."""
        rule = self.rule(code) if code is not None else None
        if rule is not None and rule.retry is not None:
            return rule.retry
        return category in self.retry.categories

    def retries_any_method(self, category: str, code: object) -> bool:
        """True when a retried category/code is retried for non-idempotent methods too."""
        rule = self.rule(code) if code is not None else None
        if rule is not None and rule.any_method is not None:
            return rule.any_method
        return category in self.retry.any_method_categories

    def backoff_ceiling(self, attempt: int, code: object) -> float:
        """The longest backoff wait after failed attempt ``attempt`` (1-based), before jitter.

        ``initial_wait * multiplier ** (attempt - 1)``, a code's own ``initial_wait`` and ``max_wait``
        first, and never above ``retry.max_wait``, which caps every code.
        """
        settings = self.retry
        rule = self.rule(code) if code is not None else None
        if rule is None:  # most faults (every status-only one): no call for the code's numbers
            initial, cap = settings.initial_wait, settings.max_wait
        else:
            initial = rule.initial_wait if rule.initial_wait is not None else settings.initial_wait
            cap = _cap(settings, rule)
        try:
            grown = initial * settings.multiplier ** min(attempt - 1, 1000)
        except OverflowError:
            return cap
        return min(cap, grown)

    def effective_waits(self) -> tuple[CodeWaits, ...]:
        """The backoff of every code: the vendor's whole catalog, or the codes this policy names.

        The first row (``code`` None) is every other code. Pure: no file, no clock.
        """
        rows = [self._code_waits(None, None)]
        if self.vendor is not None:
            rows.extend(
                self._code_waits(e.code, e.category) for e in catalog(self.vendor) if e.category != "ok"
            )
        else:
            rows.extend(self._code_waits(code, None) for code in self.codes)
        return tuple(rows)

    def _code_waits(self, code: int | str | None, category: str | None) -> CodeWaits:
        retried: Literal["any", "idempotent", "no", "category"]
        rule = self.rule(code) if code is not None else None
        if category is None and (rule is None or rule.retry is None):
            retried = "category"
        elif not self.retries(category or "", code) or (
            category in SOFT_CATEGORIES and self.returns(category or "", code)
        ):
            retried = "no"
        elif self.retries_any_method(category or "", code):
            retried = "any"
        else:
            retried = "idempotent"
        attempts = range(1, self.retry.max_attempts)
        return CodeWaits(
            code=code,
            category=category,
            retried=retried,
            initial_wait=self.backoff_ceiling(1, code),
            max_wait=_cap(self.retry, rule),
            waits=tuple(self.backoff_ceiling(n, code) for n in attempts),
        )

    def problems_for(self, vendor_catalog: Catalog) -> list[PolicyProblem]:
        """What is wrong with this policy for a vendor: codes its catalog lacks, another vendor."""
        label = self._label
        if self.vendor is not None and self.vendor != vendor_catalog.vendor:
            return [
                PolicyProblem(
                    label, "vendor", f"policy is for {self.vendor!r}, not {vendor_catalog.vendor!r}"
                )
            ]
        problems = _code_problems(vendor_catalog, ((k, r.outcome) for k, r in self.codes.items()))
        return [PolicyProblem(label, path, problem) for _, path, problem in problems]

    def checked_for(self, vendor_catalog: Catalog) -> RetryPolicy:
        """This policy, after checking it fits the vendor (PolicyError otherwise)."""
        raise_problems(self.problems_for(vendor_catalog))
        return self


def _cap(settings: RetrySettings, rule: CodeRule | None) -> float:
    """A code's backoff cap: its own ``max_wait`` may lower ``retry.max_wait``, never raise it."""
    if rule is not None and rule.max_wait is not None:
        return min(settings.max_wait, rule.max_wait)
    return settings.max_wait


def _codes_by_text(codes: Mapping[Any, Any], label: str) -> dict[Any, Any]:
    """``codes`` with integer keys written as text (``{10: ...}`` -> ``{"10": ...}``)."""
    out: dict[Any, Any] = {}
    for key, rule in codes.items():
        text = str(key) if isinstance(key, int) and not isinstance(key, bool) else key
        if text in out:
            raise_problems(
                [PolicyProblem(label, join_path("codes", str(text)), "given twice (as text and as int)")]
            )
        out[text] = rule
    return out


def _code_problems(
    vendor_catalog: Catalog, codes: Iterable[tuple[str, str | None]]
) -> list[tuple[str, str, str]]:
    """(code key, key path, problem) for codes the catalog lacks or outcomes a code cannot have."""
    problems = []
    for key, outcome in codes:
        entry = vendor_catalog.lookup(key)
        if entry is None:
            problems.append((key, join_path("codes", key), f"unknown code for {vendor_catalog.vendor}"))
        elif outcome == "return" and entry.category not in SOFT_CATEGORIES:
            problems.append(
                (
                    key,
                    join_path(join_path("codes", key), "outcome"),
                    f"only a soft fault can be returned; {key} is {entry.category}",
                )
            )
    return problems


def _shipped_dir() -> Path:
    packaged = Path(str(resources.files("resilient_client"))) / "policies"
    if packaged.is_dir():
        return packaged
    # An editable install runs from src/: the policies sit at the top of the repository.
    return Path(__file__).resolve().parents[2] / "policies"


def shipped_policy_names() -> tuple[str, ...]:
    """The names of the policies shipped with the package (``default`` and one per vendor)."""
    return tuple(sorted(p.stem for p in _shipped_dir().glob("*.toml")))


def _is_name(text: str) -> bool:
    """True for a shipped policy's name (``"hyper"``) rather than a path (``"my.toml"``, ``"a/b"``)."""
    return bool(text) and "/" not in text and "\\" not in text and "." not in text


def _no_shipped(name: str) -> str:
    known = shipped_policy_names()
    near = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {near[0]!r}? " if near else ""
    return f"no shipped policy {name!r}; {hint}shipped: {', '.join(known)}"


def _shipped_hint(path: Path, how: str) -> str:
    """A hint for a missing path that names a shipped policy (``policies/hyper.toml`` outside a checkout)."""
    if path.suffix == ".toml" and path.stem in shipped_policy_names():
        return f"; the shipped policies come with the package: use {how.format(name=path.stem)}"
    return ""


@attrs.frozen
class _Layer:
    """One file of an ``extends`` chain: its label in messages and its table, ``extends`` removed."""

    label: str
    table: dict[str, Any]


def _read_chain(
    file: Path, label: str, chain: tuple[Path, ...], problems: list[PolicyProblem]
) -> list[_Layer]:
    """The layers from the root parent down to ``file``; every problem found goes to ``problems``."""
    try:
        raw = read_toml(file)
    except PolicyError as exc:
        problems.extend(exc.problems)
        return []
    found = table_problems(raw, RetryPolicy, also_allowed=("extends",))
    problems.extend(PolicyProblem(label, path, problem) for path, problem in found)
    parent_name = raw.pop("extends", None)
    layers: list[_Layer] = []
    if parent_name is not None:
        parent, problem = _resolve_parent(parent_name, file, chain)
        if problem:
            problems.append(PolicyProblem(label, "extends", problem))
        elif parent is not None:
            layers = _read_chain(parent, str(parent), (*chain, file.resolve()), problems)
    return [*layers, _Layer(label, raw)]


def _resolve_parent(name: object, file: Path, chain: tuple[Path, ...]) -> tuple[Path | None, str]:
    """The file ``extends = name`` names, or the problem with it."""
    if not isinstance(name, str) or not name:
        return None, f"must be a policy name or a relative path, not {show(name)}"
    if _is_name(name) and not name.endswith(".toml"):
        shipped = _shipped_dir() / f"{name}.toml"
        if not shipped.is_file():
            return None, _no_shipped(name)
        parent = shipped.resolve()
    else:
        parent = (file.parent / name).resolve()
    if parent in chain or parent == file.resolve():
        return None, f"extends itself through {parent}"
    if len(chain) + 1 >= _MAX_EXTENDS:
        return None, f"more than {_MAX_EXTENDS} files deep"
    if not parent.exists():
        hint = _shipped_hint(parent, 'extends = "{name}"')
        return None, f"file not found: {parent}{hint}"
    return parent, ""


def _merge(layers: list[_Layer]) -> tuple[dict[str, Any], dict[tuple[str, ...], str], list[PolicyProblem]]:
    """The layers merged table by table, the file that last set each key, and conflicts between them."""
    merged: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}
    problems: list[PolicyProblem] = []
    for layer in layers:
        vendor = layer.table.get("vendor")
        if isinstance(vendor, str) and isinstance(merged.get("vendor"), str) and merged["vendor"] != vendor:
            parent = origin[("vendor",)]
            problem = f"{show(vendor)}, but it extends a policy for {show(merged['vendor'])} ({parent})"
            problems.append(PolicyProblem(layer.label, "vendor", problem))
        _merge_table(merged, layer.table, layer.label, origin, ())
    return merged, origin, problems


def _merge_table(
    base: dict[str, Any],
    override: Mapping[str, Any],
    label: str,
    origin: dict[tuple[str, ...], str],
    at: tuple[str, ...],
) -> None:
    for key, value in override.items():
        path = (*at, key)
        origin[path] = label
        # Only the policy's own tables merge (codes.<code> is the deepest); anything deeper
        # was refused by the check, and is replaced whole rather than walked.
        if isinstance(value, Mapping) and len(at) < 2:
            if not isinstance(base.get(key), dict):
                base[key] = {}
            _merge_table(base[key], value, label, origin, path)
        else:
            base[key] = value


def _vendor_problems(merged: Mapping[str, Any], origin: Mapping[tuple[str, ...], str]) -> list[PolicyProblem]:
    """Codes the merged policy's vendor lacks, each blamed on the file that last wrote its table."""
    vendor, codes = merged.get("vendor"), merged.get("codes")
    if not isinstance(vendor, str) or not _known_vendor(vendor) or not isinstance(codes, Mapping):
        return []  # a bad vendor or codes table is already a problem of its own
    items = ((str(k), v.get("outcome") if isinstance(v, Mapping) else None) for k, v in codes.items())
    return [
        PolicyProblem(origin.get(("codes", key), "?"), path, problem)
        for key, path, problem in _code_problems(catalog(vendor), items)
    ]


def _load_file(file: Path, label: str) -> RetryPolicy:
    problems: list[PolicyProblem] = []
    layers = _read_chain(file, label, (), problems)
    merged, origin, conflicts = _merge(layers)
    # Against a vendor switched half-way, the parent's codes are no mistake of their own.
    problems.extend(conflicts or _vendor_problems(merged, origin))
    raise_problems(problems)
    return structure({**merged, "source": label}, RetryPolicy, label)


def load_policy(path: str | os.PathLike[str]) -> RetryPolicy:
    """Load a policy file (or a shipped policy by name: ``"hyper"``) into a frozen RetryPolicy."""
    file = Path(path)
    label = str(path) if isinstance(path, str) else str(file)
    if isinstance(path, str) and _is_name(path) and not file.is_file():
        shipped = _shipped_dir() / f"{path}.toml"
        if not shipped.is_file():
            raise PolicyError(PolicyProblem(label, "", f"no such file, and {_no_shipped(path)}"))
        return _load_file(shipped, str(shipped))
    if not os.path.lexists(file):
        hint = _shipped_hint(file, 'load_policy("{name}")')
        raise PolicyError(PolicyProblem(label, "", f"file not found{hint}"))
    return _load_file(file, label)


@functools.lru_cache(maxsize=16)
def _shipped_policy(name: str) -> RetryPolicy:
    return load_policy(name)


def resolve_policy(policy: RetryPolicy | str | os.PathLike[str] | None, vendor: str) -> RetryPolicy:
    """The policy a client uses: the one given, else ``$RESILIENT_CLIENT_<VENDOR>_POLICY``, else
    ``$RESILIENT_CLIENT_POLICY``, else the vendor's shipped policy.

    A policy named by a variable that fails (a bad file, one for another vendor) says which
    variable named it.
    """
    if isinstance(policy, RetryPolicy):
        return policy
    if policy is not None:
        return load_policy(policy)
    for variable in (VENDOR_POLICY_ENV.format(vendor=vendor.upper()), POLICY_ENV):
        from_env = os.environ.get(variable)
        if from_env:
            try:
                return load_policy(from_env).checked_for(catalog(vendor))
            except PolicyError as exc:
                named = f" (named by ${variable})"
                raise PolicyError(
                    [dataclasses.replace(p, file=p.file + named) for p in exc.problems]
                ) from None
    name = vendor if (_shipped_dir() / f"{vendor}.toml").is_file() else "default"
    return _shipped_policy(name)
