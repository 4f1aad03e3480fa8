"""The total deadline over every network operation of httpx's own transports, sync and async.

httpx times each network operation on its own: a server that trickles its headers one byte at a
time restarts the read timeout with every byte and can hold a call for as long as it likes. Here
the network backend of httpx's ``HTTPTransport`` / ``AsyncHTTPTransport`` (httpcore's
``NetworkBackend``) is wrapped once: while a ``ResilientTransport`` call runs, it hands the
deadline through a context variable, and every connect, TLS handshake, read and write then waits
at most the time left (``min(timeout, deadline - now)``), or raises at once when none is left. The
errors are httpcore's own timeouts, so the caller gets httpx's ``ConnectTimeout``, ``ReadTimeout``
or ``WriteTimeout`` for the phase that ran out, with the request attached. The pool wait is the
first phase of an attempt: its timeout is already shrunk to the time left when the attempt starts.

Why not a cancel scope (``anyio.fail_after``) around the attempt? It costs 10-20 microseconds per
request on asyncio and trio (a timer scheduled and cancelled), as much as the transport's whole
success path; it does not exist for sync clients; and it cannot tell which phase ran out. The wrapper
costs a context-variable lookup per network operation, and outside a call (another client
sharing the transport, or the caller reading a body passed through) it changes nothing.

The backend is reached through ``_httpx_compat`` (httpx keeps it in private attributes). An inner
transport that is not httpx's (``MockTransport``, ``ASGITransport``, a user's own) has no network
backend to wrap, and neither has httpx's own when that reach is off (``reaches_network`` says
which): there the deadline bounds what the ``ResilientTransport`` itself does (no attempt starts
after it, each attempt's timeouts shrink to the time left, and the body it reads for
classification is cut at it), not a wait inside the inner transport.
"""

from __future__ import annotations

import contextvars
import ssl
from collections.abc import Callable, Iterable
from typing import TypeVar

import httpcore
import httpx

from resilient_client import _httpx_compat

#: Write this much at a time, so a long upload to a slow reader is bounded too.
_WRITE_PIECE = 65536


class Deadline:
    """When the running call must be over, by the transport's (injectable) clock; and the request
    it sends, whose credentials the log lines written meanwhile mask (``_log_redaction``).

    One object in one context variable, set once per call by the transport: what the network
    operations, the state store's waits and the log filter each need of the call in flight."""

    __slots__ = ("at", "clock", "request")

    def __init__(self, at: float, clock: Callable[[], float], request: httpx.Request | None = None) -> None:
        self.at = at
        self.clock = clock
        self.request = request


#: The deadline of the call running in this thread or task; None outside a call.
current: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "resilient_client.deadline", default=None
)


def _bounded(timeout: float | None, error: type[httpcore.TimeoutException]) -> float | None:
    """The timeout for one network operation: its own, or the time left when that is shorter."""
    deadline = current.get()
    if deadline is None:
        return timeout
    left = deadline.at - deadline.clock()
    if left <= 0:
        raise error("the total deadline passed")
    return left if timeout is None or timeout > left else timeout


class _Stream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream
        # The stream's own method, not a forwarding one: httpcore asks twice per request.
        self.get_extra_info = stream.get_extra_info  # type: ignore[method-assign]

    # read and write work ``_bounded`` out in place: each request makes two or three of them.

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        deadline = current.get()  # None: the caller reading a body passed through, after the call
        if deadline is not None:
            left = deadline.at - deadline.clock()
            if left <= 0:
                raise httpcore.ReadTimeout("the total deadline passed")
            if timeout is None or timeout > left:
                timeout = left
        return self._stream.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:  # httpcore's end of a message framed by its length: nothing to send or wait for
            return
        if len(buffer) <= _WRITE_PIECE:  # a request's head, a small body: one write
            deadline = current.get()
            if deadline is not None:
                left = deadline.at - deadline.clock()
                if left <= 0:
                    raise httpcore.WriteTimeout("the total deadline passed")
                if timeout is None or timeout > left:
                    timeout = left
            self._stream.write(buffer, timeout)
            return
        for start in range(0, len(buffer), _WRITE_PIECE):
            piece = buffer if len(buffer) <= _WRITE_PIECE else buffer[start : start + _WRITE_PIECE]
            self._stream.write(piece, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _Stream(self._stream.start_tls(ssl_context, server_hostname, bounded))


class _Backend(httpcore.NetworkBackend):
    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _Stream(self._backend.connect_tcp(host, port, bounded, local_address, socket_options))

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _Stream(self._backend.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _AsyncStream(httpcore.AsyncNetworkStream):
    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self.get_extra_info = stream.get_extra_info  # type: ignore[method-assign]

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        deadline = current.get()
        if deadline is not None:
            left = deadline.at - deadline.clock()
            if left <= 0:
                raise httpcore.ReadTimeout("the total deadline passed")
            if timeout is None or timeout > left:
                timeout = left
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if len(buffer) <= _WRITE_PIECE:
            deadline = current.get()
            if deadline is not None:
                left = deadline.at - deadline.clock()
                if left <= 0:
                    raise httpcore.WriteTimeout("the total deadline passed")
                if timeout is None or timeout > left:
                    timeout = left
            await self._stream.write(buffer, timeout)
            return
        for start in range(0, len(buffer), _WRITE_PIECE):
            piece = buffer if len(buffer) <= _WRITE_PIECE else buffer[start : start + _WRITE_PIECE]
            await self._stream.write(piece, _bounded(timeout, httpcore.WriteTimeout))

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _AsyncStream(await self._stream.start_tls(ssl_context, server_hostname, bounded))


class _AsyncBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, backend: httpcore.AsyncNetworkBackend) -> None:
        self._backend = backend

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        stream = await self._backend.connect_tcp(host, port, bounded, local_address, socket_options)
        return _AsyncStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _AsyncStream(await self._backend.connect_unix_socket(path, bounded, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


T = TypeVar("T")


def bind(transport: T) -> T:
    """``transport`` itself, its network backend wrapped once when it is httpx's own transport
    (proxies and mounts built by httpx included); any other transport is left as it is, and so is
    httpx's own when this httpx keeps its backend where ``_httpx_compat`` cannot reach it."""
    backend = _httpx_compat.network_backend(transport)
    if backend is None or isinstance(backend, _Backend | _AsyncBackend):
        return transport
    assert isinstance(transport, httpx.HTTPTransport | httpx.AsyncHTTPTransport)  # a backend was found
    if isinstance(backend, httpcore.NetworkBackend):
        _httpx_compat.set_network_backend(transport, _Backend(backend))
    else:
        _httpx_compat.set_network_backend(transport, _AsyncBackend(backend))
    return transport


def reaches_network(transport: object) -> bool:
    """Whether the deadline is inside ``transport``'s network operations (``bind`` wrapped them)."""
    return isinstance(_httpx_compat.network_backend(transport), _Backend | _AsyncBackend)
