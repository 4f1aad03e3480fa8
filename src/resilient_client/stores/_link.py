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
* ``send`` writes plain commands without waiting for their replies (a guard's release: it must reach
  Redis at once, but nothing in the call needs its answer); the connection goes back to the idle
  list owing those replies, and whoever takes it next reads them first. Redis orders commands per
  connection only, so a caller's next operation, maybe on another connection, may run before the
  release: RedisState makes that harmless (see its ``_Holds``);
* on any error the connection is disconnected and handed back to the pool, never reused half-read;
  ``drop_idle`` disconnects the idle ones too, and the pool's (RedisState calls it when Redis did not
  answer: they lead to the same server and would fail one by one once it is back).

The connections stay the pool's (it counts them as in use), so closing the client closes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import attrs

_hiredis_pack: Callable[[Any], bytes] | None
try:  # redis-py's own packer encodes each argument in Python first: ~4 us more per command
    from hiredis import pack_command as _hiredis_pack
except ModuleNotFoundError:  # pragma: no cover - hiredis comes with the redis extra
    _hiredis_pack = None

__all__ = ["AsyncLink", "Script", "SyncLink"]

logger = logging.getLogger("resilient_client")


@attrs.frozen
class Script:
    """A Lua script and its SHA1, as EVALSHA names it."""

    text: str
    sha: str = attrs.field(init=False)

    @sha.default
    def _sha(self) -> str:
        return hashlib.sha1(self.text.encode(), usedforsecurity=False).hexdigest()


#: A connection of the idle list, and how many replies it still owes (to commands sent unanswered).
_Idle = tuple[Any, int]


def _drain(idle: list[_Idle]) -> list[_Idle]:
    """Every entry of ``idle``, taken out one atomic ``pop`` at a time (no thread gets one twice)."""
    drained = []
    while True:
        try:
            drained.append(idle.pop())
        except IndexError:
            return drained


def _pack(connection: Any, command: tuple[object, ...]) -> Any:
    """One command in the wire format, as ``send_packed_command`` takes it."""
    if _hiredis_pack is not None:
        return [_hiredis_pack(command)]
    return connection.pack_command(*command)


#: Every link of this process, so that a forked child forgets their connections (below).
_LINKS: weakref.WeakSet[SyncLink | AsyncLink] = weakref.WeakSet()


def _forget_connections_in_child() -> None:
    # A forked child shares its parent's sockets: it must never write to them (the replies would go
    # to whichever process reads first). redis-py's pool forgets its connections in a child by
    # itself; a link's idle list is forgotten here, unclosed, as the parent still uses them.
    for link in list(_LINKS):
        link._idle = []


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_forget_connections_in_child)


def _refused_unanswered(error: BaseException) -> None:
    # An error reply to a command nobody waited for (a release): the caller is gone, so it is logged
    # here, once, rather than raised into an unrelated operation.
    logger.warning("Redis refused a command sent without waiting (a guard release): %s", error)


class SyncLink:
    """Runs scripts on the connections of a ``redis.Redis`` client's pool."""

    __slots__ = ("__weakref__", "_idle", "_no_script", "_pool", "_refused", "_stale")

    def __init__(
        self,
        client: Any,
        *,
        no_script: type[BaseException],
        refused: type[BaseException],
        stale: tuple[type[BaseException], ...],
    ) -> None:
        self._pool = client.connection_pool
        self._no_script = no_script
        #: What an error reply raises (redis-py's ResponseError).
        self._refused = refused
        #: What a connection the server closed raises (redis-py's ConnectionError, OSError).
        self._stale = stale
        self._idle: list[_Idle] = []
        _LINKS.add(self)

    def _take(self) -> Any:
        try:
            connection, owed = self._idle.pop()
        except IndexError:
            return self._pool.get_connection()  # connected and checked by the pool
        try:
            try:
                for _ in range(owed):
                    try:
                        connection.read_response()
                    except self._refused as error:
                        _refused_unanswered(error)
                stale = connection.can_read()  # something unread: start afresh
            except self._stale:  # the server closed it (redis-py says so with an error)
                stale = True
            if stale:
                connection.disconnect()  # the next send connects again
        except BaseException:
            connection.disconnect()
            self._pool.release(connection)
            raise
        return connection

    def run(self, script: Script, keys: Sequence[str], args: Sequence[object]) -> Any:
        """The script's reply (a server-side script error raises redis-py's ResponseError)."""
        connection = self._take()
        try:
            connection.send_packed_command(
                _pack(connection, ("EVALSHA", script.sha, len(keys), *keys, *args)), check_health=False
            )
            try:
                reply = connection.read_response()
            except self._no_script:
                connection.send_packed_command(
                    _pack(connection, ("EVAL", script.text, len(keys), *keys, *args)), check_health=False
                )
                reply = connection.read_response()
        except BaseException:
            connection.disconnect()
            self._pool.release(connection)
            raise
        self._idle.append((connection, 0))
        return reply

    def send(self, commands: Sequence[Sequence[object]]) -> None:
        """Send ``commands`` (plain commands, no scripts) without waiting for their replies: they are
        written to the server at once, and their replies read before the connection's next use."""
        connection = self._take()
        try:
            connection.send_packed_command(connection.pack_commands(commands))
        except BaseException:
            connection.disconnect()
            self._pool.release(connection)
            raise
        self._idle.append((connection, len(commands)))

    def drop_idle(self) -> None:
        """Disconnect the idle connections, this link's and its pool's (they reconnect when used)."""
        for connection, _ in _drain(self._idle):
            connection.disconnect()
            self._pool.release(connection)
        self._pool.disconnect(inuse_connections=False)


class AsyncLink:
    """Runs scripts on the connections of a ``redis.asyncio.Redis`` client's pool (one event loop's)."""

    __slots__ = ("__weakref__", "_idle", "_no_script", "_pool", "_refused", "_stale", "_timeout")

    def __init__(
        self,
        client: Any,
        *,
        no_script: type[BaseException],
        refused: type[BaseException],
        stale: tuple[type[BaseException], ...],
        timeout: float | None = None,
    ) -> None:
        self._pool = client.connection_pool
        self._no_script = no_script
        self._refused = refused
        self._stale = stale
        #: The whole operation's time limit (a client built with ``socket_timeout=None``):
        #: redis.asyncio bounds each send with ``asyncio.wait_for``, a new task per command, which
        #: costs as much as the round trip; one ``asyncio.timeout`` around the operation is a timer.
        #: ``TimeoutError`` is an ``OSError``: RedisState counts it as Redis not answering.
        self._timeout = timeout
        self._idle: list[_Idle] = []
        _LINKS.add(self)

    def _limit(self) -> contextlib.AbstractAsyncContextManager[object]:
        return contextlib.nullcontext() if self._timeout is None else asyncio.timeout(self._timeout)

    async def _discard(self, connection: Any) -> None:
        # Shielded: a cancelled scope would cancel the clean-up too and leave the pool short of a
        # connection (or hand out one whose reply is still to come).
        with anyio.CancelScope(shield=True):
            await connection.disconnect(nowait=True)
            await self._pool.release(connection)

    async def _take(self) -> Any:
        try:
            connection, owed = self._idle.pop()
        except IndexError:
            return await self._pool.get_connection()
        # redis-py before 5.1 names it can_read_destructive (since deprecated)
        can_read = getattr(connection, "can_read", None) or connection.can_read_destructive
        try:
            try:
                for _ in range(owed):
                    try:
                        await connection.read_response()
                    except self._refused as error:
                        _refused_unanswered(error)
                stale = await can_read()
            except self._stale:
                stale = True
            if stale:
                await connection.disconnect()
        except BaseException:
            await self._discard(connection)
            raise
        return connection

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[object]) -> Any:
        async with self._limit():
            connection = await self._take()
            try:
                await connection.send_packed_command(
                    _pack(connection, ("EVALSHA", script.sha, len(keys), *keys, *args)), check_health=False
                )
                try:
                    reply = await connection.read_response()
                except self._no_script:
                    await connection.send_packed_command(
                        _pack(connection, ("EVAL", script.text, len(keys), *keys, *args)), check_health=False
                    )
                    reply = await connection.read_response()
            except BaseException:
                await self._discard(connection)  # cancelled mid-read, its reply may still come
                raise
        self._idle.append((connection, 0))
        return reply

    async def send(self, commands: Sequence[Sequence[object]]) -> None:
        async with self._limit():
            connection = await self._take()
            try:
                await connection.send_packed_command(connection.pack_commands(commands))
            except BaseException:
                await self._discard(connection)
                raise
        self._idle.append((connection, len(commands)))

    async def drop_idle(self) -> None:
        for connection, _ in _drain(self._idle):
            await self._discard(connection)
        await self._pool.disconnect(inuse_connections=False)
