"""httpx's errors made to carry no credential before the SDK lets them out.

An httpx error keeps the request it failed on: its headers, URL and body reach a pickle, and a
message may quote them. httpx also puts the original request back on an error as it leaves
``Client.send`` and on one raised while a body is read, so the transport scrubs what it raises and
the vendor clients scrub again as an error leaves them (``send`` and ``stream`` blocks).

In a plain ``httpx.Client`` nothing of the SDK runs after httpx put the request back: every error
scrubbed here is remembered (weakly, with the secrets known then), and a ``copyreg`` reducer for
its class pickles it with a redacted copy of whatever request it carries by then.
"""

from __future__ import annotations

import contextlib
import copyreg
import functools
import pickle
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, ParamSpec

import httpx

from resilient_client._redact import (
    REDACTED,
    REDACTED_REQUEST_EXTENSION,
    Secrets,
    is_secret_name,
    redact_url,
)


def redacted_request(request: httpx.Request, secrets: Secrets) -> httpx.Request:
    """A copy of ``request`` that carries no credential: secret headers masked, the URL's password
    and secret query values masked, known secret values masked anywhere, and no body."""
    headers = [
        (name, REDACTED if is_secret_name(name) else secrets.redact(value))
        for name, value in request.headers.multi_items()
    ]
    text = secrets.redact(redact_url(request.url))
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL:  # what redaction left is not a URL any more: keep where it went
        url = httpx.URL(scheme=request.url.scheme, host=request.url.host, path="/")
    extensions = {**request.extensions, REDACTED_REQUEST_EXTENSION: True}
    return httpx.Request(request.method, url, headers=headers, extensions=extensions)


def scrub_error(error: BaseException, secrets: Secrets) -> None:
    """Make an httpx error, and the errors it was raised from, carry no credential, in place.

    httpx's errors keep the request they failed on: its headers, URL and body reach a pickle, and
    a message may quote them. The request becomes a redacted copy (type, ``attempts`` and the rest
    of the error stay); messages and notes are redacted with what the request carried.
    """
    request = _request_of(error)
    known = secrets if request is None else secrets.with_request(request)
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and len(seen) < 20:
        seen.add(id(current))
        if isinstance(current, httpx.RequestError):
            # Before its request is looked at: httpx sets one on an error raised without.
            _let_out.remember(current, known)
        own = _request_of(current)
        if own is not None and not own.extensions.get(REDACTED_REQUEST_EXTENSION):
            if own is not request:
                known = known.with_request(own)
            current.request = redacted_request(own, known)  # type: ignore[attr-defined]
        # An OSError's message lives in errno/strerror too: its args are left as they are.
        if not isinstance(current, OSError) and any(isinstance(arg, str) for arg in current.args):
            current.args = tuple(known.redact(a) if isinstance(a, str) else a for a in current.args)
        notes = getattr(current, "__notes__", None)
        if isinstance(notes, list):
            current.__notes__ = [known.redact(n) if isinstance(n, str) else n for n in notes]
        current = current.__cause__ or current.__context__


def _request_of(error: BaseException) -> httpx.Request | None:
    if not isinstance(error, httpx.RequestError):
        return None
    try:
        return error.request
    except RuntimeError:  # raised without a request
        return None


@contextlib.contextmanager
def errors_scrubbed(secrets: Secrets) -> Iterator[None]:
    """Within the block, an httpx error raised (reading a body included) leaves carrying no credential."""
    try:
        yield
    except httpx.RequestError as error:
        scrub_error(error, secrets)
        raise


_P = ParamSpec("_P")


def _client_secrets(client: Any) -> Secrets:
    secrets: Secrets = client.resilient_transport.secrets
    return secrets


def scrubbing_stream(
    stream: Callable[_P, contextlib._GeneratorContextManager[httpx.Response]],
) -> Callable[_P, contextlib._GeneratorContextManager[httpx.Response]]:
    """``httpx.Client.stream`` whose block lets an httpx error out carrying no credential: the
    caller reads the body inside it, where httpx attaches the original request to the error."""

    @functools.wraps(stream)
    @contextlib.contextmanager
    def scrubbing(*args: _P.args, **kwargs: _P.kwargs) -> Iterator[httpx.Response]:
        with errors_scrubbed(_client_secrets(args[0])), stream(*args, **kwargs) as response:
            yield response

    return scrubbing


def scrubbing_async_stream(
    stream: Callable[_P, contextlib._AsyncGeneratorContextManager[httpx.Response]],
) -> Callable[_P, contextlib._AsyncGeneratorContextManager[httpx.Response]]:
    """``httpx.AsyncClient.stream`` as ``scrubbing_stream`` makes it."""

    @functools.wraps(stream)
    @contextlib.asynccontextmanager
    async def scrubbing(*args: _P.args, **kwargs: _P.kwargs) -> AsyncIterator[httpx.Response]:
        with errors_scrubbed(_client_secrets(args[0])):
            async with stream(*args, **kwargs) as response:
                yield response

    return scrubbing


# -- the body a client reads after the transport returned ------------------------------------------


class _ScrubbingSyncStream(httpx.SyncByteStream):
    """A body whose read errors leave scrubbed (and remembered, for their pickles)."""

    def __init__(self, stream: httpx.SyncByteStream, request: httpx.Request, secrets: Secrets) -> None:
        self._stream = stream
        self._request = request
        self._secrets = secrets

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._stream
        except httpx.RequestError as error:
            scrub_error(error, self._secrets.with_request(self._request))
            raise

    def close(self) -> None:
        self._stream.close()


class _ScrubbingAsyncStream(httpx.AsyncByteStream):
    """``_ScrubbingSyncStream`` for an httpx.AsyncClient."""

    def __init__(self, stream: httpx.AsyncByteStream, request: httpx.Request, secrets: Secrets) -> None:
        self._stream = stream
        self._request = request
        self._secrets = secrets

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except httpx.RequestError as error:
            scrub_error(error, self._secrets.with_request(self._request))
            raise

    async def aclose(self) -> None:
        await self._stream.aclose()


def body_errors_scrubbed(
    response: httpx.Response, request: httpx.Request, secrets: Secrets
) -> httpx.Response:
    """``response``, whose body an httpx.Client reads after the transport returned it, made to let
    its read errors (a dropped connection, a read timeout) out scrubbed. A body already in memory
    (read, or bytes) cannot fail to read: it is left as it is."""
    stream = response.stream
    if (
        not response.is_stream_consumed
        and not isinstance(stream, httpx.ByteStream)
        and isinstance(stream, httpx.SyncByteStream)
    ):
        response.stream = _ScrubbingSyncStream(stream, request, secrets)
    return response


def async_body_errors_scrubbed(
    response: httpx.Response, request: httpx.Request, secrets: Secrets
) -> httpx.Response:
    """``body_errors_scrubbed`` for an httpx.AsyncClient."""
    stream = response.stream
    if (
        not response.is_stream_consumed
        and not isinstance(stream, httpx.ByteStream)
        and isinstance(stream, httpx.AsyncByteStream)
    ):
        response.stream = _ScrubbingAsyncStream(stream, request, secrets)
    return response


# -- pickles ---------------------------------------------------------------------------------------


def _own_reduction(error: BaseException) -> Any:
    # What pickle does when no reducer is registered for the class; the protocol only matters to a
    # class that defines __reduce_ex__ (BaseException's __reduce__ ignores it).
    return error.__reduce_ex__(pickle.DEFAULT_PROTOCOL)


def _without_credentials(value: Any, secrets: Secrets, depth: int = 0) -> Any:
    """``value`` with every request in it (in a tuple or dict: args, ``__dict__``) redacted."""
    if isinstance(value, httpx.Request):
        if value.extensions.get(REDACTED_REQUEST_EXTENSION):
            return value
        return redacted_request(value, secrets.with_request(value))
    if depth < 3 and type(value) is tuple:
        return tuple(_without_credentials(item, secrets, depth + 1) for item in value)
    if depth < 3 and type(value) is dict:
        return {key: _without_credentials(item, secrets, depth + 1) for key, item in value.items()}
    return value


class _LetOut:
    """The httpx errors scrubbed so far, each with the secrets known then, held weakly; and the
    ``copyreg`` reducers that pickle them without a credential.

    A reducer is registered for the class of an error when one is remembered, not before: errors of
    other classes pickle as they always did, and one of the same class the SDK never saw is reduced
    as before by the reducer it wraps (another library's, e.g. tblib's, or the class's own).
    Keyed by id, not by the error: an error class may define ``__eq__`` and no ``__hash__``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._errors: dict[int, tuple[weakref.ref[BaseException], Secrets]] = {}
        self._reducers: dict[type, Callable[[Any], Any]] = {}

    def remember(self, error: httpx.RequestError, secrets: Secrets) -> None:
        key = id(error)
        self._errors[key] = (weakref.ref(error, functools.partial(self._forget, key)), secrets)
        cls = type(error)
        # Checked on every error, not once: a library registering its own reducer later wins the
        # slot, and is wrapped in turn.
        ours = self._reducers.get(cls)
        if ours is None or copyreg.dispatch_table.get(cls) is not ours:
            self._register(cls)

    def _forget(self, key: int, ref: weakref.ref[BaseException]) -> None:
        entry = self._errors.get(key)
        if entry is not None and entry[0] is ref:
            self._errors.pop(key, None)

    def __len__(self) -> int:
        return len(self._errors)

    def secrets_of(self, error: BaseException) -> Secrets | None:
        entry = self._errors.get(id(error))
        return entry[1] if entry is not None and entry[0]() is error else None

    def _register(self, cls: type) -> None:
        with self._lock:
            current = copyreg.dispatch_table.get(cls)
            if current is not None and current is self._reducers.get(cls):
                return
            reducer = functools.partial(self._reduce, current or _own_reduction)
            self._reducers[cls] = reducer
            copyreg.pickle(cls, reducer)

    def _reduce(self, reduce: Callable[[Any], Any], error: BaseException) -> Any:
        reduction = reduce(error)
        secrets = self.secrets_of(error)
        if secrets is None or type(reduction) is not tuple:
            return reduction
        # (callable, args, state, ...): args and state may hold the request httpx put back.
        scrubbed = (_without_credentials(part, secrets) for part in reduction[1:3])
        return (reduction[0], *scrubbed, *reduction[3:])


_let_out = _LetOut()
