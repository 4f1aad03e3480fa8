"""Every reach into httpx's and httpcore's private parts, each probed at import, each with a public fallback.

The rest of the SDK uses httpx and httpcore through their public API only. What public API cannot
do lives here, one reach each; every reach is probed once at import (a flag says whether the layout
it needs is there), and when the probe fails the SDK takes a public way that keeps the behaviour
the README promises, at some cost named below. Each reach and its fallback are tested
(``tests/test_httpx_compat.py``).

1. ``NETWORK_BACKEND``: ``HTTPTransport._pool._network_backend`` (and the async twin's), httpcore's
   network backend under httpx's own transports. ``_deadline`` wraps it so that every connect, TLS
   handshake, read and write waits at most the time left to the call's total deadline.
   Fallback: the deadline bounds what the SDK itself does, as for any other inner transport (each
   attempt's timeouts shrink to the time left, no attempt starts after it, the body read for
   classification is cut at it); a server that trickles its headers a byte at a time can then hold
   an attempt past the deadline, as it can hold bare httpx.
2. ``CLIENT_TRANSPORT_HOOKS``: ``httpx.Client._init_transport`` and ``_init_proxy_transport`` (and
   ``AsyncClient``'s), which httpx's constructor calls to build the default transport and each
   proxy's. ``TransportHooks`` overrides them so that a vendor client wraps every transport httpx
   builds for it (``verify=``, ``cert=``, ``limits=``, ``http2=``, ``proxy=``, environment proxies).
   Fallback: ``built_transports`` builds the same transports through httpx's public constructors
   (``HTTPTransport(...)``, ``proxy=``, environment proxies read as httpx reads them) and the client
   hands them to httpx already wrapped.
3. ``RESPONSE_CONTENT``: ``Response._content``, where ``Response.read()`` keeps the decoded body.
   ``set_content`` stores there the body the SDK already decoded (within its cap) for
   classification, so the caller's read does not decode it a second time (README: a JSON body that
   fits the cap "reaches you already read and decoded once"). Fallback: ``response.read()``, which
   decodes the body a second time (CPU only; the bytes are the same).
4. For type checkers only: the argument types of httpx's client (``httpx._types``), which the vendor
   clients' signatures spell as httpx does. Nothing imports them at run time.

Not a reach: httpx's client defaults (``DEFAULT_LIMITS`` and the others below) are read from
``httpx.Client``'s public signature, so the vendor clients default to what httpx defaults to.
"""

from __future__ import annotations

import inspect
import ipaddress
import ssl
from typing import TYPE_CHECKING, Any
from urllib.request import getproxies

import httpcore
import httpx

if TYPE_CHECKING:  # reach 4: re-exported for the vendor clients' signatures
    from httpx._types import AuthTypes as AuthTypes
    from httpx._types import CertTypes as CertTypes
    from httpx._types import CookieTypes as CookieTypes
    from httpx._types import HeaderTypes as HeaderTypes
    from httpx._types import ProxyTypes as ProxyTypes
    from httpx._types import QueryParamTypes as QueryParamTypes
    from httpx._types import TimeoutTypes as TimeoutTypes

__all__ = [
    "CLIENT_TRANSPORT_HOOKS",
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_REDIRECTS",
    "DEFAULT_TIMEOUT_CONFIG",
    "NETWORK_BACKEND",
    "RESPONSE_CONTENT",
    "TransportHooks",
    "built_transports",
    "network_backend",
    "set_content",
    "set_network_backend",
]

NetworkBackend = httpcore.NetworkBackend | httpcore.AsyncNetworkBackend
Transport = httpx.BaseTransport | httpx.AsyncBaseTransport

_CLIENT_DEFAULTS = {
    name: p.default for name, p in inspect.signature(httpx.Client.__init__).parameters.items()
}
#: httpx's own defaults for a client's ``limits=``, ``max_redirects=`` and ``timeout=``.
DEFAULT_LIMITS: httpx.Limits = _CLIENT_DEFAULTS["limits"]
DEFAULT_MAX_REDIRECTS: int = _CLIENT_DEFAULTS["max_redirects"]
DEFAULT_TIMEOUT_CONFIG: httpx.Timeout = _CLIENT_DEFAULTS["timeout"]


# -- 1. the network backend under httpx's own transports ----------------------------------------


def _probe_network_backend() -> bool:
    # A bare TLS context: httpx's default one loads the CA bundle, tens of milliseconds at import.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for transport, pool_type, backend_type in (
        (httpx.HTTPTransport(verify=context), httpcore.ConnectionPool, httpcore.NetworkBackend),
        (
            httpx.AsyncHTTPTransport(verify=context),
            httpcore.AsyncConnectionPool,
            httpcore.AsyncNetworkBackend,
        ),
    ):
        pool = getattr(transport, "_pool", None)
        if not isinstance(pool, pool_type):
            return False
        if not isinstance(getattr(pool, "_network_backend", None), backend_type):
            return False
    return True


#: Whether httpx's transports keep httpcore's pool in ``_pool`` and the pool its backend in
#: ``_network_backend`` (httpx 0.27-0.29, httpcore 1.0).
NETWORK_BACKEND = _probe_network_backend()


def network_backend(transport: object) -> NetworkBackend | None:
    """The network backend under httpx's own ``transport``; None for any other transport, or when
    this httpx keeps it elsewhere (``NETWORK_BACKEND`` off)."""
    if not NETWORK_BACKEND or not isinstance(transport, httpx.HTTPTransport | httpx.AsyncHTTPTransport):
        return None
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    return backend if isinstance(backend, httpcore.NetworkBackend | httpcore.AsyncNetworkBackend) else None


def set_network_backend(
    transport: httpx.HTTPTransport | httpx.AsyncHTTPTransport, backend: NetworkBackend
) -> None:
    """Put ``backend`` under ``transport``, in place of the one ``network_backend`` found there."""
    transport._pool._network_backend = backend


# -- 2. the transports httpx.Client builds --------------------------------------------------------

_HOOKS = ("_init_transport", "_init_proxy_transport")


def _probe_client_transport_hooks() -> bool:
    clients = (httpx.Client, httpx.AsyncClient)
    return all(callable(getattr(client, hook, None)) for client in clients for hook in _HOOKS)


#: Whether httpx's clients build their transports in the two hooks ``TransportHooks`` overrides.
CLIENT_TRANSPORT_HOOKS = _probe_client_transport_hooks()


class TransportHooks:
    """For a subclass of ``httpx.Client`` or ``httpx.AsyncClient`` (put it first among the bases):
    every transport httpx builds for the client goes through ``wrap_built_transport``.

    With ``CLIENT_TRANSPORT_HOOKS`` off, httpx does not call these (or builds nothing the client
    did not hand it: see ``built_transports``) and they pass what they get through.
    """

    def wrap_built_transport(self, inner: Any, *, default: bool) -> Any:
        """The transport the client uses in place of ``inner`` (``default``: the client's own,
        not a proxy's)."""
        raise NotImplementedError

    def _init_transport(self, *args: Any, **kwargs: Any) -> Any:
        inner = super()._init_transport(*args, **kwargs)  # type: ignore[misc]
        return self.wrap_built_transport(inner, default=True) if CLIENT_TRANSPORT_HOOKS else inner

    def _init_proxy_transport(self, *args: Any, **kwargs: Any) -> Any:
        inner = super()._init_proxy_transport(*args, **kwargs)  # type: ignore[misc]
        return self.wrap_built_transport(inner, default=False) if CLIENT_TRANSPORT_HOOKS else inner


#: httpx.Client's arguments that shape the transports it builds.
_TRANSPORT_ARGUMENTS = ("verify", "cert", "trust_env", "http1", "http2", "limits")


def built_transports(
    is_async: bool, transport: Transport | None, options: dict[str, Any]
) -> tuple[Transport, dict[str, Transport | None]]:
    """What httpx's client constructor would build with ``options`` (its keyword arguments), built
    here through httpx's public constructors: the default transport (``transport`` when given) and
    one mount per proxy, ``proxy=``'s or, with ``trust_env`` and no ``transport``, the environment's
    (with ``NO_PROXY``'s exceptions). ``proxy`` is taken out of ``options``: the client must not
    build it again. The caller wraps them and hands them to httpx as ``transport=`` and ``mounts=``.
    """
    kind = httpx.AsyncHTTPTransport if is_async else httpx.HTTPTransport
    shape = {name: options[name] for name in _TRANSPORT_ARGUMENTS if name in options}
    proxy = options.pop("proxy", None)
    default = transport if transport is not None else kind(**shape)
    if proxy is not None:
        proxies: dict[str, Any] = {"all://": proxy}
    elif transport is None and options.get("trust_env", True):
        proxies = _environment_proxies()
    else:
        proxies = {}
    mounts: dict[str, Transport | None] = {
        pattern: None if url is None else kind(**shape, proxy=url) for pattern, url in proxies.items()
    }
    return default, mounts


def _environment_proxies() -> dict[str, str | None]:
    """The environment's proxies as httpx reads them (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``;
    ``NO_PROXY`` hosts mounted to no proxy), by URL pattern."""
    found = getproxies()
    mounts: dict[str, str | None] = {}
    for scheme in ("http", "https", "all"):
        if found.get(scheme):
            url = found[scheme]
            mounts[f"{scheme}://"] = url if "://" in url else f"http://{url}"
    for host in (part.strip() for part in found.get("no", "").split(",")):
        if host == "*":
            return {}
        if not host:
            continue
        if "://" in host:
            mounts[host] = None
        elif _is_ip(host, ipaddress.IPv4Address) or host.lower() == "localhost":
            mounts[f"all://{host}"] = None
        elif _is_ip(host, ipaddress.IPv6Address):
            mounts[f"all://[{host}]"] = None
        else:
            mounts[f"all://*{host}"] = None
    return mounts


def _is_ip(host: str, kind: type[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> bool:
    try:
        kind(host.split("/")[0])
    except ValueError:
        return False
    return True


# -- 3. a response's decoded content --------------------------------------------------------------


def _probe_response_content() -> bool:
    response = httpx.Response(200, stream=httpx.ByteStream(b"raw"))
    response._content = b"decoded"
    try:
        return response.read() == b"decoded" and response.content == b"decoded"
    except Exception:
        return False


#: Whether ``Response.read()`` returns what ``_content`` holds without decoding the stream again.
RESPONSE_CONTENT = _probe_response_content()


def set_content(response: httpx.Response, body: bytes) -> None:
    """Leave ``response`` read, its content ``body``: the decoded bytes of its unread stream."""
    if RESPONSE_CONTENT:
        response._content = body
    else:
        response.read()
