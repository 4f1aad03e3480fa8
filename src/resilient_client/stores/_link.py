"""Links: how RedisState sends one script and reads its answer, with as little as possible in between.

Why not ``client.execute_command`` or redis-py's ``Script``: on this path every microsecond is paid
on every call of every request, and redis-py's command path does much that RedisState does not need
there: a pool lock and connection checks per command, retries (RedisState wants none: its fallback
decides what a missing answer means), observability hooks, and, for ``Script``, a second layer of
argument handling. Measured on loopback (2-core machine, hiredis parser), one EVALSHA cost ~40 us more
through ``execute_command`` than through the connection's own ``send_command``/``read_response``, on
a round trip of ~25-40 us when the machine is quiet: the largest part of a store operation's cost.

So a link keeps the connections it took from the client's pool (an idle list: ``list.pop`` and
``append`` are atomic, so threads share it without a lock) and talks on them directly:

* a connection taken from the idle list is checked as the pool would check it (``can_read``: data
  waiting, or an error for a connection the server closed, as after a Redis restart) and reconnected
  if it is stale;
* EVALSHA first, and when the server says NOSCRIPT (a restart, ``SCRIPT FLUSH``), EVAL with the text,
  which also caches it: each call is still one round trip in the usual case;
* on any error the connection is disconnected and handed back to the pool, never reused half-read;
  ``drop_idle`` disconnects the idle ones too, and the pool's (RedisState calls it when Redis did not
  answer: they lead to the same server and would fail one by one once it is back).

The connections stay the pool's (it counts them as in use), so closing the client closes them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import anyio
import attrs

__all__ = ["AsyncLink", "Script", "SyncLink"]


@attrs.frozen
class Script:
    """A Lua script and its SHA1, as EVALSHA names it."""

    text: str
    sha: str = attrs.field(init=False)

    @sha.default
    def _sha(self) -> str:
        return hashlib.sha1(self.text.encode(), usedforsecurity=False).hexdigest()


def _drain(idle: list[Any]) -> list[Any]:
    """Every connection of ``idle``, taken out one atomic ``pop`` at a time (no thread gets one twice)."""
    drained = []
    while True:
        try:
            drained.append(idle.pop())
        except IndexError:
            return drained


class SyncLink:
    """Runs scripts on the connections of a ``redis.Redis`` client's pool."""

    __slots__ = ("_idle", "_no_script", "_pool", "_stale")

    def __init__(
        self, client: Any, no_script: type[BaseException], stale: tuple[type[BaseException], ...]
    ) -> None:
        self._pool = client.connection_pool
        self._no_script = no_script
        #: What ``can_read`` raises for a connection the server closed (redis-py's ConnectionError...).
        self._stale = stale
        self._idle: list[Any] = []

    def _take(self) -> Any:
        try:
            connection = self._idle.pop()
        except IndexError:
            return self._pool.get_connection()  # connected and checked by the pool
        try:
            stale = connection.can_read()  # something unread: start afresh
        except self._stale:  # the server closed it (redis-py says so with an error)
            stale = True
        except BaseException:
            self._pool.release(connection)
            raise
        if stale:
            connection.disconnect()  # the next send connects again
        return connection

    def run(self, script: Script, keys: Sequence[str], args: Sequence[object]) -> Any:
        """The script's reply (a server-side script error raises redis-py's ResponseError)."""
        connection = self._take()
        try:
            connection.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
            try:
                reply = connection.read_response()
            except self._no_script:
                connection.send_command("EVAL", script.text, len(keys), *keys, *args)
                reply = connection.read_response()
        except BaseException:
            connection.disconnect()
            self._pool.release(connection)
            raise
        self._idle.append(connection)
        return reply

    def drop_idle(self) -> None:
        """Disconnect the idle connections, this link's and its pool's (they reconnect when used)."""
        for connection in _drain(self._idle):
            self._pool.release(connection)
        self._pool.disconnect(inuse_connections=False)


class AsyncLink:
    """Runs scripts on the connections of a ``redis.asyncio.Redis`` client's pool (one event loop's)."""

    __slots__ = ("_idle", "_no_script", "_pool", "_stale")

    def __init__(
        self, client: Any, no_script: type[BaseException], stale: tuple[type[BaseException], ...]
    ) -> None:
        self._pool = client.connection_pool
        self._no_script = no_script
        #: What ``can_read`` raises for a connection the server closed (redis-py's ConnectionError...).
        self._stale = stale
        self._idle: list[Any] = []

    async def _take(self) -> Any:
        try:
            connection = self._idle.pop()
        except IndexError:
            return await self._pool.get_connection()
        # redis-py before 5.1 names it can_read_destructive (since deprecated)
        can_read = getattr(connection, "can_read", None) or connection.can_read_destructive
        try:
            stale = await can_read()
        except self._stale:
            stale = True
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._pool.release(connection)
            raise
        if stale:
            await connection.disconnect()
        return connection

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[object]) -> Any:
        connection = await self._take()
        try:
            await connection.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
            try:
                reply = await connection.read_response()
            except self._no_script:
                await connection.send_command("EVAL", script.text, len(keys), *keys, *args)
                reply = await connection.read_response()
        except BaseException:
            # Cancelled mid-read, a reply may still come: the connection must not be reused. The
            # connection's own error handling has usually disconnected it already; shielded, as a
            # cancelled scope would cancel the clean-up too and leave the pool short of a connection.
            with anyio.CancelScope(shield=True):
                await connection.disconnect(nowait=True)
                await self._pool.release(connection)
            raise
        self._idle.append(connection)
        return reply

    async def drop_idle(self) -> None:
        for connection in _drain(self._idle):
            await self._pool.release(connection)
        await self._pool.disconnect(inuse_connections=False)
