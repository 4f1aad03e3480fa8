"""Redaction of secrets from URLs, headers, JSON bodies and free text.

Everything the SDK prints, logs, puts in an exception or pickles goes through here first.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import contextlib
import functools
import json
import re
from collections.abc import Callable, Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

REDACTED = "[REDACTED]"
#: ``request.extensions`` key marking a request copy that already carries no credential.
REDACTED_REQUEST_EXTENSION = "resilient_client.redacted"
_MAX_SCANNED_BODY = 1 << 20

# A key (header, query parameter or JSON field) whose name contains one of these holds a secret.
_SECRET_NAME = re.compile(
    r"authorization|cookie|password|passwd|secret|token|api[-_]?key|client[-_]?key|"
    r"access[-_]?key|private[-_]?key|auth[-_]?key|signature|credential|session|csrf|jwt|"
    r"^key$|^sig$|^auth$|^pwd$|^pass$",
    re.IGNORECASE,
)

# Secrets written inline in free text: "Bearer abc", "password=abc", "token: abc".
# A value already masked is left alone, so masking twice changes nothing (nor eats what follows it).
_INLINE_SECRET = re.compile(
    r"(?i)(bearer\s+|basic\s+)(?!\[REDACTED\])[A-Za-z0-9._~+/=-]+"
    r"|((?:password|passwd|pwd|secret|token|api[-_]?key|client[-_]?key|access[-_]?token|cookie|session)"
    r"[\"']?\s*[:=]\s*[\"']?)(?!\[REDACTED\])[^\s\"'&,;]+"
)


# Cached: the same few header and field names come back on every request.
@functools.lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    """True when a header, query parameter or JSON key of this name carries a secret."""
    return _SECRET_NAME.search(name) is not None


class Secrets:
    """The literal secret values one client knows (passwords, keys, tokens), masked in its errors.

    Kept per client, not per process: one client's password is another's ordinary word.
    """

    def __init__(self, values: Iterable[str | None] = ()) -> None:
        self._values: set[str] = set()
        self._matcher: _ValueMatcher | None = None
        self._on_change: Callable[[], None] | None = None
        for value in values:
            self.add(value)

    def add(self, value: str | None) -> None:
        """Remember a secret; values shorter than 4 characters would mask ordinary words."""
        if value and len(value) >= 4 and value not in self._values:
            self._values.add(value)
            self._matcher = None
            if self._on_change is not None:
                self._on_change()

    @property
    def values(self) -> frozenset[str]:
        """The secret values known so far."""
        return frozenset(self._values)

    def on_change(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` whenever a new value is added (the log redaction rebuilds its matcher)."""
        self._on_change = callback

    def redact(self, text: str) -> str:
        """``text`` with every known secret (plain, percent- or JSON-encoded) and every inline
        credential masked."""
        return redact_text(self.redact_values(text))

    def redact_values(self, text: str) -> str:
        """``text`` with every known secret masked, in whatever form a vendor echoed it."""
        if not self._values or not text:
            return text
        matcher = self._matcher
        if matcher is None:
            matcher = self._matcher = _ValueMatcher(self._values)
        return matcher.redact(text)

    def with_request(self, request: httpx.Request) -> Secrets:
        """These secrets plus the ones ``request`` carries: secret headers (the Basic password
        decoded), cookies, the URL's password and secret query parameters, and secret fields of a
        JSON or form body.

        A vendor may echo what it was sent ("unknown client key abc123"); called on the error path
        only, so the success path never pays for it. Returns ``self`` when the request carries no
        secret these do not know: never add to what it returns.
        """
        if request.extensions.get(REDACTED_REQUEST_EXTENSION):
            return self  # a copy made by redacted_request: its [REDACTED]s are not secrets
        found = Secrets()
        headers = request.headers
        for name in headers:  # lower-cased, each once
            if is_secret_name(name):
                for value in headers.get_list(name):
                    found._add_header(name, value)
        url = request.url
        found.add(url.password)
        if url.query:
            for key, value in url.params.multi_items():
                if is_secret_name(key):
                    found.add(value)
        try:
            content = request.content
        except httpx.RequestNotRead:  # a streamed body is never read here
            content = None
        if content and len(content) <= _MAX_SCANNED_BODY:
            if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                for key, value in parse_qsl(content.decode("latin-1"), keep_blank_values=True):
                    if is_secret_name(key):
                        found.add(value)
            else:
                with contextlib.suppress(ValueError, RecursionError):
                    found._add_fields(json.loads(content), 0)
        if found._values <= self._values:
            # Nothing new (the usual case: a client's credentials are known already): these
            # secrets, whose compiled matcher is reused, not a copy that compiles its own.
            return self
        found._values |= self._values
        return found

    def _add_header(self, name: str, value: str) -> None:
        self.add(value)
        if name == "cookie":
            for pair in value.split(";"):
                self.add(pair.partition("=")[2].strip())
            return
        scheme, _, credential = value.partition(" ")
        credential = credential.strip()
        self.add(credential)  # "Bearer abc": the credential without its scheme
        if scheme.lower() == "basic":
            with contextlib.suppress(ValueError, binascii.Error):
                self.add(base64.b64decode(credential, validate=True).decode("latin-1").partition(":")[2])

    def _add_fields(self, doc: object, depth: int) -> None:
        if depth > 20:
            return
        if isinstance(doc, dict):
            for key, value in doc.items():
                secret = isinstance(key, str) and is_secret_name(key)
                if secret and isinstance(value, str):
                    self.add(value)
                elif secret and isinstance(value, int | float) and not isinstance(value, bool):
                    self.add(str(value))  # a numeric PIN or code is a secret too
                else:
                    self._add_fields(value, depth + 1)
        elif isinstance(doc, list):
            for item in doc:
                self._add_fields(item, depth + 1)

    def __repr__(self) -> str:
        return f"Secrets({len(self._values)} values)"


# The escapes a vendor may have written a secret with: runs of percent-escapes (one UTF-8 character
# may take several), runs of JSON \uXXXX escapes (a surrogate pair takes two), JSON's short escapes,
# and "+" (a space in a form-encoded value).
_ESCAPE = re.compile(r"(?:%[0-9A-Fa-f]{2})+|(?:\\u[0-9A-Fa-f]{4})+|\\[\"\\/bfnrt]|\+")
_MAY_BE_ESCAPED = re.compile(r"[%\\+]")
_JSON_SHORT_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _canonical(text: str) -> str:
    # "+" and " " are one character once decoded: form encoding writes a space as "+".
    return text.replace("+", " ")


class _ValueMatcher:
    """Finds known secret values in text as they are, and once the text's escapes are decoded.

    Two compiled alternations (longest value first), one pass each: the plain values over the text,
    then the canonical values over the decoded text, whose matches map back to the original spans.
    Decoding once and matching once keeps it O(text) however many encodings a value may take.
    """

    __slots__ = ("_decoded", "_plain")

    def __init__(self, values: Iterable[str]) -> None:
        plain = sorted(values, key=len, reverse=True)
        decoded = sorted({_canonical(v) for v in plain}, key=len, reverse=True)
        self._plain = re.compile("|".join(map(re.escape, plain)))
        self._decoded = re.compile("|".join(map(re.escape, decoded)))

    def redact(self, text: str) -> str:
        text = self._plain.sub(REDACTED, text)
        if _MAY_BE_ESCAPED.search(text) is None:
            return text
        decoded, spans = _decode_escapes(text)
        pieces: list[str] = []
        end = 0
        for match in self._decoded.finditer(_canonical(decoded)):
            start = spans.original_start(match.start())
            pieces += [text[end:start], REDACTED]
            end = spans.original_end(match.end() - 1)
        if not pieces:
            return text
        pieces.append(text[end:])
        return "".join(pieces)


class _Spans:
    """Where each decoded character came from: characters decoded from an escape are listed with
    their span in the original; the ones between escapes are shifted by the escapes before them."""

    __slots__ = ("ends", "positions", "starts")

    def __init__(self) -> None:
        self.positions: list[int] = []  # index in the decoded text
        self.starts: list[int] = []  # its span in the original text
        self.ends: list[int] = []

    def _find(self, index: int) -> tuple[int, bool]:
        k = bisect.bisect_right(self.positions, index) - 1
        return k, k >= 0 and self.positions[k] == index

    def original_start(self, index: int) -> int:
        k, escaped = self._find(index)
        if escaped:
            return self.starts[k]
        return index if k < 0 else self.ends[k] + (index - self.positions[k] - 1)

    def original_end(self, index: int) -> int:
        """The end (exclusive) in the original text of the decoded character at ``index``."""
        k, escaped = self._find(index)
        if escaped:
            return self.ends[k]
        return index + 1 if k < 0 else self.ends[k] + (index - self.positions[k])


def _decode_escapes(text: str) -> tuple[str, _Spans]:
    decoded: list[str] = []
    spans = _Spans()
    size = 0  # length of the decoded text so far
    end = 0
    for match in _ESCAPE.finditer(text):
        literal = text[end : match.start()]
        decoded.append(literal)
        size += len(literal)
        escape = match.group()
        where = match.start()
        if escape == "+":
            # As wide as the space it stands for: the spans need no entry.
            decoded.append(" ")
            size += 1
            end = match.end()
            continue
        if escape[0] == "%":
            chars = _percent_decoded(escape)
        elif escape[1] == "u":
            chars = _json_u_decoded(escape)
        else:
            chars = [(_JSON_SHORT_ESCAPES[escape[1]], 2)]
        for char, width in chars:
            spans.positions.append(size)
            spans.starts.append(where)
            spans.ends.append(where + width)
            decoded.append(char)
            size += 1
            where += width
        end = match.end()
    decoded.append(text[end:])
    return "".join(decoded), spans


def _percent_decoded(escape: str) -> list[tuple[str, int]]:
    """(character, width in the original) for a run of percent-escapes, read as UTF-8; a byte that
    is not UTF-8 stays one character of its own."""
    raw = bytes.fromhex(escape.replace("%", ""))
    if raw.isascii():
        return [(chr(byte), 3) for byte in raw]
    chars = raw.decode("utf-8", "surrogateescape")
    return [(c, 3 * len(c.encode("utf-8", "surrogateescape"))) for c in chars]


def _json_u_decoded(escape: str) -> list[tuple[str, int]]:
    """(character, width in the original) for a run of \\uXXXX escapes, surrogate pairs joined."""
    units = [int(escape[i + 2 : i + 6], 16) for i in range(0, len(escape), 6)]
    chars: list[tuple[str, int]] = []
    i = 0
    while i < len(units):
        unit = units[i]
        if 0xD800 <= unit < 0xDC00 and i + 1 < len(units) and 0xDC00 <= units[i + 1] < 0xE000:
            chars.append((chr(0x10000 + ((unit - 0xD800) << 10) + (units[i + 1] - 0xDC00)), 12))
            i += 2
        else:
            chars.append((chr(unit), 6))
            i += 1
    return chars


# Every inline credential names one of these (casefolded): text without any skips the pattern.
_INLINE_KEYWORDS = ("bearer", "basic", "pass", "pwd", "secret", "token", "key", "cookie", "session")
_INLINE_KEYWORD = re.compile("|".join(_INLINE_KEYWORDS))


def redact_text(text: str) -> str:
    """Mask inline credentials in free text: ``Bearer x``, ``password=x``, ``token: x``."""
    if not text:
        return text
    if _INLINE_KEYWORD.search(text.casefold()) is None:
        return text
    return _INLINE_SECRET.sub(lambda m: (m.group(1) or m.group(2)) + REDACTED, text)


def redact_url(url: httpx.URL | str) -> str:
    """The URL with its password and every secret-looking query parameter masked."""
    text = str(url)
    if "@" not in text and "?" not in text:
        return redact_text(text)  # no userinfo, no query: only inline credentials to look for
    try:
        parts = urlsplit(text)
    except ValueError:
        return redact_text(text)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{REDACTED}@{host}" if ":" in userinfo else f"{REDACTED}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_name(k) for k, _ in pairs):
            query = urlencode([(k, REDACTED if is_secret_name(k) else v) for k, v in pairs], safe="[]")
    return redact_text(urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)))
