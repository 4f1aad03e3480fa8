"""Retry policies: TOML files loaded into frozen attrs classes, with ``extends`` and validation.

Every number and list of the retry rules is a key here; README.md documents each with its default.
A problem anywhere (unknown key, wrong type, negative wait, unknown code or category, a cycle of
``extends``, bad TOML) is a PolicyError naming the file, the key path and the problem.
"""

from __future__ import annotations

import functools
import os
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import attrs

from resilient_client._catalog import CATEGORIES, SOFT_CATEGORIES, Catalog, catalog
from resilient_client._structure import check, join_path, read_toml, structure
from resilient_client.errors import PolicyError, PolicyProblem

#: Environment variable naming the policy file used when a client or transport is given none.
POLICY_ENV = "RESILIENT_CLIENT_POLICY"
#: The per-vendor variable (``RESILIENT_CLIENT_HYPER_POLICY``), which wins over ``POLICY_ENV``.
VENDOR_POLICY_ENV = "RESILIENT_CLIENT_{vendor}_POLICY"
_MAX_EXTENDS = 32

_FAULT_CATEGORIES = tuple(c for c in CATEGORIES if c != "ok")
_METHODS = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "POST", "PATCH", "TRACE", "CONNECT")


def _categories(value: tuple[str, ...]) -> bool:
    return all(v in _FAULT_CATEGORIES for v in value)


_CATEGORY_LIST = check(_categories, f"unknown category; known: {', '.join(_FAULT_CATEGORIES)}")
# Waits and timeouts are finite: an infinite one overflows clocks and timers (and is never meant).
_MAX_SECONDS = 10.0**7
_FINITE = check(lambda v: v is None or v <= _MAX_SECONDS, f"must be <= {_MAX_SECONDS:.0f} seconds")
_NON_NEGATIVE = [check(lambda v: v >= 0, "must be >= 0"), _FINITE]
_OPT_NON_NEGATIVE = [check(lambda v: v is None or v >= 0, "must be >= 0"), _FINITE]


@attrs.frozen
class CodeRule:
    """Overrides for one code: whether it is retried, for which methods, soft-fault outcome, waits."""

    retry: bool | None = None
    any_method: bool | None = None
    outcome: Literal["raise", "return"] | None = None
    initial_wait: float | None = attrs.field(default=None, validator=_OPT_NON_NEGATIVE)
    max_wait: float | None = attrs.field(default=None, validator=_OPT_NON_NEGATIVE)


@attrs.frozen
class RetrySettings:
    """The ``[retry]`` table: attempts, time limits, backoff, and what is retried for which method."""

    max_attempts: int = attrs.field(
        default=4, validator=check(lambda v: 1 <= v <= 100, "must be between 1 and 100")
    )
    total_timeout: float = attrs.field(
        default=30.0,
        validator=[check(lambda v: v > 0, "must be > 0"), _FINITE],
    )
    attempt_timeout: float = attrs.field(default=0.0, validator=_NON_NEGATIVE)
    initial_wait: float = attrs.field(default=0.5, validator=_NON_NEGATIVE)
    max_wait: float = attrs.field(default=8.0, validator=_NON_NEGATIVE)
    multiplier: float = attrs.field(
        default=2.0,
        validator=[check(lambda v: v >= 1, "must be >= 1"), check(lambda v: v <= 1000, "must be <= 1000")],
    )
    jitter: Literal["full", "none"] = "full"
    max_retry_after: float = attrs.field(default=60.0, validator=_NON_NEGATIVE)
    categories: tuple[str, ...] = attrs.field(
        default=(
            "locked",
            "not_ready",
            "rate_limited",
            "request_timeout",
            "server_error",
            "service_unavailable",
        ),
        validator=_CATEGORY_LIST,
    )
    any_method_categories: tuple[str, ...] = attrs.field(
        default=("locked", "not_ready", "rate_limited", "service_unavailable"),
        validator=_CATEGORY_LIST,
    )
    transport_errors: bool = True
    idempotent_methods: tuple[str, ...] = attrs.field(
        default=("GET", "HEAD", "OPTIONS", "PUT", "DELETE"),
        validator=check(
            lambda v: all(m in _METHODS for m in v),
            f"unknown method; known: {', '.join(_METHODS)} (upper case)",
        ),
    )
    idempotent_operations: tuple[str, ...] = ()


@attrs.frozen
class BudgetSettings:
    """The ``[budget]`` table: a retry budget shared by the requests of one transport."""

    ratio: float = attrs.field(default=0.0, validator=check(lambda v: 0 <= v <= 100, "must be 0..100"))
    burst: float = attrs.field(
        default=10.0,
        validator=[check(lambda v: v >= 1, "must be >= 1"), check(lambda v: v <= 10**9, "must be <= 1e9")],
    )


@attrs.frozen
class BodySettings:
    """The ``[body]`` table: how much of a response is read to look for a fault."""

    max_read_bytes: int = attrs.field(
        default=65536, validator=check(lambda v: 0 <= v <= 64 * 2**20, "must be 0..67108864")
    )


@attrs.frozen
class RetryPolicy:
    """A whole retry policy; ``load_policy`` builds one from a file, ``RetryPolicy()`` is the default."""

    vendor: str | None = None
    retry: RetrySettings = RetrySettings()
    soft_faults: dict[str, Literal["raise", "return"]] = attrs.field(
        factory=dict,
        validator=check(
            lambda v: all(k in SOFT_CATEGORIES for k in v),
            f"unknown soft-fault category; known: {', '.join(sorted(SOFT_CATEGORIES))}",
        ),
    )
    codes: dict[str, CodeRule] = attrs.field(factory=dict)
    budget: BudgetSettings = BudgetSettings()
    body: BodySettings = BodySettings()
    #: Where the policy came from, for messages (a file path, or "<default>").
    source: str = attrs.field(default="<default>", eq=False)

    def rule(self, code: object) -> CodeRule | None:
        """The override table for a code, if the policy has one."""
        return self.codes.get(str(code)) if self.codes else None

    def returns(self, category: str, code: object) -> bool:
        """True when a soft fault of this category/code is returned to the caller instead of raised."""
        rule = self.rule(code)
        if rule is not None and rule.outcome is not None:
            return rule.outcome == "return"
        return self.soft_faults.get(category, "raise") == "return"

    def problems_for(self, vendor_catalog: Catalog) -> list[PolicyProblem]:
        """What is wrong with this policy for a vendor: codes its catalog lacks, another vendor."""
        problems = []
        if self.vendor is not None and self.vendor != vendor_catalog.vendor:
            problems.append(
                PolicyProblem(
                    self.source,
                    "vendor",
                    f"policy is for {self.vendor!r}, not {vendor_catalog.vendor!r}",
                )
            )
        for key, rule in self.codes.items():
            entry = vendor_catalog.lookup(key)
            if entry is None:
                problems.append(
                    PolicyProblem(
                        self.source,
                        join_path("codes", key),
                        f"unknown code for {vendor_catalog.vendor}",
                    )
                )
            elif rule.outcome == "return" and entry.category not in SOFT_CATEGORIES:
                problems.append(
                    PolicyProblem(
                        self.source,
                        join_path(join_path("codes", key), "outcome"),
                        f"only a soft fault can be returned; {key} is {entry.category}",
                    )
                )
        return problems

    def checked_for(self, vendor_catalog: Catalog) -> RetryPolicy:
        """This policy, after checking it fits the vendor (PolicyError otherwise)."""
        problems = self.problems_for(vendor_catalog)
        if problems:
            raise PolicyError(problems)
        return self


def _shipped_dir() -> Path:
    packaged = Path(str(resources.files("resilient_client"))) / "policies"
    if packaged.is_dir():
        return packaged
    # An editable install runs from src/: the policies sit at the top of the repository.
    return Path(__file__).resolve().parents[2] / "policies"


def shipped_policy_names() -> tuple[str, ...]:
    """The names of the policies shipped with the package (``default`` and one per vendor)."""
    return tuple(sorted(p.stem for p in _shipped_dir().glob("*.toml")))


def _merge(
    base: dict[str, Any], override: dict[str, Any], file: str, origin: dict[str, str], prefix: str = ""
) -> None:
    """Merge ``override`` into ``base`` table by table; ``origin`` maps each key path to its file."""
    for key, value in override.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, file, origin, f"{path}.")
        else:
            base[key] = value
            _record(origin, path, value, file)


def _record(origin: dict[str, str], path: str, value: Any, file: str) -> None:
    origin[path] = file
    if isinstance(value, dict):
        for key, sub in value.items():
            _record(origin, f"{path}.{key}", sub, file)


def _resolve_parent(name: object, file: Path) -> Path:
    if not isinstance(name, str) or not name:
        raise PolicyError(PolicyProblem(str(file), "extends", "must be a policy name or a relative path"))
    if "/" not in name and "\\" not in name and not name.endswith(".toml"):
        shipped = _shipped_dir() / f"{name}.toml"
        if not shipped.is_file():
            known = ", ".join(shipped_policy_names())
            raise PolicyError(
                PolicyProblem(str(file), "extends", f"no shipped policy {name!r}; known: {known}")
            )
        return shipped
    return (file.parent / name).resolve()


def _load_raw(file: Path, chain: tuple[Path, ...]) -> tuple[dict[str, Any], dict[str, str]]:
    raw = read_toml(file)
    origin: dict[str, str] = {}
    parent_name = raw.pop("extends", None)
    if parent_name is None:
        merged: dict[str, Any] = {}
    else:
        parent = _resolve_parent(parent_name, file)
        if len(chain) >= _MAX_EXTENDS:
            raise PolicyError(PolicyProblem(str(file), "extends", f"more than {_MAX_EXTENDS} files deep"))
        if parent in chain or parent == file.resolve():
            raise PolicyError(PolicyProblem(str(file), "extends", f"extends itself through {parent}"))
        if not parent.is_file():
            raise PolicyError(PolicyProblem(str(file), "extends", f"file not found: {parent}"))
        merged, origin = _load_raw(parent, (*chain, file.resolve()))
    _merge(merged, raw, str(file), origin)
    return merged, origin


def _blame(origin: dict[str, str], key_path: str, default: str) -> str:
    parts = key_path.replace('"', "").split(".")
    for n in range(len(parts), 0, -1):
        found = origin.get(".".join(parts[:n]))
        if found is not None:
            return found
    return default


def load_policy(path: str | os.PathLike[str]) -> RetryPolicy:
    """Load a policy file (or a shipped policy by name: ``"hyper"``) into a frozen RetryPolicy."""
    file = Path(path)
    if not file.exists() and isinstance(path, str) and "/" not in path and "." not in path:
        file = _resolve_parent(path, Path("<shipped>"))
    merged, origin = _load_raw(file, ())
    if "source" in merged:
        raise PolicyError(PolicyProblem(str(file), "source", "unknown key"))
    try:
        policy = structure(merged, RetryPolicy, str(file))
    except PolicyError as exc:
        # A key inherited from a parent file is that file's problem: say so.
        raise PolicyError(
            [attrs.evolve(p, file=_blame(origin, p.key_path, p.file)) for p in exc.problems]
        ) from None
    policy = attrs.evolve(policy, source=str(file))
    if policy.vendor is not None:
        try:
            vendor_catalog = catalog(policy.vendor)
        except ValueError as exc:
            raise PolicyError(PolicyProblem(str(file), "vendor", str(exc))) from None
        policy.checked_for(vendor_catalog)
    return policy


@functools.lru_cache(maxsize=16)
def _shipped_policy(name: str) -> RetryPolicy:
    return load_policy(_shipped_dir() / f"{name}.toml")


def resolve_policy(policy: RetryPolicy | str | os.PathLike[str] | None, vendor: str) -> RetryPolicy:
    """The policy a client uses: the one given, else ``$RESILIENT_CLIENT_<VENDOR>_POLICY``, else
    ``$RESILIENT_CLIENT_POLICY``, else the vendor's shipped policy."""
    if isinstance(policy, RetryPolicy):
        return policy
    if policy is not None:
        return load_policy(policy)
    from_env = os.environ.get(VENDOR_POLICY_ENV.format(vendor=vendor.upper())) or os.environ.get(POLICY_ENV)
    if from_env:
        return load_policy(from_env)
    name = vendor if (_shipped_dir() / f"{vendor}.toml").is_file() else "default"
    return _shipped_policy(name)
