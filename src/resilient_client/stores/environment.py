"""The store a transport or client uses when given no ``state=``: Redis when the environment says so.

``RESILIENT_CLIENT_REDIS_URL`` set (and not empty) selects a RedisState on that URL, configured by the
policy's ``[state]`` table (``timeout``, ``on_unavailable``); unset, each client (or transport used on
its own) gets a MemoryState of its own.

Why one RedisState per URL (and ``[state]`` settings) per process: every transport and client that
resolves the store from the environment shares its connection pools and its fallback, so a process
opens a handful of connections to Redis, not a pool per client, and logs one warning per Redis
outage, not one per client. Two policies with different ``[state]`` settings get a store each (a
store has one timeout); both still keep their state in the same Redis keys.

A bad URL fails when the client or transport is built, naming the variable: the first request is too
late to learn that a deployment's configuration is wrong.
"""

from __future__ import annotations

import os
import threading

from resilient_client._settings import StateSettings
from resilient_client.stores._protocol import StateStore
from resilient_client.stores.memory import MemoryState
from resilient_client.stores.redis import RedisState

__all__ = ["REDIS_URL_ENV", "default_state"]

REDIS_URL_ENV = "RESILIENT_CLIENT_REDIS_URL"

_lock = threading.Lock()
#: (url, timeout, on_unavailable) -> the process's store for them.
_stores: dict[tuple[str, float, str], RedisState] = {}


def default_state(settings: StateSettings) -> StateStore:
    """The store for a transport or client given no ``state=``: the process's RedisState for
    ``$RESILIENT_CLIENT_REDIS_URL`` and ``settings``, or a new MemoryState when the variable is unset."""
    url = os.environ.get(REDIS_URL_ENV)
    if not url:
        return MemoryState()
    key = (url, settings.timeout, settings.on_unavailable)
    with _lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = _redis_state(url, settings)
        return store


def _redis_state(url: str, settings: StateSettings) -> RedisState:
    try:
        return RedisState(url, timeout=settings.timeout, on_unavailable=settings.on_unavailable)
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"{REDIS_URL_ENV} is set, so the shared state is kept in Redis, which needs the redis "
            "package: pip install 'resilient-client[redis]' (or unset the variable)",
            name=exc.name,
        ) from None
    except (TypeError, ValueError) as exc:  # the message masks the URL's password
        raise ValueError(f"{REDIS_URL_ENV} is not a usable Redis URL: {exc}") from None
