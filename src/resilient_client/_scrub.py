"""httpx's errors made to carry no credential before the SDK lets them out.

An httpx error keeps the request it failed on: its headers, URL and body reach a pickle, and a
message may quote them. httpx also puts the original request back on an error as it leaves
``Client.send`` and on one raised while a body is read, so the transport scrubs what it raises and
the vendor clients scrub again as an error leaves them (``send`` and ``stream`` blocks).
"""

from __future__ import annotations

import contextlib
import functools
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
