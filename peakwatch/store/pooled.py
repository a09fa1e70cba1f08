"""What every query class of the store shares: a pool, connections whose failures become StoreError,
and rows converted to Structs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import asyncpg
import msgspec

from peakwatch.store.conn import Conn
from peakwatch.store.errors import STORE_FAILURES, translate

_T = TypeVar("_T")


def convert(row: asyncpg.Record, kind: type[_T]) -> _T:
    return msgspec.convert(dict(row), kind)


class Pooled:
    """Base of ``Store`` and ``InputsStore``: one pool, many concurrent callers (each call takes its
    own pooled connection)."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record]) -> None:
        self._pool = pool

    @contextlib.asynccontextmanager
    async def _connection(self, action: str) -> AsyncIterator[Conn]:
        """A pooled connection; asyncpg and socket errors inside become StoreError naming ``action``."""
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except STORE_FAILURES as exc:
            raise translate(exc, action) from exc

    async def _fetch(self, action: str, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self._connection(action) as conn:
            return await conn.fetch(query, *args)
