"""Envelope readers: a vendor's decoded JSON body -> the faults it carries. Pure, no I/O.

Each reader returns None when the body is not that vendor's envelope at all (a plain data document,
a proxy's JSON), and never raises on any JSON value: the classifier then decides by HTTP status.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import attrs

from resilient_client._catalog import EnvelopeSpec
from resilient_client.errors import Fault

_MAX_TEXT = 2000
_MAX_FAULTS = 200


@attrs.frozen
class Envelope:
    """What a body says: its top-level code and message, whether it claims failure, its faults."""

    code: object
    message: str
    failed: bool
    faults: tuple[Fault, ...] = ()
    item_failures: tuple[Fault, ...] = ()


Reader = Callable[[Any, EnvelopeSpec], Envelope | None]


def _text(value: object) -> str:
    if isinstance(value, str):
        return value[:_MAX_TEXT]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


def _opt_text(value: object) -> str | None:
    return _text(value) or None


def _opt_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _hashable_code(value: object) -> int | str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 1e18 else None
    if isinstance(value, str):
        return value[:100]
    return None


def _read_updox(doc: Any, _spec: EnvelopeSpec) -> Envelope | None:
    if not isinstance(doc, dict) or ("responseCode" not in doc and "successful" not in doc):
        return None
    code = _hashable_code(doc.get("responseCode"))
    numeric = _opt_int(code) if not isinstance(code, str) else None
    if isinstance(code, str) and code.strip().isdigit() and len(code) < 10:
        numeric = int(code)
    flag = doc.get("successful")
    failed = flag is not True if numeric is None else flag is False or not 2000 <= numeric <= 2999
    message = _text(doc.get("responseMessage"))
    items: list[Fault] = []
    statuses = doc.get("statuses")
    if isinstance(statuses, list):
        for item in statuses[:_MAX_FAULTS]:
            if isinstance(item, dict) and item.get("success") is False:
                items.append(
                    Fault(
                        code=_hashable_code(item.get("code")),
                        message=_text(item.get("message")),
                        item_id=_opt_text(item.get("id")),
                    )
                )
    top = Fault(code=code, message=message)
    return Envelope(code, message, failed, (top,) if failed else (), tuple(items))


def _usta_fault(item: dict[str, Any]) -> Fault:
    return Fault(
        code=_hashable_code(item.get("errorCode")),
        message=_text(item.get("message")),
        path=_opt_text(item.get("subject")),
        reason=_opt_text(item.get("subjectType")),
    )


def _read_usta(doc: Any, _spec: EnvelopeSpec) -> Envelope | None:
    if not isinstance(doc, dict):
        return None
    errors = doc.get("errors")
    if isinstance(errors, list):
        faults = tuple(_usta_fault(e) for e in errors[:_MAX_FAULTS] if isinstance(e, dict))
        if not faults:
            return None
        top = next((f for f in faults if f.code is not None), faults[0])
        return Envelope(top.code, top.message, True, faults)
    if "errorCode" in doc:
        fault = _usta_fault(doc)
        return Envelope(fault.code, fault.message, True, (fault,))
    oauth_error = doc.get("error")
    if isinstance(oauth_error, str) and oauth_error:
        # The auth layer answers OAuth style (RFC 6749 section 5.2, RFC 6750 section 3.1).
        fault = Fault(code=oauth_error[:100], message=_text(doc.get("error_description")))
        return Envelope(fault.code, fault.message or oauth_error, True, (fault,))
    return None


def _medable_fault(doc: dict[str, Any]) -> Fault:
    return Fault(
        code=_hashable_code(doc.get("code")),
        message=_text(doc.get("message")) or _text(doc.get("reason")),
        path=_opt_text(doc.get("path")),
        status=_opt_int(doc.get("status")),
        reason=_opt_text(doc.get("reason")),
        subcode=_opt_text(doc.get("errCode")),
    )


def _medable_children(doc: dict[str, Any], out: list[Fault], depth: int) -> None:
    children = doc.get("faults")
    if not isinstance(children, list) or depth > 10:
        return
    for child in children:
        if len(out) >= _MAX_FAULTS:
            return
        if isinstance(child, dict):
            out.append(_medable_fault(child))
            _medable_children(child, out, depth + 1)


def _read_medable(doc: Any, _spec: EnvelopeSpec) -> Envelope | None:
    if not isinstance(doc, dict) or doc.get("object") != "fault":
        return None
    top = _medable_fault(doc)
    children: list[Fault] = []
    _medable_children(doc, children, 0)
    return Envelope(top.code, top.message, True, tuple(children) or (top,))


def _read_hyper(doc: Any, _spec: EnvelopeSpec) -> Envelope | None:
    if not isinstance(doc, dict) or "ResponseCode" not in doc:
        return None
    code = _hashable_code(doc.get("ResponseCode"))
    digits = str(code).strip() if isinstance(code, int | str) else ""
    failed = not (digits and set(digits) == {"0"})  # 0, "0", " 0" and "00" all mean success
    message = _text(doc.get("ResponseMsgEng"))
    return Envelope(code, message, failed, (Fault(code=code, message=message),) if failed else ())


def _at(doc: Any, path: str | None) -> Any:
    if path is None:
        return None
    for part in path.split("."):
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)
    return doc


def _read_generic(doc: Any, spec: EnvelopeSpec) -> Envelope | None:
    if not isinstance(doc, dict):
        return None
    code = _hashable_code(_at(doc, spec.code))
    flag = _at(doc, spec.success_flag)
    children = _at(doc, spec.faults)
    faults = tuple(
        Fault(
            code=_hashable_code(c.get(spec.fault_code)),
            message=_text(c.get(spec.fault_message)),
            path=_opt_text(c.get(spec.fault_path)),
        )
        for c in (children if isinstance(children, list) else [])[:_MAX_FAULTS]
        if isinstance(c, dict)
    )
    if code is None and flag is not False and not faults:
        return None
    message = _text(_at(doc, spec.message))
    if spec.success_flag is not None:
        failed = flag is False
    else:
        failed = bool(faults) or (code is not None and str(code).strip() not in spec.success_codes)
    return Envelope(code, message, failed, faults or (Fault(code=code, message=message),))


READERS: dict[str, Reader] = {
    "updox": _read_updox,
    "usta": _read_usta,
    "medable": _read_medable,
    "hyper": _read_hyper,
    "generic": _read_generic,
}


def _single_match(key: bytes, pattern: bytes) -> Callable[[bytes], bool]:
    compiled = re.compile(pattern)

    def quick(body: bytes) -> bool:
        return body.count(key) == 1 and compiled.search(body) is not None

    return quick


#: vendor reader -> the marker whose absence from a 2xx body proves it holds no fault.
_NONE_OF: dict[str, bytes] = {"usta": b'"error', "medable": b'"fault"'}


def _none_of_scanner(marker: bytes) -> Callable[[bytes], bool]:
    """The scan of a vendor in ``_NONE_OF``: ``_scan_general``'s checks and the marker's in one
    function, since it runs on every success."""

    def scan(body: bytes) -> bool:
        if body[:2] in _WIDE_STARTS or (body.find(b"\\") >= 0 and body.find(b"\\u") >= 0):
            return False  # UTF-16/32 or a \u escape: decoded (see surely_no_fault)
        return marker not in body

    return scan


_UPDOX_OK = _single_match(b'"responseCode"', rb'"responseCode"\s*:\s*2\d{3}\s*[,}]')
_UPDOX_FAILED = re.compile(rb'"success(?:ful)?"\s*:\s*false')

# Cheap byte scans that prove a 2xx body carries no fault, so the success path skips json.loads.
# A False answer proves nothing: the body is then decoded and read in full.
_QUICK_OK: dict[str, Callable[[bytes], bool]] = {
    "updox": lambda body: _UPDOX_OK(body) and _UPDOX_FAILED.search(body) is None,
    "hyper": _single_match(b'"ResponseCode"', rb'"ResponseCode"\s*:\s*0\s*[,}]'),
}

#: Up to this size a body is proved in one regular-expression pass; past it, by memchr-based
#: searches (the regex engine reads a byte far slower than ``bytes.find``).
ONE_PASS_MAX = 1024


_HYPER_CODE_FIRST = re.compile(rb'\{\s*"ResponseCode"\s*:\s*0\s*[,}][^\\]*\Z')

#: vendor reader -> (key, openings): a body that starts with one of ``openings``, holds ``key``
#: once and no backslash holds no fault (the opening starts with ``{"``, so the body is not UTF-16
#: or UTF-32, and says success; no ``\\u`` escape can spell a second key). The shape the vendor
#: writes its successes in, checked first by its scanner (three C calls).
SUCCESS_SHAPES: dict[str, tuple[bytes, tuple[bytes, ...]]] = {
    "hyper": (b'"ResponseCode"', (b'{"ResponseCode": 0,', b'{"ResponseCode":0,'))
}


def _hyper_scanner() -> Callable[[bytes], bool]:
    key = b'"ResponseCode"'
    # The whole proof of a small body in one pass: ASCII-compatible start (not UTF-16/32, see
    # _ascii_compatible), no backslash anywhere, and the code is 0. Every Hyper success is one of
    # these, so this is the scan the success path pays on every call.
    one_pass = re.compile(rb'(?=[^\x00\xfe\xff][^\x00])[^\\]*?"ResponseCode"\s*:\s*0\s*[,}][^\\]*\Z')
    # Hyper writes its code first: such a body is proved without looking for the key at every byte.
    code_first = _HYPER_CODE_FIRST
    general = _QUICK_OK["hyper"]
    shape_key, openings = SUCCESS_SHAPES["hyper"]

    def scan(body: bytes) -> bool:
        # The shape Hyper writes (see SUCCESS_SHAPES): three C calls, whatever the body's size.
        if body.startswith(openings) and body.count(shape_key) == 1 and body.find(b"\\") < 0:
            return True
        if len(body) <= ONE_PASS_MAX:
            return body.count(key) == 1 and (code_first.match(body) or one_pass.match(body)) is not None
        return _scan_general(general, body)

    return scan


def _scan_general(quick: Callable[[bytes], bool], body: bytes) -> bool:
    return (
        _ascii_compatible(body)
        # One-byte search first: most bodies hold no backslash at all, and memchr is far faster.
        and (body.find(b"\\") < 0 or body.find(b"\\u") < 0)
        and quick(body)
    )


def no_fault_scanner(spec: EnvelopeSpec) -> Callable[[bytes], bool] | None:
    """The function that proves a 2xx body of this vendor holds no fault by a byte scan (True), or
    None for a vendor without one (every body is decoded). See ``surely_no_fault``."""
    if spec.reader == "hyper":
        return _hyper_scanner()
    marker = _NONE_OF.get(spec.reader)
    if marker is not None:
        return _none_of_scanner(marker)
    quick = _QUICK_OK.get(spec.reader)
    if quick is None:
        return None
    return lambda body: _scan_general(quick, body)


def surely_no_fault(spec: EnvelopeSpec, body: bytes) -> bool:
    """True when a byte scan proves a 2xx body holds no fault of this vendor (no decoding needed).

    A ``\\u`` escape could spell a key the scan looks for (``"Respons\\u0065Code"``): such a body is
    always decoded. So is a body in UTF-16 or UTF-32 (``json.loads`` reads those too), where the
    keys are not the ASCII bytes the scan looks for.
    """
    scan = _SCANNERS.get(spec.reader)
    if scan is None:
        scan = _SCANNERS[spec.reader] = no_fault_scanner(spec)
    return scan is not None and scan(body)


_SCANNERS: dict[str, Callable[[bytes], bool] | None] = {}


def _ascii_compatible(body: bytes) -> bool:
    """False for a body ``json.loads`` would read as UTF-16 or UTF-32 (see ``json.detect_encoding``):
    one that opens with a UTF-16/32 byte order mark, or with a NUL among its first two bytes (JSON
    text starts with an ASCII character, so a NUL there is half of a wide one)."""
    return body[:2] not in _WIDE_STARTS  # one set lookup: this runs on every success


def _wide_starts() -> frozenset[bytes]:
    marks = (0x00, 0xFE, 0xFF)  # first bytes of the BOMs FF FE, FE FF, FF FE 00 00, 00 00 FE FF
    return frozenset(
        [bytes((first,)) for first in marks]
        + [bytes((first, second)) for first in marks for second in range(256)]
        + [bytes((first, 0x00)) for first in range(256)]
    )


_WIDE_STARTS = _wide_starts()


def decode_json(body: bytes) -> Any:
    """The decoded body, or None when it is not JSON (HTML, truncated, binary, too deep)."""
    if not body:
        return None
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        # Not UTF-8 (a Latin-1 or Windows code page message): the codes are ASCII, read it anyway.
        try:
            return json.loads(body.decode("utf-8", errors="replace"))
        except (ValueError, RecursionError):
            return None
    except (ValueError, RecursionError):
        return None


def read_envelope(spec: EnvelopeSpec, body: bytes) -> Envelope | None:
    """The envelope in a raw body under ``spec``, or None when there is none."""
    doc = decode_json(body)
    if doc is None:
        return None
    return READERS[spec.reader](doc, spec)
