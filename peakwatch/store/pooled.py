"""What every query class of the store shares: a pool, connections whose failures become StoreError,
and rows converted to Structs."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import asyncpg
import msgspec

from peakwatch.store.conn import Conn
from peakwatch.store.errors import STORE_FAILURES, connection_broken, translate

_T = TypeVar("_T")


def is_gone(conn: Conn) -> bool:
    """Whether ``conn`` closed. One that closed under its user was already handed back to the pool by
    asyncpg, and its proxy then refuses every call, ``is_closed`` included."""
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:
        return True


def _discard_if_broken(conn: Conn, exc: BaseException) -> bool:
    """Terminate ``conn`` if ``exc`` (or its state) says it is unusable; whether it was."""
    broken = connection_broken(exc) or is_gone(conn)
    if broken:
        with contextlib.suppress(asyncpg.InterfaceError):  # handed back meanwhile: nothing to end
            conn.terminate()
    return broken


class _QuietPoolFloor(logging.Filter):
    """asyncpg's pool logs a full traceback each time it fails to reopen its minimum of connections,
    every second and more during an outage; the store's own warnings already say the database is away.
    One line with the cause instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc_info = record.exc_info
        if exc_info and exc_info[1] is not None and "connection floor" in str(record.msg):
            exc = exc_info[1]
            record.msg = f"{record.msg}: {type(exc).__name__}: {exc}"
            record.exc_info = None
        return True


logging.getLogger("asyncpg.pool").addFilter(_QuietPoolFloor())


async def reset_pool(pool: asyncpg.Pool[asyncpg.Record], exc: BaseException, *, broken: bool) -> None:
    """After a failure that lost a connection, replace every pooled connection at its next use: they
    were opened before the outage, and one that looks idle may be dead without knowing it yet."""
    if broken or connection_broken(exc):
        await pool.expire_connections()


def convert(row: asyncpg.Record, kind: type[_T]) -> _T:
    return msgspec.convert(dict(row), kind)


class Pooled:
    """Base of ``Store`` and ``InputsStore``: one pool, many concurrent callers (each call takes its
    own pooled connection)."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record]) -> None:
        self._pool = pool

    @contextlib.asynccontextmanager
    async def _connection(self, action: str) -> AsyncIterator[Conn]:
        """A pooled connection; asyncpg and socket errors inside become StoreError naming ``action``.

        After an outage asyncpg can fail in many states (a lost socket, a transaction's rollback on a
        closed connection, its protocol "cannot switch to state ..."): whatever it was, a connection
        that failed that way is terminated rather than given back, the pool's other connections are
        expired (replaced at their next use) and the error is retryable, so callers retry on fresh
        connections instead of stopping."""
        broken = False
        try:
            async with self._pool.acquire() as conn:
                try:
                    yield conn
                except STORE_FAILURES as exc:
                    broken = _discard_if_broken(conn, exc)
                    raise
        except STORE_FAILURES as exc:
            await reset_pool(self._pool, exc, broken=broken)
            raise translate(exc, action, broken=broken) from exc

    async def _fetch(self, action: str, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self._connection(action) as conn:
            return await conn.fetch(query, *args)
