"""The four catalogs: complete against the seed pages, every entry a class, bad files rejected clearly."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import httpx
import pytest

import resilient_client as rc
from resilient_client import _catalog, errors
from resilient_client.testing import FakeClock

DATA = Path(__file__).parent / "data"
#: Each vendor's own error page, as published (copied into the repository so the suite needs nothing beside it).
SEEDS = DATA / "seeds"


def seed_codes(vendor: str) -> set[int | str]:
    """Every code the vendor's own error page lists, read straight from the page."""
    text = (SEEDS / f"{vendor}.txt").read_text()
    if vendor == "updox":
        return {int(c) for c in re.findall(r"^(\d{4}) ", text, re.M)}
    if vendor == "usta":
        table = text[text.index("Error CodeMessageDescription") : text.index("API Responses")]
        return {int(c) for c in re.findall(r"^(\d{4}(?:\d{2})?)(?=\D|$)", table, re.M)}
    if vendor == "medable":
        return set(re.findall(r"^[a-z]+(k[A-Z][A-Za-z0-9]*?)\d{3}", text, re.M))
    return {int(c) for c in re.findall(r"^\| (\d+) \|", text, re.M)}


@pytest.mark.parametrize(
    ("vendor", "seed_count", "entries"),
    [
        pytest.param("updox", 53, 54, id="updox"),
        pytest.param("usta", 24, 24, id="usta"),
        pytest.param("medable", 67, 67, id="medable"),
        pytest.param("hyper", 35, 35, id="hyper"),
    ],
)
def test_every_seed_code_is_in_its_catalog(vendor: str, seed_count: int, entries: int) -> None:
    codes = seed_codes(vendor)
    assert len(codes) == seed_count
    catalog = rc.catalog(vendor)
    assert len(catalog) == entries
    missing = {c for c in codes if catalog.lookup(c) is None}
    assert not missing


ALL_ENTRIES = [
    pytest.param(entry, id=f"{vendor}-{entry.code}") for vendor in rc.VENDORS for entry in rc.catalog(vendor)
]


@pytest.mark.parametrize("entry", ALL_ENTRIES)
def test_every_entry_maps_to_an_exported_exception_class(entry: rc.CatalogEntry) -> None:
    cls = entry.exception
    if entry.category == "ok":
        assert cls is None  # a success code raises nothing: no class for it
        return
    assert cls is not None
    assert getattr(errors, cls.__name__) is cls
    assert issubclass(cls, rc.catalog(entry.vendor).vendor_error)
    assert cls.entry is entry
    assert issubclass(cls, errors.CATEGORY_CLASSES[entry.category])
    assert cls.category == entry.category
    assert entry.retryable == (
        entry.category
        in {"locked", "rate_limited", "request_timeout", "server_error", "service_unavailable", "not_ready"}
    )
    assert (cls.__doc__ or "").strip()


@pytest.mark.parametrize(
    ("vendor", "code", "category"),
    [
        pytest.param("hyper", 10, "locked", id="hyper-10"),
        pytest.param("hyper", 50, "service_unavailable", id="hyper-50"),
        pytest.param("hyper", 1, "incomplete_success", id="hyper-1"),
        pytest.param("hyper", 2, "no_results", id="hyper-2"),
        pytest.param("hyper", 12, "conflict", id="hyper-12-person-holds-lock"),
        pytest.param("hyper", 0, "ok", id="hyper-0"),
        pytest.param("updox", 2000, "ok", id="updox-2000"),
        pytest.param("updox", 5010, "validation", id="updox-5010"),
        pytest.param("updox", 5011, "validation", id="updox-5011"),
        pytest.param("updox", 5012, "validation", id="updox-5012"),
        pytest.param("medable", "kTooBusy", "service_unavailable", id="kTooBusy"),
        pytest.param("medable", "kThrottled", "rate_limited", id="kThrottled"),
        pytest.param("medable", "kNewLocation", "verification_required", id="kNewLocation"),
        pytest.param("medable", "kMediaNotReady", "not_ready", id="kMediaNotReady"),
        pytest.param("medable", "kValidationError", "validation", id="kValidationError"),
        pytest.param("medable", "kInvalidCredentials", "authentication", id="kInvalidCredentials"),
        pytest.param("medable", "kAccountLocked", "permission_denied", id="kAccountLocked"),
        pytest.param("usta", 3001, "not_found", id="usta-3001"),
        pytest.param("usta", 200601, "conflict", id="usta-200601"),
    ],
)
def test_spec_anchor_cases(vendor: str, code: int | str, category: str) -> None:
    entry = rc.catalog(vendor).lookup(code)
    assert entry is not None
    assert entry.category == category


def test_documented_status_only_where_the_seed_gives_one() -> None:
    assert all(e.http_status is None for v in ("updox", "usta") for e in rc.catalog(v))
    assert rc.catalog("hyper").lookup(10).http_status == 423  # type: ignore[union-attr]
    assert rc.catalog("medable").lookup("kNewLocation").http_status == 200  # type: ignore[union-attr]


def test_lookup_accepts_a_code_as_text_and_answers_none_for_unknown_codes() -> None:
    hyper = rc.catalog("hyper")
    assert hyper.lookup("10") is hyper.lookup(10) is not None
    assert hyper.lookup(99) is None
    assert hyper.lookup(True) is None
    assert hyper.lookup([10]) is None
    assert rc.catalog("medable").lookup("kNope") is None
    assert 10 in hyper
    assert [e.code for e in hyper][:3] == [0, 1, 2]


def test_exact_code_classes_are_caught_by_vendor_category_and_code() -> None:
    cls = rc.catalog("hyper").lookup(10).exception  # type: ignore[union-attr]
    assert cls is errors.Hyper10Error
    assert issubclass(cls, errors.HyperError)
    assert issubclass(cls, errors.ResourceLockedError)
    assert errors.MedableThrottledFault.entry.code == "kThrottled"  # type: ignore[union-attr]
    assert issubclass(errors.HyperServerError, errors.ServerError)


def test_unknown_vendor_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"unknown vendor 'nope'.*hyper"):
        rc.catalog("nope")


BROKEN = [
    pytest.param("vendor = [", "invalid TOML", id="toml-syntax"),
    pytest.param(
        'vendor = "b1"\ntitle = "B"\nexception_prefix = "B"\ncode_type = "int"\n[envelope]\nreader = "generic"\n'
        '[[entries]]\ncode = 1\nmessage = "m"\ncategory = "sleepy"\n',
        "entries[0].category: unknown category",
        id="unknown-category",
    ),
    pytest.param(
        'vendor = "b2"\ntitle = "B"\nexception_prefix = "B"\ncode_type = "int"\n[envelope]\nreader = "generic"\n'
        '[[entries]]\ncode = 1\nmessage = "m"\ncategory = "ok"\n[[entries]]\ncode = 1\nmessage = "n"\n'
        'category = "ok"\n',
        "entries[1].code: duplicate code 1",
        id="duplicate-code",
    ),
    pytest.param(
        'vendor = "b3"\ntitle = "B"\nexception_prefix = "B"\ncode_type = "int"\n[envelope]\nreader = "generic"\n'
        '[[entries]]\ncode = "one"\nmessage = "m"\ncategory = "ok"\n',
        "entries[0].code: code 'one' must be int",
        id="wrong-code-type",
    ),
    pytest.param(
        'vendor = "b4"\ntitle = "B"\nexception_prefix = "B"\ncode_type = "int"\n[envelope]\nreader = "generic"\n'
        '[[entries]]\ncode = 1\ncategory = "ok"\n',
        "entries[0].message: required key is missing",
        id="missing-key",
    ),
    pytest.param(
        'vendor = "b5"\ntitle = "B"\nexception_prefix = "B"\ncode_type = "int"\ncolour = "red"\n'
        '[envelope]\nreader = "generic"\nentries = []\n',
        "unknown key: colour",
        id="unknown-key",
    ),
    pytest.param(
        'vendor = "b6"\ntitle = "B"\nexception_prefix = "B"\ncode_type = "int"\n[envelope]\nreader = "xml"\n'
        "[[entries]]\ncode = 1\nmessage = 'm'\ncategory = 'ok'\n",
        "envelope.reader: must be one of",
        id="unknown-reader",
    ),
]


@pytest.mark.parametrize(("text", "problem"), BROKEN)
def test_a_broken_catalog_names_the_file_and_the_entry(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(text)
    with pytest.raises(rc.PolicyError) as caught:
        rc.load_catalog(path)
    message = str(caught.value)
    assert message.startswith(str(path))
    assert problem in message
    assert "Traceback" not in message
    assert "ClassValidationError" not in message


def test_a_fifth_vendor_needs_only_a_data_file() -> None:
    acme = rc.load_catalog(DATA / "acme.toml")
    assert rc.catalog("acme") is acme
    assert len(acme) == 4
    assert errors.AcmeSlowDownFault.entry is acme.lookup("SLOW_DOWN")
    clock = FakeClock()
    answers = iter(
        [
            httpx.Response(429, json={"ok": False, "error": {"code": "SLOW_DOWN", "message": "easy"}}),
            httpx.Response(
                400,
                json={
                    "ok": False,
                    "error": {
                        "code": "BAD_FIELD",
                        "message": "bad",
                        "fields": [{"rule": "required", "text": "missing", "field": "name"}],
                    },
                },
                headers={"x-acme-trace": "trace-7"},
            ),
            httpx.Response(200, json={"ok": False, "error": {"code": "MYSTERY"}}),
            httpx.Response(200, json={"ok": True, "widgets": []}),
        ]
    )
    transport = rc.ResilientTransport(
        "acme", transport=httpx.MockTransport(lambda r: next(answers)), **clock.options()
    )
    with httpx.Client(transport=transport) as client:
        with pytest.raises(errors.AcmeBadFieldFault) as caught:
            client.post("https://acme.test/widgets", json={})
        assert isinstance(caught.value, errors.ValidationError)
        assert caught.value.attempts == 2
        assert caught.value.request_id == "trace-7"
        assert [(f.code, f.path) for f in caught.value.details] == [("required", "name")]
        with pytest.raises(errors.UnknownFaultError):
            client.post("https://acme.test/widgets", json={})
        assert client.get("https://acme.test/widgets").json() == {"ok": True, "widgets": []}


def test_a_shipped_vendor_cannot_be_replaced(tmp_path: Path) -> None:
    text = (DATA / "acme.toml").read_text().replace('vendor = "acme"', 'vendor = "hyper"')
    path = tmp_path / "fake.toml"
    path.write_text(text)
    with pytest.raises(rc.PolicyError, match="shipped vendor"):
        rc.load_catalog(path)


def test_a_fifth_vendor_without_a_success_flag_reads_its_ok_code_as_success(tmp_path: Path) -> None:
    path = tmp_path / "zeta.toml"
    path.write_text(
        """
vendor = "zeta"
title = "Zeta: a Hyper-like vendor whose every body carries a code"
exception_prefix = "Zeta"
code_type = "int"
[envelope]
reader = "generic"
code = "status.code"
message = "status.text"
[[entries]]
code = 0
message = "Success"
category = "ok"
[[entries]]
code = 9
message = "Busy"
category = "service_unavailable"
"""
    )
    zeta = rc.load_catalog(path)
    answers = iter(
        [
            httpx.Response(200, json={"status": {"code": 0}, "rows": [1]}),
            httpx.Response(200, json={"status": {"code": "0"}}),
            httpx.Response(200, json={"status": {"code": 77, "text": "new"}}),
        ]
    )
    transport = rc.ResilientTransport(zeta, transport=httpx.MockTransport(lambda r: next(answers)))
    with httpx.Client(transport=transport) as client:
        assert client.get("https://zeta.test/a").json()["rows"] == [1]
        assert client.get("https://zeta.test/a").status_code == 200
        with pytest.raises(errors.UnknownFaultError):  # a code it lacks under 200 is never success
            client.get("https://zeta.test/a")


def test_indexing_a_catalog_finds_a_known_code_and_raises_key_error_for_others() -> None:
    hyper = rc.catalog("hyper")
    assert hyper[10] is hyper.lookup(10)
    assert hyper["10"] is hyper[10]  # normalised as lookup does
    assert rc.catalog("medable")["kThrottled"].exception is errors.MedableThrottledFault
    for missing in (99, "nope", True, None):
        with pytest.raises(KeyError) as caught:
            hyper[missing]
        assert caught.value.args == (missing,)
        assert f"the hyper catalog has no code {missing!r}" in caught.value.__notes__


# -- the shipped vendors' classes are static, generated from the catalogs --------------------------

ROOT = Path(__file__).resolve().parents[1]


def load_generator() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("generate_errors", ROOT / "scripts" / "generate_errors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_regenerating_the_shipped_classes_changes_nothing() -> None:
    generator = load_generator()
    assert generator.TARGET.read_text(encoding="utf-8") == generator.render(), (
        "errors/_shipped.py is out of date: run python scripts/generate_errors.py"
    )


def test_a_shipped_catalog_reuses_the_generated_classes() -> None:
    from resilient_client.errors import _shipped

    for vendor in rc.VENDORS:
        found = rc.catalog(vendor)
        classes = [entry.exception for entry in found if entry.exception is not None]
        classes += [found.error_class(category) for category in errors.CATEGORY_CLASSES]
        for cls in classes:
            assert vars(_shipped)[cls.__name__] is cls
            # A module attribute once loaded (served by __getattr__ only the first time).
            assert vars(errors)[cls.__name__] is cls
    assert errors.Hyper10Error.__bases__ == (errors.HyperError, errors.ResourceLockedError)


def test_no_class_exists_for_a_code_that_means_success() -> None:
    successes = [entry for vendor in rc.VENDORS for entry in rc.catalog(vendor) if entry.category == "ok"]
    assert {(e.vendor, e.code) for e in successes} == {("hyper", 0), ("updox", 2000)}
    for name in ("Hyper0Error", "Updox2000Error"):
        assert not hasattr(errors, name)
        assert name not in dir(errors)


def test_a_shipped_catalog_that_no_longer_matches_its_classes_is_refused() -> None:
    raw = tomllib.loads((ROOT / "src" / "resilient_client" / "catalogs" / "hyper.toml").read_text())
    entry = next(e for e in raw["entries"] if e["code"] == 10)
    entry["category"] = "conflict"  # edited without regenerating errors/_shipped.py
    raw["entries"].append({"code": 77, "message": "new", "category": "server_error"})
    with pytest.raises(rc.PolicyError) as caught:
        _catalog._parse(raw, "hyper.toml")
    assert [(p.key_path, p.problem) for p in caught.value.problems] == [
        (f"entries[{i}].code", f"class {name} in resilient_client.errors {_catalog._STALE}")
        for i, name in (
            (raw["entries"].index(entry), "Hyper10Error"),
            (len(raw["entries"]) - 1, "Hyper77Error"),
        )
    ]
    assert "generate_errors.py" in str(caught.value)
    assert errors.Hyper10Error.category == "locked"


def test_an_added_vendor_s_classes_are_served_by_name_once_loaded() -> None:
    assert "AcmeSlowDownFault" not in vars(errors)
    acme = rc.load_catalog(DATA / "acme.toml")
    cls = acme["SLOW_DOWN"].exception
    assert errors.AcmeSlowDownFault is cls and "AcmeSlowDownFault" in dir(errors)
    assert cls.__module__ == "resilient_client.errors"
    assert rc.load_catalog(DATA / "acme.toml")["SLOW_DOWN"].exception is errors.AcmeSlowDownFault  # reload


def test_an_added_vendor_cannot_take_a_shipped_class_name(tmp_path: Path) -> None:
    text = (DATA / "acme.toml").read_text().replace('vendor = "acme"', 'vendor = "acme2"')
    text = text.replace('exception_prefix = "Acme"', 'exception_prefix = "Hyper"')
    path = tmp_path / "clash.toml"
    path.write_text(text)
    with pytest.raises(rc.PolicyError, match="exception name HyperError is already taken") as caught:
        rc.load_catalog(path)
    # Every clash is listed (the vendor base and each per-category class), and nothing is registered.
    assert len(caught.value.problems) == 1 + len(errors.CATEGORY_CLASSES)
    assert {p.key_path for p in caught.value.problems} == {"exception_prefix"}
    assert getattr(errors, "HyperSlowDownFault", None) is None
    with pytest.raises(ValueError, match="already taken"):
        errors.register(type("Hyper10Error", (errors.ApiError,), {}))


def test_a_per_code_class_finds_its_entry_before_anyone_loaded_its_catalog() -> None:
    # A fresh interpreter: nothing has asked for the hyper catalog yet.
    code = (
        "import resilient_client._catalog as c, resilient_client.errors as e; "
        "assert 'hyper' not in c._registry; "
        "assert e.Hyper10Error.entry.code == 10 and e.HyperServerError.entry is None; print('ok')"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, env=env)
    assert done.stdout == "ok\n", done.stderr
