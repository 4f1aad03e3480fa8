"""Redaction of the records the ``httpx``, ``httpcore`` (and ``hpack``) loggers write.

httpx logs every request's URL at INFO (``?api_key=`` and a URL's password included) and httpcore
logs response headers at DEBUG (``set-cookie``, CSRF tokens). A filter on a parent logger never
sees its children's records, and a handler only sees what reaches it, so the filter goes on every
logger of these families: on a logger, it runs before any handler, including handlers a user adds
later or ``logging.basicConfig`` / ``dictConfig`` installs (neither removes a logger's filters). A
LogRecord factory would also reach them, but it is one process-wide slot that any library may
replace.

Masked by name: secret headers in the ``(b'name', b'value')`` pairs httpcore and hpack print, a
URL's password, secret query parameters and inline credentials. Masked by value: every secret a
live client or transport registered (tokens, passwords, client keys, CSRF tokens), in any encoding
``Secrets`` recognises; and, for a record written while a transport sends a request (its call's
``_deadline.Deadline`` holds it), every secret that request carries: its cookies above all, which a
vendor may echo into any response header (``x-request-id: req-sid=...``) that httpcore prints at
DEBUG. Records of other loggers are left alone.
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from urllib.parse import unquote

import httpx

from resilient_client import _deadline
from resilient_client._redact import REDACTED, Secrets, is_secret_name, redact_text, redact_url

#: Loggers that httpx, httpcore and (for HTTP/2) hpack write to, and the SDK's own; any other logger
#: of these families that exists when the redaction is installed gets the filter too.
LOGGER_NAMES = (
    "resilient_client",  # its lines are built redacted; the filter is a second guard
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
    "hpack",
    "hpack.hpack",
    "hpack.table",
)
_FAMILIES = ("httpx.", "httpcore.", "hpack.", "resilient_client.")

# A header as httpcore and hpack print it: (b'set-cookie', b'sid=...'), or with str literals.
_HEADER_PAIR = re.compile(
    r"""\(\s*(?P<name>b?(?P<q>['"])(?P<key>[^'"\\]{1,100})(?P=q))\s*,\s*"""
    r"""(?P<prefix>b?)(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\s*\)"""
)
# A URL (httpx's "HTTP Request:" line, a Location header); inside a repr it ends at the quote.
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
# A query parameter outside a full URL (HTTP/2's :path pseudo-header).
_QUERY_PAIR = re.compile(r"([?&])([^=&#\s'\"]+)=([^&#\s'\"]*)")


def _masked_header(match: re.Match[str]) -> str:
    if not is_secret_name(match["key"]):
        return match.group()
    return f"({match['name']}, {match['prefix']}'{REDACTED}')"


def _masked_query(match: re.Match[str]) -> str:
    if not is_secret_name(unquote(match[2])):
        return match.group()
    return f"{match[1]}{match[2]}={REDACTED}"


class _KnownSecrets:
    """Every live client's secret values, matched by one Secrets rebuilt when one of them grows.

    Held weakly: a client that is gone stops masking its values in everyone's logs.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._registered: weakref.WeakSet[Secrets] = weakref.WeakSet()
        self._union: Secrets | None = Secrets()

    def register(self, secrets: Secrets) -> None:
        with self._lock:
            if secrets in self._registered:
                return
            self._registered.add(secrets)
            secrets.on_change(self._changed)
            weakref.finalize(secrets, self._changed)
            self._union = None

    def _changed(self) -> None:
        self._union = None

    def redact(self, text: str) -> str:
        union = self._union
        if union is None:
            with self._lock:
                values = [value for secrets in list(self._registered) for value in secrets.values]
            union = self._union = Secrets(values)
        return union.redact_values(text)


_known = _KnownSecrets()


def redact_log_text(text: str) -> str:
    """A log line of httpx, httpcore or hpack with every credential masked."""
    if not text:
        return text
    text = _HEADER_PAIR.sub(_masked_header, text)
    text = _URL.sub(lambda match: redact_url(match.group()), text)
    text = _QUERY_PAIR.sub(_masked_query, text)
    return redact_text(_known.redact(text))


#: The last request a record was masked for (weakly: its body may be large), and the secrets it
#: carries: the records written while one request is sent work them out once.
_carried: tuple[weakref.ref[httpx.Request], Secrets] | None = None


def _carried_by(request: httpx.Request) -> Secrets:
    global _carried
    last = _carried
    if last is not None and last[0]() is request:
        return last[1]
    found = Secrets().with_request(request)
    _carried = (weakref.ref(request), found)
    return found


def _request_sent() -> httpx.Request | None:
    """The request a ``ResilientTransport`` call in this thread or task is sending: the one in the
    call's ``_deadline.Deadline``, which the transport sets once per call for the deadline and the
    masking alike (see ``_deadline``)."""
    in_flight = _deadline.current.get()
    return None if in_flight is None else in_flight.request


class RedactingFilter(logging.Filter):
    """Rewrites a record's message with every credential masked; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # the handler reports a bad record; it must not see the args
            message = str(record.msg)
            record.args = None
        redacted = redact_log_text(message)
        request = _request_sent()
        if request is not None and redacted:
            redacted = _carried_by(request).redact_values(redacted)
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True


_FILTER = RedactingFilter()
_install_lock = threading.Lock()
_loggers_seen = -1


def install() -> None:
    """Put the filter on every httpx, httpcore and hpack logger (idempotent and cheap to repeat)."""
    global _loggers_seen
    manager = logging.Logger.manager
    if len(manager.loggerDict) == _loggers_seen:
        return
    with _install_lock:
        names = set(LOGGER_NAMES)
        names.update(name for name in list(manager.loggerDict) if name.startswith(_FAMILIES))
        for name in names:
            logging.getLogger(name).addFilter(_FILTER)  # addFilter skips a filter already there
        _loggers_seen = len(manager.loggerDict)


def protect(secrets: Secrets) -> None:
    """Install the filters and mask ``secrets``' values in these loggers' records from now on."""
    install()
    _known.register(secrets)
