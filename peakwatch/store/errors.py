"""Turn asyncpg and socket failures into ``StoreError`` and decide whether a retry can help."""

from __future__ import annotations

from typing import Final

import asyncpg

from peakwatch.errors import ConflictError, FencedError, StoreError

__all__ = ["STORE_FAILURES", "ConflictError", "FencedError", "connection_broken", "translate"]

STORE_FAILURES: Final = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
)
"""What ``translate`` understands; catch these at the edge and nothing wider. ``InternalClientError``
is asyncpg's own state machine losing track of a connection the server dropped mid-operation
("cannot switch to state 15"): after an outage it escapes from whatever was in flight."""

_MISUSE: Final = (
    asyncpg.exceptions.ClientConfigurationError,
    asyncpg.exceptions.DataError,
    asyncpg.exceptions.UnsupportedClientFeatureError,
    asyncpg.exceptions.UnsupportedServerFeatureError,
)
"""InterfaceErrors about the request or the setup, not the connection: a new connection cannot help."""

_LOST_MARKS: Final = (
    "connection is closed",
    "connection was closed",
    "connection has been released back",
    "connection was lost",
    "another operation is in progress",
    "protocol is in the",
)
"""How asyncpg words an InterfaceError about a connection that is gone or unusable (e.g.
"cannot call Transaction.__aexit__(): the underlying connection is closed", raised by the rollback
of a transaction whose server went away, in place of the error that ended it)."""

_BROKEN_SQLSTATES: Final = ("08", "57P")
"""Connection exceptions, and the server shutting down (admin, crash) or not accepting yet."""

_RETRYABLE_SQLSTATE_CLASSES: Final = frozenset(
    {
        "08",  # connection exception
        "40",  # transaction rollback: serialization failure, deadlock
        "53",  # insufficient resources: disk full, out of memory, too many connections
        "57",  # operator intervention: admin shutdown, cannot connect now, query canceled
        "58",  # system error (I/O)
    }
)


_DATA_EXCEPTION: Final = "22"
"""SQLSTATE class of values the database cannot take (invalid text, numeric out of range)."""


def connection_broken(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection itself is unusable, whatever state asyncpg was in: the
    connection must be thrown away (never given back to the pool) and the pool's others replaced, as
    they most likely went with the same outage; the work is then retried on new connections."""
    if isinstance(exc, asyncpg.PostgresError):
        return str(getattr(exc, "sqlstate", "") or "").startswith(_BROKEN_SQLSTATES)
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        return True
    if isinstance(exc, _MISUSE):
        return False
    if isinstance(exc, asyncpg.InterfaceError):
        text = str(exc)
        return any(mark in text for mark in _LOST_MARKS)
    # TimeoutError is an OSError: a slow statement says nothing about the connection
    return isinstance(exc, OSError) and not isinstance(exc, TimeoutError)


def translate(exc: BaseException, action: str, *, broken: bool = False) -> StoreError:
    """A StoreError naming ``action`` (what the store was doing) and the cause.

    Retryable: the server or the network went away (``broken``: the caller saw the connection close),
    or the server asked us to try again. Not retryable: the request itself is wrong (bad data, schema
    mismatch, bad credentials)."""
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = str(getattr(exc, "sqlstate", "") or "")
        retryable = sqlstate[:2] in _RETRYABLE_SQLSTATE_CLASSES
        return StoreError(
            f"{action}: {type(exc).__name__} [{sqlstate}]: {exc}",
            retryable=retryable,
            bad_input=sqlstate[:2] == _DATA_EXCEPTION,
        )
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.exceptions.InternalClientError):
        lost = connection_broken(exc) or (broken and not isinstance(exc, _MISUSE))
        what = "connection lost: " if lost else ""
        return StoreError(f"{action}: {what}{type(exc).__name__}: {exc}", retryable=lost)
    if isinstance(exc, TimeoutError):
        return StoreError(f"{action}: timed out", retryable=True)
    if isinstance(exc, OSError):
        return StoreError(f"{action}: cannot reach the database: {exc}", retryable=True)
    return StoreError(f"{action}: {type(exc).__name__}: {exc}", retryable=False)
