"""The one retry loop: run some work again while it fails transiently, waiting a doubling backoff.

The processor's store writes, its claim of the sites a shared bus gives it and the accountant's
transactions all retried by hand, each with its own copy of the loop (when to give up, how the delay
grows, how a stop cuts the wait short). They differ only in policy, so the policy is the arguments:

* ``retryable(exc)``: whether trying again may help (default: a ``StoreError`` that says so); any
  other exception propagates at once;
* ``attempts``: give up after that many tries (``None``: never, e.g. a write that must not be lost);
* ``stop``: an event that ends the retrying (the failure propagates) and cuts a wait short;
* ``on_retry(exc, delay_s)``: called before each wait (logging, a failure clock, metrics).

The delay starts at ``initial_s`` and doubles up to ``max_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from peakwatch.errors import StoreError

_T = TypeVar("_T")


def store_retryable(exc: Exception) -> bool:
    """A ``StoreError`` the database may not raise again (a lost connection, a deadlock)."""
    return isinstance(exc, StoreError) and exc.retryable


def _never(_exc: Exception, _delay_s: float) -> None:
    """No report before a retry."""


async def pause(delay_s: float, stop: asyncio.Event | None) -> bool:
    """Wait ``delay_s``, or less if ``stop`` is set meanwhile; True when ``stop`` is set (every wait
    between two tries of anything in peakwatch is this one)."""
    if stop is None:
        await asyncio.sleep(delay_s)
        return False
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay_s)
    return stop.is_set()


async def retry(
    work: Callable[[], Awaitable[_T]],
    *,
    initial_s: float,
    max_s: float,
    attempts: int | None = None,
    stop: asyncio.Event | None = None,
    retryable: Callable[[Exception], bool] = store_retryable,
    on_retry: Callable[[Exception, float], None] = _never,
) -> _T:
    """Return what ``work()`` returns, calling it again after each failure worth retrying (the module
    docstring has the policy); the failure that ends the retrying propagates unchanged."""
    if attempts is not None and attempts < 1:
        raise ValueError("attempts must be >= 1")
    delay_s = initial_s
    tried = 0
    while True:
        tried += 1
        try:
            return await work()
        except Exception as exc:
            out_of_tries = attempts is not None and tried >= attempts
            if out_of_tries or not retryable(exc) or (stop is not None and stop.is_set()):
                raise
            on_retry(exc, delay_s)
        await pause(delay_s, stop)
        delay_s = min(delay_s * 2, max_s)
