"""Turn asyncpg and socket failures into ``StoreError`` and decide whether a retry can help."""

from __future__ import annotations

from typing import Final

import asyncpg

from peakwatch.errors import FencedError, StoreError

__all__ = ["STORE_FAILURES", "ConflictError", "FencedError", "translate"]

STORE_FAILURES: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
"""What ``translate`` understands; catch these at the edge and nothing wider."""

_RETRYABLE_SQLSTATE_CLASSES: Final = frozenset(
    {
        "08",  # connection exception
        "40",  # transaction rollback: serialization failure, deadlock
        "53",  # insufficient resources: disk full, out of memory, too many connections
        "57",  # operator intervention: admin shutdown, cannot connect now, query canceled
        "58",  # system error (I/O)
    }
)


class ConflictError(StoreError):
    """The write collides with a row already stored (same key), or would break a rule the stored rows
    keep (the last admin); retrying the same write cannot help, re-reading and deciding again can.
    The API answers 409."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


_DATA_EXCEPTION: Final = "22"
"""SQLSTATE class of values the database cannot take (invalid text, numeric out of range)."""


def translate(exc: BaseException, action: str) -> StoreError:
    """A StoreError naming ``action`` (what the store was doing) and the cause.

    Retryable: the server or the network went away, or the server asked us to try again. Not
    retryable: the request itself is wrong (bad data, schema mismatch, bad credentials)."""
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = str(getattr(exc, "sqlstate", "") or "")
        retryable = sqlstate[:2] in _RETRYABLE_SQLSTATE_CLASSES
        return StoreError(
            f"{action}: {type(exc).__name__} [{sqlstate}]: {exc}",
            retryable=retryable,
            bad_input=sqlstate[:2] == _DATA_EXCEPTION,
        )
    if isinstance(exc, asyncpg.exceptions.ConnectionDoesNotExistError):
        return StoreError(f"{action}: connection lost: {exc}", retryable=True)
    if isinstance(exc, asyncpg.InterfaceError):
        return StoreError(f"{action}: {type(exc).__name__}: {exc}", retryable=False)
    if isinstance(exc, TimeoutError):
        return StoreError(f"{action}: timed out", retryable=True)
    if isinstance(exc, OSError):
        return StoreError(f"{action}: cannot reach the database: {exc}", retryable=True)
    return StoreError(f"{action}: {type(exc).__name__}: {exc}", retryable=False)
