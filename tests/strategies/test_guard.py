"""Guards: which requests are guarded, by which keys, and holding them one attempt at a time."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from resilient_client import Clock, RetryPolicy
from resilient_client._pipeline import OPERATION_EXTENSION as OPERATION
from resilient_client._pipeline import Call
from resilient_client._redact import Secrets
from resilient_client._settings import GuardSettings
from resilient_client.stores import MemoryState, state_key
from resilient_client.strategies.guard import (
    COVERING_KEPT,
    LEASE_MARGIN,
    POLL_FIRST,
    POLL_MAX,
    Guard,
    GuardStrategy,
)

pytestmark = pytest.mark.anyio

NAMESPACE = state_key("guard", "hyper")


def make(
    limit: int = 1, max_wait: float = 30.0, key_fields: tuple[str, ...] = ("AccountID", "CompanyID")
) -> Guard:
    settings = GuardSettings(
        operations=("*Journal*", "PostGL"), key_fields=key_fields, limit=limit, max_wait=max_wait
    )
    return Guard("journal", settings, MemoryState(), NAMESPACE)


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


# -- keys ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "content", "extension", "expected"),
    [
        pytest.param(
            "PostJournal", body(AccountID="A1"), None, ("guard/hyper/journal/AccountID/A1",), id="one-field"
        ),
        pytest.param(
            "PostJournal",
            body(CompanyID=7, AccountID="A1", Amount=10),
            None,
            ("guard/hyper/journal/AccountID/A1", "guard/hyper/journal/CompanyID/7"),
            id="every-field-present-sorted",
        ),
        pytest.param(
            "PostGL", body(AccountID="A1"), None, ("guard/hyper/journal/AccountID/A1",), id="exact-glob"
        ),
        pytest.param("GetInvoice", body(AccountID="A1"), None, None, id="operation-not-covered"),
        pytest.param("postjournal", body(AccountID="A1"), None, None, id="globs-are-case-sensitive"),
        pytest.param("PostJournal", body(Amount=1), None, None, id="no-key-field-present"),
        pytest.param("PostJournal", body(AccountID=None), None, None, id="null-is-absent"),
        pytest.param("PostJournal", b"[1, 2]", None, None, id="body-not-an-object"),
        pytest.param("PostJournal", b"<html>", None, None, id="body-not-json"),
        pytest.param("PostJournal", b"\xff\xfe\xfa", None, None, id="body-not-text"),
        pytest.param("PostJournal", None, None, None, id="body-not-read"),
        pytest.param(
            "PostJournal",
            body(AccountID="A1"),
            "acct-9",
            ("guard/hyper/journal/acct-9",),
            id="extension-wins",
        ),
        pytest.param(
            "PostJournal",
            None,
            ["b", "a", "b"],
            ("guard/hyper/journal/a", "guard/hyper/journal/b"),
            id="extension-sequence",
        ),
        pytest.param("GetInvoice", None, "acct-9", None, id="extension-on-an-operation-not-covered"),
        pytest.param(
            "PostJournal",
            body(AccountID="a/../x"),
            None,
            ("guard/hyper/journal/AccountID/a%2F..%2Fx",),
            id="a-value-cannot-forge-another-key",
        ),
        pytest.param(
            "PostJournal",
            body(AccountID={"b": 1, "a": 2}),
            None,
            ("guard/hyper/journal/AccountID/%7B%22a%22%3A2%2C%22b%22%3A1%7D",),
            id="non-string-values-as-canonical-json",
        ),
    ],
)
def test_the_keys_of_a_request(
    operation: str, content: bytes | None, extension: object, expected: tuple[str, ...] | None
) -> None:
    assert make().keys_for(operation, content, extension) == expected


def test_the_same_account_gives_the_same_key_whatever_the_field_order() -> None:
    guard = make()
    first = guard.keys_for("PostJournal", b'{"AccountID": "A1", "CompanyID": 7}')
    second = guard.keys_for("PostJournal", b'{"CompanyID": 7, "AccountID": "A1"}')
    assert first == second


@pytest.mark.parametrize("extension", [42, b"acct", ["a", 1]])
def test_a_guard_key_extension_of_the_wrong_type_is_refused(extension: object) -> None:
    with pytest.raises(
        TypeError, match=r'extensions\["resilient_client.guard_key"\] must be a string or a sequence'
    ):
        make().keys_for("PostJournal", None, extension)


def test_a_guard_with_no_key_fields_guards_only_by_extension() -> None:
    guard = make(key_fields=())
    assert guard.keys_for("PostJournal", body(AccountID="A1")) is None
    assert guard.keys_for("PostJournal", None, "A1") == ("guard/hyper/journal/A1",)


# -- holding keys ----------------------------------------------------------------------------------------


async def test_a_key_is_held_by_one_attempt_at_a_time(twin: Callable[[object], Any]) -> None:
    ops = twin(make())
    keys = ("guard/hyper/journal/AccountID/A1",)
    assert await ops.try_enter(keys, "first", 30.0, 0.0)
    assert not await ops.try_enter(keys, "second", 30.0, 0.0)
    await ops.leave(keys, "first", 0.0)
    assert await ops.try_enter(keys, "second", 30.0, 0.0)


async def test_the_limit_admits_that_many(twin: Callable[[object], Any]) -> None:
    ops = twin(make(limit=2))
    entered = [await ops.try_enter(("k",), f"t{n}", 30.0, 0.0) for n in range(3)]
    assert entered == [True, True, False]


async def test_a_hold_lasts_the_time_left_plus_a_margin(twin: Callable[[object], Any]) -> None:
    ops = twin(make())
    assert await ops.try_enter(("k",), "crashed", 10.0, 0.0)
    assert not await ops.try_enter(("k",), "next", 30.0, 10.0 + LEASE_MARGIN - 0.1)
    assert await ops.try_enter(("k",), "next", 30.0, 10.0 + LEASE_MARGIN)


# -- waiting for busy keys -------------------------------------------------------------------------


def test_the_pause_between_tries_doubles_up_to_its_maximum() -> None:
    guard = make()
    pauses = [guard.next_try(tries, 0.0, 30.0) for tries in range(8)]
    assert pauses[0] == POLL_FIRST
    assert pauses == sorted(pauses)
    assert pauses[-1] == POLL_MAX


@pytest.mark.parametrize(
    ("max_wait", "waited", "time_left", "expected"),
    [
        pytest.param(30.0, 29.99, 60.0, pytest.approx(0.01), id="never-past-max-wait"),
        pytest.param(30.0, 1.0, 0.02, 0.02, id="never-past-the-deadline"),
        pytest.param(30.0, 30.0, 60.0, None, id="max-wait-reached"),
        pytest.param(30.0, 1.0, 0.0, None, id="deadline-reached"),
        pytest.param(0.0, 0.0, 60.0, None, id="max-wait-zero-means-no-waiting"),
        # What is left of 0.05 s waited on a clock at 1000 s: a pause of it would not move that clock.
        pytest.param(0.05, (1000.05 - 1000.0) - 4.5e-14, 60.0, None, id="a-rounding-error-left-is-none"),
    ],
)
def test_waiting_stops_at_max_wait_or_the_deadline(
    max_wait: float, waited: float, time_left: float, expected: object
) -> None:
    assert make(max_wait=max_wait).next_try(10, waited, time_left) == expected


def test_repr_names_the_guard_and_its_operations() -> None:
    assert repr(make()) == "Guard(name='journal', operations=('*Journal*', 'PostGL'))"


def test_the_guards_covering_an_operation_are_those_whose_globs_match_it_however_many_names_are_asked() -> (
    None
):
    store = MemoryState()
    journal = Guard(
        "journal", GuardSettings(operations=("*journal*",), key_fields=("AccountNo",)), store, "ns"
    )
    notes = Guard("notes", GuardSettings(operations=("notes", "*journal"), key_fields=("Id",)), store, "ns")
    strategy = GuardStrategy([notes, journal], "hyper")
    for _ in range(2):  # asked again, and after the names asked overflowed what is remembered
        for number in range(COVERING_KEPT + 10):
            assert strategy.covering(f"clients{number}") == ()
        assert strategy.covering("journal") == (journal, notes)  # in the order they are taken
        assert strategy.covering("journalEntry") == (journal,)
        assert strategy.covering("notes") == (notes,)
        assert strategy.covering("Journal") == ()  # globs are case-sensitive


@pytest.mark.parametrize(
    ("url", "extensions", "covered"),
    [
        pytest.param("https://h.test/api/PostJournal", {}, True, id="by-path"),
        pytest.param("https://h.test/api/PostJournal/?page=2", {}, True, id="slash-and-query"),
        pytest.param("https://h.test/api/Post%4Aournal", {}, True, id="percent-encoded"),
        pytest.param("https://h.test/api/Accounts", {}, False, id="uncovered"),
        # The same path as a covered one, naming an uncovered operation (and the other way round).
        pytest.param("https://h.test/api/PostJournal", {OPERATION: "Accounts"}, False, id="named-away"),
        pytest.param("https://h.test/api/Accounts", {OPERATION: "PostJournal"}, True, id="named-in"),
    ],
)
def test_a_call_is_covered_by_its_operation_whether_named_or_read_from_its_path(
    url: str, extensions: dict[str, object], covered: bool
) -> None:
    guard = make()
    strategy = GuardStrategy([guard], "hyper")
    for first in ("https://h.test/api/PostJournal", "https://h.test/api/Accounts", url):
        strategy.covering_call(call_for(first, {}))  # remembered by path, before and after
        assert strategy.covering_call(call_for(url, extensions)) == ((guard,) if covered else ())


def call_for(url: str, extensions: dict[str, object]) -> Call:
    request = httpx.Request("GET", url, extensions=extensions)
    return Call(request, RetryPolicy(), Clock(), "hyper", True, Secrets())
