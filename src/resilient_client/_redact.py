"""Redaction of secrets from URLs, headers, JSON bodies and free text.

Everything the SDK prints, logs, puts in an exception or pickles goes through here first.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

REDACTED = "[REDACTED]"
_MAX_SCANNED_BODY = 1 << 20

# A key (header, query parameter or JSON field) whose name contains one of these holds a secret.
_SECRET_NAME = re.compile(
    r"authorization|cookie|password|passwd|secret|token|api[-_]?key|client[-_]?key|"
    r"access[-_]?key|private[-_]?key|auth[-_]?key|signature|credential|session|csrf|jwt|"
    r"^key$|^sig$|^auth$|^pwd$|^pass$",
    re.IGNORECASE,
)

# Secrets written inline in free text: "Bearer abc", "password=abc", "token: abc".
_INLINE_SECRET = re.compile(
    r"(?i)(bearer\s+|basic\s+)[A-Za-z0-9._~+/=-]+"
    r"|((?:password|passwd|pwd|secret|token|api[-_]?key|client[-_]?key|access[-_]?token|cookie|session)"
    r"[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;]+"
)


def is_secret_name(name: str) -> bool:
    """True when a header, query parameter or JSON key of this name carries a secret."""
    return _SECRET_NAME.search(name) is not None


class Secrets:
    """The literal secret values one client knows (passwords, keys, tokens), masked in its errors.

    Kept per client, not per process: one client's password is another's ordinary word.
    """

    def __init__(self, values: Iterable[str | None] = ()) -> None:
        self._values: set[str] = set()
        for value in values:
            self.add(value)

    def add(self, value: str | None) -> None:
        """Remember a secret; values shorter than 4 characters would mask ordinary words."""
        if value and len(value) >= 4:
            self._values.add(value)

    def redact(self, text: str) -> str:
        """``text`` with every known secret and every inline credential masked."""
        for secret in self._values:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return redact_text(text)

    def with_request(self, request: httpx.Request) -> Secrets:
        """These secrets plus the ones ``request`` carries: secret headers (the Basic password
        decoded), cookies, the URL's password and secret query parameters, and secret fields of a
        JSON or form body.

        A vendor may echo what it was sent ("unknown client key abc123"); called on the error path
        only, so the success path never pays for it.
        """
        found = Secrets(self._values)
        for name, value in request.headers.multi_items():
            if is_secret_name(name):
                found._add_header(name.lower(), value)
        url = request.url
        found.add(url.password)
        for key, value in url.params.multi_items():
            if is_secret_name(key):
                found.add(value)
        content = getattr(request, "_content", None)  # a streamed body is never read here
        if content and len(content) <= _MAX_SCANNED_BODY:
            if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                for key, value in parse_qsl(content.decode("latin-1"), keep_blank_values=True):
                    if is_secret_name(key):
                        found.add(value)
            else:
                with contextlib.suppress(ValueError, RecursionError):
                    found._add_fields(json.loads(content), 0)
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


def redact_text(text: str) -> str:
    """Mask inline credentials in free text: ``Bearer x``, ``password=x``, ``token: x``."""
    if not text:
        return text
    return _INLINE_SECRET.sub(lambda m: (m.group(1) or m.group(2)) + REDACTED, text)


def redact_url(url: httpx.URL | str) -> str:
    """The URL with its password and every secret-looking query parameter masked."""
    text = str(url)
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
