"""Which database failures the store calls retryable (issue 15, item 2): after an outage asyncpg fails
in whatever state the connection was in; every such failure must be retried on a new connection, never
end the process. The exceptions are asyncpg's own types with the messages it raises."""

from __future__ import annotations

import asyncpg
import pytest

from peakwatch.store.errors import STORE_FAILURES, connection_broken, translate

LOST = [
    # seen in the drills: the protocol's state machine after the server went away mid-operation
    asyncpg.exceptions.InternalClientError("cannot switch to state 15; another operation (2) is in progress"),
    asyncpg.exceptions.InternalClientError('cannot switch to state 15; protocol is in the "failed" state'),
    # seen in the drills: a transaction's rollback on the closed connection replaces the first error
    asyncpg.InterfaceError("cannot call Transaction.__aexit__(): the underlying connection is closed"),
    asyncpg.InterfaceError("connection is closed"),
    asyncpg.InterfaceError("cannot call Connection.fetch(): connection has been released back to the pool"),
    asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    asyncpg.exceptions.ConnectionFailureError("connection failure"),
    asyncpg.exceptions.PostgresConnectionError("connection exception"),
    asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.exceptions.CrashShutdownError("terminating connection because of crash of another server"),
    ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)"),
    ConnectionResetError(104, "Connection reset by peer"),
    BrokenPipeError(32, "Broken pipe"),
    OSError(113, "No route to host"),
]


@pytest.mark.parametrize("exc", LOST, ids=lambda e: f"{type(e).__name__}: {e}"[:60])
def test_a_lost_connection_is_retryable_and_broken(exc: BaseException) -> None:
    assert isinstance(exc, STORE_FAILURES)  # caught at the store's edge, never escaping it
    assert connection_broken(exc)
    error = translate(exc, "writing a processed batch")
    assert error.retryable, error
    assert str(error).startswith("writing a processed batch: ")


def test_a_timeout_is_retryable_without_resetting_the_pool() -> None:
    # a slow query does not mean the connection is gone
    assert not connection_broken(TimeoutError())
    assert translate(TimeoutError(), "reading KPIs").retryable


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.exceptions.DataError("invalid input for query argument $1: 'x' (an integer is required)"),
        asyncpg.exceptions.ClientConfigurationError("invalid connection option"),
        asyncpg.exceptions.UndefinedTableError('relation "nope" does not exist'),
        asyncpg.exceptions.InvalidPasswordError('password authentication failed for user "x"'),
        asyncpg.exceptions.NumericValueOutOfRangeError("numeric field overflow"),
        asyncpg.InterfaceError("the server expects 2 arguments for this query, 1 was passed"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_wrong_request_is_not_retryable(exc: BaseException) -> None:
    assert not connection_broken(exc)
    assert not translate(exc, "reading KPIs").retryable


def test_an_interface_error_on_a_connection_seen_closed_is_retryable() -> None:
    # whatever asyncpg says, a connection the caller saw close gets replaced and the work retried
    exc = asyncpg.InterfaceError("cannot reset the connection")
    assert not translate(exc, "writing a processed batch").retryable
    assert translate(exc, "writing a processed batch", broken=True).retryable
    bad_value = asyncpg.exceptions.DataError("invalid input for query argument $1")
    assert not translate(bad_value, "writing a processed batch", broken=True).retryable
