"""Helpers shared by the tests (fixtures live in tests/fixtures/)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from peakwatch.net import free_port

__all__ = ["eventually", "free_port"]


async def eventually(
    check: Callable[[], Any | Awaitable[Any]], what: str = "condition", *, timeout_s: float = 30.0
) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy, and return that.

    For states that offer no event to await (a row in another process's database, an HTTP answer).
    Assertion and HTTP errors count as "not yet"; the last one is reported when the deadline passes.
    """
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            last = result
        except (AssertionError, httpx.HTTPError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout_s} s; last: {last!r}")
        await asyncio.sleep(0.02)
